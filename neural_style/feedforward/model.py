"""The feed-forward style network of Johnson et al., "Perceptual Losses for Real-Time Style
Transfer" (2016), with instance normalisation (Ulyanov et al., 2016), as a Keras model.

    model = build_transformer(width=32)      # the paper's channel counts
    model.save("network.keras")
    model = load_network("network.keras")    # needs only this module importable
    stylised = model(photos)                 # [B, H, W, 3] RGB 0..255 -> the same

Layout, for a base width w (32 in the paper):
    9x9 conv w, stride 1
    3x3 conv 2w, stride 2          (H/2)
    3x3 conv 4w, stride 2          (H/4)
    5 residual blocks of two 3x3 convs 4w
    nearest-neighbour upsample to H/2, 3x3 conv 2w
    nearest-neighbour upsample to H,   3x3 conv w
    9x9 conv 3, then tanh scaled to 0..255
Every conv pads by reflection and, but the last, is followed by instance normalisation and
a ReLU. Upsampling resizes to the exact size of the matching downsampling stage rather than
doubling, so any input size, odd ones included, gives an output of the same size, and
resizing before a conv (instead of a transposed conv) avoids checkerboard artefacts.

The three custom layers are registered with Keras under the package "neural_style", so
`keras.saving.load_model` rebuilds a saved network once this module has been imported.
"""

from __future__ import annotations

import os
import zipfile

import keras
import tensorflow as tf

RESIDUAL_BLOCKS = 5  # as in the paper
PAPER_WIDTH = 32  # channels of the first conv in the paper
# Each side must be at least this, so that reflection padding fits at a quarter of the size.
MIN_SIDE = 5
# The first bytes of every zip archive, which a .keras file is.
_ZIP_MAGIC = b"PK\x03\x04"


@keras.saving.register_keras_serializable(package="neural_style")
class ReflectionPadding2D(keras.layers.Layer):
    """Pads the two spatial axes of [B, H, W, C] by mirroring, `padding` pixels each side."""

    def __init__(self, padding: int, **kwargs):
        super().__init__(**kwargs)
        self.padding = int(padding)

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        pad = self.padding
        return tf.pad(inputs, [[0, 0], [pad, pad], [pad, pad], [0, 0]], mode="REFLECT")

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        batch, height, width, channels = input_shape
        grow = 2 * self.padding
        return (
            batch,
            None if height is None else height + grow,
            None if width is None else width + grow,
            channels,
        )

    def get_config(self):
        return {**super().get_config(), "padding": self.padding}


@keras.saving.register_keras_serializable(package="neural_style")
class InstanceNormalization(keras.layers.Layer):
    """Normalises each image's each channel over its positions, then scales and shifts it
    by learned per-channel values: [B, H, W, C] -> [B, H, W, C]."""

    def __init__(self, epsilon: float = 1e-5, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = float(epsilon)

    def build(self, input_shape: tuple) -> None:
        channels = input_shape[-1]
        self.scale = self.add_weight(name="scale", shape=(channels,), initializer="ones")
        self.offset = self.add_weight(name="offset", shape=(channels,), initializer="zeros")

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        mean, variance = tf.nn.moments(inputs, axes=[1, 2], keepdims=True)
        # (x - mean) / std * scale + offset as one scale and one shift per image and
        # channel: two passes over the image where there were four (about 12% of the
        # layer's time at 1024x768, measured on the AMD EPYC).
        scale = self.scale * tf.math.rsqrt(variance + self.epsilon)
        return inputs * scale + (self.offset - mean * scale)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return input_shape

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}


@keras.saving.register_keras_serializable(package="neural_style")
class ResizeToMatch(keras.layers.Layer):
    """Nearest-neighbour resize of `[images, reference]`'s images to the reference's height
    and width; with a reference twice the size this is plain 2x upsampling."""

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        images, reference = inputs
        size = tf.shape(reference)[1:3]
        return tf.image.resize(images, size, method="nearest")

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        images_shape, reference_shape = input_shape
        return (images_shape[0], reference_shape[1], reference_shape[2], images_shape[3])


def _conv(x, filters: int, kernel_size: int, strides: int, name: str, *, normalise: bool = True):
    """Reflection pad, conv, and (unless `normalise` is False) instance norm and ReLU."""
    x = ReflectionPadding2D(kernel_size // 2, name=f"{name}_pad")(x)
    x = keras.layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding="valid",
        # A bias before instance normalisation is subtracted away again.
        use_bias=not normalise,
        name=f"{name}_conv",
    )(x)
    if not normalise:
        return x
    x = InstanceNormalization(name=f"{name}_norm")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x)


