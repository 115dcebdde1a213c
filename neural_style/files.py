"""Atomic file writing: a reader sees the old file or the new one, never half of one.

A snapshot, the final image or a log is written to a hidden temporary file beside its
destination (`.<name>.<random>.tmp`, same directory so same file system), flushed to disk,
and only then renamed over the destination with `os.replace`, which is atomic on POSIX and
Windows. If anything goes wrong the temporary file is deleted and the old file is untouched.

    atomic_write("output/output.png", lambda file: image.save(file, format="PNG"))
    atomic_write_text("output/settings.txt", "ALPHA = 1.0\\n")
"""

import contextlib
import os
import secrets
from collections.abc import Callable
from typing import BinaryIO

# Windows would otherwise translate newlines written through the raw descriptor.
_O_BINARY = getattr(os, "O_BINARY", 0)


def atomic_write(path: str, write: Callable[[BinaryIO], None]) -> None:
    """Writes `path` atomically: `write` fills a temporary file that then replaces `path`.

    Creates the parent directory if needed. On any exception (including
    KeyboardInterrupt) the temporary file is removed, the old file at `path` (if any)
    is left as it was, and the exception is re-raised.
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    temp_path = os.path.join(directory, f".{os.path.basename(path)}.{secrets.token_hex(6)}.tmp")
    # os.open with 0o666 honours the umask, so the result gets the usual permissions
    # (tempfile.mkstemp would leave every output image readable only by its owner).
    descriptor = os.open(temp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_BINARY, 0o666)
    try:
        with os.fdopen(descriptor, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp_path, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(temp_path)
        raise
    _fsync_directory(directory)


def atomic_write_text(path: str, text: str) -> None:
    """Writes `text` to `path` atomically, as UTF-8 (see `atomic_write`)."""
    atomic_write(path, lambda file: file.write(text.encode("utf-8")))


def _fsync_directory(directory: str) -> None:
    """Makes the rename itself durable; best effort, as not every platform allows it."""
    with contextlib.suppress(OSError):
        descriptor = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
