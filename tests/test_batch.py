"""Several photos optimised together (BATCH_SIZE): each photo of a batch ends where it would
alone, diverges alone, keeps its own files and checkpoint; photos of other sizes and L-BFGS
runs go one at a time; a batch shrinks to fit the memory."""

from __future__ import annotations

import csv
import dataclasses
import io
import os

import numpy as np
import pytest
import tensorflow as tf

from neural_style.errors import UserError
from neural_style.gatys import plan, resume_rules, run
from neural_style.gatys.outputs import OutputNames
from neural_style.gatys.pipeline import initial_image, loss_weights
from neural_style.losses.gatys import Targets, objective_per_image
from neural_style.losses.targets import content_targets, style_targets
from neural_style.media import plots
from neural_style.optimize import memory
from neural_style.optimize.adam import BatchAdamOptimizer
from neural_style.optimize.loss_functions import BatchLossFunction
from neural_style.settings import gatys as config
from neural_style.settings.gatys import Settings
from tests import toy_settings as user_settings
from tests.single_image import objective
from tests.support import (
    FEW_LAYERS,
    photo,
    saved_checkpoint,
    stop_after,
    tiny_settings,
    write_image,
)

PHOTO_NAMES = ("alpha", "bravo", "charlie")


def photo_folder(tmp_path, shapes=((40, 48), (40, 48), (40, 48))) -> str:
    """A folder of PNG photos named alpha, bravo, charlie... of the given (height, width)."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for number, (name, shape) in enumerate(zip(PHOTO_NAMES, shapes, strict=False)):
        write_image(folder / f"{name}.png", photo(*shape, seed=number + 1))
    return str(folder)


@pytest.fixture
def no_plots(monkeypatch):
    """Loss plots are drawn by matplotlib in a quarter second each, per photo; the runs
    that do not look at them skip drawing (the files test draws them)."""

    class NoPlot:
        def __init__(self, csv_path, png_path):
            pass

        def wait(self):
            return ""

    monkeypatch.setattr(plots, "PlotProcess", NoPlot)


def folder_settings(tmp_path, tiny_mat, image_pair, folder, out, **overrides) -> Settings:
    """A run of `folder` into tmp_path/`out`; each batch and each photo alone traces its own
    loss, so with the first two blocks' layers (what is compared is batch against alone)."""
    values = dict(
        content_image=folder,
        output_image=str(tmp_path / out / "result"),
        snapshot_every=0,
        **FEW_LAYERS,
    )
    return tiny_settings(tmp_path, tiny_mat, image_pair, **{**values, **overrides})


def stylize_quietly(settings: Settings):
    stream = io.StringIO()
    result = run.stylize(settings, stream)
    return result, stream.getvalue()


def final_state(settings: Settings, name: str) -> dict:
    path = OutputNames(f"{settings.output_image}-{name}").checkpoint
    return saved_checkpoint(path).optimizer_state


def logged_totals(settings: Settings, name: str) -> list[float]:
    with open(f"{settings.output_image}-{name}-losses.csv") as file:
        return [float(row["total"]) for row in csv.DictReader(file)]


def assert_same_run(a: Settings, b: Settings, names=PHOTO_NAMES, *, bfloat16=False) -> None:
    """Each photo's final optimiser state and logged losses agree between two runs. The
    convs of a batch round differently from one image's, and Adam, which divides by the
    gradient's size, turns that into a different step where a pixel's gradient is ~0: so
    one pixel in a thousand may differ more (one of 10176 did, by 0.014)."""
    for name in names:
        first, second = final_state(a, name), final_state(b, name)
        for key in ("image", "best_image", "first_moment", "second_moment"):
            difference = np.abs(first[key] - second[key])
            off = difference > 1e-3 + 1e-4 * np.abs(second[key])
            assert np.mean(off) < 1e-3, f"{name} {key}: {np.mean(off):.2%} of values differ"
            assert np.mean(difference) < 1e-3, f"{name} {key}"
        for key in ("best_loss", "learning_rate", "iterations", "evaluations"):
            np.testing.assert_allclose(first[key], second[key], rtol=1e-5, err_msg=key)
        totals_rtol = 1e-3 if bfloat16 else 1e-5
        np.testing.assert_allclose(logged_totals(a, name), logged_totals(b, name), rtol=totals_rtol)