def _residual_block(x, filters: int, name: str):
    shortcut = x
    x = _conv(x, filters, 3, 1, f"{name}_a")
    x = ReflectionPadding2D(1, name=f"{name}_b_pad")(x)
    x = keras.layers.Conv2D(filters, 3, padding="valid", use_bias=False, name=f"{name}_b_conv")(x)
    x = InstanceNormalization(name=f"{name}_b_norm")(x)
    return keras.layers.Add(name=f"{name}_add")([shortcut, x])


def build_transformer(
    width: int = PAPER_WIDTH, residual_blocks: int = RESIDUAL_BLOCKS, seed: int | None = None
) -> keras.Model:
    """The image transformation network, [B, H, W, 3] RGB 0..255 in and out, any H and W of
    at least MIN_SIDE.

    Args:
      width: channels of the first conv; the others are 2x and 4x this (32 in the paper;
        the tests use 2 to 4).
      residual_blocks: number of residual blocks at a quarter of the input size.
      seed: makes the initial weights reproducible when given.
    """
    if width < 1 or residual_blocks < 0:
        raise ValueError(
            f"width must be >= 1 and residual_blocks >= 0, got {width}, {residual_blocks}"
        )
    if seed is not None:
        keras.utils.set_random_seed(seed)
    photos = keras.Input(shape=(None, None, 3), name="photos")
    # Scale 0..255 to -1..1, which suits the initialisers better.
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="to_unit_range")(photos)
    full = _conv(x, width, 9, 1, "in")
    half = _conv(full, 2 * width, 3, 2, "down1")
    x = _conv(half, 4 * width, 3, 2, "down2")
    for index in range(1, residual_blocks + 1):
        x = _residual_block(x, 4 * width, f"residual{index}")
    x = ResizeToMatch(name="up1_resize")([x, half])
    x = _conv(x, 2 * width, 3, 1, "up1")
    x = ResizeToMatch(name="up2_resize")([x, full])
    x = _conv(x, width, 3, 1, "up2")
    x = _conv(x, 3, 9, 1, "out", normalise=False)
    x = keras.layers.Activation("tanh", name="tanh")(x)
    stylised = keras.layers.Rescaling(127.5, offset=127.5, name="to_pixels")(x)
    return keras.Model(photos, stylised, name="style_transformer")


# Layers a mixed-precision network keeps in float32: the instance normalisations (their
# statistics), the residual sums, and the tanh and scalings at the ends, so that the
# output's pixel values are not rounded to the low precision's 8 bits.
FLOAT32_LAYERS = (
    InstanceNormalization,
    keras.layers.Add,
    keras.layers.Activation,
    keras.layers.Rescaling,
)


def with_precision(model: keras.Model, precision: str) -> keras.Model:
    """`model` itself when it already computes in `precision` ("float32",
    "mixed_bfloat16", "mixed_float16"); else a copy of it whose convolutions, paddings and
    resizes compute in that precision (every layer in float32 for "float32"), with the
    same float32 weights. The copy has new variables: `model` is never changed."""

    def wanted(layer: keras.layers.Layer) -> str:
        return "float32" if isinstance(layer, FLOAT32_LAYERS) else precision

    if all(layer.dtype_policy.name == wanted(layer) for layer in model.layers):
        return model

    def clone(layer: keras.layers.Layer) -> keras.layers.Layer:
        config = layer.get_config()
        config["dtype"] = wanted(layer)
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(model, clone_function=clone)
    copy.set_weights(model.get_weights())
    return copy


class NetworkFileError(ValueError):
    """The file is not a network `load_network` can use; the message says what it is."""


def load_network(path: str) -> keras.Model:
    """A network saved with `model.save(path)` (a .keras file), in Keras's safe mode, so a
    file holding Python code (a `Lambda` layer) is refused rather than run.

    Raises:
      NetworkFileError: what the file is instead, in a few words: "no such network file", "is a
        folder, not a .keras file", "permission denied", "the file is empty", "not a zip
        archive: ...", "a truncated or damaged zip archive: ...", Keras's own reason for a
        .keras file it refuses, "not an image-to-image network: ...", or, for a network
        that train_network.py could not have made, "takes only ...", "fails on ...",
        "returns ... for ..." or "its output is not pixels ...".
    """
    _check_archive(path)
    try:
        model = keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as error:  # Keras raises many kinds for a damaged or foreign file
        reason = " ".join(str(error).split())[:200] or type(error).__name__
        raise NetworkFileError(f"not a network this tool can load ({reason})") from None
    _check_image_to_image(model)
    _check_any_size(model)
    _check_probe(model)
    return model


