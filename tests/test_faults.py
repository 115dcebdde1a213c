"""Real faults as a user meets them: a read-only file system, a full disk, a file where a
folder should be, names too long, a file only its owner may read. Each gives one line
naming the path, and nothing written earlier is lost.

The faults are real, not stubbed: tests mount small tmpfs file systems (full, or remounted
read-only), and run a child without root's power over permissions (setpriv), since the
tests run as root, which a read-only folder does not stop. Mounting needs root or
CAP_SYS_ADMIN; without it these tests fail, saying so.
"""

from __future__ import annotations

import errno
import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from neural_style.errors import UserError
from neural_style.media.images import load_image, save_image
from neural_style.media.plots import PlotProcess, write_loss_plot
from neural_style.vgg import weights_cache, weights_file
from neural_style.vgg.mat import read_vgg19_mat
from neural_style.vgg.weights_file import DEFAULT_VGG_MODEL_PATH
from tests.support import REPO_ROOT, photo, remount, save_mat, tiny_variables, tmpfs

# Keeps a child from bypassing file permissions, as root otherwise does.
WITHOUT_ROOT_PERMISSIONS = [
    "setpriv",
    "--inh-caps=-dac_override,-dac_read_search",
    "--bounding-set=-dac_override,-dac_read_search",
]


def fill(folder: Path) -> None:
    """Fills the file system holding `folder` to the last byte."""
    with open(folder / "filler", "wb", buffering=0) as filler:  # unbuffered: close cannot fail
        try:
            while True:
                filler.write(b"\0" * 4096)
        except OSError as error:
            assert error.errno == errno.ENOSPC, error


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file below `folder`, by relative path: what must stay as it was."""
    return {
        str(path.relative_to(folder)): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name != "filler"
    }


def assert_one_line_naming(message: str, path: str) -> None:
    assert "\n" not in message, message
    assert message.startswith(f"{path}: "), message
    assert "Traceback" not in message and "Errno" not in message, message


IMAGE = photo(40, 48, seed=3)
NEWER = photo(40, 48, seed=4)


def _noise(side: int) -> np.ndarray:
    """An image whose PNG cannot be compressed: big enough to overflow a small disk."""
    return np.random.default_rng(5).uniform(0, 255, (side, side, 3)).astype(np.float32)


# --- save_image ---------------------------------------------------------------------------


@pytest.mark.root
def test_save_into_a_read_only_file_system(tmp_path):
    with tmpfs(tmp_path / "disk") as disk:
        path = str(disk / "out" / "result.png")
        save_image(path, IMAGE)
        before = snapshot(disk)
        remount(disk, read_only=True)

        with pytest.raises(UserError) as caught:
            save_image(path, NEWER)
        with pytest.raises(UserError) as new_folder:
            save_image(str(disk / "new" / "result.png"), NEWER)

        message = str(caught.value)
        assert_one_line_naming(message, path)
        assert "the file system is read-only; write to another folder: set OUTPUT_IMAGE" in message
        assert "the file system is read-only" in str(new_folder.value)
        assert snapshot(disk) == before
        np.testing.assert_array_equal(load_image(path, "CONTENT_IMAGE"), np.rint(IMAGE))


@pytest.mark.root
def test_save_onto_a_full_disk_keeps_the_earlier_file_and_leaves_no_temp(tmp_path):
    with tmpfs(tmp_path / "disk", size="200k") as disk:
        path = str(disk / "result.png")
        save_image(path, IMAGE)
        before = snapshot(disk)
        fill(disk)

        with pytest.raises(UserError) as caught:
            save_image(path, _noise(160))  # about 77 kB of PNG

        message = str(caught.value)
        assert_one_line_naming(message, path)
        assert "the disk is full (no space left)" in message
        assert message.endswith("or pass --output_image=PATH, or free some space")
        assert snapshot(disk) == before
        assert sorted(os.listdir(disk)) == ["filler", "result.png"]  # no temporary left


@pytest.mark.parametrize("depth", ["out", "out/sub"])
def test_save_under_a_file_where_a_folder_should_be(tmp_path, depth):
    blocker = tmp_path / "out"
    blocker.write_bytes(b"a file named like the output folder")
    path = str(tmp_path / depth / "result.png")

    with pytest.raises(UserError) as caught:
        save_image(path, IMAGE, setting="STYLIZE_OUTPUT")

    message = str(caught.value)
    assert_one_line_naming(message, path)
    assert f"cannot write the file: {blocker} is a file where a folder should be" in message
    assert "set STYLIZE_OUTPUT in settings.py or pass --stylize_output=PATH, or move" in message
    assert blocker.read_bytes() == b"a file named like the output folder"
    assert os.listdir(tmp_path) == ["out"]


@pytest.mark.root
def test_save_with_a_250_byte_name_works(tmp_path):
    with tmpfs(tmp_path / "disk") as disk:  # a file system whose limit is known: 255 bytes
        path = disk / ("r" * 246 + ".png")
        earlier = disk / "earlier.png"
        save_image(str(earlier), IMAGE)
        before = earlier.read_bytes()

        save_image(str(path), NEWER)
        save_image(str(path), IMAGE)  # and again, over itself

        np.testing.assert_array_equal(load_image(str(path), "CONTENT_IMAGE"), np.rint(IMAGE))
        assert sorted(os.listdir(disk)) == sorted([path.name, "earlier.png"])
        assert earlier.read_bytes() == before


def test_save_with_a_300_byte_name_is_one_line(tmp_path):
    earlier = tmp_path / "earlier.png"
    save_image(str(earlier), IMAGE)
    before = earlier.read_bytes()
    path = str(tmp_path / ("r" * 296 + ".png"))

    with pytest.raises(UserError) as caught:
        save_image(path, IMAGE)

    message = str(caught.value)
    assert_one_line_naming(message, path)
    assert "a name of 300 bytes, and this file system allows at most 255" in message
    assert "use a shorter name: set OUTPUT_IMAGE" in message
    assert os.listdir(tmp_path) == ["earlier.png"]
    assert earlier.read_bytes() == before


_SAVE_AS_A_USER = """
import sys
import numpy as np
from neural_style.errors import UserError
from neural_style.media.images import save_image
try:
    save_image(sys.argv[1], np.zeros((40, 48, 3), np.float32))
