"""A trained network, ready to apply: loaded from NETWORK_MODEL and behind one compiled
function that takes any batch size and image size, so a folder of mixed sizes compiles once.

Shapes: [B, H, W, 3] float32 RGB in 0..255 in and out.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from neural_style.errors import UserError
from neural_style.feedforward.inference import LeanForward
from neural_style.feedforward.model import NetworkFileError, load_network, with_precision
from neural_style.feedforward.stylizing.checks import NETWORK_FIX, check_network_file
from neural_style.runtime import (
    native_stderr_silenced,
    resolve_network_precision,
    start_tensorflow,
)
from neural_style.settings.network import NetworkSettings


class Stylizer:
    """A trained network, compiled once for every input size and batch size, computing in
    `precision` (NETWORK_PRECISION as resolved: float32, mixed_bfloat16 or mixed_float16).

    A network of model.py runs through its lean pass (`inference.LeanForward`: the same
    results within float rounding, in about two thirds of the time); any other image-to-
    image network, or `lean=False`, through its Keras layers."""

    def __init__(
        self,
        model: keras.Model,
        preserve_colors: bool = False,
        precision: str = "float32",
        lean: bool = True,
    ):
        self.model = model
        self.preserve_colors = preserve_colors
        self.precision = precision
        self.lean = LeanForward.of(model, precision) if lean else None
        if self.lean is not None:
            self._forward = self.lean.forward
        else:
            computing = with_precision(model, precision)
            self._forward = tf.function(
                lambda photos: tf.cast(computing(photos, training=False), tf.float32),
                input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)],
            )

    @property
    def width(self) -> int:
        """Channels of the network's first conv (its other stages have 2x and 4x)."""
        for layer in self.model.layers:
            if isinstance(layer, keras.layers.Conv2D):
                return int(layer.filters)
        return 32

    def __call__(self, photos: np.ndarray) -> np.ndarray:
        """[B, H, W, 3] -> [B, H, W, 3], float32 0..255; colours kept if asked.

        Raises:
          MemoryError: the pass ran out of memory (in numpy or in TensorFlow).
        """
        photos = np.asarray(photos, dtype=np.float32)
        if photos.ndim != 4 or photos.shape[-1] != 3:
            raise ValueError(f"expected images of shape [B, H, W, 3], got {photos.shape}")
        try:
            # Running out of memory, TensorFlow's C++ side prints a dozen lines of its
            # allocator's state; the MemoryError below is said in one.
            with native_stderr_silenced():
                stylised = self._forward(tf.constant(photos)).numpy()
            stylised = np.clip(stylised, 0.0, 255.0)
        except tf.errors.ResourceExhaustedError as error:
            # TensorFlow's way of saying what numpy says with MemoryError.
            raise MemoryError(str(error)) from None
        if self.preserve_colors:
            from neural_style.media.colors import preserve_colors

            stylised = np.stack(
                [preserve_colors(out, photo) for out, photo in zip(stylised, photos, strict=True)]
            )
        return stylised


def open_stylizer(settings: NetworkSettings) -> Stylizer:
    """The network at NETWORK_MODEL, ready to apply.

    Raises:
      UserError: the file is missing, unreadable or not a network saved by
        train_network.py; the message says what it is instead.
    """
    path = settings.network_model
    check_network_file(path)
    try:
        model = load_network(path)
    except NetworkFileError as error:
        raise UserError(f"{path}: {error}; {NETWORK_FIX}") from None
    precision = resolve_network_precision(settings.network_precision, start_tensorflow().on_gpu)
    return Stylizer(model, preserve_colors=settings.stylize_preserve_colors, precision=precision)
