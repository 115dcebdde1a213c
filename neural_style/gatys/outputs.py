"""The names of a run's outputs, decided once, and the rules that keep them from
overwriting anything they should not.

Every file a run writes for a photo is named after its prefix (OUTPUT_IMAGE, or
`<OUTPUT_IMAGE>-<photo name>` in a folder run):

    <prefix>.jpg                 the final image (.png, .tif: see IMAGE_FORMATS)
    <prefix>-<step>.jpg          a snapshot, in the same format
    <prefix>-losses.csv/.png     the losses log and plot
    <prefix>-settings.json       the settings record
    <prefix>-checkpoint.npz      the checkpoint for --resume

The rules:
- no output is ever an input (a photo, a style, the INIT image, the weights), even with
  OVERWRITE: such a prefix is refused in one line;
- an earlier run's files are kept: a new run takes the first free `<prefix>_2`,
  `<prefix>_3`... unless OVERWRITE or RESUME says to use the prefix itself;
- OVERWRITE replaces the earlier run's whole set, in every OUTPUT_FORMAT: at the prefix's
  first step (after every check, so a refused or at once stopped run loses nothing), its
  earlier files go (earlier_outputs: never an input, never another prefix's file);
- OUTPUT_IMAGE may end in an image suffix, `res.png`: that is the prefix `res` with
  the format the suffix names (named_format), not the prefix of `res.png.jpg`;
- two runs at the same time never share a prefix: a run claims each prefix with an
  exclusive lock (`.<name>.lock` beside the outputs) held while it lives;
- within a run names are unique: photos whose names differ only in their suffix
  (`a.jpg`, `a.png`) keep the suffix in their prefix (`out-a-jpg`, `out-a-png`);
- a folder run never reads this run's outputs back as photos (is_output_of).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import re
import stat
from collections.abc import Sequence
from typing import NamedTuple

from neural_style import files
from neural_style.errors import UserError
from neural_style.settings.gatys import Settings
from neural_style.settings.values import describe

# Each OUTPUT_FORMAT: the suffix of its snapshots and final image, and their bits per
# channel. The one place a format becomes a file name.
IMAGE_FORMATS = {
    "jpg": (".jpg", 8),
    "png": (".png", 8),
    "png16": (".png", 16),
    "tiff16": (".tif", 16),
}
_IMAGE_SUFFIXES = tuple(dict.fromkeys(suffix for suffix, _ in IMAGE_FORMATS.values()))
# The suffixes OUTPUT_IMAGE may end in (any case), and the OUTPUT_FORMAT each names when
# OUTPUT_FORMAT writes another suffix.
SUFFIX_FORMATS = {".jpg": "jpg", ".jpeg": "jpg", ".png": "png", ".tif": "tiff16", ".tiff": "tiff16"}
# A video's finished frames, in its frames folder (OutputNames.frame).
_FRAME = re.compile(r"frame-\d{5,}\.png")


class OutputNames(NamedTuple):
    """The name of every file a run writes under one prefix (see the module doc): the one
    place their suffixes are spelled."""

    prefix: str

    # What follows the prefix, for the files that are not images.
    LOSSES = "-losses.csv"
    PLOT = "-losses.png"
    RECORD = "-settings.json"
    CHECKPOINT = "-checkpoint.npz"
    VIDEO = ".mp4"
    VIDEO_REPORT = "-video.json"
    FRAMES = "-frames"

    def image(self, output_format: str = "jpg") -> str:
        """The final image: `<prefix>.jpg`, or the suffix OUTPUT_FORMAT gives."""
        return self.prefix + image_suffix(output_format)

    def snapshot(self, step: int | None, output_format: str = "jpg") -> str:
        """`<prefix>-<step>.jpg`, in OUTPUT_FORMAT; the final image when `step` is None."""
        if step is None:
            return self.image(output_format)
        return f"{self.prefix}-{step}{image_suffix(output_format)}"

    @property
    def losses(self) -> str:
        return self.prefix + self.LOSSES

    @property
    def plot(self) -> str:
        return self.prefix + self.PLOT

    @property
    def record(self) -> str:
        return self.prefix + self.RECORD

    @property
    def checkpoint(self) -> str:
        return self.prefix + self.CHECKPOINT

    @property
    def video(self) -> str:
        return self.prefix + self.VIDEO

    @property
    def video_report(self) -> str:
        return self.prefix + self.VIDEO_REPORT

    @property
    def frames(self) -> str:
        """The folder of a video's finished frames."""
        return self.prefix + self.FRAMES

    def frame(self, index: int) -> str:
        """The PNG of 0-based frame `index`."""
        return os.path.join(self.frames, f"frame-{index + 1:05d}.png")

    @property
    def lock(self) -> str:
        """The hidden file a run holds locked while it writes under the prefix."""
        folder, name = os.path.split(os.path.abspath(self.prefix))
        return os.path.join(folder, f".{name}.lock")

    def made(self, output_format: str = "jpg") -> tuple[str, ...]:
        """The files whose presence says that a run used the prefix (an earlier run in
        another format is told by its losses log, which every run writes)."""
        return (self.image(output_format), self.losses, self.checkpoint, self.video, self.frames)


