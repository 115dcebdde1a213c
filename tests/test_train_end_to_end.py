"""`python train.py` as a user runs it: a tiny real run, and every bad input file giving one
`error:` line, exit status 2, no traceback, and nothing already written lost."""

from __future__ import annotations

import os
import re
import sys

import numpy as np
import pytest
from PIL import Image

from tests.support import (
    REPO_ROOT,
    StartedEarly,
    is_selected,
    photo,
    run_train,
    write_image,
)


def tiny_run_flags(tiny_mat, content, style, output) -> list[str]:
    return [
        f"--vgg_model_path={tiny_mat}",
        f"--content_image={content}",
        f"--style_image={style}",
        f"--output_image={output}",
        "--image_width=40",
        "--train_steps=4",
        "--snapshot_every=2",
        "--print_every=2",
    ]


def assert_one_line_error(result, *words: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    for word in words:
        assert word in errors[0]


def _missing_weights(tmp_path, tiny_mat):
    return {"weights": str(tmp_path / "nowhere.mat")}, ("nowhere.mat", "no such file")


def _corrupt_weights(tmp_path, tiny_mat):
    path = tmp_path / "corrupt.mat"
    with open(tiny_mat, "rb") as file:
        path.write_bytes(file.read()[:3000])
    return {"weights": str(path)}, ("corrupt.mat", "get the real file")


def _text_as_content(tmp_path, tiny_mat):
    path = tmp_path / "notes.jpg"
    path.write_text("not an image at all\n")
    return {"content": str(path)}, ("notes.jpg", "--content_image")


def _one_pixel_style(tmp_path, tiny_mat):
    path = write_image(tmp_path / "dot.png", np.full((1, 1, 3), 200, np.float32))
    return {"style": path}, ("dot.png", "below the minimum 32x32")


def _absurd_weights(tmp_path, tiny_mat):
    # Weights whose float32 loss would be infinite (a run that diverges at every step is
    # test_run.py's, built past these checks).
    flags = ["--alpha=1e38", "--beta=1e38", "--train_steps=10", "--overwrite"]
    return {"extra": flags}, ("ALPHA (--alpha) must be at most", "got 1e+38")


BAD_RUNS = {
    "missing weights": _missing_weights,
    "corrupt weights": _corrupt_weights,
    "text as content": _text_as_content,
    "1-pixel style": _one_pixel_style,
    "absurd weights": _absurd_weights,
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(BAD_RUNS))
def test_bad_input_gives_one_error_line_and_keeps_earlier_output(tmp_path, tiny_mat, case):
    content = write_image(tmp_path / "content.jpg", photo(40, 48))
    style = write_image(tmp_path / "style.jpg", photo(40, 48, seed=5))
    output = tmp_path / "out" / "result"
    os.makedirs(output.parent)
    earlier = output.parent / "result.jpg"
    earlier.write_bytes(b"an earlier result")
    change, words = BAD_RUNS[case](tmp_path, tiny_mat)
    flags = tiny_run_flags(
        change.get("weights", tiny_mat),
        change.get("content", content),
        change.get("style", style),
        output,
    )
    result = run_train(*flags, *change.get("extra", []))
    assert_one_line_error(result, *words)
    assert earlier.read_bytes() == b"an earlier result"
    assert not [name for name in os.listdir(output.parent) if name.endswith(".tmp")]


@pytest.fixture(scope="module", autouse=True)
def cmyk_run(request, tiny_mat, tmp_path_factory):
    """The tiny run of the test below, started before this module's first test so that it
    runs beside the bad runs above rather than alone: (it, its folder)."""
    if not is_selected(request, "test_a_tiny_run_with_cmyk_and_16_bit_inputs"):
        yield None
        return
    tmp_path = tmp_path_factory.mktemp("cmyk")
    content = tmp_path / "content.jpg"
    Image.fromarray(photo(40, 48).astype(np.uint8)).convert("CMYK").save(content)
    style = tmp_path / "style.png"
    Image.fromarray((photo(48, 48, seed=3)[:, :, 0] * 257).astype(np.uint16)).save(style)
    output = tmp_path / "out" / "painting"
    train = os.path.join(REPO_ROOT, "train.py")
    command = [sys.executable, train, *tiny_run_flags(tiny_mat, content, style, output)]
    started = StartedEarly(command, tmp_path, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    yield started, tmp_path
    started.kill()


@pytest.mark.slow
def test_a_tiny_run_with_cmyk_and_16_bit_inputs(cmyk_run):
    started, tmp_path = cmyk_run
    with Image.open(tmp_path / "style.png") as style:
        assert style.mode.startswith("I")
    result = started.finish(timeout=120)
    assert result.returncode == 0, result.stderr
    assert "step 4/4" in result.stdout and "running on the CPU" in result.stdout
    # TensorFlow's native start-up lines (I0000 ..., E0000 ...) are kept off the terminal.
    assert not re.search(r"^[IWE]\d{4} ", result.stderr, re.MULTILINE), result.stderr
    written = sorted(os.listdir(tmp_path / "out"))
    assert written == [
        "painting-2.jpg",
        "painting-4.jpg",
        "painting-checkpoint.npz",
        "painting-losses.csv",
        "painting-losses.png",
        "painting-settings.json",
        "painting.jpg",
    ]
