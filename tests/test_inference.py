"""The network's lean forward pass (neural_style/feedforward/inference.py): each rewrite is
the operation it replaces, and the whole pass is the Keras network, on real photos."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from neural_style.feedforward.inference import LeanForward, block_kernel, upsample_kernel
from neural_style.feedforward.model import build_transformer
from neural_style.feedforward.stylizing.stylizer import Stylizer
from neural_style.media.images import load_image, resize_image

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _photos(height: int, width: int, names=("content.jpg",)) -> np.ndarray:
    return np.stack(
        [
            resize_image(load_image(os.path.join(REPO_ROOT, "images", name), "X"), (height, width))
            for name in names
        ]
    )


def _random(shape, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("height, width", [(12, 16), (11, 9)])
def test_a_conv_on_2x2_blocks_is_the_conv_it_replaces(height, width):
    kernel = _random((9, 9, 5, 3), seed=1)
    padded = _random((1, height + 8, width + 8, 5), seed=2)
    expected = tf.nn.conv2d(padded, kernel, 1, "VALID").numpy()
    even = np.pad(padded, [(0, 0), (0, height % 2), (0, width % 2), (0, 0)])
    blocks = tf.nn.conv2d(tf.nn.space_to_depth(even, 2), block_kernel(kernel), 1, "VALID")
    found = tf.nn.depth_to_space(blocks, 2).numpy()[:, :height, :width]
    assert block_kernel(kernel).shape == (5, 5, 20, 12)
    np.testing.assert_allclose(found, expected, atol=1e-4 * np.abs(expected).max())


def test_an_upsampled_conv_in_phases_is_upsample_pad_conv():
    kernel = _random((3, 3, 6, 4), seed=3)
    small = _random((2, 5, 7, 6), seed=4)
    large = tf.image.resize(small, (10, 14), method="nearest")
    padded = tf.pad(large, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="REFLECT")
    expected = tf.nn.conv2d(padded, kernel, 1, "VALID").numpy()
    phased = tf.nn.conv2d(
        tf.pad(small, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="SYMMETRIC"),
        upsample_kernel(kernel),
        1,
        "VALID",
    ).numpy()
    phases = phased.reshape(2, 6, 8, 2, 2, 4)
    for row in range(2):
        for col in range(2):
            np.testing.assert_allclose(
                phases[:, row : row + 5, col : col + 7, row, col],
                expected[:, row::2, col::2],
                atol=1e-4 * np.abs(expected).max(),
            )


@pytest.mark.parametrize(
    "height, width",
    [(48, 64), (37, 53), (50, 66)],  # sides a multiple of 4; odd; even but not of 4
)
def test_the_lean_pass_is_the_keras_network_in_float32(height, width):
    model = build_transformer(width=4, seed=5)
    photos = _photos(height, width, ("content.jpg", "style.jpg"))
    expected = model(photos, training=False).numpy()
    found = LeanForward.of(model, "float32")(photos).numpy()
    assert found.shape == expected.shape
    assert np.abs(found - expected).max() < 0.02  # grey levels
    # Instance normalisation is per image: a photo stylised in a batch is stylised alone.
    alone = LeanForward.of(model, "float32")(photos[1:]).numpy()
    np.testing.assert_allclose(alone[0], found[1], atol=1e-3)


def test_the_lean_pass_in_bfloat16_is_near_float32_and_near_keras_in_bfloat16():
    model = build_transformer(width=4, seed=6)
    photos = _photos(48, 64)
    exact = Stylizer(model, lean=False)(photos)
    lean = Stylizer(model, precision="mixed_bfloat16")
    keras_rounded = Stylizer(model, precision="mixed_bfloat16", lean=False)(photos)
    assert lean.lean is not None and lean.lean.dtype == tf.bfloat16
    rounded = lean(photos)
    assert 0.0 < np.abs(rounded - exact).mean() <= 2.0  # bfloat16 indeed, off by rounding
    # As far from float32 as the Keras layers in bfloat16 are, give or take.
    assert np.abs(rounded - exact).mean() < 2 * np.abs(keras_rounded - exact).mean()


def test_another_image_network_runs_through_its_keras_layers():
    photos_in = keras.Input((None, None, 3))
    brighter = keras.layers.Rescaling(0.5, offset=64.0)(photos_in)
    model = keras.Model(photos_in, brighter)
    stylizer = Stylizer(model)
    assert LeanForward.of(model, "float32") is None and stylizer.lean is None
    photos = _photos(20, 24)
    np.testing.assert_allclose(stylizer(photos), photos * 0.5 + 64.0, atol=1e-4)


def test_a_network_of_other_shapes_is_not_taken_for_one_of_model_py():
    model = build_transformer(width=4, residual_blocks=2, seed=8)
    assert LeanForward.of(model, "float32").blocks == 2
    assert LeanForward.of(model, "float64") is None  # not a precision it computes in
