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

STYLE_LOSS "w2" is exact the same way: its mean and covariance come from the sums of x and
of xxᵀ over the positions, so pass 1 sums both (packed [c + 1, c] like its targets), and
pass 2 carries the gradient of the loss with respect to those sums, which is again linear
in each core's share.

This costs a forward pass more than a plain step, plus the margins' work (see
`TileLayout.overhead`). Shapes: images [1, H, W, 3] float32 in 0..255, as LossFunction.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from neural_style import wasserstein
from neural_style.losses import LossWeights, Targets, total_variation_loss
from neural_style.tile_layout import Tile, TileLayout, layer_stride
from neural_style.vgg import VGG19


def _core(features: tf.Tensor, box: tf.Tensor, stride: int) -> tf.Tensor:
    """The core's positions of a crop's features at a layer of `stride`."""
    return features[:, box[0] // stride : box[1] // stride, box[2] // stride : box[3] // stride, :]


def _crop(array, box: tuple[int, int, int, int]):
    return array[:, box[0] : box[1], box[2] : box[3], :]


def _feature_box(tile: Tile, stride: int) -> tuple[int, int, int, int]:
    """The tile core's positions at a layer of `stride`, in the whole image's features."""
    return tuple(edge // stride for edge in tile.core)


def _feature_positions(size: tuple[int, int], stride: int) -> int:
    """Positions of the whole image's features at a layer of `stride` (VALID pools)."""
    return (size[0] // stride) * (size[1] // stride)


@tf.custom_gradient
def _style_gradient_carrier(features: tf.Tensor, coefficients: tf.Tensor):
    """Zero, with the gradient of sum(K ∘ FᵀF) for symmetric K = `coefficients`: 2·F·K.

    Only the gradient is wanted (the loss's value comes from pass 1), so no FᵀF is formed.
    """
    flat = tf.reshape(features, [-1, tf.shape(features)[3]])

    def gradient(upstream):
        product = 2.0 * upstream * tf.matmul(flat, coefficients)
        return tf.reshape(product, tf.shape(features)), None

    return tf.constant(0.0), gradient


@tf.custom_gradient
def _w2_gradient_carrier(features: tf.Tensor, coefficients: tf.Tensor):
    """Zero, with the gradient of k·Σx + sum(K ∘ FᵀF) for `coefficients` packed as
    [k; K] ([c + 1, c], K symmetric): k + 2·F·K at every position."""
    flat = tf.reshape(features, [-1, tf.shape(features)[3]])

    def gradient(upstream):
        product = upstream * (coefficients[0][None] + 2.0 * tf.matmul(flat, coefficients[1:]))
        return tf.reshape(product, tf.shape(features)), None

    return tf.constant(0.0), gradient


def _w2_layer(sums: tf.Tensor, target: tf.Tensor, positions: int) -> tuple[tf.Tensor, tf.Tensor]:
    """A w2 layer's loss from its packed sums [Σx; Σxxᵀ] ([c + 1, c]), and the loss's
    gradient with respect to them, packed alike with its K part made symmetric."""
    with tf.GradientTape() as tape:
        tape.watch(sums)
        mean = sums[0] / positions
        covariance = sums[1:] / positions - mean[:, None] * mean[None, :]
        value = wasserstein.loss_of_moments(mean[None], covariance[None], target[None])[0]
    gradient = tape.gradient(value, sums)
    square = gradient[1:]
    return value, tf.concat([gradient[:1], 0.5 * (square + tf.transpose(square))], 0)


class TiledLossFunction:
    """LossFunction's `value_and_gradient`, computed over the tiles of `layout`.

    `targets.content` holds the whole content image's features, e.g. from `tiled_features`.
    Each tile is its own tf.function call, so the gradient is assembled outside TensorFlow's
    graph: `traceable` is False and the optimiser applies it in a call of its own.
    """

    traceable = False

    def __init__(self, net: VGG19, targets: Targets, weights: LossWeights, layout: TileLayout):
        self.net = net
        self.weights = weights
        self.layout = layout
        self.w2 = weights.style_loss == "w2"
        self.content_layers = [name for name, _ in weights.content_layers]
        self.style_layers = [name for name, _ in weights.style_layers]
        self.layers = sorted(set(self.content_layers + self.style_layers))
        self.strides = {name: layer_stride(name) for name in self.layers}
        content = {name: np.asarray(targets.content[name]) for name in self.content_layers}
        self.channels = {name: content[name].shape[3] for name in self.content_layers}
        self.style_grams = {name: targets.style_grams[name][0] for name in self.style_layers}
        # What each step hands every tile, cut once: its core's box in the crop, and the
        # content targets at its core's positions.
        self._tile_inputs = [
            (tf.constant(tile.core_in_crop()), self._content_slices(tile, content))
            for tile in layout.tiles
        ]
        image_signature = tf.TensorSpec([1, None, None, 3], tf.float32)
        box_signature = tf.TensorSpec([4], tf.int32)
        content_signature = {
            name: tf.TensorSpec([1, None, None, self.channels[name]], tf.float32)
            for name in self.content_layers
        }
        coefficient_signature = {
            name: tf.TensorSpec(self.style_grams[name].shape, tf.float32)
            for name in self.style_layers
        }
        self._statistics = tf.function(
            self._tile_statistics,
            input_signature=[image_signature, box_signature, content_signature],
            autograph=False,
        )
        self._gradient = tf.function(
            self._tile_gradient,
            input_signature=[
                image_signature,
                box_signature,
                content_signature,
                coefficient_signature,
            ],
            autograph=False,
        )
        self._tv = tf.function(
            self._tv_value_and_gradient, input_signature=[image_signature], autograph=False
        )

    # --- one tile ---

    def _core_features(self, crop: tf.Tensor, box: tf.Tensor) -> dict[str, tf.Tensor]:
        features = self.net(crop, self.layers)
        return {name: _core(features[name], box, self.strides[name]) for name in self.layers}

    def _tile_statistics(self, crop, box, content):
        """Pass 1: the core's sum of FᵀF per style layer and of (F - P)² per content layer."""
        core = self._core_features(crop, box)
        gram_sums = {}
        for name in self.style_layers:
            flat = tf.reshape(core[name], [-1, tf.shape(core[name])[3]])
            gram_sums[name] = tf.matmul(flat, flat, transpose_a=True)
            if self.w2:
                sums = tf.reduce_sum(flat, axis=0, keepdims=True)
                gram_sums[name] = tf.concat([sums, gram_sums[name]], 0)
        squared_errors = {
            name: tf.reduce_sum(tf.square(core[name] - content[name]))
            for name in self.content_layers
        }
        return gram_sums, squared_errors

    def _tile_gradient(self, crop, box, content, coefficients):
        """Pass 2: the gradient, with respect to the crop, of its core's share of the loss."""
        with tf.GradientTape() as tape:
            tape.watch(crop)
            core = self._core_features(crop, box)
            share = tf.constant(0.0)
            for name, weight in self.weights.content_layers:
                scale = self.weights.alpha * weight / len(self.weights.content_layers)
                squared = tf.reduce_sum(tf.square(core[name] - content[name]))
                share += scale * squared / self._content_normaliser(name)
            carrier = _w2_gradient_carrier if self.w2 else _style_gradient_carrier
            for name in self.style_layers:
                share += carrier(core[name], coefficients[name])
        return tape.gradient(share, crop)

    def _tv_value_and_gradient(self, images):
        with tf.GradientTape() as tape:
            tape.watch(images)
            tv = total_variation_loss(images)
        return tv, tape.gradient(tv, images)

    # --- the whole image ---

    def _positions(self, name: str) -> int:
        return _feature_positions(self.layout.size, self.strides[name])

    def _content_normaliser(self, name: str) -> float:
        """2·M·N of losses.content_loss, for the whole image's features at `name`."""
        return 2.0 * self._positions(name) * self.channels[name]

    def _content_slices(self, tile: Tile, content: dict) -> dict[str, tf.Tensor]:
        return {
            name: tf.constant(_crop(content[name], _feature_box(tile, self.strides[name])))
            for name in self.content_layers
        }

    def _gram_style(self, gram_sums: dict) -> tuple[tf.Tensor, dict]:
        """The style loss from the summed FᵀF, and each layer's K for pass 2."""
        w = self.weights
        style, coefficients = 0.0, {}
        for name, weight in w.style_layers:
            channels = float(self.style_grams[name].shape[0])
            positions = self._positions(name)
            difference = gram_sums[name] / positions - self.style_grams[name]
            style += weight * tf.reduce_sum(tf.square(difference)) / (4.0 * channels**2)
            # d(total)/dG · dG/d(FᵀF): the K of sum(K ∘ FᵀF) whose gradient is the style's.
            scale = w.beta * weight / len(w.style_layers) / (2.0 * channels**2 * positions)
            coefficients[name] = scale * difference
        return style / len(w.style_layers), coefficients

    def _w2_style(self, sums: dict) -> tuple[tf.Tensor, dict]:
        """The w2 style loss from the packed sums, and each layer's [k; K] for pass 2."""
        w = self.weights
        style, coefficients = 0.0, {}
        for name, weight in w.style_layers:
            value, gradient = _w2_layer(sums[name], self.style_grams[name], self._positions(name))
            style += weight * value
            coefficients[name] = w.beta * weight / len(w.style_layers) * gradient
        return style / len(w.style_layers), coefficients

    def value_and_gradient(self, images) -> tuple[dict[str, tf.Tensor], tf.Tensor]:
        """The named loss parts (content, style, tv, total) at `images` [1, H, W, 3], and
        the gradient of the total with respect to them."""
        images = tf.convert_to_tensor(images, tf.float32)
        w = self.weights
        crops = [_crop(images, tile.crop) for tile in self.layout.tiles]
        gram_sums = {name: 0.0 for name in self.style_layers}
        squared_errors = {name: 0.0 for name in self.content_layers}
        for crop, (box, content_slices) in zip(crops, self._tile_inputs, strict=True):
            grams, squares = self._statistics(crop, box, content_slices)
            for name in self.style_layers:
                gram_sums[name] += grams[name]
            for name in self.content_layers:
                squared_errors[name] += squares[name]
        content = sum(
            weight * squared_errors[name] / self._content_normaliser(name)
            for name, weight in w.content_layers
        ) / len(w.content_layers)
        if self.w2:
            style, coefficients = self._w2_style(gram_sums)
        else:
            style, coefficients = self._gram_style(gram_sums)
        tv, tv_gradient = self._tv(images)
        gradient = (w.tv_weight * tv_gradient).numpy()
        tiles = zip(self.layout.tiles, crops, self._tile_inputs, strict=True)
        for tile, crop, (box, content_slices) in tiles:
            crop_gradient = self._gradient(crop, box, content_slices, coefficients)
            top, bottom, left, right = tile.crop
            gradient[:, top:bottom, left:right, :] += crop_gradient.numpy()
        total = w.alpha * content + w.beta * style + w.tv_weight * tv
        parts = {"content": content, "style": style, "tv": tv, "total": total}
        return {name: tf.convert_to_tensor(value, tf.float32) for name, value in parts.items()}, (
            tf.convert_to_tensor(gradient)
        )


# --- targets of images too large for one pass ----------------------------------------------


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
        return {name: _core(features[name], box, strides[name]) for name in layers}

    for tile in layout.tiles:
        crop = _crop(image[None], tile.crop)
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
            top, bottom, left, right = _feature_box(tile, stride)
            assembled[name][:, top:bottom, left:right, :] = core.numpy()
    return assembled


def tiled_gram_matrices(
    net: VGG19, image: np.ndarray, layout: TileLayout, layers: list[str]
) -> dict[str, tf.Tensor]:
    """The whole image's Gram matrices at `layers`, {layer: [1, c, c]}, summed over tiles."""
    sums: dict[str, tf.Tensor] = {}
    for _, cores in _forward_cores(net, image, layout, layers):
        for name, core in cores.items():
            flat = tf.reshape(core, [-1, core.shape[3]])
            sums[name] = sums.get(name, 0.0) + tf.matmul(flat, flat, transpose_a=True)
    return {
        name: (total / _feature_positions(layout.size, layer_stride(name)))[None]
        for name, total in sums.items()
    }


def tiled_moments(
    net: VGG19, image: np.ndarray, layout: TileLayout, layers: list[str]
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The whole image's feature mean [c] and covariance [c, c] at `layers`, from float64
    sums of x and xxᵀ over the tiles' cores."""
    sums: dict[str, list] = {}
    for _, cores in _forward_cores(net, image, layout, layers):
        for name, core in cores.items():
            flat = np.asarray(core, np.float64).reshape(-1, core.shape[3])
            first, second = sums.setdefault(name, [0.0, 0.0])
            sums[name] = [first + flat.sum(axis=0), second + flat.T @ flat]
    moments = {}
    for name, (first, second) in sums.items():
        positions = _feature_positions(layout.size, layer_stride(name))
        mean = first / positions
        moments[name] = (mean, second / positions - np.outer(mean, mean))
    return moments
