"""The losses of Gatys et al., "A Neural Algorithm of Artistic Style", and their weighted sum.

Shapes: features are [B, h, w, c]; Gram matrices are [B, c, c]; images are [B, H, W, 3].
With M = h*w positions and N = c channels:
- gram_matrix(F) = FᵀF / M;
- content_loss = sum((F - P)²) / (2·M·N);
- style_loss = sum((G - A)²) / (4·N²), with G and A Gram matrices as above. This is the
  paper's sum((G - A)²) / (4·N²·M²) for unnormalised Grams, and it stays right when the
  style image has another size than the output, because both Grams are per position;
- total_variation_loss = mean squared difference of vertical neighbours + that of
  horizontal neighbours.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import tensorflow as tf

from neural_style.config import LayerWeights


def gram_matrix(features: tf.Tensor) -> tf.Tensor:
    """[B, h, w, c] features -> [B, c, c] Gram matrices, divided by the h*w positions."""
    shape = tf.shape(features)
    flat = tf.reshape(features, [shape[0], shape[1] * shape[2], shape[3]])
    positions = tf.cast(shape[1] * shape[2], features.dtype)
    return tf.matmul(flat, flat, transpose_a=True) / positions


def content_loss(features: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
    """sum((F - P)²) / (2·M·N) for features F and content target P of one layer."""
    shape = tf.shape(features)
    size = tf.cast(shape[1] * shape[2] * shape[3], features.dtype)
    return tf.reduce_sum(tf.square(features - target)) / (2.0 * size)


def style_loss(features: tf.Tensor, target_gram: tf.Tensor) -> tf.Tensor:
    """sum((G - A)²) / (4·N²) between the features' Gram matrix G and the target A."""
    channels = tf.cast(tf.shape(features)[3], features.dtype)
    difference = gram_matrix(features) - target_gram
    return tf.reduce_sum(tf.square(difference)) / (4.0 * channels * channels)


def total_variation_loss(images: tf.Tensor) -> tf.Tensor:
    """Mean squared difference of vertical neighbours plus that of horizontal ones."""
    vertical = images[:, 1:, :, :] - images[:, :-1, :, :]
    horizontal = images[:, :, 1:, :] - images[:, :, :-1, :]
    return tf.reduce_mean(tf.square(vertical)) + tf.reduce_mean(tf.square(horizontal))


class Targets(NamedTuple):
    """What the image is pulled towards, computed once before optimising."""

    content: dict[str, tf.Tensor]  # layer -> the content image's features [1, h, w, c]
    style_grams: dict[str, tf.Tensor]  # layer -> the style image's Gram matrix [1, c, c]


class LossWeights(NamedTuple):
    content_layers: LayerWeights
    style_layers: LayerWeights
    alpha: float
    beta: float
    tv_weight: float


def _layer_average(per_layer: Mapping[str, tf.Tensor], layers: LayerWeights) -> tf.Tensor:
    """sum_l w_l·loss_l / L: the weighted sum averaged over the layers."""
    return tf.add_n([weight * per_layer[name] for name, weight in layers]) / len(layers)


def objective(
    features: Mapping[str, tf.Tensor], images: tf.Tensor, targets: Targets, weights: LossWeights
) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
    """The total loss α·content + β·style + tv_weight·tv, and its named parts.

    `features` must hold every content and style layer, computed from `images`.
    """
    content = _layer_average(
        {name: content_loss(features[name], targets.content[name]) for name in targets.content},
        weights.content_layers,
    )
    style = _layer_average(
        {name: style_loss(features[name], gram) for name, gram in targets.style_grams.items()},
        weights.style_layers,
    )
    tv = total_variation_loss(images)
    total = weights.alpha * content + weights.beta * style + weights.tv_weight * tv
    return total, {"content": content, "style": style, "tv": tv, "total": total}
