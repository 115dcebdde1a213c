"""The loss and its gradient for images too large for one step, computed tile by tile.

The result is the same as one step over the whole image (to float rounding), so tiles leave
no seams. The losses are sums over feature positions, and each position's feature depends
only on the pixels within VGG-19's receptive field of it, so:

- the image is cut into tile *cores* on a grid aligned to 16 pixels (the stride of the
  fourth pool, so every layer's positions split cleanly), and each core is run through the
  network inside a *crop* that adds a margin of the receptive field's radius on every side
  (clipped at the image's edges): the core's features are then exactly the whole image's;
- pass 1 runs every crop forward and sums, over the core positions only, each style
  layer's FᵀF and each content layer's squared error: the whole image's Gram matrices G
  and content losses, hence every loss value;
- pass 2 takes each crop's gradient of the core positions' share of the loss. The style
  loss couples all positions only through G, so with G from pass 1 held fixed the share is
  linear in FᵀF over the core; the gradients of the crops are added at their places.

What is summed and carried is the STYLE_LOSS's (losses/style/: `tile_sums`,
`loss_of_sums`, `carrier`): any statistic that is a sum over positions is exact this way
(Gram matrices; w2's sums of x and xxᵀ), and a run whose loss is not (sw) is refused tiles
by its plan. Masks (STYLE_MASKS, CONTENT_MASK; see losses/guided.py) keep this exact: a
region's statistic is a weighted sum over positions, so pass 1 sums it per region with
each core's slice of the guide, and the guide weighs each position's share in pass 2. The
targets of images too large for one pass are losses/tiled_targets.py's.

This costs a forward pass more than a plain step, plus the margins' work (see
`TileLayout.overhead`). Shapes: images [1, H, W, 3] float32 in 0..255, as LossFunction.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from neural_style.losses.gatys import LossWeights, Targets, total_variation_loss
from neural_style.losses.style import LayerShares, style_statistic
from neural_style.losses.weighted import MIN_MASS
from neural_style.vgg.network import VGG19
from neural_style.vgg.tile_layout import (
    Tile,
    TileLayout,
    core_of,
    crop_of,
    feature_positions,
    layer_stride,
)


def _guide_slices(guides: dict, tile: Tile, strides: dict) -> dict[str, tf.Tensor]:
    """Each guide's values at the tile core's positions: {key: [..., h, w]}."""
    slices = {}
    for key, guide in guides.items():
        top, bottom, left, right = tile.feature_box(strides[key.split("/")[1]])
        slices[key] = tf.constant(guide[..., top:bottom, left:right], tf.float32)
    return slices


def _region_shares(guides, name: str, positions: int) -> tuple[np.ndarray, np.ndarray]:
    """A style layer's regions' masses m_r and fractions m_r / M ([R] each); one region of
    mass M without STYLE_MASKS."""
    if guides is None:
        return np.array([positions], np.float32), np.ones(1, np.float32)
    masses = np.sum(guides[name], axis=(1, 2), dtype=np.float64)
    fractions = (masses / positions).astype(np.float32)
    return np.maximum(masses, MIN_MASS).astype(np.float32), fractions


class TiledLossFunction:
    """LossFunction's `value_and_gradient`, computed over the tiles of `layout`.

    `targets.content` holds the whole content image's features, e.g. from
    tiled_targets.tiled_features. Each tile is its own tf.function call, so the gradient is
    assembled outside TensorFlow's graph: `traceable` is False and the optimiser applies it
    in a call of its own. With masks (losses/guided.py) the sums of pass 1 are weighted by each
    region's guide, and the carriers of pass 2 alike.
    """

    traceable = False

    def __init__(self, net: VGG19, targets: Targets, weights: LossWeights, layout: TileLayout):
        self.net = net
        self.weights = weights
        self.layout = layout
        self.statistic = style_statistic(weights.style_loss)
        self.regions = targets.style_guides is not None
        self.content_layers = [name for name, _ in weights.content_layers]
        self.style_layers = [name for name, _ in weights.style_layers]
        self.layers = sorted(set(self.content_layers + self.style_layers))
        self.strides = {name: layer_stride(name) for name in self.layers}
        content = {name: np.asarray(targets.content[name]) for name in self.content_layers}
        self.channels = {name: content[name].shape[3] for name in self.content_layers}
        # Every style layer's targets [R, c, c] or [R, c + 1, c], R = 1 without regions.
        self.style_targets = {
            name: targets.style_grams[name][0] if self.regions else targets.style_grams[name]
            for name in self.style_layers
        }
        style_guides = (
            {name: np.asarray(g) for name, g in targets.style_guides.items()}
            if self.regions
            else None
        )
        self.shares = {
            name: _region_shares(style_guides, name, self._positions(name))
            for name in self.style_layers
        }
        guides = self._guides(style_guides, targets.content_guides)
        # What each step hands every tile, cut once: its core's box in the crop, and the
        # content targets and guides at its core's positions.
        self._tile_inputs = [
            (
                tf.constant(tile.core_in_crop()),
                self._content_slices(tile, content),
                _guide_slices(guides, tile, self.strides),
            )
            for tile in layout.tiles
        ]
        self._trace(guides)

    def _guides(self, style_guides, content_guides) -> dict[str, np.ndarray]:
        """The whole image's guides by key: "style/<layer>" [R, h, w], "content/<layer>"
        [h, w]; empty without masks."""
        guides = {f"style/{name}": g for name, g in (style_guides or {}).items()}
        for name, guide in (content_guides or {}).items():
            guides[f"content/{name}"] = np.asarray(guide)
        return guides

    def _trace(self, guides: dict) -> None:
        image_signature = tf.TensorSpec([1, None, None, 3], tf.float32)
        box_signature = tf.TensorSpec([4], tf.int32)
        content_signature = {
            name: tf.TensorSpec([1, None, None, self.channels[name]], tf.float32)
            for name in self.content_layers
        }
        guide_signature = {
            key: tf.TensorSpec([*guide.shape[:-2], None, None], tf.float32)
            for key, guide in guides.items()
        }
        coefficient_signature = {
            name: tf.TensorSpec(self._coefficient_shape(name), tf.float32)
            for name in self.style_layers
        }
        inputs = [image_signature, box_signature, content_signature, guide_signature]
        self._statistics = tf.function(
            self._tile_statistics, input_signature=inputs, autograph=False
        )
        self._gradient = tf.function(
            self._tile_gradient, input_signature=[*inputs, coefficient_signature], autograph=False
        )
        self._tv = tf.function(
            self._tv_value_and_gradient, input_signature=[image_signature], autograph=False
        )

    def _coefficient_shape(self, name: str) -> tuple[int, ...]:
        return self.statistic.coefficient_shape(self.style_targets[name].shape, self.regions)

    # --- one tile ---

    def _core_features(self, crop: tf.Tensor, box: tf.Tensor) -> dict[str, tf.Tensor]:
        features = self.net(crop, self.layers)
        return {name: core_of(features[name], box, self.strides[name]) for name in self.layers}

    def _squared_error(self, core, content, guides, name) -> tf.Tensor:
        squared = tf.square(core[name] - content[name])
        guide = guides.get(f"content/{name}")
        if guide is not None:
            squared *= guide[None, :, :, None]
        return tf.reduce_sum(squared)

    def _tile_statistics(self, crop, box, content, guides):
        """Pass 1: the core's sums per style layer and region (the statistic's tile_sums,
        [R, ...]) and of w·(F - P)² per content layer."""
        core = self._core_features(crop, box)
        sums = {}
        for name in self.style_layers:
            flat = tf.reshape(core[name], [-1, tf.shape(core[name])[3]])
            guide = guides.get(f"style/{name}")
            weights = None if guide is None else tf.reshape(guide, [tf.shape(guide)[0], -1, 1])
            sums[name] = self.statistic.tile_sums(flat, weights)
        squared_errors = {
            name: self._squared_error(core, content, guides, name) for name in self.content_layers
        }
        return sums, squared_errors

    def _tile_gradient(self, crop, box, content, guides, coefficients):
        """Pass 2: the gradient, with respect to the crop, of its core's share of the loss."""
        with tf.GradientTape() as tape:
            tape.watch(crop)
            core = self._core_features(crop, box)
            share = tf.constant(0.0)
            for name, weight in self.weights.content_layers:
                scale = self.weights.alpha * weight / len(self.weights.content_layers)
                squared = self._squared_error(core, content, guides, name)
                share += scale * squared / self._content_normaliser(name)
            for name in self.style_layers:
                guide = guides[f"style/{name}"] if self.regions else None
                share += self.statistic.carrier(core[name], guide, coefficients[name])
        return tape.gradient(share, crop)

    def _tv_value_and_gradient(self, images):
        with tf.GradientTape() as tape:
            tape.watch(images)
            tv = total_variation_loss(images)
        return tv, tape.gradient(tv, images)

    # --- the whole image ---

    def _positions(self, name: str) -> int:
        return feature_positions(self.layout.size, self.strides[name])

    def _content_normaliser(self, name: str) -> float:
        """2·M·N of losses.content_loss, for the whole image's features at `name`."""
        return 2.0 * self._positions(name) * self.channels[name]

    def _content_slices(self, tile: Tile, content: dict) -> dict[str, tf.Tensor]:
        return {
            name: tf.constant(crop_of(content[name], tile.feature_box(self.strides[name])))
            for name in self.content_layers
        }

    def _style(self, sums: dict) -> tuple[tf.Tensor, dict]:
        """The style loss from the whole image's sums, and each layer's coefficients for
        pass 2."""
        w = self.weights
        style, coefficients = 0.0, {}
        for name, weight in w.style_layers:
            masses, fractions = self.shares[name]
            shares = LayerShares(
                masses,
                fractions,
                self._positions(name),
                self.regions,
                weight,
                w.beta * weight / len(w.style_layers),
            )
            value, coefficients[name] = self.statistic.loss_of_sums(
                sums[name], self.style_targets[name], shares
            )
            style += value
        return style / len(w.style_layers), coefficients

    def value_and_gradient(
        self, images: tf.Tensor, step: tf.Tensor | int = 0
    ) -> tuple[dict[str, tf.Tensor], tf.Tensor]:
        """The named loss parts (content, style, tv, total) at `images` [1, H, W, 3], and
        the gradient of the total with respect to them. `step` is not read: a loss in tiles
        is a tileable statistic's, which does not vary with the step."""
        del step
        images = tf.convert_to_tensor(images, tf.float32)
        w = self.weights
        crops = [crop_of(images, tile.crop) for tile in self.layout.tiles]
        sums = {name: 0.0 for name in self.style_layers}
        squared_errors = {name: 0.0 for name in self.content_layers}
        for crop, tile_inputs in zip(crops, self._tile_inputs, strict=True):
            tile_sums, squares = self._statistics(crop, *tile_inputs)
            for name in self.style_layers:
                sums[name] += tile_sums[name]
            for name in self.content_layers:
                squared_errors[name] += squares[name]
        content = sum(
            weight * squared_errors[name] / self._content_normaliser(name)
            for name, weight in w.content_layers
        ) / len(w.content_layers)
        style, coefficients = self._style(sums)
        tv, tv_gradient = self._tv(images)
        gradient = (w.tv_weight * tv_gradient).numpy()
        tiles = zip(self.layout.tiles, crops, self._tile_inputs, strict=True)
        for tile, crop, tile_inputs in tiles:
            crop_gradient = self._gradient(crop, *tile_inputs, coefficients)
            top, bottom, left, right = tile.crop
            gradient[:, top:bottom, left:right, :] += crop_gradient.numpy()
        total = w.alpha * content + w.beta * style + w.tv_weight * tv
        parts = {"content": content, "style": style, "tv": tv, "total": total}
        return {name: tf.convert_to_tensor(value, tf.float32) for name, value in parts.items()}, (
            tf.convert_to_tensor(gradient)
        )
