"""`python train.py` never loses a user's work: hostile cases as a user meets them.

Each test reproduces one way a run could destroy or silently spoil something (an input
overwritten by an output, a photo read twice, two runs writing one prefix, a stop signal
at a bad moment, a closed terminal, a full or read-only disk, a damaged checkpoint) and
asserts both the clean outcome (one `error:` line, or the right exit status and message)
and that nothing earlier was lost: inputs byte-identical, earlier outputs intact.

Runs that are about the process (exit statuses, signals, stdout, concurrent runs, the file
system) are real `python train.py` subprocesses on the tiny VGG file; the exact-resume
matrix runs in this process, where a stop is asked for with stopping.request() as a
signal handler would. Mounting a tmpfs needs root or CAP_SYS_ADMIN; without it the file
system tests fail, saying so.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import hashlib
import io
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from neural_style import stopping
from neural_style.errors import UserError
from neural_style.gatys import run
from neural_style.gatys.events import Observer
from neural_style.gatys.pipeline import Pipeline
from tests.support import (
    FEW_LAYER_FLAGS,
    FEW_LAYERS,
    REPO_ROOT,
    files_only_observers,
    in_background,
    is_selected,
    photo,
    saved_checkpoint,
    stop_after,
    tiny_settings,
    tmpfs,
    write_image,
)

TRAIN = os.path.join(REPO_ROOT, "train.py")
PAUSED_TRAIN = os.path.join(REPO_ROOT, "tests", "paused_train.py")
# Tiny, exact and quiet about files: a subprocess run of a few seconds. Its loss is traced
# from the first two blocks' layers only, as the in-process runs' is (support.FEW_LAYERS).
QUICK = (
    "--image_width=40",
    "--precision=float32",
    "--print_every=1",
    "--snapshot_every=0",
    *FEW_LAYER_FLAGS,
)
FOREVER = "--train_steps=100000"  # a run that only a signal ends
INTERRUPTED = re.compile(r"^interrupted at step (\d+): saved (\S+) and a checkpoint", re.M)


# --- files ----------------------------------------------------------------------------------


def sha256(path) -> str:
    with open(path, "rb") as file:
        return hashlib.sha256(file.read()).hexdigest()


def digests(folder) -> dict[str, str]:
    """Every regular file under `folder` (recursively, lock files aside) -> its sha256."""
    found = {}
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            if not name.endswith(".lock") and os.path.isfile(path) and not os.path.islink(path):
                found[os.path.relpath(path, folder)] = sha256(path)
    return found


def temporaries(folder) -> list[str]:
    return [name for _, _, names in os.walk(folder) for name in names if name.endswith(".tmp")]


def stripes() -> np.ndarray:
    image = np.zeros((48, 48, 3), np.float32)
    image[:, ::4] = (250, 60, 20)
    image[::6, :] = (20, 80, 240)
    return image


def assert_valid_image(path) -> None:
    with Image.open(path) as image:
        image.load()
        assert image.size[0] > 0 and image.size[1] > 0


def assert_one_error_line(stderr: str, *needles: str) -> str:
    """The run said exactly one line, `error: ...`, containing each of `needles`."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


# --- subprocess runs ------------------------------------------------------------------------

STARTED: list = []  # every Train, so that a failed test leaves none running


class Train:
    """`python train.py ARGS` started now in `cwd`, its output collected as it comes. With
    `paused_at`, it runs through tests/paused_train.py, held at that point (see there)
    until `go()`."""

    def __init__(
        self,
        *args: str,
        cwd,
        script: str = TRAIN,
        group: bool = False,
        pythonpath: str = "",
        tracked: bool = True,
        paused_at: str = "",
    ):
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
        if pythonpath:
            env["PYTHONPATH"] = pythonpath
        command = [sys.executable, script, *args]
        if paused_at:
            command = [sys.executable, PAUSED_TRAIN, paused_at, *args]
        self.process = subprocess.Popen(
            command,
            cwd=str(cwd),
            env=env,
            stdin=subprocess.PIPE if paused_at else None,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
            start_new_session=group,  # its own process group, as a terminal's job is
        )
        if tracked:  # else whoever started it ends it (see early_runs)
            STARTED.append(self)
        self.out: list[str] = []
        self.err: list[str] = []
        self._lines: queue.Queue = queue.Queue()
        self._error_lines: queue.Queue = queue.Queue()
        self._readers = [
            threading.Thread(target=self._read, args=(self.process.stdout, self.out, self._lines)),
            threading.Thread(
                target=self._read, args=(self.process.stderr, self.err, self._error_lines)
            ),
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, stream, into: list[str], lines: queue.Queue) -> None:
        for line in stream:
            into.append(line)
            lines.put(line)
        lines.put(None)

    def wait_for(self, start: str, timeout: float = 60, *, stream: str = "stdout") -> str:
        """The first line from now on, of stdout (or stderr), that starts with `start`."""
        lines = self._lines if stream == "stdout" else self._error_lines
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = lines.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                pytest.fail(f"no line starting {start!r} in {timeout} s: {self.output()}")
            if line is None:
                pytest.fail(f"train.py ended before a {start!r} line: {self.output()}")
            if line.startswith(start):
                return line

    def go(self) -> None:
        """Release a run held by paused_train.py (if it still lives)."""
        with contextlib.suppress(OSError):
            self.process.stdin.close()

    def send(self, number: int) -> None:
        os.kill(self.process.pid, number)

    def send_to_group(self, number: int) -> None:
        """As a terminal does: to train.py and every child it started."""
        os.killpg(self.process.pid, number)

    def finish(self, timeout: float = 90) -> SimpleNamespace:
        code = self.process.wait(timeout=timeout)
        for reader in self._readers:
            reader.join(timeout=10)
        return SimpleNamespace(code=code, out="".join(self.out), err="".join(self.err))

    def output(self) -> str:
        return "".join(self.out) + "".join(self.err)


