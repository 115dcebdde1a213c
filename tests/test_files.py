"""Tests for neural_style.files: atomic writes leave the old file or the new, never a mix."""

import errno
import os
import stat
import subprocess
import sys

import pytest

from neural_style.errors import UserError
from neural_style.files import (
    atomic_write,
    atomic_write_text,
    name_limit,
    output_error,
    remove_stale_temps,
)
from tests.support import REPO_ROOT


def _temp_files(directory):
    return [name for name in os.listdir(directory) if name.endswith(".tmp")]


def test_writes_bytes_and_creates_parent_directories(tmp_path):
    path = tmp_path / "a" / "b" / "out.bin"

    atomic_write(str(path), lambda file: file.write(b"\x00\x01\n\xff"))

    assert path.read_bytes() == b"\x00\x01\n\xff"
    assert _temp_files(path.parent) == []


def test_writes_through_a_hidden_temp_file_in_the_same_directory(tmp_path):
    path = tmp_path / "out.bin"
    seen = []

    def write(file):
        seen.extend(os.listdir(tmp_path))
        file.write(b"data")

    atomic_write(str(path), write)

    assert len(seen) == 1
    assert seen[0].startswith(".") and seen[0].endswith(".tmp")
    assert os.listdir(tmp_path) == ["out.bin"]


