"""The Wasserstein style loss (STYLE_LOSS "w2") against float64 numpy/scipy, its gradient by
finite differences, blends as pooled features, a real run, and gram left as it was."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import tensorflow as tf

from neural_style.errors import UserError
from neural_style.gatys.pipeline import loss_weights
from neural_style.losses.gatys import (
    LossWeights,
    Targets,
    content_loss_per_image,
    total_variation_per_image,
)
from neural_style.losses.style import w2 as wasserstein
from neural_style.losses.style.gram import gram_matrix, style_loss_per_image
from neural_style.losses.targets import content_targets, style_targets
from neural_style.optimize import tiling
from neural_style.optimize.loss_functions import LossFunction
from neural_style.vgg import tile_layout
from tests.support import default_loss_weights, photo, stylize_without_plots, tiny_settings

EPS = wasserstein.COVARIANCE_EPSILON


def _stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    flat = features.reshape(-1, features.shape[-1]).astype(np.float64)
    mean = flat.mean(axis=0)
    return mean, (flat - mean).T @ (flat - mean) / len(flat)


def _oracle(features: np.ndarray, style_mean: np.ndarray, style_cov: np.ndarray) -> float:
    """W2_SCALE · W2² / N in float64, with scipy's sqrtm and the module's ε."""
    mean, cov = _stats(features)
    n = len(mean)
    cov, style_cov = cov + EPS * np.eye(n), style_cov + EPS * np.eye(n)
    root = scipy.linalg.sqrtm(style_cov).real
    cross = np.trace(scipy.linalg.sqrtm(root @ cov @ root).real)
    distance = np.sum((mean - style_mean) ** 2) + np.trace(cov + style_cov) - 2 * cross
    return wasserstein.W2_SCALE * distance / n


def _features(seed: int, shape=(1, 6, 7, 5)) -> np.ndarray:
    # ReLU-like: non-negative, correlated channels, as VGG's are.
    rng = np.random.default_rng(seed)
    mixed = rng.normal(size=shape) @ rng.normal(size=(shape[-1], shape[-1]))
    return np.maximum(mixed * 3.0 + 2.0, 0.0)


def _loss(features: np.ndarray, target: tf.Tensor) -> float:
    return float(wasserstein.style_loss_per_image(tf.constant(features, tf.float32), target)[0])


def test_the_loss_matches_scipy_in_float64():
    features, style = _features(0), _features(1, (1, 5, 8, 5))
    target = wasserstein.blended_target([_stats(style)], [1.0])
    assert _loss(features, target) == pytest.approx(_oracle(features, *_stats(style)), rel=1e-4)
    # A batch: each image against the shared target, independently.
    batch = np.concatenate([features, _features(2)])
    values = wasserstein.style_loss_per_image(tf.constant(batch, tf.float32), target).numpy()
    expected = [_oracle(batch[i : i + 1], *_stats(style)) for i in range(2)]
    np.testing.assert_allclose(values, expected, rtol=1e-4)


def test_the_trace_of_the_root_and_its_gradient_are_exact():
    """tr(A^½) and ½ A^-½ against scipy in float64, also for repeated eigenvalues (whose
    eigenvectors are arbitrary) and for a product of rank-deficient covariances."""
    rng = np.random.default_rng(3)
    a = rng.normal(size=(7, 7))
    deficient = rng.normal(size=(7, 2))  # rank 2, as deep layers of small images
    matrices = [
        a @ a.T + 0.01 * np.eye(7),  # condition number about 1e4
        np.eye(7) * 3.0,  # one eigenvalue, seven times
        deficient @ deficient.T + EPS * np.eye(7),
    ]
    for matrix in matrices:
        variable = tf.constant(matrix[None], tf.float64)
        with tf.GradientTape() as tape:
            tape.watch(variable)
            value = wasserstein.trace_of_root(variable)
        gradient = tape.gradient(value, variable)[0].numpy()
        root = scipy.linalg.sqrtm(matrix).real
        assert float(value[0]) == pytest.approx(np.trace(root), rel=1e-10)
        np.testing.assert_allclose(gradient, 0.5 * np.linalg.inv(root), rtol=1e-8, atol=1e-12)


def test_the_gradient_matches_central_differences():
    features, style = _features(4), _features(5)
    target = wasserstein.blended_target([_stats(style)], [1.0])
    variable = tf.constant(features, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(variable)
        value = tf.reduce_sum(wasserstein.style_loss_per_image(variable, target))
    gradient = tape.gradient(value, variable).numpy()
    step = 1e-4
    for index in [(0, 0, 0, 0), (0, 2, 3, 1), (0, 5, 6, 4), (0, 3, 1, 2)]:
        up, down = features.copy(), features.copy()
        up[index] += step
        down[index] -= step
        numeric = (_oracle(up, *_stats(style)) - _oracle(down, *_stats(style))) / (2 * step)
        assert gradient[index] == pytest.approx(numeric, rel=2e-3, abs=1e-4)


def test_the_loss_is_zero_at_the_style_itself():
    style = _features(6)
    target = wasserstein.blended_target([_stats(style)], [1.0])
    mean, cov = _stats(style)
    scale = (np.sum(mean**2) + np.trace(cov)) / len(mean)  # the loss's order of magnitude
    assert abs(_loss(style, target)) < 1e-5 * scale * wasserstein.W2_SCALE
    assert _loss(_features(7), target) > 1e-2 * scale  # and not zero elsewhere


def test_a_blend_is_the_two_styles_pooled_with_its_weights():
    a, b = _features(8, (1, 4, 5, 5)), _features(9, (1, 4, 5, 5))
    blended = wasserstein.blended_target([_stats(a), _stats(b)], [0.25, 0.75])
    # Equal counts of positions: weights 1:3 are a once and b three times, pooled.
    pooled = np.concatenate([a, b, b, b], axis=1)
    np.testing.assert_allclose(
        blended.numpy(), wasserstein.blended_target([_stats(pooled)], [1.0]).numpy(), rtol=1e-5
    )
    features = _features(10)
    assert _loss(features, blended) == pytest.approx(_oracle(features, *_stats(pooled)), rel=1e-4)


def test_style_targets_blend_styles_through_the_network(tiny_net):
    weights = default_loss_weights()._replace(style_loss="w2")
    a, b = photo(32, 40, seed=2), photo(32, 40, seed=3)[::-1]
    blended = style_targets(tiny_net, [a, b], [1.0, 3.0], weights)
    features = {
        image.tobytes(): tiny_net.features(image[None], ["relu3_1"])["relu3_1"] for image in (a, b)
    }
    pooled = np.concatenate([features[a.tobytes()], *[features[b.tobytes()]] * 3], axis=1)
    expected = wasserstein.blended_target([_stats(np.asarray(pooled))], [1.0])
    np.testing.assert_allclose(blended["relu3_1"].numpy(), expected.numpy(), rtol=1e-4, atol=1e-4)


def test_gram_is_the_loss_it_was(tiny_net):
    """STYLE_LOSS gram: the loss and gradient are bit-for-bit those of the Gram objective
    written out from the loss functions themselves."""
    weights = default_loss_weights(tv_weight=0.01)
    assert weights.style_loss == "gram"
    content, style = photo(32, 40, seed=4), photo(32, 40, seed=5)
    targets = Targets(
        content_targets(tiny_net, content, weights),
        style_targets(tiny_net, [style], [1.0], weights),
    )
    for name, gram in targets.style_grams.items():
        features = tiny_net.features(style[None], [name])[name]
        np.testing.assert_array_equal(gram.numpy(), gram_matrix(features).numpy())
    images = tf.constant(photo(32, 40, seed=6)[None])

    # Traced as LossFunction's is (shapes unknown), so the same kernels run.
    @tf.function(
        input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)], autograph=False
    )
    def by_hand(images):
        with tf.GradientTape() as tape:
            tape.watch(images)
            features = tiny_net(
                images,
                sorted(
                    {n for n, _ in weights.content_layers} | {n for n, _ in weights.style_layers}
                ),
            )
            content = (
                tf.add_n(
                    [
                        w * content_loss_per_image(features[n], targets.content[n])
                        for n, w in weights.content_layers
                    ]
                )
                / 2
            )
            style = (
                tf.add_n(
                    [
                        w * style_loss_per_image(features[n], targets.style_grams[n])
                        for n, w in weights.style_layers
                    ]
                )
                / 5
            )
            total = 1.0 * content + 500.0 * style + 0.01 * total_variation_per_image(images)
        return total, tape.gradient(total, images)

    parts, gradient = LossFunction(tiny_net, targets, weights).value_and_gradient(images)
    total, expected_gradient = by_hand(images)
    assert parts["total"].numpy() == total.numpy()[0]
    np.testing.assert_array_equal(gradient.numpy(), expected_gradient.numpy())


def _style_losses(path) -> list[float]:
    with open(path) as file:
        return [float(row["style"]) for row in csv.DictReader(file)]


# Two style layers instead of five: a w2 graph traces one square root per layer, and the
# runs below test the wiring, not the layers (the oracle tests above cover the loss).
RUN_STYLE_LAYERS = (("relu1_1", 1.0), ("relu3_1", 1.0))


@pytest.mark.slow
def test_a_w2_run_lowers_the_style_loss(tmp_path, tiny_mat, image_pair):
    settings = tiny_settings(
        tmp_path,
        tiny_mat,
        image_pair,
        style_loss="w2",
        train_steps=5,
        style_loss_layers=RUN_STYLE_LAYERS,
    )
    assert loss_weights(settings).style_loss == "w2"
    inputs = {path: Path(path).read_bytes() for path in image_pair}
    result, _ = stylize_without_plots(settings)
    styles = _style_losses(tmp_path / "out" / "result-losses.csv")
    assert len(styles) == 5 and all(np.isfinite(styles))
    assert styles[-1] < 0.9 * styles[0]
    assert result.steps == 5
    assert {path: Path(path).read_bytes() for path in image_pair} == inputs


@pytest.mark.slow
def test_w2_runs_coarse_to_fine_and_with_lbfgs(tmp_path, tiny_mat, image_pair):
    # One style layer: each stage traces its own graph, and the run above has two layers.
    settings = tiny_settings(
        tmp_path,
        tiny_mat,
        image_pair,
        style_loss="w2",
        style_loss_layers=RUN_STYLE_LAYERS[:1],
        coarse_to_fine=(32, 40),
        coarse_to_fine_steps=(2, 2),
        optimizer="lbfgs",
    )
    result, _ = stylize_without_plots(settings)
    assert result.steps == 4 and np.isfinite(result.losses["style"])


def test_a_bad_style_loss_is_one_line(tmp_path, tiny_mat, image_pair):
    with pytest.raises(UserError) as caught:
        tiny_settings(tmp_path, tiny_mat, image_pair, style_loss="wasserstein")
    message = str(caught.value)
    assert "\n" not in message
    assert "STYLE_LOSS (--style_loss) must be one of gram, w2" in message
    assert "'wasserstein'" in message


@pytest.mark.slow
def test_w2_in_tiles_equals_the_whole_image(tiny_net):
    # The shallowest and the deepest style layer: each layer traces its own square root
    # (all five took 15 s here), and what is summed over tiles is the same for each.
    weights = default_loss_weights(tv_weight=0.01)._replace(
        style_loss="w2", style_layers=(("relu1_1", 0.5), ("relu5_1", 0.5))
    )
    size = (150, 170)  # not multiples of 16: the last tiles end off the grid
    content, style = photo(*size, seed=11), photo(*size, seed=12)[::-1]
    layers = sorted({n for n, _ in weights.content_layers + weights.style_layers})
    layout = tile_layout.tile_layout(size, (2, 3), tile_layout.tile_margin(layers))
    whole_targets = Targets(
        content_targets(tiny_net, content, weights),
        style_targets(tiny_net, [style], [1.0], weights),
    )
    # The style's moments summed over tiles of about 64 px equal the whole image's.
    tiled_style = style_targets(tiny_net, [style], [1.0], weights, tile_side=64)
    for name, target in whole_targets.style_grams.items():
        np.testing.assert_allclose(tiled_style[name].numpy(), target.numpy(), rtol=1e-4, atol=1e-3)
    images = tf.constant(photo(*size, seed=13)[None])
    parts, gradient = LossFunction(tiny_net, whole_targets, weights).value_and_gradient(images)
    tiled = tiling.TiledLossFunction(tiny_net, whole_targets, weights, layout)
    tiled_parts, tiled_gradient = tiled.value_and_gradient(images)
    for name in parts:
        assert float(tiled_parts[name]) == pytest.approx(float(parts[name]), rel=1e-4), name
    error = np.abs(tiled_gradient.numpy() - gradient.numpy()).max()
    assert error < 1e-3 * np.abs(gradient.numpy()).max()


@pytest.mark.slow
def test_a_w2_run_in_tiles_lowers_the_style_loss(tmp_path, tiny_mat, image_pair):
    settings = tiny_settings(
        tmp_path,
        tiny_mat,
        image_pair,
        style_loss="w2",
        tile_size=64,
        image_width=150,
        style_loss_layers=RUN_STYLE_LAYERS,
    )
    _, printed = stylize_without_plots(settings)
    assert "is computed in" in printed  # it did run in tiles
    styles = _style_losses(tmp_path / "out" / "result-losses.csv")
    assert styles[-1] < 0.9 * styles[0]


def test_loss_weights_default_to_gram():
    weights = LossWeights((("relu4_2", 1.0),), (("relu1_1", 1.0),), 1.0, 1.0, 0.0)
    assert weights.style_loss == "gram"