# --- the losses and the optimiser ---------------------------------------------------------------


def test_the_objective_of_a_batch_is_each_images_own(tiny_net):
    weights = loss_weights(Settings.from_module(user_settings))
    contents = [photo(32, 40, seed=seed) for seed in (1, 2, 3)]
    grams = style_targets(tiny_net, [photo(32, 40, seed=9)[::-1]], [1.0], weights)
    layers = sorted({name for name, _ in weights.content_layers + weights.style_layers})

    def parts_of(images, content):
        targets = Targets(content_targets(tiny_net, content, weights), grams)
        return objective_per_image(tiny_net(images, layers), images, targets, weights)[1]

    batch = tf.constant(np.stack([initial_image(c, 0.5, 0) for c in contents]))
    together = Targets(
        {
            name: tf.concat([content_targets(tiny_net, c, weights)[name] for c in contents], 0)
            for name, _ in weights.content_layers
        },
        grams,
    )
    total, parts = objective_per_image(tiny_net(batch, layers), batch, together, weights)
    assert total.shape == (3,)
    for index, content in enumerate(contents):
        alone = parts_of(batch[index : index + 1], content)
        for name in ("content", "style", "tv", "total"):
            assert parts[name][index].numpy() == pytest.approx(alone[name][0].numpy(), rel=1e-5)
    summed, _ = objective(tiny_net(batch, layers), batch, together, weights)
    assert summed.numpy() == pytest.approx(float(np.sum(total.numpy())), rel=1e-6)


def batch_optimizer(tiny_net, contents, **options) -> BatchAdamOptimizer:
    weights = loss_weights(Settings.from_module(user_settings))
    grams = style_targets(tiny_net, [contents[0][::-1]], [1.0], weights)
    targets = Targets(
        {
            name: tf.concat([content_targets(tiny_net, c, weights)[name] for c in contents], 0)
            for name, _ in weights.content_layers
        },
        grams,
    )
    starts = np.stack([initial_image(c, 0.5, 0) for c in contents])
    return BatchAdamOptimizer(
        BatchLossFunction(tiny_net, targets, weights), starts, learning_rate=5.0, **options
    )


def test_a_diverging_image_recovers_alone(tiny_net):
    contents = [photo(32, 32, seed=seed) for seed in (1, 2, 3)]
    optimizer = batch_optimizer(tiny_net, contents)
    list(optimizer.steps(3))
    after_3 = optimizer.states()
    list(optimizer.steps(1, first=4))
    undisturbed = optimizer.image.numpy()
    for index, state in enumerate(after_3):  # back to step 3, then image 1 goes wrong
        optimizer.restore(state, index)
    best = optimizer.best(1)
    image = optimizer.image.numpy()
    image[1] = np.nan
    optimizer.image.assign(image)
    (result,) = optimizer.steps(1, first=4)
    assert result.notes[0] == result.notes[2] == ""
    assert "diverged" in result.notes[1] and "learning rate 2.5" in result.notes[1]
    assert not np.isfinite(result.losses[1]["total"])
    assert np.isfinite(result.losses[0]["total"]) and np.isfinite(result.losses[2]["total"])
    np.testing.assert_array_equal(optimizer.image.numpy()[1], best)
    np.testing.assert_array_equal(optimizer.learning_rate.numpy(), [5.0, 2.5, 5.0])
    np.testing.assert_array_equal(optimizer.iterations.numpy(), [4, 0, 4])
    assert not optimizer.first_moment.numpy()[1].any()
    for index in (0, 2):  # the others took the very step they would have taken anyway
        np.testing.assert_array_equal(optimizer.image.numpy()[index], undisturbed[index])
    (result,) = optimizer.steps(1, first=5)
    assert result.notes == ["", "", ""] and np.isfinite(result.losses[1]["total"])


