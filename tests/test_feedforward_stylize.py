"""Applying a trained network with stylize.py: an image, a folder, a video, colours kept;
and never losing a user's work: no result over an input, no result read back as input,
unique names, memory-sized inputs and batches, damaged videos and network files, write
failures on real read-only and full file systems (tmpfs), and real signals to a real
`python stylize.py`."""

import contextlib
import functools
import io
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import NamedTuple

import imageio.v2 as imageio
import imageio_ffmpeg
import numpy as np
import pytest

from neural_style.errors import UserError
from neural_style.feedforward.model import load_network
from neural_style.feedforward.stylizing.fit import bytes_per_pixel
from neural_style.feedforward.stylizing.run import Stylizer, stylize_input
from neural_style.media.colors import rgb_to_ycbcr
from neural_style.media.images import load_image
from tests.support import (
    REPO_ROOT,
    h264_clip,
    is_selected,
    photo,
    remount,
    stylize_settings,
    tmpfs,
    write_image,
)


@pytest.mark.slow
def test_an_odd_sized_image_keeps_its_size_and_matches_the_network(network, tmp_path):
    source = write_image(tmp_path / "odd.png", photo(37, 51, seed=2))
    result = stylize_input(stylize_settings(network, source, tmp_path / "out"))
    assert result.outputs == [str(tmp_path / "out" / "odd.png")]
    written = load_image(result.outputs[0], "STYLIZE_OUTPUT")
    assert written.shape == (37, 51, 3)
    expected = Stylizer(load_network(network))(load_image(source, "STYLIZE_INPUT")[None])[0]
    np.testing.assert_array_equal(written, np.clip(np.rint(expected), 0, 255))


def test_network_precision_bfloat16_writes_nearly_the_float32_image(network, tmp_path):
    source = write_image(tmp_path / "odd.png", photo(37, 51, seed=2))
    settings = stylize_settings(
        network, source, tmp_path / "out", network_precision="mixed_bfloat16"
    )
    written = load_image(stylize_input(settings).outputs[0], "STYLIZE_OUTPUT")
    exact = Stylizer(load_network(network))(load_image(source, "STYLIZE_INPUT")[None])[0]
    assert written.shape == exact.shape
    assert 0.0 < np.abs(written - np.clip(np.rint(exact), 0, 255)).mean() <= 2.0


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
def test_a_video_keeps_its_frames_size_and_rate(network, tmp_path):
    source = str(tmp_path / "clip.mp4")
    h264_clip(source, (photo(48, 64, seed=index) for index in range(7)), fps=12)
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


