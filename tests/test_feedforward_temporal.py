"""The trained network's temporal stability: the synthetic-motion loss of training
(NETWORK_TEMPORAL_WEIGHT, neural_style/feedforward/temporal.py) and the flow blend of
stylising a video (STYLIZE_VIDEO_BLEND, neural_style/feedforward/video.py).

The warp's flow is checked against a known shift and against media.flow.warp; the
loss on networks that do and do not commute with the motion, with its gradient; the
training step with the weight at 0 against the plain perceptual loss; the blend on a real
H.264 pan made here, measured with media.flow's warping error.
"""

import csv
import io
import os
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from neural_style.errors import UserError
from neural_style.feedforward.model import build_transformer, load_network
from neural_style.feedforward.stylizing.run import Stylizer, stylize_input
from neural_style.feedforward.training import temporal
from neural_style.feedforward.training.loss import PerceptualLoss
from neural_style.feedforward.training.trainer import Trainer
from neural_style.losses.gatys import LossWeights
from neural_style.media import flow, video_io, video_write
from neural_style.settings.network import NetworkSettings
from neural_style.vgg.network import VGG19
from tests import toy_settings as settings
from tests.support import (
    StartedEarly,
    h264_clip,
    is_selected,
    photo,
    stylize_settings,
    write_image,
)

SIZE = 32


def shifts(dx: float, dy: float, count: int = 1) -> tf.Tensor:
    zeros = tf.zeros([count])
    return temporal.affine_transforms(
        zeros, tf.ones([count]), zeros + dx, zeros + dy, height=SIZE, width=SIZE
    )


# --- the synthetic motion ------------------------------------------------------------------


def test_a_known_shift_moves_a_feature_by_that_shift_and_is_its_exact_flow():
    image = np.zeros((1, SIZE, SIZE, 3), np.float32)
    image[0, 10, 12] = 255.0  # a dot at x 12, y 10
    transforms = shifts(3.0, -2.0)
    moved = temporal.warp_images(tf.constant(image), transforms).numpy()[0]
    # Sampled at x + (3, -2): the dot is now 3 px left of and 2 px below where it was.
    assert np.argwhere(moved[..., 0] > 0).tolist() == [[12, 9]]
    assert moved[12, 9, 0] == pytest.approx(255.0)
    exact = temporal.transform_flow(transforms, SIZE, SIZE).numpy()[0]
    np.testing.assert_allclose(exact, np.broadcast_to([3.0, -2.0], (SIZE, SIZE, 2)), atol=1e-5)
    mask = temporal.inside_mask(transforms, SIZE, SIZE).numpy()[0, ..., 0]
    # Columns from 29 on and the top two rows are sampled from outside the image.
    expected = np.ones((SIZE, SIZE), np.float32)
    expected[:, SIZE - 3 :] = 0.0
    expected[:2, :] = 0.0
    np.testing.assert_array_equal(mask, expected)


def test_a_random_motion_is_small_and_its_flow_warps_as_neural_style_flow_does():
    transforms = temporal.random_transforms(4, SIZE, SIZE, tf.constant([3, 7]))
    flows = temporal.transform_flow(transforms, SIZE, SIZE).numpy()
    limit = temporal.MAX_SHIFT_PIXELS + SIZE * (
        temporal.MAX_SCALE_CHANGE + np.radians(temporal.MAX_ROTATION_DEGREES)
    )
    assert 0.1 < np.abs(flows).max() < limit
    assert not np.allclose(flows[0], flows[1])  # each crop its own motion
    images = np.stack([photo(SIZE, SIZE, seed=i) for i in range(4)])
    moved = temporal.warp_images(tf.constant(images), transforms).numpy()
    masks = temporal.inside_mask(transforms, SIZE, SIZE).numpy()[..., 0]
    for image, flow_field, warped, mask in zip(images, flows, moved, masks, strict=True):
        reference = flow.warp(image, flow_field)  # OpenCV's remap, 1/32 px weights
        inside = mask > 0
        assert inside.mean() > 0.6
        assert np.abs(warped - reference)[inside].max() < 2.0
    # The same seed, the same motion: a run is reproducible.
    again = temporal.random_transforms(4, SIZE, SIZE, tf.constant([3, 7]))
    np.testing.assert_array_equal(again.numpy(), transforms.numpy())