def finish_all(runs: list[Train]) -> list[SimpleNamespace]:
    return [one.finish() for one in runs]


def make_work(folder: Path, tiny_mat: str) -> SimpleNamespace:
    """A folder holding a photo me.jpg and a style style.jpg; `args()` names them (relative
    to the folder, where the runs start) and the tiny VGG file."""
    write_image(folder / "me.jpg", photo(40, 48, seed=1))
    write_image(folder / "style.jpg", stripes())

    def args(*extra: str) -> list[str]:
        return [
            f"--vgg_model_path={tiny_mat}",
            "--content_image=me.jpg",
            "--style_image=style.jpg",
            *QUICK,
            *extra,
        ]

    return SimpleNamespace(dir=folder, mat=tiny_mat, args=args)


@pytest.fixture
def work(tmp_path, tiny_mat) -> SimpleNamespace:
    return make_work(tmp_path, tiny_mat)


def inputs_of(work) -> dict[str, str]:
    return {name: sha256(work.dir / name) for name in ("me.jpg", "style.jpg")}


# --- in-process runs ------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def no_run_left_behind():
    """Every test leaves no train.py running (a run waiting for a signal that a failed
    assertion never sent)."""
    yield
    while STARTED:
        one = STARTED.pop()
        if one.process.poll() is None:
            one.process.kill()
            one.finish()


def stylize(settings, *extra: Observer):
    """(the result, what the run printed)."""
    stream = io.StringIO()
    result = run.stylize(
        settings, stream, observers=files_only_observers(settings, stream) + list(extra)
    )
    return result, stream.getvalue()


def stylize_until_stopped(settings, *extra: Observer) -> str:
    """Runs until the stop asked for; what the run printed."""
    stream = io.StringIO()
    with pytest.raises(stopping.Stopped):
        run.stylize(
            settings, stream, observers=files_only_observers(settings, stream) + list(extra)
        )
    return stream.getvalue()


def settings_in(folder, tiny_mat, content, style, **overrides):
    values = dict(
        output_image=str(Path(folder) / "out"), snapshot_every=0, train_steps=3, **FEW_LAYERS
    )
    return tiny_settings(folder, tiny_mat, (str(content), str(style)), **{**values, **overrides})


def resumed(settings, **changes):
    return settings.__class__(**{**settings.__dict__, "resume": True, **changes})


def best_image(prefix) -> np.ndarray:
    return saved_checkpoint(f"{prefix}-checkpoint.npz").optimizer_state["best_image"]


@pytest.fixture
def pair(tmp_path) -> tuple[str, str]:
    """A photo and a style in tmp_path/in."""
    (tmp_path / "in").mkdir()
    content = write_image(tmp_path / "in" / "me.jpg", photo(40, 48, seed=1))
    return content, write_image(tmp_path / "in" / "style.png", stripes())


# === 1. outputs never overwrite inputs ======================================================


@pytest.mark.slow
@pytest.mark.parametrize(
    "output, extra, named",
    [
        ("me", ["--overwrite"], "CONTENT_IMAGE"),
        ("me", ["--resume"], "CONTENT_IMAGE"),
        ("style", ["--overwrite"], "STYLE_IMAGE"),
        ("style", ["--resume"], "STYLE_IMAGE"),
        ("start", ["--overwrite", "--init=start.jpg"], "INIT"),
    ],
)
def test_an_output_named_like_an_input_is_refused_even_with_overwrite(work, output, extra, named):
    write_image(work.dir / "start.jpg", photo(40, 48, seed=7))
    before = digests(work.dir)
    done = Train(*work.args(f"--output_image={output}", *extra), cwd=work.dir).finish()
    assert done.code == 2, done.out + done.err
    assert_one_error_line(done.err, f"{output}.jpg", named, "would overwrite its input")
    assert digests(work.dir) == before  # nothing written, nothing replaced


@pytest.mark.slow
def test_without_overwrite_an_output_named_like_an_input_takes_a_new_prefix(
    tmp_path, tiny_mat, pair
):
    content = pair[0]
    folder = Path(content).parent
    style = write_image(folder / "style.jpg", stripes())
    kept = {path: sha256(path) for path in (content, style)}
    for prefix in ("me", "style"):
        settings = settings_in(
            folder, tiny_mat, content, style, output_image=str(folder / prefix), train_steps=2
        )
        result, printed = stylize(settings)
        assert result.output_path == str(folder / f"{prefix}_2.jpg"), printed
        assert_valid_image(result.output_path)
        assert f"writes {folder / prefix}_2.* instead" in printed
    assert {path: sha256(path) for path in kept} == kept