@pytest.mark.slow
def test_a_video_keeps_its_audio(network, tmp_path):
    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    source = str(tmp_path / "clip.mp4")
    subprocess.run(
        [
            *(ffmpeg, "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=64x48:rate=12"),
            *("-f", "lavfi", "-i", "sine=frequency=440:duration=2", "-frames:v", "7"),
            *("-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", source),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    original = Path(source).read_bytes()
    result = stylize_input(
        stylize_settings(network, source, tmp_path / "out", stylize_batch_size=3)
    )
    described = subprocess.run(
        [ffmpeg, "-hide_banner", "-i", result.outputs[0]], capture_output=True, text=True
    ).stderr
    assert re.findall(r"Stream #0:\d+\S*: (\w+):", described) == ["Video", "Audio"], described
    # The tone is 2 s long; the output lasts as long as its 7 frames at 12 per second.
    hours, minutes, seconds = re.search(r"Duration: (\d+):(\d+):([\d.]+)", described).groups()
    assert float(seconds) == pytest.approx(7 / 12, abs=0.05) and hours == minutes == "00"
    assert count_frames(result.outputs[0]) == 7
    assert os.listdir(tmp_path / "out") == ["clip.mp4"]  # no partial file left
    assert Path(source).read_bytes() == original


def test_a_missing_network_or_input_is_a_user_error(network, tmp_path):
    source = write_image(tmp_path / "a.png", photo(40, 40))
    with pytest.raises(UserError, match=r"no such network file; train one"):
        stylize_input(stylize_settings(str(tmp_path / "none.keras"), source, tmp_path))
    with pytest.raises(UserError, match=r"no such file or folder; set STYLIZE_INPUT"):
        stylize_input(stylize_settings(network, tmp_path / "missing.jpg", tmp_path))
    (tmp_path / "fake.keras").write_bytes(b"not a zip")
    with pytest.raises(UserError, match=r"fake.keras: not a zip archive: .*; train one"):
        stylize_input(stylize_settings(str(tmp_path / "fake.keras"), source, tmp_path))
    (tmp_path / "folder.keras").mkdir()
    with pytest.raises(UserError, match=r"folder.keras: is a folder, not a .keras file; train"):
        stylize_input(stylize_settings(str(tmp_path / "folder.keras"), source, tmp_path))
    truncated = tmp_path / "cut.keras"
    truncated.write_bytes(Path(network).read_bytes()[:1000])
    with pytest.raises(UserError, match=r"cut.keras: a truncated or damaged zip archive"):
        stylize_input(stylize_settings(str(truncated), source, tmp_path))
    assert sorted(os.listdir(tmp_path)) == ["a.png", "cut.keras", "fake.keras", "folder.keras"]


@pytest.mark.parametrize(
    ("script", "argument", "named"),
    [
        ("stylize.py", "--stylize_batch_size=0", "STYLIZE_BATCH_SIZE (--stylize_batch_size)"),
        ("stylize.py", "--network_model=net.h5", "NETWORK_MODEL (--network_model)"),
        ("train_network.py", "--network_style_layers=relu9_9:1", "--network_style_layers"),
        ("train_network.py", "--network_image_size=16", "NETWORK_IMAGE_SIZE"),
        ("stylize.py", "--stylize_video_blend=1.5", "STYLIZE_VIDEO_BLEND (--stylize_video_blend)"),
        ("stylize.py", "--stylize_video_blend=x", "--stylize_video_blend"),
        ("train_network.py", "--network_temporal_weight=-1", "NETWORK_TEMPORAL_WEIGHT"),
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


# --- Paths checked before TensorFlow starts ---------------------------------------------


@pytest.fixture
def refusing_tensorflow(tmp_path_factory) -> Path:
    """A folder for PYTHONPATH whose `tensorflow` package refuses to import, leaving a mark
    `tensorflow/imported` first, so a run shows whether it ever asked for TensorFlow."""
    folder = tmp_path_factory.mktemp("no_tensorflow")
    (folder / "tensorflow").mkdir()
    (folder / "tensorflow" / "__init__.py").write_text(
        "import pathlib\n"
        "pathlib.Path(__file__).with_name('imported').touch()\n"
        'raise ImportError("stylize.py imported TensorFlow before checking its paths")\n'
    )
    return folder


def run_stylize_py(folder, python_path, *arguments: str) -> subprocess.CompletedProcess:
    """`python stylize.py ARGS` run in `folder` (relative paths and settings.py's defaults
    land there), with `python_path` first on the import path."""
    return subprocess.run(
        [sys.executable, os.path.join(REPO_ROOT, "stylize.py"), *arguments],
        cwd=folder,
        env={**os.environ, "PYTHONPATH": str(python_path)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def paths_to_check(folder: Path) -> None:
    """An input image, a folder, a named pipe and a file where a folder belongs."""
    write_image(folder / "in.png", photo(40, 40))
    (folder / "folder.keras").mkdir()
    os.mkfifo(folder / "pipe.keras")
    write_image(folder / "taken.png", photo(32, 32, seed=1))


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (
            ["--stylize_input=missing.jpg"],
            "missing.jpg: no such file or folder; set STYLIZE_INPUT in settings.py",
        ),
        (
            ["--stylize_input=in.png", "--stylize_output=taken.png"],
            "taken.png: is a file, not a folder; set STYLIZE_OUTPUT in settings.py",
        ),
        (
            ["--stylize_input=in.png", "--network_model=none.keras"],
            "none.keras: no such network file; train one with python train_network.py",
        ),
        (
            ["--stylize_input=in.png", "--network_model=folder.keras"],
            "folder.keras: is a folder, not a .keras file; train one",
        ),
        (
            ["--stylize_input=in.png", "--network_model=pipe.keras"],
            "pipe.keras: not a regular file (a pipe or a device); train one",
        ),
    ],
)
def test_stylize_py_says_a_wrong_path_before_importing_tensorflow(
    arguments, message, tmp_path, refusing_tensorflow
):
    paths_to_check(tmp_path)
    names, inputs = sorted(os.listdir(tmp_path)), snapshot(tmp_path)
    result = run_stylize_py(tmp_path, refusing_tensorflow, *arguments)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: {message}"), result.stderr
    assert not (refusing_tensorflow / "tensorflow" / "imported").exists()
    assert sorted(os.listdir(tmp_path)) == names and snapshot(tmp_path) == inputs


def test_stylize_py_with_paths_that_pass_goes_on_to_start_tensorflow(tmp_path, refusing_tensorflow):
    # What makes the test above mean something: the stand-in is the TensorFlow the entry
    # would import, and only the contents of a network file are left for after it.
    paths_to_check(tmp_path)
    (tmp_path / "junk.keras").write_bytes(b"not a network")
    arguments = ["--stylize_input=in.png", "--network_model=junk.keras"]
    result = run_stylize_py(tmp_path, refusing_tensorflow, *arguments)
    assert result.returncode != 0
    assert "imported TensorFlow before checking its paths" in result.stderr
    assert (refusing_tensorflow / "tensorflow" / "imported").exists()
    assert not (tmp_path / "output").exists()


# --- Never losing a user's work ----------------------------------------------------------


def snapshot(folder) -> dict[str, bytes]:
    """Every file below `folder` by relative path: what must stay as it was."""
    folder = Path(folder)
    return {
        str(path.relative_to(folder)): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


@functools.cache
def _stylizer(network: str) -> Stylizer:
    return Stylizer(load_network(network))


def alone(network, path: str) -> np.ndarray:
    """What the network makes of the image at `path`, rounded as a written result is."""
    stylised = _stylizer(network)(load_image(path, "X")[None])[0]
    return np.clip(np.rint(stylised), 0, 255)


def write_clip(path, frames: int, height: int = 48, width: int = 64, fps: float = 12) -> str:
    """A real H.264 .mp4 with its index first (as phones and the web write them), so that a
    file cut short still plays up to the cut."""
    pictures = (photo(height, width, seed=index) for index in range(frames))
    return h264_clip(path, pictures, fps, faststart=True)


def count_frames(path: str) -> int:
    reader = imageio.get_reader(path)
    frames = sum(1 for _ in reader.iter_data())
    reader.close()
    return frames


@pytest.mark.slow
def test_the_input_folder_as_output_folder_never_replaces_an_input(network, tmp_path, capsys):
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    write_image(folder / "a.jpg", photo(40, 48, seed=1))
    write_image(folder / "b.png", photo(40, 48, seed=2))
    write_image(folder / "c.webp", photo(44, 40, seed=3))
    write_image(folder / "sub" / "d.jpg", photo(36, 50, seed=4))
    originals = snapshot(folder)
    first = stylize_input(stylize_settings(network, folder, folder), stream=sys.stdout)
    results = ["a-stylized.jpg", "b-stylized.png", "c-stylized.png", "sub/d-stylized.jpg"]
    assert sorted(os.path.relpath(path, folder) for path in first.outputs) == results
    assert {name: snapshot(folder)[name] for name in originals} == originals
    np.testing.assert_allclose(
        load_image(str(folder / "c-stylized.png"), "X"), alone(network, str(folder / "c.webp"))
    )
    # A re-run (the folder spelt another way) replaces its own results and reads none of
    # them: no a-stylized-stylized.jpg.
    capsys.readouterr()
    second = stylize_input(stylize_settings(network, folder, folder / "sub" / ".."))
    assert sorted(os.path.relpath(path, folder) for path in second.outputs) == results
    assert sorted(snapshot(folder)) == sorted([*originals, *results])
    assert {name: snapshot(folder)[name] for name in originals} == originals
    assert "left out 4 earlier result(s) named *-stylized.*" in capsys.readouterr().out


@pytest.mark.slow
def test_a_single_image_or_video_into_its_own_folder_is_written_beside_it(network, tmp_path):
    image = write_image(tmp_path / "me.jpg", photo(40, 44, seed=5))
    clip = write_clip(tmp_path / "clip.mp4", frames=5)
    originals = snapshot(tmp_path)
    for _ in range(2):  # the second run replaces the first one's results
        assert stylize_input(stylize_settings(network, image, tmp_path)).outputs == [
            str(tmp_path / "me-stylized.jpg")
        ]
        assert stylize_input(stylize_settings(network, clip, tmp_path)).outputs == [
            str(tmp_path / "clip-stylized.mp4")
        ]
    assert sorted(os.listdir(tmp_path)) == [
        "clip-stylized.mp4",
        "clip.mp4",
        "me-stylized.jpg",
        "me.jpg",
    ]
    assert {name: snapshot(tmp_path)[name] for name in originals} == originals
    assert count_frames(str(tmp_path / "clip-stylized.mp4")) == 5


@pytest.mark.slow
def test_an_output_folder_inside_the_input_folder_is_never_read_back(network, tmp_path, capsys):
    folder = tmp_path / "album"
    folder.mkdir()
    write_image(folder / "a.jpg", photo(40, 48, seed=1))
    write_image(folder / "b.png", photo(40, 48, seed=2))
    originals = snapshot(folder)
    for _ in range(3):
        result = stylize_input(stylize_settings(network, folder, folder / "stylized"))
        assert sorted(result.outputs) == [str(folder / "stylized" / n) for n in ("a.jpg", "b.png")]
    assert sorted(snapshot(folder)) == ["a.jpg", "b.png", "stylized/a.jpg", "stylized/b.png"]
    assert {name: snapshot(folder)[name] for name in originals} == originals
    assert "left out 2 file(s) inside STYLIZE_OUTPUT" in capsys.readouterr().out


@pytest.mark.slow
def test_names_are_unique_within_a_run(network, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    names = ["a.jpg", "a.png", "a.webp", "a.tif", "b.tif", "b.tiff", "C.png", "c.gif"]
    for seed, name in enumerate(names):  # each its own size, so a mix-up shows
        write_image(folder / name, photo(36 + 2 * seed, 40, seed=seed))
    result = stylize_input(stylize_settings(network, folder, tmp_path / "out"))
    # A kept format keeps its plain name; one converted to PNG whose name is taken keeps its
    # old extension in its name. C.png and c.png would be one file on macOS or a USB disk.
    expected = {
        "C.png": "C.png",
        "a.jpg": "a.jpg",
        "a.png": "a.png",
        "a.tif": "a.tif.png",
        "a.webp": "a.webp.png",
        "b.tif": "b.png",
        "b.tiff": "b.tiff.png",
        "c.gif": "c.gif.png",
    }
    written = dict(
        zip(sorted(names), (os.path.basename(path) for path in result.outputs), strict=True)
    )
    assert written == expected
    assert sorted(os.listdir(tmp_path / "out")) == sorted(expected.values())
    for source, target in expected.items():
        written = load_image(str(tmp_path / "out" / target), "X")
        wanted = alone(network, str(folder / source))
        assert written.shape == wanted.shape, (source, target)
        if target.endswith(".png"):  # lossless; JPEG's loss is large on this noisy texture
            np.testing.assert_allclose(written, wanted, atol=1, err_msg=target)


def test_a_result_never_lands_on_an_input_through_a_link(network, tmp_path):
    # The user's photos live in out/; the album links to them, by a hard and a symbolic link.
    (tmp_path / "out").mkdir()
    (tmp_path / "album").mkdir()
    write_image(tmp_path / "out" / "x.jpg", photo(40, 48, seed=1))
    write_image(tmp_path / "out" / "y.png", photo(40, 48, seed=2))
    os.link(tmp_path / "out" / "x.jpg", tmp_path / "album" / "x.jpg")
    os.symlink(tmp_path / "out" / "y.png", tmp_path / "album" / "y.png")
    originals = snapshot(tmp_path / "out")
    result = stylize_input(stylize_settings(network, tmp_path / "album", tmp_path / "out"))
    assert sorted(result.outputs) == [str(tmp_path / "out" / n) for n in ("x-2.jpg", "y-2.png")]
    assert {name: snapshot(tmp_path / "out")[name] for name in originals} == originals


# --- Memory --------------------------------------------------------------------------


def budget_for(pixels: int, width: int = 2) -> int:
    """Available memory, bytes, for which images of `pixels` pixels just fit."""
    from neural_style.optimize import memory

    return math.ceil(bytes_per_pixel(width) * pixels / memory.USABLE_FRACTION) + 1


def free_memory_for(pixels: int, source: str = "") -> object:
    """A memory budget (optimize.memory.MemoryBudget) for `pixels` pixels (budget_for), set
    by the free memory or by `source`."""
    from neural_style.optimize import memory

    return memory.MemoryBudget(
        budget_for(pixels), source or memory.FREE_MEMORY, memory.FREE_MEMORY_FIX
    )


def test_under_an_address_space_limit_a_pixel_counts_more(tmp_path, monkeypatch):
    from neural_style.feedforward.stylizing.fit import ADDRESS_SPACE_PER_BYTE, MemoryFit
    from neural_style.optimize import memory

    settings = stylize_settings("unused.keras", tmp_path, tmp_path / "out")
    pixels = 1000 * 750
    monkeypatch.setattr(memory, "memory_budget", lambda: free_memory_for(pixels))
    free = MemoryFit(settings, width=2, stream=sys.stdout)
    assert free.target_size((750, 1000), "a.jpg") == (750, 1000)
    limited = f"{memory.ADDRESS_SPACE_SOURCE} of 4.0 GiB"
    monkeypatch.setattr(memory, "memory_budget", lambda: free_memory_for(pixels, limited))
    fit = MemoryFit(settings, width=2, stream=sys.stdout)
    assert fit.estimate((750, 1000)) == ADDRESS_SPACE_PER_BYTE * free.estimate((750, 1000))
    height, width = fit.target_size((750, 1000), "a.jpg")
    assert height * width <= pixels / ADDRESS_SPACE_PER_BYTE
    assert width > 1000 / ADDRESS_SPACE_PER_BYTE**0.5 - 2  # as large as the room allows


def test_the_estimate_errs_high_for_a_12_megapixel_photo():
    # Measured: a 4000x3000 photo took about 11.5 GB at the paper's width 32.
    assert 11.5e9 < bytes_per_pixel(32) * 4000 * 3000 < 14.5e9
    assert bytes_per_pixel(32, preserve_colors=True) > bytes_per_pixel(32) > bytes_per_pixel(8)


@pytest.mark.slow
def test_an_image_too_large_for_the_memory_is_shrunk_or_refused(
    network, tmp_path, monkeypatch, capsys
):
    from neural_style.optimize import memory

    source = write_image(tmp_path / "big.png", photo(64, 96, seed=3))
    original = Path(source).read_bytes()
    # Memory for 72x48 pixels only.
    monkeypatch.setattr(memory, "memory_budget", lambda: free_memory_for(72 * 48))
    shrunk = stylize_input(stylize_settings(network, source, tmp_path / "auto"))
    assert load_image(shrunk.outputs[0], "X").shape == (48, 72, 3)
    notes = [line for line in capsys.readouterr().out.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "96x64 needs about" in notes[0] and "at 72x48" in notes[0]
    assert "STYLIZE_MAX_SIZE" in notes[0]
    # Asked for its own size explicitly, the run is refused, and says what fits.
    with pytest.raises(UserError) as refused:
        stylize_input(stylize_settings(network, source, tmp_path / "asked", stylize_max_size=96))
    message = str(refused.value)
    assert message.startswith("STYLIZE_MAX_SIZE (--stylize_max_size): ")
    assert "the largest that fits is 72 pixels (--stylize_max_size=72)" in message
    assert "\n" not in message and not os.path.exists(tmp_path / "asked")
    # ...and that size does fit.
    fitted = stylize_input(
        stylize_settings(network, source, tmp_path / "asked", stylize_max_size=72)
    )
    assert load_image(fitted.outputs[0], "X").shape == (48, 72, 3)
    monkeypatch.setattr(memory, "memory_budget", lambda: free_memory_for(20 * 20))
    with pytest.raises(UserError, match=r"no size fits: close other programs"):
        stylize_input(stylize_settings(network, source, tmp_path / "none"))
    assert Path(source).read_bytes() == original


def test_a_folder_that_would_not_fit_is_refused_before_anything_is_written(
    network, tmp_path, monkeypatch
):
    from neural_style.optimize import memory

    folder = tmp_path / "album"
    folder.mkdir()
    write_image(folder / "a_small.png", photo(40, 40, seed=1))
    write_image(folder / "b_large.png", photo(64, 96, seed=2))
    (tmp_path / "out").mkdir()
    write_image(tmp_path / "out" / "a_small.png", photo(40, 40, seed=9))  # an earlier result
    earlier = snapshot(tmp_path / "out")
    monkeypatch.setattr(memory, "memory_budget", lambda: free_memory_for(72 * 48))
    with pytest.raises(UserError, match=r"b_large.png at 96x64 needs about .* fits is 72 pix"):
        stylize_input(stylize_settings(network, folder, tmp_path / "out", stylize_max_size=100))
    assert snapshot(tmp_path / "out") == earlier


def test_a_batch_that_would_not_fit_is_split(network, tmp_path, monkeypatch, capsys):
    from neural_style.optimize import memory

    folder = tmp_path / "album"
    folder.mkdir()
    for index in range(5):
        write_image(folder / f"p{index}.png", photo(40, 48, seed=index))
    monkeypatch.setattr(memory, "memory_budget", lambda: free_memory_for(int(40 * 48 * 2.5)))
    result = stylize_input(
        stylize_settings(network, folder, tmp_path / "out", stylize_batch_size=4),
        stream=sys.stdout,
    )
    out = capsys.readouterr().out
    assert "note: 4 images of 48x40 at once need about" in out and "stylising 2 at a time" in out
    assert len(result.outputs) == 5
    for index in range(5):
        np.testing.assert_allclose(
            load_image(str(tmp_path / "out" / f"p{index}.png"), "X"),
            alone(network, str(folder / f"p{index}.png")),
            atol=1,
        )


def test_running_out_of_memory_is_one_line_saying_what_to_set(tmp_path):
    from neural_style.feedforward.stylizing.fit import DoesNotFit, MemoryFit

    settings = stylize_settings("unused.keras", tmp_path, tmp_path / "out", stylize_batch_size=3)
    fit = MemoryFit(settings, width=32, stream=sys.stdout)
    with pytest.raises(DoesNotFit) as refused, fit.memory_guard("big.jpg", (3000, 4000), 3):
        np.empty((2**30, 2**30), np.float32)  # a real MemoryError: 4 EiB
    message = str(refused.value)
    assert message.startswith(
        "big.jpg: stylising it at 4000x3000 (3 at once) ran out of the memory this process may use"
    )
    assert message.endswith(
        "; set STYLIZE_BATCH_SIZE to 1 (--stylize_batch_size=1), or set STYLIZE_MAX_SIZE in "
        "settings.py or pass --stylize_max_size=PIXELS below 4000 (e.g. --stylize_max_size=2000)"
    )
    assert "\n" not in message


def _limit_address_space(limit: int):
    def limit_it() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    return limit_it


@pytest.mark.slow
def test_a_12_megapixel_photo_beyond_ulimit_v_is_one_line_and_writes_nothing(tmp_path):
    from PIL import Image

    from neural_style.feedforward.model import build_transformer

    network = str(tmp_path / "network.keras")
    build_transformer(width=32, seed=1).save(network)  # the paper's width
    rows, columns = np.mgrid[0:3000, 0:4000]
    gradient = np.stack([columns * 255 // 4000, rows * 255 // 3000, (rows + columns) % 256], -1)
    Image.fromarray(gradient.astype(np.uint8)).save(tmp_path / "big.jpg", quality=90)
    (tmp_path / "out").mkdir()
    write_image(tmp_path / "out" / "earlier.png", photo(40, 40))  # an earlier result
    before = snapshot(tmp_path)
    # 8 GiB of address space: TensorFlow starts, and the photo at its own size does not fit
    # (about 13 GiB). Before, a 114-line traceback from TensorFlow's allocator.
    result = subprocess.run(
        [
            *(sys.executable, os.path.join(REPO_ROOT, "stylize.py")),
            f"--network_model={network}",
            f"--stylize_input={tmp_path / 'big.jpg'}",
            f"--stylize_output={tmp_path / 'out'}",
            "--stylize_max_size=4000",
        ],
        cwd=REPO_ROOT,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
        preexec_fn=_limit_address_space(8 * 2**30),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), lines[:20]
    assert str(tmp_path / "big.jpg") in lines[0] and "--stylize_max_size=" in lines[0]
    assert snapshot(tmp_path) == before  # nothing written, the earlier result kept


# --- Damaged videos ----------------------------------------------------------------------


@pytest.mark.slow
def test_a_truncated_video_is_stylised_with_a_warning_giving_the_frame_counts(
    network, tmp_path, capsys
):
    whole = write_clip(tmp_path / "whole.mp4", frames=24)
    source = tmp_path / "cut.mp4"
    source.write_bytes(Path(whole).read_bytes()[: os.path.getsize(whole) // 2])
    original = source.read_bytes()
    result = stylize_input(stylize_settings(network, source, tmp_path / "out"), stream=sys.stdout)
    written = count_frames(result.outputs[0])
    assert 0 < written < 24
    warnings = [line for line in capsys.readouterr().out.splitlines() if "warning" in line]
    assert warnings == [
        f"warning: {source}: only {written} of the 24 frames its header announces could be "
        f"decoded; the file is truncated or damaged, and the output has those {written}"
    ]
    assert source.read_bytes() == original


@pytest.mark.parametrize(
    "content", [b"", b"these are my holiday notes, not a video\n" * 50], ids=["empty", "text"]
)
def test_a_file_that_is_not_a_video_gives_one_short_line(network, tmp_path, content):
    source = tmp_path / "clip.mp4"
    source.write_bytes(content)
    with pytest.raises(UserError) as raised:
        stylize_input(stylize_settings(network, source, tmp_path / "out"))
    message = str(raised.value)
    assert message.startswith(f"{source}: cannot read the video (")
    assert "set STYLIZE_INPUT" in message
    assert "\n" not in message and len(message) - len(str(source)) < 200, message
    assert "configuration:" not in message and "ffmpeg version" not in message
    assert source.read_bytes() == content and not os.path.exists(tmp_path / "out" / "clip.mp4")


# --- Write failures ------------------------------------------------------------------------


def fill(folder) -> None:
    """Fills the file system holding `folder` to the last byte."""
    with open(folder / "filler", "wb", buffering=0) as filler, contextlib.suppress(OSError):
        while True:
            filler.write(b"\0" * 4096)


@pytest.mark.root
def test_write_failures_name_stylize_output_and_leave_no_half_file(network, tmp_path):
    image = write_image(tmp_path / "me.png", photo(40, 44))
    clip = write_clip(tmp_path / "clip.mp4", frames=12)
    inputs = snapshot(tmp_path)
    with tmpfs(tmp_path / "disk") as disk:
        (disk / "out").mkdir()
        write_image(disk / "out" / "me.png", photo(40, 44, seed=8))  # an earlier result
        earlier = snapshot(disk)
        remount(disk, read_only=True)
        for source in (image, clip):
            with pytest.raises(UserError) as raised:
                stylize_input(stylize_settings(network, source, disk / "out"))
            message = str(raised.value)
            assert "cannot write the file: the file system is read-only" in message, message
            assert "\n" not in message
            assert "set STYLIZE_OUTPUT in settings.py" in message and "OUTPUT_IMAGE" not in message
        assert snapshot(disk) == earlier
        remount(disk, read_only=False)
        fill(disk)
        with pytest.raises(UserError) as raised:
            stylize_input(stylize_settings(network, clip, disk / "out"))
        message = str(raised.value)
        assert message.startswith(f"{disk / 'out' / 'clip.mp4'}: cannot write the file: the disk")
        assert "set STYLIZE_OUTPUT in settings.py" in message and "\n" not in message
        (disk / "filler").unlink()
        assert snapshot(disk) == earlier  # no clip.mp4, no partial file
    assert snapshot(tmp_path) == inputs


# --- Stopping ----------------------------------------------------------------------------


def _start_stylize_py(folder, name: str, *arguments: str) -> subprocess.Popen:
    """`python stylize.py ARGS` as a user runs it, its output in folder/<name>.out/.err."""
    with open(folder / f"{name}.out", "w") as out, open(folder / f"{name}.err", "w") as err:
        return subprocess.Popen(
            [sys.executable, os.path.join(REPO_ROOT, "stylize.py"), *arguments],
            cwd=REPO_ROOT,
            env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
            stdout=out,
            stderr=err,
        )


class Run(NamedTuple):
    returncode: int
    stdout: str
    stderr: str
    folder: Path  # where its inputs and outputs are
    inputs: dict[str, bytes]  # its inputs' bytes before the run


# A signal for each run that is stopped: the folder of images, the video.
STOP_SIGNALS = {"folder": signal.SIGTERM, "video": signal.SIGHUP}


STYLIZE_PY_TESTS = (
    "test_stylize_py_runs_end_to_end",
    "test_a_signal_stops_the_run_with_one_line_and_its_status",
    "test_a_signal_keeps_every_finished_image_of_a_folder",
    "test_a_signal_leaves_no_partial_video",
)


@pytest.fixture(scope="module", autouse=True)
def stylize_py_started(request, tmp_path_factory):
    """Three `python stylize.py` runs at once, to share TensorFlow's start-up time: one
    image, run to the end; a folder of 30 images, stopped by SIGTERM after its first result;
    a video, stopped by SIGHUP once its partial file exists. Started before this module's
    first test, so that they run beside the tests above rather than alone; a thread sends
    each stop as its run begins to write. (runs, folders, inputs, the thread, its errors)."""
    if not any(is_selected(request, name) for name in STYLIZE_PY_TESTS):
        yield None
        return
    network = request.getfixturevalue("network")
    folders = {name: tmp_path_factory.mktemp(name) for name in ("image", "folder", "video")}
    write_image(folders["image"] / "in.jpg", photo(40, 44))
    (folders["folder"] / "album").mkdir()
    for index in range(30):
        write_image(folders["folder"] / "album" / f"p{index:02d}.png", photo(320, 320, seed=index))
    write_clip(folders["video"] / "clip.mp4", frames=40, height=240, width=320)
    inputs = {name: snapshot(folder) for name, folder in folders.items()}
    sources = {"image": "in.jpg", "folder": "album", "video": "clip.mp4"}
    runs = {
        name: _start_stylize_py(
            folders[name],
            name,
            f"--network_model={network}",
            "--stylize_batch_size=1",
            f"--stylize_input={folders[name] / sources[name]}",
            f"--stylize_output={folders[name] / 'out'}",
        )
        for name in folders
    }
    errors: list[str] = []
    stopper = threading.Thread(target=_stop_as_they_write, args=(runs, folders, errors))
    stopper.start()
    yield runs, folders, inputs, stopper, errors
    stopper.join(130)
    for process in runs.values():
        if process.poll() is None:
            process.kill()
            process.wait()


def _stop_as_they_write(runs: dict, folders: dict, errors: list[str]) -> None:
    """Sends each stopped run its signal once it has begun to write; a run that ends
    first (or does not write within two minutes) is killed, and said in `errors`."""
    ready = {  # when each stopped run has begun to write
        "folder": lambda: (
            (folders["folder"] / "out").is_dir()
            and any(not name.startswith(".") for name in os.listdir(folders["folder"] / "out"))
        ),
        "video": lambda: (folders["video"] / "out" / ".clip.mp4.partial.mp4").exists(),
    }
    deadline = time.monotonic() + 120
    while ready:
        for name in list(ready):
            if ready[name]():
                runs[name].send_signal(STOP_SIGNALS[name])
                del ready[name]
            elif runs[name].poll() is not None or time.monotonic() > deadline:
                runs[name].kill()
                error = (folders[name] / f"{name}.err").read_text()[-2000:]
                errors.append(f"{name}: ended before it could be stopped: {error}")
                del ready[name]
        time.sleep(0.005)


@pytest.fixture(scope="module")
def stylize_py_runs(stylize_py_started) -> dict[str, Run]:
    """How each of the three runs ended."""
    runs, folders, inputs, stopper, errors = stylize_py_started
    stopper.join(130)
    if errors:
        pytest.fail(errors[0])
    return {
        name: Run(
            process.wait(timeout=120),
            (folders[name] / f"{name}.out").read_text(),
            (folders[name] / f"{name}.err").read_text(),
            folders[name],
            inputs[name],
        )
        for name, process in runs.items()
    }


@pytest.mark.slow
def test_stylize_py_runs_end_to_end(stylize_py_runs):
    run = stylize_py_runs["image"]
    assert run.returncode == 0, run.stderr[-2000:]
    assert os.path.isfile(run.folder / "out" / "in.jpg")
    assert "wrote 1 file(s)" in run.stdout


@pytest.mark.parametrize("name", ["folder", "video"])
def test_a_signal_stops_the_run_with_one_line_and_its_status(stylize_py_runs, name):
    run = stylize_py_runs[name]
    errors = [line for line in run.stderr.splitlines() if line.strip()]
    assert run.returncode == 128 + STOP_SIGNALS[name], errors
    # stopping.py's notice that the signal was heard, saying what the stop keeps (before,
    # "then saving", although a video keeps nothing), what was kept, and the exit's line.
    signal_name = STOP_SIGNALS[name].name
    assert errors[-1] == f"interrupted ({signal_name})", errors
    assert errors[-2] == KEPT[name](run), errors
    assert set(errors[:-2]) <= {f"{signal_name}: {NOTICES[name]}"}, errors
    now = snapshot(run.folder)
    assert {key: now.get(key) for key in run.inputs} == run.inputs


NOTICES = {
    "folder": "stopping once the images in hand are written; every finished image is kept",
    "video": "stopping after the frames in hand; the unfinished video is not kept",
}
KEPT = {
    "folder": lambda run: (
        f"stopped: kept the {len(os.listdir(run.folder / 'out'))} finished file(s) in "
        f"{run.folder / 'out'}"
    ),
    "video": lambda run: "stopped: no video was written (an unfinished one is never kept)",
}


def test_a_signal_keeps_every_finished_image_of_a_folder(stylize_py_runs):
    out = stylize_py_runs["folder"].folder / "out"
    written = sorted(os.listdir(out))
    # Each result written is whole, none is left half-written under a hidden name, and the
    # run stopped before the end.
    assert 1 <= len(written) < 30 and not [name for name in written if name.startswith(".")]
    for name in written:
        assert load_image(str(out / name), "X").shape == (320, 320, 3)


def test_a_signal_leaves_no_partial_video(stylize_py_runs):
    # No file at the final name, and the hidden partial file removed.
    assert os.listdir(stylize_py_runs["video"].folder / "out") == []


class LateReversedBatches:
    """A BatchExecutor that gives each batch's results back one submit late, in reverse
    order, as a cluster's workers may: "stylising" halves the pixels."""

    def __init__(self):
        self.held = []

    def submit(self, batch):
        finished, self.held = self.held, [(key, frame * 0.5) for key, frame in batch]
        return finished[::-1]

    def drain(self):
        finished, self.held = self.held, []
        return finished[::-1]


def test_a_video_s_frames_are_written_in_order_whatever_order_they_come_back_in():
    from neural_style.feedforward.stylizing.video import _stylised_frames

    frames = np.arange(7 * 4 * 4 * 3, dtype=np.float32).reshape(7, 4, 4, 3) % 251
    batches = [frames[0:3], frames[3:6], frames[6:7]]
    executor = LateReversedBatches()
    written = list(_stylised_frames(batches, executor, "clip.mp4", 7, io.StringIO()))
    assert len(written) == 7
    expected = np.clip(np.rint(frames * 0.5), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(np.stack(written), expected)