def test_the_loss_is_zero_for_a_network_that_commutes_with_the_motion_and_not_otherwise():
    photos = tf.constant(np.stack([photo(SIZE, SIZE, seed=i) for i in range(2)]))
    transforms = temporal.random_transforms(2, SIZE, SIZE, tf.constant([1, 2]))

    def identity(images, training=False):
        return images

    def colour_map(images, training=False):  # per pixel, affine: commutes with bilinear
        return 0.5 * images + 20.0

    for network in (identity, colour_map):
        stylised, loss = temporal.synthetic_motion_loss(network, photos, transforms)
        np.testing.assert_allclose(stylised.numpy(), network(photos).numpy())
        assert loss.shape == (2,)
        np.testing.assert_allclose(loss.numpy(), 0.0, atol=1e-6)

    model = build_transformer(width=2, seed=3)
    with tf.GradientTape() as tape:
        stylised, loss = temporal.synthetic_motion_loss(model, photos, transforms)
        total = tf.reduce_sum(loss)
    assert np.all(loss.numpy() > 1e-3)
    gradients = tape.gradient(total, model.trainable_variables)
    assert all(gradient is not None for gradient in gradients)
    assert sum(float(tf.reduce_sum(tf.abs(g))) for g in gradients) > 0
    # The output for the photos themselves is the network's alone.
    np.testing.assert_allclose(stylised.numpy(), model(photos).numpy(), rtol=1e-4, atol=1e-2)


# --- the training step -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def perceptual(tiny_mat) -> PerceptualLoss:
    style = photo(40, 40, seed=7)[::-1]
    weights = LossWeights(
        content_layers=(("relu2_2", 1.0),),
        style_layers=(("relu1_2", 0.5), ("relu2_2", 0.5)),
        alpha=1.0,
        beta=50.0,
        tv_weight=1e-3,
    )
    return PerceptualLoss(VGG19.from_mat(tiny_mat), style, weights)


def one_step(loss: PerceptualLoss, photos: np.ndarray, weight: float):
    trainer = Trainer(
        tf.distribute.OneDeviceStrategy("/cpu:0"),
        loss,
        width=2,
        learning_rate=0.01,
        global_batch_size=len(photos),
        seed=4,
        temporal_weight=weight,
    )
    before = trainer.model.get_weights()
    losses = trainer.distributed_step(trainer.distribute_batch(photos))
    step = trainer.distributed_step.get_concrete_function(trainer.distribute_batch(photos))
    graph = step.graph.as_graph_def()
    nodes = [*graph.node, *(node for f in graph.library.function for node in f.node_def)]
    ops = {node.op for node in nodes}
    return before, {name: float(value) for name, value in losses.items()}, ops


@pytest.mark.slow
def test_weight_zero_is_the_plain_step_and_a_weight_adds_the_temporal_part(perceptual):
    photos = np.stack([photo(SIZE, SIZE, seed=i) for i in range(2)])
    before, plain, ops = one_step(perceptual, photos, 0.0)
    # Today's step: the perceptual loss of the network's output, nothing more.
    fresh = build_transformer(width=2, seed=4)
    fresh.set_weights(before)
    _, parts = perceptual(fresh(photos, training=True), tf.constant(photos))
    assert set(plain) == {"content", "style", "tv", "total"}
    for name in plain:
        assert plain[name] == pytest.approx(float(parts[name]), rel=1e-5), name
    assert "Conv2D" in ops  # the graph searched is the step's
    assert "ImageProjectiveTransformV3" not in ops  # no moved crops, no second pass

    _, moving, ops = one_step(perceptual, photos, 10.0)
    assert "ImageProjectiveTransformV3" in ops
    assert moving["temporal"] > 0
    for name in ("content", "style", "tv"):
        assert moving[name] == pytest.approx(plain[name], rel=1e-5), name
    expected_total = plain["total"] + 10.0 * moving["temporal"]
    assert moving["total"] == pytest.approx(expected_total, rel=1e-5)


