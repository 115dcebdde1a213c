"""The output folder of a training run, claimed before it trains (`claimed_output`): locked
by the chief so that two runs never share it, and checked against the earlier run it may
hold. A run never replaces an earlier run's files unless NETWORK_RESUME continues that run
(with the same settings that shape the network) or NETWORK_OVERWRITE replaces it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from typing import NamedTuple

import tensorflow as tf

from neural_style import files
from neural_style.errors import UserError, one_line, setting_fix
from neural_style.feedforward.training.run_files import (
    CHECKPOINT_STATE_NAME,
    CHECKPOINTS_NAME,
    LOCK_NAME,
    LOG_NAME,
    MODEL_NAME,
    OUTPUT_SETTING,
    RECORD_NAME,
    SHAPING_SETTINGS,
    STYLE_HASH,
    output_errors,
    settings_path,
)
from neural_style.settings.network import NetworkSettings
from neural_style.settings.values import describe, format_layer_weights

try:
    import fcntl
except ImportError:  # Windows, where runs do not lock their folder
    fcntl = None


class OutputFolder(NamedTuple):
    path: str  # NETWORK_OUTPUT_DIR
    chief: bool  # whether this process writes the run's files
    save_dir: str  # where this process saves checkpoints (other workers: a temporary one)
    restore_dir: str  # the chief's checkpoints, which every worker resumes from


@contextlib.contextmanager
def claimed_output(settings: NetworkSettings, chief: bool, record: dict) -> Iterator[OutputFolder]:
    """The output folder, checked (NETWORK_RESUME, NETWORK_OVERWRITE) and, on the chief,
    locked for as long as the block lasts; other workers write nothing there, and their
    temporary checkpoint folder is removed at the end.

    Raises:
      UserError: another run holds the folder; it holds an earlier run that this one would
        replace; or NETWORK_RESUME is set with no checkpoint or with changed settings.
    """
    folder = settings.network_output_dir
    restore_dir = os.path.join(folder, CHECKPOINTS_NAME)
    if not chief:
        # Every worker must save (saving is a collective operation); only the chief's counts.
        temporary = tempfile.mkdtemp(prefix="neural-style-worker-checkpoints-")
        try:
            _check_resume(settings, restore_dir, record)
            yield OutputFolder(folder, False, temporary, restore_dir)
        finally:
            shutil.rmtree(temporary, ignore_errors=True)
        return
    lock = _lock_folder(folder)
    try:
        if settings.network_resume:
            _check_resume(settings, restore_dir, record)
        else:
            _refuse_or_clear_earlier_run(settings)
        yield OutputFolder(folder, True, restore_dir, restore_dir)
    finally:
        os.close(lock)


def _lock_folder(folder: str) -> int:
    """Creates `folder` and takes its lock file; closing the descriptor releases it."""
    lock_path = os.path.join(folder, LOCK_NAME)
    try:
        os.makedirs(folder, exist_ok=True)
        descriptor = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as error:
        cause = files.write_cause(lock_path, error)
        raise UserError(
            one_line(
                f"{folder}: cannot write into this folder: {cause}; "
                f"{setting_fix(OUTPUT_SETTING, 'FOLDER')} of a writable folder"
            )
        ) from None
    if fcntl is None:
        return descriptor
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(descriptor, 32, 0).decode("ascii", "replace").strip()
        os.close(descriptor)
        raise UserError(
            f"{folder}: another training run{f' (process {holder})' if holder else ''} is "
            f"using this folder; wait for it to end, or {setting_fix(OUTPUT_SETTING, 'FOLDER')}"
        ) from None
    except OSError:  # a file system without locks (some network ones): run unlocked
        return descriptor
    with contextlib.suppress(OSError):  # the process id only helps the message above
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"{os.getpid()}\n".encode("ascii"), 0)
    return descriptor


def _earlier_outputs(folder: str) -> list[str]:
    """The names in `folder` that hold an earlier run's work (not skipped-files.txt, which
    a run that found no usable photo leaves, and every run rewrites)."""
    names = {MODEL_NAME, settings_path(MODEL_NAME), LOG_NAME, CHECKPOINTS_NAME}
    return sorted(
        name
        for name in os.listdir(folder)
        if name in names or (name.startswith("sample-") and name.endswith(".jpg"))
    )


def _refuse_or_clear_earlier_run(settings: NetworkSettings) -> None:
    folder = settings.network_output_dir
    earlier = _earlier_outputs(folder)
    if not earlier:
        return
    if not settings.network_overwrite:
        raise UserError(
            f"{folder}: holds an earlier training run ({', '.join(earlier)}); continue it with "
            "--network_resume (NETWORK_RESUME = True), replace it with --network_overwrite "
            "(NETWORK_OVERWRITE = True), or set NETWORK_OUTPUT_DIR (--network_output_dir) to "
            "a new folder"
        )
    # The earlier run's checkpoints would mix with this run's, and its samples look like
    # this run's; the network, the settings and the log are replaced as this run writes.
    for name in earlier:
        path = os.path.join(folder, name)
        with output_errors(path):
            if name == CHECKPOINTS_NAME:
                shutil.rmtree(path)
            elif name.startswith("sample-"):
                os.remove(path)


def _check_resume(settings: NetworkSettings, checkpoints: str, record: dict) -> None:
    """NETWORK_RESUME needs a checkpoint, trained towards the same network as this run."""
    if not settings.network_resume:
        return
    if latest_checkpoint(checkpoints) is None:
        raise UserError(
            f"NETWORK_RESUME (--network_resume) is set but {settings.network_output_dir} has "
            "no checkpoint; start without it, or set NETWORK_OUTPUT_DIR to the earlier run's "
            "folder"
        )
    earlier = _read_earlier_record(settings.network_output_dir)
    changed = [
        name
        for name in (STYLE_HASH, *SHAPING_SETTINGS)
        if earlier is not None and name in earlier and earlier[name] != record[name]
    ]
    if changed:
        listed = "; ".join(_describe_change(name, earlier[name], record[name]) for name in changed)
        raise UserError(
            f"{settings.network_output_dir}: cannot resume with {listed}; set them back as the "
            "earlier run had them, or start a new run with --network_overwrite or another "
            "NETWORK_OUTPUT_DIR"
        )


def latest_checkpoint(folder: str) -> str | None:
    """The prefix of the newest checkpoint in `folder` (its `checkpoint` file names it), or
    None when there is none.

    Raises:
      UserError: the `checkpoint` file is there but damaged (cut short, say), or names a
        checkpoint whose files are gone; TensorFlow would take that for no checkpoint, or
        raise a ValueError.
    """
    state = os.path.join(folder, CHECKPOINT_STATE_NAME)
    # TensorFlow logs a warning of several lines for a state file it cannot parse; the
    # error below says it in one.
    logger = tf.get_logger()
    level = logger.level
    logger.setLevel("ERROR")
    try:
        latest = tf.train.latest_checkpoint(folder)
        cause = "it names no checkpoint whose files are here"
    except ValueError as error:
        latest, cause = None, one_line(error)
    finally:
        logger.setLevel(level)
    if latest is None and os.path.exists(state):
        raise UserError(
            f"{state}: cannot tell which checkpoint is the latest ({cause}): the file is "
            "damaged or cut short; start a new run in another NETWORK_OUTPUT_DIR (this "
            "folder stays as it is), or replace this run with --network_overwrite"
        )
    return latest


def _read_earlier_record(folder: str) -> dict | None:
    """The earlier run's record: its checkpoints', else its network's; None for a run
    from before records were kept."""
    for path in (
        os.path.join(folder, CHECKPOINTS_NAME, RECORD_NAME),
        os.path.join(folder, settings_path(MODEL_NAME)),
    ):
        if not os.path.exists(path):
            continue
        try:
            with open(path, encoding="utf-8") as file:
                record = json.load(file)
            if not isinstance(record, dict):
                raise ValueError("not a JSON object")
            return record
        except (OSError, ValueError) as error:
            raise UserError(
                one_line(
                    f"{path}: cannot read the earlier run's settings ({error}); start a new "
                    "run with --network_overwrite or another NETWORK_OUTPUT_DIR"
                )
            ) from None
    return None


def _describe_change(name: str, was, now) -> str:
    if name == STYLE_HASH:
        return "another NETWORK_STYLE_IMAGE (its bytes differ from the earlier run's)"
    if name.endswith("_layers"):
        was, now = format_layer_weights(was), format_layer_weights(now)
    return f"{describe(name)} {now} (the earlier run had {was})"
