"""What the tests share besides fixtures: tiny VGG-19 .mat files in the real layout, small
photo-like images, toy run settings, and running train.py as a user does.

Tests import it as `tests.support`; conftest.py holds only the fixtures built from it.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import scipy.io
from PIL import Image

from neural_style.synthetic import synthetic_vgg19_variables

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


TINY_WIDTHS = (4, 6, 8, 8, 8)  # conv output channels per block of the test networks


TINY_OPTIONS = {"widths": TINY_WIDTHS, "fc_width": 8, "num_classes": 5}


def tiny_variables(version: str = "new", **options) -> dict:
    return synthetic_vgg19_variables(version=version, **{**TINY_OPTIONS, **options})


def save_mat(path, variables: dict) -> str:
    scipy.io.savemat(str(path), variables, oned_as="row")
    return str(path)


def set_conv_weights(variables: dict, name: str, kernel: np.ndarray, bias: np.ndarray) -> None:
    """Replace one conv layer's [filters, biases] in a variables dict from tiny_variables."""
    for layer in variables["layers"].flat:
        if str(layer["name"][0, 0]) == name:
            layer["weights"][0, 0][0, 0] = kernel
            layer["weights"][0, 0][0, 1] = bias
            return
    raise KeyError(name)


def default_loss_weights(tv_weight: float = 0.0):
    """The loss weights of settings.py's defaults (the paper's layers), with `tv_weight`."""
    from neural_style.losses import LossWeights

    return LossWeights(
        content_layers=(("relu4_2", 0.5), ("relu5_2", 0.5)),
        style_layers=tuple((f"relu{block}_1", 0.2) for block in range(1, 6)),
        alpha=1.0,
        beta=500.0,
        tv_weight=tv_weight,
    )


def photo(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth, photo-like float32 RGB image in 0..255 with some texture."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([x / width, y / height, (x + y) / (width + height)], axis=-1) * 200 + 20
    return np.clip(base + rng.normal(0, 10, base.shape), 0, 255).astype(np.float32)


def write_image(path, array: np.ndarray) -> str:
    Image.fromarray(np.clip(array, 0, 255).astype(np.uint8)).save(str(path))
    return str(path)


def tiny_settings(tmp_path, tiny_mat, image_pair, **overrides):
    """Settings for a toy run: the tiny network, small images, a few steps, into tmp_path."""
    from neural_style.config import Settings
    from tests import toy_settings

    content, style = image_pair
    values = dict(
        content_image=content,
        style_image=style,
        output_image=str(tmp_path / "out" / "result"),
        vgg_model_path=tiny_mat,
        image_width=40,
        image_height=0,
        train_steps=5,
        snapshot_every=2,
        print_every=1,
        learning_rate=5.0,
        precision="float32",  # the same arithmetic on every machine, bfloat16 unit or not
    )
    return Settings.from_module(toy_settings, **{**values, **overrides})


def run_train(*args: str, cwd: str = REPO_ROOT, timeout: int = 120) -> subprocess.CompletedProcess:
    """`python train.py ARGS` in a subprocess, as a user runs it."""
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run(
        [sys.executable, os.path.join(REPO_ROOT, "train.py"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def saved_checkpoint(path: str) -> SimpleNamespace:
    """What a run's checkpoint holds (stage, step, optimizer_state), read as it is, for
    tests that look inside one (the run itself reads them through load_checkpoint's
    checks, which need the run's stage sizes)."""
    with np.load(path, allow_pickle=False) as data:
        state = {key.split("/", 1)[1]: data[key] for key in data.files if key.startswith("state/")}
        return SimpleNamespace(
            stage=int(data["stage"]), step=int(data["step"]), optimizer_state=state
        )


# --- real file-system faults -----------------------------------------------------------------


def mount(*arguments: str) -> None:
    """`mount ARGUMENTS`; a test that needs it fails (never skips) where it cannot mount."""
    try:
        result = subprocess.run(["mount", *arguments], capture_output=True, text=True, check=False)
    except FileNotFoundError:
        pytest.fail("mount is not installed; the fault tests need util-linux")
    if result.returncode:
        pytest.fail(
            f"mount {' '.join(arguments)} failed ({result.stderr.strip()}); the fault tests "
            "need root or CAP_SYS_ADMIN to mount a small tmpfs"
        )


@contextlib.contextmanager
def tmpfs(folder, size: str = "1m", *, read_only: bool = False):
    """A fresh tmpfs of `size` mounted at `folder`, unmounted afterwards: real EROFS and
    ENOSPC, which root cannot bypass as it bypasses permissions."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    mode = ",ro" if read_only else ""
    mount("-t", "tmpfs", "-o", f"size={size},mode=0755{mode}", "tmpfs", str(folder))
    try:
        yield folder
    finally:
        if Path.cwd().is_relative_to(folder):  # a test that went in would keep it busy
            os.chdir(folder.parent)
        subprocess.run(["umount", "-l", str(folder)], capture_output=True, check=False)


def remount(folder, *, read_only: bool) -> None:
    """Make the tmpfs at `folder` read-only (writes fail with EROFS, even as root) or
    writable again."""
    mount("-o", "remount,ro" if read_only else "remount,rw", str(folder))


# --- tiny clips made with the ffmpeg that imageio-ffmpeg ships --------------------------------


def ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def ffmpeg(*arguments: str, stdin: bytes | None = None) -> None:
    subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-nostats", "-v", "error", "-y", *arguments],
        input=stdin,
        capture_output=True,
        check=True,
        timeout=60,
    )


def pattern_clip(path, *, frames=10, rate=10, size="48x36", audio_seconds=None) -> str:
    """ffmpeg's moving test pattern as an H.264 .mp4, with a 440 Hz tone if asked."""
    # Each source lasts its own time: the file as long as the longer, as a camera's may be.
    pattern = f"testsrc2=size={size}:rate={rate}:duration={frames / rate}"
    arguments = ["-f", "lavfi", "-i", pattern]
    if audio_seconds:
        arguments += ["-f", "lavfi", "-i", f"sine=frequency=440:duration={audio_seconds}"]
        arguments += ["-c:a", "aac"]
    arguments += ["-c:v", "libx264", "-pix_fmt", "yuv420p"]
    ffmpeg(*arguments, "-movflags", "+faststart", str(path))
    return str(path)


def header(path) -> str:
    """ffmpeg's description of the file at `path`."""
    command = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path)]
    return subprocess.run(command, capture_output=True, text=True, timeout=60).stderr


def streams(path) -> list[str]:
    """The kinds of the streams in `path`: ["Video", "Audio"]."""
    return re.findall(r"Stream #0:\d+\S*: (\w+):", header(path))


def stylize_settings(network: str, source, output, **overrides):
    """stylize.py's NetworkSettings: the network at `network` applied to `source`."""
    from neural_style.feedforward.config import NetworkSettings
    from tests import toy_settings

    values = {"network_model": network, "stylize_input": str(source), "stylize_output": str(output)}
    return NetworkSettings.from_module(toy_settings, **{**values, **overrides})
