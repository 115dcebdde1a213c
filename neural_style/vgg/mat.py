"""Reading VGG-19's conv weights and mean pixel from MatConvNet's
`imagenet-vgg-verydeep-19.mat`, checked layer by layer.

Two versions of the file were published, and both load:
- the old one (MD5 8ee3263992981a1d26e73b3ca028a123): top-level `layers`, `classes`,
  `normalization`; the mean is `normalization.averageImage`, a 224x224x3 image;
- the new one (MD5 106118b7cf60435e6d8e04f6a6dc3657): top-level `layers`, `meta`; the mean
  is `meta.normalization.averageImage`, 1x1x3.
Struct fields are read by name, so any field order works.

MatConvNet stores conv filters as [height, width, in, out], which is TensorFlow's HWIO:
they are kept exactly as stored, never transposed. No TensorFlow here.
"""

from __future__ import annotations

import errno
import os
import stat
import zipfile
from typing import NamedTuple, TextIO

import numpy as np

from neural_style.errors import UserError, one_line, setting_fix
from neural_style.names import CONV_LAYERS
from neural_style.vgg import weights_cache
from neural_style.vgg.weights_file import GET_REAL_WEIGHTS


class ConvWeights(NamedTuple):
    kernel: np.ndarray  # [3, 3, in, out] float32, HWIO
    bias: np.ndarray  # [out] float32


class VGGWeights(NamedTuple):
    convs: dict[str, ConvWeights]  # conv1_1 .. conv5_4
    mean_pixel: np.ndarray  # [3] float32, RGB


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
