"""The optimisers and the artist's controls, each checked by its effect: L-BFGS, resume,
overwrite protection, style blends and scale, colour preservation, coarse-to-fine,
batches, starting images and reproducibility."""

from __future__ import annotations

import csv
import os

import numpy as np
import pytest

from neural_style.errors import UserError
from neural_style.gatys.outputs import OutputNames
from neural_style.gatys.pipeline import Pipeline, loss_weights
from neural_style.losses.targets import style_targets
from neural_style.media import colors
from neural_style.media.images import load_image, resize_image
from neural_style.optimize.lbfgs import LbfgsOptimizer
from neural_style.optimize.loss_functions import LossFunction
from neural_style.settings import gatys as config
from neural_style.settings.gatys import Settings
from tests import toy_settings as user_settings
from tests.single_image import compute_targets
from tests.support import (
    FEW_LAYERS,
    photo,
    saved_checkpoint,
    stop_after,
    stylize_without_plots,
    tiny_settings,
    write_image,
)


def settings_for(tmp_path, tiny_mat, image_pair, **overrides) -> Settings:
    """A toy run's settings; the layers of the first two blocks, as each run traces its
    loss afresh and each control here is checked by its effect, whatever the layers."""
    values = {"train_steps": 4, **FEW_LAYERS, **overrides}
    return tiny_settings(tmp_path, tiny_mat, image_pair, **values)


def stylize_quietly(settings: Settings):
    """(result, what the run printed); no loss plots, which no test here looks at."""
    return stylize_without_plots(settings)


# --- optimisers ---------------------------------------------------------------------------


def test_lbfgs_lowers_the_loss_within_the_pixel_box(tiny_net):
    weights = loss_weights(Settings.from_module(user_settings))
    content = photo(32, 40, seed=1)
    targets = compute_targets(tiny_net, content, [photo(32, 40, seed=9)[::-1]], [1.0], weights)
    optimizer = LbfgsOptimizer(LossFunction(tiny_net, targets, weights), content)
    results = list(optimizer.steps(8))
    assert [result.step for result in results] == list(range(1, 9))
    assert results[-1].losses["total"] < 0.5 * results[0].losses["total"]
    assert results[-1].evaluations >= 8
    image = optimizer.current_image()
    assert image.dtype == np.float32 and image.min() >= 0 and image.max() <= 255
    assert optimizer.best_loss <= min(result.losses["total"] for result in results)


def test_lbfgs_runs_through_train_py_settings(tmp_path, tiny_mat, image_pair):
    settings = settings_for(tmp_path, tiny_mat, image_pair, optimizer="lbfgs", train_steps=5)
    result, printed = stylize_quietly(settings)
    assert result.steps == 5 and "evals)" in printed
    assert os.path.exists(result.output_path)


def test_the_same_seed_gives_the_same_file(tmp_path, tiny_mat, image_pair):
    first, _ = stylize_quietly(settings_for(tmp_path / "a", tiny_mat, image_pair, seed=3))
    second, _ = stylize_quietly(settings_for(tmp_path / "b", tiny_mat, image_pair, seed=3))
    other, _ = stylize_quietly(settings_for(tmp_path / "c", tiny_mat, image_pair, seed=4))
    assert _read(first.output_path) == _read(second.output_path)
    assert not np.array_equal(
        load_image(first.output_path, "X"), load_image(other.output_path, "X")
    )


# --- resume and overwrite --------------------------------------------------------------------


def _read(path: str) -> bytes:
    with open(path, "rb") as file:
        return file.read()


def _final_state(prefix: str) -> dict:
    return saved_checkpoint(OutputNames(prefix).checkpoint).optimizer_state


