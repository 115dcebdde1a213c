"""VGG-19's convolutional part as a TensorFlow feature extractor, with constant weights
read from the .mat file (mat.py).

Shapes: images and features are [B, H, W, C]; RGB pixels are in 0..255.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np

from neural_style.names import VGG19_LAYERS
from neural_style.vgg.mat import VGGWeights, read_vgg19_mat

if TYPE_CHECKING:
    import tensorflow as tf

# PRECISION -> the dtype of the convs; Grams, losses, the image and Adam stay float32.
COMPUTE_DTYPES = {"float32": "float32", "mixed_bfloat16": "bfloat16", "mixed_float16": "float16"}
# Factor on the gradient inside a float16 network (see _precision_casts).
FLOAT16_LOSS_SCALE = 1024.0


class VGG19:
    """VGG-19's convolutional part with constant weights.

    `net(images, layers)` takes float32 RGB images [B, H, W, 3] in 0..255, subtracts the
    mean pixel itself, and returns {layer name: [B, h, w, c] tensor} for the requested
    layers (`convX_Y` before ReLU, `reluX_Y` after, `poolX`), computing only as deep as
    the deepest one. With `precision` "mixed_bfloat16" or "mixed_float16" the convs run in
    that type and the features come back as float32.
    """

    def __init__(self, weights: VGGWeights, pooling: str = "max", precision: str = "float32"):
        import tensorflow as tf

        if pooling not in ("max", "avg"):
            raise ValueError(f"pooling must be 'max' or 'avg', got {pooling!r}")
        if precision not in COMPUTE_DTYPES:
            raise ValueError(f"precision must be one of {list(COMPUTE_DTYPES)}, got {precision!r}")
        self.pooling = pooling
        self.precision = precision
        self.compute_dtype = tf.as_dtype(COMPUTE_DTYPES[precision])
        self.mean_pixel = np.asarray(weights.mean_pixel, dtype=np.float32)
        self.channels = {name: conv.kernel.shape[3] for name, conv in weights.convs.items()}
        self._kernels = {
            name: tf.cast(tf.constant(conv.kernel), self.compute_dtype)
            for name, conv in weights.convs.items()
        }
        self._biases = {
            name: tf.cast(tf.constant(conv.bias), self.compute_dtype)
            for name, conv in weights.convs.items()
        }
        self._enter, self._leave = _precision_casts(self.compute_dtype)
        self._compiled: dict[tuple[str, ...], object] = {}

    @classmethod
    def from_mat(cls, path: str, pooling: str = "max", precision: str = "float32") -> VGG19:
        return cls(read_vgg19_mat(path), pooling=pooling, precision=precision)

    def __call__(self, images: np.ndarray | tf.Tensor, layers: Iterable[str]) -> dict:
        import tensorflow as tf

        wanted = set(layers)
        unknown = wanted.difference(VGG19_LAYERS)
        if unknown:
            raise ValueError(f"unknown VGG-19 layers: {sorted(unknown)}")
        if not wanted:
            return {}
        deepest = max(VGG19_LAYERS.index(name) for name in wanted)
        pool = tf.nn.max_pool2d if self.pooling == "max" else tf.nn.avg_pool2d
        current, features = self.preprocess(images), {}
        for name in VGG19_LAYERS[: deepest + 1]:
            if name.startswith("conv"):
                current = tf.nn.conv2d(current, self._kernels[name], 1, "SAME")
                current = tf.nn.bias_add(current, self._biases[name])
            elif name.startswith("relu"):
                current = tf.nn.relu(current)
            else:  # MatConvNet pools 2x2, stride 2, no padding
                current = pool(current, ksize=2, strides=2, padding="VALID")
            if name in wanted:
                features[name] = self._leave(current)
        return features

    def features(self, images: np.ndarray | tf.Tensor, layers: Iterable[str]) -> dict:
        """What `net(images, layers)` returns, from a graph traced once per set of layers:
        eager convs are several times slower (no fused kernels, weights reordered on every
        call), which start-up feels in the targets."""
        import tensorflow as tf

        key = tuple(sorted(set(layers)))
        if key not in self._compiled:
            self._compiled[key] = tf.function(
                lambda batch: self(batch, key),
                input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)],
                autograph=False,
            )
        return self._compiled[key](tf.convert_to_tensor(images, tf.float32))

    def preprocess(self, images: np.ndarray | tf.Tensor) -> tf.Tensor:
        """float32 RGB images in 0..255 -> the first conv's input, in the compute dtype."""
        import tensorflow as tf

        return self._enter(tf.convert_to_tensor(images, dtype=tf.float32) - self.mean_pixel)


def _identity(x):
    return x


def _precision_casts(compute_dtype):
    """(into, out of) the network's compute dtype: casts whose gradients are cast back.

    float16 has a narrow range: the gradient entering the network is multiplied by
    FLOAT16_LOSS_SCALE, so that small loss gradients do not flush to zero, and the
    gradient leaving it is divided by the same factor. bfloat16 has float32's range and
    needs no scaling.
    """
    import tensorflow as tf

    if compute_dtype == tf.float32:
        return _identity, _identity
    scale = FLOAT16_LOSS_SCALE if compute_dtype == tf.float16 else 1.0

    @tf.custom_gradient
    def enter(x):
        def gradient(upstream):
            return tf.cast(upstream, tf.float32) / scale

        return tf.cast(x, compute_dtype), gradient

    @tf.custom_gradient
    def leave(x):
        def gradient(upstream):
            return tf.cast(upstream * scale, compute_dtype)

        return tf.cast(x, tf.float32), gradient

    return enter, leave
