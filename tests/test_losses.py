"""Each loss against a hand computation, and the objective against a float64 numpy one."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from neural_style.losses.gatys import LossWeights, Targets, content_loss, total_variation_loss
from neural_style.losses.style.gram import gram_matrix, style_loss
from tests.single_image import objective


def test_gram_matrix_by_hand():
    # Two positions (h=1, w=2), two channels: F = [[1, 2], [3, 4]] (rows are positions).
    features = tf.constant([[[[1.0, 2.0], [3.0, 4.0]]]])
    # FᵀF = [[1+9, 2+12], [2+12, 4+16]] = [[10, 14], [14, 20]], divided by M = 2.
    np.testing.assert_allclose(gram_matrix(features).numpy(), [[[5.0, 7.0], [7.0, 10.0]]])


def test_content_loss_by_hand():
    features = tf.constant([[[[1.0, 2.0], [3.0, 4.0]]]])
    target = tf.constant([[[[0.0, 2.0], [3.0, 2.0]]]])
    # sum of squares = 1 + 0 + 0 + 4 = 5; M = 2 positions, N = 2 channels: 5 / (2·2·2).
    assert content_loss(features, target).numpy() == pytest.approx(5 / 8)


def test_style_loss_by_hand():
    features = tf.constant([[[[1.0, 2.0], [3.0, 4.0]]]])
    target_gram = tf.constant([[[5.0, 6.0], [6.0, 8.0]]])
    # G - A = [[0, 1], [1, 2]]: sum of squares 6; N = 2 channels: 6 / (4·4).
    assert style_loss(features, target_gram).numpy() == pytest.approx(6 / 16)


def test_style_loss_is_the_papers_for_unnormalised_grams():
    """Same size: the paper's sum((G-A)²)/(4N²M²) with raw Grams. Another size: each raw Gram
    divided by its own number of positions."""
    rng = np.random.default_rng(0)
    features, same, other = (rng.normal(size=s) for s in [(1, 3, 5, 4), (1, 5, 3, 4), (1, 6, 2, 4)])

    def raw_gram(x):
        flat = x.reshape(-1, 4)
        return flat.T @ flat

    def ours(x, style):
        return style_loss(tf.constant(x, tf.float32), gram_matrix(tf.constant(style, tf.float32)))

    m, n = 15, 4
    paper = np.sum((raw_gram(features) - raw_gram(same)) ** 2) / (4 * n**2 * m**2)
    assert ours(features, same).numpy() == pytest.approx(paper, rel=1e-5)
    per_position = np.sum((raw_gram(features) / 15 - raw_gram(other) / 12) ** 2) / (4 * n**2)
    assert ours(features, other).numpy() == pytest.approx(per_position, rel=1e-5)


def test_total_variation_by_hand():
    image = tf.constant([[[[0.0], [1.0]], [[2.0], [5.0]]]])  # 2x2, one channel
    # vertical differences 2, 4 -> mean square 10; horizontal 1, 3 -> mean square 5.
    assert total_variation_loss(image).numpy() == pytest.approx(15.0)


def test_objective_matches_numpy_in_float64():
    rng = np.random.default_rng(1)
    shapes = {"relu1_1": (1, 8, 10, 3), "relu2_1": (1, 4, 5, 6), "relu4_2": (1, 2, 3, 5)}
    feats = {name: rng.uniform(0, 3, shape) for name, shape in shapes.items()}
    content_target = rng.uniform(0, 3, shapes["relu4_2"])
    style_feats = {name: rng.uniform(0, 3, shapes[name]) for name in ("relu1_1", "relu2_1")}
    images = rng.uniform(0, 255, (1, 8, 10, 3))
    weights = LossWeights(
        content_layers=(("relu4_2", 1.0),),
        style_layers=(("relu1_1", 0.3), ("relu2_1", 0.7)),
        alpha=2.0,
        beta=500.0,
        tv_weight=0.01,
    )

    def gram(x):
        flat = x.reshape(-1, x.shape[-1])
        return flat.T @ flat / flat.shape[0]

    content = np.sum((feats["relu4_2"] - content_target) ** 2) / (2 * 6 * 5)
    style_parts = [
        w * np.sum((gram(feats[n]) - gram(style_feats[n])) ** 2) / (4 * shapes[n][3] ** 2)
        for n, w in weights.style_layers
    ]
    style = sum(style_parts) / 2  # averaged over the two layers
    tv = np.mean(np.diff(images, axis=1) ** 2) + np.mean(np.diff(images, axis=2) ** 2)
    expected_total = 2.0 * content + 500.0 * style + 0.01 * tv

    as_tf = lambda x: tf.constant(x, tf.float32)  # noqa: E731
    targets = Targets(
        content={"relu4_2": as_tf(content_target)},
        style_grams={n: gram_matrix(as_tf(style_feats[n])) for n in ("relu1_1", "relu2_1")},
    )
    total, parts = objective(
        {n: as_tf(f) for n, f in feats.items()}, as_tf(images), targets, weights
    )
    assert parts["content"].numpy() == pytest.approx(content, rel=1e-5)
    assert parts["style"].numpy() == pytest.approx(style, rel=1e-5)
    assert parts["tv"].numpy() == pytest.approx(tv, rel=1e-5)
    assert total.numpy() == pytest.approx(expected_total, rel=1e-5)
    assert parts["total"] is total
