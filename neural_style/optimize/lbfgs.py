"""L-BFGS on the pixels (scipy's L-BFGS-B within the box [0, 255]), one image at a time.

This module does no file I/O: `steps(n)` yields one result per iteration and the caller
decides what to print and save. The optimiser keeps the best image seen so far (the
lowest loss), which is what snapshots and the result show.

Shapes: images are [1, H, W, 3] float32 RGB in 0..255.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from collections.abc import Iterator
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from neural_style.optimize.protocols import BatchStepResult, ImageLoss


class StepResult(NamedTuple):
    step: int  # 1-based number of the iteration just taken
    evaluations: int  # loss-and-gradient evaluations so far
    losses: dict[str, float]  # content, style, tv, total at the iteration's image
    seconds: float  # wall time of the iteration
    note: str = ""  # what the optimiser did besides a plain step, e.g. a divergence

    @property
    def finite(self) -> bool:
        return all(math.isfinite(value) for value in self.losses.values())


def _floats(parts: dict) -> dict[str, float]:
    return {name: float(value) for name, value in parts.items()}


class _Stop(Exception):
    pass


class LbfgsOptimizer:
    """scipy's L-BFGS-B on the pixels with the box [0, 255] as bounds.

    The loss and gradient come from one tf.function call in float32; only the scipy boundary
    is float64. scipy runs in a worker thread so that each iteration can be yielded; its
    curvature history lives inside scipy, so a resumed run restarts it from the saved image.
    """

    def __init__(self, loss: ImageLoss, start_image: np.ndarray, *, history: int = 10):
        self.loss = loss
        self.history = history
        self.shape = (1, *start_image.shape)
        self.image = start_image.astype(np.float32)
        self.best_image = self.image.copy()
        self.best_loss = math.inf
        self.evaluations = 0
        self.message = ""
        self._iteration = 1  # the iteration being taken: the step its evaluations are at

    def use_loss(self, loss: ImageLoss) -> None:
        """Go on with another loss function from the current image; the best image is
        chosen afresh by the new loss, and the curvature history restarts."""
        self.loss = loss
        self.best_loss = math.inf

    def _evaluate(self, x: np.ndarray) -> tuple[float, np.ndarray, dict[str, float]]:
        images = tf.constant(x.reshape(self.shape), dtype=tf.float32)
        parts, gradient = self.loss.value_and_gradient(images, self._iteration)
        self.evaluations += 1
        losses = _floats(parts)
        total = losses["total"]
        gradient = gradient.numpy().astype(np.float64).ravel()
        if not (math.isfinite(total) and np.all(np.isfinite(gradient))):
            # Tell the line search this point is bad, so that it steps back.
            return 1e30, np.zeros_like(gradient), losses
        if total < self.best_loss:
            self.best_loss = total
            self.best_image = x.reshape(self.shape)[0].astype(np.float32)
        return total, gradient, losses

    def _minimise(self, count: int, first: int, results: queue.Queue, go: queue.Queue) -> None:
        from scipy.optimize import minimize

        latest = {}
        iteration = [first - 1]
        self._iteration = first
        started = [time.perf_counter()]

        def function(x):
            total, gradient, latest["losses"] = self._evaluate(x)
            return total, gradient

        def callback(intermediate_result):
            iteration[0] += 1
            self._iteration = iteration[0] + 1
            self.image = intermediate_result.x.reshape(self.shape)[0].astype(np.float32)
            now = time.perf_counter()
            results.put(
                StepResult(iteration[0], self.evaluations, latest["losses"], now - started[0])
            )
            if not go.get():
                raise _Stop
            started[0] = time.perf_counter()

        try:
            outcome = minimize(
                function,
                self.image.astype(np.float64).ravel(),
                jac=True,
                method="L-BFGS-B",
                bounds=[(0.0, 255.0)] * self.image.size,
                callback=callback,
                options={
                    "maxiter": count,
                    "maxfun": count * 20,
                    "maxcor": self.history,
                    "ftol": 0.0,
                    "gtol": 0.0,
                },
            )
            self.message = str(outcome.message)
            results.put(None)
        except _Stop:
            results.put(None)
        except BaseException as error:  # handed to the consumer's thread
            results.put(error)

    def steps(self, count: int, first: int = 1) -> Iterator[StepResult]:
        """Run up to `count` iterations, numbered from `first`, yielding after each.
        L-BFGS may stop earlier when it can make no more progress (see `message`)."""
        results: queue.Queue = queue.Queue()
        go: queue.Queue = queue.Queue()
        worker = threading.Thread(
            target=self._minimise, args=(count, first, results, go), daemon=True
        )
        worker.start()
        try:
            while (item := results.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                yield item
                go.put(True)
        finally:
            go.put(False)
            worker.join()

    def current_image(self) -> np.ndarray:
        return self.image

    def best(self) -> np.ndarray:
        return self.best_image if math.isfinite(self.best_loss) else self.image

    def state(self) -> dict[str, np.ndarray]:
        return {
            "image": self.image,
            "best_image": self.best_image,
            "best_loss": np.float64(self.best_loss),
            "evaluations": np.int64(self.evaluations),
        }

    def restore(self, state: dict[str, np.ndarray]) -> None:
        self.image = np.asarray(state["image"], np.float32)
        self.best_image = np.asarray(state["best_image"], np.float32)
        self.best_loss = float(state["best_loss"])
        self.evaluations = int(state["evaluations"])


class LbfgsBatchOfOne(LbfgsOptimizer):
    """L-BFGS behind the batch optimisers' interface (BatchAdamOptimizer's), as a batch of
    one image, so that the run loop steps every optimiser alike."""

    def steps(self, count: int, first: int = 1) -> Iterator[BatchStepResult]:
        for result in super().steps(count, first):
            yield BatchStepResult(
                result.step, [result.evaluations], [result.losses], result.seconds, [result.note]
            )

    def best(self, index: int = 0) -> np.ndarray:
        del index  # a batch of one
        return super().best()

    def current_image(self, index: int = 0) -> np.ndarray:
        del index
        return super().current_image()

    def states(self) -> list[dict[str, np.ndarray]]:
        return [self.state()]

    def restore(self, state: dict[str, np.ndarray], index: int = 0) -> None:
        del index
        super().restore(state)

    def carry_over(self, state: dict[str, np.ndarray], index: int = 0) -> None:
        """Nothing to carry: the curvature history lives inside scipy and is of the last
        stage's size, so each stage's L-BFGS starts afresh from the upsampled image."""
        del state, index
