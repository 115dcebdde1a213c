"""The objects an optimiser steps on: each computes the named loss parts of its images
and the gradient of their total, over whole images in one tf.function call.

- BatchLossFunction: B images at once, each with its own loss ([B] parts), so that the
  gradient of their sum gives every image the gradient it would have alone;
- LossFunction: one image, its parts as scalars (the graph single runs have always traced);
- TemporalLoss: a video frame's LossFunction plus its temporal loss (losses/temporal.py);
- tiling.TiledLossFunction computes LossFunction's value and gradient in tiles.

Shapes: images [B, H, W, 3] float32 RGB in 0..255; gradients alike.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from neural_style.losses.gatys import LossWeights, Targets, objective_per_image
from neural_style.losses.temporal import temporal_loss_and_gradient
from neural_style.optimize.protocols import ImageLoss
from neural_style.vgg.network import VGG19


class BatchLossFunction:
    """Each image's objective, and the gradient of their sum: [B] losses, [B, H, W, 3]."""

    # A step is one tf.function call, which the optimiser can trace into its own.
    traceable = True

    def __init__(self, net: VGG19, targets: Targets, weights: LossWeights):
        self.net = net
        self.targets = targets
        self.weights = weights
        self.layers = sorted({name for name, _ in weights.content_layers + weights.style_layers})

    def value_and_gradient(
        self, images: tf.Tensor, step: tf.Tensor | int = 0
    ) -> tuple[dict[str, tf.Tensor], tf.Tensor]:
        """The named loss parts of each image ([B] each), and the gradient of the sum of
        the totals, which is each image's gradient of its own total, at step `step`."""
        return self._value_and_gradient(images, tf.convert_to_tensor(step, tf.int64))

    # A tf.function method holds its object weakly: value_and_gradient holds it for a call.
    @tf.function(
        input_signature=[
            tf.TensorSpec([None, None, None, 3], tf.float32),
            tf.TensorSpec([], tf.int64),
        ],
        autograph=False,
    )
    def _value_and_gradient(
        self, images: tf.Tensor, step: tf.Tensor
    ) -> tuple[dict[str, tf.Tensor], tf.Tensor]:
        with tf.GradientTape() as tape:
            tape.watch(images)
            totals, parts = objective_per_image(
                self.net(images, self.layers), images, self.targets, self.weights, step
            )
        return parts, tape.gradient(totals, images)


class LossFunction(BatchLossFunction):
    """The objective of one content target and style blend, and its gradient, over the
    whole image in one tf.function call (tiling.TiledLossFunction computes the same in
    tiles). The network runs in its own precision (see VGG19); its features, the Grams,
    the losses and the gradient are float32."""

    def value_and_gradient(
        self, images: tf.Tensor, step: tf.Tensor | int = 0
    ) -> tuple[dict[str, tf.Tensor], tf.Tensor]:
        """The named loss parts (content, style, tv, total) at `images` [1, H, W, 3], as
        scalars, and the gradient of the total with respect to them."""
        parts, gradient = super().value_and_gradient(images, step)
        return {name: tf.reduce_sum(value) for name, value in parts.items()}, gradient


class TemporalLoss:
    """One image's loss plus TEMPORAL_WEIGHT times its temporal loss: the mask-weighted
    mean squared difference from `warped`, the previous result moved by the flow."""

    traceable = True

    def __init__(self, base: ImageLoss, warped: np.ndarray, mask: np.ndarray, weight: float):
        self.base = base
        self.warped = tf.constant(warped[None], tf.float32)
        self.mask = tf.constant(mask[None, :, :, None], tf.float32)
        self.weight = float(weight)

    def value_and_gradient(
        self, images: tf.Tensor, step: tf.Tensor | int = 0
    ) -> tuple[dict[str, tf.Tensor], tf.Tensor]:
        parts, gradient = self.base.value_and_gradient(images, step)
        temporal, pull = temporal_loss_and_gradient(images, self.warped, self.mask, self.weight)
        parts = {**parts, "temporal": temporal, "total": parts["total"] + self.weight * temporal}
        return parts, gradient + pull
