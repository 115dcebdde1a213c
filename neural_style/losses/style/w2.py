"""STYLE_LOSS "w2": Gaussian fits of the features matched in the 2-Wasserstein distance
instead of Gram matrices.

At a style layer with N channels, fit each image's features by a Gaussian: μ the mean
feature vector over the positions, Σ their covariance (N x N). The squared 2-Wasserstein
distance between N(μ, Σ) and the style's N(μ', Σ') is

    ‖μ - μ'‖² + tr(Σ + Σ' - 2 (Σ'^½ Σ Σ'^½)^½).

The style's Σ'^½ is a constant, computed once per target in float64. Each step takes the
trace of the square root of Σ'^½ Σ Σ'^½ per layer from its eigenvalues, in float64, with
the gradient ½ (Σ'^½ Σ Σ'^½)^-½ from the same eigendecomposition (trace_of_root): exact
wherever the optimiser goes, however ill-conditioned the product, so the loss never goes
below zero and its gradient is the loss's. (A float32 Newton–Schulz root, differentiated
through its iterations, made errors the optimiser walked into on small images.)

A region's mean and covariance (STYLE_MASKS) are its weighted ones (weighted.py). In
tiles, the mean and covariance come from the sums of x and of xxᵀ over the positions, so
pass 1 sums both (packed [c + 1, c] like the targets), and pass 2 carries the gradient of
the loss with respect to those sums, which is linear in each core's share.

Shapes: features [B, h, w, c]; means [B, c]; covariances and roots [B, c, c]. A style
target is packed as one tensor [B, c + 1, c] (row 0 the mean, rows 1.. the root of the
covariance), so that it is cached, batched and concatenated like a Gram matrix.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from neural_style.losses.style.protocol import LayerShares
from neural_style.losses.weighted import (
    guided_gradient_carrier,
    weighted_moments,
    weighted_moments_tf,
)

# Added to every covariance (in squared feature units, features being VGG's activations of
# 0..255 pixels). ReLU features have dead channels and, at deep layers of small images, fewer
# positions than channels, so Σ is singular; the square root is not differentiable at a
# zero eigenvalue (its derivative 1/(2√λ) is infinite) and Newton–Schulz converges slowest
# there. The mean channel variances at the style layers are 17..146 (synthetic weights,
# images/content.jpg at 512 px), so 1 damps only the weakest directions.
COVARIANCE_EPSILON = 1.0

# The least eigenvalue trace_of_root takes a root of. With COVARIANCE_EPSILON 1 in both
# covariances every eigenvalue of Σ'^½ Σ Σ'^½ is at least 1 but for rounding, so this only
# guards against a rounding below zero.
MIN_EIGENVALUE = 1e-12

# The w2 layer loss is divided by the layer's channels and multiplied by this, so that at
# the shipped settings the first step's style loss is of the order of gram's and BETA
# needs no retuning by orders of magnitude: on images/content.jpg and style.jpg at 512 px
# (synthetic weights) gram's initial style loss is 36..109 times w2's unscaled one per
# layer, 61 times over all five (benchmarks/style_loss.py prints the ratio).
W2_SCALE = 60.0


def moments(features: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """[B, h, w, c] features -> each image's mean [B, c] and covariance [B, c, c] over its
    positions (divided by the positions, as the Gram matrix is)."""
    shape = tf.shape(features)
    flat = tf.reshape(features, [shape[0], shape[1] * shape[2], shape[3]])
    mean = tf.reduce_mean(flat, axis=1)
    centred = flat - mean[:, None, :]
    positions = tf.cast(shape[1] * shape[2], features.dtype)
    return mean, tf.matmul(centred, centred, transpose_a=True) / positions


@tf.custom_gradient
def trace_of_root(matrix: tf.Tensor) -> tuple[tf.Tensor, object]:
    """tr(A^½) of each symmetric positive definite matrix A of `matrix` [B, c, c] (float64):
    [B], from its eigenvalues. The gradient is ½ A^-½, from the same decomposition: the
    gradient of a trace of a matrix function needs no eigenvector derivatives, so close or
    repeated eigenvalues cost it nothing, and with COVARIANCE_EPSILON in both covariances
    every eigenvalue is at least ε², so A^-½ stays bounded."""
    values, vectors = tf.linalg.eigh(matrix)
    roots = tf.sqrt(tf.maximum(values, MIN_EIGENVALUE))

    def gradient(upstream: tf.Tensor) -> tf.Tensor:
        half_inverse = vectors * (0.5 / roots)[:, None, :]
        return upstream[:, None, None] * tf.matmul(half_inverse, vectors, transpose_b=True)

    return tf.reduce_sum(roots, axis=-1), gradient


def pack(mean: np.ndarray, root: np.ndarray) -> tf.Tensor:
    """A style target [B, c + 1, c] float32 from means [B, c] and covariance roots [B, c, c]."""
    return tf.constant(np.concatenate([mean[:, None, :], root], axis=1), tf.float32)


def style_loss_per_image(features: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
    """W2_SCALE · W2²(features, style) / N of each image: [B], against a packed target
    ([B, c + 1, c], or [1, c + 1, c] shared by the batch)."""
    mean, covariance = moments(features)
    return loss_of_moments(mean, covariance, target)


def loss_of_moments(mean: tf.Tensor, covariance: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
    """style_loss_per_image from the features' means [B, c] and covariances [B, c, c]
    (optimize/tiling.py sums them over tiles)."""
    dtype = covariance.dtype
    # In float64 from here: the distance is a difference of traces of similar size, and the
    # optimiser would walk into any rounding of it that made it smaller.
    mean, covariance = tf.cast(mean, tf.float64), tf.cast(covariance, tf.float64)
    target = tf.cast(target, tf.float64)
    style_mean, style_root = target[:, 0, :], target[:, 1:, :]
    channels = tf.shape(covariance)[1]
    identity = tf.eye(channels, dtype=tf.float64)
    covariance = covariance + COVARIANCE_EPSILON * identity
    product = tf.matmul(tf.matmul(style_root, covariance), style_root)
    # Rounding leaves the product slightly asymmetric; eigh reads one triangle.
    product = 0.5 * (product + tf.linalg.matrix_transpose(product))
    cross = trace_of_root(product)
    # tr(Σ' + εI) is ‖Σ'^½‖²_F: no need to keep Σ' itself.
    traces = tf.linalg.trace(covariance) + tf.reduce_sum(tf.square(style_root), axis=[1, 2])
    distance = tf.reduce_sum(tf.square(mean - style_mean), axis=1) + traces - 2.0 * cross
    # Never below 0 but by rounding: 0 when the image's Gaussian is the style's.
    distance = tf.maximum(distance, 0.0)
    return tf.cast(W2_SCALE * distance / tf.cast(channels, tf.float64), dtype)


def blended_target(
    image_moments: Sequence[tuple[np.ndarray, np.ndarray]], shares: Sequence[float]
) -> tf.Tensor:
    """The packed target [1, c + 1, c] of a blend of styles, from each style's (mean [c],
    covariance [c, c]) and its share (summing to 1).

    The blend is the distribution of the styles' features pooled with those weights: the
    means and the second moments E[x xᵀ] = Σ + μ μᵀ mix, and the blend's covariance is
    its second moment less its mean's outer product. The root is taken in float64 by an
    eigendecomposition, once, so the constant carries no iteration error.
    """
    pairs = list(zip(image_moments, shares, strict=True))
    mean = sum(share * np.asarray(m, np.float64) for (m, _), share in pairs)
    second = sum(share * (np.asarray(s, np.float64) + np.outer(m, m)) for (m, s), share in pairs)
    covariance = second - np.outer(mean, mean)
    covariance = 0.5 * (covariance + covariance.T)
    values, vectors = np.linalg.eigh(covariance + COVARIANCE_EPSILON * np.eye(len(mean)))
    root = (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T
    return pack(mean[None], root[None])


@tf.custom_gradient
def _gradient_carrier(features: tf.Tensor, coefficients: tf.Tensor) -> tuple[tf.Tensor, object]:
    """Zero, with the gradient of k·Σx + sum(K ∘ FᵀF) for `coefficients` packed as
    [k; K] ([c + 1, c], K symmetric): k + 2·F·K at every position."""
    flat = tf.reshape(features, [-1, tf.shape(features)[3]])

    def gradient(upstream: tf.Tensor) -> tuple:
        product = upstream * (coefficients[0][None] + 2.0 * tf.matmul(flat, coefficients[1:]))
        return tf.reshape(product, tf.shape(features)), None

    return tf.constant(0.0), gradient


def _loss_of_sums(
    sums: tf.Tensor, targets: tf.Tensor, masses: tf.Tensor, fractions: tf.Tensor
) -> tuple[tf.Tensor, tf.Tensor]:
    """A layer's loss from its regions' packed sums [Σwx; Σwxxᵀ] ([R, c + 1, c]): the
    sum of each region's loss times its fraction, and the loss's gradient with respect to
    the sums, packed alike with its K parts made symmetric."""
    with tf.GradientTape() as tape:
        tape.watch(sums)
        mean = sums[:, 0] / masses[:, None]
        covariance = sums[:, 1:] / masses[:, None, None] - mean[:, :, None] * mean[:, None, :]
        value = tf.reduce_sum(fractions * loss_of_moments(mean, covariance, targets))
    gradient = tape.gradient(value, sums)
    square = gradient[:, 1:]
    symmetric = 0.5 * (square + tf.linalg.matrix_transpose(square))
    return value, tf.concat([gradient[:, :1], symmetric], 1)


class Wasserstein:
    """The 2-Wasserstein distance of the features' Gaussian fits."""

    name = "w2"
    tileable = True

    def measure(
        self, features: tf.Tensor, guide: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(mean [c], covariance [c, c]) in float64."""
        flat = np.asarray(features, np.float64).reshape(-1, features.shape[3])
        weights = np.ones(len(flat)) if guide is None else np.ravel(guide)
        return weighted_moments(flat, weights)

    def partial_sums(self, flat: tf.Tensor, weights: tf.Tensor | None) -> np.ndarray:
        """[Σw·x; Σw·xxᵀ] in float64, packed [c + 1, c]."""
        flat = np.asarray(flat, np.float64)
        w = np.ones((len(flat), 1)) if weights is None else np.asarray(weights, np.float64)
        return np.concatenate([(w * flat).sum(axis=0)[None], (w * flat).T @ flat])

    def from_sums(self, total: np.ndarray, mass: float) -> tuple[np.ndarray, np.ndarray]:
        mean = total[0] / mass
        return mean, total[1:] / mass - np.outer(mean, mean)

    def target(
        self, measured: Sequence[tuple[np.ndarray, np.ndarray]], shares: Sequence[float]
    ) -> tf.Tensor:
        return blended_target(measured, shares)

    def loss(self, features: tf.Tensor, target: tf.Tensor, step: tf.Tensor) -> tf.Tensor:
        del step  # the fits are the same at every step
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
        mean, covariance = weighted_moments_tf(flat, weights, mass)
        batch, regions, channels = tf.shape(mean)[0], tf.shape(mean)[1], tf.shape(mean)[2]
        packed = tf.broadcast_to(targets, [batch, regions, channels + 1, channels])
        each = loss_of_moments(
            tf.reshape(mean, [-1, channels]),
            tf.reshape(covariance, [-1, channels, channels]),
            tf.reshape(packed, [-1, channels + 1, channels]),
        )
        return tf.reshape(each, [batch, regions])

    def tile_sums(self, flat: tf.Tensor, weights: tf.Tensor | None) -> tf.Tensor:
        if weights is None:
            weighted = flat[None]
            sums = tf.matmul(flat, flat, transpose_a=True)[None]
        else:
            weighted = flat[None] * weights
            sums = tf.matmul(weighted, flat[None], transpose_a=True)
        return tf.concat([tf.reduce_sum(weighted, 1, keepdims=True), sums], 1)

    def loss_of_sums(
        self, sums: tf.Tensor, target: tf.Tensor, shares: LayerShares
    ) -> tuple[tf.Tensor, tf.Tensor]:
        value, gradient = _loss_of_sums(sums, target, shares.masses, shares.fractions)
        return shares.weight * value, shares.factor * gradient

    def carrier(
        self, features: tf.Tensor, guide: tf.Tensor | None, coefficients: tf.Tensor
    ) -> tf.Tensor:
        if guide is None:
            return _gradient_carrier(features, coefficients[0])
        return guided_gradient_carrier(features, guide, coefficients)

    def coefficient_shape(self, target_shape: tuple[int, ...], regions: bool) -> tuple:
        count, _, channels = target_shape
        return (count, channels + 1, channels)
