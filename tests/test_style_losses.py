"""The style losses behind one seam (losses/style/): the registry, the sliced Wasserstein
loss (STYLE_LOSS "sw") against a float64 numpy reference with the same directions, w2 on
rank-deficient features against scipy, and both converging at small sizes where w2's old
float32 square root made the optimiser diverge."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest
import scipy.linalg
import tensorflow as tf

from neural_style.errors import UserError
from neural_style.gatys import plan as plans
from neural_style.gatys.outputs import Claims
from neural_style.gatys.pipeline import initial_image, loss_weights
from neural_style.losses.gatys import Targets
from neural_style.losses.style import REGISTRY, is_tileable, sliced, style_statistic
from neural_style.losses.style import w2 as wasserstein
from neural_style.losses.targets import content_targets, style_targets
from neural_style.optimize.adam import BatchAdamOptimizer
from neural_style.optimize.loss_functions import LossFunction
from neural_style.settings.gatys import STYLE_LOSS_CHOICES, Settings
from neural_style.vgg.network import VGG19
from tests import toy_settings
from tests.support import (
    save_mat,
    saved_checkpoint,
    stylize_without_plots,
    tiny_settings,
    tiny_variables,
)

# --- the seam -----------------------------------------------------------------------------------


def test_every_style_loss_choice_is_registered_and_says_whether_it_tiles():
    assert sorted(REGISTRY) == sorted(STYLE_LOSS_CHOICES)
    for name in REGISTRY:
        statistic = style_statistic(name)
        assert statistic.name == name and statistic.tileable == is_tileable(name)
    assert is_tileable("gram") and is_tileable("w2") and not is_tileable("sw")


# --- sw against numpy -----------------------------------------------------------------------------


def _numpy_quantiles(style_sorted: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """The style's sorted values [K] at quantile `levels`, linearly between (k + 0.5) / K."""
    count = len(style_sorted)
    return np.interp(levels, (np.arange(count) + 0.5) / count, style_sorted)


def _numpy_sw(features, style, step, weights=None) -> float:
    """SW_SCALE · the mean over directions of the weighted squared differences between the
    image's sorted projections and the style's quantiles, in float64."""
    flat = features.reshape(-1, features.shape[-1]).astype(np.float64)
    dirs = sliced.directions(flat.shape[1], step).numpy().astype(np.float64)
    weights = np.ones(len(flat)) if weights is None else np.asarray(weights, np.float64)
    total = 0.0
    for column in range(dirs.shape[1]):
        projected = flat @ dirs[:, column]
        order = np.argsort(projected, kind="stable")
        w = weights[order]
        levels = (np.cumsum(w) - 0.5 * w) / w.sum()
        reference = _numpy_quantiles(np.sort(style.astype(np.float64) @ dirs[:, column]), levels)
        total += np.sum(w * (projected[order] - reference) ** 2) / w.sum()
    return sliced.SW_SCALE * total / dirs.shape[1]


def _features(seed: int, shape) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.maximum(rng.normal(size=shape) @ rng.normal(size=(shape[-1], shape[-1])) + 1, 0)


@pytest.mark.parametrize("style_positions", [42, 17, 90])  # as many, fewer, more
def test_sw_matches_numpy_with_the_same_directions(style_positions):
    features = _features(1, (2, 6, 7, 5)).astype(np.float32)
    style = _features(2, (style_positions, 5)).astype(np.float32)
    statistic = style_statistic("sw")
    values = statistic.loss(tf.constant(features), tf.constant(style[None]), tf.constant(7))
    for image in range(2):
        expected = _numpy_sw(features[image], style, 7)
        assert float(values[image]) == pytest.approx(expected, rel=1e-4)
    # Another step draws other directions, so the loss changes; the same step does not.
    again = statistic.loss(tf.constant(features), tf.constant(style[None]), tf.constant(7))
    other = statistic.loss(tf.constant(features), tf.constant(style[None]), tf.constant(8))
    np.testing.assert_array_equal(values.numpy(), again.numpy())
    assert not np.allclose(values.numpy(), other.numpy())


