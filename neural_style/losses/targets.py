"""What a run pulls its image towards, computed once per stage before optimising: the
photo's features at the content layers, and the style statistics at the style layers
(Gram matrices, or for STYLE_LOSS "w2" the packed mean and covariance root), blended
over the style images or one per region (STYLE_MASKS), over the whole image or in tiles.

Shapes: content targets [1, h, w, c]; Grams [1, c, c]; w2 targets [1, c + 1, c]; with
regions [1, R, c, c] or [1, R, c + 1, c].
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from neural_style.losses import guided, masks, wasserstein
from neural_style.losses.gatys import LossWeights, gram_matrix
from neural_style.losses.tiled_targets import tiled_features, tiled_gram_matrices, tiled_moments
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


def _gram_matrices(
    net: VGG19, image: np.ndarray, layers: list[str], tile_side: int, guide=None
) -> dict:
    """{layer: [1, c, c]} of one image, guided Grams of the region `guide` marks if given;
    in tiles of about `tile_side` pixels if it is set."""
    layout = _style_tiles(image, layers, tile_side)
    if layout is not None:
        return tiled_gram_matrices(net, image, layout, layers, guide)
    features = net.features(image[None], layers)
    if guide is None:
        return {name: gram_matrix(features[name]) for name in layers}
    return {name: guided.guided_grams(features[name], guide[name])[:, 0] for name in layers}


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
    """The blend of the style images' Gram matrices at the style layers: layer -> [1, c, c];
    for STYLE_LOSS "w2", the packed mean and covariance root of their blend (see
    wasserstein.blended_target): layer -> [1, c + 1, c].

    Blend weights are normalised to sum to 1; a style with weight 0 is not even computed.
    With `tile_side`, a style image larger than that is run in tiles of about that size.
    `image_masks` (STYLE_IMAGE_MASKS) restricts each style to a region of its image
    (None: all of it). With `regions` (STYLE_MASKS) the styles are not blended: each is
    its own target, stacked in order as [1, R, c, c] or [1, R, c + 1, c] (see guided.py).
    """
    layers = [name for name, _ in weights.style_layers]
    guides = [
        _image_guide(mask, image, layers)
        for image, mask in itertools.zip_longest(style_images, image_masks)
    ]
    if regions:
        each = [
            _blended(net, [image], np.ones(1), [guide], weights.style_loss, layers, tile_side)
            for image, guide in zip(style_images, guides, strict=True)
        ]
        return {name: tf.stack([target[name][0] for target in each])[None] for name in layers}
    blend = np.asarray(blend_weights, np.float64)
    blend = blend / blend.sum()
    return _blended(net, style_images, blend, guides, weights.style_loss, layers, tile_side)


def _blended(
    net: VGG19,
    style_images: Sequence[np.ndarray],
    blend: np.ndarray,
    guides: list,
    style_loss: str,
    layers: list[str],
    tile_side: int,
) -> dict:
    """The target of the styles blended by `blend` (summing to 1): Grams or packed w2."""
    chosen = [
        (image, float(share), guide)
        for image, share, guide in zip(style_images, blend, guides, strict=True)
        if share != 0
    ]
    if style_loss == "w2":
        each = [_moments(net, image, layers, tile_side, guide) for image, _, guide in chosen]
        shares = [share for _, share, _ in chosen]
        return {
            name: wasserstein.blended_target([moments[name] for moments in each], shares)
            for name in layers
        }
    grams = {name: 0.0 for name in layers}
    for style_image, share, guide in chosen:
        image_grams = _gram_matrices(net, style_image, layers, tile_side, guide)
        for name in layers:
            grams[name] += share * image_grams[name]
    return {name: tf.constant(gram) for name, gram in grams.items()}


def _moments(net: VGG19, image: np.ndarray, layers: list[str], tile_side: int, guide) -> dict:
    """{layer: (mean [c], covariance [c, c])} of one image in float64, of the region
    `guide` marks if given; in tiles of about `tile_side` pixels if it is set."""
    layout = _style_tiles(image, layers, tile_side)
    if layout is not None:
        return tiled_moments(net, image, layout, layers, guide)
    features = net.features(image[None], layers)
    moments = {}
    for name in layers:
        flat = np.asarray(features[name], np.float64).reshape(-1, features[name].shape[3])
        weights = np.ones(len(flat)) if guide is None else np.ravel(guide[name])
        moments[name] = weighted_moments(flat, weights)
    return moments


def weighted_moments(flat: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The mean [c] and covariance [c, c] of the rows of `flat` [M, c], row p weighing
    `weights`[p] (float64)."""
    weights = np.asarray(weights, np.float64)
    mass = max(weights.sum(), guided.MIN_MASS)
    mean = weights @ flat / mass
    centred = flat - mean
    return mean, (centred * weights[:, None]).T @ centred / mass
