"""Checkpoints: `<OUTPUT_IMAGE>-checkpoint.npz`, written beside every snapshot.

A checkpoint holds the optimiser's whole state for one image (the image, the best image,
Adam's moments or L-BFGS's bookkeeping), the stage and step reached, the settings of the
run and the identity of its photo, so that `--resume` continues an interrupted run exactly
where it stopped (resume_rules.py says which changes a resume takes). The file is a zip of
.npy members, as numpy.savez writes it:

    stage.npy           int64 ()        index of the coarse-to-fine stage (0 without one)
    step.npy            int64 ()        steps taken over all stages
    settings.npy        unicode ()      the run's record, a JSON object: its settings, and
                                        the identities of its input files under "inputs"
                                        (older files lack them; see resume_rules.py)
    photo.npy           unicode ()      sha256 hex digest of the photo's bytes (older files lack it)
    state/<name>.npy    see STATE_LAYOUT: images [H, W, 3] at the stage's size, and scalars

Loading trusts nothing in the file (it may be truncated, foreign or crafted): the member
names, sizes and .npy headers are checked against what this run expects before any data is
read, so a bad file costs neither memory nor time and is always one UserError.
"""

from __future__ import annotations

import json
import os
import re
import zipfile
from collections.abc import Sequence
from typing import BinaryIO, NamedTuple

import numpy as np

from neural_style.errors import UserError, one_line, setting_fix
from neural_style.files import atomic_write, sha256_of
from neural_style.gatys import npz, resume_rules
from neural_style.gatys.resume_rules import RESUME_FIX
from neural_style.settings.gatys import Settings, describe

# What every optimiser's state holds for one image: name -> (kind, dtype), where an
# "image" is [H, W, 3] at the size of the checkpoint's stage and a "scalar" has shape ().
# Must match optimize.adam.BatchAdamOptimizer.states() and optimize.lbfgs.LbfgsOptimizer.state()
# (tests/test_checkpoint.py builds both and compares).
STATE_LAYOUT: dict[str, dict[str, tuple[str, str]]] = {
    "adam": {
        "image": ("image", "float32"),
        "best_image": ("image", "float32"),
        "best_loss": ("scalar", "float32"),
        "learning_rate": ("scalar", "float32"),
        "first_moment": ("image", "float32"),
        "second_moment": ("image", "float32"),
        "iterations": ("scalar", "int64"),
        "evaluations": ("scalar", "int64"),
    },
    "lbfgs": {
        "image": ("image", "float32"),
        "best_image": ("image", "float32"),
        "best_loss": ("scalar", "float64"),
        "evaluations": ("scalar", "int64"),
    },
}

# The settings record is a few kB; anything near this is not one of ours.
MAX_SETTINGS_CHARACTERS = 1_000_000
_DIGEST = re.compile(r"[0-9a-f]{64}")


class Checkpoint(NamedTuple):
    stage: int  # index of the coarse-to-fine stage (0 without coarse-to-fine)
    step: int  # steps taken over all stages
    optimizer_state: dict[str, np.ndarray]  # one image's state, as STATE_LAYOUT says
    settings: dict  # the run's record (resume_rules.run_record): settings and input identities
    photo: str  # sha256 hex digest of the photo's bytes; "" in checkpoints older than it


def photo_digest(path: str) -> str:
    """The sha256 hex digest of the file's bytes: a photo's identity, whatever its path."""
    try:
        return sha256_of(path)
    except OSError as error:
        reason = error.strerror or one_line(error)
        raise UserError(
            f"{path}: cannot read the photo ({reason}); {setting_fix('content_image')}"
        ) from None


def save_checkpoint(path: str, checkpoint: Checkpoint) -> None:
    """Writes `checkpoint` to `path` atomically, in the layout load_checkpoint reads.

    Raises:
      ValueError: the checkpoint could never be loaded (a programming error): its state is
        no optimiser's, or its photo is not a digest.
    """
    names = set(checkpoint.optimizer_state)
    layout = next((lay for lay in STATE_LAYOUT.values() if set(lay) == names), None)
    if layout is None:
        raise ValueError(f"the state {sorted(names)} is no optimiser's of STATE_LAYOUT")
    if checkpoint.photo and not _DIGEST.fullmatch(checkpoint.photo):
        raise ValueError(f"photo must be a sha256 hex digest, got {checkpoint.photo!r}")
    # The optional photo goes first: a damaged directory size can silently drop the last
    # entries of a zip, and must then drop a member whose absence is noticed.
    arrays = {
        "photo": np.array(checkpoint.photo, dtype=str),
        "stage": np.int64(checkpoint.stage),
        "step": np.int64(checkpoint.step),
        "settings": np.array(json.dumps(checkpoint.settings)),
    }
    for name, (_, dtype) in layout.items():
        arrays[f"state/{name}"] = np.asarray(checkpoint.optimizer_state[name], dtype)
    atomic_write(path, lambda stream: np.savez(stream, **arrays))


