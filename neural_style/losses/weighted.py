"""Features weighted over their positions: what every style statistic is taken of when a
mask guides it (guided.py), and the helpers the statistics share.

A region r has a guide w_r at every layer: its mask averaged to the layer's grid
(masks.py), weights 0..1 over the M = h*w positions, and a mass m_r = sum_p w_rp. A
statistic of a region is that of its positions, each weighing w_rp, normalised by the mass:
the region's statistic as if it were an image of its own. (A position enters with weight w,
i.e. its features scaled by √w for a Gram, so that where two masks blend 0.5/0.5 each style
still pulls with half the strength, and masks summing to 1 pull everywhere as one style
would.)

Shapes: features [B, h, w, c], flattened to [B, 1, M, c]; guides [R, h, w] (shared by the
batch), as position weights [1, R, M, 1]; masses and fractions [R].
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

# The least mass a region is divided by: a mask whose region vanishes at a deep layer's
# coarse grid (a thin stroke near the bottom edge, which VALID pooling drops) then has a
# zero statistic and a zero fraction, so it adds nothing, rather than NaN.
MIN_MASS = 1e-7


def flat_positions(features: tf.Tensor) -> tf.Tensor:
    """[B, h, w, c] -> [B, 1, M, c]: the positions in a row, with a region axis."""
    shape = tf.shape(features)
    return tf.reshape(features, [shape[0], 1, shape[1] * shape[2], shape[3]])


def weights_and_mass(features: tf.Tensor, guides: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """The guides [R, h, w] as [1, R, M, 1] position weights, and each region's mass [R]."""
    weights = tf.reshape(tf.cast(guides, features.dtype), [1, tf.shape(guides)[0], -1, 1])
    return weights, tf.reduce_sum(weights, axis=[0, 2, 3])


def region_fractions(guides: tf.Tensor) -> tf.Tensor:
    """m_r / M of each region: [R]."""
    return tf.reduce_mean(tf.reshape(tf.cast(guides, tf.float32), [tf.shape(guides)[0], -1]), 1)


def guided_grams(features: tf.Tensor, guides: tf.Tensor) -> tf.Tensor:
    """Each image's guided Gram matrix of each region: [B, R, c, c]."""
    flat = flat_positions(features)
    weights, mass = weights_and_mass(features, guides)
    return weighted_grams(flat, weights, tf.maximum(mass, MIN_MASS))


def weighted_grams(flat: tf.Tensor, weights: tf.Tensor, mass: tf.Tensor) -> tf.Tensor:
    """sum_p w_rp f_p f_pᵀ / m_r: [B, R, c, c] from flat features [B, 1, M, c], weights
    [1, R, M, 1] and masses [R] (at least MIN_MASS)."""
    sums = tf.matmul(flat * weights, flat, transpose_a=True)
    return sums / mass[None, :, None, None]


def guided_moments(features: tf.Tensor, guides: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Each image's guided mean [B, R, c] and covariance [B, R, c, c] of each region."""
    flat = flat_positions(features)
    weights, mass = weights_and_mass(features, guides)
    return weighted_moments_tf(flat, weights, tf.maximum(mass, MIN_MASS))


def weighted_moments_tf(
    flat: tf.Tensor, weights: tf.Tensor, mass: tf.Tensor
) -> tuple[tf.Tensor, tf.Tensor]:
    """The weighted mean [B, R, c] and covariance [B, R, c, c] of flat features
    [B, 1, M, c] under weights [1, R, M, 1] and masses [R] (at least MIN_MASS)."""
    mean = tf.reduce_sum(flat * weights, axis=2) / mass[None, :, None]
    centred = flat - mean[:, :, None, :]
    covariance = tf.matmul(centred * weights, centred, transpose_a=True)
    return mean, covariance / mass[None, :, None, None]


def weighted_moments(flat: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The mean [c] and covariance [c, c] of the rows of `flat` [M, c], row p weighing
    `weights`[p] (float64)."""
    weights = np.asarray(weights, np.float64)
    mass = max(weights.sum(), MIN_MASS)
    mean = weights @ flat / mass
    centred = flat - mean
    return mean, (centred * weights[:, None]).T @ centred / mass


@tf.custom_gradient
def guided_gradient_carrier(
    features: tf.Tensor, guides: tf.Tensor, coefficients: tf.Tensor
) -> tuple[tf.Tensor, object]:
    """Zero, with the gradient of sum_r sum_p w_rp (k_r·f_p + f_pᵀ K_r f_p) for guides w
    [R, h, w] and `coefficients` packed [k_r; K_r] ([R, c + 1, c], K_r symmetric):
    sum_r w_rp (k_r + 2·K_r f_p) at every position p. It carries a tile's share of the
    gradient of a statistic built from the sums of w·f and w·f fᵀ (optimize/tiling.py)."""
    flat = tf.reshape(features, [-1, tf.shape(features)[3]])

    def gradient(upstream: tf.Tensor) -> tuple:
        weights = tf.reshape(guides, [tf.shape(guides)[0], -1, 1])
        per_region = coefficients[:, :1, :] + 2.0 * tf.matmul(flat[None], coefficients[:, 1:, :])
        product = upstream * tf.reduce_sum(weights * per_region, axis=0)
        return tf.reshape(product, tf.shape(features)), None, None

    return tf.constant(0.0), gradient