def test_replaces_an_existing_file(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text("old contents that are longer than the new ones")

    atomic_write_text(str(path), "new")

    assert path.read_text() == "new"
    assert _temp_files(tmp_path) == []


def test_text_is_utf8(tmp_path):
    path = tmp_path / "log.txt"

    atomic_write_text(str(path), "Œuvre — größe ✓\nline two\n")

    assert path.read_bytes() == "Œuvre — größe ✓\nline two\n".encode()


def test_relative_path_writes_into_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    atomic_write_text("plain.txt", "hello")

    assert (tmp_path / "plain.txt").read_text() == "hello"


@pytest.mark.parametrize("error", [RuntimeError("boom"), KeyboardInterrupt()])
def test_failed_write_removes_temp_file_and_keeps_old_file(tmp_path, error):
    path = tmp_path / "out.bin"
    path.write_bytes(b"old")

    def write(file):
        file.write(b"partial new data")
        raise error

    with pytest.raises(type(error)):
        atomic_write(str(path), write)

    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["out.bin"]


def test_failed_write_of_a_new_file_leaves_nothing(tmp_path):
    path = tmp_path / "new.bin"

    def write(file):
        raise ValueError("bad data")

    with pytest.raises(ValueError, match="bad data"):
        atomic_write(str(path), write)

    assert os.listdir(tmp_path) == []


def test_failed_replace_removes_temp_file(tmp_path):
    target = tmp_path / "a_directory"
    (target / "inside").mkdir(parents=True)

    with pytest.raises(OSError):
        atomic_write_text(str(target), "cannot replace a non-empty directory")

    assert _temp_files(tmp_path) == []
    assert (target / "inside").is_dir()


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permission bits")
def test_new_file_gets_the_usual_permissions(tmp_path):
    path = tmp_path / "out.txt"
    old_umask = os.umask(0o022)
    try:
        atomic_write_text(str(path), "x")
    finally:
        os.umask(old_umask)

    assert stat.S_IMODE(path.stat().st_mode) == 0o644


# Long names: the temporary must fit the file system's limit whenever the final name does.


def _temp_names_seen(path):
    seen = []

    def write(file):
        seen.extend(name for name in os.listdir(os.path.dirname(path)) if name.endswith(".tmp"))
        file.write(b"data")

    atomic_write(str(path), write)
    return seen


@pytest.mark.parametrize("length", [237, 238, 250, 255])
def test_a_name_up_to_the_limit_is_written_through_a_temp_that_fits(tmp_path, length):
    limit = name_limit(str(tmp_path))
    assert limit == 255, "these lengths assume the usual 255-byte limit"
    path = tmp_path / ("n" * (length - 4) + ".png")

    seen = _temp_names_seen(path)

    assert path.read_bytes() == b"data"
    assert len(seen) == 1 and len(os.fsencode(seen[0])) <= limit
    assert seen[0].startswith(".nnnn") and seen[0].endswith(".tmp")
    assert os.listdir(tmp_path) == [path.name]


def test_a_multibyte_name_is_cut_between_characters(tmp_path):
    path = tmp_path / ("é" * 125 + ".png")  # 254 bytes
    seen = _temp_names_seen(path)
    assert path.read_bytes() == b"data"
    assert len(os.fsencode(seen[0])) <= name_limit(str(tmp_path))
    seen[0].encode("utf-8")  # whole characters only: a cut one would not encode


def test_a_name_over_the_limit_fails_before_anything_is_written(tmp_path):
    path = tmp_path / ("n" * 252 + ".png")  # 256 bytes
    calls = []

    with pytest.raises(OSError) as caught:
        atomic_write(str(path), calls.append)

    assert caught.value.errno == errno.ENAMETOOLONG
    assert calls == []  # not a byte written, so no time lost on a big file
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("nested", [False, True])
def test_a_file_where_the_folder_should_be_is_not_a_directory_error(tmp_path, nested):
    blocker = tmp_path / "out"
    blocker.write_bytes(b"keep me")
    folder = blocker / "deeper" if nested else blocker

    with pytest.raises(NotADirectoryError) as caught:
        atomic_write_text(str(folder / "result.txt"), "x")

    assert caught.value.errno == errno.ENOTDIR
    assert blocker.read_bytes() == b"keep me"
    assert os.listdir(tmp_path) == ["out"]


# output_error: one line, the path, the cause in plain words, the fix.


def _error_for(tmp_path, path, setting="OUTPUT_IMAGE"):
    try:
        atomic_write_text(str(path), "x")
    except OSError as error:
        return str(output_error(str(path), error, setting))
    raise AssertionError(f"writing {path} did not fail")


def test_output_error_names_the_file_in_the_way(tmp_path):
    (tmp_path / "out").write_text("a file")
    path = tmp_path / "out" / "sub" / "result.png"

    message = _error_for(tmp_path, path, "STYLIZE_OUTPUT")

    assert message == (
        f"{path}: cannot write the file: {tmp_path / 'out'} is a file where a folder should "
        "be; set STYLIZE_OUTPUT in settings.py or pass --stylize_output=PATH, or move that "
        "file away"
    )


def test_output_error_names_a_link_to_nothing_in_the_way(tmp_path):
    os.symlink(tmp_path / "gone", tmp_path / "out")
    path = tmp_path / "out" / "result.png"
    message = _error_for(tmp_path, path)
    assert f": {tmp_path / 'out'} is a link to nothing where a folder should be; " in message
    assert os.path.islink(tmp_path / "out") and not (tmp_path / "gone").exists()


def test_output_error_for_a_name_too_long(tmp_path):
    path = tmp_path / ("n" * 296 + ".png")
    message = _error_for(tmp_path, path)
    assert message == (
        f"{path}: cannot write the file: a name of 300 bytes, and this file system allows at "
        "most 255; use a shorter name: set OUTPUT_IMAGE in settings.py or pass "
        "--output_image=PATH"
    )


def test_output_error_for_a_folder_at_the_path(tmp_path):
    (tmp_path / "result.png" / "inside").mkdir(parents=True)
    message = _error_for(tmp_path, tmp_path / "result.png")
    assert message.startswith(f"{tmp_path / 'result.png'}: cannot write the file: a folder ")
    assert "name a file, not a folder: set OUTPUT_IMAGE" in message


def test_output_error_is_a_user_error_on_one_line():
    error = output_error("a\nb.png", OSError(errno.EIO, "Input/output\nerror"), "OUTPUT_IMAGE")
    assert isinstance(error, UserError)
    assert "\n" not in str(error)
    assert "Input/output error" in str(error)


# remove_stale_temps: the leftovers of a killed run, and nothing else.

_KILLED_WRITER = """
import sys, time
from neural_style.files import atomic_write

def write(file):
    file.write(b"half a file")
    file.flush()
    print("writing", flush=True)
    time.sleep(60)

atomic_write(sys.argv[1], write)
"""


def _killed_mid_write(path) -> None:
    """Starts a real process that writes `path` atomically and kills it mid-write."""
    env = {**os.environ, "PYTHONPATH": REPO_ROOT}
    process = subprocess.Popen(
        [sys.executable, "-c", _KILLED_WRITER, str(path)], stdout=subprocess.PIPE, env=env
    )
    try:
        assert process.stdout.readline() == b"writing\n"
    finally:
        process.kill()
        process.wait()


def test_removes_what_a_killed_run_left_and_nothing_else(tmp_path):
    prefix = tmp_path / "result"
    (tmp_path / "result.png").write_bytes(b"the earlier result")
    _killed_mid_write(tmp_path / "result.png")
    _killed_mid_write(tmp_path / "result-losses.csv")
    left = sorted(name for name in os.listdir(tmp_path) if name.endswith(".tmp"))
    assert len(left) == 2
    survivors = {
        ".other.tmp": b"another program's",
        "result.png.0123456789ab.tmp": b"not hidden",
        ".other.png.0123456789ab.tmp": b"another prefix's temporary",
        ".result.png": b"hidden, but no temporary",
        "result.png": b"the earlier result",
    }
    for name, data in survivors.items():
        (tmp_path / name).write_bytes(data)
    (tmp_path / ".result-0001.png.0123456789ab.tmp").mkdir()  # a folder is never removed
    os.symlink(tmp_path / "result.png", tmp_path / ".result.jpg.0123456789ab.tmp")

    removed = remove_stale_temps(str(prefix))

    assert sorted(os.path.basename(path) for path in removed) == left
    for name, data in survivors.items():
        assert (tmp_path / name).read_bytes() == data
    assert (tmp_path / ".result-0001.png.0123456789ab.tmp").is_dir()
    assert os.path.islink(tmp_path / ".result.jpg.0123456789ab.tmp")
    assert remove_stale_temps(str(prefix)) == []


def test_removes_the_shortened_temp_of_a_long_name(tmp_path):
    base = "b" * 246  # result names of 250 bytes and more: their temporaries are cut short
    _killed_mid_write(tmp_path / f"{base}.png")
    (left,) = os.listdir(tmp_path)
    assert base not in left  # shortened: even the prefix itself did not fit
    other = "b" * 200 + "c" * 46  # shares the first 200 bytes only
    _killed_mid_write(tmp_path / f"{other}.png")

    removed = remove_stale_temps(str(tmp_path / base))

    assert removed == [str(tmp_path / left)]
    (kept,) = os.listdir(tmp_path)
    assert kept.startswith(".bbbb") and "c" in kept


@pytest.mark.parametrize("prefix", ["", "/"])
def test_a_prefix_without_a_name_removes_nothing(tmp_path, monkeypatch, prefix):
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".x.png.0123456789ab.tmp").write_bytes(b"keep")
    assert remove_stale_temps(str(tmp_path) + "/" if prefix == "/" else prefix) == []
    assert (tmp_path / ".x.png.0123456789ab.tmp").read_bytes() == b"keep"


def test_a_missing_folder_has_nothing_to_remove(tmp_path):
    assert remove_stale_temps(str(tmp_path / "not yet" / "result")) == []
    assert not (tmp_path / "not yet").exists()
