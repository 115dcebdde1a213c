"""Styles by region (STYLE_MASKS, STYLE_IMAGE_MASKS) and the content mask, each checked by
its effect: each half of a two-style result is nearer its own style, an all-white mask is
the run without masks, the guided losses are exact in tiles, and bad masks are one line."""

from __future__ import annotations

import dataclasses
import io
import re

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from neural_style.errors import UserError
from neural_style.gatys import run
from neural_style.losses import masks, weighted
from neural_style.losses.gatys import Targets
from neural_style.losses.style.gram import gram_matrix
from neural_style.losses.targets import content_targets, style_targets
from neural_style.losses.weighted import weighted_moments
from neural_style.media.images import load_image, load_mask
from neural_style.optimize import memory, tiling
from neural_style.optimize.loss_functions import LossFunction
from neural_style.vgg import tile_layout
from tests.support import (
    default_loss_weights,
    pattern_clip,
    photo,
    run_train,
    tiny_settings,
    write_image,
)

STYLE_LAYERS = (("relu1_1", 0.2), ("relu2_1", 0.2), ("relu3_1", 0.2), ("relu4_1", 0.2))


def _mask_file(path, mask: np.ndarray) -> str:
    Image.fromarray(np.round(np.clip(mask, 0, 1) * 255).astype(np.uint8)).save(str(path))
    return str(path)


@pytest.fixture
def two_styles(tmp_path) -> dict:
    """A 48x64 photo, two styles far apart (red stripes, blue and yellow grid), and masks
    of the photo's left and right halves, as files."""
    red = np.zeros((48, 48, 3), np.float32)
    red[:, ::4] = (250, 60, 20)
    blue = np.zeros((48, 48, 3), np.float32)
    blue[::6, :] = (20, 80, 240)
    blue[:, 1::7] = (240, 240, 0)
    left = np.zeros((48, 64), np.float32)
    left[:, :32] = 1
    return {
        "content": write_image(tmp_path / "photo.png", photo(48, 64, seed=1)),
        "styles": (
            write_image(tmp_path / "red.png", red),
            write_image(tmp_path / "blue.png", blue),
        ),
        "masks": (
            _mask_file(tmp_path / "left.png", left),
            _mask_file(tmp_path / "right.png", 1 - left),
        ),
        "left": left,
    }


def _settings(tmp_path, tiny_mat, files, **overrides):
    values = dict(
        style_image=files["styles"],
        style_masks=files["masks"],
        image_width=64,
        train_steps=30,
        snapshot_every=0,
        print_every=100,
        output_format="png",
        style_loss_layers=STYLE_LAYERS,
    )
    return tiny_settings(
        tmp_path, tiny_mat, (files["content"], files["styles"][0]), **{**values, **overrides}
    )


def _stylize(settings):
    return load_image(run.stylize(settings, io.StringIO()).output_path, "OUTPUT")


# --- the guided statistics against plain ones ---------------------------------------------------


def test_a_binary_guide_gives_its_region_the_gram_of_its_own_image():
    features = tf.constant(np.random.default_rng(0).normal(size=(2, 6, 8, 5)), tf.float32)
    guides = np.zeros((2, 6, 8), np.float32)
    guides[0, :, :3] = 1  # left 3 columns
    guides[1, 2:, :] = 1  # bottom 4 rows
    grams = weighted.guided_grams(features, tf.constant(guides)).numpy()
    np.testing.assert_allclose(grams[:, 0], gram_matrix(features[:, :, :3]).numpy(), rtol=1e-5)
    np.testing.assert_allclose(grams[:, 1], gram_matrix(features[:, 2:, :]).numpy(), rtol=1e-5)
    # The loss weighs each region by the fraction it covers: 3/8 and 4/6 of the positions.
    np.testing.assert_allclose(weighted.region_fractions(tf.constant(guides)), [3 / 8, 4 / 6])


