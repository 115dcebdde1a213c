"""Guided losses (Gatys et al., "Controlling Perceptual Factors in Neural Style Transfer",
CVPR 2017): each style matched in its own region of the image, and the content loss
weighted by a map.

A region r has a guide w_r at every layer (weighted.py): its mask averaged to the layer's
grid, weights 0..1 over the M = h*w positions, and a mass m_r = sum_p w_rp. Its statistic
(a Gram matrix, a Gaussian fit, a distribution: the STYLE_LOSS's, style/) is that of its
positions weighted by the guide and normalised by the mass: the region's statistic as if it
were an image of its own. The layer's style loss is

    sum_r (m_r / M) · (region r's loss against its own style),

each region's loss weighted by the fraction of the image it covers: the pull on a position
is that of a one-style run, however large its region, and one all-white mask is exactly the
run without masks.

The content mask weighs the content loss's squared errors: sum_p w_p (F - P)² / (2·M·N),
so white is the plain content loss and black frees the image from the photo there.

Shapes: features [B, h, w, c]; guides [R, h, w] (shared by the batch); targets
[B or 1, R, ...] (the statistic's, one per region); content guide [h, w].
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import tensorflow as tf

from neural_style.losses.weighted import (
    MIN_MASS,
    flat_positions,
    region_fractions,
    weights_and_mass,
)

if TYPE_CHECKING:
    from neural_style.losses.style import StyleStatistic


def style_loss_per_image(
    statistic: StyleStatistic,
    features: tf.Tensor,
    guides: tf.Tensor,
    targets: tf.Tensor,
    step: tf.Tensor,
) -> tf.Tensor:
    """sum_r (m_r / M) · (region r's style loss) of each image: [B]."""
    fractions = region_fractions(guides)
    weights, mass = weights_and_mass(features, guides)
    flat = flat_positions(features)
    each = statistic.region_losses(flat, weights, tf.maximum(mass, MIN_MASS), targets, step)
    return tf.reduce_sum(each * fractions[None, :], axis=1)


def content_loss_per_image(features: tf.Tensor, target: tf.Tensor, guide: tf.Tensor) -> tf.Tensor:
    """sum_p w_p (F - P)² / (2·M·N) of each image: [B], for a guide [h, w]."""
    shape = tf.shape(features)
    size = tf.cast(shape[1] * shape[2] * shape[3], features.dtype)
    weighted = tf.cast(guide, features.dtype)[None, :, :, None] * tf.square(features - target)
    return tf.reduce_sum(weighted, axis=[1, 2, 3]) / (2.0 * size)