def test_a_photo_named_through_a_link_is_never_replaced_by_the_output(tmp_path, tiny_mat, pair):
    """CONTENT_IMAGE `link.jpg` is a symbolic link to the photo; OUTPUT_IMAGE `link` with
    OVERWRITE would write link.jpg. The run may refuse or pick another name, but the link
    the user named as the photo must still be there, pointing at the photo."""
    content, style = pair
    link = tmp_path / "link.jpg"
    link.symlink_to(content)
    photo_bytes = sha256(content)
    settings = settings_in(
        tmp_path, tiny_mat, link, style, output_image=str(tmp_path / "link"), overwrite=True
    )
    with contextlib.suppress(UserError):
        stylize(settings)
    assert link.is_symlink(), "the photo's link link.jpg was replaced by the output image"
    assert os.readlink(link) == content
    assert sha256(content) == photo_bytes


# === 2. a folder run never reads its own outputs back ========================================


@pytest.mark.slow
def test_a_folder_run_writing_into_its_folder_stylises_the_same_photos_twice(tmp_path, tiny_mat):
    folder = tmp_path / "photos"
    folder.mkdir()
    for number, name in enumerate(("a", "b")):
        write_image(folder / f"{name}.jpg", photo(40, 48, seed=number + 1))
    style = write_image(tmp_path / "style.png", stripes())
    settings = settings_in(
        tmp_path, tiny_mat, folder, style, output_image=str(folder / "out"), train_steps=2
    )
    counted = []
    for _ in range(2):
        before = digests(folder)
        result, printed = stylize(settings)
        counted.append(re.findall(r"^\[(\d+)/(\d+)\] (\S+)$", printed, re.M))
        assert "stylised 2 of 2 photos" in printed
        assert len(result.results) == 2
        after = digests(folder)
        assert {name: after[name] for name in before} == before  # the first run's files kept
        assert len(after) > len(before)
    assert counted[0] == counted[1]
    assert [photo_path for _, _, photo_path in counted[0]] == [
        str(folder / "a.jpg"),
        str(folder / "b.jpg"),
    ]


# === 3. photos that differ only in their suffix ===============================================


def test_photos_differing_only_in_suffix_keep_two_images_and_two_logs(tmp_path, tiny_mat):
    folder = tmp_path / "photos"
    folder.mkdir()
    write_image(folder / "a.jpg", photo(40, 48, seed=1))
    write_image(folder / "a.png", photo(40, 48, seed=2))
    photos = digests(folder)
    style = write_image(tmp_path / "style.png", stripes())
    out = tmp_path / "out" / "run"
    settings = settings_in(
        tmp_path, tiny_mat, folder, style, output_image=str(out), batch_size=2, train_steps=3
    )
    result, printed = stylize(settings)
    assert "2 photos at 40x33 optimised together" in printed  # really one batch
    finals = sorted(one.output_path for one in result.results)
    assert finals == [f"{out}-a-jpg.jpg", f"{out}-a-png.jpg"]
    assert sha256(finals[0]) != sha256(finals[1])
    for final in finals:
        assert_valid_image(final)
        with open(final[: -len(".jpg")] + "-losses.csv", newline="") as file:
            rows = list(csv.reader(file))
        assert rows[0] == ["step", "content", "style", "tv", "total", "seconds"]
        assert [row[0] for row in rows[1:]] == ["1", "2", "3"]
        for row in rows[1:]:
            assert len(row) == 6 and all(np.isfinite(float(value)) for value in row)
    assert digests(folder) == photos


def test_photos_whose_suffixes_differ_only_in_case_are_both_stylised(tmp_path, tiny_mat):
    """A camera's IMG_1.JPG beside an edited IMG_1.jpg: two photos, so two prefixes of this
    run; with OVERWRITE (or RESUME) neither may be refused as "another run"."""
    folder = tmp_path / "photos"
    folder.mkdir()
    write_image(folder / "a.JPG", photo(40, 48, seed=1))
    write_image(folder / "a.jpg", photo(40, 48, seed=2))
    photos = digests(folder)
    style = write_image(tmp_path / "style.png", stripes())
    settings = settings_in(
        tmp_path,
        tiny_mat,
        folder,
        style,
        output_image=str(tmp_path / "out" / "run"),
        batch_size=2,
        train_steps=2,
        overwrite=True,
    )
    result, printed = stylize(settings)
    assert "stylised 2 of 2 photos" in printed, printed
    finals = {one.output_path for one in result.results}
    assert len(finals) == 2 and len({sha256(final) for final in finals}) == 2
    assert digests(folder) == photos


# === 4. two runs at once ====================================================================


@pytest.mark.slow
def test_two_runs_started_together_write_two_prefixes_or_one_refuses(work):
    kept = inputs_of(work)
    both = [
        Train(*work.args("--output_image=out", "--train_steps=2"), cwd=work.dir) for _ in range(2)
    ]
    for done in finish_all(both):
        assert done.code == 0, done.out + done.err
    for prefix in ("out", "out_2"):
        assert_valid_image(work.dir / f"{prefix}.jpg")
        assert saved_checkpoint(str(work.dir / f"{prefix}-checkpoint.npz")).step == 2
    second = {name: sha256(work.dir / name) for name in os.listdir(work.dir) if "out_2" in name}

    both = [
        Train(*work.args("--output_image=out", "--overwrite", "--train_steps=3"), cwd=work.dir)
        for _ in range(2)
    ]
    ends = finish_all(both)
    assert sorted(done.code for done in ends) == [0, 2], [done.out + done.err for done in ends]
    refused = next(done for done in ends if done.code == 2)
    assert_one_error_line(refused.err, "out.jpg", "another run is writing")
    assert_valid_image(work.dir / "out.jpg")
    assert saved_checkpoint(str(work.dir / "out-checkpoint.npz")).step == 3
    assert {name: sha256(work.dir / name) for name in second} == second
    assert inputs_of(work) == kept


