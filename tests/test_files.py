"""Tests for neural_style.files: atomic writes leave the old file or the new, never a mix."""

import os
import stat
import sys

import pytest

from neural_style.files import atomic_write, atomic_write_text


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