def test_guided_moments_are_the_weighted_mean_and_covariance():
    rng = np.random.default_rng(1)
    features = rng.normal(size=(1, 5, 7, 4))
    weights = rng.uniform(0, 1, size=(5, 7))
    mean, covariance = weighted.guided_moments(
        tf.constant(features, tf.float32), tf.constant(weights[None], tf.float32)
    )
    expected_mean, expected_covariance = weighted_moments(features.reshape(-1, 4), weights.ravel())
    np.testing.assert_allclose(mean[0, 0], expected_mean, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(covariance[0, 0], expected_covariance, rtol=1e-4, atol=1e-5)


def test_a_mask_is_averaged_over_each_layers_blocks():
    mask = np.zeros((40, 36), np.float32)
    mask[:, :18] = 1
    guides = masks.layer_guides([mask], (40, 36), ["relu1_1", "relu3_1", "relu5_1"])
    assert guides["relu1_1"].shape == (1, 40, 36)
    assert guides["relu3_1"].shape == (1, 10, 9)  # stride 4
    assert guides["relu5_1"].shape == (1, 2, 2)  # stride 16, VALID: the last pixels dropped
    np.testing.assert_allclose(guides["relu3_1"][0, :, 4], 0.5)  # columns 16..19: half white
    np.testing.assert_allclose(guides["relu5_1"][0], [[1, 2 / 16], [1, 2 / 16]])


# --- the effect of the masks ----------------------------------------------------------------------


def _distances(net, image, files, layers) -> dict:
    """{layer: [[left to red, left to blue], [right to red, right to blue]]}: squared
    distances of each half's guided Gram to each style's Gram."""
    style_features = [net.features(load_image(path, "S")[None], layers) for path in files["styles"]]
    halves = masks.layer_guides([files["left"], 1 - files["left"]], image.shape[:2], layers)
    features = net.features(image[None], layers)
    found = {}
    for name in layers:
        grams = weighted.guided_grams(features[name], halves[name])[0].numpy()
        styles = [gram_matrix(each[name])[0].numpy() for each in style_features]
        found[name] = [[float(np.sum((half - style) ** 2)) for style in styles] for half in grams]
    return found


@pytest.mark.slow
@pytest.mark.parametrize("style_loss", ["gram", "w2", "sw"])
def test_each_half_ends_nearer_its_own_style_at_every_layer(
    tmp_path, tiny_mat, tiny_net, two_styles, style_loss
):
    steps = 30 if style_loss == "gram" else 12  # w2 traces a square root per layer
    settings = _settings(tmp_path, tiny_mat, two_styles, style_loss=style_loss, train_steps=steps)
    result = _stylize(settings)
    layers = [name for name, _ in STYLE_LAYERS]
    for name, ((left_red, left_blue), (right_red, right_blue)) in _distances(
        tiny_net, result, two_styles, layers
    ).items():
        assert left_red < left_blue, name
        assert right_blue < right_red, name
    if style_loss == "gram":
        # Swapping the masks swaps the styles: the halves are the masks' doing.
        swapped = dataclasses.replace(
            settings, style_masks=two_styles["masks"][::-1], output_image=str(tmp_path / "swap")
        )
        distances = _distances(tiny_net, _stylize(swapped), two_styles, layers)
        assert all(d[0][1] < d[0][0] and d[1][0] < d[1][1] for d in distances.values())


@pytest.mark.slow
def test_all_white_masks_are_the_run_without_masks(tmp_path, tiny_mat, two_styles):
    white = _mask_file(tmp_path / "white.png", np.ones((24, 32)))  # any size of that shape
    style = two_styles["styles"][:1]
    plain = _settings(
        tmp_path, tiny_mat, two_styles, style_image=style, style_masks=(), train_steps=6
    )
    masked = dataclasses.replace(
        plain,
        style_masks=(white,),
        style_image_masks=(_mask_file(tmp_path / "w.png", np.ones((48, 48))),),
        content_mask=white,
        output_image=str(tmp_path / "masked"),
    )
    difference = np.abs(_stylize(masked) - _stylize(plain))
    assert difference.max() <= 1.0  # 8-bit PNGs: at most one level of rounding
    assert difference.mean() < 0.01


def _half_content_errors(net, image, photo_pixels, left, layers) -> dict:
    """{layer: (mean squared feature error on the left half, on the right half)}."""
    halves = masks.layer_guides([left, 1 - left], image.shape[:2], layers)
    result, original = net.features(image[None], layers), net.features(photo_pixels[None], layers)
    errors = {}
    for name in layers:
        squared = np.sum((result[name][0].numpy() - original[name][0].numpy()) ** 2, axis=2)
        errors[name] = tuple(np.sum(squared * half) / np.sum(half) for half in halves[name])
    return errors


@pytest.mark.slow
def test_the_content_mask_holds_the_photo_where_it_is_white(
    tmp_path, tiny_mat, tiny_net, two_styles
):
    # ALPHA high enough that the content loss, not the style, leads the tiny network's run.
    settings = _settings(
        tmp_path,
        tiny_mat,
        two_styles,
        style_masks=(),
        style_image=two_styles["styles"][:1],
        alpha=5000.0,
        train_steps=25,
    )
    masked = dataclasses.replace(
        settings, content_mask=two_styles["masks"][0], output_image=str(tmp_path / "masked")
    )
    photo_pixels = load_image(two_styles["content"], "CONTENT_IMAGE")
    layers = [name for name, _ in settings.content_loss_layers]
    without, held = (
        _half_content_errors(tiny_net, _stylize(each), photo_pixels, two_styles["left"], layers)
        for each in (settings, masked)
    )
    for name in layers:
        # Only the left half is held to the photo, so its share of the error falls.
        left_share_without = without[name][0] / without[name][1]
        left_share_held = held[name][0] / held[name][1]
        assert left_share_held < 0.7 * left_share_without, (name, without[name], held[name])


def test_a_style_image_mask_takes_the_style_of_its_region_only(tiny_net):
    weights = default_loss_weights()._replace(style_layers=STYLE_LAYERS)
    style = photo(64, 128, seed=3)
    style[:, 64:] = 255 - style[:, 64:, ::-1]  # other colours on the right
    left = np.zeros((64, 128), np.float32)
    left[:, :64] = 1
    layers = [name for name, _ in STYLE_LAYERS]
    region = style_targets(tiny_net, [style], [1.0], weights, image_masks=[left])
    whole = style_targets(tiny_net, [style], [1.0], weights)
    features = tiny_net.features(style[None], layers)
    for name in layers:
        # The Gram of the left half's positions (64 px is on every layer's grid)...
        half = features[name][:, :, : features[name].shape[2] // 2]
        np.testing.assert_allclose(region[name], gram_matrix(half), rtol=1e-4, atol=1e-3)
        # ...which is not the whole image's.
        assert np.abs(region[name] - whole[name]).max() > 0.05 * np.abs(whole[name]).max()


# --- exact in tiles -------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("style_loss", ["gram", "w2"])  # sw is not computed in tiles
def test_guided_losses_in_tiles_equal_the_whole_image(tiny_net, style_loss):
    weights = default_loss_weights(tv_weight=0.01)._replace(
        style_layers=STYLE_LAYERS[:2] if style_loss == "w2" else STYLE_LAYERS,
        style_loss=style_loss,
    )
    size = (150, 170)  # not multiples of 16: the last tiles end off the grid
    content, style = photo(*size, seed=11), photo(*size, seed=12)[::-1]
    y, x = np.mgrid[0 : size[0], 0 : size[1]].astype(np.float32)
    soft = np.clip(x / size[1] * 1.5 - 0.2, 0, 1)  # a soft edge, grey in the middle
    style_layers = [name for name, _ in weights.style_layers]
    content_layers = [name for name, _ in weights.content_layers]
    image_mask = np.clip(y / size[0], 0, 1)
    region_styles = style_targets(
        tiny_net,
        [style, style[:, ::-1]],
        [1, 1],
        weights,
        image_masks=[image_mask, None],
        regions=True,
    )
    # A style image's guided statistics summed over tiles of about 64 px equal the whole's.
    tiled_styles = style_targets(
        tiny_net,
        [style, style[:, ::-1]],
        [1, 1],
        weights,
        tile_side=64,
        image_masks=[image_mask, None],
        regions=True,
    )
    for name in style_layers:
        np.testing.assert_allclose(tiled_styles[name], region_styles[name], rtol=1e-4, atol=1e-3)
    targets = Targets(
        content_targets(tiny_net, content, weights),
        region_styles,
        style_guides={
            k: tf.constant(v)
            for k, v in masks.layer_guides([soft, 1 - soft], size, style_layers).items()
        },
        content_guides={
            k: tf.constant(v[0])
            for k, v in masks.layer_guides([1 - soft], size, content_layers).items()
        },
    )
    layout = tile_layout.tile_layout(
        size, (2, 3), tile_layout.tile_margin(style_layers + content_layers)
    )
    images = tf.constant(photo(*size, seed=13)[None])
    parts, gradient = LossFunction(tiny_net, targets, weights).value_and_gradient(images)
    tiled_parts, tiled_gradient = tiling.TiledLossFunction(
        tiny_net, targets, weights, layout
    ).value_and_gradient(images)
    for name in parts:
        assert float(tiled_parts[name]) == pytest.approx(float(parts[name]), rel=1e-4), name
    error = np.abs(tiled_gradient.numpy() - gradient.numpy()).max()
    assert error < 1e-3 * np.abs(gradient.numpy()).max()


# --- with the other controls ------------------------------------------------------------------


def _assert_halves_follow_their_styles(net, image, files, layers):
    for name, ((left_red, left_blue), (right_red, right_blue)) in _distances(
        net, image, files, layers
    ).items():
        assert left_red < left_blue and right_blue < right_red, name


@pytest.mark.slow
def test_masks_with_coarse_to_fine_lbfgs_and_16_bits(tmp_path, tiny_mat, tiny_net, two_styles):
    whole = _mask_file(tmp_path / "style-region.png", np.ones((48, 48)))
    settings = _settings(
        tmp_path,
        tiny_mat,
        two_styles,
        optimizer="lbfgs",
        coarse_to_fine=(32, 64),
        coarse_to_fine_steps=(10, 15),
        style_image_masks=("whole", whole),
        content_mask=two_styles["masks"][0],
        output_format="png16",
    )
    result = run.stylize(settings, io.StringIO())
    assert result.output_path.endswith(".png")
    with open(result.output_path, "rb") as saved:
        assert saved.read(26)[24] == 16  # IHDR's bit depth: 16 bits a channel
    image = load_image(result.output_path, "OUTPUT")
    assert image.shape == (48, 64, 3)
    _assert_halves_follow_their_styles(tiny_net, image, two_styles, [n for n, _ in STYLE_LAYERS])


@pytest.mark.slow
def test_a_batch_shares_the_masks_and_a_photo_of_another_shape_fails_alone(
    tmp_path, tiny_mat, two_styles
):
    folder = tmp_path / "photos"
    folder.mkdir()
    first = write_image(folder / "a.png", load_image(two_styles["content"], "C"))
    write_image(folder / "b.png", photo(48, 64, seed=5))
    write_image(folder / "c-square.png", photo(64, 64, seed=6))
    settings = _settings(tmp_path, tiny_mat, two_styles, batch_size=2, train_steps=8)
    stream = io.StringIO()
    batch = run.stylize(dataclasses.replace(settings, content_image=str(folder)), stream)
    assert len(batch.results) == 2
    [(failed, why)] = batch.failures
    assert failed.endswith("c-square.png") and "another shape" in why and "\n" not in why
    alone = _stylize(
        dataclasses.replace(settings, content_image=first, output_image=str(tmp_path / "alone"))
    )
    in_batch = load_image(batch.results[0].output_path, "OUTPUT")
    assert np.abs(in_batch - alone).max() <= 2.0  # the batch's photo as it is alone


@pytest.mark.slow
def test_a_video_is_stylised_by_region_frame_by_frame(tmp_path, tiny_mat, tiny_net, two_styles):
    clip = pattern_clip(tmp_path / "clip.mp4", frames=3, size="64x48")
    settings = _settings(
        tmp_path,
        tiny_mat,
        two_styles,
        content_image=clip,
        train_steps=30,
        frame_steps=10,
        flow_preset="ultrafast",
    )
    run.stylize(settings, io.StringIO())
    frames = sorted((tmp_path / "out" / "result-frames").iterdir())
    assert len(frames) == 3
    layers = [n for n, _ in STYLE_LAYERS]
    for frame in (frames[0], frames[-1]):
        _assert_halves_follow_their_styles(
            tiny_net, load_image(str(frame), "F"), two_styles, layers
        )
    wide = _mask_file(tmp_path / "wide.png", np.ones((36, 64)))
    with pytest.raises(UserError, match=r"wide.png: the mask is 64x36 but the video .* is 64x48"):
        run.stylize(dataclasses.replace(settings, content_mask=wide, overwrite=True), io.StringIO())


# --- bad masks ----------------------------------------------------------------------------------


def test_bad_masks_are_one_line_before_anything_is_written(tmp_path, tiny_mat, two_styles):
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    black = _mask_file(tmp_path / "black.png", np.zeros((48, 64)))
    square = _mask_file(tmp_path / "square.png", np.ones((64, 64)))
    settings = _settings(tmp_path, tiny_mat, two_styles)
    left, right = two_styles["masks"]
    cases = {
        "style_masks": [
            ((str(text), right), "notes.png: not an image file PIL can read; set STYLE_MASKS"),
            ((black, right), "black.png: the mask is all black, so it marks no region"),
            ((left, square), "square.png: the mask is 64x64 but the photo"),
            ((left, str(tmp_path / "gone.png")), "gone.png: no such file; set STYLE_MASKS"),
        ],
        "style_image_masks": [((left, "whole"), "left.png: the mask is 64x48 but style")],
        "content_mask": [(black, "black.png: the mask is all black")],
    }
    for name, values in cases.items():
        for value, expected in values:
            with pytest.raises(UserError) as caught:
                run.stylize(dataclasses.replace(settings, **{name: value}), io.StringIO())
            message = str(caught.value)
            assert expected in message and "\n" not in message, message
    # Nothing was written for any of them (the claimed output folder stays empty).
    assert not list((tmp_path / "out").iterdir())


def test_mask_settings_that_cannot_work_are_refused(tmp_path, tiny_mat, two_styles):
    left = two_styles["masks"][0]
    cases = [
        ({"style_masks": (left,)}, "STYLE_MASKS (--style_masks) has 1 masks for 2 style images"),
        ({"style_image_masks": (left, " ")}, "has an empty path; write 'whole'"),
        ({"style_blend_weights": (1.0, 2.0)}, "set one of them, not both"),
    ]
    for overrides, expected in cases:
        with pytest.raises(UserError, match=re.escape(expected)):
            _settings(tmp_path, tiny_mat, two_styles, **overrides)


def test_train_py_reports_a_bad_mask_in_one_line(tmp_path, tiny_mat, two_styles):
    black = _mask_file(tmp_path / "black.png", np.zeros((48, 64)))
    done = run_train(
        f"--content_image={two_styles['content']}",
        f"--style_image={two_styles['styles'][0]}",
        f"--style_masks={black}",
        f"--vgg_model_path={tiny_mat}",
        f"--output_image={tmp_path / 'out' / 'result'}",
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"error: {black}: the mask is all black, so it marks no region; paint the region white "
        "(grey blends), write 'whole' for the whole image, or set STYLE_MASKS in settings.py or "
        "pass --style_masks=PATH"
    ]


def test_a_mask_is_read_as_grey_and_transparency_is_black(tmp_path):
    stroke = np.zeros((40, 40, 4), np.uint8)
    stroke[10:20, :, :] = (255, 255, 255, 255)  # a white stroke on a transparent layer
    stroke[30:, :, :3] = 255  # white but fully transparent
    Image.fromarray(stroke, "RGBA").save(tmp_path / "stroke.png")
    mask = load_mask(str(tmp_path / "stroke.png"), "STYLE_MASKS")
    assert mask.shape == (40, 40)
    assert np.all(mask[10:20] == 1) and np.all(mask[:10] == 0) and np.all(mask[30:] == 0)
    grey = np.linspace(0, 65535, 32 * 40).reshape(32, 40).astype(np.uint16)
    Image.fromarray(grey).save(tmp_path / "grey16.png")
    np.testing.assert_allclose(
        load_mask(str(tmp_path / "grey16.png"), "CONTENT_MASK"), grey / 65535, atol=1e-6
    )


def test_a_step_with_masks_is_planned_with_their_memory():
    size = (1536, 2048)
    one = memory.step_bytes(size, "float32")
    two = memory.step_bytes(size, "float32", regions=2)
    # Each region keeps a weighted float32 copy of the loss layers' features.
    assert two > one * 1.05
    available = int((one + two) / 2 / memory.USABLE_FRACTION)
    assert not memory.plan_step(size, "float32", available=available).tiled
    assert memory.plan_step(size, "float32", available=available, regions=2).tiled
