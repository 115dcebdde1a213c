"""The Wasserstein style loss (STYLE_LOSS = "w2"): Gaussian fits of the features matched in
the 2-Wasserstein distance instead of Gram matrices.

At a style layer with N channels, fit each image's features by a Gaussian: μ the mean
feature vector over the positions, Σ their covariance (N x N). The squared 2-Wasserstein
distance between N(μ, Σ) and the style's N(μ', Σ') is

    ‖μ - μ'‖² + tr(Σ + Σ' - 2 (Σ'^½ Σ Σ'^½)^½).

The style's Σ'^½ is a constant, computed once per target in float64; each step takes one
matrix square root per layer, of Σ'^½ Σ Σ'^½, by Newton–Schulz iterations in float32 (only
matrix products, so autodiff gives the gradient and it runs as fast as matmuls do).

Shapes: features [B, h, w, c]; means [B, c]; covariances and roots [B, c, c]. A style
target is packed as one tensor [B, c + 1, c] (row 0 the mean, rows 1.. the root of the
covariance), so that it is cached, batched and concatenated like a Gram matrix.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf

# Added to every covariance (in squared feature units, features being VGG's activations of
# 0..255 pixels). ReLU features have dead channels and, at deep layers of small images, fewer
# positions than channels, so Σ is singular; the square root is not differentiable at a
# zero eigenvalue (its derivative 1/(2√λ) is infinite) and Newton–Schulz converges slowest
# there. The mean channel variances at the style layers are 17..146 (synthetic weights,
# images/content.jpg at 512 px), so 1 damps only the weakest directions.
COVARIANCE_EPSILON = 1.0

# Newton–Schulz iterations per square root. After Frobenius normalisation an eigenvalue r
# of the product grows by about 9/4 per iteration until it nears 1, then converges
# quadratically. At 512 px the products' eigenvalues span 1e-8..1 (relu5_1); the trace of
# the root is then off by 2e-2 after 18 iterations, 1e-4 after 24, so 24. On the tests'
# small features the loss matches scipy's sqrtm in float64 to 1e-4 relative.
NEWTON_SCHULZ_ITERATIONS = 24

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


def newton_schulz_sqrt(matrix: tf.Tensor, iterations: int = NEWTON_SCHULZ_ITERATIONS):
    """The square root of each symmetric positive definite matrix of `matrix` [B, c, c].

    Coupled Newton–Schulz: Y → A^½ and Z → A^-½ from Y₀ = A/‖A‖, Z₀ = I, which converges
    when the eigenvalues of A/‖A‖ lie in (0, 2); the Frobenius norm puts them in (0, 1].
    """
    norm = tf.sqrt(tf.reduce_sum(tf.square(matrix), axis=[1, 2], keepdims=True))
    identity = tf.eye(tf.shape(matrix)[1], batch_shape=[tf.shape(matrix)[0]], dtype=matrix.dtype)
    y, z = matrix / norm, identity
    for _ in range(iterations):
        step = 0.5 * (3.0 * identity - tf.matmul(z, y))
        y, z = tf.matmul(y, step), tf.matmul(step, z)
    return y * tf.sqrt(norm)


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
    style_mean, style_root = target[:, 0, :], target[:, 1:, :]
    channels = tf.shape(covariance)[1]
    identity = tf.eye(channels, dtype=covariance.dtype)
    covariance = covariance + COVARIANCE_EPSILON * identity
    product = tf.matmul(tf.matmul(style_root, covariance), style_root)
    # Rounding leaves the product slightly asymmetric; the iteration assumes symmetry.
    product = 0.5 * (product + tf.linalg.matrix_transpose(product))
    cross = tf.linalg.trace(newton_schulz_sqrt(product))
    # tr(Σ' + εI) is ‖Σ'^½‖²_F: no need to keep Σ' itself.
    traces = tf.linalg.trace(covariance) + tf.reduce_sum(tf.square(style_root), axis=[1, 2])
    distance = tf.reduce_sum(tf.square(mean - style_mean), axis=1) + traces - 2.0 * cross
    return W2_SCALE * distance / tf.cast(channels, covariance.dtype)


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
