"""Optimising several images at once with Adam, each as if it were alone.

One tf.Variable holds the batch, and one step runs VGG on all of it. Every image still has
its own run: its own loss (losses.objective_per_image; the optimised quantity is the sum of
the images' losses, so each image gets the gradient of its own loss), its own best image
and best loss, its own learning rate and divergence recovery, and its own Adam moments and
step count. An image in a batch therefore ends where it would alone, up to float rounding.

This module does no file I/O: `steps(n)` yields one BatchStepResult per step and the caller
(gatys/runner.py) decides what to print and save.

Shapes: images and Adam's moments are [B, H, W, 3] float32 RGB in 0..255; content targets
[B, h, w, c]; style Grams [1, c, c] shared by the batch, or [B, c, c] one per image; each
image's best loss, learning rate and step count [B].
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator

import numpy as np
import tensorflow as tf

from neural_style.optimize.protocols import BatchStepResult, ImageLoss

# A loss above this many times the best one so far counts as a divergence.
DIVERGENCE_FACTOR = 10.0

# What an image's state holds, in that order; images are [H, W, 3], the rest scalars.
STATE_NAMES = (
    "image",
    "best_image",
    "best_loss",
    "learning_rate",
    "first_moment",
    "second_moment",
    "iterations",
)


def _per_pixel(values: tf.Tensor) -> tf.Tensor:
    """[B] -> [B, 1, 1, 1], to broadcast a per-image value over its pixels."""
    return tf.reshape(values, [-1, 1, 1, 1])


class BatchAdamOptimizer:
    """Adam (Kingma & Ba) on the pixels of B images at once, kept in [0, 255], with
    divergence recovery: a non-finite loss, or one above DIVERGENCE_FACTOR times the best,
    restores the best image, halves the learning rate and restarts the moment estimates.
    Each is decided and applied per image; a single photo is a batch of one.

    The loss is a BatchLossFunction, or for a batch of one any ImageLoss
    (loss_functions.LossFunction, tiling.TiledLossFunction). A loss whose `traceable` is False
    computes its gradient in several tf.function calls, and the update then runs in one of
    its own."""

    def __init__(
        self,
        loss: ImageLoss,
        start_images: np.ndarray,
        *,
        learning_rate: float,
        beta1: float = 0.9,
        beta2: float = 0.999,
        epsilon: float = 1e-8,
    ):
        count = start_images.shape[0]
        self.loss = loss
        self.beta1, self.beta2, self.epsilon = beta1, beta2, epsilon
        self.image = tf.Variable(start_images, dtype=tf.float32)
        self.best_image = tf.Variable(self.image)
        self.best_loss = tf.Variable(np.full(count, np.inf, np.float32))
        self.learning_rate = tf.Variable(np.full(count, learning_rate, np.float32))
        self.first_moment = tf.Variable(tf.zeros_like(self.image))
        self.second_moment = tf.Variable(tf.zeros_like(self.image))
        self.iterations = tf.Variable(np.zeros(count, np.int64))
        self.evaluations = np.zeros(count, np.int64)
        self.message = ""  # Adam takes every step asked of it
        self._step = tf.function(self._take_step, autograph=False)
        self._update = tf.function(self._update_rule, autograph=False)

    def use_loss(self, loss: ImageLoss) -> None:
        """Go on with another loss function (e.g. in another precision) from the current
        images and moments; each image's best is chosen afresh by the new loss."""
        self.loss = loss
        self.best_loss.assign(tf.fill(tf.shape(self.best_loss), np.inf))
        self._step = tf.function(self._take_step, autograph=False)  # traced for the new loss

    @property
    def size(self) -> int:
        """How many images the batch holds."""
        return len(self.evaluations)

    def _run_step(self, step: int) -> tuple[dict[str, tf.Tensor], tf.Tensor]:
        number = tf.constant(step, tf.int64)  # a tensor, so that no step traces anew
        if not self.loss.traceable:
            parts, gradient = self.loss.value_and_gradient(self.image, number)
            return parts, self._update(parts["total"], gradient)
        return self._step(number)

    def _take_step(self, step: tf.Tensor) -> tuple[dict[str, tf.Tensor], tf.Tensor]:
        parts, gradient = self.loss.value_and_gradient(self.image, step)
        return parts, self._update_rule(parts["total"], gradient)

    def _update_rule(self, totals: tf.Tensor, gradient: tf.Tensor) -> tf.Tensor:
        """Each image's Adam update or divergence recovery; which images diverged, [B]."""
        finite = tf.math.is_finite(totals) & tf.reduce_all(
            tf.math.is_finite(gradient), axis=[1, 2, 3]
        )
        diverged = ~finite | (totals > DIVERGENCE_FACTOR * self.best_loss)
        improved = ~diverged & (totals < self.best_loss)
        self.best_loss.assign(tf.where(improved, totals, self.best_loss))
        self.best_image.assign(tf.where(_per_pixel(improved), self.image, self.best_image))
        self._apply_adam(gradient, stepping=~diverged)
        return diverged

    def _apply_adam(self, gradient: tf.Tensor, *, stepping: tf.Tensor) -> None:
        """Adam's step for the images in `stepping`; the others go back to their best
        image with half the learning rate and fresh moments."""
        iterations = self.iterations + 1
        t = tf.cast(iterations, tf.float32)
        first = self.beta1 * self.first_moment + (1 - self.beta1) * gradient
        second = self.beta2 * self.second_moment + (1 - self.beta2) * tf.square(gradient)
        rate = self.learning_rate * tf.sqrt(1 - self.beta2**t) / (1 - self.beta1**t)
        update = _per_pixel(rate) * first / (tf.sqrt(second) + self.epsilon)
        stepped = tf.clip_by_value(self.image - update, 0.0, 255.0)
        pixels = _per_pixel(stepping)
        zeros = tf.zeros_like(self.image)
        self.image.assign(tf.where(pixels, stepped, self.best_image))
        self.first_moment.assign(tf.where(pixels, first, zeros))
        self.second_moment.assign(tf.where(pixels, second, zeros))
        self.iterations.assign(tf.where(stepping, iterations, tf.zeros_like(iterations)))
        self.learning_rate.assign(tf.where(stepping, self.learning_rate, self.learning_rate / 2))

    def steps(self, count: int, first: int = 1) -> Iterator[BatchStepResult]:
        """Take `count` steps, numbered from `first`, yielding after each."""
        for step in range(first, first + count):
            started = time.perf_counter()
            parts, diverged = self._run_step(step)
            self.evaluations += 1
            values = {name: np.reshape(value.numpy(), -1) for name, value in parts.items()}
            losses = [
                {name: float(value[index]) for name, value in values.items()}
                for index in range(self.size)
            ]
            notes = [
                f"diverged: best image restored, learning rate {self.rate_of(index):.3g}"
                if flag
                else ""
                for index, flag in enumerate(np.reshape(diverged.numpy(), -1))
            ]
            yield BatchStepResult(
                step,
                [int(count) for count in self.evaluations],
                losses,
                time.perf_counter() - started,
                notes,
            )

    def rate_of(self, index: int) -> float:
        """Image `index`'s learning rate now."""
        return float(self.learning_rate.numpy()[index])

    def current_image(self, index: int = 0) -> np.ndarray:
        return self.image.numpy()[index]

    def best(self, index: int = 0) -> np.ndarray:
        """Image `index`'s lowest-loss image so far (its start image before the first step)."""
        if not math.isfinite(float(self.best_loss.numpy()[index])):
            return self.image.numpy()[index]
        return self.best_image.numpy()[index]

    def state(self, index: int = 0) -> dict[str, np.ndarray]:
        """Everything needed to continue image `index` exactly where it is."""
        return self.states()[index]

    def states(self) -> list[dict[str, np.ndarray]]:
        """Each image's state: images [H, W, 3] and scalars, as a single run checkpoints
        them, so that a photo of a batch leaves the checkpoint it would leave alone."""
        values = {name: getattr(self, name).numpy() for name in STATE_NAMES}
        return [
            {
                **{name: value[index] for name, value in values.items()},
                "evaluations": np.int64(self.evaluations[index]),
            }
            for index in range(self.size)
        ]

    def carry_over(self, state: dict[str, np.ndarray], index: int = 0) -> None:
        """Go on with image `index` from the state its previous, smaller stage left: its
        moments upsampled to this size (the first bicubically, the second bilinearly and
        kept at least 0), and its step count and learning rate as they were, so that a
        stage goes on where the last one was instead of warming Adam up anew.

        The losses are means over positions, so a pixel's gradient shrinks with the image's
        area; the moments are scaled by the ratio of the areas (the second by its square),
        so that this stage's gradients average in at their own scale."""
        size = self.image.shape[1:3]
        old_size = np.shape(state["first_moment"])[:2]
        shrink = (old_size[0] * old_size[1]) / (size[0] * size[1])
        first = _resized(state["first_moment"], size, "bicubic") * shrink
        second = tf.maximum(_resized(state["second_moment"], size, "bilinear"), 0.0)
        self._set(self.first_moment, index, first)
        self._set(self.second_moment, index, second * shrink**2)
        self._set(self.iterations, index, state["iterations"])
        self._set(self.learning_rate, index, state["learning_rate"])

    @staticmethod
    def _set(variable: tf.Variable, index: int, value: np.ndarray | tf.Tensor) -> None:
        values = variable.numpy()
        values[index] = np.reshape(value, values.shape[1:])
        variable.assign(values)

    def restore(self, state: dict[str, np.ndarray], index: int = 0) -> None:
        """Give image `index` the state of a checkpoint (the form of `state`)."""
        for name in STATE_NAMES:
            self._set(getattr(self, name), index, state[name])
        self.evaluations[index] = int(state["evaluations"])


def _resized(image: np.ndarray, size: tuple[int, int], method: str) -> tf.Tensor:
    """A [H, W, C] array resampled to `size` (height, width) by `method`, as float32."""
    return tf.image.resize(tf.constant(image, tf.float32), size, method=method)
