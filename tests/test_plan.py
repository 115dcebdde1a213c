"""The plan as data: settings and photos in, stages, groups and notes out, decided before
anything runs. No TensorFlow; the photos are tiny files or none at all."""

from __future__ import annotations

import numpy as np
import pytest

from neural_style.gatys import plan as plans
from neural_style.gatys.checkpoint import Checkpoint
from neural_style.gatys.outputs import Claims
from neural_style.gatys.plan import Inputs, Photo, PhotoJob, Stage
from neural_style.settings.gatys import Settings
from tests import toy_settings
from tests.support import photo, write_image


def settings(**overrides) -> Settings:
    values = {"image_width": 48, "precision": "float32", "train_steps": 10, **overrides}
    return Settings.from_module(toy_settings, **values)


def job(path: str, size: tuple[int, int], steps: int = 10, done: int = 0) -> PhotoJob:
    resumed = Checkpoint(0, done, {}, {}, "") if done else None
    return PhotoJob(Photo(1, path, size, ""), f"out-{path}", (Stage(size, steps),), resumed)


def inputs_of(run_settings: Settings, jobs: list[PhotoJob]) -> Inputs:
    paths = [one.photo.path for one in jobs]
    return Inputs(run_settings, [], True, paths, jobs, [], [])


def test_coarse_to_fine_stages_keep_the_aspect_ratio_and_their_steps():
    run_settings = settings(coarse_to_fine=(64, 128), coarse_to_fine_steps=(30, 10))
    assert plans.plan_stages(run_settings, (300, 400)) == (
        Stage((48, 64), 30),
        Stage((96, 128), 10),
    )
    assert plans.plan_stages(settings(), (300, 400)) == (Stage((36, 48), 10),)


def test_the_time_left_counts_each_later_step_by_its_stage_pixels():
    stages = (Stage((2, 3), 4), Stage((4, 6), 2))  # a step of stage 2 costs four of stage 1
    staged = PhotoJob(Photo(1, "a", (4, 6), ""), "out-a", stages, None)
    assert [staged.work_left(step) for step in range(7)] == [12, 11, 10, 9, 8, 1, 0]
    assert job("b", (4, 6), steps=5).work_left(2) == 3  # one stage: the steps left


def test_photos_batch_by_size_up_to_batch_size_in_order():
    jobs = [job("a", (36, 48)), job("b", (40, 48)), job("c", (36, 48)), job("d", (36, 48))]
    plan = plans.plan_run(inputs_of(settings(batch_size=2), jobs), on_gpu=False)
    assert [[one.photo.path for one in group.jobs] for group in plan.groups] == [
        ["a", "c"],
        ["b"],
        ["d"],
    ]
    assert plan.precision == "float32" and plan.notes == []


def test_finished_photos_are_complete_and_resumed_ones_batch_by_their_step():
    jobs = [job("done", (36, 48), done=10), job("a", (36, 48), done=4), job("b", (36, 48))]
    jobs.append(job("c", (36, 48), done=4))
    plan = plans.plan_run(inputs_of(settings(batch_size=4), jobs), on_gpu=False)
    assert [one.photo.path for one in plan.complete] == ["done"]
    assert [[one.photo.path for one in group.jobs] for group in plan.groups] == [["a", "c"], ["b"]]


def test_lbfgs_runs_one_photo_at_a_time_and_says_why():
    jobs = [job("a", (36, 48)), job("b", (36, 48))]
    plan = plans.plan_run(inputs_of(settings(batch_size=2, optimizer="lbfgs"), jobs), on_gpu=False)
    assert [len(group.jobs) for group in plan.groups] == [1, 1]
    assert plan.notes == [plans.unbatched_reason(settings(batch_size=2, optimizer="lbfgs"))]


def test_a_folder_plans_each_photo_with_its_own_prefix_and_a_bad_one_fails_alone(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    write_image(folder / "a.jpg", photo(36, 40, seed=1))
    write_image(folder / "a.png", photo(36, 40, seed=2))
    (folder / "broken.jpg").write_text("not an image")
    style = write_image(tmp_path / "style.png", photo(32, 32, seed=3))
    run_settings = settings(
        content_image=str(folder), style_image=(style,), output_image=str(tmp_path / "out" / "r")
    )
    claims = Claims(run_settings)
    try:
        inputs = plans.plan_inputs(run_settings, claims)
    finally:
        claims.release()
    prefixes = [one.prefix for one in inputs.jobs]
    assert prefixes == [str(tmp_path / "out" / "r-a-jpg"), str(tmp_path / "out" / "r-a-png")]
    assert [path for path, _ in inputs.failures] == [str(folder / "broken.jpg")]
    # A folder's photos are decoded when their batch starts, not while planning.
    assert all(one.photo.pixels is None for one in inputs.jobs)
    assert inputs.jobs[0].photo.size == (36, 40) and len(inputs.styles) == 1
    assert np.asarray(inputs.styles[0]).shape == (32, 32, 3)


def test_a_video_plan_counts_the_clips_steps_in_one_place():
    from neural_style.gatys.video_plan import VideoPlan

    video = VideoPlan(None, "out", (36, 48), 5, 0, None, first_steps=100, later_steps=20)
    assert [video.steps(index) for index in range(3)] == [100, 20, 20]
    assert [video.steps_before(index) for index in range(4)] == [0, 100, 120, 140]
    assert video.names.frame(0).endswith("out-frames/frame-00001.png")


@pytest.mark.parametrize("bad", [{"batch_size": 0}, {"coarse_to_fine": (16,)}])
def test_bad_settings_never_reach_the_plan(bad):
    from neural_style.errors import UserError

    with pytest.raises(UserError):
        settings(**bad)