def test_states_are_a_single_runs_checkpoint_and_restore_per_image(tiny_net):
    contents = [photo(32, 32, seed=seed) for seed in (1, 2)]
    optimizer = batch_optimizer(tiny_net, contents)
    list(optimizer.steps(2))
    states = optimizer.states()
    assert states[1]["image"].shape == (32, 32, 3) and states[1]["best_loss"].shape == ()
    assert int(states[1]["iterations"]) == 2 and int(states[1]["evaluations"]) == 2
    fresh = batch_optimizer(tiny_net, contents[::-1])
    fresh.restore(states[1], 0)
    np.testing.assert_array_equal(fresh.image.numpy()[0], states[1]["image"])
    np.testing.assert_array_equal(fresh.iterations.numpy(), [2, 0])


# --- whole runs ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_three_photos_in_a_batch_end_as_each_would_alone(tmp_path, tiny_mat, image_pair, no_plots):
    folder = photo_folder(tmp_path)
    alone = folder_settings(tmp_path, tiny_mat, image_pair, folder, "alone", batch_size=1)
    together = folder_settings(tmp_path, tiny_mat, image_pair, folder, "batch", batch_size=3)
    _, alone_printed = stylize_quietly(alone)
    batch, printed = stylize_quietly(together)
    assert "optimised together" not in alone_printed
    assert "3 photos at 40x33 optimised together" in printed
    assert printed.count("step 5/5") == 1  # one progress line per step for the batch
    assert [os.path.basename(result.output_path) for result in batch.results] == [
        f"result-{name}.jpg" for name in PHOTO_NAMES
    ]
    assert_same_run(alone, together)


@pytest.mark.slow
def test_a_mixed_precision_batch_finishes_in_float32_as_each_photo_alone(
    tmp_path, tiny_mat, image_pair, no_plots
):
    folder = photo_folder(tmp_path, shapes=((40, 48), (40, 48)))
    options = dict(precision="mixed_bfloat16", float32_finish=0.4, train_steps=5)
    alone = folder_settings(tmp_path, tiny_mat, image_pair, folder, "a", batch_size=1, **options)
    together = folder_settings(tmp_path, tiny_mat, image_pair, folder, "b", batch_size=2, **options)
    _, alone_printed = stylize_quietly(alone)
    _, printed = stylize_quietly(together)
    assert alone_printed.count("float32 from step 4 to 5") == 2
    assert printed.count("float32 from step 4 to 5") == 1
    assert_same_run(alone, together, names=PHOTO_NAMES[:2], bfloat16=True)


@pytest.mark.slow
def test_coarse_to_fine_stages_and_histogram_colours_batch_as_each_alone(
    tmp_path, tiny_mat, image_pair, no_plots
):
    folder = photo_folder(tmp_path, shapes=((40, 48), (40, 48)))
    options = dict(
        preserve_colors="histogram", coarse_to_fine=[40, 64], coarse_to_fine_steps=[2, 2]
    )
    alone = folder_settings(tmp_path, tiny_mat, image_pair, folder, "a", batch_size=1, **options)
    together = folder_settings(tmp_path, tiny_mat, image_pair, folder, "b", batch_size=2, **options)
    stylize_quietly(alone)
    _, printed = stylize_quietly(together)
    assert "2 photos at 64x53 optimised together" in printed
    assert "stage 2/2 64x53  step 4/4" in printed
    assert_same_run(alone, together, names=PHOTO_NAMES[:2])  # each with its own Grams


@pytest.mark.slow
def test_a_photo_of_another_shape_runs_alone_and_each_keeps_its_files(
    tmp_path, tiny_mat, image_pair
):
    folder = photo_folder(tmp_path, shapes=((40, 48), (48, 40), (40, 48)))
    settings = folder_settings(
        tmp_path, tiny_mat, image_pair, folder, "out", batch_size=4, snapshot_every=4
    )
    batch, printed = stylize_quietly(settings)
    assert "2 photos at 40x33 optimised together" in printed
    assert printed.index("[2/3]") > printed.index("optimised together")  # bravo: after, alone
    assert len(batch.results) == 3 and not batch.failures
    made = sorted(os.listdir(tmp_path / "out"))
    for name in PHOTO_NAMES:
        assert [entry for entry in made if entry.startswith(f"result-{name}")] == [
            f"result-{name}-4.jpg",
            f"result-{name}-checkpoint.npz",
            f"result-{name}-losses.csv",
            f"result-{name}-losses.png",
            f"result-{name}-settings.json",
            f"result-{name}.jpg",
        ]
        assert len(logged_totals(settings, name)) == 5