def load_checkpoint(
    path: str, *, stage_sizes: Sequence[tuple[int, int]], optimizer: str
) -> Checkpoint:
    """The checkpoint at `path` of a run with these stages ((height, width) each) and this
    optimiser ("adam" or "lbfgs"), checked through before its arrays are read.

    Raises:
      UserError: one line naming `path`: there is no file, or it is not a checkpoint this
        run can continue (not a zip, a member missing, extra, of another dtype or shape, a
        stage out of range, a negative step, non-finite values, settings not a JSON object).
    """
    if optimizer not in STATE_LAYOUT:
        raise ValueError(f"unknown optimizer {optimizer!r}; expected one of {list(STATE_LAYOUT)}")
    if not os.path.exists(path):
        raise UserError(f"{path}: no checkpoint to resume from; {RESUME_FIX}")
    sizes = [(int(height), int(width)) for height, width in stage_sizes]
    try:
        if not os.path.isfile(path):
            raise npz.Invalid("it is a folder or a special file")
        with open(path, "rb") as file:
            return _read_checkpoint(file, sizes, optimizer)
    except npz.Invalid as problem:
        reason = str(problem)
    except npz.MALFORMED as error:
        reason = f"damaged: {one_line(error)}"
    # Member names and numpy's errors come from the file: fold them to one line, and cut
    # what a crafted header can make numpy quote (kilobytes).
    reason = one_line(reason)
    if len(reason) > 200:
        reason = reason[:200] + "..."
    raise UserError(f"{path}: not a checkpoint of this run ({reason}); {RESUME_FIX}")


def _read_checkpoint(
    file: BinaryIO, stage_sizes: list[tuple[int, int]], optimizer: str
) -> Checkpoint:
    try:
        archive = zipfile.ZipFile(file)
    except zipfile.BadZipFile:
        raise npz.Invalid("not a zip archive: empty, truncated, or another kind of file") from None
    with archive:
        members = _expected_members(optimizer)
        infos = _check_names(archive, members, optimizer)
        largest = max((height * width for height, width in stage_sizes), default=0)
        for name, info in infos.items():
            limit = npz.most_bytes(members[name], largest) + npz.HEADER_ALLOWANCE
            if info.file_size > limit:
                raise npz.Invalid(
                    f"{name} inflates to {info.file_size} bytes, more than the {limit} "
                    "this run's can hold"
                )
        headers = {
            name: npz.read_header(archive, info, members[name]) for name, info in infos.items()
        }
        # Every size is bounded now: read the small members, then check the images against
        # the stage they claim before reading them.
        stage = _read_int(archive, infos, headers, "stage.npy")
        if not 0 <= stage < len(stage_sizes):
            count = len(stage_sizes)
            raise npz.Invalid(f"stage {stage} is out of range: this run has {count} stage(s)")
        step = _read_int(archive, infos, headers, "step.npy")
        if step < 0:
            raise npz.Invalid(f"step {step} is negative")
        settings = _read_settings(archive, infos, headers)
        photo = _read_photo(archive, infos, headers)
        height, width = stage_sizes[stage]
        for name, header in headers.items():
            if members[name].kind == "image" and header.shape != (height, width, 3):
                raise npz.Invalid(
                    f"{name} has shape {header.shape}, but stage {stage} of this run is "
                    f"{height}x{width}, so ({height}, {width}, 3)"
                )
        state = {
            name[len("state/") : -len(".npy")]: npz.read_array(archive, infos[name], header)
            for name, header in headers.items()
            if name.startswith("state/")
        }
    _check_state(state)
    return Checkpoint(stage, step, state, settings, photo)


def _expected_members(optimizer: str) -> dict[str, npz.Member]:
    members = {
        "stage.npy": npz.Member("scalar", "int64"),
        "step.npy": npz.Member("scalar", "int64"),
        "settings.npy": npz.Member("text", "str", MAX_SETTINGS_CHARACTERS),
        "photo.npy": npz.Member("text", "str", 64),
    }
    for name, (kind, dtype) in STATE_LAYOUT[optimizer].items():
        members[f"state/{name}.npy"] = npz.Member(kind, dtype)
    return members