# === 5. glob characters in a file's name =====================================================


def test_a_photo_whose_name_has_glob_characters_is_that_photo_alone(tmp_path, tiny_mat, pair):
    _, style = pair
    named = write_image(tmp_path / "shot[1].jpg", photo(40, 48, seed=3))
    other = write_image(tmp_path / "shot1.jpg", photo(40, 48, seed=4))
    kept = {path: sha256(path) for path in (named, other)}
    settings = settings_in(tmp_path, tiny_mat, named, style, output_image=str(tmp_path / "o" / "x"))
    result, printed = stylize(settings)
    assert not hasattr(result, "results") and "stylised" not in printed  # not a batch
    assert result.output_path == str(tmp_path / "o" / "x.jpg")
    with np.load(tmp_path / "o" / "x-checkpoint.npz") as data:
        assert str(data["photo"]) == sha256(named)
    assert {path: sha256(path) for path in kept} == kept


# === 6-9. stop signals, a closed terminal ===================================================


@pytest.mark.slow
def test_sigterm_or_sighup_mid_run_saves_that_step_and_resume_finishes(work):
    kept = inputs_of(work)
    # SIGINT mid-run, from a terminal: test_two_ctrl_cs_still_save_a_valid_image_and_checkpoint.
    signals = {"term": signal.SIGTERM, "hup": signal.SIGHUP}
    runs = {
        name: Train(*work.args(f"--output_image={name}/out", FOREVER), cwd=work.dir)
        for name in signals
    }
    for name, one in runs.items():
        one.wait_for("step")
        one.send(signals[name])
    steps = {}
    for name, one in runs.items():
        done = one.finish()
        assert done.code == 128 + signals[name], done.out + done.err
        assert "Traceback" not in done.err
        said = INTERRUPTED.findall(done.out)
        assert said and said[0][1] == f"{name}/out.jpg", done.out
        steps[name] = step = int(said[0][0])
        assert_valid_image(work.dir / name / "out.jpg")
        saved = saved_checkpoint(str(work.dir / name / "out-checkpoint.npz"))
        assert saved.step == step and int(saved.optimizer_state["iterations"]) == step
        assert not temporaries(work.dir / name)
    # Resuming is the same after every signal (and tested exactly below): SIGTERM's run here.
    step = steps["term"]
    done = Train(
        *work.args("--output_image=term/out", "--resume", f"--train_steps={step + 2}"),
        cwd=work.dir,
    ).finish()
    assert done.code == 0, done.out + done.err
    assert f"resuming from term/out-checkpoint.npz at step {step}" in done.out
    assert saved_checkpoint(str(work.dir / "term" / "out-checkpoint.npz")).step == step + 2
    assert inputs_of(work) == kept


@pytest.fixture
def earlier_run(work, tiny_mat):
    """An earlier run's files under work/out (made in this process: it is only their
    bytes that matter), and their digests."""
    settings = settings_in(
        work.dir, tiny_mat, work.dir / "me.jpg", work.dir / "style.jpg", train_steps=1
    )
    stylize(settings)
    return digests(work.dir)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("moment", "number"),
    [
        ("import:neural_style.gatys.run", signal.SIGINT),  # the flags are read
        ("import:tensorflow", signal.SIGTERM),  # TensorFlow starts, the plan is made
        ("first-step", signal.SIGHUP),  # inside the run loop, before its first step
    ],
)
def test_a_signal_during_start_up_leaves_no_trace(work, earlier_run, moment, number):
    """A stop while the flags, the plan, TensorFlow or the first step's graph are being
    prepared: nothing to save yet, so nothing under the prefix changes."""
    one = Train(
        *work.args("--output_image=out", "--overwrite", FOREVER), cwd=work.dir, paused_at=moment
    )
    one.wait_for(f"paused at {moment}")
    one.send(number)
    one.go()
    done = one.finish()
    assert done.code == 128 + number, (moment, done.out + done.err)
    assert "Traceback" not in done.err, (moment, done.err)
    assert not INTERRUPTED.search(done.out)
    assert not temporaries(work.dir)
    assert digests(work.dir) == earlier_run, moment


@pytest.mark.slow
def test_a_stop_before_the_first_step_keeps_the_earlier_runs_log(work, earlier_run):
    """Ctrl-C while the first step is prepared (after the run said what it will do): the
    run says it saved nothing, so the earlier run's files under the prefix (its image,
    checkpoint, losses log and settings record) must be exactly as they were."""
    one = Train(
        *work.args("--output_image=out", "--overwrite", FOREVER),
        cwd=work.dir,
        paused_at="first-step",
    )
    one.wait_for("paused at first-step")
    one.send(signal.SIGINT)
    one.wait_for("SIGINT: stopping after this step", stream="stderr")  # the loop defers it
    one.go()
    done = one.finish()
    assert done.code == 130, done.out + done.err
    assert "interrupted before the first step: nothing new to save" in done.out
    assert "Traceback" not in done.err and not temporaries(work.dir)
    changed = sorted(
        name for name, digest in digests(work.dir).items() if earlier_run.get(name) != digest
    )
    assert changed == [], f"an interrupted run that saved nothing changed {changed}"


