"""Where a folder's batches are stylised: the seam between stylize_folder's loop (run.py),
which reads the images, batches them and saves the results, and what runs the network.

    LocalBatches   the network in this process, each batch as it is handed over
    RayBatches     (ray_batches.py) the network on a Ray cluster's workers, CLUSTER "ray"

An executor takes a batch of same-sized images with `submit` and gives back the results
it has finished, each with its input's path, in any order; `drain` gives back the rest.
The loop saves each result under its input's planned name, so the order never matters.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from neural_style.feedforward.stylizing.fit import MemoryFit
from neural_style.feedforward.stylizing.stylizer import Stylizer

Batch = Sequence[tuple[str, np.ndarray]]  # (input path, its pixels), all of one size
Results = list[tuple[str, np.ndarray]]  # (input path, its stylised pixels)


class BatchExecutor(Protocol):
    def submit(self, batch: Batch) -> Results:
        """Takes `batch`; returns the results finished by now (this batch's or earlier ones').

        Raises:
          DoesNotFit: a batch ran out of memory (as fit.memory_guard says it).
          UserError: anything else the user can fix, in one line.
        """
        ...

    def drain(self) -> Results:
        """Waits for every batch submitted; returns the results not returned yet."""
        ...


class LocalBatches:
    """The network in this process: each batch is stylised as it is submitted."""

    def __init__(self, stylizer: Stylizer, fit: MemoryFit):
        self.stylizer = stylizer
        self.fit = fit

    def submit(self, batch: Batch) -> Results:
        first_path, first = batch[0]
        with self.fit.memory_guard(first_path, first.shape[:2], len(batch)):
            stylised = self.stylizer(np.stack([image for _, image in batch]))
        return [(path, result) for (path, _), result in zip(batch, stylised, strict=True)]

    def drain(self) -> Results:
        return []
