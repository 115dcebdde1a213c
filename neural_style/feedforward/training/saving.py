"""A training run's work on disk: the network with its settings record (`save_network`),
and the checkpoints that NETWORK_RESUME restores (`Saver`). Every write is atomic, so a
failed or stopped save leaves the earlier files as they were.
"""

from __future__ import annotations

import errno
import os
import tempfile
from typing import TextIO

import keras
import tensorflow as tf

from neural_style import files
from neural_style.errors import UserError, one_line, setting_fix
from neural_style.feedforward.model import with_precision
from neural_style.feedforward.training.run_files import (
    MODEL_NAME,
    OUTPUT_SETTING,
    RECORD_NAME,
    output_errors,
    settings_path,
)
from neural_style.feedforward.training.run_folder import OutputFolder, latest_checkpoint
from neural_style.feedforward.training.trainer import Trainer
from neural_style.progress import write_settings_record

# Phrases of the file system's errors in TensorFlow's messages, and their errno.
_TF_WRITE_ERRORS = (
    ("No space left", errno.ENOSPC),
    ("Read-only file system", errno.EROFS),
    ("Permission denied", errno.EACCES),
)


def save_network(model: keras.Model, path: str, settings_record: dict) -> None:
    """The .keras file and `<name>-settings.json` beside it, each written atomically.

    Raises:
      OSError: a write failed; the earlier files are then as they were.
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    # Keras insists on the .keras extension, so the temporary file keeps it.
    with tempfile.TemporaryDirectory(dir=directory, prefix=".saving-") as temporary:
        partial = os.path.join(temporary, os.path.basename(path))
        model.save(partial)
        os.replace(partial, path)
    write_settings_record(settings_path(path), settings_record)


class Saver:
    """The run's work on disk: a checkpoint (on every worker, as saving is collective),
    and, on the chief, the network with its settings record. Failed writes raise one
    UserError naming the path and the cause."""

    def __init__(self, trainer: Trainer, folder: OutputFolder, record: dict):
        self.trainer = trainer
        self.folder = folder
        self.record = record
        self.model_path = os.path.join(folder.path, MODEL_NAME)
        self.manager = tf.train.CheckpointManager(
            trainer.checkpoint, folder.save_dir, max_to_keep=3
        )
        self.saved_step: int | None = None  # the step saved last, which needs no second save

    def restore(self, stream: TextIO) -> int:
        """Loads the chief's latest checkpoint; returns the step it had reached."""
        latest = latest_checkpoint(self.folder.restore_dir)
        try:
            self.trainer.checkpoint.restore(latest).assert_existing_objects_matched()
        # IndexError: TensorFlow's reader of a .data file cut short.
        except (AssertionError, ValueError, IndexError, tf.errors.OpError) as error:
            # The run ends here; what the failed restore left behind would log a warning
            # per value it did not restore when collected at exit, after the error line.
            tf.get_logger().setLevel("ERROR")
            # Keras's message goes on to print the variable's every value.
            cause = one_line(error).split(" Target variable:")[0][:300]
            if _is_damage(error):
                raise UserError(
                    f"{latest}: this checkpoint's files are damaged or cut short ({cause}); "
                    "start a new run in another NETWORK_OUTPUT_DIR (this folder stays as it "
                    "is), or replace this run with --network_overwrite"
                ) from None
            raise UserError(
                f"{latest}: this checkpoint does not fit the network ({cause}); start a new "
                "run with --network_overwrite or another NETWORK_OUTPUT_DIR"
            ) from None
        print(f"resuming from {latest}", file=stream, flush=True)
        return self.trainer.steps_taken

    def save(self, step: int) -> None:
        """The checkpoint, then the network, at `step`."""
        if step == self.saved_step:
            return
        if self.folder.chief:
            record_path = os.path.join(self.folder.save_dir, RECORD_NAME)
            with output_errors(record_path):
                write_settings_record(record_path, self.record)
        try:
            self.manager.save(checkpoint_number=step)
        except tf.errors.OpError as error:
            raise _checkpoint_error(self.folder.save_dir, error) from None
        if self.folder.chief:
            with output_errors(self.model_path):
                record = {**self.record, "steps_trained": step}
                # Saved as a float32 network whatever it trained in: the file's format
                # does not depend on the precision.
                save_network(with_precision(self.trainer.model, "float32"), self.model_path, record)
        self.saved_step = step


# Words of TensorFlow's checkpoint readers for a file cut short or damaged.
_DAMAGE_PHRASES = ("sstable", "magic number", "corrupt", "truncat", "checksum", "read less")


def _is_damage(error: BaseException) -> bool:
    """Whether a failed restore read damaged files, rather than files of another network."""
    if isinstance(error, (IndexError, tf.errors.DataLossError, tf.errors.OutOfRangeError)):
        return True
    message = one_line(error).lower()
    return any(phrase in message for phrase in _DAMAGE_PHRASES)


def _checkpoint_error(folder: str, error: tf.errors.OpError) -> UserError:
    message = one_line(error.message)
    for phrase, code in _TF_WRITE_ERRORS:
        if phrase in message:
            return files.output_error(folder, OSError(code, os.strerror(code)), OUTPUT_SETTING)
    return UserError(
        f"{folder}: cannot write the checkpoint: {message}; {setting_fix(OUTPUT_SETTING)}"
    )