def test_a_signal_while_the_flags_are_read_is_one_line(work):
    """`--flagfile=<(...)`: train.py waits on a pipe while it reads its flags; Ctrl-C then
    must end it as anywhere else: status 130, `interrupted`, no traceback."""
    before = digests(work.dir)
    pipe = work.dir / "flags.pipe"
    os.mkfifo(pipe)
    one = Train(f"--flagfile={pipe}", *work.args("--output_image=out", FOREVER), cwd=work.dir)
    # Opening the pipe for writing returns once train.py has opened it to read its flags;
    # nothing is written, so it waits on the pipe when the signal comes.
    with open(pipe, "w"):
        assert one.process.poll() is None, one.output()
        one.send(signal.SIGINT)
        done = one.finish()
    assert "Traceback" not in done.err, done.err[-1500:]
    assert done.code == 130 and done.err.strip() == "interrupted", done.out + done.err
    assert digests(work.dir) == before


@pytest.mark.parametrize(
    "module",
    ["neural_style.stopping", "absl.flags", "neural_style.settings.cli_flags", "numpy"],
)
def test_a_signal_while_python_loads_train_py_is_never_a_traceback(work, module):
    """A SIGTERM while train.py imports its modules: the process ends with status 143
    (by the system's default action before the handlers are set, or by them in one line
    after), never with a traceback, and writes nothing."""
    before = digests(work.dir)
    one = Train(
        *work.args("--output_image=out", FOREVER), cwd=work.dir, paused_at=f"import:{module}"
    )
    one.wait_for(f"paused at import:{module}")
    one.send(signal.SIGTERM)
    one.go()
    done = one.finish()
    # Ended by the system's default action (the signal itself) or by the handlers (143).
    assert done.code in (143, -signal.SIGTERM), done.out + done.err
    assert "Traceback" not in done.err and done.err.strip() in ("", "interrupted (SIGTERM)")
    assert digests(work.dir) == before


def ctrl_c_twice(work) -> tuple[SimpleNamespace, SimpleNamespace]:
    """A run snapshotting every step (so loss plots are drawn in child processes), then
    Ctrl-C twice to its whole process group, as a terminal sends it, the second as soon as
    the run has heard the first: (its folder, how it ended)."""
    kept = inputs_of(work)
    one = Train(
        *work.args("--output_image=out", FOREVER, "--snapshot_every=1"),
        cwd=work.dir,
        group=True,
        tracked=False,
    )
    try:
        one.wait_for("step")
        one.wait_for("step")
        one.send_to_group(signal.SIGINT)
        # The second as soon as the first is heard, while the run finishes its step or saves.
        one.wait_for("SIGINT: stopping after this step", stream="stderr")
        one.send_to_group(signal.SIGINT)
        done = one.finish()
    finally:
        if one.process.poll() is None:
            one.process.kill()
            one.finish()
    assert inputs_of(work) == kept
    return work, done


@pytest.fixture(scope="module")
def ctrl_c_twice_from_a_terminal(early_runs):
    """ctrl_c_twice's run, started with the module (see early_runs)."""
    return early_runs["ctrl_c"]()


@pytest.mark.slow
def test_two_ctrl_cs_still_save_a_valid_image_and_checkpoint(ctrl_c_twice_from_a_terminal):
    work, done = ctrl_c_twice_from_a_terminal
    assert done.code == 130, done.out + done.err
    assert "Traceback" not in done.err
    said = INTERRUPTED.findall(done.out)
    assert said and said[0][1] == "out.jpg", done.out
    assert_valid_image(work.dir / "out.jpg")
    assert_valid_image(work.dir / f"out-{said[0][0]}.jpg")
    saved = saved_checkpoint(str(work.dir / "out-checkpoint.npz"))
    assert saved.step == int(said[0][0]) == int(saved.optimizer_state["iterations"])
    assert not temporaries(work.dir)


@pytest.mark.slow
def test_a_ctrl_c_from_a_terminal_blames_nothing_else(ctrl_c_twice_from_a_terminal):
    """The terminal's Ctrl-C also reaches the child drawing the loss plot; the run must not
    report that as a plot that could not be drawn (nothing went wrong but the stop)."""
    _, done = ctrl_c_twice_from_a_terminal
    assert "could not be drawn" not in done.out, done.out


def read_two_lines_and_close(work) -> tuple:
    """`python train.py ... | head -n 2`: the reader goes away after two lines. (The
    folder, its inputs' digests before, the lines read, stderr, the exit status.)"""
    kept = inputs_of(work)
    process = subprocess.Popen(
        [sys.executable, TRAIN, *work.args("--output_image=out", "--train_steps=30")],
        cwd=work.dir,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        bufsize=1,
    )
    try:
        first = []
        reader = threading.Thread(
            target=lambda: first.extend(process.stdout.readline() for _ in "12")
        )
        reader.start()
        reader.join(timeout=60)
        process.stdout.close()
        errors = process.stderr.read()
        return work, kept, first, errors, process.wait(timeout=90)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.fixture(scope="module", autouse=True)
