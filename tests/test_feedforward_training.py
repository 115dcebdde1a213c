"""Training the feed-forward network: the data pipeline, the loop, its files, resuming,
and one distributed step against one device."""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO_ROOT, photo, write_image

import settings
from neural_style.config import NetworkSettings
from neural_style.errors import UserError
from neural_style.feedforward import data


@pytest.fixture
def dataset(tmp_path) -> str:
    """Five photos (two sizes, one in a sub-folder) plus three files that must be skipped."""
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    for index in range(4):
        write_image(folder / f"photo{index}.jpg", photo(40, 56, seed=index))
    write_image(folder / "sub" / "tall.png", photo(70, 36, seed=9))
    write_image(folder / "sub" / "tiny.png", photo(12, 20, seed=5))
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 this is not a jpeg")
    (folder / "notes.txt").write_text("not an image, and not listed")
    (folder / "empty.png").write_bytes(b"")
    return str(folder)


@pytest.fixture
def style_image(tmp_path) -> str:
    stripes = np.zeros((48, 48, 3), np.float32)
    stripes[:, ::4] = (250, 60, 20)
    stripes[::6, :] = (20, 80, 240)
    return write_image(tmp_path / "style.png", stripes)


def tiny_settings(tmp_path, tiny_mat, dataset, style_image, **overrides) -> NetworkSettings:
    values = {
        "network_dataset": dataset,
        "network_style_image": style_image,
        "network_style_size": 48,
        "network_sample_image": os.path.join(dataset, "photo0.jpg"),
        "network_output_dir": str(tmp_path / "run"),
        "network_image_size": 32,
        "network_batch_size": 2,
        "network_steps": 12,
        "network_width": 2,
        "network_learning_rate": 0.02,
        "network_style_weight": 50.0,
        "network_checkpoint_every": 6,
        "network_sample_every": 6,
        "network_print_every": 4,
        "vgg_model_path": tiny_mat,
    }
    return NetworkSettings.from_module(settings, **{**values, **overrides})


def read_losses(path: str) -> list[dict[str, str]]:
    with open(path, encoding="utf-8") as file:
        return list(csv.DictReader(file))


# The data pipeline ----------------------------------------------------------------------


def test_list_images_finds_jpeg_and_png_recursively(dataset):
    names = [os.path.relpath(path, dataset) for path in data.list_images(dataset)]
    assert names == [
        "broken.jpg",
        "empty.png",
        "photo0.jpg",
        "photo1.jpg",
        "photo2.jpg",
        "photo3.jpg",
        os.path.join("sub", "tall.png"),
        os.path.join("sub", "tiny.png"),
    ]


def test_an_empty_or_missing_dataset_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no photos here")
    with pytest.raises(UserError, match=r"no \.jpg, \.jpeg, \.png images .*NETWORK_DATASET"):
        data.list_images(str(tmp_path / "empty"))
    with pytest.raises(UserError, match=r"no such folder; set NETWORK_DATASET"):
        data.list_images(str(tmp_path / "missing"))


def test_bad_files_are_skipped_and_counted(dataset):
    paths = data.list_images(dataset)
    skipped = data.SkippedFiles(len(paths))
    batches = data.photo_batches(paths, image_size=32, batch_size=3, seed=0, skipped=skipped)
    # Three batches of three draw nine photos from eight files: every file at least once.
    for batch in batches.take(3):
        assert batch.shape == (3, 32, 32, 3)
        assert float(np.min(batch)) >= 0 and float(np.max(batch)) <= 255
    reasons = skipped.reasons()
    assert skipped.count == 3
    assert sorted(os.path.basename(path) for path in reasons) == [
        "broken.jpg",
        "empty.png",
        "tiny.png",
    ]
    assert "20x12 pixels" in reasons[os.path.join(dataset, "sub", "tiny.png")]
    assert skipped.summary().startswith("3 of 8 files skipped")


def test_a_dataset_of_only_bad_files_is_a_user_error(tmp_path, tiny_mat, style_image):
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(b"garbage")
    write_image(folder / "b.png", photo(10, 10))
    sample = write_image(tmp_path / "sample.jpg", photo(40, 40))
    run_settings = tiny_settings(
        tmp_path, tiny_mat, str(folder), style_image, network_sample_image=sample
    )
    from neural_style.feedforward.training import train_network

    with pytest.raises(UserError, match=r"none of its 2 image files could be used"):
        train_network(run_settings, stream=open(os.devnull, "w"))  # noqa: SIM115


# The training loop ----------------------------------------------------------------------


def test_a_short_run_lowers_the_loss_and_leaves_its_files(
    tmp_path, tiny_mat, dataset, style_image, capsys
):
    from neural_style.feedforward.model import load_network
    from neural_style.feedforward.training import train_network

    run_settings = tiny_settings(tmp_path, tiny_mat, dataset, style_image)
    result = train_network(run_settings)
    output = run_settings.network_output_dir
    assert result.steps == 12
    assert sorted(os.path.basename(path) for path in result.skipped) == [
        "broken.jpg",
        "empty.png",
        "tiny.png",
    ]
    totals = [float(row["total"]) for row in read_losses(os.path.join(output, "losses.csv"))]
    assert len(totals) == 12
    assert np.mean(totals[-3:]) < 0.5 * np.mean(totals[:3])
    for name in ("network.keras", "sample-6.jpg", "sample-12.jpg", "skipped-files.txt"):
        assert os.path.isfile(os.path.join(output, name)), name
    with open(os.path.join(output, "network-settings.json"), encoding="utf-8") as file:
        record = json.load(file)
    assert record["steps_trained"] == 12 and record["network_width"] == 2
    assert load_network(result.model_path).count_params() > 0
    printed = capsys.readouterr().out
    assert "img/s" in printed and "ETA" in printed and "skipped 3" in printed
    assert "step 12/12" in printed

    # Resuming continues from the checkpoint at step 12 and appends to the same log.
    resumed = train_network(
        tiny_settings(
            tmp_path, tiny_mat, dataset, style_image, network_steps=15, network_resume=True
        )
    )
    assert resumed.steps == 15
    steps = [int(row["step"]) for row in read_losses(os.path.join(output, "losses.csv"))]
    assert steps == list(range(1, 16))
    assert "resuming from" in capsys.readouterr().out

    # Starting over in the same folder without NETWORK_RESUME would mix two runs.
    with pytest.raises(UserError, match=r"--network_resume"):
        train_network(tiny_settings(tmp_path, tiny_mat, dataset, style_image))


def test_resume_without_a_checkpoint_is_a_user_error(tmp_path, tiny_mat, dataset, style_image):
    from neural_style.feedforward.training import train_network

    run_settings = tiny_settings(tmp_path, tiny_mat, dataset, style_image, network_resume=True)
    with pytest.raises(UserError, match=r"NETWORK_RESUME \(--network_resume\) is set but"):
        train_network(run_settings, stream=open(os.devnull, "w"))  # noqa: SIM115


def test_the_distributed_step_matches_one_device(tiny_mat):
    script = os.path.join(REPO_ROOT, "tests", "feedforward_distributed_step.py")
    result = subprocess.run(
        [sys.executable, script, tiny_mat],
        cwd=REPO_ROOT,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "2"},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["replicas"] == 2
    for single, mirrored in zip(report["single"], report["mirrored"], strict=True):
        for name in ("content", "style", "tv", "total"):
            assert mirrored[name] == pytest.approx(single[name], rel=1e-5), name
    assert report["single"][1]["total"] < report["single"][0]["total"]
