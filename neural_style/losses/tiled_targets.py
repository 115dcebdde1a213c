"""The targets of images too large for one pass, computed tile by tile and exactly the
whole image's (see optimize/tiling.py for why a tile's core features are the whole image's): the
content features, and the style image's statistic (the STYLE_LOSS's, summed over the
tiles' cores), guided by a mask's region (STYLE_IMAGE_MASKS) when one is given.

Shapes: images [H, W, 3] float32 in 0..255; a guide {layer: [1, h, w]} over the whole
image's features at that layer (masks.layer_guides of one mask).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import tensorflow as tf

from neural_style.losses.weighted import MIN_MASS
from neural_style.vgg.network import VGG19

if TYPE_CHECKING:
    from neural_style.losses.style import StyleStatistic
from neural_style.vgg.tile_layout import (
    TileLayout,
    core_of,
    crop_of,
    feature_positions,
    layer_stride,
)


def _forward_cores(net: VGG19, image: np.ndarray, layout: TileLayout, layers: list[str]):
    """(tile, {layer: the core's float32 features}) for each tile of `image` [H, W, 3]."""
    strides = {name: layer_stride(name) for name in layers}

    @tf.function(
        input_signature=[
            tf.TensorSpec([1, None, None, 3], tf.float32),
            tf.TensorSpec([4], tf.int32),
        ],
        autograph=False,
    )
    def cores(crop, box):
        features = net(crop, layers)
        return {name: core_of(features[name], box, strides[name]) for name in layers}

    for tile in layout.tiles:
        crop = crop_of(image[None], tile.crop)
        yield tile, cores(tf.constant(crop, tf.float32), tf.constant(tile.core_in_crop()))


def tiled_features(
    net: VGG19, image: np.ndarray, layout: TileLayout, layers: list[str]
) -> dict[str, np.ndarray]:
    """The whole image's features at `layers`, {layer: [1, h, w, c]}, assembled from tiles."""
    assembled = {}
    for tile, cores in _forward_cores(net, image, layout, layers):
        for name, core in cores.items():
            stride = layer_stride(name)
            if name not in assembled:
                h, w = layout.size[0] // stride, layout.size[1] // stride
                assembled[name] = np.zeros((1, h, w, core.shape[3]), np.float32)
            top, bottom, left, right = tile.feature_box(stride)
            assembled[name][:, top:bottom, left:right, :] = core.numpy()
    return assembled


def _weighted_cores(net, image, layout, layers, guide):
    """(name, the core's features [M, c], their weights [M, 1] or None) of every tile."""
    for tile, cores in _forward_cores(net, image, layout, layers):
        for name, core in cores.items():
            flat = tf.reshape(core, [-1, core.shape[3]])
            if guide is None:
                yield name, flat, None
                continue
            box = tile.feature_box(layer_stride(name))
            weights = np.asarray(guide[name])[0, box[0] : box[1], box[2] : box[3]]
            yield name, flat, tf.constant(weights.reshape(-1, 1), tf.float32)


def _mass(layout: TileLayout, name: str, guide) -> float:
    if guide is None:
        return float(feature_positions(layout.size, layer_stride(name)))
    return max(float(np.sum(guide[name], dtype=np.float64)), MIN_MASS)


def tiled_measures(
    statistic: StyleStatistic,
    net: VGG19,
    image: np.ndarray,
    layout: TileLayout,
    layers: list[str],
    guide: dict | None = None,
) -> dict:
    """The whole image's statistic at `layers`, {layer: ...}, from the sums of the tiles'
    cores; of the region of `guide` (see weighted.py) when one is given."""
    sums: dict = {}
    for name, flat, weights in _weighted_cores(net, image, layout, layers, guide):
        sums[name] = sums.get(name, 0.0) + statistic.partial_sums(flat, weights)
    return {
        name: statistic.from_sums(total, _mass(layout, name, guide)) for name, total in sums.items()
    }
