"""Applying a trained network with stylize.py: an image, a folder, a video, colours kept."""

import os
import subprocess
import sys

import imageio.v2 as imageio
import numpy as np
import pytest
from conftest import REPO_ROOT, photo, write_image

import settings
from neural_style.colors import rgb_to_ycbcr
from neural_style.config import NetworkSettings
from neural_style.errors import UserError
from neural_style.feedforward.model import build_transformer, load_network
from neural_style.feedforward.stylize import Stylizer, stylize_input
from neural_style.images import load_image


@pytest.fixture(scope="module")
def network(tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("network") / "network.keras")
    build_transformer(width=2, seed=5).save(path)
    return path


def stylize_settings(network, source, output, **overrides) -> NetworkSettings:
    values = {"network_model": network, "stylize_input": str(source), "stylize_output": str(output)}
    return NetworkSettings.from_module(settings, **{**values, **overrides})


def test_an_odd_sized_image_keeps_its_size_and_matches_the_network(network, tmp_path):
    source = write_image(tmp_path / "odd.png", photo(37, 51, seed=2))
    result = stylize_input(stylize_settings(network, source, tmp_path / "out"))
    assert result.outputs == [str(tmp_path / "out" / "odd.png")]
    written = load_image(result.outputs[0], "STYLIZE_OUTPUT")
    assert written.shape == (37, 51, 3)
    expected = Stylizer(load_network(network))(load_image(source, "STYLIZE_INPUT")[None])[0]
    np.testing.assert_array_equal(written, np.clip(np.rint(expected), 0, 255))


def test_a_folder_is_batched_by_size_and_skips_bad_files(network, tmp_path, capsys):
    folder = tmp_path / "album"
    (folder / "trip").mkdir(parents=True)
    for index in range(3):
        write_image(folder / f"same{index}.png", photo(40, 48, seed=index))
    write_image(folder / "trip" / "other.jpg", photo(45, 33, seed=7))
    (folder / "broken.png").write_bytes(b"not a png")
    result = stylize_input(
        stylize_settings(network, folder, tmp_path / "out", stylize_batch_size=2),
        stream=sys.stdout,
    )
    names = sorted(os.path.relpath(path, tmp_path / "out") for path in result.outputs)
    assert names == ["same0.png", "same1.png", "same2.png", os.path.join("trip", "other.jpg")]
    assert list(result.skipped) == [str(folder / "broken.png")]
    assert "skipped" in capsys.readouterr().out
    # Batched images give what each gives alone.
    stylizer = Stylizer(load_network(network))
    alone = stylizer(load_image(str(folder / "same1.png"), "X")[None])[0]
    written = load_image(str(tmp_path / "out" / "same1.png"), "X")
    np.testing.assert_allclose(written, np.clip(np.rint(alone), 0, 255), atol=1)


def test_preserve_colors_keeps_the_inputs_chrominance(network, tmp_path):
    source = write_image(tmp_path / "colourful.png", photo(40, 40, seed=3))
    plain = stylize_input(stylize_settings(network, source, tmp_path / "plain"))
    kept = stylize_input(
        stylize_settings(network, source, tmp_path / "kept", stylize_preserve_colors=True)
    )
    original = rgb_to_ycbcr(load_image(source, "X"))
    with_colours = rgb_to_ycbcr(load_image(kept.outputs[0], "X"))
    without = rgb_to_ycbcr(load_image(plain.outputs[0], "X"))
    chroma_error = np.abs(with_colours[..., 1:] - original[..., 1:]).mean()
    assert chroma_error < 2.0  # rounding to 8 bits and clipping only
    assert chroma_error < 0.5 * np.abs(without[..., 1:] - original[..., 1:]).mean()
    # The brightness is the network's; clipping to 0..255 moves a few pixels.
    assert np.mean(np.abs(with_colours[..., 0] - without[..., 0]) <= 3) > 0.95


def test_a_video_keeps_its_frames_size_and_rate(network, tmp_path):
    source = str(tmp_path / "clip.mp4")
    with imageio.get_writer(source, fps=12, codec="libx264", macro_block_size=2) as writer:
        for index in range(7):
            writer.append_data(photo(48, 64, seed=index).astype(np.uint8))
    result = stylize_input(
        stylize_settings(network, source, tmp_path / "out", stylize_batch_size=3)
    )
    assert result.outputs == [str(tmp_path / "out" / "clip.mp4")]
    reader = imageio.get_reader(result.outputs[0])
    frames = list(reader.iter_data())  # list(reader) asks an endless length first
    assert reader.get_meta_data()["fps"] == pytest.approx(12)
    reader.close()
    assert len(frames) == 7
    assert frames[0].shape == (48, 64, 3)
    assert not [name for name in os.listdir(tmp_path / "out") if name.startswith(".")]


def test_a_missing_network_or_input_is_a_user_error(network, tmp_path):
    source = write_image(tmp_path / "a.png", photo(40, 40))
    with pytest.raises(UserError, match=r"no such network file; train one"):
        stylize_input(stylize_settings(str(tmp_path / "none.keras"), source, tmp_path))
    with pytest.raises(UserError, match=r"no such file or folder; set STYLIZE_INPUT"):
        stylize_input(stylize_settings(network, tmp_path / "missing.jpg", tmp_path))
    (tmp_path / "fake.keras").write_bytes(b"not a zip")
    with pytest.raises(UserError, match=r"not a network this tool can load"):
        stylize_input(stylize_settings(str(tmp_path / "fake.keras"), source, tmp_path))


@pytest.mark.parametrize(
    ("script", "argument", "named"),
    [
        ("stylize.py", "--stylize_batch_size=0", "STYLIZE_BATCH_SIZE (--stylize_batch_size)"),
        ("stylize.py", "--network_model=net.h5", "NETWORK_MODEL (--network_model)"),
        ("train_network.py", "--network_style_layers=relu9_9:1", "--network_style_layers"),
        ("train_network.py", "--network_image_size=16", "NETWORK_IMAGE_SIZE"),
    ],
)
def test_entry_points_report_a_bad_setting_in_one_line(script, argument, named):
    result = subprocess.run(
        [sys.executable, os.path.join(REPO_ROOT, script), argument],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and named in lines[0]


def test_stylize_py_runs_end_to_end(network, tmp_path):
    source = write_image(tmp_path / "in.jpg", photo(40, 44))
    result = subprocess.run(
        [
            sys.executable,
            os.path.join(REPO_ROOT, "stylize.py"),
            f"--network_model={network}",
            f"--stylize_input={source}",
            f"--stylize_output={tmp_path / 'out'}",
        ],
        cwd=REPO_ROOT,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert os.path.isfile(tmp_path / "out" / "in.jpg")
    assert "wrote 1 file(s)" in result.stdout