def _job(number: int, size: tuple[int, int]) -> plan.PhotoJob:
    photo = plan.Photo(number, f"p{number}.jpg", size, "")
    return plan.PhotoJob(photo, f"out-p{number}", (plan.Stage(size, 5),), None)


def test_group_jobs_keeps_order_and_the_size_limit():
    wide, tall = (30, 40), (40, 30)
    jobs = [_job(n, size) for n, size in enumerate((wide, tall, wide, wide, tall, wide), 1)]
    groups = plan.group_jobs(jobs, lambda key: 2)
    assert [[job.photo.number for job in group] for group in groups] == [[1, 3], [2, 5], [4, 6]]
    alone = plan.group_jobs(jobs, lambda key: 1)
    assert [[job.photo.number for job in group] for group in alone] == [[n] for n in range(1, 7)]


def test_a_batch_shrinks_to_fit_the_memory(tmp_path, tiny_mat, image_pair):
    class SmallMemory(plan.Memory):
        def plan(self, size, batch=1):
            if batch > 2:
                raise UserError("too large")
            tiled = batch > 1 and size[0] > 100
            return memory.MemoryPlan(0, 0, (2, 1) if tiled else (1, 1))

    settings = tiny_settings(tmp_path, tiny_mat, image_pair, batch_size=4)
    notes = []
    limit_of = plan.batch_limits(settings, SmallMemory(settings, "float32", False, (), ()), notes)
    assert limit_of((((33, 40),), None)) == 2
    assert limit_of((((33, 40), (200, 240)), None)) == 1
    assert notes == [
        "note: 4 photos at 40x33 do not fit in memory together, so they are stylised 2 at a time",
        "note: 4 photos at 240x200 do not fit in memory together, so they are stylised 1 at a time",
    ]
    single = memory.step_bytes((384, 512), "float32") - memory.BASE_BYTES
    double = memory.step_bytes((384, 512), "float32", batch=2) - memory.BASE_BYTES
    assert double == pytest.approx(2 * single, rel=1e-6)


def test_a_photo_that_keeps_diverging_stops_alone(
    tmp_path, tiny_mat, image_pair, no_plots, monkeypatch
):
    real_rule = BatchAdamOptimizer._update_rule

    def second_photo_diverges(self, totals, gradient):
        return real_rule(self, tf.tensor_scatter_nd_update(totals, [[1]], [np.inf]), gradient)

    monkeypatch.setattr(BatchAdamOptimizer, "_update_rule", second_photo_diverges)
    folder = photo_folder(tmp_path, shapes=((40, 48), (40, 48)))
    settings = folder_settings(
        tmp_path, tiny_mat, image_pair, folder, "out", batch_size=2, train_steps=10
    )
    batch, printed = stylize_quietly(settings)
    assert "bravo.png: diverged" in printed and "alpha.png: diverged" not in printed
    assert [os.path.basename(result.output_path) for result in batch.results] == [
        "result-alpha.jpg"
    ]
    ((photo_path, why),) = batch.failures
    assert photo_path.endswith("bravo.png") and "kept diverging after 8 restarts" in why
    assert os.path.exists(f"{settings.output_image}-bravo.jpg")  # its best (start) image
    assert len(logged_totals(settings, "alpha")) == 10
    assert len(logged_totals(settings, "bravo")) == 8


def test_lbfgs_stylises_one_photo_at_a_time(tmp_path, tiny_mat, image_pair, no_plots):
    folder = photo_folder(tmp_path, shapes=((40, 48), (40, 48)))
    settings = folder_settings(
        tmp_path,
        tiny_mat,
        image_pair,
        folder,
        "out",
        batch_size=2,
        optimizer="lbfgs",
        train_steps=2,
    )
    batch, printed = stylize_quietly(settings)
    assert "BATCH_SIZE 2 is for Adam" in printed and "one at a time" in printed
    assert "optimised together" not in printed and "evals)" in printed
    assert len(batch.results) == 2


