"""Atomic file writing: a reader sees the old file or the new one, never half of one.

A snapshot, the final image or a log is written to a hidden temporary file beside its
destination (`.<name>.<random>.tmp`, same directory so same file system), flushed to disk,
and only then renamed over the destination with `os.replace`, which is atomic on POSIX and
Windows. If anything goes wrong the temporary file is deleted and the old file is untouched.
A run killed mid-write can still leave a temporary behind; `remove_stale_temps` clears
those of one output prefix, and `output_error` words a failed write as one line.

    atomic_write("output/output.png", lambda file: image.save(file, format="PNG"))
    atomic_write_text("output/settings.txt", "ALPHA = 1.0\\n")
    remove_stale_temps("output/output")  # [".output.png.3f9a0c1b2d4e.tmp", ...] removed
"""

import contextlib
import errno
import hashlib
import os
import re
import secrets
import stat
from collections.abc import Callable
from typing import BinaryIO

from neural_style.errors import UserError, one_line, setting_fix

# Windows would otherwise translate newlines written through the raw descriptor.
_O_BINARY = getattr(os, "O_BINARY", 0)
# What a file system without pathconf (Windows) or one that will not say is assumed to allow.
DEFAULT_NAME_MAX = 255
_RANDOM_HEX = 12  # hex digits of the temporary name's random part
_TEMP_SUFFIX = ".tmp"
# The bytes a temporary name adds to the part copied from the final name: ".", ".<hex>.tmp".
_TEMP_EXTRA = 1 + 1 + _RANDOM_HEX + len(_TEMP_SUFFIX)
_TEMP_NAME = re.compile(rf"\.(?P<copied>.+)\.[0-9a-f]{{{_RANDOM_HEX}}}{re.escape(_TEMP_SUFFIX)}")


def atomic_write(path: str, write: Callable[[BinaryIO], None]) -> None:
    """Writes `path` atomically: `write` fills a temporary file that then replaces `path`.

    Creates the parent directory if needed. On any exception (including
    KeyboardInterrupt) the temporary file is removed, the old file at `path` (if any)
    is left as it was, and the exception is re-raised.

    Raises:
        OSError: the folder cannot be made (NotADirectoryError, with the file that stands
            where a folder should be as its filename), the name is longer than the file
            system allows (ENAMETOOLONG, before anything is written), or the write fails.
    """
    directory = os.path.dirname(os.path.abspath(path))
    _make_folder(directory)
    name = os.path.basename(path)
    name_max = name_limit(directory)
    if len(os.fsencode(name)) > name_max:
        # Checked first: otherwise the whole file is written and only the rename fails.
        raise OSError(errno.ENAMETOOLONG, os.strerror(errno.ENAMETOOLONG), path)
    temp_path = os.path.join(directory, _temp_name(name, name_max))
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


