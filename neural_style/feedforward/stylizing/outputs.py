"""Where a stylise run's results go, decided once, before anything is written
(`plan_outputs`), and such that no result ever replaces an input, whatever the settings:

  - A result is named after its input, in STYLIZE_OUTPUT (a folder's sub-folders kept):
    .jpg, .jpeg and .png keep their extension, other images become .png, a video .mp4. A
    re-run into the same folder replaces its own earlier results there.
  - When STYLIZE_OUTPUT is the input's own folder (or holds the input folder), results go
    beside the inputs as `<stem>-stylized<ext>`: photos/a.jpg -> photos/a-stylized.jpg,
    clip.mp4 -> clip-stylized.mp4.
  - Names are unique within a run: where two inputs would share one (a.png and a.webp),
    the one whose format changes keeps its old extension in its name (a.webp.png), and a
    number follows where that is taken too (a-2.png). A name that would still land on an
    input (through a symbolic or hard link) takes the next number.
  - Reading a folder leaves out STYLIZE_OUTPUT when it lies inside the folder, and every
    `<stem>-stylized.jpg/.jpeg/.png` (an earlier run's result beside its input), so a
    re-run never stylises its own results again. To stylise such a file, name it as
    STYLIZE_INPUT.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from typing import NamedTuple

from neural_style.errors import UserError, setting_fix
from neural_style.media import images

# Results written beside their inputs carry this after their stem.
RESULT_TAG = "-stylized"
# What an earlier run's result beside its input looks like: <stem>-stylized[-N].<ext>.
_EARLIER_RESULT = re.compile(r"-stylized(-\d+)?\.(jpg|jpeg|png)$", re.IGNORECASE)


class OutputPlan(NamedTuple):
    targets: dict[str, str]  # input path -> output path, in reading order
    left_out: list[str]  # files of a folder not read: STYLIZE_OUTPUT's and earlier results


def plan_outputs(source: str, output: str) -> OutputPlan:
    """Every input of STYLIZE_INPUT `source` and the file its result is written to in
    STYLIZE_OUTPUT `output`, by the rules of the module doc; nothing is written.

    Raises:
      UserError: a folder holds no images, or only earlier results.
    """
    if not os.path.isdir(source):
        beside = _same_path(os.path.dirname(os.path.abspath(source)), output)
        return OutputPlan(_assign_names({source: os.path.basename(source)}, output, beside), [])
    listed = images.list_images(source, "STYLIZE_INPUT")
    output_inside = _inside(output, source) and not _same_path(output, source)
    inputs, left_out = {}, []
    for path in listed:
        if _EARLIER_RESULT.search(path) or (output_inside and _inside(path, output)):
            left_out.append(path)
        else:
            inputs[path] = os.path.relpath(path, source)
    if not inputs:
        raise UserError(
            f"{source}: its {len(listed)} image file(s) are all results of earlier runs (in "
            f"STYLIZE_OUTPUT or named *{RESULT_TAG}.*); {setting_fix('STYLIZE_INPUT')}"
        )
    beside = _inside(source, output)
    return OutputPlan(_assign_names(inputs, output, beside), left_out)


def _assign_names(relatives: dict[str, str], output: str, beside: bool) -> dict[str, str]:
    """Output paths for {input path: its path relative to the input folder}, unique (also
    on a file system that ignores case) and none of them an input."""
    protected = {_key(path) for path in relatives}
    inodes = {_inode(path) for path in relatives} - {None}
    taken: set[str] = set()
    targets: dict[str, str] = {}
    # Inputs whose format is kept claim their plain name first: a.png stays a.png, and
    # a.webp, which becomes a PNG too, gives way.
    order = sorted(relatives, key=lambda path: not _keeps_format(path))
    for path in order:
        for candidate in _candidate_names(relatives[path], beside):
            target = os.path.join(output, candidate)
            key = _key(target)
            if key in taken or key in protected or _inode(target) in inodes:
                continue
            taken.add(key)
            targets[path] = target
            break
    return {path: targets[path] for path in relatives}


def _candidate_names(relative: str, beside: bool) -> Iterator[str]:
    """The names an input's result may take, best first, without end."""
    stem, extension = os.path.splitext(relative)
    tag = RESULT_TAG if beside else ""
    if extension.lower() in images.VIDEO_SUFFIXES:
        new_extension = ".mp4"
    elif _keeps_format(relative):
        new_extension = extension
    else:
        new_extension = ".png"
    yield f"{stem}{tag}{new_extension}"
    if new_extension.lower() != extension.lower():
        yield f"{stem}{extension}{tag}{new_extension}"
    number = 2
    while True:
        yield f"{stem}{tag}-{number}{new_extension}"
        number += 1


def _keeps_format(path: str) -> bool:
    return os.path.splitext(path)[1].lower() in images.KEPT_OUTPUT_SUFFIXES


def _key(path: str) -> str:
    """A path's identity for comparisons: its folder resolved (symbolic links followed, so
    that two spellings of one folder agree), its case folded."""
    folder, name = os.path.split(os.path.abspath(path))
    return os.path.join(os.path.realpath(folder), name).casefold()


def _inode(path: str) -> tuple[int, int] | None:
    try:
        status = os.stat(path)
    except OSError:
        return None
    return status.st_dev, status.st_ino


def _same_path(first: str, second: str) -> bool:
    return os.path.realpath(first) == os.path.realpath(second)


def _inside(path: str, folder: str) -> bool:
    """Whether `path` is `folder` or lies below it, links resolved."""
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def left_out_notes(left_out: list[str], output: str) -> list[str]:
    """The notes that say which files of the input folder were not read, and why: one for
    those inside STYLIZE_OUTPUT, one for earlier results; none when nothing was left out."""
    earlier = [path for path in left_out if _EARLIER_RESULT.search(path)]
    notes = []
    if len(left_out) > len(earlier):
        notes.append(
            f"left out {len(left_out) - len(earlier)} file(s) inside STYLIZE_OUTPUT {output}"
        )
    if earlier:
        notes.append(
            f"left out {len(earlier)} earlier result(s) named *{RESULT_TAG}.* "
            f"(e.g. {earlier[0]}); name one as STYLIZE_INPUT to stylise it"
        )
    return notes
