"""The conv-weight cache beside the .mat: written once, used after, rebuilt when stale."""

from __future__ import annotations

import io
import os
import shutil

import numpy as np

from neural_style.vgg import weights_cache
from neural_style.vgg.mat import read_vgg19_mat
from tests.support import save_mat, tiny_variables


def _same(a, b) -> None:
    assert list(a.convs) == list(b.convs)
    for name in a.convs:
        np.testing.assert_array_equal(a.convs[name].kernel, b.convs[name].kernel)
        np.testing.assert_array_equal(a.convs[name].bias, b.convs[name].bias)
    np.testing.assert_array_equal(a.mean_pixel, b.mean_pixel)


def test_first_read_writes_the_cache_and_says_so(tmp_path):
    path = save_mat(tmp_path / "vgg.mat", tiny_variables())
    said = io.StringIO()
    first = read_vgg19_mat(path, stream=said)
    assert os.path.isfile(weights_cache.cache_path(path))
    assert said.getvalue().count("\n") == 1
    assert "caching the 16 conv layers" in said.getvalue()
    assert weights_cache.cache_path(path) in said.getvalue()
    said = io.StringIO()
    second = read_vgg19_mat(path, stream=said)
    assert said.getvalue() == ""  # a warm start says nothing
    _same(first, second)
    _same(first, read_vgg19_mat(path, cache=False))


def test_the_warm_read_does_not_open_the_mat(tmp_path, monkeypatch):
    path = save_mat(tmp_path / "vgg.mat", tiny_variables())
    expected = read_vgg19_mat(path)

    def refuse(*args, **kwargs):
        raise AssertionError("the .mat was read although the cache is valid")

    monkeypatch.setattr("neural_style.vgg.mat._load_mat", refuse)
    _same(expected, read_vgg19_mat(path))


def test_a_changed_mat_is_noticed(tmp_path):
    path = save_mat(tmp_path / "vgg.mat", tiny_variables(seed=0))
    read_vgg19_mat(path)
    stat = os.stat(path)
    save_mat(path, tiny_variables(seed=1))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # even with the old mtime
    _same(read_vgg19_mat(path), read_vgg19_mat(path, cache=False))


def test_a_corrupt_cache_is_ignored_and_rebuilt(tmp_path):
    path = save_mat(tmp_path / "vgg.mat", tiny_variables())
    expected = read_vgg19_mat(path, cache=False)
    with open(weights_cache.cache_path(path), "wb") as stream:
        stream.write(b"NSCONV02 not really a cache")
    _same(expected, read_vgg19_mat(path))
    assert weights_cache.load_cached(path) is not None  # rebuilt


def test_a_cache_from_another_file_is_not_used(tmp_path):
    one = save_mat(tmp_path / "one.mat", tiny_variables(seed=0))
    other = save_mat(tmp_path / "other.mat", tiny_variables(seed=1))
    read_vgg19_mat(one)
    shutil.copy(weights_cache.cache_path(one), weights_cache.cache_path(other))
    assert weights_cache.load_cached(other) is None
    _same(read_vgg19_mat(other), read_vgg19_mat(other, cache=False))


def test_a_read_only_folder_means_no_cache(tmp_path, monkeypatch):
    path = save_mat(tmp_path / "vgg.mat", tiny_variables())

    def no_write(*args, **kwargs):
        raise PermissionError("read-only")

    monkeypatch.setattr(weights_cache, "atomic_write", no_write)
    said = io.StringIO()
    weights = read_vgg19_mat(path, stream=said)
    assert not os.path.exists(weights_cache.cache_path(path))
    _same(weights, read_vgg19_mat(path, cache=False))
    note = said.getvalue().splitlines()[-1]
    assert note.startswith(f"note: {weights_cache.cache_path(path)}: cannot cache the conv weights")
    assert "read-only" in note and "later runs read the .mat instead" in note


def test_a_truncated_cache_is_ignored(tmp_path):
    path = save_mat(tmp_path / "vgg.mat", tiny_variables())
    expected = read_vgg19_mat(path)
    cache = weights_cache.cache_path(path)
    with open(cache, "rb") as stream:
        whole = stream.read()
    with open(cache, "wb") as stream:
        stream.write(whole[:-4])
    assert weights_cache.load_cached(path) is None
    _same(expected, read_vgg19_mat(path))
    assert weights_cache.load_cached(path) is not None  # rebuilt whole