def sha256_of(path: str) -> str:
    """The hex sha256 of the file's bytes, read in 1 MiB blocks (raises OSError)."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def atomic_write_text(path: str, text: str) -> None:
    """Writes `text` to `path` atomically, as UTF-8 (see `atomic_write`)."""
    atomic_write(path, lambda file: file.write(text.encode("utf-8")))


def name_limit(directory: str) -> int:
    """The longest file name, in bytes, that the file system holding `directory` allows."""
    try:
        limit = os.pathconf(directory, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):  # no pathconf, or no answer for it
        return DEFAULT_NAME_MAX
    return limit if limit > 0 else DEFAULT_NAME_MAX  # -1: the system sets no limit it knows


def remove_stale_temps(prefix: str) -> list[str]:
    """Removes the temporaries an earlier, killed run left for outputs under `prefix`.

    Those are the hidden files `.<basename(prefix)>*.<12 hex digits>.tmp` in the prefix's
    folder (or their shortened form, when the name was cut to fit the file system); only
    regular files are removed, never a folder or a link. Call it before a run starts
    writing: a temporary that another run is writing at that moment would go too.
    Returns the paths removed; a file that cannot be removed is left and not listed.
    """
    folder = os.path.dirname(prefix) or "."
    base = os.path.basename(prefix)
    if not base:  # "output/" would match every temporary in the folder
        return []
    try:
        names = sorted(os.listdir(folder))
    except OSError:  # no folder yet, so nothing left in it
        return []
    name_max = name_limit(folder)
    removed = []
    for name in names:
        if not _is_temp_of(name, base, name_max):
            continue
        path = os.path.join(folder, name)
        with contextlib.suppress(OSError):
            if stat.S_ISREG(os.lstat(path).st_mode):
                os.remove(path)
                removed.append(path)
    return removed


def output_error(path: str, error: OSError, setting: str) -> UserError:
    """One line for a failed write of `path`: the path, the cause in plain words, and the fix.

    `setting` is the settings.py name that decides the path (e.g. "OUTPUT_IMAGE").
    """
    cause, fix = _cause_and_fix(path, error)
    where = setting_fix(setting)
    fixes = f"{where}, {fix}" if fix.startswith("or ") else f"{fix}: {where}"
    return UserError(one_line(f"{path}: cannot write the file: {cause}; {fixes}"))


def write_cause(path: str, error: OSError) -> str:
    """The cause of a failed write of `path`, in plain words (see `output_error`)."""
    return _cause_and_fix(path, error)[0]


def _cause_and_fix(path: str, error: OSError) -> tuple[str, str]:
    """(the cause in plain words, the fix besides changing the setting)."""
    code = error.errno
    if code == errno.EROFS:
        return "the file system is read-only", "write to another folder"
    if code in (errno.EACCES, errno.EPERM):
        return "permission denied", "or check the folder's permissions"
    if code in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return "the disk is full (no space left)", "or free some space"
    blocker = _file_in_the_way(path) if code in (errno.ENOTDIR, errno.EEXIST) else None
    if blocker is not None:
        kind = "a link to nothing" if os.path.islink(blocker) else "a file"
        return f"{blocker} is {kind} where a folder should be", "or move that file away"
    if code == errno.EISDIR:
        return "a folder stands at that path", "name a file, not a folder"
    if code == errno.ENAMETOOLONG:
        return _name_too_long(path), "use a shorter name"
    return one_line(error.strerror or error), "or check the folder"


def _file_in_the_way(path: str) -> str | None:
    """The parent of `path` that exists but is not a folder (a file, a dangling link), if any."""
    folder = os.path.dirname(os.path.abspath(path))
    while True:
        if os.path.lexists(folder) and not os.path.isdir(folder):
            return folder
        parent = os.path.dirname(folder)
        if parent == folder:
            return None
        folder = parent


def _name_too_long(path: str) -> str:
    folder = os.path.dirname(os.path.abspath(path))
    while not os.path.isdir(folder) and os.path.dirname(folder) != folder:
        folder = os.path.dirname(folder)
    name_max = name_limit(folder)
    longest = max(len(os.fsencode(part)) for part in os.path.abspath(path).split(os.sep))
    if longest > name_max:
        return f"a name of {longest} bytes, and this file system allows at most {name_max}"
    return "the path is too long for this file system"


def _make_folder(directory: str) -> None:
    """os.makedirs, with a file in the folder's place always reported as NotADirectoryError
    (makedirs says FileExistsError when it is the last part that is a file)."""
    try:
        os.makedirs(directory, exist_ok=True)
    except FileExistsError:
        blocker = _file_in_the_way(os.path.join(directory, "x")) or directory
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), blocker) from None


def _temp_name(name: str, name_max: int) -> str:
    """`.<name>.<random>.tmp`, with `name` cut short if that would exceed `name_max` bytes;
    the random part and the ending are always kept, so the name stays unique and findable."""
    room = max(1, name_max - _TEMP_EXTRA)
    copied = name
    while len(os.fsencode(copied)) > room:
        copied = copied[:-1]  # by characters, so a multi-byte one is never split
    return f".{copied}.{secrets.token_hex(_RANDOM_HEX // 2)}{_TEMP_SUFFIX}"


def _is_temp_of(name: str, base: str, name_max: int) -> bool:
    """Whether `name` is a temporary of a file whose name starts with `base`."""
    match = _TEMP_NAME.fullmatch(name)
    if match is None:
        return False
    copied = match.group("copied")
    if copied.startswith(base):
        return True
    # A shortened name holds the longest start of the final name that fits, so one more
    # character of `base` would not have fitted; anything shorter is another file's.
    room = max(1, name_max - _TEMP_EXTRA)
    return base.startswith(copied) and len(os.fsencode(base[: len(copied) + 1])) > room


def _fsync_directory(directory: str) -> None:
    """Makes the rename itself durable; best effort, as not every platform allows it."""
    with contextlib.suppress(OSError):
        descriptor = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