def early_runs(request, tmp_path_factory, tiny_mat) -> dict:
    """The train.py runs of this module that would run alone (one core busy, one idle),
    started before its first test, so that they run beside the tests before theirs; a
    thread talks to each. Name -> result(), which waits for it."""
    early = {
        "ctrl_c": (
            ctrl_c_twice,
            "test_two_ctrl_cs_still_save_a_valid_image_and_checkpoint",
            "test_a_ctrl_c_from_a_terminal_blames_nothing_else",
        ),
        "closed_stdout": (
            read_two_lines_and_close,
            "test_a_closed_stdout_ends_only_the_printing",
        ),
    }
    started = {}
    for name, (talk, *tests) in early.items():
        if any(is_selected(request, test) for test in tests):
            work = make_work(tmp_path_factory.mktemp(name), tiny_mat)
            started[name] = in_background(functools.partial(talk, work))
    yield started
    for result in started.values():  # each thread ends its own run, within minutes
        with contextlib.suppress(BaseException):
            result()


@pytest.mark.slow
def test_a_closed_stdout_ends_only_the_printing(early_runs):
    """See read_two_lines_and_close, whose run starts with the module."""
    work, kept, first, errors, code = early_runs["closed_stdout"]()
    assert len(first) == 2 and all(first), first
    assert code == 0, errors
    assert "BrokenPipeError" not in errors and "Traceback" not in errors, errors
    assert_valid_image(work.dir / "out.jpg")
    assert saved_checkpoint(str(work.dir / "out-checkpoint.npz")).step == 30
    assert inputs_of(work) == kept


# === 10. exact resume at every interrupt point ==============================================

STAGES = dict(coarse_to_fine=[40, 56], coarse_to_fine_steps=[4, 4], snapshot_every=0)


@pytest.fixture(scope="module")
def straight(tmp_path_factory, tiny_mat):
    """A photo, a style, and Adam's straight 8-step coarse-to-fine run of them."""
    folder = tmp_path_factory.mktemp("straight")
    content = write_image(folder / "me.jpg", photo(40, 48, seed=1))
    style = write_image(folder / "style.png", stripes())
    settings = settings_in(folder, tiny_mat, content, style, **STAGES)
    result, _ = stylize(settings)
    assert result.steps == 8
    return SimpleNamespace(content=content, style=style, prefix=settings.output_image)


def stop_while_preparing(monkeypatch, stage: int) -> None:
    """Ask for a stop while stage `stage`'s targets are computed: after the stage started,
    before its first step, as a Ctrl-C at that moment would."""
    real = Pipeline.batch_targets

    def batch_targets(self, net, stage_index, contents, layout):
        if stage_index == stage:
            stopping.request(signal.SIGINT)
        return real(self, net, stage_index, contents, layout)

    monkeypatch.setattr(Pipeline, "batch_targets", batch_targets)


def cut_and_resume(folder, tiny_mat, straight, optimizer: str, *observers, monkeypatch=None):
    """A coarse-to-fine run stopped as asked (by `observers`, or by a stop_while_preparing
    already set on `monkeypatch`), then resumed: (what the stopped run printed, its
    checkpoint, the resumed result, what that printed, the settings)."""
    settings = settings_in(
        folder, tiny_mat, straight.content, straight.style, optimizer=optimizer, **STAGES
    )
    printed = stylize_until_stopped(settings, *observers)
    if monkeypatch is not None:
        monkeypatch.undo()
    cut = saved_checkpoint(f"{settings.output_image}-checkpoint.npz")
    result, again = stylize(resumed(settings))
    return printed, cut, result, again, settings


@pytest.mark.slow
@pytest.mark.parametrize("step", [1, 4, 5, 7])
def test_adam_resumes_exactly_after_each_step(tmp_path, tiny_mat, straight, step):
    printed, cut, result, again, settings = cut_and_resume(
        tmp_path, tiny_mat, straight, "adam", stop_after(step)
    )
    assert f"interrupted at step {step}: saved" in printed
    assert cut.step == step and cut.stage == (0 if step <= 4 else 1)
    # Adam's step count goes on across the stages (its moments are carried over).
    assert int(cut.optimizer_state["iterations"]) == step
    assert f"at step {step}" in again and result.steps == 8
    np.testing.assert_allclose(
        best_image(settings.output_image), best_image(straight.prefix), atol=1e-3
    )


@pytest.mark.slow
def test_adam_resumes_exactly_when_stopped_as_stage_2_starts(
    tmp_path, tiny_mat, straight, monkeypatch
):
    stop_while_preparing(monkeypatch, stage=1)
    printed, cut, result, again, settings = cut_and_resume(
        tmp_path, tiny_mat, straight, "adam", monkeypatch=monkeypatch
    )
    assert "interrupted at step 4: saved" in printed
    assert (cut.stage, cut.step) == (0, 4)
    assert "at step 4" in again and result.steps == 8
    np.testing.assert_allclose(
        best_image(settings.output_image), best_image(straight.prefix), atol=1e-3
    )