def test_resuming_after_10_steps_equals_20_steps_straight(tmp_path, tiny_mat, image_pair):
    straight = settings_for(
        tmp_path / "straight", tiny_mat, image_pair, train_steps=20, snapshot_every=10
    )
    stylize_quietly(straight)
    halves = settings_for(
        tmp_path / "halves", tiny_mat, image_pair, train_steps=10, snapshot_every=10
    )
    stylize_quietly(halves)
    resumed, printed = stylize_quietly(
        halves.__class__(**{**halves.__dict__, "train_steps": 20, "resume": True})
    )
    assert "resuming from" in printed and resumed.steps == 20
    a, b = _final_state(straight.output_image), _final_state(halves.output_image)
    for name in ("image", "best_image", "first_moment", "second_moment"):
        np.testing.assert_allclose(a[name], b[name], rtol=1e-4, atol=1e-3, err_msg=name)
    assert int(a["iterations"]) == int(b["iterations"]) == 20
    with open(f"{halves.output_image}-losses.csv") as file:
        assert [int(row["step"]) for row in csv.DictReader(file)] == list(range(1, 21))


def test_resume_refuses_changed_settings_and_starts_afresh_without_a_checkpoint(
    tmp_path, tiny_mat, image_pair
):
    settings = settings_for(tmp_path, tiny_mat, image_pair)
    fresh, printed = stylize_quietly(settings.__class__(**{**settings.__dict__, "resume": True}))
    assert "not found: nothing to resume, so" in printed and "starts afresh" in printed
    assert fresh.steps == settings.train_steps
    assert fresh.output_path == f"{settings.output_image}.jpg"
    changed = {**settings.__dict__, "resume": True, "train_steps": 8, "beta": 7.0, "seed": 5}
    with pytest.raises(UserError, match=r"cannot resume with changed BETA \(--beta\), SEED"):
        stylize_quietly(settings.__class__(**changed))


def test_a_new_run_never_overwrites_an_earlier_one_silently(tmp_path, tiny_mat, image_pair):
    settings = settings_for(tmp_path, tiny_mat, image_pair, train_steps=2)
    first, _ = stylize_quietly(settings)
    before = _read(first.output_path)
    second, printed = stylize_quietly(settings)
    assert second.output_path == str(tmp_path / "out" / "result_2.jpg")
    assert "pass --overwrite" in printed
    assert _read(first.output_path) == before
    third, _ = stylize_quietly(settings.__class__(**{**settings.__dict__, "overwrite": True}))
    assert third.output_path == first.output_path


# --- style blends, scale and colours ----------------------------------------------------------


def test_blend_weights_one_and_zero_equal_that_style_alone(tiny_net):
    weights = loss_weights(Settings.from_module(user_settings))
    a, b = photo(32, 32, seed=1), photo(32, 32, seed=2)[::-1]
    alone = style_targets(tiny_net, [a], [1.0], weights)
    blended = style_targets(tiny_net, [a, b], [1.0, 0.0], weights)
    halves = style_targets(tiny_net, [a, b], [2.0, 2.0], weights)
    only_b = style_targets(tiny_net, [b], [1.0], weights)
    for layer in alone:
        np.testing.assert_allclose(blended[layer].numpy(), alone[layer].numpy(), rtol=1e-6)
        mean = (alone[layer].numpy() + only_b[layer].numpy()) / 2
        np.testing.assert_allclose(halves[layer].numpy(), mean, rtol=1e-5)


def test_style_scale_takes_the_grams_of_a_resized_style(tmp_path, tiny_mat, image_pair, tiny_net):
    style = load_image(image_pair[1], "STYLE_IMAGE")
    for scale in (1.0, 2.0):
        settings = settings_for(tmp_path, tiny_mat, image_pair, style_scale=scale)
        pipeline = Pipeline(settings, tiny_net, [style])
        content = photo(33, 40)
        grams = pipeline.style_grams(tiny_net, 0, (33, 40), content)
        size = (round(33 * scale), round(40 * scale))
        expected = style_targets(tiny_net, [resize_image(style, size)], [1.0], pipeline.weights)
        for layer in grams:
            np.testing.assert_allclose(grams[layer].numpy(), expected[layer].numpy(), rtol=1e-5)
    assert not np.allclose(
        grams["relu1_1"].numpy(),
        style_targets(tiny_net, [resize_image(style, (33, 40))], [1.0], pipeline.weights)[
            "relu1_1"
        ].numpy(),
    )