@pytest.mark.slow
def test_training_with_the_temporal_loss_runs_and_reports_it(tmp_path, tiny_mat):
    from neural_style.feedforward.training.run import train_network

    dataset = tmp_path / "photos"
    dataset.mkdir()
    for index in range(3):
        write_image(dataset / f"p{index}.jpg", photo(40, 48, seed=index))
    style = write_image(tmp_path / "style.png", photo(48, 48, seed=9)[:, ::-1])
    run_settings = NetworkSettings.from_module(
        settings,
        network_dataset=str(dataset),
        network_style_image=style,
        network_style_size=48,
        network_sample_image=str(dataset / "p0.jpg"),
        network_output_dir=str(tmp_path / "run"),
        network_image_size=32,
        network_batch_size=2,
        network_steps=3,
        network_width=2,
        network_print_every=1,
        network_temporal_weight=5.0,
        # The first two blocks' style layers: the step traces quicker, the same parts.
        network_style_layers=(("relu1_2", 0.5), ("relu2_2", 0.5)),
        vgg_model_path=tiny_mat,
    )
    printed = io.StringIO()
    result = train_network(run_settings, stream=printed)
    assert result.steps == 3
    assert result.losses["temporal"] > 0
    # The log and the progress line show the part, and the total includes it.
    with open(tmp_path / "run" / "losses.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == 3 and all(float(row["temporal"]) > 0 for row in rows)
    s = run_settings
    weights = {
        "content": s.network_content_weight,
        "style": s.network_style_weight,
        "tv": s.network_tv_weight,
        "temporal": 5.0,
    }
    for row in rows:
        expected = sum(weight * float(row[name]) for name, weight in weights.items())
        assert float(row["total"]) == pytest.approx(expected, rel=1e-4)
    assert "temporal " in printed.getvalue()
    assert os.path.isfile(result.model_path)
    assert set(os.listdir(dataset)) == {"p0.jpg", "p1.jpg", "p2.jpg"}


# --- the blend of stylize.py ------------------------------------------------------------


def pan_clip(path, frames: int = 8, pan: int = 2, height: int = 48, width: int = 64) -> str:
    """A window moving `pan` px right each frame over a textured picture: H.264 .mp4."""
    rng = np.random.default_rng(0)
    big = photo(height, width + pan * frames, seed=3)
    big += rng.normal(0, 30, big.shape[:2])[..., None].repeat(3, -1)
    return h264_clip(path, (big[:, index * pan : index * pan + width] for index in range(frames)))


def decoded(path: str) -> list[np.ndarray]:
    with video_io.read_frames(video_io.probe(path, "STYLIZE_INPUT")) as frames:
        return list(frames)


def mean_warping_error(stylised: list[np.ndarray], originals: list[np.ndarray]) -> float:
    errors = []
    for index in range(1, len(originals)):
        pair = flow.flows(originals[index - 1], originals[index])
        mask = flow.reliability(pair.backward, pair.forward)
        errors.append(flow.warping_error(stylised[index - 1], stylised[index], pair.backward, mask))
    return float(np.nanmean(errors))


@pytest.mark.slow
def test_blend_zero_writes_the_very_video_of_the_network_alone(network, tmp_path):
    source = pan_clip(tmp_path / "pan.mp4")
    original = Path(source).read_bytes()
    result = stylize_input(
        stylize_settings(network, source, tmp_path / "out", stylize_batch_size=3)
    )
    # The network on each frame alone, rounded and written as stylize.py writes a video.
    stylizer = Stylizer(load_network(network))
    alone = [
        np.clip(np.rint(stylizer(frame[None])[0]), 0, 255).astype(np.uint8)
        for frame in decoded(source)
    ]
    expected = str(tmp_path / "expected.mp4")
    video_write.write_video(iter(alone), expected, fps=10.0, audio_from=None, setting="X")
    assert Path(result.outputs[0]).read_bytes() == Path(expected).read_bytes()
    assert Path(source).read_bytes() == original


@pytest.mark.slow
def test_a_blend_lowers_the_warping_error_of_a_pan(network, tmp_path):
    source = pan_clip(tmp_path / "pan.mp4")
    originals = decoded(source)
    errors = {}
    for blend in (0.0, 0.8):
        output = tmp_path / f"out-{blend:g}"
        run = stylize_settings(network, source, output, stylize_video_blend=blend)
        errors[blend] = mean_warping_error(decoded(stylize_input(run).outputs[0]), originals)
    assert errors[0.8] < 0.6 * errors[0.0], errors


# --- bad values and a missing OpenCV ----------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "words"),
    [
        ("stylize_video_blend", -1, "must be between 0 (off) and 1"),
        ("stylize_video_blend", 1.5, "must be between 0 (off) and 1"),
        ("stylize_video_blend", float("nan"), "must be between 0 (off) and 1"),
        ("stylize_video_blend", "x", "must be a number, got 'x'"),
        ("network_temporal_weight", -1, "must be a finite number >= 0"),
        ("network_temporal_weight", float("inf"), "must be a finite number >= 0"),
        ("network_temporal_weight", "x", "must be a number, got 'x'"),
    ],
)
def test_bad_values_are_one_line_naming_the_setting(name, value, words):
    with pytest.raises(UserError) as caught:
        NetworkSettings.from_module(settings, **{name: value})
    message = str(caught.value)
    assert f"{name.upper()} (--{name})" in message and words in message
    assert "\n" not in message


