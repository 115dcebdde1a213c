"""STYLE_LOSS "gram": the style loss of Gatys et al. (2015), matching Gram matrices.

With M = h*w positions and N = c channels at a layer:
- gram_matrix(F) = FᵀF / M;
- style loss = sum((G - A)²) / (4·N²), with G the image's Gram matrix and A the style's.
  This is the paper's sum((G - A)²) / (4·N²·M²) for unnormalised Grams, and it stays right
  when the style image has another size than the output, because both Grams are per
  position.
A region's Gram (STYLE_MASKS) is its weighted Gram (weighted.py). In tiles, pass 1 sums
FᵀF (w·FᵀF by region) and pass 2 carries the gradient 2·F·K of sum(K ∘ FᵀF).

Shapes: features [B, h, w, c]; Gram matrices [B, c, c] (targets [1, c, c] shared by a
batch, or one per photo); with regions [B or 1, R, c, c].
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf

from neural_style.losses.style.protocol import LayerShares
from neural_style.losses.weighted import guided_gradient_carrier, guided_grams, weighted_grams


def gram_matrix(features: tf.Tensor) -> tf.Tensor:
    """[B, h, w, c] features -> [B, c, c] Gram matrices, divided by the h*w positions."""
    shape = tf.shape(features)
    flat = tf.reshape(features, [shape[0], shape[1] * shape[2], shape[3]])
    positions = tf.cast(shape[1] * shape[2], features.dtype)
    return tf.matmul(flat, flat, transpose_a=True) / positions


def style_loss_per_image(features: tf.Tensor, target_gram: tf.Tensor) -> tf.Tensor:
    """sum((G - A)²) / (4·N²) of each image: [B], between its features' Gram matrix G and
    the target A ([B, c, c], or [1, c, c] shared by the batch)."""
    channels = tf.cast(tf.shape(features)[3], features.dtype)
    difference = gram_matrix(features) - target_gram
    return tf.reduce_sum(tf.square(difference), axis=[1, 2]) / (4.0 * channels * channels)


def style_loss(features: tf.Tensor, target_gram: tf.Tensor) -> tf.Tensor:
    """The style loss summed over the batch (of one image, that image's)."""
    return tf.reduce_sum(style_loss_per_image(features, target_gram))


@tf.custom_gradient
def _gradient_carrier(features: tf.Tensor, coefficients: tf.Tensor) -> tuple[tf.Tensor, object]:
    """Zero, with the gradient of sum(K ∘ FᵀF) for symmetric K = `coefficients`: 2·F·K.

    Only the gradient is wanted (the loss's value comes from pass 1), so no FᵀF is formed.
    """
    flat = tf.reshape(features, [-1, tf.shape(features)[3]])

    def gradient(upstream: tf.Tensor) -> tuple:
        product = 2.0 * upstream * tf.matmul(flat, coefficients)
        return tf.reshape(product, tf.shape(features)), None

    return tf.constant(0.0), gradient


class Gram:
    """Gram matrices: the features' second moment, per position."""

    name = "gram"
    tileable = True

    def measure(self, features: tf.Tensor, guide: tf.Tensor | None) -> tf.Tensor:
        if guide is None:
            return gram_matrix(features)
        return guided_grams(features, guide)[:, 0]

    def partial_sums(self, flat: tf.Tensor, weights: tf.Tensor | None) -> tf.Tensor:
        weighted = flat if weights is None else flat * weights
        return tf.matmul(weighted, flat, transpose_a=True)

    def from_sums(self, total: tf.Tensor, mass: float) -> tf.Tensor:
        return (total / mass)[None]

    def target(self, measured: Sequence[tf.Tensor], shares: Sequence[float]) -> tf.Tensor:
        blend = 0.0
        for gram, share in zip(measured, shares, strict=True):
            blend += share * gram
        return tf.constant(blend)

    def loss(self, features: tf.Tensor, target: tf.Tensor, step: tf.Tensor) -> tf.Tensor:
        del step  # Gram matrices are the same at every step
        return style_loss_per_image(features, target)

    def region_losses(
        self,
        flat: tf.Tensor,
        weights: tf.Tensor,
        mass: tf.Tensor,
        targets: tf.Tensor,
        step: tf.Tensor,
    ) -> tf.Tensor:
        del step
        channels = tf.cast(tf.shape(flat)[3], flat.dtype)
        difference = weighted_grams(flat, weights, mass) - targets
        return tf.reduce_sum(tf.square(difference), axis=[2, 3]) / (4.0 * channels * channels)

    def tile_sums(self, flat: tf.Tensor, weights: tf.Tensor | None) -> tf.Tensor:
        if weights is None:  # one region of weight 1: the plain FᵀF
            return tf.matmul(flat, flat, transpose_a=True)[None]
        return tf.matmul(flat[None] * weights, flat[None], transpose_a=True)

    def loss_of_sums(
        self, sums: tf.Tensor, target: tf.Tensor, shares: LayerShares
    ) -> tuple[tf.Tensor, tf.Tensor]:
        channels = float(target.shape[-1])
        difference = sums / shares.masses[:, None, None] - target
        if shares.regions:
            squares = tf.reduce_sum(tf.square(difference), axis=[1, 2])
            value = shares.weight * tf.reduce_sum(shares.fractions * squares) / (4.0 * channels**2)
        else:
            value = shares.weight * tf.reduce_sum(tf.square(difference)) / (4.0 * channels**2)
        # d(total)/dG_r · dG_r/d(w·FᵀF): the K_r of sum_r sum(K_r ∘ w·FᵀF) whose gradient
        # is the style's; its fraction_r / mass_r is 1 / M for every region.
        scale = shares.factor / (2.0 * channels**2 * shares.positions)
        coefficients = scale * difference
        if shares.regions:  # the guided carrier's k rows, zero for a Gram
            coefficients = tf.concat([tf.zeros_like(coefficients[:, :1, :]), coefficients], 1)
        return value, coefficients

    def carrier(
        self, features: tf.Tensor, guide: tf.Tensor | None, coefficients: tf.Tensor
    ) -> tf.Tensor:
        if guide is None:
            return _gradient_carrier(features, coefficients[0])
        return guided_gradient_carrier(features, guide, coefficients)

    def coefficient_shape(self, target_shape: tuple[int, ...], regions: bool) -> tuple:
        count, rows, channels = target_shape
        return (count, channels + 1 if regions else rows, channels)
