"""A synthetic stand-in for `imagenet-vgg-verydeep-19.mat`, for machines without the real file.

The file written here has the real file's MATLAB structure: the same top-level variables,
struct fields, nesting, dtypes and (at full width) shapes, in either published version,
so it goes through exactly the same loader as the real weights. Its weights are
deterministic random numbers whose per-layer gains are calibrated on a fixed noise image so
that activations neither vanish nor explode through the sixteen convs. A network like this
turns style images into textures, not art: the real weights are needed for real results.

`write_synthetic_vgg19(path, widths=...)` at small widths makes the tests' fixtures.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from neural_style.files import atomic_write
from neural_style.names import BLOCKS, REAL_WIDTHS

REAL_MEAN_PIXEL = (123.68, 116.779, 103.939)  # RGB, as in the real file
CALIBRATION_SIZE = 64  # side of the noise image the gains are calibrated on, in pixels
ACTIVATION_RMS = 24.0  # root-mean-square of every ReLU output on the calibration image

# Field orders of the two published files; the loader must not depend on them.
OLD_FIELDS = {
    "conv": ("weights", "pad", "type", "name", "stride"),
    "relu": ("type", "name"),
    "pool": ("name", "stride", "pad", "type", "method", "pool"),
    "softmax": ("type", "name"),
}
NEW_FIELDS = {
    "conv": ("name", "type", "weights", "size", "pad", "stride", "precious", "dilate", "opts"),
    "relu": ("name", "type", "weights", "precious", "leak", "opts"),
    "pool": ("name", "type", "weights", "method", "pool", "stride", "pad", "precious", "opts"),
    "softmax": ("name", "type", "weights", "precious"),
}


# --- MATLAB values as scipy.io.savemat writes them --------------------------------------


def _struct(fields: dict, order: Sequence[str]) -> np.ndarray:
    """A 1x1 MATLAB struct with the given fields, in the given order."""
    struct = np.empty((1, 1), dtype=[(name, object) for name in order])
    for name in order:
        struct[name][0, 0] = fields[name]
    return struct


def _cell(values: Sequence) -> np.ndarray:
    cell = np.empty((1, len(values)), dtype=object)
    for index, value in enumerate(values):
        cell[0, index] = value
    return cell


def _double(*values: float) -> np.ndarray:
    return np.array([values], dtype=np.float64)


EMPTY_CELL = np.empty((0, 0), dtype=object)


# --- weights ----------------------------------------------------------------------------


def _layer_plan(widths: Sequence[int]) -> list[tuple[str, int, int, bool]]:
    """(name, in channels, out channels, ends its block) of the sixteen convs."""
    plan, channels = [], 3
    for (block, convs), width in zip(BLOCKS, widths, strict=True):
        for index in range(1, convs + 1):
            plan.append((f"conv{block}_{index}", channels, width, index == convs))
            channels = width
    return plan


def _conv_same(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """3x3 'SAME' convolution of one [H, W, in] image, in numpy."""
    height, width, _ = x.shape
    padded = np.pad(x, ((1, 1), (1, 1), (0, 0)))
    out = np.zeros((height, width, kernel.shape[3]), dtype=np.float32)
    for dy in range(3):
        for dx in range(3):
            out += padded[dy : dy + height, dx : dx + width] @ kernel[dy, dx]
    return out


def _max_pool(x: np.ndarray) -> np.ndarray:
    height, width, channels = x.shape
    x = x[: height // 2 * 2, : width // 2 * 2]
    return x.reshape(height // 2, 2, width // 2, 2, channels).max(axis=(1, 3))


def calibrated_convs(
    widths: Sequence[int], seed: int, activation_rms: float = ACTIVATION_RMS
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Random He-initialised convs, each rescaled so its ReLU output has `activation_rms`
    on a fixed uniform-noise image (ReLU is positively homogeneous, so the scale is exact)."""
    rng = np.random.default_rng(seed)
    image = rng.uniform(0, 255, (CALIBRATION_SIZE, CALIBRATION_SIZE, 3)).astype(np.float32)
    x = image - np.asarray(REAL_MEAN_PIXEL, dtype=np.float32)
    convs = {}
    for name, fan_in, fan_out, ends_block in _layer_plan(widths):
        kernel = rng.standard_normal((3, 3, fan_in, fan_out), dtype=np.float32)
        kernel *= np.sqrt(2.0 / (9 * fan_in), dtype=np.float32)
        response = _conv_same(x, kernel)
        bias = rng.standard_normal(fan_out, dtype=np.float32) * 0.1 * response.std()
        relu = np.maximum(response + bias, 0)
        gain = np.float32(activation_rms / max(float(np.sqrt(np.mean(relu**2))), 1e-12))
        convs[name] = (kernel * gain, bias * gain)
        x = relu * gain
        if ends_block:
            x = _max_pool(x)
    return convs


# --- the file ----------------------------------------------------------------------------