def test_adam_resumes_when_stopped_before_the_first_step(tmp_path, tiny_mat, straight, monkeypatch):
    """Ctrl-C while the first step is prepared: nothing is saved, and `--resume` then has
    to start the photo afresh (as a batch does for a photo it had not reached) and end
    where the straight run does."""
    settings = settings_in(tmp_path, tiny_mat, straight.content, straight.style, **STAGES)
    stop_while_preparing(monkeypatch, stage=0)
    printed = stylize_until_stopped(settings)
    monkeypatch.undo()
    assert "interrupted before the first step: nothing new to save" in printed
    try:
        result, _ = stylize(resumed(settings))
    except UserError as error:
        pytest.fail(f"--resume after a stop before step 1 is refused: {error}")
    assert result.steps == 8
    np.testing.assert_allclose(
        best_image(settings.output_image), best_image(straight.prefix), atol=1e-3
    )


@pytest.mark.slow
@pytest.mark.parametrize("step", [2, 5])
def test_lbfgs_resumes_and_finishes_with_the_right_step_count(tmp_path, tiny_mat, straight, step):
    printed, cut, result, again, settings = cut_and_resume(
        tmp_path, tiny_mat, straight, "lbfgs", stop_after(step)
    )
    assert f"interrupted at step {step}: saved" in printed and cut.step == step
    assert f"at step {step}" in again and result.steps == 8
    saved = saved_checkpoint(f"{settings.output_image}-checkpoint.npz")
    assert (saved.stage, saved.step) == (1, 8)
    assert_valid_image(result.output_path)


def photo_folder(folder: Path, count: int) -> Path:
    folder.mkdir(parents=True)
    for number in range(count):
        write_image(folder / f"p{number + 1}.png", photo(40, 48, seed=number + 1))
    return folder


def test_a_batch_stopped_at_step_3_resumes_to_the_straight_batch(tmp_path, tiny_mat, pair):
    folder = photo_folder(tmp_path / "photos", 2)
    photos = digests(folder)

    def batch_settings(name: str):
        return settings_in(
            tmp_path,
            tiny_mat,
            folder,
            pair[1],
            output_image=str(tmp_path / name / "r"),
            batch_size=2,
            train_steps=5,
        )

    stylize(batch_settings("straight"))
    cut = batch_settings("cut")
    printed = stylize_until_stopped(cut, stop_after(3))
    assert "interrupted at step 3: saved" in printed and "their checkpoints" in printed
    _, again = stylize(resumed(cut))
    assert "stylised 2 of 2 photos" in again and again.count("at step 3") == 2
    for name in ("p1", "p2"):
        np.testing.assert_allclose(
            best_image(tmp_path / "cut" / f"r-{name}"),
            best_image(tmp_path / "straight" / f"r-{name}"),
            atol=1e-3,
        )
    assert digests(folder) == photos


@pytest.mark.slow
def test_a_photo_a_stopped_batch_never_reached_is_stylised_on_resume(tmp_path, tiny_mat, pair):
    folder = photo_folder(tmp_path / "photos", 3)
    photos = digests(folder)
    cut = settings_in(
        tmp_path,
        tiny_mat,
        folder,
        pair[1],
        output_image=str(tmp_path / "cut" / "r"),
        batch_size=2,
        train_steps=4,
    )
    stylize_until_stopped(cut, stop_after(2))
    assert not os.path.exists(tmp_path / "cut" / "r-p3-checkpoint.npz")  # never started
    result, again = stylize(resumed(cut))
    assert "stylised 3 of 3 photos" in again, again
    assert [one.steps for one in result.results] == [4, 4, 4]
    alone = settings_in(
        tmp_path,
        tiny_mat,
        folder / "p3.png",
        pair[1],
        output_image=str(tmp_path / "alone"),
        train_steps=4,
    )
    stylize(alone)
    np.testing.assert_allclose(
        best_image(tmp_path / "cut" / "r-p3"), best_image(tmp_path / "alone"), atol=1e-3
    )
    assert digests(folder) == photos


# === 11. what identifies a resumed photo ===================================================


def test_resume_follows_the_photo_not_its_path_nor_the_output_folder(tmp_path, tiny_mat, pair):
    content, style = pair
    settings = settings_in(
        tmp_path,
        tiny_mat,
        content,
        style,
        output_image=str(tmp_path / "first" / "out"),
        train_steps=4,
    )
    stylize_until_stopped(settings, stop_after(2))
    shutil.copytree(tmp_path / "first", tmp_path / "other")
    shutil.copytree(tmp_path / "first", tmp_path / "third")

    shutil.move(tmp_path / "first", tmp_path / "moved")  # (a) the output folder moved
    result, printed = stylize(resumed(settings, output_image=str(tmp_path / "moved" / "out")))
    assert "at step 2" in printed and result.steps == 4

    alias = tmp_path / "alias.jpg"  # (b) the photo by another name
    alias.symlink_to(content)
    result, printed = stylize(
        resumed(settings, content_image=str(alias), output_image=str(tmp_path / "other" / "out"))
    )
    assert "at step 2" in printed and result.steps == 4

    kept = digests(tmp_path / "third")  # (c) another photo at the same path
    write_image(content, photo(40, 48, seed=9))
    with pytest.raises(UserError) as refused:
        stylize(resumed(settings, output_image=str(tmp_path / "third" / "out")))
    message = str(refused.value)
    assert "\n" not in message and content in message and "not the one" in message
    assert digests(tmp_path / "third") == kept


# === 12. the file system fails ===============================================================