def _endings(suffixes: Sequence[str]) -> list[str]:
    """What follows the prefix in the name of each output file, as regular expressions,
    for images with these suffixes."""
    images = [re.escape(suffix) for suffix in suffixes]
    others = (
        OutputNames.LOSSES,
        OutputNames.PLOT,
        OutputNames.RECORD,
        OutputNames.CHECKPOINT,
        OutputNames.VIDEO,
        OutputNames.VIDEO_REPORT,
    )
    return [*images, *(rf"-\d+{suffix}" for suffix in images), *map(re.escape, others)]


# Each ending alone, of every format, as a name is recognised whichever format wrote it (a
# name can end in several: `out-a-50.jpg` is a snapshot of `out-a`, or the final image of
# `out-a-50`).
_EACH_ENDING = [re.compile(ending + "$") for ending in _endings(_IMAGE_SUFFIXES)]


def image_suffix(output_format: str) -> str:
    """The suffix of OUTPUT_FORMAT's images: ".jpg", ".png" or ".tif"."""
    return IMAGE_FORMATS[output_format][0]


def image_bits(output_format: str) -> int:
    """The bits per channel of OUTPUT_FORMAT's images: 8 or 16."""
    return IMAGE_FORMATS[output_format][1]


def is_output_of(path: str, output_image: str) -> bool:
    """Whether `path` is a file a run wrote under OUTPUT_IMAGE `output_image` (its own
    prefix, a renamed `_N` one, or a folder run's `<prefix>-<photo>`): in the prefix's
    folder, named as an output of such a prefix, and beside that prefix's settings record,
    which every run writes. A photo that only looks like one (`out-of-focus.jpg`) is not."""
    folder, stem = os.path.split(os.path.abspath(output_image))
    if os.path.dirname(os.path.abspath(path)) != folder:
        return False
    name = os.path.basename(path)
    for ending in filter(None, (pattern.search(name) for pattern in _EACH_ENDING)):
        prefix = name[: ending.start()]
        if (prefix == stem or prefix.startswith((f"{stem}-", f"{stem}_"))) and os.path.exists(
            OutputNames(os.path.join(folder, prefix)).record
        ):
            return True
    return False


def named_format(settings: Settings) -> tuple[Settings, str]:
    """The settings with an OUTPUT_IMAGE that ends in an image suffix (`res.png`) read as
    a user means it: the prefix `res`, in the format the suffix names (png16 and tiff16
    are kept for .png and .tif); and the note that says so when the format or the
    suffix changes. Any other OUTPUT_IMAGE is kept as it is."""
    stem, suffix = os.path.splitext(settings.output_image)
    implied = SUFFIX_FORMATS.get(suffix.lower())
    if implied is None or not os.path.basename(stem):
        return settings, ""
    asked = settings.output_format
    kept = image_suffix(asked) == image_suffix(implied)
    output_format = asked if kept else implied
    named = dataclasses.replace(settings, output_image=stem, output_format=output_format)
    written = image_suffix(output_format)
    if kept and written == suffix:
        return named, ""
    instead = "" if kept else f", not OUTPUT_FORMAT {asked}"
    return named, (
        f"note: OUTPUT_IMAGE {settings.output_image} is read as the prefix {stem} in "
        f"OUTPUT_FORMAT {output_format}{instead}: the result is {stem}{written}, the "
        f"snapshots {stem}-<step>{written}"
    )


