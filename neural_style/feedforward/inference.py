"""The trained network's forward pass for stylising, computed from its weights with fewer
multiply-adds and fewer passes over memory than its Keras layers take. Same network, same
results within float rounding; the saved network is never changed.

    forward = LeanForward.of(model, "mixed_bfloat16")   # None: not a network of model.py
    stylised = forward(photos)   # [B, H, W, 3] float32 0..255 -> the same

Three rewrites, each exact in real arithmetic:
- **Upsampling and its conv in one.** A 2x nearest-neighbour upsample, reflection padding
  and a 3x3 conv give each of the four output pixels of a 2x2 block a 2x2 combination of
  the small image's pixels. So the small image, padded symmetrically, goes through one 2x2
  conv with four sets of outputs (one per position in the block), which are interleaved:
  16 multiply-adds per input pixel and output channel where there were 36, and the large
  image is never made. It needs the large side to be exactly twice the small one (the
  photo's sides a multiple of 4); otherwise that layer is computed as the Keras layer does.
- **The last 9x9 conv, to 3 channels, on 2x2 blocks.** oneDNN reaches a tenth of its rate
  on a conv with three outputs. On space_to_depth(2) of its padded input it is a 5x5 conv
  with 12 outputs, 2.4x faster here for 1.2x the multiply-adds.
- **Instance normalisation, then ReLU, as one scale and shift per image and channel**
  applied in the computing precision: the statistics are taken in float32, as the Keras
  layer takes them.

Measured on the AMD EPYC of this work (benchmarks/feedforward.py prints the network's time
both ways); docs/performance.md has the figures.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

# The Keras mixed-precision policies a network is stylised in, to their computing dtype.
_COMPUTE_DTYPES = {
    "float32": tf.float32,
    "mixed_bfloat16": tf.bfloat16,
    "mixed_float16": tf.float16,
}
_EPSILON = 1e-5  # InstanceNormalization's default, which train_network.py keeps
_OUT_KERNEL = 9  # the first and the last conv's size


def _layer_plan(width: int, blocks: int) -> list[tuple]:
    """(name, weight shapes, strides) of every layer with weights in
    `build_transformer(width, blocks)`, in order (strides None for a norm)."""
    plan = []

    def conv(name: str, size: int, channels: tuple[int, int], stride: int = 1):
        channels_in, channels_out = channels
        plan.append((f"{name}_conv", ((size, size, channels_in, channels_out),), (stride,) * 2))
        plan.append((f"{name}_norm", ((channels_out,), (channels_out,)), None))

    conv("in", _OUT_KERNEL, (3, width))
    conv("down1", 3, (width, 2 * width), stride=2)
    conv("down2", 3, (2 * width, 4 * width), stride=2)
    for index in range(1, blocks + 1):
        conv(f"residual{index}_a", 3, (4 * width, 4 * width))
        conv(f"residual{index}_b", 3, (4 * width, 4 * width))
    conv("up1", 3, (4 * width, 2 * width))
    conv("up2", 3, (2 * width, width))
    plan.append(("out_conv", ((_OUT_KERNEL, _OUT_KERNEL, width, 3), (3,)), (1, 1)))
    return plan


def _weights_by_layer(model: keras.Model) -> dict[str, list[np.ndarray]] | None:
    """Each layer's weights by name when `model` is a network of model.py (its layers with
    weights, their order, shapes and strides, and its two resizes), else None."""
    weighted = [layer for layer in model.layers if layer.weights]
    first = weighted[0] if weighted else None
    if first is None or first.name != "in_conv" or len(first.weights[0].shape) != 4:
        return None
    width = int(first.weights[0].shape[-1])
    blocks = sum(1 for layer in model.layers if layer.name.endswith("_add"))
    names = {layer.name for layer in model.layers}
    if not {"up1_resize", "up2_resize"} <= names:
        return None
    found = [
        (
            layer.name,
            tuple(tuple(int(d) for d in w.shape) for w in layer.weights),
            tuple(layer.strides) if hasattr(layer, "strides") else None,
        )
        for layer in weighted
    ]
    if found != _layer_plan(width, blocks):
        return None
    return {layer.name: [w.numpy() for w in layer.weights] for layer in weighted}


def block_kernel(kernel: np.ndarray) -> np.ndarray:
    """A stride-1 conv's [K, K, Cin, Cout] kernel as the kernel of the same conv on
    space_to_depth(2) of its input: [K//2+1, K//2+1, 4 Cin, 4 Cout], its input channels in
    space_to_depth's order (row in block, column in block, channel) and its outputs in
    depth_to_space's (the same)."""
    size, _, channels_in, channels_out = kernel.shape
    taps = size // 2 + 1
    blocked = np.zeros((taps, taps, 2, 2, channels_in, 2, 2, channels_out), np.float32)
    for out_row in range(2):
        for out_col in range(2):
            for i in range(size):
                for j in range(size):
                    tap_row, in_row = divmod(out_row + i, 2)
                    tap_col, in_col = divmod(out_col + j, 2)
                    blocked[tap_row, tap_col, in_row, in_col, :, out_row, out_col] = kernel[i, j]
    return blocked.reshape(taps, taps, 4 * channels_in, 4 * channels_out)


# For an output pixel at position 0 or 1 of its 2x2 block, which of a 3x3 kernel's rows
# (or columns) fall on the small image's pixel above it (tap 0) and on its own (tap 1).
_UPSAMPLED_TAPS = {0: ((0,), (1, 2)), 1: ((0, 1), (2,))}


def upsample_kernel(kernel: np.ndarray) -> np.ndarray:
    """A 3x3 conv's [3, 3, Cin, Cout] kernel, applied after a 2x nearest upsample with
    reflection padding, as a [2, 2, Cin, 4 Cout] kernel applied to the small image padded
    symmetrically by 1; its outputs are (row in block, column in block, channel)."""
    channels_in, channels_out = kernel.shape[2:]
    phased = np.zeros((2, 2, channels_in, 2, 2, channels_out), np.float32)
    for out_row in range(2):
        for out_col in range(2):
            for tap_row, rows in enumerate(_UPSAMPLED_TAPS[out_row]):
                for tap_col, cols in enumerate(_UPSAMPLED_TAPS[out_col]):
                    phased[tap_row, tap_col, :, out_row, out_col] = sum(
                        kernel[i, j] for i in rows for j in cols
                    )
    return phased.reshape(2, 2, channels_in, 4 * channels_out)


def _reflect(images: tf.Tensor, pad: int, mode: str = "REFLECT") -> tf.Tensor:
    return tf.pad(images, [[0, 0], [pad, pad], [pad, pad], [0, 0]], mode=mode)


class LeanForward:
    """A network of model.py, stylising in `precision` with the rewrites above."""

    def __init__(self, weights: dict[str, list[np.ndarray]], precision: str):
        self.dtype = _COMPUTE_DTYPES[precision]
        self.blocks = sum(1 for name in weights if name.endswith("_a_conv"))

        def constant(array: np.ndarray, dtype=self.dtype) -> tf.Tensor:
            return tf.constant(array, dtype)

        self._kernels = {
            name[: -len("_conv")]: constant(values[0])
            for name, values in weights.items()
            if name.endswith("_conv")
        }
        self._norms = {
            name[: -len("_norm")]: (constant(scale, tf.float32), constant(offset, tf.float32))
            for name, (scale, offset) in ((n, v) for n, v in weights.items() if n.endswith("_norm"))
        }
        self._upsample_kernels = {
            name: constant(upsample_kernel(weights[f"{name}_conv"][0])) for name in ("up1", "up2")
        }
        out_kernel, out_bias = weights["out_conv"]
        self._out_kernel = constant(block_kernel(out_kernel))
        self._out_bias = constant(out_bias, tf.float32)
        # One compiled pass for photos whose sides are multiples of 4, where every
        # upsampling is exactly twice (its phases), and one for any other size; each is
        # traced when first used, for any such size.
        one_photo = [tf.TensorSpec([1, None, None, 3], tf.float32)]
        self._passes = {
            phased: tf.function(
                lambda photo, phased=phased: self._stylised(photo, phased),
                input_signature=one_photo,
            )
            for phased in (True, False)
        }

    @classmethod
    def of(cls, model: keras.Model, precision: str) -> LeanForward | None:
        """The lean pass of `model` in `precision`, or None when `model` is not a network
        of model.py (its layers differ) or `precision` is not one this module computes in."""
        if precision not in _COMPUTE_DTYPES:
            return None
        weights = _weights_by_layer(model)
        return None if weights is None else cls(weights, precision)

    def __call__(self, photos: np.ndarray | tf.Tensor) -> tf.Tensor:
        return self.forward(photos)

    def forward(self, photos: np.ndarray | tf.Tensor) -> tf.Tensor:
        """[B, H, W, 3] float32 0..255 -> the same, an image at a time: instance
        normalisation is then the fused batch normalisation of one image."""
        photos = tf.convert_to_tensor(photos, tf.float32)
        batch, height, width = photos.shape[:3]
        compiled = self._passes[height % 4 == 0 and width % 4 == 0]
        return tf.concat([compiled(photos[index : index + 1]) for index in range(batch)], 0)

    def _stylised(self, photo: tf.Tensor, phased: bool) -> tf.Tensor:
        """[1, H, W, 3] float32 0..255 -> the same; `phased` when H and W are multiples of
        4 (see _upsampled_conv)."""
        x = tf.cast(photo * (1 / 127.5) - 1.0, self.dtype)
        full = self._normalised(self._conv(x, "in", _OUT_KERNEL, 1), "in")
        half = self._normalised(self._conv(full, "down1", 3, 2), "down1")
        x = self._normalised(self._conv(half, "down2", 3, 2), "down2")
        # The residual stream stays in float32, as the Keras network's sums are.
        stream = tf.cast(x, tf.float32)
        for index in range(1, self.blocks + 1):
            name = f"residual{index}"
            inner = self._conv(tf.cast(stream, self.dtype), f"{name}_a", 3, 1)
            inner = self._conv(self._normalised(inner, f"{name}_a"), f"{name}_b", 3, 1)
            stream += self._normalised(inner, f"{name}_b", relu=False)
        x = self._upsampled_conv(tf.cast(stream, self.dtype), half, "up1", phased)
        x = self._upsampled_conv(self._normalised(x, "up1"), full, "up2", phased)
        x = self._out_conv(self._normalised(x, "up2"))
        return (tf.tanh(x + self._out_bias) + 1.0) * 127.5

    def _conv(self, images: tf.Tensor, name: str, size: int, stride: int) -> tf.Tensor:
        padded = _reflect(images, size // 2)
        return tf.nn.conv2d(padded, self._kernels[name], stride, "VALID")

    def _normalised(self, images: tf.Tensor, name: str, relu: bool = True) -> tf.Tensor:
        """Instance normalisation of one image, then ReLU, in the computing dtype, or
        without `relu` in float32 for the residual sum. For one image, batch normalisation
        with the batch's own statistics is instance normalisation, and TensorFlow has it as
        one fused op (statistics in float32) that takes a third of the separate ops' time."""
        scale, offset = self._norms[name]
        if not relu:
            images = tf.cast(images, tf.float32)
        empty = tf.constant([], tf.float32)
        normalised = tf.raw_ops.FusedBatchNormV3(
            x=images,
            scale=scale,
            offset=offset,
            mean=empty,
            variance=empty,
            epsilon=_EPSILON,
            is_training=True,
        )[0]
        return tf.nn.relu(normalised) if relu else normalised

    def _upsampled_conv(
        self, small: tf.Tensor, reference: tf.Tensor, name: str, phased: bool
    ) -> tf.Tensor:
        """The nearest upsample of `small` to `reference`'s size, padded and convolved: in
        one 2x2 conv when `phased` (the size is then exactly twice: a photo's sides that
        are multiples of 4 are halved twice exactly), else as the Keras layers do it."""
        if phased:
            return self._phased_conv(small, name)
        size = tf.shape(reference)[1:3]
        return self._conv(tf.image.resize(small, size, method="nearest"), name, 3, 1)

    def _phased_conv(self, small: tf.Tensor, name: str) -> tf.Tensor:
        kernel = self._upsample_kernels[name]
        channels = kernel.shape[-1] // 4
        batch, height, width = tf.unstack(tf.shape(small)[:3])
        # [B, h+1, w+1, 2, 2, C]: at [Y + a, X + b, a, b] is output pixel (2Y + a, 2X + b).
        phases = tf.reshape(
            tf.nn.conv2d(_reflect(small, 1, "SYMMETRIC"), kernel, 1, "VALID"),
            [batch, height + 1, width + 1, 2, 2, channels],
        )
        rows = [
            tf.stack([phases[:, a : a + height, b : b + width, a, b] for b in range(2)], axis=3)
            for a in range(2)
        ]
        return tf.reshape(tf.stack(rows, axis=2), [batch, 2 * height, 2 * width, channels])

    def _out_conv(self, images: tf.Tensor) -> tf.Tensor:
        """The last 9x9 conv, on 2x2 blocks of its padded input (padded with zeros to even
        sides first: the extra outputs are cut off), in float32 out."""
        height, width = tf.unstack(tf.shape(images)[1:3])
        padded = _reflect(images, _OUT_KERNEL // 2)
        padded = tf.pad(padded, [[0, 0], [0, height % 2], [0, width % 2], [0, 0]])
        blocks = tf.nn.conv2d(tf.nn.space_to_depth(padded, 2), self._out_kernel, 1, "VALID")
        return tf.cast(tf.nn.depth_to_space(blocks, 2)[:, :height, :width], tf.float32)