def _conv_layer(name, kernel, bias, version, fields):
    values = {
        "name": name,
        "type": "conv",
        # The old file keeps biases as a row, the new one as a column.
        "weights": _cell(
            [kernel, bias.reshape(1, -1) if version == "old" else bias.reshape(-1, 1)]
        ),
        "size": _double(*kernel.shape),
        "pad": _double(*([1, 1, 1, 1] if kernel.shape[0] == 3 else [0, 0, 0, 0])),
        "stride": _double(1, 1),
        "precious": np.array([[False]]),
        "dilate": _double(1, 1),
        "opts": EMPTY_CELL,
    }
    return _struct(values, fields["conv"])


def _plain_layer(name, kind, fields):
    values = {
        "name": name,
        "type": kind,
        "weights": EMPTY_CELL,
        "method": "max",
        "pool": _double(2, 2),
        "stride": _double(2, 2),
        "pad": _double(0, 0, 0, 0),
        "precious": np.array([[False]]),
        "leak": _double(0),
        "opts": EMPTY_CELL,
    }
    return _struct(values, fields[kind])


def _fc_layers(rng, in_channels, fc_width, num_classes, version, fields):
    layers, fan_in = [], in_channels * 49
    shapes = [
        ("fc6", (7, 7, in_channels, fc_width)),
        ("fc7", (1, 1, fc_width, fc_width)),
        ("fc8", (1, 1, fc_width, num_classes)),
    ]
    for index, (name, shape) in enumerate(shapes):
        kernel = rng.standard_normal(shape, dtype=np.float32) * np.float32(np.sqrt(2.0 / fan_in))
        bias = np.zeros(shape[3], dtype=np.float32)
        layers.append(_conv_layer(name, kernel, bias, version, fields))
        if index < 2:
            layers.append(_plain_layer(f"relu{6 + index}", "relu", fields))
        fan_in = shape[3]
    layers.append(_plain_layer("prob", "softmax", fields))
    return layers


def _mean_image(version: str) -> np.ndarray:
    mean = np.asarray(REAL_MEAN_PIXEL, dtype=np.float32)
    if version == "new":
        return mean.reshape(1, 1, 3)
    # The old file stores a whole 224x224 mean image; give it zero-mean spatial variation so
    # that only averaging it over its spatial axes recovers the mean pixel.
    ramp = np.linspace(-10, 10, 224, dtype=np.float32)
    rows = ramp[:, None, None] * np.array([1, -1, 0.5], dtype=np.float32)
    columns = ramp[None, :, None] * np.array([-0.5, 0.5, 1], dtype=np.float32)
    return (mean + rows + columns).astype(np.float32)


def _classes(num_classes: int, version: str) -> np.ndarray:
    names = _cell([f"n{index:08d}" for index in range(num_classes)])
    descriptions = _cell([f"synthetic class {index}" for index in range(num_classes)])
    return _struct({"name": names, "description": descriptions}, ("name", "description"))


def _normalization(version: str) -> np.ndarray:
    values = {
        "averageImage": _mean_image(version),
        "keepAspect": np.array([[True]]),
        "border": _double(32, 32),
        "imageSize": _double(224, 224, 3),
        "interpolation": "bilinear",
    }
    order = ("averageImage", "keepAspect", "border", "imageSize", "interpolation")
    if version == "new":
        order = ("imageSize", "border", "averageImage", "keepAspect", "interpolation")
    return _struct(values, order)


def synthetic_vgg19_variables(
    *,
    version: str = "new",
    widths: Sequence[int] = REAL_WIDTHS,
    include_fc: bool = True,
    fc_width: int = 4096,
    num_classes: int = 1000,
    seed: int = 0,
    field_orders: dict | None = None,
) -> dict:
    """The top-level variables of a MatConvNet VGG-19 file, ready for scipy.io.savemat."""
    if version not in ("old", "new"):
        raise ValueError(f"version must be 'old' or 'new', got {version!r}")
    fields = field_orders or (OLD_FIELDS if version == "old" else NEW_FIELDS)
    convs = calibrated_convs(widths, seed)
    layers = []
    for block, count in BLOCKS:
        for index in range(1, count + 1):
            name = f"conv{block}_{index}"
            layers.append(_conv_layer(name, *convs[name], version, fields))
            layers.append(_plain_layer(f"relu{block}_{index}", "relu", fields))
        layers.append(_plain_layer(f"pool{block}", "pool", fields))
    if include_fc:
        rng = np.random.default_rng(seed + 1)
        layers += _fc_layers(rng, widths[-1], fc_width, num_classes, version, fields)
    variables = {"layers": _cell(layers)}
    classes = _classes(num_classes, version)
    if version == "old":
        variables.update(classes=classes, normalization=_normalization(version))
    else:
        inputs = _struct({"name": "data", "size": _double(224, 224, 3, 10)}, ("name", "size"))
        meta = {"inputs": inputs, "classes": classes, "normalization": _normalization(version)}
        variables["meta"] = _struct(meta, ("inputs", "classes", "normalization"))
    return variables


def write_synthetic_vgg19(path: str, **options) -> str:
    """Write a synthetic VGG-19 .mat file atomically; options as synthetic_vgg19_variables."""
    import scipy.io

    variables = synthetic_vgg19_variables(**options)
    atomic_write(path, lambda stream: scipy.io.savemat(stream, variables, oned_as="row"))
    return path


SYNTHETIC_PATH = os.path.join("weights", "synthetic-vgg-verydeep-19.mat")
