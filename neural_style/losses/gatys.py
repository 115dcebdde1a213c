"""The losses of Gatys et al., "A Neural Algorithm of Artistic Style", and their weighted sum.

Shapes: features are [B, h, w, c]; images are [B, H, W, 3]. With M = h*w positions and
N = c channels:
- content_loss = sum((F - P)²) / (2·M·N);
- the style loss at a layer is STYLE_LOSS's (style/): Gram matrices as the paper has it
  (style/gram.py), or a Gaussian fit (w2) or the whole distribution (sw) of the features;
- total_variation_loss = mean squared difference of vertical neighbours + that of
  horizontal neighbours.
With masks (STYLE_MASKS, CONTENT_MASK) the layers' losses are guided.py's instead.

Each loss is first taken per image (`*_per_image`, [B]) so that images of a batch never
mix: `objective_per_image` gives every image the loss it would have alone, and the scalar
forms sum them over the batch (total variation: averages them).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import tensorflow as tf

from neural_style.losses import guided
from neural_style.losses.style import StyleStatistic, style_statistic
from neural_style.settings.values import LayerWeights


def content_loss_per_image(features: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
    """sum((F - P)²) / (2·M·N) of each image: [B] for features F and content target P of
    one layer (P is [B, h, w, c], or [1, h, w, c] shared by the batch)."""
    shape = tf.shape(features)
    size = tf.cast(shape[1] * shape[2] * shape[3], features.dtype)
    return tf.reduce_sum(tf.square(features - target), axis=[1, 2, 3]) / (2.0 * size)


def total_variation_per_image(images: tf.Tensor) -> tf.Tensor:
    """Each image's mean squared difference of vertical neighbours plus that of horizontal
    ones: [B]."""
    vertical = images[:, 1:, :, :] - images[:, :-1, :, :]
    horizontal = images[:, :, 1:, :] - images[:, :, :-1, :]
    return tf.reduce_mean(tf.square(vertical), axis=[1, 2, 3]) + tf.reduce_mean(
        tf.square(horizontal), axis=[1, 2, 3]
    )


def content_loss(features: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
    """The content loss summed over the batch (of one image, that image's)."""
    return tf.reduce_sum(content_loss_per_image(features, target))


def total_variation_loss(images: tf.Tensor) -> tf.Tensor:
    """The total-variation loss averaged over the batch (of one image, that image's)."""
    return tf.reduce_mean(total_variation_per_image(images))


class Targets(NamedTuple):
    """What the image is pulled towards, computed once before optimising."""

    content: dict[str, tf.Tensor]  # layer -> the content image's features [1, h, w, c]
    # layer -> the style's target: its Gram matrix [1, c, c], or the STYLE_LOSS's own
    # (style/). With STYLE_MASKS, one per region (style): [1, R, ...] (see guided.py)
    style_grams: dict[str, tf.Tensor]
    # STYLE_MASKS: layer -> the regions' guides [R, h, w]; None = no regions
    style_guides: dict[str, tf.Tensor] | None = None
    # CONTENT_MASK: layer -> the content loss's weights [h, w]; None = 1 everywhere
    content_guides: dict[str, tf.Tensor] | None = None


class LossWeights(NamedTuple):
    content_layers: LayerWeights
    style_layers: LayerWeights
    alpha: float
    beta: float
    tv_weight: float
    style_loss: str = "gram"  # STYLE_LOSS: a name of style.REGISTRY


def _layer_average(per_layer: Mapping[str, tf.Tensor], layers: LayerWeights) -> tf.Tensor:
    """sum_l w_l·loss_l / L: the weighted sum averaged over the layers."""
    return tf.add_n([weight * per_layer[name] for name, weight in layers]) / len(layers)


def _content_layer_loss(features, target, targets: Targets, name: str) -> tf.Tensor:
    if targets.content_guides is None:
        return content_loss_per_image(features, target)
    return guided.content_loss_per_image(features, target, targets.content_guides[name])


def _style_layer_loss(
    features: tf.Tensor,
    target: tf.Tensor,
    targets: Targets,
    name: str,
    statistic: StyleStatistic,
    step: tf.Tensor,
) -> tf.Tensor:
    if targets.style_guides is not None:
        guides = targets.style_guides[name]
        return guided.style_loss_per_image(statistic, features, guides, target, step)
    return statistic.loss(features, target, step)


def objective_per_image(
    features: Mapping[str, tf.Tensor],
    images: tf.Tensor,
    targets: Targets,
    weights: LossWeights,
    step: tf.Tensor | int = 0,
) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
    """Each image's total loss α·content + β·style + tv_weight·tv, and its named parts: all
    [B]. No image's loss depends on another's, so the gradient of their sum gives every
    image the gradient it would have alone.

    `features` must hold every content and style layer, computed from `images`; `step` is
    the step being taken (see style/: only a statistic that varies with it reads it).
    """
    statistic = style_statistic(weights.style_loss)
    step = tf.convert_to_tensor(step, tf.int64)
    content = _layer_average(
        {
            name: _content_layer_loss(features[name], target, targets, name)
            for name, target in targets.content.items()
        },
        weights.content_layers,
    )
    style = _layer_average(
        {
            name: _style_layer_loss(features[name], target, targets, name, statistic, step)
            for name, target in targets.style_grams.items()
        },
        weights.style_layers,
    )
    tv = total_variation_per_image(images)
    total = weights.alpha * content + weights.beta * style + weights.tv_weight * tv
    return total, {"content": content, "style": style, "tv": tv, "total": total}
