"""The run loop as data: a plan built by hand, a fake pipeline whose optimiser follows a
script, and an observer that records what it hears. No TensorFlow, no files: each test
takes milliseconds, and says exactly what the loop tells its observers and when."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from types import SimpleNamespace
from typing import NamedTuple

import numpy as np
import pytest

from neural_style import stopping
from neural_style.gatys import events
from neural_style.gatys.checkpoint import Checkpoint
from neural_style.gatys.events import Observer, Observers
from neural_style.gatys.plan import Group, Photo, PhotoJob, RunPlan, Stage
from neural_style.gatys.runner import MAX_DIVERGENCES_IN_A_ROW, Runner
from neural_style.optimize.memory import MemoryPlan
from neural_style.optimize.protocols import BatchStepResult


class Phase(NamedTuple):
    net: str
    first: int
    last: int
    switched: bool


class FakeOptimizer:
    """Adam's interface over a batch; each step adds 1 to every pixel of the images that
    step, and the loss is `loss_at(step, position)` (NaN counts as a divergence)."""

    def __init__(self, starts: np.ndarray, loss_at):
        self.images = np.array(starts, np.float32)
        self.loss_at = loss_at
        self.message = ""
        self.restored: list[tuple[dict, int]] = []
        self.carried: list[tuple[tuple, int]] = []  # (shape of the state's image, position)

    def steps(self, count: int, first: int = 1) -> Iterator[BatchStepResult]:
        for step in range(first, first + count):
            self.images += 1.0
            totals = [self.loss_at(step, position) for position in range(len(self.images))]
            losses = [{"content": 0.0, "style": 0.0, "tv": 0.0, "total": t} for t in totals]
            notes = ["diverged" if np.isnan(total) else "" for total in totals]
            yield BatchStepResult(step, [step] * len(totals), losses, 0.0, notes)

    def use_loss(self, loss: object) -> None:
        pass

    def best(self, index: int = 0) -> np.ndarray:
        return self.images[index].copy()

    def current_image(self, index: int = 0) -> np.ndarray:
        return self.images[index]

    def states(self) -> list[dict[str, np.ndarray]]:
        return [{"image": image.copy()} for image in self.images]

    def restore(self, state: dict[str, np.ndarray], index: int = 0) -> None:
        self.images[index] = state["image"]
        self.restored.append((state, index))

    def carry_over(self, state: dict[str, np.ndarray], index: int = 0) -> None:
        self.carried.append((state["image"].shape, index))


class FakePipeline:
    """What the loop asks of a pipeline, without networks: starts are the photo itself."""

    def __init__(self, snapshot_every: int = 0, loss_at=lambda step, position: 1.0 / step):
        self.settings = SimpleNamespace(snapshot_every=snapshot_every, float32_finish=0.0)
        self.loss_at = loss_at
        self.optimizers: list[FakeOptimizer] = []

    def layout(self, size: tuple[int, int], plan: MemoryPlan) -> None:
        return None

    def phases(self, stage_start: int, steps: int, done: int) -> list[Phase]:
        return [Phase("net", max(done, stage_start) + 1, stage_start + steps, False)]

    def batch_targets(self, net: str, index: int, contents: list, layout: None) -> str:
        return "targets"

    def make_loss(self, net: str, targets: str, layout: None, link: object = None) -> str:
        return "loss"

    def start_image(self, content: np.ndarray) -> np.ndarray:
        return content.copy()

    def make_optimizer(self, loss: str, starts: np.ndarray) -> FakeOptimizer:
        self.optimizers.append(FakeOptimizer(starts, self.loss_at))
        return self.optimizers[-1]


class Recorder(Observer):
    """Every event heard, in order, as (name, what matters of it)."""

    def __init__(self, act=None):
        self.heard: list[tuple] = []
        self.act = act or (lambda name, event: None)

    def run_started(self, plan: RunPlan) -> None:
        self.heard.append(("run_started",))

    def group_started(self, event: events.GroupStarted) -> None:
        self.heard.append(("group_started", event.first_step, event.photo_count))
        self.act("group_started", event)

    def note(self, text: str) -> None:
        self.heard.append(("note", text.strip()))

    def step(self, event: events.Step) -> None:
        self.heard.append(("step", event.step, event.label.strip(), tuple(event.active)))
        self.act("step", event)

    def photo_failed(self, job: PhotoJob, why: str) -> None:
        self.heard.append(("photo_failed", job.photo.path))

    def images(self, event: events.Images) -> None:
        paths = tuple(job.photo.path for job in event.jobs)
        self.heard.append(("images", event.kind, event.step, event.stage, paths))

    def group_finished(self, group: Group) -> None:
        self.heard.append(("group_finished",))

    def run_finished(self, plan: RunPlan) -> None:
        self.heard.append(("run_finished",))

    def kinds(self) -> list[str]:
        return [item[0] for item in self.heard]

    def of(self, name: str) -> list[tuple]:
        return [item for item in self.heard if item[0] == name]


def job(path: str, stages: tuple[Stage, ...], resumed: Checkpoint | None = None) -> PhotoJob:
    size = stages[-1].size
    pixels = np.full((*size, 3), 100.0, np.float32)
    return PhotoJob(Photo(1, path, size, "", pixels), f"out/{path}", stages, resumed)


def plan_of(*groups: Group) -> RunPlan:
    paths = [job.photo.path for group in groups for job in group.jobs]
    return RunPlan(None, "float32", [], len(paths) > 1, paths, list(groups), [], [], [])


def group_of(*jobs: PhotoJob) -> Group:
    return Group(tuple(jobs), tuple(MemoryPlan(0, 0) for _ in jobs[0].stages))


def run(plan: RunPlan, pipeline: FakePipeline, recorder: Recorder, controls=None) -> dict:
    return Runner(plan, pipeline, Observers([recorder]), controls).run()


def test_a_photo_in_two_stages_is_told_in_order_and_snapshotted_on_cadence():
    stages = (Stage((4, 6), 3), Stage((8, 12), 3))
    recorder = Recorder()
    pipeline = FakePipeline(snapshot_every=2)
    outcomes = run(plan_of(group_of(job("a.jpg", stages))), pipeline, recorder)
    assert recorder.kinds()[:2] == ["run_started", "group_started"]
    assert recorder.kinds()[-3:] == ["images", "group_finished", "run_finished"]
    assert [item[1] for item in recorder.of("step")] == [1, 2, 3, 4, 5, 6]
    assert recorder.of("step")[0][2] == "stage 1/2 6x4" and recorder.of("step")[3][2] == (
        "stage 2/2 12x8"
    )
    assert recorder.of("images") == [
        ("images", "snapshot", 2, 0, ("a.jpg",)),
        ("images", "snapshot", 4, 1, ("a.jpg",)),
        ("images", "snapshot", 6, 1, ("a.jpg",)),
        ("images", "finished", 6, 1, ("a.jpg",)),
    ]
    assert outcomes["a.jpg"].steps == 6 and outcomes["a.jpg"].losses["total"] == 1 / 6
    # Stage 2 starts from stage 1's best image, upsampled: 100 + 3 steps.
    second = pipeline.optimizers[1]
    assert second.images.shape == (1, 8, 12, 3) and float(second.images.min()) == 106.0
    # ... and goes on from stage 1's optimiser state (Adam's moments), once.
    assert pipeline.optimizers[0].carried == [] and second.carried == [((4, 6, 3), 0)]


def test_a_stop_asked_at_a_step_keeps_that_step_and_ends_the_run():
    controls = stopping.Controls()

    def stop_at_step_4(name: str, event) -> None:
        if name == "step" and event.step == 4:
            controls.request_stop(signal.SIGTERM)

    recorder = Recorder(stop_at_step_4)
    stages = (Stage((4, 4), 10),)
    with pytest.raises(stopping.Stopped) as stopped:
        run(plan_of(group_of(job("a.jpg", stages))), FakePipeline(), recorder, controls)
    assert stopped.value.exit_code == 143
    assert recorder.of("step")[-1][1] == 4  # the step in progress completes, no other
    assert recorder.of("images") == [("images", "stopped", 4, 0, ("a.jpg",))]
    assert recorder.kinds()[-1] == "run_finished"


def test_a_stop_before_the_first_step_saves_nothing():
    controls = stopping.Controls()
    recorder = Recorder(
        lambda name, event: controls.request_stop() if name == "group_started" else 0
    )
    with pytest.raises(stopping.Stopped):
        run(
            plan_of(group_of(job("a.jpg", (Stage((4, 4), 5),)))), FakePipeline(), recorder, controls
        )
    assert recorder.of("step") == [] and recorder.of("images") == []
    assert ("note", "interrupted before the first step: nothing new to save") in recorder.heard


def test_a_snapshot_asked_for_is_taken_after_the_step_in_progress():
    controls = stopping.Controls()
    recorder = Recorder(
        lambda name, event: controls.request_snapshot() if name == "step" and event.step == 2 else 0
    )
    run(plan_of(group_of(job("a.jpg", (Stage((4, 4), 3),)))), FakePipeline(), recorder, controls)
    assert recorder.of("images") == [
        ("images", "snapshot", 2, 0, ("a.jpg",)),
        ("images", "finished", 3, 0, ("a.jpg",)),
    ]


def test_a_photo_that_keeps_diverging_gives_up_alone_and_the_batch_goes_on():
    stages = (Stage((4, 4), MAX_DIVERGENCES_IN_A_ROW + 4),)
    pipeline = FakePipeline(loss_at=lambda step, position: np.nan if position == 1 else 1.0)
    recorder = Recorder()
    outcomes = run(
        plan_of(group_of(job("a.jpg", stages), job("b.jpg", stages))), pipeline, recorder
    )
    gave_up = MAX_DIVERGENCES_IN_A_ROW
    assert recorder.of("images") == [
        ("images", "gave_up", gave_up, 0, ("b.jpg",)),
        ("images", "finished", gave_up + 4, 0, ("a.jpg",)),
    ]
    assert recorder.of("photo_failed") == [("photo_failed", "b.jpg")]
    assert recorder.of("step")[gave_up][3] == (True, False)  # b no longer active
    assert "kept diverging" in outcomes["b.jpg"] and outcomes["a.jpg"].steps == gave_up + 4


def test_a_resumed_photo_starts_after_its_checkpoint_in_its_stage():
    stages = (Stage((4, 4), 3), Stage((6, 6), 4))
    saved = {"image": np.full((6, 6, 3), 7.0, np.float32)}
    resumed = Checkpoint(stage=1, step=5, optimizer_state=saved, settings={}, photo="")
    recorder, pipeline = Recorder(), FakePipeline()
    run(plan_of(group_of(job("a.jpg", stages, resumed))), pipeline, recorder)
    assert recorder.of("group_started") == [("group_started", 6, 1)]
    assert [item[1] for item in recorder.of("step")] == [6, 7]
    assert len(pipeline.optimizers) == 1 and pipeline.optimizers[0].restored[0][0] is saved
    assert pipeline.optimizers[0].carried == []  # the checkpoint's state, not carried over
    assert float(pipeline.optimizers[0].images.min()) == 9.0  # the saved image, two steps on


def test_an_unreadable_photo_of_a_batch_fails_alone():
    stages = (Stage((4, 4), 2),)
    missing = job("gone.jpg", stages)._replace(
        photo=Photo(2, "/nonexistent/gone.jpg", (4, 4), "", None)
    )
    recorder = Recorder()
    outcomes = run(plan_of(group_of(job("a.jpg", stages), missing)), FakePipeline(), recorder)
    assert recorder.of("photo_failed") == [("photo_failed", "/nonexistent/gone.jpg")]
    assert "gone.jpg" in outcomes["/nonexistent/gone.jpg"]
    assert recorder.of("images") == [("images", "finished", 2, 0, ("a.jpg",))]


def test_an_event_nobody_defines_fails_at_once():
    with pytest.raises(AttributeError):
        Observers([Recorder()]).stpe(None)  # a misspelt event reaches no one silently
