"""Optimising the image: targets computed once, the image in a tf.Variable, a tf.function step.

This module does no file I/O: `ImageOptimizer.steps(n)` yields one `StepResult` per step
and the caller decides what to print and save (see run.py).

Shapes: images are [1, H, W, 3] float32 RGB in 0..255.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from neural_style.losses import LossWeights, Targets, gram_matrix, objective
from neural_style.vgg import VGG19


def compute_targets(
    net: VGG19, content_image: np.ndarray, style_image: np.ndarray, weights: LossWeights
) -> Targets:
    """The content image's features and the style image's Gram matrices, once."""
    content_layers = [name for name, _ in weights.content_layers]
    style_layers = [name for name, _ in weights.style_layers]
    content_features = net(content_image[None], content_layers)
    style_features = net(style_image[None], style_layers)
    return Targets(
        content={name: tf.constant(content_features[name]) for name in content_layers},
        style_grams={name: tf.constant(gram_matrix(style_features[name])) for name in style_layers},
    )


def initial_image(content_image: np.ndarray, noise: float, seed: int) -> np.ndarray:
    """The content image with a `noise` fraction of uniform 0..255 noise blended in."""
    rng = np.random.default_rng(seed)
    random_pixels = rng.uniform(0.0, 255.0, content_image.shape).astype(np.float32)
    return ((1.0 - noise) * content_image + noise * random_pixels).astype(np.float32)


class Adam:
    """Adam (Kingma & Ba) on one variable, its state in tf.Variables so that a step stays
    inside one tf.function and the state can be saved with the image."""

    def __init__(
        self,
        variable: tf.Variable,
        learning_rate: float,
        beta1: float = 0.9,
        beta2: float = 0.999,
        epsilon: float = 1e-8,
    ):
        self.learning_rate = tf.Variable(learning_rate, dtype=tf.float32, trainable=False)
        self.beta1, self.beta2, self.epsilon = beta1, beta2, epsilon
        self.first_moment = tf.Variable(tf.zeros_like(variable), trainable=False)
        self.second_moment = tf.Variable(tf.zeros_like(variable), trainable=False)
        self.iterations = tf.Variable(0, dtype=tf.int64, trainable=False)

    def apply(self, gradient: tf.Tensor, variable: tf.Variable) -> None:
        self.iterations.assign_add(1)
        t = tf.cast(self.iterations, tf.float32)
        self.first_moment.assign(self.beta1 * self.first_moment + (1 - self.beta1) * gradient)
        self.second_moment.assign(
            self.beta2 * self.second_moment + (1 - self.beta2) * tf.square(gradient)
        )
        corrected_rate = self.learning_rate * tf.sqrt(1 - self.beta2**t) / (1 - self.beta1**t)
        variable.assign_sub(
            corrected_rate * self.first_moment / (tf.sqrt(self.second_moment) + self.epsilon)
        )


class StepResult(NamedTuple):
    step: int  # 1-based number of the step just taken
    losses: dict[str, float]  # content, style, tv, total of the image the step started from
    seconds: float  # wall time of the step

    @property
    def finite(self) -> bool:
        return all(math.isfinite(value) for value in self.losses.values())


class ImageOptimizer:
    """Adam on the pixels of one image, kept in [0, 255]."""

    def __init__(
        self,
        net: VGG19,
        targets: Targets,
        weights: LossWeights,
        start_image: np.ndarray,
        learning_rate: float,
    ):
        self.net = net
        self.targets = targets
        self.weights = weights
        self.layers = sorted({name for name, _ in weights.content_layers + weights.style_layers})
        self.image = tf.Variable(start_image[None], dtype=tf.float32)
        # The image before the last update whose loss and gradient were finite.
        self.last_good = tf.Variable(self.image)
        self.adam = Adam(self.image, learning_rate)

    def loss(self, images: tf.Tensor) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
        return objective(self.net(images, self.layers), images, self.targets, self.weights)

    @tf.function
    def _step(self) -> dict[str, tf.Tensor]:
        with tf.GradientTape() as tape:
            _, parts = self.loss(self.image)
        gradient = tape.gradient(parts["total"], self.image)
        finite = tf.math.is_finite(parts["total"]) & tf.reduce_all(tf.math.is_finite(gradient))
        if finite:  # a non-finite step leaves the image and Adam's state as they were
            self.last_good.assign(self.image)
            self.adam.apply(gradient, self.image)
            self.image.assign(tf.clip_by_value(self.image, 0.0, 255.0))
        return parts

    def steps(self, count: int, first: int = 1) -> Iterator[StepResult]:
        """Take `count` steps, numbered from `first`, yielding after each."""
        for step in range(first, first + count):
            started = time.perf_counter()
            losses = {name: float(value) for name, value in self._step().items()}
            yield StepResult(step, losses, time.perf_counter() - started)

    def current_image(self) -> np.ndarray:
        return self.image.numpy()[0]

    def last_good_image(self) -> np.ndarray:
        return self.last_good.numpy()[0]