def earlier_outputs(prefix: str, inputs: dict[str, str]) -> list[str]:
    """The files an earlier run wrote under `prefix`, in every OUTPUT_FORMAT: what OVERWRITE
    replaces. Only when the prefix's settings record or losses log shows that a run used
    it (every run writes both at its first step); only regular files named as the module
    doc lists, and the frame PNGs of its frames folder; never an input, nor a name that is
    as well another prefix's output when that prefix has a record of its own
    (`out-50.jpg`, the final image of `out-50` as much as a snapshot of `out`)."""
    names = OutputNames(prefix)
    if not any(os.path.lexists(path) for path in (names.record, names.losses)):
        return []
    folder, stem = os.path.split(os.path.abspath(prefix))
    own = re.compile("|".join(_endings(_IMAGE_SUFFIXES)))
    found = [
        os.path.join(folder, name)
        for name in _listing(folder)
        if name.startswith(stem)
        and own.fullmatch(name[len(stem) :])
        and not _another_prefix_has(folder, name, stem)
    ]
    if _is_folder(names.frames):
        frames = [name for name in _listing(names.frames) if _FRAME.fullmatch(name)]
        found += [os.path.join(names.frames, name) for name in frames]
    protected = set(inputs)
    return sorted(
        path
        for path in found
        if _is_file(path)
        and os.path.abspath(path) not in protected
        and os.path.realpath(path) not in protected
    )


def _listing(folder: str) -> list[str]:
    try:
        return sorted(os.listdir(folder))
    except OSError:
        return []


def _another_prefix_has(folder: str, name: str, stem: str) -> bool:
    """Whether `name` is as well an output of a longer prefix that has its own record."""
    for ending in filter(None, (pattern.search(name) for pattern in _EACH_ENDING)):
        other = name[: ending.start()]
        if other != stem and os.path.lexists(OutputNames(os.path.join(folder, other)).record):
            return True
    return False


def _is_file(path: str) -> bool:
    with contextlib.suppress(OSError):
        return stat.S_ISREG(os.lstat(path).st_mode)
    return False


def _is_folder(path: str) -> bool:
    with contextlib.suppress(OSError):
        return stat.S_ISDIR(os.lstat(path).st_mode)
    return False


def batch_prefixes(output_image: str, photos: Sequence[str]) -> dict[str, str]:
    """Each photo's prefix in a folder run: `<OUTPUT_IMAGE>-<stem>`, with the suffix kept
    where two photos share a stem, and a number where even that is shared. Names are
    compared regardless of case, as some file systems compare them."""
    stems = [os.path.splitext(os.path.basename(path))[0] for path in photos]
    folded = [stem.casefold() for stem in stems]
    prefixes, taken = {}, set()
    for path, stem in zip(photos, stems, strict=True):
        if folded.count(stem.casefold()) > 1:
            stem = f"{stem}-{os.path.splitext(path)[1].lstrip('.')}"
        name, number = stem, 2
        while name.casefold() in taken:
            name, number = f"{stem}-{number}", number + 1
        taken.add(name.casefold())
        prefixes[path] = f"{output_image}-{name}"
    return prefixes


def input_paths(settings: Settings, photos: Sequence[str]) -> dict[str, str]:
    """Every file the run reads, by its real path -> the setting that names it."""
    named = {path: "CONTENT_IMAGE" for path in photos}
    named.update({path: "STYLE_IMAGE" for path in settings.style_image})
    if settings.init not in ("content", "style", "noise"):
        named[settings.init] = "INIT"
    named[settings.vgg_model_path] = "VGG_MODEL_PATH"
    # By the path as named and by what it points to: neither may be replaced.
    inputs = {os.path.abspath(path): setting for path, setting in named.items()}
    inputs.update({os.path.realpath(path): setting for path, setting in named.items()})
    return inputs


def _clash(prefix: str, inputs: dict[str, str], output_format: str) -> str:
    """The input an output of `prefix` in OUTPUT_FORMAT would overwrite, as
    'SETTING path', or ''."""
    endings = re.compile("|".join(_endings([image_suffix(output_format)])))
    places = {os.path.split(os.path.abspath(prefix)), os.path.split(os.path.realpath(prefix))}
    for path, setting in inputs.items():
        folder, name = os.path.split(path)
        for place, stem in places:
            if folder == place and endings.fullmatch(name[len(stem) :]) and (name.startswith(stem)):
                return f"{setting} {path}"
    return ""


