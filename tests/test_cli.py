"""`python train.py` flag handling: every bad flag gives one `error:` line and status 2.

These runs never reach neural_style.gatys.run: a stand-in `tensorflow` package that
refuses to import is put first on the path, so any TensorFlow import would show up as a
traceback.
"""

import os
import shutil
import subprocess
import sys
import textwrap

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def no_tensorflow_path(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("no_tensorflow")
    (folder / "tensorflow").mkdir()
    (folder / "tensorflow" / "__init__.py").write_text(
        'raise ImportError("flag handling must not import TensorFlow")\n'
    )
    return str(folder)


def run_python(args: list[str], path: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHONPATH": path}
    return subprocess.run(
        [sys.executable, *args],
        cwd=REPO_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


def assert_one_error_line(result: subprocess.CompletedProcess, *words: str) -> str:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    for word in words:
        assert word in lines[0]
    return lines[0]


@pytest.mark.parametrize(
    ("argument", "named"),
    [
        ("--train_steps=-1", "--train_steps"),
        ("--train_steps=abc", "--train_steps"),
        ("--beta=nan", "--beta"),
        ("--style_loss_layers=relu9_1:1", "--style_loss_layers"),
        ("--style_loss_layers=relu1_1:x", "--style_loss_layers"),
        ("--pooling=median", "--pooling"),
        ("--output_image=output/", "--output_image"),
        ("--no_such_flag=1", "no_such_flag"),
        ("stray_argument.jpg", "stray_argument.jpg"),
    ],
)
def test_a_bad_flag_is_one_error_line(argument, named, no_tensorflow_path):
    result = run_python(["train.py", argument], no_tensorflow_path)
    assert_one_error_line(result, named)


def test_usage_errors_point_at_the_help(no_tensorflow_path):
    result = run_python(["train.py", "--train_steps=abc"], no_tensorflow_path)
    line = assert_one_error_line(result)
    assert line.endswith("; see python train.py --helpfull")


def test_helpfull_lists_every_setting_with_its_comment(no_tensorflow_path):
    result = run_python(["train.py", "--helpfull"], no_tensorflow_path)
    assert result.returncode == 0, result.stderr
    assert "Stylise CONTENT_IMAGE in the style of STYLE_IMAGE" in result.stdout
    words = " ".join(result.stdout.split())  # absl wraps help text
    assert "--content_image" in words
    assert "Style layers and their weights (Gram matrices are matched at each)." in words
    for name in ("alpha", "style_loss_layers", "train_steps", "seed"):
        assert f"--{name}" in words


def test_help_shows_the_settings_as_train_py_flags(no_tensorflow_path):
    result = run_python(["train.py", "--help"], no_tensorflow_path)
    assert result.returncode == 0, result.stderr
    assert "--style_loss_layers" in result.stdout


# main() around a stand-in neural_style.gatys.run ------------------------------------

STAND_IN_RUN = textwrap.dedent(
    """
    import runpy, sys, types
    from neural_style.errors import UserError

    def stylize(settings, *, extra_observers, controls):
        assert extra_observers == [] and controls.stop_requested is None  # no live view
        outcome = {outcome!r}
        if outcome == "user_error":
            raise UserError("CONTENT_IMAGE (--content_image): cannot read x.jpg")
        if outcome == "interrupt":
            raise KeyboardInterrupt
        print("stylised", settings.train_steps, settings.style_loss_layers)

    run = types.ModuleType("neural_style.gatys.run")
    run.stylize = stylize
    sys.modules["neural_style.gatys.run"] = run
    sys.argv = ["train.py", *{flags!r}]
    runpy.run_path("train.py", run_name="__main__")
    """
)


def run_with_stand_in(outcome: str, flags: list[str], path: str) -> subprocess.CompletedProcess:
    return run_python(["-c", STAND_IN_RUN.format(outcome=outcome, flags=flags)], path)


def test_main_passes_the_flags_settings_to_stylize(no_tensorflow_path):
    flags = ["--train_steps=3", "--style_loss_layers=relu2_1:2"]
    result = run_with_stand_in("success", flags, no_tensorflow_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "stylised 3 (('relu2_1', 2.0),)"


def test_a_user_error_from_the_run_is_one_line(no_tensorflow_path):
    result = run_with_stand_in("user_error", [], no_tensorflow_path)
    line = assert_one_error_line(result, "CONTENT_IMAGE (--content_image)")
    assert line == "error: CONTENT_IMAGE (--content_image): cannot read x.jpg"


def test_ctrl_c_exits_130_without_a_traceback(no_tensorflow_path):
    result = run_with_stand_in("interrupt", [], no_tensorflow_path)
    assert result.returncode == 130, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert result.stderr.strip() == "interrupted"


# settings.py itself -------------------------------------------------------------------

# A broken settings.py: its text (None: no file at all) and what its one line must say.
BROKEN_SETTINGS = {
    "syntax": ("ALPHA = 1.0\nBETA = (\n", "settings.py line 2: '(' was never closed"),
    "indentation": ("ALPHA = 1.0\n  BETA = 2.0\n", "settings.py line 2: unexpected indent"),
    "division": ("ALPHA = 1.0\nBETA = 1 / 0\n", "settings.py line 2: ZeroDivisionError"),
    "name": ("ALPHA = 1.0\n\nBETA = ALPHA * GAMA\n", "line 3: NameError: name 'GAMA' is not"),
    "missing": (None, "settings.py: not found in"),
}


@pytest.mark.parametrize(
    ("script", "case"),
    [
        *(("train.py", case) for case in BROKEN_SETTINGS),
        ("train_network.py", "syntax"),
        ("train_network.py", "missing"),
        ("stylize.py", "division"),
        ("stylize.py", "missing"),
    ],
)
def test_a_broken_or_missing_settings_py_is_one_error_line(
    tmp_path, no_tensorflow_path, script, case
):
    """The user's checkout, its settings.py broken or gone: one line naming the file, the
    line at fault and the fix. The package comes from this repository, whose own
    settings.py must never stand in for the missing one."""
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    shutil.copy(os.path.join(REPO_ROOT, script), checkout / script)
    source, said = BROKEN_SETTINGS[case]
    if source is not None:
        (checkout / "settings.py").write_text(source)
    result = subprocess.run(
        [sys.executable, str(checkout / script)],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([no_tensorflow_path, REPO_ROOT])},
        capture_output=True,
        text=True,
        timeout=120,
    )
    line = assert_one_error_line(result, said, "git checkout settings.py")
    assert result.stdout == ""
    if case == "missing":
        assert str(checkout) in line
    else:
        assert "fix that line" in line
