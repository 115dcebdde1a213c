"""What a run pulls its image towards, computed once per stage before optimising: the
photo's features at the content layers, and the style targets at the style layers (the
STYLE_LOSS's statistic, style/), blended over the style images or one per region
(STYLE_MASKS), over the whole image or in tiles.

Shapes: content targets [1, h, w, c]; style targets [1, ...] (Grams [1, c, c]); with
regions [1, R, ...].
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from neural_style.losses import masks
from neural_style.losses.gatys import LossWeights
from neural_style.losses.style import StyleStatistic, style_statistic
from neural_style.losses.tiled_targets import tiled_features, tiled_measures
from neural_style.vgg.network import VGG19
from neural_style.vgg.tile_layout import TileLayout, grid_for_core, tile_layout, tile_margin


def content_targets(
    net: VGG19, content_image: np.ndarray, weights: LossWeights, *, layout: TileLayout | None = None
) -> dict:
    """The content image's features at the content layers: layer -> [1, h, w, c]; computed
    over the tiles of `layout` when one is given (for images too large for one pass)."""
    layers = [name for name, _ in weights.content_layers]
    if layout is not None:
        return tiled_features(net, content_image, layout, layers)
    features = net.features(content_image[None], layers)
    return {name: tf.constant(features[name]) for name in layers}


def _style_tiles(image: np.ndarray, layers: list[str], tile_side: int):
    """The tiles a style image is run in, with `tile_side` set and the image larger than
    one tile; else None (run whole)."""
    if not tile_side:
        return None
    grid = grid_for_core(image.shape[:2], tile_side)
    if grid == (1, 1):
        return None
    return tile_layout(image.shape[:2], grid, tile_margin(layers))


def _image_guide(mask, image: np.ndarray, layers: list[str]) -> dict | None:
    """The guide of STYLE_IMAGE_MASKS's `mask` over `image`: {layer: [1, h, w]}, or None
    for the whole image."""
    if mask is None:
        return None
    return masks.layer_guides([mask], image.shape[:2], layers)


def style_targets(
    net: VGG19,
    style_images: Sequence[np.ndarray],
    blend_weights: Sequence[float],
    weights: LossWeights,
    *,
    tile_side: int = 0,
    image_masks: Sequence[np.ndarray | None] = (),
    regions: bool = False,
) -> dict:
    """The target of the blend of the style images at the style layers, as STYLE_LOSS
    measures and blends them: layer -> [1, ...] (Gram matrices: [1, c, c]).

    Blend weights are normalised to sum to 1; a style with weight 0 is not even computed.
    With `tile_side`, a style image larger than that is run in tiles of about that size.
    `image_masks` (STYLE_IMAGE_MASKS) restricts each style to a region of its image
    (None: all of it). With `regions` (STYLE_MASKS) the styles are not blended: each is
    its own target, stacked in order as [1, R, ...] (see guided.py).
    """
    statistic = style_statistic(weights.style_loss)
    layers = [name for name, _ in weights.style_layers]
    guides = [
        _image_guide(mask, image, layers)
        for image, mask in itertools.zip_longest(style_images, image_masks)
    ]
    if regions:
        each = [
            _blended(statistic, net, [image], np.ones(1), [guide], layers, tile_side)
            for image, guide in zip(style_images, guides, strict=True)
        ]
        return {name: tf.stack([target[name][0] for target in each])[None] for name in layers}
    blend = np.asarray(blend_weights, np.float64)
    blend = blend / blend.sum()
    return _blended(statistic, net, style_images, blend, guides, layers, tile_side)


def _blended(
    statistic: StyleStatistic,
    net: VGG19,
    style_images: Sequence[np.ndarray],
    blend: np.ndarray,
    guides: list,
    layers: list[str],
    tile_side: int,
) -> dict:
    """The target of the styles blended by `blend` (summing to 1)."""
    chosen = [
        (image, float(share), guide)
        for image, share, guide in zip(style_images, blend, guides, strict=True)
        if share != 0
    ]
    each = [_measure(statistic, net, image, layers, tile_side, guide) for image, _, guide in chosen]
    shares = [share for _, share, _ in chosen]
    return {
        name: statistic.target([measured[name] for measured in each], shares) for name in layers
    }


def _measure(
    statistic: StyleStatistic,
    net: VGG19,
    image: np.ndarray,
    layers: list[str],
    tile_side: int,
    guide: dict | None,
) -> dict:
    """{layer: the statistic} of one style image, of the region `guide` marks if given; in
    tiles of about `tile_side` pixels if it is set and the image is larger."""
    layout = _style_tiles(image, layers, tile_side)
    if layout is not None:
        return tiled_measures(statistic, net, image, layout, layers, guide)
    features = net.features(image[None], layers)
    return {
        name: statistic.measure(features[name], None if guide is None else guide[name])
        for name in layers
    }