def test_sw_by_region_weighs_each_position_by_its_guide():
    features = _features(3, (1, 6, 8, 4)).astype(np.float32)
    styles = [_features(seed, (30, 4)).astype(np.float32) for seed in (4, 5)]
    guides = np.zeros((2, 6, 8), np.float32)
    guides[0, :, :5] = 1.0
    guides[1, :, 3:] = np.linspace(0.2, 1.0, 5)  # soft, overlapping the first
    flat = tf.reshape(tf.constant(features), [1, 1, 48, 4])
    weights = tf.constant(guides.reshape(1, 2, 48, 1))
    mass = tf.constant(guides.reshape(2, -1).sum(axis=1))
    targets = tf.constant(np.stack(styles)[None])
    values = style_statistic("sw").region_losses(flat, weights, mass, targets, tf.constant(3))
    for region in range(2):
        expected = _numpy_sw(features[0], styles[region], 3, guides[region].ravel())
        assert float(values[0, region]) == pytest.approx(expected, rel=1e-4)


def test_the_sw_gradient_matches_central_differences():
    features = _features(6, (1, 4, 5, 3))
    style = _features(7, (20, 3)).astype(np.float32)
    variable = tf.constant(features, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(variable)
        value = style_statistic("sw").loss(variable, tf.constant(style[None]), tf.constant(2))
    gradient = tape.gradient(value, variable).numpy()
    step = 1e-4  # small enough that no projection changes its rank
    for index in [(0, 0, 0, 0), (0, 1, 3, 2), (0, 3, 4, 1)]:
        up, down = features.copy(), features.copy()
        up[index] += step
        down[index] -= step
        numeric = (_numpy_sw(up[0], style, 2) - _numpy_sw(down[0], style, 2)) / (2 * step)
        assert gradient[index] == pytest.approx(numeric, rel=1e-3, abs=1e-4)


def test_a_blend_of_sw_styles_pools_their_samples_by_the_shares():
    statistic = style_statistic("sw")
    a, b = np.zeros((40, 2), np.float32), np.ones((40, 2), np.float32)
    blend = statistic.target([a, b], [0.25, 0.75]).numpy()[0]
    assert blend.shape == (40, 2) and np.sum(blend[:, 0] == 1.0) == 30


# --- w2 on rank-deficient features ---------------------------------------------------------------


def _w2_oracle(features: np.ndarray, style: np.ndarray) -> float:
    """W2_SCALE · W2² / N in float64 with scipy's sqrtm, the module's ε in both covariances."""

    def moments(x):
        flat = x.reshape(-1, x.shape[-1]).astype(np.float64)
        mean = flat.mean(axis=0)
        return mean, (flat - mean).T @ (flat - mean) / len(flat)

    (mean, cov), (style_mean, style_cov) = moments(features), moments(style)
    n = len(mean)
    cov, style_cov = cov + wasserstein.COVARIANCE_EPSILON * np.eye(n), style_cov + np.eye(n)
    root = scipy.linalg.sqrtm(style_cov).real
    cross = np.trace(scipy.linalg.sqrtm(root @ cov @ root).real)
    distance = np.sum((mean - style_mean) ** 2) + np.trace(cov + style_cov) - 2 * cross
    return wasserstein.W2_SCALE * distance / n


@pytest.mark.parametrize(
    ("shape", "style_shape", "scale"),
    [
        ((1, 2, 3, 10), (1, 2, 2, 10), 1.0),  # 6 and 4 positions, 10 channels
        ((1, 2, 4, 64), (1, 3, 3, 64), 30.0),  # 8 and 9 positions, 64 channels, VGG's scale
    ],
)
def test_w2_on_rank_deficient_features_matches_scipy_with_its_gradient(shape, style_shape, scale):
    """Fewer positions than channels (a deep layer of a small image): the covariances are
    singular but for ε and the product is ill-conditioned (eigenvalues from 1 to about
    1e6 in the second case). Loss and gradient to 1e-4 of float64 scipy."""
    features = scale * _features(8, shape)
    style = scale * _features(9, style_shape)
    target = wasserstein.blended_target([_stats(style)], [1.0])
    variable = tf.constant(features, tf.float32)
    features = variable.numpy().astype(np.float64)  # what the loss sees
    with tf.GradientTape() as tape:
        tape.watch(variable)
        value = tf.reduce_sum(wasserstein.style_loss_per_image(variable, target))
    gradient = tape.gradient(value, variable).numpy()
    assert float(value) == pytest.approx(_w2_oracle(features, style), rel=1e-4)
    step = 1e-3 * scale
    numeric = np.zeros_like(features)
    for index in np.ndindex(features.shape):
        up, down = features.copy(), features.copy()
        up[index] += step
        down[index] -= step
        numeric[index] = (_w2_oracle(up, style) - _w2_oracle(down, style)) / (2 * step)
    assert np.abs(gradient - numeric).max() < 1e-4 * np.abs(numeric).max()


def _stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    flat = features.reshape(-1, features.shape[-1]).astype(np.float64)
    mean = flat.mean(axis=0)
    return mean, (flat - mean).T @ (flat - mean) / len(flat)


# --- converging at small sizes, with the paper's layers ------------------------------------------

# The real file's 512 channels at the deep layers, where a small image has far fewer
# positions than channels (w2's float32 root went wrong there: with these widths the old
# loss went below zero and diverged at 96 and 128 px), and narrow early layers, which the
# small sizes make cheap.
DEEP = {"widths": (16, 32, 64, 512, 512), "fc_width": 8, "num_classes": 5}


@pytest.fixture(scope="module")
def deep_mat(tmp_path_factory) -> str:
    return save_mat(tmp_path_factory.mktemp("deep") / "deep.mat", tiny_variables(**DEEP))


def _converge(mat: str, style_loss: str, width: int, precision: str) -> tuple[list, int]:
    """200 Adam steps of the shipped settings at `width`: the style losses and the
    divergent steps."""
    from neural_style.media import images

    settings = Settings.from_module(toy_settings, style_loss=style_loss, image_width=width)
    net = VGG19.from_mat(mat, precision=precision)
    content = images.load_image("images/content.jpg", "CONTENT_IMAGE")
    size = images.output_size(content.shape[:2], width, 0)
    content = images.resize_image(content, size)
    style = images.resize_image(images.load_image("images/style.jpg", "STYLE_IMAGE"), size)
    weights = loss_weights(settings)
    targets = Targets(
        content_targets(net, content, weights), style_targets(net, [style], [1.0], weights)
    )
    loss = LossFunction(net, targets, weights)
    optimizer = BatchAdamOptimizer(loss, initial_image(content, 0.5, 0)[None], learning_rate=5.0)
    styles, diverged = [], 0
    for result in optimizer.steps(200):
        styles.append(result.losses[0]["style"])
        diverged += bool(result.notes[0])
    return styles, diverged


@pytest.mark.parametrize(
    ("style_loss", "width", "precision"),
    [
        ("w2", 96, "float32"),
        ("w2", 128, "float32"),
        ("w2", 96, "mixed_bfloat16"),
        ("sw", 96, "float32"),
        ("sw", 128, "float32"),
        ("sw", 96, "mixed_bfloat16"),
    ],
)
@pytest.mark.slow
def test_w2_and_sw_converge_at_small_sizes(deep_mat, style_loss, width, precision):
    """200 Adam steps of the shipped settings from the shipped start: the style loss falls
    at least tenfold, never below zero, with no step diverging."""
    os.chdir(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    styles, diverged = _converge(deep_mat, style_loss, width, precision)
    assert diverged == 0
    assert min(styles) >= 0.0
    assert styles[0] / styles[-1] >= 10.0, (styles[0], styles[-1])


# --- sw through the run --------------------------------------------------------------------------


def test_sw_in_tiles_is_refused_in_one_line(tmp_path, tiny_mat, image_pair):
    settings = tiny_settings(
        tmp_path, tiny_mat, image_pair, style_loss="sw", image_width=160, tile_size=64
    )
    claims = Claims(settings)
    try:
        inputs = plans.plan_inputs(settings, claims)
        with pytest.raises(UserError) as refused:
            plans.plan_run(inputs, on_gpu=False)
    finally:
        claims.release()
    message = str(refused.value)
    assert (
        "\n" not in message and "STYLE_LOSS (--style_loss) sw is not computed in tiles" in message
    )
    assert "TILE_SIZE 64" in message


@pytest.mark.slow
def test_an_sw_run_resumes_exactly(tmp_path, tiny_mat, image_pair):
    """The directions are the step's, so 4 steps and a resume to 8 are 8 steps straight."""
    straight = tiny_settings(
        tmp_path / "a", tiny_mat, image_pair, style_loss="sw", train_steps=8, snapshot_every=4
    )
    stylize_without_plots(straight)
    cut = tiny_settings(
        tmp_path / "b", tiny_mat, image_pair, style_loss="sw", train_steps=4, snapshot_every=4
    )
    stylize_without_plots(cut)
    stylize_without_plots(dataclasses.replace(cut, train_steps=8, resume=True))
    a = saved_checkpoint(f"{straight.output_image}-checkpoint.npz")
    b = saved_checkpoint(f"{cut.output_image}-checkpoint.npz")
    assert a.step == b.step == 8
    for name in ("image", "best_image", "first_moment", "second_moment"):
        np.testing.assert_allclose(
            a.optimizer_state[name], b.optimizer_state[name], rtol=1e-4, atol=1e-3, err_msg=name
        )