@pytest.mark.root
def test_a_read_only_output_folder_is_one_line(work):
    kept = inputs_of(work)
    with tmpfs(work.dir / "ro", read_only=True):
        done = Train(*work.args("--output_image=ro/out"), cwd=work.dir).finish()
        assert done.code == 2, done.out + done.err
        assert_one_error_line(done.err, str(work.dir / "ro"), "read-only")
        assert os.listdir(work.dir / "ro") == []
    assert inputs_of(work) == kept


@pytest.mark.root
def test_a_disk_that_fills_mid_run_keeps_the_final_image(work):
    kept = inputs_of(work)
    with tmpfs(work.dir / "full", "60k"):
        done = Train(
            *work.args("--output_image=full/out", "--train_steps=5", "--snapshot_every=1"),
            cwd=work.dir,
        ).finish()
        assert done.code == 2, done.out + done.err
        assert_one_error_line(done.err, "full/out", "disk is full", "kept full/out.jpg")
        assert_valid_image(work.dir / "full" / "out.jpg")
        assert not temporaries(work.dir / "full")
    assert inputs_of(work) == kept


@pytest.mark.root
def test_a_disk_that_fills_while_logging_losses_is_one_line(work):
    """The losses log is the file that meets the full disk (no snapshots, a long run):
    still one line naming it, never a traceback."""
    kept = inputs_of(work)
    with tmpfs(work.dir / "full", "8k"):
        done = Train(
            *work.args("--output_image=full/out", "--train_steps=150", "--print_every=50"),
            cwd=work.dir,
        ).finish()
        assert "Traceback" not in done.err, done.err[-2000:]
        assert done.code == 2, done.out + done.err
        assert_one_error_line(done.err, "full/out-losses.csv", "disk is full")
        assert not temporaries(work.dir / "full")
    assert inputs_of(work) == kept


def test_a_file_where_the_output_folder_should_be_is_one_line(work):
    (work.dir / "afile").write_text("the user's notes\n")
    kept = {**inputs_of(work), "afile": sha256(work.dir / "afile")}
    done = Train(*work.args("--output_image=afile/out"), cwd=work.dir).finish()
    assert done.code == 2, done.out + done.err
    assert_one_error_line(done.err, "afile is a file where a folder should be")
    assert {**inputs_of(work), "afile": sha256(work.dir / "afile")} == kept


def crafted_checkpoint(path: Path) -> None:
    """A well-formed zip in the checkpoint's layout, but with an image member whose .npy
    header claims a terabyte."""
    header = b"{'descr': '<f4', 'fortran_order': False, 'shape': (600000, 600000, 3), }"
    header += b" " * (63 - len(header) % 64) + b"\n"
    member = b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header
    with zipfile.ZipFile(path, "w") as archive:
        for name in ("stage", "step"):
            stream = io.BytesIO()
            np.save(stream, np.int64(0))
            archive.writestr(f"{name}.npy", stream.getvalue())
        stream = io.BytesIO()
        np.save(stream, np.array("{}"))
        archive.writestr("settings.npy", stream.getvalue())
        for name in ("image", "best_image", "first_moment", "second_moment"):
            archive.writestr(f"state/{name}.npy", member)


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["junk", "truncated", "crafted"])
def test_a_damaged_checkpoint_is_one_line_and_left_alone(work, earlier_run, damage):
    checkpoint = work.dir / "out-checkpoint.npz"
    if damage == "junk":
        checkpoint.write_bytes(b"this is not a checkpoint\n" * 40)
    elif damage == "truncated":
        checkpoint.write_bytes(checkpoint.read_bytes()[:5000])
    else:
        crafted_checkpoint(checkpoint)
    before = digests(work.dir)
    done = Train(*work.args("--output_image=out", "--resume", "--train_steps=4"), cwd=work.dir)
    done = done.finish()
    assert done.code == 2, done.out + done.err
    assert_one_error_line(done.err, "out-checkpoint.npz", "not a checkpoint of this run")
    assert digests(work.dir) == before


# === 13-14. refused before any work ==========================================================


def test_a_jpeg_wider_than_65500_pixels_is_refused_at_once(work):
    before = digests(work.dir)
    done = Train(*work.args("--output_image=big", "--image_width=70000"), cwd=work.dir).finish()
    assert done.code == 2, done.out + done.err
    assert_one_error_line(done.err, "big.jpg", "at most 65500 pixels a side", "70000x")
    assert "running on" not in done.out  # TensorFlow was never started
    assert digests(work.dir) == before


def test_a_constant_deleted_from_settings_py_is_named(work):
    """The user's checkout: train.py beside a settings.py whose `BETA = ...` line is gone."""
    checkout = work.dir / "checkout"
    checkout.mkdir()
    with open(os.path.join(REPO_ROOT, "settings.py"), encoding="utf-8") as file:
        lines = file.readlines()
    kept = [line for line in lines if not re.match(r"BETA\s*=", line)]
    assert len(kept) == len(lines) - 1
    (checkout / "settings.py").write_text("".join(kept), encoding="utf-8")
    shutil.copy(TRAIN, checkout / "train.py")
    before = digests(work.dir)
    # The package of this checkout, whatever an editable install elsewhere points at.
    done = Train(
        *work.args("--output_image=out"),
        cwd=work.dir,
        script=str(checkout / "train.py"),
        pythonpath=REPO_ROOT,
    ).finish()
    assert done.code == 2, done.out + done.err
    assert done.err.strip() == "error: BETA is missing from settings.py; add it back"
    assert digests(work.dir) == before