def _check_names(
    archive: zipfile.ZipFile, members: dict[str, npz.Member], optimizer: str
) -> dict[str, zipfile.ZipInfo]:
    """The archive's members by name, once it holds exactly the expected ones, each
    readable (not encrypted, stored or deflated)."""
    infos: dict[str, zipfile.ZipInfo] = {}
    for info in archive.infolist():
        if info.filename in infos:
            raise npz.Invalid(f"it holds {info.filename} twice")
        infos[info.filename] = info
    extra = sorted(set(infos) - set(members))
    missing = sorted(set(members) - set(infos) - {"photo.npy"})
    if extra or missing:
        found = {name[len("state/") : -len(".npy")] for name in infos if name.startswith("state/")}
        for other, layout in STATE_LAYOUT.items():
            if other != optimizer and found == set(layout):
                raise npz.Invalid(f"it holds {other}'s state, and this run uses {optimizer}")
        listed = [f"unexpected {npz.some(extra)}"] if extra else []
        listed += [f"missing {npz.some(missing)}"] if missing else []
        raise npz.Invalid("; ".join(listed))
    for name, info in infos.items():
        if info.flag_bits & 0x1:
            raise npz.Invalid(f"{name} is encrypted")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise npz.Invalid(f"{name} is compressed with method {info.compress_type}")
    return infos


def _read_int(archive, infos, headers, name: str) -> int:
    return int(npz.read_array(archive, infos[name], headers[name]))


def _read_settings(archive, infos, headers) -> dict:
    text = npz.read_text(archive, infos["settings.npy"], headers["settings.npy"])
    try:
        settings = json.loads(text)
    except (ValueError, RecursionError):
        raise npz.Invalid("its settings are not valid JSON") from None
    if not isinstance(settings, dict):
        raise npz.Invalid(f"its settings are a JSON {type(settings).__name__}, not an object")
    return settings


def _read_photo(archive, infos, headers) -> str:
    if "photo.npy" not in infos:
        return ""  # written before checkpoints named their photo
    photo = npz.read_text(archive, infos["photo.npy"], headers["photo.npy"])
    if photo and not _DIGEST.fullmatch(photo):
        raise npz.Invalid("its photo is not a sha256 hex digest")
    return photo


def _check_state(state: dict[str, np.ndarray]) -> None:
    """Refuses values the optimisers never hold, which would go on as NaN or nonsense."""
    for name, values in state.items():
        if values.dtype.kind != "f":
            continue
        # A best loss is +inf until the first step (or after a change of loss).
        allowed = np.isfinite(values) | (np.isposinf(values) if name == "best_loss" else False)
        if not np.all(allowed):
            raise npz.Invalid(f"state/{name}.npy holds NaN or infinite values")
    for name in ("iterations", "evaluations"):
        if name in state and state[name] < 0:
            raise npz.Invalid(f"state/{name}.npy is negative")
    if "learning_rate" in state and not state["learning_rate"] > 0:
        raise npz.Invalid("state/learning_rate.npy is not positive")
    if "second_moment" in state and np.any(state["second_moment"] < 0):
        raise npz.Invalid("state/second_moment.npy holds negative values")


def check_resumable(
    checkpoint: Checkpoint,
    settings: Settings,
    path: str,
    photo: str,
    *,
    photo_path: str | None = None,
    inputs: dict | None = None,
) -> str:
    """Refuse to resume from `checkpoint` (read from `path`) another photo than the one it
    was made from (`photo` is the digest of the photo now, see photo_digest; named in the
    message as `photo_path`, by default CONTENT_IMAGE), other input files (`inputs`, this
    run's resume_rules.input_identities), changed settings that shape the image, or fewer
    steps than it has taken, in one line naming the first of them. A checkpoint older than
    photo digests resumes any photo. Returns a note when the checkpoint is older than input
    identities (its files are then checked by path), else "".
    """
    if checkpoint.photo and checkpoint.photo != photo:
        named = photo_path or settings.content_image
        raise UserError(
            f"{path}: the photo {named} is not the one this checkpoint was made from (it was "
            f"replaced or edited); put the original back, or {RESUME_FIX}"
        )
    note = resume_rules.check_record(checkpoint.settings, settings, inputs or {}, path, video=False)
    steps = resume_rules.rule_of("train_steps", settings, video=False)
    if steps == resume_rules.AT_LEAST and settings.train_steps < checkpoint.step:
        raise resume_rules.ResumeRefused(
            f"{path}: {describe('train_steps')} {settings.train_steps} is fewer than the "
            f"{checkpoint.step} steps this checkpoint has taken, and a resume cannot take steps "
            f"back; set it to at least {checkpoint.step}, or {RESUME_FIX}"
        )
    return note