class Claims:
    """The prefixes this run writes, each locked until `release` (or the process ends)."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._locks: dict[str, int] = {}
        self._inputs: dict[str, str] = {}  # every input named to `claim`
        self._replaced: set[str] = set()

    def claim(self, wanted: str, inputs: dict[str, str], notes: list[str]) -> str:
        """The prefix to write `wanted`'s outputs under: `wanted` itself when resuming,
        overwriting or unused, else the first free `wanted_N`; locked before it returns.

        Raises:
          UserError: an output would overwrite an input, or (resuming or overwriting)
            another run holds the prefix now.
        """
        self._inputs.update(inputs)
        keep_name = self.settings.resume or self.settings.overwrite
        fmt = self.settings.output_format
        number = 1
        while True:
            prefix = wanted if number == 1 else f"{wanted}_{number}"
            unused = not any(os.path.exists(path) for path in OutputNames(prefix).made(fmt))
            clash = _clash(prefix, inputs, fmt)
            if keep_name and clash:
                raise UserError(
                    f"{OutputNames(prefix).image(fmt)}: this run's outputs would overwrite its "
                    f"input ({clash}); set OUTPUT_IMAGE (--output_image) to another prefix"
                )
            if (keep_name or unused) and not clash and self._lock(prefix):
                break
            if keep_name:
                raise UserError(
                    f"{OutputNames(prefix).image(fmt)}: another run is writing this prefix now; "
                    f"wait for it, or set {describe('output_image')} to another prefix"
                )
            number += 1
        if prefix != wanted:
            # The file that shows the earlier run (its log, when it wrote another format).
            earlier = OutputNames(wanted)
            found = [path for path in earlier.made(fmt) if os.path.exists(path)]
            notes.append(
                f"note: {(found or [earlier.image(fmt)])[0]} is from an earlier run or "
                f"another one, so this run writes {prefix}.* instead; pass --overwrite to "
                "replace it"
            )
        files.remove_stale_temps(prefix)
        return prefix

    def replace_earlier(self, prefix: str) -> list[str]:
        """With OVERWRITE (and no RESUME), remove the earlier outputs of the claimed
        `prefix` (earlier_outputs), once: call it just before the run's first write there.
        Returns the files removed; the frames folder goes too once it is empty.

        Raises:
          UserError: an earlier file cannot be removed (the new run would mix with it).
        """
        settings = self.settings
        if not settings.overwrite or settings.resume or prefix in self._replaced:
            return []
        if prefix not in self._locks:
            raise ValueError(f"{prefix} is not claimed by this run")
        self._replaced.add(prefix)
        removed = []
        for path in earlier_outputs(prefix, self._inputs):
            try:
                os.remove(path)
            except FileNotFoundError:
                continue
            except OSError as error:
                raise UserError(
                    f"{path}: cannot remove this earlier output that --overwrite replaces "
                    f"({files.write_cause(path, error)}); remove it by hand, or set "
                    f"{describe('output_image')} to another prefix"
                ) from None
            removed.append(path)
        frames = OutputNames(prefix).frames
        if any(os.path.dirname(path) == os.path.abspath(frames) for path in removed):
            with contextlib.suppress(OSError):
                os.rmdir(frames)  # only when empty: nothing of anyone else's goes
        return removed

    def _lock(self, prefix: str) -> bool:
        """Take `prefix`'s lock; False when another process holds it."""
        if prefix in self._locks:
            return False  # two photos of this run never share a prefix either
        path = OutputNames(prefix).lock
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as error:
            raise files.output_error(path, error, "OUTPUT_IMAGE") from None
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            # The lock file may have been removed by the run that held it, after we opened
            # it: then ours is a lock on a deleted file, which guards nothing.
            if os.fstat(descriptor).st_ino != os.stat(path).st_ino:
                raise BlockingIOError
        except OSError:
            os.close(descriptor)
            return False
        self._locks[prefix] = descriptor
        return True

    def release(self) -> None:
        """Give every prefix back, removing the lock files."""
        for prefix, descriptor in self._locks.items():
            with contextlib.suppress(OSError):
                os.remove(OutputNames(prefix).lock)
            os.close(descriptor)
        self._locks.clear()
