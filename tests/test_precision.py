"""PRECISION: bfloat16 convs with float32 Grams, losses and Adam, and the float32 finish."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from neural_style.gatys import pipeline
from neural_style.gatys.outputs import OutputNames
from neural_style.optimize.loss_functions import LossFunction
from neural_style.runtime import resolve_network_precision, resolve_precision
from neural_style.vgg.mat import read_vgg19_mat
from neural_style.vgg.network import VGG19
from tests.single_image import compute_targets
from tests.support import (
    default_loss_weights,
    photo,
    saved_checkpoint,
    stop_after,
    stylize_without_plots,
)

WEIGHTS = default_loss_weights(tv_weight=0.01)


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
    monkeypatch.setattr("neural_style.runtime.cpu_has_bfloat16", lambda: True)
    assert resolve_precision("auto", on_gpu=False) == "mixed_bfloat16"
    assert resolve_precision("auto", on_gpu=True) == "float32"
    assert resolve_precision("auto", on_gpu=False, optimizer="lbfgs") == "float32"
    monkeypatch.setattr("neural_style.runtime.cpu_has_bfloat16", lambda: False)
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


# --- the float32 finish of a mixed-precision run ---------------------------------------------


def _finish_settings(tmp_path, tiny_mat, image_pair, **overrides):
    """A mixed-precision run whose last quarter is float32; with the first two blocks'
    layers, as each run traces its loss twice (the tests above compare the precisions at
    the paper's layers)."""
    from tests.support import FEW_LAYERS, tiny_settings

    values = dict(
        precision="mixed_bfloat16",
        float32_finish=0.25,
        train_steps=8,
        snapshot_every=0,
        init="noise",
        **FEW_LAYERS,
    )
    return tiny_settings(tmp_path, tiny_mat, image_pair, **{**values, **overrides})


@pytest.mark.slow
def test_the_last_quarter_of_a_mixed_run_is_float32(tmp_path, tiny_mat, image_pair):
    from neural_style.gatys.pipeline import initial_image
    from neural_style.media import images
    from tests.single_image import AdamOptimizer

    settings = _finish_settings(tmp_path, tiny_mat, image_pair)
    result, printed = stylize_without_plots(settings)
    assert "float32 from step 7 to 8 (FLOAT32_FINISH 0.25)" in printed

    # The same by hand: 6 steps in bfloat16, then 2 with a float32 loss and targets.
    weights = read_vgg19_mat(tiny_mat)
    content = images.resize_image(images.load_image(image_pair[0], "c"), (33, 40))
    style = images.resize_image(images.load_image(image_pair[1], "s"), (33, 40))
    objective_weights = pipeline.loss_weights(settings)

    def loss_in(precision):
        net = VGG19(weights, precision=precision)
        targets = compute_targets(net, content, [style], [1.0], objective_weights)
        return LossFunction(net, targets, objective_weights)

    optimizer = AdamOptimizer(
        loss_in("mixed_bfloat16"), initial_image(content, 1.0, 0), learning_rate=5.0
    )
    list(optimizer.steps(6))
    optimizer.use_loss(loss_in("float32"))
    last = list(optimizer.steps(2, first=7))[-1]
    assert result.losses["total"] == pytest.approx(last.losses["total"], rel=1e-5)
    saved = saved_checkpoint(OutputNames(settings.output_image).checkpoint)
    np.testing.assert_allclose(saved.optimizer_state["best_image"], optimizer.best(), atol=1e-3)


@pytest.mark.slow
def test_a_run_cut_in_its_float32_finish_resumes_to_the_same_image(tmp_path, tiny_mat, image_pair):
    straight = _finish_settings(tmp_path / "straight", tiny_mat, image_pair)
    stylize_without_plots(straight)
    cut = _finish_settings(tmp_path / "cut", tiny_mat, image_pair)
    with pytest.raises(KeyboardInterrupt):
        stylize_without_plots(cut, stop_after(7))
    _, printed = stylize_without_plots(cut.__class__(**{**cut.__dict__, "resume": True}))
    assert "resuming from" in printed
    states = [
        saved_checkpoint(OutputNames(s.output_image).checkpoint).optimizer_state
        for s in (straight, cut)
    ]
    for name in ("image", "best_image", "first_moment", "second_moment"):
        np.testing.assert_allclose(states[0][name], states[1][name], rtol=1e-4, atol=1e-3)


def test_float32_finish_is_checked(tmp_path, tiny_mat, image_pair):
    from neural_style.errors import UserError

    with pytest.raises(UserError, match=r"^FLOAT32_FINISH \(--float32_finish\) must be between"):
        _finish_settings(tmp_path, tiny_mat, image_pair, float32_finish=1.5)


def test_the_networks_auto_precision_and_a_bad_one(monkeypatch):
    from neural_style.errors import UserError
    from neural_style.settings.network import NetworkSettings
    from tests import toy_settings

    monkeypatch.setattr("neural_style.runtime.cpu_has_bfloat16", lambda: True)
    assert resolve_network_precision("auto", on_gpu=False) == "mixed_bfloat16"
    assert resolve_network_precision("auto", on_gpu=True) == "mixed_float16"
    monkeypatch.setattr("neural_style.runtime.cpu_has_bfloat16", lambda: False)
    assert resolve_network_precision("auto", on_gpu=False) == "float32"
    assert resolve_network_precision("mixed_bfloat16", on_gpu=False) == "mixed_bfloat16"
    with pytest.raises(UserError, match=r"^NETWORK_PRECISION .* mixed_float16 needs a GPU"):
        resolve_network_precision("mixed_float16", on_gpu=False)
    with pytest.raises(UserError) as refused:
        NetworkSettings.from_module(toy_settings, network_precision="bf16")
    assert str(refused.value) == (
        "NETWORK_PRECISION (--network_precision) must be one of auto, float32, "
        "mixed_bfloat16, mixed_float16; got 'bf16'"
    )
