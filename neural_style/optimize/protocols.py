"""What the run loop steps, as Protocols: a loss over images and an optimiser of a batch of
images (Adam's, L-BFGS's, or a test's fake), and the record of one step.

The loop (gatys/runner.py) knows optimisers only through `Optimizer`, so it imports no
TensorFlow and a test can drive it with a fake in milliseconds.

Shapes: images [H, W, 3] float32 RGB in 0..255 per position of the batch.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NamedTuple, Protocol

import numpy as np


class ImageLoss(Protocol):
    """A loss over images: each image's named parts and the gradient of their total."""

    # True when value_and_gradient is one tf.function call, which the optimiser can trace
    # into its own step; False when it is assembled outside a graph (tiles).
    traceable: bool

    def value_and_gradient(self, images: Any, step: Any = 0) -> tuple[dict[str, Any], Any]:
        """Each image's named loss parts and the gradient of their totals, at the step
        being taken (1-based over the run; see losses/style/: a loss may vary with it)."""
        ...


class BatchStepResult(NamedTuple):
    step: int  # 1-based number of the step just taken
    evaluations: list[int]  # loss evaluations so far, per image
    losses: list[dict[str, float]]  # content, style, tv, total of each image
    seconds: float  # wall time of the step, for the whole batch
    notes: list[str]  # per image: what happened besides a plain step, e.g. a divergence


class Optimizer(Protocol):
    """An optimiser of a batch of images, each with its own best image and state."""

    message: str  # why it stopped before the steps asked of it, if it did ("" otherwise)

    def steps(self, count: int, first: int = 1) -> Iterator[BatchStepResult]:
        """Take up to `count` steps numbered from `first`, yielding after each."""
        ...

    def use_loss(self, loss: ImageLoss) -> None:
        """Go on with another loss from the images and state as they are."""
        ...

    def best(self, index: int = 0) -> np.ndarray:
        """Image `index`'s lowest-loss image so far."""
        ...

    def current_image(self, index: int = 0) -> np.ndarray:
        """Image `index` as the last step left it."""
        ...

    def states(self) -> list[dict[str, np.ndarray]]:
        """Each image's state, enough to continue it exactly (what checkpoints hold)."""
        ...

    def restore(self, state: dict[str, np.ndarray], index: int = 0) -> None:
        """Give image `index` a saved state (the form of `states()`)."""
        ...

    def carry_over(self, state: dict[str, np.ndarray], index: int = 0) -> None:
        """Go on with image `index`, just started at a larger size, from the state its
        previous stage left (the form of `states()`, at that stage's size)."""
        ...