@pytest.mark.slow
def test_preserved_colours_keep_the_photos_chrominance(tmp_path, tiny_mat, image_pair):
    settings = settings_for(
        tmp_path, tiny_mat, image_pair, preserve_colors="luminance", train_steps=6
    )
    result, _ = stylize_quietly(settings)
    output = load_image(result.output_path, "OUTPUT_IMAGE")
    content = resize_image(load_image(settings.content_image, "CONTENT_IMAGE"), output.shape[:2])
    chroma_error = np.abs(colors.rgb_to_ycbcr(output) - colors.rgb_to_ycbcr(content))[..., 1:]
    assert chroma_error.mean() < 3.0  # JPEG's chroma subsampling is the only difference
    plain, _ = stylize_quietly(
        settings.__class__(
            **{
                **settings.__dict__,
                "preserve_colors": "off",
                "output_image": str(tmp_path / "plain"),
            }
        )
    )
    plain_error = np.abs(
        colors.rgb_to_ycbcr(load_image(plain.output_path, "X")) - colors.rgb_to_ycbcr(content)
    )[..., 1:]
    assert plain_error.mean() > 2 * chroma_error.mean()


def test_histogram_mode_recolours_the_style_before_its_grams(
    tmp_path, tiny_mat, image_pair, tiny_net
):
    settings = settings_for(tmp_path, tiny_mat, image_pair, preserve_colors="histogram")
    style = load_image(image_pair[1], "STYLE_IMAGE")
    pipeline = Pipeline(settings, tiny_net, [style])
    content = photo(33, 40)
    grams = pipeline.style_grams(tiny_net, 0, (33, 40), content)
    recoloured = resize_image(colors.match_color_histogram(style, content), (33, 40))
    expected = style_targets(tiny_net, [recoloured], [1.0], pipeline.weights)
    for layer in grams:
        np.testing.assert_allclose(grams[layer].numpy(), expected[layer].numpy(), rtol=1e-5)


# --- coarse-to-fine, starting images, batches ---------------------------------------------------


def test_coarse_to_fine_stages_start_from_the_last_result(
    tmp_path, tiny_mat, image_pair, monkeypatch
):
    starts = []
    real = Pipeline.make_optimizer

    def record(self, loss, batch_starts):
        optimizer = real(self, loss, batch_starts)
        starts.append((batch_starts[0], optimizer))  # a batch of one photo
        return optimizer

    monkeypatch.setattr(Pipeline, "make_optimizer", record)
    settings = settings_for(
        tmp_path, tiny_mat, image_pair, coarse_to_fine=[40, 64], coarse_to_fine_steps=[3, 2]
    )
    result, printed = stylize_quietly(settings)
    assert result.steps == 5 and "stage 2/2 64x53" in printed
    assert load_image(result.output_path, "OUTPUT_IMAGE").shape == (53, 64, 3)
    (first_start, first), (second_start, _) = starts
    assert first_start.shape == (33, 40, 3) and second_start.shape == (53, 64, 3)
    np.testing.assert_allclose(second_start, resize_image(first.best(), (53, 64)), atol=1e-4)


def test_starting_images(tmp_path, tiny_mat, image_pair, tiny_net):
    style = load_image(image_pair[1], "STYLE_IMAGE")
    content = photo(33, 40)
    init_path = write_image(tmp_path / "init.png", photo(36, 50, seed=4))

    def start(init, noise=0.0):
        settings = settings_for(tmp_path, tiny_mat, image_pair, init=init, noise=noise)
        return Pipeline(settings, tiny_net, [style]).start_image(content)

    np.testing.assert_array_equal(start("content"), content)
    np.testing.assert_allclose(start("style"), resize_image(style, (33, 40)), atol=1e-4)
    from_file = resize_image(load_image(init_path, "INIT"), (33, 40))
    np.testing.assert_allclose(start(init_path), from_file, atol=1e-4)
    noise = start("noise")
    assert abs(float(np.corrcoef(noise.ravel(), content.ravel())[0, 1])) < 0.1
    np.testing.assert_array_equal(start("content", 0.5), start("content", 0.5))


