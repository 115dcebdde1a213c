"""VGG-19 from MatConvNet's `imagenet-vgg-verydeep-19.mat`, as a TensorFlow feature extractor.

Two versions of the file were published, and both load:
- the old one (MD5 8ee3263992981a1d26e73b3ca028a123): top-level `layers`, `classes`,
  `normalization`; the mean is `normalization.averageImage`, a 224x224x3 image;
- the new one (MD5 106118b7cf60435e6d8e04f6a6dc3657): top-level `layers`, `meta`; the mean
  is `meta.normalization.averageImage`, 1x1x3.
Struct fields are read by name, so any field order works.

MatConvNet stores conv filters as [height, width, in, out], which is TensorFlow's HWIO:
they are used exactly as stored, never transposed.

Shapes: images and features are [B, H, W, C]; RGB pixels are in 0..255.
"""

from __future__ import annotations

import errno
import os
import stat
import zipfile
from collections.abc import Iterable
from typing import NamedTuple, TextIO

import numpy as np

from neural_style.errors import UserError, one_line, setting_fix
from neural_style.names import CONV_LAYERS, VGG19_LAYERS
from neural_style.runtime import GET_REAL_WEIGHTS
from neural_style.vgg import weights_cache

# PRECISION -> the dtype of the convs; Grams, losses, the image and Adam stay float32.
COMPUTE_DTYPES = {"float32": "float32", "mixed_bfloat16": "bfloat16", "mixed_float16": "float16"}
# Factor on the gradient inside a float16 network (see _precision_casts).
FLOAT16_LOSS_SCALE = 1024.0


class ConvWeights(NamedTuple):
    kernel: np.ndarray  # [3, 3, in, out] float32, HWIO
    bias: np.ndarray  # [out] float32


class VGGWeights(NamedTuple):
    convs: dict[str, ConvWeights]  # conv1_1 .. conv5_4
    mean_pixel: np.ndarray  # [3] float32, RGB


# --- reading the .mat file -------------------------------------------------------------


def _unwrap(value):
    """Strip the 1x1 cell and struct wrappers that scipy.io.loadmat puts around values."""
    while isinstance(value, np.ndarray) and value.dtype == object and value.size == 1:
        value = value.flat[0]
    return value


def _field(struct, name: str):
    """A struct's field by name (None if absent), whatever the field order."""
    struct = _unwrap(struct)
    if not isinstance(struct, np.ndarray) or struct.dtype.names is None:
        return None
    if name not in struct.dtype.names:
        return None
    return _unwrap(struct[name].flat[0])


def _text(value) -> str:
    value = _unwrap(value)
    if isinstance(value, np.ndarray):
        return "".join(str(part) for part in value.flat)
    return "" if value is None else str(value)


# What a file that is there but cannot be read needs; a new download would not help it.
_POINT_AT_THE_FILE = setting_fix("VGG_MODEL_PATH")
_KINDS = {stat.S_ISFIFO: "a named pipe", stat.S_ISSOCK: "a socket", stat.S_ISCHR: "a device"}


def _load_mat(path: str) -> dict:
    import scipy.io  # imported here: only loading needs it

    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise UserError(f"{path}: no such file; {GET_REAL_WEIGHTS}") from None
    except OSError as error:  # a folder on the way that may not be entered, say
        raise _unreadable(path, error) from None
    if stat.S_ISDIR(mode):
        problem = "is a directory, not a .mat file"
        raise UserError(f"{path}: {problem}; point at the file in it: {_POINT_AT_THE_FILE}")
    if not stat.S_ISREG(mode):  # opening a pipe would wait for a writer forever
        kind = next((name for test, name in _KINDS.items() if test(mode)), "a special file")
        raise UserError(f"{path}: is {kind}, not a .mat file; {_POINT_AT_THE_FILE}")
    if os.path.getsize(path) == 0:
        raise UserError(f"{path}: the file is empty; {GET_REAL_WEIGHTS}")
    try:
        with open(path, "rb") as file:
            return scipy.io.loadmat(file)
    except MemoryError:
        raise UserError(f"{path}: not enough memory to read the weights file") from None
    except OSError as error:
        if error.errno is None:  # scipy's own complaint about the content
            raise _not_a_mat(path, error) from None
        raise _unreadable(path, error) from None
    except (Exception, zipfile.BadZipFile) as error:  # scipy raises many kinds on bad files
        raise _not_a_mat(path, error) from None


def _not_a_mat(path: str, error: Exception) -> UserError:
    return UserError(
        f"{path}: not a readable MATLAB .mat file ({one_line(error)}); the download may be "
        f"truncated or the wrong file: {GET_REAL_WEIGHTS}"
    )


def _unreadable(path: str, error: OSError) -> UserError:
    """The system would not let the file be read: its content may be fine, so no download."""
    if error.errno in (errno.EACCES, errno.EPERM):
        problem, fix = "permission denied", "check the file's permissions"
    elif error.errno == errno.EIO:
        problem = "an input/output error while reading it (a failing disk or network share)"
        fix = "check that disk, or copy the file to another one"
    else:
        problem, fix = f"cannot read it ({one_line(error.strerror or error)})", "check the file"
    return UserError(f"{path}: {problem}; {fix}, or {_POINT_AT_THE_FILE}")


