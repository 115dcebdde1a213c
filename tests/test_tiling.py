"""Tiles: the loss and gradient over tiles equal one step over the whole image."""

from __future__ import annotations

import io

import numpy as np
import pytest
import tensorflow as tf

from neural_style.gatys import run
from neural_style.gatys.pipeline import initial_image
from neural_style.losses import tiled_targets
from neural_style.losses.gatys import Targets
from neural_style.losses.style import style_statistic
from neural_style.media.images import load_image
from neural_style.optimize import tiling
from neural_style.optimize.loss_functions import LossFunction
from neural_style.vgg import tile_layout
from neural_style.vgg.mat import read_vgg19_mat
from neural_style.vgg.network import VGG19
from tests.single_image import AdamOptimizer, compute_targets
from tests.support import default_loss_weights, photo, tiny_settings

WEIGHTS = default_loss_weights(tv_weight=0.01)
LAYERS = ["relu4_2", "relu5_2"] + [f"relu{block}_1" for block in range(1, 6)]
# Not multiples of 16, so that the last row and column of tiles end off the grid.
SIZE = (250, 301)


@pytest.fixture(scope="module")
def problem(tiny_mat):
    net = VGG19(read_vgg19_mat(tiny_mat))
    content, style = photo(*SIZE, seed=1), photo(*SIZE, seed=2)
    targets = compute_targets(net, content, [style], [1.0], WEIGHTS)
    images = tf.constant(photo(*SIZE, seed=3)[None])
    return net, targets, content, style, images


def _relative_error(actual, expected) -> float:
    return float(tf.reduce_max(tf.abs(actual - expected)) / tf.reduce_max(tf.abs(expected)))


def test_the_margin_covers_the_receptive_field():
    # relu5_2: 2 + 1 + 4 + 2 + 16 + 4 + 32 + 8 + 32 = 101 pixels to the wider side.
    assert tile_layout.receptive_radius(["relu5_2"]) == 101
    assert tile_layout.receptive_radius(["relu1_1"]) == 1
    assert tile_layout.tile_margin(LAYERS) == 112
    assert tile_layout.layer_stride("relu5_1") == 16
    assert tile_layout.layer_stride("relu1_1") == 1


def test_the_cores_cover_the_image_once_on_the_grid():
    layout = tile_layout.tile_layout(SIZE, (3, 2), margin=112)
    covered = np.zeros(SIZE, np.int32)
    for tile in layout.tiles:
        top, bottom, left, right = tile.core
        covered[top:bottom, left:right] += 1
        assert top % 16 == 0 and left % 16 == 0
        assert bottom % 16 == 0 or bottom == SIZE[0]
        crop = tile.crop
        assert crop[0] == max(top - 112, 0) and crop[1] == min(bottom + 112, SIZE[0])
    assert np.all(covered == 1)
    assert len(layout.tiles) == 6
    assert layout.overhead > 1


@pytest.mark.slow
@pytest.mark.parametrize("grid", [(2, 2), (3, 4)])
def test_tiled_loss_and_gradient_equal_the_whole_image(problem, grid):
    net, targets, _, _, images = problem
    whole = LossFunction(net, targets, WEIGHTS)
    layout = tile_layout.tile_layout(SIZE, grid, tile_layout.tile_margin(LAYERS))
    tiled = tiling.TiledLossFunction(net, targets, WEIGHTS, layout)
    parts, gradient = whole.value_and_gradient(images)
    tiled_parts, tiled_gradient = tiled.value_and_gradient(images)
    for name in parts:
        assert float(tiled_parts[name]) == pytest.approx(float(parts[name]), rel=1e-4), name
    assert _relative_error(tiled_gradient, gradient) < 1e-4


def test_a_margin_short_of_the_receptive_field_gives_a_wrong_gradient(problem):
    net, targets, _, _, images = problem
    _, gradient = LossFunction(net, targets, WEIGHTS).value_and_gradient(images)
    layout = tile_layout.tile_layout(SIZE, (2, 2), margin=32)
    _, tiled_gradient = tiling.TiledLossFunction(net, targets, WEIGHTS, layout).value_and_gradient(
        images
    )
    assert _relative_error(tiled_gradient, gradient) > 1e-2


def test_tiled_targets_equal_the_whole_images(problem):
    net, targets, content, style, _ = problem
    layout = tile_layout.tile_layout(SIZE, (2, 3), tile_layout.tile_margin(LAYERS))
    content_layers = [name for name, _ in WEIGHTS.content_layers]
    style_layers = [name for name, _ in WEIGHTS.style_layers]
    features = tiled_targets.tiled_features(net, content, layout, content_layers)
    grams = tiled_targets.tiled_measures(style_statistic("gram"), net, style, layout, style_layers)
    for name in content_layers:
        assert features[name].shape == tuple(targets.content[name].shape)
        assert _relative_error(features[name], targets.content[name]) < 1e-5
    for name in style_layers:
        assert _relative_error(grams[name], targets.style_grams[name]) < 1e-4


@pytest.mark.slow
def test_adam_on_tiles_takes_the_same_steps_as_on_the_whole_image(problem):
    net, targets, content, _, _ = problem
    layout = tile_layout.tile_layout(SIZE, (2, 2), tile_layout.tile_margin(LAYERS))
    in_tiles = Targets(
        content=tiled_targets.tiled_features(net, content, layout, ["relu4_2", "relu5_2"]),
        style_grams=targets.style_grams,
    )
    runs = []
    for loss in (
        LossFunction(net, targets, WEIGHTS),
        tiling.TiledLossFunction(net, in_tiles, WEIGHTS, layout),
    ):
        optimizer = AdamOptimizer(loss, initial_image(content, 0.5, 0), learning_rate=2.0)
        losses = [result.losses["total"] for result in optimizer.steps(4)]
        runs.append((losses, optimizer.current_image()))
    (losses, image), (tiled_losses, tiled_image) = runs
    assert tiled_losses == pytest.approx(losses, rel=1e-4)
    assert tiled_losses[-1] < tiled_losses[0]
    # Adam divides by the gradient's size, so where a pixel's gradient is ~0 float rounding
    # can flip its step: a handful of pixels may differ by up to the learning rate.
    difference = np.abs(tiled_image - image)
    assert np.mean(difference) < 1e-3
    assert np.mean(difference > 0.05) < 1e-3


def _final_image_and_losses(settings, stream) -> tuple[np.ndarray, dict]:
    result = run.stylize(settings, stream)
    return load_image(result.output_path, "result"), result.losses


@pytest.mark.slow
def test_a_run_in_tiles_writes_the_image_a_run_in_one_piece_writes(tmp_path, tiny_mat, image_pair):
    common = dict(image_width=200, train_steps=3, snapshot_every=0, init="noise")
    whole_stream, tiled_stream = io.StringIO(), io.StringIO()
    whole, whole_losses = _final_image_and_losses(
        tiny_settings(tmp_path / "whole", tiny_mat, image_pair, **common), whole_stream
    )
    tiled, tiled_losses = _final_image_and_losses(
        tiny_settings(tmp_path / "tiled", tiny_mat, image_pair, tile_size=64, **common),
        tiled_stream,
    )
    assert "is computed in" not in whole_stream.getvalue()
    assert "200x167 is computed in 3x4 tiles (TILE_SIZE 64" in tiled_stream.getvalue()
    assert tiled_losses == pytest.approx(whole_losses, rel=1e-4)
    assert np.max(np.abs(tiled - whole)) <= 1