# --- resume and Ctrl-C ---------------------------------------------------------------------------


@pytest.mark.slow
def test_a_batch_resumes_each_photo_batched_or_alone(tmp_path, tiny_mat, image_pair, no_plots):
    folder = photo_folder(tmp_path, shapes=((40, 48), (40, 48)))
    cadence = dict(batch_size=2)  # each run ends with a checkpoint
    straight = folder_settings(
        tmp_path, tiny_mat, image_pair, folder, "a", train_steps=8, **cadence
    )
    stylize_quietly(straight)
    cut = folder_settings(tmp_path, tiny_mat, image_pair, folder, "b", train_steps=4, **cadence)
    stylize_quietly(cut)
    alone = dataclasses.replace(cut, train_steps=6, resume=True, batch_size=1)
    _, printed = stylize_quietly(alone)  # a batch photo's checkpoint resumes alone
    assert "resuming from" in printed and "optimised together" not in printed
    together = dataclasses.replace(cut, train_steps=8, resume=True)
    _, printed = stylize_quietly(together)
    assert printed.count("resuming from") == 2 and "optimised together" in printed
    assert_same_run(straight, together, names=PHOTO_NAMES[:2])


def test_ctrl_c_saves_every_photo_of_the_batch(tmp_path, tiny_mat, image_pair, no_plots):
    folder = photo_folder(tmp_path, shapes=((40, 48), (40, 48)))
    settings = folder_settings(
        tmp_path, tiny_mat, image_pair, folder, "out", batch_size=2, train_steps=50
    )
    stream = io.StringIO()
    with pytest.raises(KeyboardInterrupt):
        run.stylize(settings, stream, extra_observers=[stop_after(3)])
    assert "interrupted at step 3" in stream.getvalue()
    for name in PHOTO_NAMES[:2]:
        assert os.path.exists(f"{settings.output_image}-{name}.jpg")
        assert int(final_state(settings, name)["iterations"]) == 3
    assert not [name for name in os.listdir(tmp_path / "out") if name.endswith(".tmp")]


# --- the setting ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (0, r"BATCH_SIZE \(--batch_size\) must be at least 1 \(1 = one photo at a time\), got 0"),
        ("4", r"BATCH_SIZE \(--batch_size\) must be a whole number, got '4'"),
        (2.5, r"BATCH_SIZE \(--batch_size\) must be a whole number"),
    ],
)
def test_batch_size_is_checked(value, message):
    with pytest.raises(UserError, match=message):
        Settings.from_module(user_settings, batch_size=value)


def test_batch_size_is_a_flag_and_may_change_on_resume():
    from absl import flags

    from neural_style.settings import cli_flags

    values = flags.FlagValues()
    cli_flags.define_flags(user_settings, values)
    values(["train.py", "--batch_size=3"])
    assert config.Settings.from_flag_values(values).batch_size == 3
    assert "batch" in values["batch_size"].help
    assert resume_rules.RULES["batch_size"] == (resume_rules.FREE, resume_rules.FREE)


def test_a_later_stage_goes_on_with_adams_moments_upsampled_and_scaled(tiny_net):
    small = batch_optimizer(tiny_net, [photo(16, 16, seed=1), photo(16, 16, seed=2)])
    list(small.steps(3))
    state = small.states()[1]
    large = batch_optimizer(tiny_net, [photo(32, 32, seed=3), photo(32, 32, seed=4)])
    large.carry_over(state, 0)
    np.testing.assert_array_equal(large.iterations.numpy(), [3, 0])  # no warm-up anew
    np.testing.assert_array_equal(large.learning_rate.numpy(), [5.0, 5.0])
    first, second = large.first_moment.numpy(), large.second_moment.numpy()
    assert not first[1].any() and not second[1].any()  # the other image keeps its own
    # A pixel's gradient is a quarter at four times the pixels (the losses are means): the
    # moments are scaled so (the second by its square).
    assert first[0].mean() == pytest.approx(state["first_moment"].mean() / 4, rel=0.05)
    assert second[0].mean() == pytest.approx(state["second_moment"].mean() / 16, rel=0.05)
    assert second.min() >= 0.0