except UserError as error:
    print(error)
"""


def as_a_user(script: str, path: str) -> str:
    """What `script` prints about `path`, run without root's power over permissions."""
    result = subprocess.run(
        [*WITHOUT_ROOT_PERMISSIONS, sys.executable, "-c", script, path],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": REPO_ROOT},
        check=False,
    )
    assert result.returncode == 0 and result.stderr == "", result.stderr
    return result.stdout.strip()


def test_save_into_a_folder_without_write_permission(tmp_path):
    folder = tmp_path / "locked"
    folder.mkdir()
    (folder / "result.png").write_bytes(b"the earlier result")
    folder.chmod(0o555)
    path = str(folder / "result.png")
    message = as_a_user(_SAVE_AS_A_USER, path)
    assert_one_line_naming(message, path)
    assert "permission denied" in message and "or check the folder's permissions" in message
    assert os.listdir(folder) == ["result.png"]
    assert (folder / "result.png").read_bytes() == b"the earlier result"


# --- the synthetic weights, the conv cache and the .mat ----------------------------------


@pytest.mark.root
def test_synthetic_weights_on_a_full_disk_name_the_folder_and_the_space(tmp_path, monkeypatch):
    with tmpfs(tmp_path / "disk", size="200k") as disk:
        (disk / "content.jpg").write_bytes(b"an input that must survive")
        before = snapshot(disk)
        monkeypatch.chdir(disk)
        assert not os.path.exists("weights")
        said = io.StringIO()

        with pytest.raises(UserError) as caught:
            weights_file.resolve_weights_path(DEFAULT_VGG_MODEL_PATH, said)

        folder = str(disk / "weights")
        message = str(caught.value)
        assert_one_line_naming(message, folder)
        needed = weights_file.SYNTHETIC_WEIGHTS_BYTES / 1024**2
        assert f"the synthetic weights need about {needed:.0f} MB there" in message
        assert "free some space" in message
        assert snapshot(disk) == before
        assert not os.path.exists(os.path.join(folder, weights_file.SYNTHETIC_WEIGHTS_NAME))


