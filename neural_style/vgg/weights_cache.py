"""A fast cache of VGG-19's conv weights beside the .mat file, so that later runs start fast.

Reading the 510 MB MatConvNet file takes seconds and holds the whole file in memory, fully
connected layers included, though only the sixteen convs (80 MB) are used. The first run
writes them, with the mean pixel, to `<mat>.conv-cache` (written atomically); later runs
load that instead and never import scipy. The file is a short JSON header and then the
raw float32 weights, mapped into memory: about 0.02 s warm, where an .npz took 0.2 s.

    bytes 0-7    b"NSCONV02"
    bytes 8-15   the header's length in bytes, little-endian
    header       JSON: {"key": ..., "sha256": the .mat's digest, "mean_pixel": [r, g, b],
                        "layers": [[name, kernel shape HWIO, biases], ...]}
    padding      zeros to a multiple of 64 bytes
    data         each layer's kernel, then its biases, little-endian float32

The cache is keyed by the .mat file's size, modification time and a hash of its first and
last MiB, so a replaced or changed .mat is noticed. A cache that is stale, unreadable or
corrupt is ignored and rebuilt; a folder that cannot be written to (read-only, full) just
means no cache, and a one-line note saying so. The header also keeps the .mat's sha256,
taken once as the cache is written, so that a resumed run knows its weights by their bytes
without reading 510 MB each time (cached_digest).

    convs, mean_pixel = load_cached(path) or (None, None)
    store(path, convs, mean_pixel)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from typing import BinaryIO, TextIO

import numpy as np

from neural_style.files import atomic_write, sha256_of, write_cause

CACHE_SUFFIX = ".conv-cache"
OLD_CACHE_SUFFIX = ".conv-cache.npz"  # the first format's file, removed when a cache is written
MAGIC = b"NSCONV02"
FORMAT_VERSION = 3  # raise when the cache's layout changes, so old caches are rebuilt (3: sha256)
ALIGNMENT = 64  # the data starts on a multiple of this many bytes
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

    Only the key and the sizes are checked here; the caller validates shapes and values as
    it does for the .mat.
    """
    path = cache_path(mat_path)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, "rb") as file:
            header, length = _read_header(file)
            if header["key"] != mat_key(mat_path):
                return None
            sizes = [(int(np.prod(shape)), biases) for _, shape, biases in header["layers"]]
            count = sum(kernel + biases for kernel, biases in sizes)
            offset = _data_offset(length)
            if os.fstat(file.fileno()).st_size != offset + 4 * count:
                return None  # truncated, or more than the header says
        # Mapped, not read: the network copies what it needs, and nothing is read twice.
        data = np.memmap(path, dtype="<f4", mode="r", offset=offset, shape=(count,))
        convs, at = {}, 0
        for (name, shape, biases), (kernel_size, _) in zip(header["layers"], sizes, strict=True):
            kernel = data[at : at + kernel_size].reshape(shape)
            at += kernel_size
            convs[name] = (kernel, data[at : at + biases])
            at += biases
        return convs, np.asarray(header["mean_pixel"], np.float32)
    except Exception:  # a truncated or foreign file is no cache at all: rebuild it
        return None


def cached_digest(mat_path: str) -> str | None:
    """The sha256 of `mat_path` as its cache keeps it, or None without a cache made from
    this very file (same size, modification time, first and last MiB)."""
    try:
        with open(cache_path(mat_path), "rb") as file:
            header, _ = _read_header(file)
        if header["key"] != mat_key(mat_path):
            return None
        digest = header["sha256"]
    except Exception:  # no cache, or a foreign or damaged one: the caller reads the .mat
        return None
    return digest if isinstance(digest, str) and len(digest) == 64 else None


def _read_header(file: BinaryIO) -> tuple[dict, int]:
    """The cache's JSON header and its length in bytes, read from the start of `file`.

    Raises:
      ValueError: the file is no cache of this format (its magic differs).
    """
    if file.read(len(MAGIC)) != MAGIC:
        raise ValueError("not a conv cache of this format")
    length = int.from_bytes(file.read(8), "little")
    return json.loads(file.read(length)), length


def _data_offset(header_length: int) -> int:
    return -(-(len(MAGIC) + 8 + header_length) // ALIGNMENT) * ALIGNMENT


def store(
    mat_path: str, convs: RawConvs, mean_pixel: np.ndarray, *, stream: TextIO | None = None
) -> str | None:
    """Write the cache beside `mat_path`; its path, or None if it cannot be written.

    The cache is optional: a failure (a read-only folder, a full disk) is never an error,
    only a one-line note on `stream` saying why, and the run goes on from the .mat.
    """
    path = cache_path(mat_path)
    try:
        _write_cache(path, mat_path, convs, mean_pixel)
    except OSError as error:
        if stream is not None:
            print(
                f"note: {path}: cannot cache the conv weights: {write_cause(path, error)}; "
                "later runs read the .mat instead, which only takes longer",
                file=stream,
                flush=True,
            )
        return None
    old = mat_path + OLD_CACHE_SUFFIX
    with contextlib.suppress(OSError):  # a leftover that cannot go does no harm
        if os.path.isfile(old):
            os.remove(old)
    return path


def _write_cache(path: str, mat_path: str, convs: RawConvs, mean_pixel: np.ndarray) -> None:
    header = {
        "key": mat_key(mat_path),
        "sha256": sha256_of(mat_path),
        "mean_pixel": [float(value) for value in np.asarray(mean_pixel).reshape(-1)],
        "layers": [
            [name, list(kernel.shape), int(np.size(bias))] for name, (kernel, bias) in convs.items()
        ],
    }
    encoded = json.dumps(header).encode()

    def write(stream: BinaryIO) -> None:
        stream.write(MAGIC + len(encoded).to_bytes(8, "little") + encoded)
        stream.write(bytes(_data_offset(len(encoded)) - len(MAGIC) - 8 - len(encoded)))
        for kernel, bias in convs.values():
            stream.write(np.ascontiguousarray(kernel, "<f4").tobytes())
            stream.write(np.ascontiguousarray(bias, "<f4").reshape(-1).tobytes())

    atomic_write(path, write)


def cached_megabytes(convs: RawConvs) -> float:
    return sum(kernel.nbytes + bias.nbytes for kernel, bias in convs.values()) / 1e6