def _mean_pixel(mat: dict, path: str) -> np.ndarray:
    if "normalization" in mat:  # old file
        normalization = mat["normalization"]
    else:  # new file
        normalization = _field(mat.get("meta"), "normalization")
    average = _field(normalization, "averageImage")
    if not isinstance(average, np.ndarray) or average.size == 0 or average.size % 3:
        raise UserError(
            f"{path}: no mean pixel (normalization.averageImage) in the file; {GET_REAL_WEIGHTS}"
        )
    # Old files hold a whole mean image [H, W, 3]; new ones its average [1, 1, 3] or [3].
    mean = np.asarray(average, dtype=np.float64).reshape(-1, 3).mean(axis=0)
    if not np.all(np.isfinite(mean)):
        raise UserError(f"{path}: the mean pixel is not finite; {GET_REAL_WEIGHTS}")
    return mean.astype(np.float32)


def _conv_layers(mat: dict, path: str) -> dict[str, tuple]:
    """Raw (kernel, bias) pairs of the file's conv layers, by layer name."""
    layers = mat.get("layers")
    if not isinstance(layers, np.ndarray) or layers.dtype != object:
        raise UserError(
            f"{path}: not a MatConvNet network (no 'layers' cell array); {GET_REAL_WEIGHTS}"
        )
    found = {}
    for layer in layers.flat:
        if _text(_field(layer, "type")) != "conv":
            continue
        weights = _field(layer, "weights")
        if not isinstance(weights, np.ndarray) or weights.size != 2:
            raise UserError(
                f"{path}: conv layer '{_text(_field(layer, 'name'))}' has no "
                f"[filters, biases] weights; {GET_REAL_WEIGHTS}"
            )
        found[_text(_field(layer, "name"))] = (weights.flat[0], weights.flat[1])
    return found


def _checked_convs(raw: dict[str, tuple], path: str) -> dict[str, ConvWeights]:
    missing = [name for name in CONV_LAYERS if name not in raw]
    if missing:
        shown = ", ".join(missing[:4]) + (" ..." if len(missing) > 4 else "")
        raise UserError(
            f"{path}: missing VGG-19 layers {shown} ({len(missing)} of 16 convs); "
            f"this is another network or not VGG-19: {GET_REAL_WEIGHTS}"
        )
    convs = {}
    channels = 3  # conv1_1 takes RGB
    for name in CONV_LAYERS:
        kernel, bias = (np.asarray(part) for part in raw[name])
        if kernel.ndim != 4 or kernel.shape[:2] != (3, 3) or kernel.shape[2] != channels:
            raise UserError(
                f"{path}: layer {name} has filters of shape {list(kernel.shape)}, expected "
                f"[3, 3, {channels}, N]; this is not VGG-19: {GET_REAL_WEIGHTS}"
            )
        bias = bias.reshape(-1)
        if bias.size != kernel.shape[3]:
            raise UserError(
                f"{path}: layer {name} has {bias.size} biases for {kernel.shape[3]} filters; "
                f"{GET_REAL_WEIGHTS}"
            )
        if not (np.all(np.isfinite(kernel)) and np.all(np.isfinite(bias))):
            raise UserError(
                f"{path}: layer {name} holds NaN or infinite weights; {GET_REAL_WEIGHTS}"
            )
        convs[name] = ConvWeights(np.asarray(kernel, np.float32), np.asarray(bias, np.float32))
        channels = kernel.shape[3]
    return convs


def read_vgg19_mat(path: str, *, cache: bool = True, stream: TextIO | None = None) -> VGGWeights:
    """Read and validate VGG-19's conv weights and mean pixel from a MatConvNet .mat file.

    With `cache`, the first read also writes the convs to `<path>.conv-cache` (saying
    so on `stream`) and later reads load that instead (see neural_style.weights_cache).
    Raises UserError, with one line naming the file and the fix, for anything unusable.
    """
    if cache and os.path.isfile(path):
        cached = weights_cache.load_cached(path)
        if cached is not None:
            raw, mean = cached
            mean = np.asarray(mean, np.float32).reshape(-1)
            try:
                if mean.shape == (3,) and np.all(np.isfinite(mean)):
                    return VGGWeights(convs=_checked_convs(raw, path), mean_pixel=mean)
            except UserError:
                pass  # a damaged cache is rebuilt from the .mat below
    mat = _load_mat(path)
    convs = _checked_convs(_conv_layers(mat, path), path)
    weights = VGGWeights(convs=convs, mean_pixel=_mean_pixel(mat, path))
    if cache:
        del mat  # the whole file, fc layers included: free it before writing the cache
        raw = {name: (conv.kernel, conv.bias) for name, conv in convs.items()}
        if stream is not None:
            print(
                f"caching the 16 conv layers of {path} "
                f"({weights_cache.cached_megabytes(raw):.0f} MB) in "
                f"{weights_cache.cache_path(path)}, so later runs start without reading the .mat",
                file=stream,
                flush=True,
            )
        weights_cache.store(path, raw, weights.mean_pixel, stream=stream)
    return weights


# --- the network ------------------------------------------------------------------------


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

    def __call__(self, images, layers: Iterable[str]) -> dict:
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

    def features(self, images, layers: Iterable[str]) -> dict:
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

    def preprocess(self, images):
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