@pytest.mark.root
def test_the_conv_cache_beside_a_read_only_mat_is_only_a_note(tmp_path):
    with tmpfs(tmp_path / "disk") as disk:
        path = save_mat(disk / "vgg.mat", tiny_variables())
        expected = read_vgg19_mat(path, cache=False)
        before = snapshot(disk)
        remount(disk, read_only=True)
        said = io.StringIO()

        weights = read_vgg19_mat(path, stream=said)

        lines = said.getvalue().splitlines()
        assert lines[0].startswith(f"caching the 16 conv layers of {path}")
        cache = weights_cache.cache_path(path)
        assert lines[1] == (
            f"note: {cache}: cannot cache the conv weights: the file system is read-only; "
            "later runs read the .mat instead, which only takes longer"
        )
        assert len(lines) == 2
        for name in expected.convs:
            np.testing.assert_array_equal(weights.convs[name].kernel, expected.convs[name].kernel)
        assert snapshot(disk) == before


@pytest.mark.root
def test_the_conv_cache_on_a_full_disk_is_only_a_note(tmp_path):
    with tmpfs(tmp_path / "disk", size="200k") as disk:
        path = save_mat(disk / "vgg.mat", tiny_variables())
        before = snapshot(disk)
        fill(disk)
        said = io.StringIO()

        read_vgg19_mat(path, stream=said)

        note = said.getvalue().splitlines()[-1]
        assert note.startswith(f"note: {weights_cache.cache_path(path)}: cannot cache")
        assert "the disk is full (no space left)" in note
        assert snapshot(disk) == before
        assert sorted(os.listdir(disk)) == ["filler", "vgg.mat"]


_READ_AS_A_USER = """
import sys
from neural_style.errors import UserError
from neural_style.vgg.mat import read_vgg19_mat
try:
    read_vgg19_mat(sys.argv[1])
except UserError as error:
    print(error)
"""


@pytest.mark.root
def test_a_mat_only_its_owner_may_read_says_permissions_not_download(tmp_path):
    path = save_mat(tmp_path / "vgg.mat", tiny_variables())
    os.chmod(path, 0o000)
    before = Path(path).read_bytes()
    message = as_a_user(_READ_AS_A_USER, path)
    assert_one_line_naming(message, path)
    assert message.startswith(f"{path}: permission denied; check the file's permissions, or set ")
    assert "get the real file" not in message and "curl" not in message
    assert Path(path).read_bytes() == before
    assert os.listdir(tmp_path) == ["vgg.mat"]  # and no cache was written by the failed read


# --- the loss plot ------------------------------------------------------------------------


@pytest.mark.root
def test_a_plot_into_a_read_only_folder_is_one_line(tmp_path):
    import matplotlib  # noqa: F401  (in the test extra: this test runs, never skips)

    with tmpfs(tmp_path / "disk") as disk:
        csv_path = disk / "result-losses.csv"
        csv_path.write_text("step,content,style,tv,total,seconds\n1,2.0,3.0,0.5,5.5,0.1\n")
        png_path = str(disk / "result-losses.png")
        assert write_loss_plot(str(csv_path), png_path)
        before = snapshot(disk)
        remount(disk, read_only=True)

        with pytest.raises(UserError) as caught:
            write_loss_plot(str(csv_path), png_path)
        note = PlotProcess(str(csv_path), png_path).wait()

        message = str(caught.value)
        assert_one_line_naming(message, png_path)
        assert "the file system is read-only" in message and "OUTPUT_IMAGE" in message
        assert note == f"note: the loss plot could not be drawn ({message})"
        assert snapshot(disk) == before
