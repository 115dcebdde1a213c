"""Guided losses (Gatys et al., "Controlling Perceptual Factors in Neural Style Transfer",
CVPR 2017): each style matched in its own region of the image, and the content loss
weighted by a map.

A region r has a guide w_r at every layer: its mask averaged to the layer's grid
(masks.py), weights 0..1 over the M = h*w positions. Its guided Gram matrix is

    G_r = sum_p w_rp f_p f_pᵀ / m_r,   m_r = sum_p w_rp (the region's mass),

the Gram of the features weighted by the guide, normalised by the mass rather than by M:
the region's Gram as if it were an image of its own. (A position enters with weight w,
i.e. its features scaled by √w, so that where two masks blend 0.5/0.5 each style still pulls
with half the strength, and masks summing to 1 pull everywhere as one style would.)
The layer's style loss is

    sum_r (m_r / M) · sum((G_r - A_r)²) / (4·N²),

each region's loss of losses.style_loss_per_image, weighted by the fraction of the image it
covers: the pull on a position is that of a one-style run, however large its region, and
one all-white mask is exactly the run without masks. STYLE_LOSS "w2" takes each region's
guided mean and covariance (weighted the same way) instead of its Gram.

The content mask weighs the content loss's squared errors: sum_p w_p (F - P)² / (2·M·N),
so white is the plain content loss and black frees the image from the photo there.

Shapes: features [B, h, w, c]; guides [R, h, w] (shared by the batch); targets
[B or 1, R, c, c] (Grams) or [B or 1, R, c + 1, c] (packed w2 targets); content guide [h, w].
"""

from __future__ import annotations

import tensorflow as tf

from neural_style.losses import wasserstein

# The least mass a region is divided by: a mask whose region vanishes at a deep layer's
# coarse grid (a thin stroke near the bottom edge, which VALID pooling drops) then has a
# zero Gram and a zero fraction, so it adds nothing, rather than NaN.
MIN_MASS = 1e-7


def _flat(features: tf.Tensor) -> tf.Tensor:
    shape = tf.shape(features)
    return tf.reshape(features, [shape[0], 1, shape[1] * shape[2], shape[3]])


def _weights_and_mass(features: tf.Tensor, guides: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """The guides as [1, R, M, 1] position weights, and each region's mass [R]."""
    weights = tf.reshape(tf.cast(guides, features.dtype), [1, tf.shape(guides)[0], -1, 1])
    return weights, tf.reduce_sum(weights, axis=[0, 2, 3])


def guided_grams(features: tf.Tensor, guides: tf.Tensor) -> tf.Tensor:
    """Each image's guided Gram matrix of each region: [B, R, c, c]."""
    flat = _flat(features)
    weights, mass = _weights_and_mass(features, guides)
    sums = tf.matmul(flat * weights, flat, transpose_a=True)
    return sums / tf.maximum(mass, MIN_MASS)[None, :, None, None]


def guided_moments(features: tf.Tensor, guides: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Each image's guided mean [B, R, c] and covariance [B, R, c, c] of each region."""
    flat = _flat(features)
    weights, mass = _weights_and_mass(features, guides)
    mass = tf.maximum(mass, MIN_MASS)
    mean = tf.reduce_sum(flat * weights, axis=2) / mass[None, :, None]
    centred = flat - mean[:, :, None, :]
    covariance = tf.matmul(centred * weights, centred, transpose_a=True)
    return mean, covariance / mass[None, :, None, None]


def region_fractions(guides: tf.Tensor) -> tf.Tensor:
    """m_r / M of each region: [R]."""
    return tf.reduce_mean(tf.reshape(tf.cast(guides, tf.float32), [tf.shape(guides)[0], -1]), 1)


def style_loss_per_image(
    features: tf.Tensor, guides: tf.Tensor, targets: tf.Tensor, *, w2: bool = False
) -> tf.Tensor:
    """sum_r (m_r / M) · (region r's style loss) of each image: [B]."""
    fractions = region_fractions(guides)
    if w2:
        mean, covariance = guided_moments(features, guides)
        batch, regions = tf.shape(mean)[0], tf.shape(mean)[1]
        channels = tf.shape(mean)[2]
        packed = tf.broadcast_to(targets, [batch, regions, channels + 1, channels])
        each = wasserstein.loss_of_moments(
            tf.reshape(mean, [-1, channels]),
            tf.reshape(covariance, [-1, channels, channels]),
            tf.reshape(packed, [-1, channels + 1, channels]),
        )
        each = tf.reshape(each, [batch, regions])
    else:
        channels = tf.cast(tf.shape(features)[3], features.dtype)
        difference = guided_grams(features, guides) - targets
        each = tf.reduce_sum(tf.square(difference), axis=[2, 3]) / (4.0 * channels * channels)
    return tf.reduce_sum(each * fractions[None, :], axis=1)


def content_loss_per_image(features: tf.Tensor, target: tf.Tensor, guide: tf.Tensor) -> tf.Tensor:
    """sum_p w_p (F - P)² / (2·M·N) of each image: [B], for a guide [h, w]."""
    shape = tf.shape(features)
    size = tf.cast(shape[1] * shape[2] * shape[3], features.dtype)
    weighted = tf.cast(guide, features.dtype)[None, :, :, None] * tf.square(features - target)
    return tf.reduce_sum(weighted, axis=[1, 2, 3]) / (2.0 * size)
