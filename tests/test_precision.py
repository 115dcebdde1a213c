"""PRECISION: bfloat16 convs with float32 Grams, losses and Adam, and recomputation."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from conftest import photo

from neural_style.losses import LossWeights
from neural_style.optimize import LossFunction, compute_targets
from neural_style.vgg import VGG19, read_vgg19_mat, resolve_precision

WEIGHTS = LossWeights(
    content_layers=(("relu4_2", 0.5), ("relu5_2", 0.5)),
    style_layers=tuple((f"relu{block}_1", 0.2) for block in range(1, 6)),
    alpha=1.0,
    beta=500.0,
    tv_weight=0.01,
)


@pytest.fixture(scope="module")
def tiny_weights(tiny_mat):
    return read_vgg19_mat(tiny_mat)


def _problem(weights, precision):
    net = VGG19(weights, precision=precision)
    content, style = photo(48, 64, seed=1), photo(48, 64, seed=2)
    targets = compute_targets(net, content, [style], [1.0], WEIGHTS)
    return LossFunction(net, targets, WEIGHTS), content


def test_bfloat16_features_are_float32_and_close(tiny_weights):
    images = photo(48, 64, seed=3)[None]
    exact = VGG19(tiny_weights)(images, ["relu1_1", "relu5_2"])
    half = VGG19(tiny_weights, precision="mixed_bfloat16")(images, ["relu1_1", "relu5_2"])
    for name in exact:
        assert half[name].dtype == tf.float32
        scale = float(tf.reduce_max(tf.abs(exact[name])))
        assert float(tf.reduce_max(tf.abs(half[name] - exact[name]))) < 0.05 * scale


def test_bfloat16_loss_and_gradient_match_float32(tiny_weights):
    images = tf.constant(photo(48, 64, seed=3)[None])
    parts32, gradient32 = _problem(tiny_weights, "float32")[0].value_and_gradient(images)
    parts16, gradient16 = _problem(tiny_weights, "mixed_bfloat16")[0].value_and_gradient(images)
    assert gradient16.dtype == tf.float32
    assert float(parts16["total"]) == pytest.approx(float(parts32["total"]), rel=0.2)
    cosine = tf.reduce_sum(gradient16 * gradient32) / (tf.norm(gradient16) * tf.norm(gradient32))
    assert float(cosine) > 0.95


def test_auto_precision(monkeypatch):
    monkeypatch.setattr("neural_style.vgg.cpu_has_bfloat16", lambda: True)
    assert resolve_precision("auto", on_gpu=False) == "mixed_bfloat16"
    assert resolve_precision("auto", on_gpu=True) == "float32"
    monkeypatch.setattr("neural_style.vgg.cpu_has_bfloat16", lambda: False)
    assert resolve_precision("auto", on_gpu=False) == "float32"
    assert resolve_precision("float32", on_gpu=False) == "float32"


def test_float16_needs_a_gpu():
    from neural_style.errors import UserError

    with pytest.raises(UserError, match=r"PRECISION \(--precision\) mixed_float16 needs a GPU"):
        resolve_precision("mixed_float16", on_gpu=False)


def test_float16_scales_the_gradient_inside_the_network(tiny_weights):
    # Runs on the CPU too, slowly: the loss scale must cancel out.
    images = tf.constant(photo(32, 32, seed=3)[None])
    net16 = VGG19(tiny_weights, precision="mixed_float16")
    net32 = VGG19(tiny_weights)
    for net, store in ((net16, []), (net32, [])):
        with tf.GradientTape() as tape:
            tape.watch(images)
            total = tf.reduce_sum(net(images, ["relu2_1"])["relu2_1"]) * 1e-6
        store.append(tape.gradient(total, images))
        net.gradient = store[0]
    np.testing.assert_allclose(net16.gradient.numpy(), net32.gradient.numpy(), rtol=0.05, atol=1e-6)
