"""A fast cache of VGG-19's conv weights beside the .mat file, so that later runs start fast.

Reading the 510 MB MatConvNet file takes seconds and holds the whole file in memory, fully
connected layers included, though only the sixteen convs (80 MB) are used. The first run
writes them, with the mean pixel, to `<mat>.conv-cache.npz` (uncompressed, written
atomically); later runs load that instead and never import scipy.

The cache is keyed by the .mat file's size, modification time and a hash of its first and
last MiB, so a replaced or changed .mat is noticed. A cache that is stale, unreadable or
corrupt is ignored and rebuilt; a folder that cannot be written to just means no cache.

    convs, mean_pixel = load_cached(path) or (None, None)
    store(path, convs, mean_pixel)
"""

from __future__ import annotations

import hashlib
import os
from typing import BinaryIO

import numpy as np

from neural_style.files import atomic_write

CACHE_SUFFIX = ".conv-cache.npz"
FORMAT_VERSION = 1  # raise when the cache's layout changes, so old caches are rebuilt
HASH_BYTES = 1 << 20  # bytes hashed at each end of the .mat file

RawConvs = dict[str, tuple[np.ndarray, np.ndarray]]  # name -> (kernel HWIO, bias [out])


def cache_path(mat_path: str) -> str:
    return mat_path + CACHE_SUFFIX


def mat_key(mat_path: str) -> str:
    """Identifies one version of the .mat file cheaply: version, size, mtime, head/tail hash."""
    status = os.stat(mat_path)
    digest = hashlib.blake2b(digest_size=16)
    with open(mat_path, "rb") as file:
        digest.update(file.read(HASH_BYTES))
        if status.st_size > 2 * HASH_BYTES:
            file.seek(-HASH_BYTES, os.SEEK_END)
        digest.update(file.read(HASH_BYTES))
    return f"v{FORMAT_VERSION}:{status.st_size}:{status.st_mtime_ns}:{digest.hexdigest()}"


def load_cached(mat_path: str) -> tuple[RawConvs, np.ndarray] | None:
    """The cached (convs, mean pixel) of `mat_path`, or None when there is no valid cache.

    Only the key is checked here; the caller validates shapes as it does for the .mat.
    """
    path = cache_path(mat_path)
    if not os.path.isfile(path):
        return None
    try:
        key = mat_key(mat_path)
        with np.load(path, allow_pickle=False) as stored:
            if str(stored["key"]) != key:
                return None
            names = [str(name) for name in stored["names"]]
            convs = {name: (stored[f"{name}_kernel"], stored[f"{name}_bias"]) for name in names}
            return convs, stored["mean_pixel"]
    except Exception:  # a truncated or foreign file is no cache at all: rebuild it
        return None


def store(mat_path: str, convs: RawConvs, mean_pixel: np.ndarray) -> str | None:
    """Write the cache beside `mat_path`; its path, or None if the folder is not writable."""
    arrays = {"key": np.array(mat_key(mat_path)), "names": np.array(list(convs))}
    arrays["mean_pixel"] = np.asarray(mean_pixel, np.float32)
    for name, (kernel, bias) in convs.items():
        arrays[f"{name}_kernel"] = np.ascontiguousarray(kernel, np.float32)
        arrays[f"{name}_bias"] = np.ascontiguousarray(bias, np.float32)

    def write(stream: BinaryIO) -> None:
        np.savez(stream, **arrays)

    path = cache_path(mat_path)
    try:
        atomic_write(path, write)
    except OSError:
        return None
    return path


def cached_megabytes(convs: RawConvs) -> float:
    return sum(kernel.nbytes + bias.nbytes for kernel, bias in convs.values()) / 1e6