def test_a_batch_names_outputs_after_inputs_and_reports_failures(
    tmp_path, tiny_mat, image_pair, monkeypatch
):
    folder = tmp_path / "photos"
    folder.mkdir()
    write_image(folder / "harbour.jpg", photo(40, 48, seed=1))
    write_image(folder / "street.png", photo(36, 44, seed=2))
    (folder / "broken.jpg").write_text("not an image")
    (folder / "notes.txt").write_text("ignored: not an image suffix")
    calls = []
    real = Pipeline.style_grams
    monkeypatch.setattr(
        Pipeline, "style_grams", lambda self, *a: calls.append(a[0]) or real(self, *a)
    )
    from neural_style.gatys import pipeline

    computed = []
    real_targets = pipeline.style_targets
    monkeypatch.setattr(
        pipeline, "style_targets", lambda *a, **k: computed.append(1) or real_targets(*a, **k)
    )
    settings = settings_for(
        tmp_path, tiny_mat, image_pair, content_image=str(folder), train_steps=2, snapshot_every=0
    )
    batch, printed = stylize_quietly(settings)
    assert [os.path.basename(r.output_path) for r in batch.results] == [
        "result-harbour.jpg",
        "result-street.jpg",
    ]
    assert [os.path.basename(photo) for photo, _ in batch.failures] == ["broken.jpg"]
    assert "stylised 2 of 3 photos" in printed and "failed: " in printed
    assert len(calls) == 2 and len(computed) == 1  # style targets built once, shared
    glob_batch, _ = stylize_quietly(
        settings.__class__(
            **{**settings.__dict__, "content_image": str(folder / "*.png"), "overwrite": True}
        )
    )
    assert [os.path.basename(r.output_path) for r in glob_batch.results] == ["result-street.jpg"]


def test_an_empty_folder_is_a_clear_error(tmp_path, tiny_mat, image_pair):
    (tmp_path / "empty").mkdir()
    settings = settings_for(tmp_path, tiny_mat, image_pair, content_image=str(tmp_path / "empty"))
    with pytest.raises(UserError, match="no images"):
        stylize_quietly(settings)


@pytest.mark.slow
def test_ctrl_c_in_a_later_stage_resumes_to_the_same_image(tmp_path, tiny_mat, image_pair):
    stages = dict(coarse_to_fine=[40, 64], coarse_to_fine_steps=[3, 3], snapshot_every=0)
    straight = settings_for(tmp_path / "straight", tiny_mat, image_pair, **stages)
    stylize_quietly(straight)
    interrupted = settings_for(tmp_path / "cut", tiny_mat, image_pair, **stages)
    with pytest.raises(KeyboardInterrupt):
        stylize_without_plots(interrupted, stop_after(4))
    assert saved_checkpoint(f"{interrupted.output_image}-checkpoint.npz").stage == 1
    resumed, printed = stylize_quietly(
        interrupted.__class__(**{**interrupted.__dict__, "resume": True})
    )
    assert "resuming from" in printed and resumed.steps == 6
    a, b = _final_state(straight.output_image), _final_state(interrupted.output_image)
    np.testing.assert_allclose(a["best_image"], b["best_image"], rtol=1e-4, atol=1e-3)
    _, printed = stylize_quietly(interrupted.__class__(**{**interrupted.__dict__, "resume": True}))
    assert "already complete at step 6" in printed


def test_list_settings_come_from_comma_separated_flags():
    from absl import flags

    from neural_style.settings import cli_flags

    values = flags.FlagValues()
    cli_flags.define_flags(user_settings, values)
    values(
        [
            "train.py",
            "--style_image=a.jpg,b.jpg",
            "--style_blend_weights=3,1",
            "--coarse_to_fine=256,512",
            "--coarse_to_fine_steps=30,10",
            "--resume",
            "--optimizer=lbfgs",
            "--preserve_colors=histogram",
        ]
    )
    settings = config.Settings.from_flag_values(values)
    assert settings.style_image == ("a.jpg", "b.jpg")
    assert settings.style_blend_weights == (3.0, 1.0)
    assert settings.coarse_to_fine == (256, 512) and settings.coarse_to_fine_steps == (30, 10)
    assert settings.resume is True and settings.optimizer == "lbfgs"
    values = flags.FlagValues()
    cli_flags.define_flags(user_settings, values)
    values(["train.py", "--coarse_to_fine=256,big"])
    with pytest.raises(UserError, match=r"COARSE_TO_FINE \(--coarse_to_fine\): 'big' is not"):
        config.Settings.from_flag_values(values)
