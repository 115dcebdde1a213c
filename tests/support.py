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

from neural_style.vgg.synthetic import synthetic_vgg19_variables

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


# Loss layers of the first two blocks only, as settings overrides, for runs whose check does
# not depend on the layers: every run (and stage, and frame) traces its loss afresh, and a
# network that stops at relu2_1 traces in about half the time of the paper's (relu5_2).
FEW_LAYERS = {
    "content_loss_layers": (("relu2_1", 1.0),),
    "style_loss_layers": (("relu1_1", 0.5), ("relu2_1", 0.5)),
}
# FEW_LAYERS as train.py's flags, for the runs in a subprocess.
FEW_LAYER_FLAGS = (
    "--content_loss_layers=relu2_1:1.0",
    "--style_loss_layers=relu1_1:0.5,relu2_1:0.5",
)


def default_loss_weights(tv_weight: float = 0.0):
    """The loss weights of settings.py's defaults (the paper's layers), with `tv_weight`."""
    from neural_style.losses.gatys import LossWeights

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


def write_image_pair(folder) -> tuple[str, str]:
    """(content, style) JPEG and PNG paths in `folder`: the images of conftest's
    image_pair, for a fixture of wider scope than a test."""
    content = write_image(Path(folder) / "content.jpg", photo(40, 48, seed=1))
    stripes = np.zeros((48, 48, 3), np.float32)
    stripes[:, ::4] = (250, 60, 20)
    stripes[::6, :] = (20, 80, 240)
    return content, write_image(Path(folder) / "style.png", stripes)


def one_line_refusal(build) -> str:
    """The message of the UserError that `build()` raises, checked to be one line."""
    from neural_style.errors import UserError

    with pytest.raises(UserError) as raised:
        build()
    message = str(raised.value)
    assert "\n" not in message
    return message


def tiny_settings(tmp_path, tiny_mat, image_pair, **overrides):
    """Settings for a toy run: the tiny network, small images, a few steps, into tmp_path."""
    from neural_style.settings.gatys import Settings
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


def h264_clip(path, frames, fps: float = 10, *, faststart: bool = False) -> str:
    """`frames` ([H, W, 3] arrays, clipped to 0..255) as an H.264 .mp4 at `fps`; with
    `faststart`, its index first (as phones and the web write them)."""
    import imageio.v2 as imageio

    extra = {"ffmpeg_params": ["-movflags", "+faststart"]} if faststart else {}
    options = {"fps": fps, "codec": "libx264", "macro_block_size": 2, **extra}
    with imageio.get_writer(str(path), **options) as writer:
        for frame in frames:
            writer.append_data(np.clip(frame, 0, 255).astype(np.uint8))
    return str(path)


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
    from neural_style.settings.network import NetworkSettings
    from tests import toy_settings

    values = {"network_model": network, "stylize_input": str(source), "stylize_output": str(output)}
    return NetworkSettings.from_module(toy_settings, **{**values, **overrides})


# --- in-process runs ----------------------------------------------------------------------------


def stop_after(step: int):
    """An observer that asks the run for a stop, as a Ctrl-C heard by the loop would, once
    step `step` has been taken: the run saves that step and raises stopping.Stopped."""
    import signal

    from neural_style import stopping
    from neural_style.gatys.events import Observer

    class StopAfter(Observer):
        def step(self, event) -> None:
            if event.step == step:
                stopping.request(signal.SIGINT)

    return StopAfter()


def stop_in_frame(frame: int):
    """An observer that asks a video run for a stop, as a Ctrl-C would, at the first step of
    frame `frame` (1-based): the frames before it are finished, that one is not."""
    from neural_style import stopping
    from neural_style.gatys.events import Observer

    class StopInFrame(Observer):
        def step(self, event) -> None:
            if event.group.jobs[0].photo.number == frame and event.step == 1:
                stopping.request()

    return StopInFrame()


# --- in-process runs without the loss plot ----------------------------------------------------


def files_only_observers(settings, stream) -> list:
    """The observers `python train.py` attaches (run.standard_observers) but the loss
    plot: each plot is a matplotlib child process of about a second, drawn at every
    snapshot and waited for, which costs more than a toy run itself. For runs whose test
    never looks at `<prefix>-losses.png`; test_plots.py and the train.py runs draw it."""
    from neural_style.gatys import run

    return without_plots(run.standard_observers(settings, stream))


def without_plots(observers: list) -> list:
    """`observers` but the loss plots (observers.plots.LossPlots)."""
    from neural_style.gatys.observers.plots import LossPlots

    return [observer for observer in observers if not isinstance(observer, LossPlots)]


def stylize_without_plots(settings, *extra) -> tuple:
    """run.stylize(settings) with files_only_observers and `extra` observers after them:
    (its result, what it printed)."""
    import io

    from neural_style.gatys import run

    stream = io.StringIO()
    observers = [*files_only_observers(settings, stream), *extra]
    return run.stylize(settings, stream, observers=observers), stream.getvalue()


# --- a slow subprocess started before its module's tests ---------------------------------------


class StartedEarly:
    """A command running in the background, its output going to files in `folder`.

    A module fixture starts it before the module's first test, so that a process which
    would run alone (one core busy, one idle) runs beside the in-process tests instead; the
    test that checks it calls `finish()`. See `is_selected`.
    """

    def __init__(self, command: list[str], folder: Path, *, cwd=REPO_ROOT, env=None):
        self.stdout_path = Path(folder) / "stdout.txt"
        self.stderr_path = Path(folder) / "stderr.txt"
        with open(self.stdout_path, "w") as stdout, open(self.stderr_path, "w") as stderr:
            self.process = subprocess.Popen(
                command, cwd=cwd, env=env, stdout=stdout, stderr=stderr, text=True
            )

    def finish(self, timeout: float = 180) -> subprocess.CompletedProcess:
        """Waits for the command (killed after `timeout` seconds): its exit status and output."""
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise
        return subprocess.CompletedProcess(
            self.process.args, code, self.stdout_path.read_text(), self.stderr_path.read_text()
        )

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def is_selected(request, test_name: str) -> bool:
    """Whether this session runs the test `test_name` of the requesting fixture's module
    (any of its parameters): a module fixture that starts a test's process early starts
    nothing for a session that will not check it (pytest -k, a single test)."""
    return any(
        item.module is request.module and item.originalname == test_name
        for item in request.session.items
    )


def in_background(function):
    """Starts `function()` in a thread now; returns `result(timeout)`, which waits for it and
    returns what it returned or raises what it raised (a failed assertion included). For
    the runs a module fixture starts early that must be talked to as they go."""
    import threading

    outcome: dict = {}

    def run() -> None:
        try:
            outcome["value"] = function()
        except BaseException as error:  # handed to whoever waits
            outcome["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()

    def result(timeout: float = 240):
        thread.join(timeout)
        if thread.is_alive():
            pytest.fail(f"{function} still running after {timeout} s")
        if "error" in outcome:
            raise outcome["error"]
        return outcome["value"]

    return result