@pytest.fixture(scope="module", autouse=True)
def without_opencv(request, tmp_path_factory):
    """The process of the test without OpenCV below, started before this module's first
    test, so that it runs beside them rather than alone: (it, its folder)."""
    if not is_selected(request, "test_without_opencv_blend_zero_works_and_a_blend_is_one_line"):
        yield None
        return
    network = request.getfixturevalue("network")
    tmp_path = tmp_path_factory.mktemp("without_opencv")
    source = pan_clip(tmp_path / "pan.mp4", frames=3)
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["cv2"] = None  # as if opencv-python-headless were not installed
        from neural_style.errors import UserError
        from neural_style.settings.network import NetworkSettings
        from neural_style.feedforward.stylizing.run import stylize_input
        from tests import toy_settings
        def run(blend, output):
            return stylize_input(NetworkSettings.from_module(
                toy_settings, network_model={network!r}, stylize_input={source!r},
                stylize_output=output, stylize_video_blend=blend))
        print("wrote", run(0.0, {str(tmp_path / "plain")!r}).outputs[0])
        try:
            run(0.5, {str(tmp_path / "blended")!r})
        except UserError as error:
            print("error:", error)
        """
    )
    started = StartedEarly(
        [sys.executable, "-c", script],
        tmp_path,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    yield started, tmp_path
    started.kill()


@pytest.mark.slow
def test_without_opencv_blend_zero_works_and_a_blend_is_one_line(without_opencv):
    started, tmp_path = without_opencv
    result = started.finish(timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"wrote {tmp_path / 'plain' / 'pan.mp4'}" in result.stdout
    errors = [line for line in result.stdout.splitlines() if line.startswith("error:")]
    assert errors == [
        "error: STYLIZE_VIDEO_BLEND (--stylize_video_blend) needs OpenCV for the optical flow: "
        "pip install -e '.[video]' (or pip install opencv-python-headless), or set "
        "STYLIZE_VIDEO_BLEND to 0"
    ]
    assert not (tmp_path / "blended").exists()  # refused before anything was written
    assert len(decoded(str(tmp_path / "plain" / "pan.mp4"))) == 3
