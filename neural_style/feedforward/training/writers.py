"""The files a training run writes besides the network and its checkpoints: the losses
log (`LazyLossLog`), the samples (`write_sample`) and the list of skipped dataset files
(`write_skipped`). A failed write is one UserError naming the file and the cause.
"""

from __future__ import annotations

import contextlib

import keras
import numpy as np

from neural_style import files
from neural_style.feedforward.training.run_files import OUTPUT_SETTING, output_errors
from neural_style.feedforward.training.trainer import StepResult
from neural_style.media import images
from neural_style.progress import LossLog


class LazyLossLog:
    """losses.csv, opened at the first step, so that a run stopped while it starts leaves
    an earlier log as it was; a resumed run (`keep_until`) continues it."""

    def __init__(self, path: str, keep_until: int | None, names: tuple[str, ...]):
        self.path = path
        self.keep_until = keep_until
        self.names = names
        self._log: LossLog | None = None

    def write(self, result: StepResult) -> None:
        """One row: the step, its losses and its seconds."""
        with output_errors(self.path):
            if self._log is None:
                self._log = LossLog(self.path, keep_until=self.keep_until, names=self.names)
            self._log.write(result.step, result.losses, result.seconds)

    def close(self) -> None:
        """Closes the log if it was opened."""
        if self._log is not None:
            with contextlib.suppress(OSError):  # every line was flushed as it was written
                self._log.close()


def write_sample(model: keras.Model, photo: np.ndarray, path: str) -> None:
    """`photo` [H, W, 3] stylised by `model`, saved as `path`."""
    stylised = model(photo[np.newaxis], training=False)
    images.save_image(path, np.asarray(stylised)[0], OUTPUT_SETTING)


def write_skipped(path: str, reasons: dict[str, str]) -> None:
    """skipped-files.txt: one `path<TAB>reason` line per skipped dataset file."""
    lines = "".join(f"{file}\t{reason}\n" for file, reason in reasons.items())
    with output_errors(path):
        files.atomic_write_text(path, lines)
