"""Which VGG-19 weights file a run reads: the one VGG_MODEL_PATH names, or, when the
default path is missing, a synthetic stand-in with the real file's structure and
deterministic random weights (synthetic.py), written once beside it.

    path = resolve_weights_path(settings.vgg_model_path, stream)
"""

from __future__ import annotations

import os
import shutil
from typing import TextIO

from neural_style.errors import UserError

# The weights settings.py points at by default; a run may substitute the synthetic
# stand-in when this exact path is missing, but never for a path the user chose.
DEFAULT_VGG_MODEL_PATH = "weights/imagenet-vgg-verydeep-19.mat"
SYNTHETIC_WEIGHTS_NAME = "synthetic-vgg-verydeep-19-v1.mat"
SYNTHETIC_WEIGHTS_PATH = os.path.join("weights", SYNTHETIC_WEIGHTS_NAME)
# The synthetic stand-in's .mat file, in bytes (the real file's shapes, fc layers included).
SYNTHETIC_MAT_BYTES = 574_850_640
# Free space the stand-in asks for: the .mat (575 MB) and its conv cache (80 MB), with room
# for the temporary copy each is written through.
SYNTHETIC_WEIGHTS_BYTES = 700 * 1024**2
REAL_WEIGHTS_URL = "https://www.vlfeat.org/matconvnet/models/imagenet-vgg-verydeep-19.mat"
GET_REAL_WEIGHTS = (
    f"get the real file with `curl -L -o weights/imagenet-vgg-verydeep-19.mat {REAL_WEIGHTS_URL}`"
    " (see weights/README.md)"
)


def weights_to_read(path: str) -> str:
    """The .mat file a run with VGG_MODEL_PATH `path` reads, written or not: `path`, or the
    synthetic stand-in's beside it when `path` is the missing default."""
    if os.path.exists(path) or os.path.normpath(path) != os.path.normpath(DEFAULT_VGG_MODEL_PATH):
        return path
    return os.path.join(os.path.dirname(path), SYNTHETIC_WEIGHTS_NAME)


def resolve_weights_path(path: str, stream: TextIO) -> str:
    """The .mat file to load: `path`, or the synthetic stand-in when the default is missing
    (written once beside it). A path the user gave is loaded, and reported, as it is."""
    if weights_to_read(path) == path:
        return path
    print(
        f"note: {path} not found, so a synthetic VGG-19 is used (textures, not art); "
        f"for real results {GET_REAL_WEIGHTS}",
        file=stream,
    )
    synthetic_path = os.path.join(os.path.dirname(path), SYNTHETIC_WEIGHTS_NAME)
    if not os.path.exists(synthetic_path):
        _write_synthetic_weights(synthetic_path, stream)
    return synthetic_path


def _write_synthetic_weights(path: str, stream: TextIO) -> None:
    from neural_style.vgg.synthetic import write_synthetic_vgg19

    folder = os.path.dirname(os.path.abspath(path))
    needed = SYNTHETIC_WEIGHTS_BYTES / 1024**2
    try:
        os.makedirs(folder, exist_ok=True)
        free = shutil.disk_usage(folder).free
    except OSError as error:
        raise UserError(
            f"{folder}: cannot create the folder for the synthetic weights "
            f"({error.strerror or error}); it needs about {needed:.0f} MB there; "
            f"{GET_REAL_WEIGHTS}"
        ) from None
    if free < SYNTHETIC_WEIGHTS_BYTES:
        raise UserError(
            f"{folder}: {free / 1024**2:.0f} MB free, and the synthetic weights need about "
            f"{needed:.0f} MB there; free some space, or {GET_REAL_WEIGHTS}"
        )
    print(
        f"writing the synthetic weights to {path} (once: {SYNTHETIC_MAT_BYTES / 1e6:.0f} MB, "
        "then its 80 MB conv cache)",
        file=stream,
        flush=True,
    )
    try:
        write_synthetic_vgg19(path)
    except OSError as error:
        raise UserError(
            f"{path}: cannot write the synthetic weights ({error.strerror or error}); they need "
            f"about {needed:.0f} MB in {folder}; free some space, or {GET_REAL_WEIGHTS}"
        ) from None