def _check_archive(path: str) -> None:
    """Says what the file is when it is not a .keras archive at all: Keras itself calls a
    folder, an empty, a text or a truncated file alike "File not found"."""
    if os.path.isdir(path):
        raise NetworkFileError("is a folder, not a .keras file")
    try:
        with open(path, "rb") as file:
            head = file.read(len(_ZIP_MAGIC))
    except FileNotFoundError:
        raise NetworkFileError("no such network file") from None
    except PermissionError:
        raise NetworkFileError("permission denied") from None
    except OSError as error:
        raise NetworkFileError(f"cannot read the file ({error.strerror or error})") from None
    if not head:
        raise NetworkFileError("the file is empty")
    if head != _ZIP_MAGIC:
        raise NetworkFileError("not a zip archive: the file is not a .keras network")
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        raise NetworkFileError(
            "a truncated or damaged zip archive: the file was cut short (an interrupted "
            "copy or download?) and is not a whole .keras network"
        ) from None
    if "config.json" not in names:
        raise NetworkFileError("a zip archive without config.json: not a .keras network")


def _check_image_to_image(model: keras.Model) -> None:
    """A .keras file of some other network loads, then fails on the first image deep inside
    TensorFlow; this says so at once."""
    shapes = [tuple(tensor.shape) for tensor in (*model.inputs, *model.outputs)]
    if len(model.inputs) != 1 or any(len(shape) != 4 or shape[-1] != 3 for shape in shapes):
        raise NetworkFileError(
            f"not an image-to-image network: it maps {shapes[: len(model.inputs)]} to "
            f"{shapes[len(model.inputs) :]}, not [B, H, W, 3] RGB images to the same"
        )


# The photo-like image a loaded network is tried on (`_check_probe`): odd sides, as a
# network of this module keeps any size, and small, so that the try is cheap.
PROBE_SIZE_HW = (13, 11)


def _check_any_size(model: keras.Model) -> None:
    """This module's network takes and returns any height and width; a network saved with
    a fixed input size (`keras.Input((256, 256, 3))`) would stylise the photo at a size it
    was not made for, or fail deep inside TensorFlow."""
    for role, tensor in (("input", model.inputs[0]), ("output", model.outputs[0])):
        height, width = tuple(tensor.shape)[1:3]
        if height is not None or width is not None:
            size = f"{width or 'any'}x{height or 'any'}"
            raise NetworkFileError(
                f"takes only {size} images (its {role} is fixed at {tuple(tensor.shape)}), "
                "while a network of train_network.py takes any size: not a network this "
                "tool made"
            )


def _check_probe(model: keras.Model) -> None:
    """Tries the network on a small photo-like image: a network of this module returns an
    image of the same size in 0..255. One that fails, changes the size or returns values
    of another range (-1..1, 0..1) was made for another contract, and would otherwise give
    a silently wrong picture."""
    height, width = PROBE_SIZE_HW
    photo = tf.random.stateless_uniform((1, height, width, 3), seed=(1, 2), maxval=255.0)
    try:
        output = model(photo, training=False)
    except Exception as error:  # whatever the foreign network's layers raise
        reason = " ".join(str(error).split())[:160] or type(error).__name__
        raise NetworkFileError(f"fails on a {width}x{height} image ({reason})") from None
    shape = tuple(output.shape)
    if shape != (1, height, width, 3):
        raise NetworkFileError(
            f"returns {shape} for a [1, {height}, {width}, 3] image, not the same size: "
            "not a network this tool made"
        )
    low, high = float(tf.reduce_min(output)), float(tf.reduce_max(output))
    outside = not (low >= -1.0 and high <= 256.0)  # also NaN
    if outside or max(abs(low), abs(high)) <= 1.0:
        raise NetworkFileError(
            f"its output is not pixels in 0..255 (a photo gave values from {low:.3g} to "
            f"{high:.3g}): not a network this tool made"
        )
