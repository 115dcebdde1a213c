"""The one run loop: a plan's groups -> stages -> precision phases -> steps, telling the
observers (events.py) everything for them to report and write.

    runner = Runner(plan, pipeline, Observers(observers), controls)
    outcomes = runner.run()                  # every group of the plan
    with runner.running():                   # or an executor's own order of groups
        members = runner.run_group(group)    # (video.py: one frame after another)

A single photo is a group of one, and L-BFGS and tiled runs go through the same loop
behind the optimisers' batch interface (optimize/protocols.py), so everything a run does
around its steps exists once: the phases, the divergence give-up, snapshots, the stop on a
signal or a button, the final save. The loop itself writes nothing, and imports no
TensorFlow: a test drives it with a fake pipeline in milliseconds.

Stops (Ctrl-C, SIGTERM, SIGHUP, a live view's Stop) are deferred while the loop runs (see
stopping.py): a step always completes, so that the images and optimiser states handed out
with STOPPED are exactly those after the step they are numbered with, and --resume goes
on exactly.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np

from neural_style import stopping
from neural_style.errors import UserError
from neural_style.gatys import events
from neural_style.gatys.events import Images, Observers, RunResult
from neural_style.gatys.plan import Group, PhotoJob, RunPlan, Stage, photo_pixels
from neural_style.media import images
from neural_style.optimize.protocols import BatchStepResult, ImageLoss, Optimizer

if TYPE_CHECKING:
    from neural_style.gatys.pipeline import Phase, Pipeline

# Divergences in a row after which a photo is given up (its learning rate has halved each
# time), with its best image kept.
MAX_DIVERGENCES_IN_A_ROW = 8


class Member:
    """One photo of a group, as far as it has come."""

    def __init__(self, job: PhotoJob):
        self.job = job
        self.pixels: np.ndarray | None = None  # the photo at its own size
        self.content: np.ndarray | None = None  # the photo at the current stage's size
        self.image: np.ndarray | None = None  # its best image at the end of the last stage
        self.state: dict[str, np.ndarray] = {}  # its optimiser state at that point
        self.losses: dict[str, float] = {}  # at the last step
        self.divergences = 0  # in a row
        self.failure = ""  # why it stopped early, if it did


def stage_label(group: Group, index: int) -> str:
    if len(group.stages) == 1:
        return ""
    height, width = group.stages[index].size
    return f"stage {index + 1}/{len(group.stages)} {width}x{height}  "


class Runner:
    """Runs a plan's groups with a pipeline's networks, telling the observers everything
    and heeding `controls` (stop, snapshot) between steps."""

    def __init__(
        self,
        plan: RunPlan,
        pipeline: Pipeline,
        observers: Observers,
        controls: stopping.Controls | None = None,
    ):
        self.plan = plan
        self.pipeline = pipeline
        self.observers = observers
        self.controls = controls if controls is not None else stopping.Controls()
        self.outcomes: dict[str, RunResult | str] = {}  # by photo path: result or why not

    def run(self) -> dict[str, RunResult | str]:
        """Every group of the plan; each photo's result or why it failed, by its path."""
        with self.running():
            for group in self.plan.groups:
                self.run_group(group)
        return self.outcomes

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        """A run's envelope: run_started; stops deferred for everything inside, the
        observers' closing writes too (a video is assembled there); run_finished however
        it ends; then the stop asked meanwhile, if any, ends the run."""
        self.observers.run_started(self.plan)
        with stopping.deferred(self.controls):
            try:
                yield
            finally:
                self.observers.run_finished(self.plan)
        self.controls.raise_if_stopped()

    def run_group(self, group: Group) -> list[Member]:
        """One group through its stages (inside `running`); returns its members."""
        return _GroupRun(self, group).run()


class _GroupRun:
    """One group's way through its stages: its members, and the step reached."""

    def __init__(self, runner: Runner, group: Group):
        self.runner = runner
        self.pipeline = runner.pipeline
        self.observers = runner.observers
        self.controls = runner.controls
        self.group = group
        self.members = [Member(job) for job in group.jobs]
        resumed = group.jobs[0].resumed
        self.first_stage, self.done = (resumed.stage, resumed.step) if resumed else (0, 0)
        self.step = self.done  # the last step whose state the optimiser holds

    def run(self) -> list[Member]:
        group = self.group
        event = events.GroupStarted(group, self.done + 1, self.runner.plan.photo_count)
        self.observers.group_started(event)
        for member in self.members:
            try:
                member.pixels = photo_pixels(member.job.photo)
            except UserError as error:
                self._fail(member, str(error))
        stage_start = 0
        for index, stage in enumerate(group.stages):
            if index >= self.first_stage and self._going():
                self._run_stage(index, stage, stage_start)
            stage_start += stage.steps
        going = self._going()
        if going:
            last = len(group.stages) - 1
            self._emit_images(self._images_at_stage_end(events.FINISHED, going, last, stage_start))
        for member in going:
            final = member.job.final_path
            self.runner.outcomes[member.job.photo.path] = RunResult(
                final, stage_start, member.losses
            )
        self.observers.group_finished(group)
        return self.members

    def _going(self) -> list[Member]:
        return [member for member in self.members if not member.failure]

    def _fail(self, member: Member, why: str) -> None:
        member.failure = why
        self.runner.outcomes[member.job.photo.path] = why
        self.observers.photo_failed(member.job, why)

    # --- a stage ---

    def _run_stage(self, index: int, stage: Stage, stage_start: int) -> None:
        active = self._going()
        for member in active:
            member.content = images.resize_image(member.pixels, stage.size)
        layout = self.pipeline.layout(stage.size, self.group.memory_plans[index])
        label = stage_label(self.group, index)
        optimizer = None
        try:
            for phase in self.pipeline.phases(stage_start, stage.steps, self.done):
                contents = [member.content for member in active]
                targets = self.pipeline.batch_targets(phase.net, index, contents, layout)
                loss = self.pipeline.make_loss(phase.net, targets, layout, self.group.link)
                if optimizer is None:
                    optimizer = self._start(loss, active, stage.size, index)
                else:
                    optimizer.use_loss(loss)
                self._say_phase(phase, label)
                self.controls.raise_if_stopped()  # asked during start-up: stop before stepping
                self._take_steps(optimizer, active, phase, index, label)
        except KeyboardInterrupt:
            self._stopped(optimizer, active, index, stage_start)
            raise
        states = optimizer.states()
        for position, member in enumerate(active):
            member.image, member.state = optimizer.best(position), states[position]

    def _say_phase(self, phase: Phase, label: str) -> None:
        if phase.switched and phase.first <= phase.last:
            self.observers.note(
                f"{label}float32 from step {phase.first} to {phase.last} "
                f"(FLOAT32_FINISH {self.pipeline.settings.float32_finish:g})"
            )

    def _start(
        self, loss: ImageLoss, active: Sequence[Member], size: tuple[int, int], index: int
    ) -> Optimizer:
        """The stage's optimiser on each photo's start: a video frame's given start, its
        seeded start, or its last stage's result upsampled; restored from the checkpoints
        in a resumed run's first stage."""
        link = self.group.link
        starts = [
            link.start
            if link is not None and link.start is not None
            else self.pipeline.start_image(member.content)
            if member.image is None
            else images.resize_image(member.image, size)
            for member in active
        ]
        optimizer = self.pipeline.make_optimizer(loss, np.stack(starts))
        resumed = self.group.jobs[0].resumed
        if resumed is not None and index == resumed.stage:
            for position, member in enumerate(active):
                optimizer.restore(member.job.resumed.optimizer_state, position)
        else:
            for position, member in enumerate(active):
                if member.state:  # the last stage's, which goes on here
                    optimizer.carry_over(member.state, position)
        return optimizer

    def _take_steps(
        self, optimizer: Optimizer, active: list[Member], phase: Phase, index: int, label: str
    ) -> None:
        every, result = self.pipeline.settings.snapshot_every, None
        for result in optimizer.steps(phase.last - phase.first + 1, first=phase.first):
            self.step = result.step
            for position, member in enumerate(active):
                if not member.failure:
                    member.losses = result.losses[position]
            try:
                self.observers.step(self._step_event(index, label, result, active))
            except (UserError, OSError) as error:  # its log could not be written
                event = self._images_now(events.RESCUE, active, index, result.step, optimizer)
                self._rescue(event, error)
            self._give_up_on_diverging(optimizer, active, result, index)
            if not any(not member.failure for member in active):
                return
            # A snapshot asked for now (a live view's button) is taken first, so it is one.
            if self.controls.take_snapshot() or (every and result.step % every == 0):
                event = self._images_now(events.SNAPSHOT, active, index, result.step, optimizer)
                self._emit_images(event)
            offer_preview(self.observers, optimizer, active)
            self.controls.raise_if_stopped()
        if result is not None and result.step < phase.last:
            self.observers.note(
                f"{label}the optimiser stopped at step {result.step} of {phase.last}: "
                f"{optimizer.message}"
            )

    def _step_event(
        self, index: int, label: str, result: BatchStepResult, active: list[Member]
    ) -> events.Step:
        size = len(active)
        return events.Step(
            self.group,
            index,
            label,
            result.step,
            active[0].job.total_steps,
            result.losses[:size],
            result.seconds,
            result.notes[:size],
            result.evaluations[:size],
            [not member.failure for member in active],
        )

    def _give_up_on_diverging(
        self, optimizer: Optimizer, active: list[Member], result: BatchStepResult, index: int
    ) -> None:
        """A photo that keeps diverging stops, with its best image kept as its final one;
        the others go on."""
        for position, member in enumerate(active):
            if member.failure:
                continue
            member.divergences = member.divergences + 1 if result.notes[position] else 0
            if member.divergences < MAX_DIVERGENCES_IN_A_ROW:
                continue
            final = member.job.final_path
            why = (
                f"the loss became {result.losses[position]['total']} at step {result.step} and "
                f"kept diverging after {member.divergences} restarts at ever lower learning "
                f"rates; the best image is saved as {final}; lower LEARNING_RATE "
                "(--learning_rate) or the loss weights"
            )
            image = optimizer.best(position)
            event = Images(
                events.GAVE_UP, [member.job], index, result.step, [image], [member.content], [], why
            )
            self._emit_images(event)
            self._fail(member, why)

    # --- handing images out ---

    def _images_now(
        self, kind: str, active: list[Member], index: int, step: int, optimizer: Optimizer
    ) -> Images:
        """Each going member's best image and state as `optimizer` holds them at `step`
        (`active` are the optimiser's batch, by position)."""
        states = optimizer.states()
        going = [(p, member) for p, member in enumerate(active) if not member.failure]
        pictures = [optimizer.best(position) for position, _ in going]
        members = [member for _, member in going]
        return self._event(kind, members, index, step, pictures, [states[p] for p, _ in going])

    def _images_at_stage_end(
        self, kind: str, members: list[Member], index: int, step: int
    ) -> Images:
        """Each member's best image and state at the end of its last finished stage."""
        pictures = [member.image for member in members]
        return self._event(kind, members, index, step, pictures, [m.state for m in members])

    def _event(
        self,
        kind: str,
        members: list[Member],
        index: int,
        step: int,
        pictures: list[np.ndarray],
        states: list[dict[str, np.ndarray]],
    ) -> Images:
        contents = [
            member.content
            if member.content.shape[:2] == picture.shape[:2]
            else images.resize_image(member.pixels, picture.shape[:2])
            for member, picture in zip(members, pictures, strict=True)
        ]
        jobs = [member.job for member in members]
        return Images(kind, jobs, index, step, pictures, contents, states)

    def _emit_images(self, event: Images) -> None:
        """Tell the observers; when an output cannot be written, still try to keep each
        photo's final image and checkpoint, then stop with one line saying what was kept."""
        try:
            self.observers.images(event)
        except (UserError, OSError) as error:
            if event.kind == events.RESCUE:
                raise
            self._rescue(event, error)

    def _rescue(self, event: Images, error: Exception) -> None:
        started = time.time()
        rescue = event._replace(kind=events.RESCUE, why=str(error))
        for observer in self.observers.each:
            with contextlib.suppress(UserError, OSError):
                observer.images(rescue)
        kept = [job.final_path for job in event.jobs if _written_since(job.final_path, started)]
        said = f"kept {', '.join(kept)}" if kept else "the final image could not be kept either"
        raise UserError(f"{error}; {said}") from None

    def _stopped(
        self, optimizer: Optimizer | None, active: list[Member], index: int, stage_start: int
    ) -> None:
        """Hand out what a stop keeps: the images and states after the last step taken, or
        after the last finished stage when this one had not started stepping."""
        going = [member for member in active if not member.failure]
        if self.step == self.done:
            self.observers.note("\ninterrupted before the first step: nothing new to save")
            return
        if optimizer is not None and self.step > stage_start:
            event = self._images_now(events.STOPPED, active, index, self.step, optimizer)
            self._emit_images(event)
        elif all(member.state for member in going):
            event = self._images_at_stage_end(events.STOPPED, going, index - 1, stage_start)
            self._emit_images(event)


def _written_since(path: str, moment: float) -> bool:
    try:
        return os.stat(path).st_mtime >= moment - 1
    except OSError:
        return False


def offer_preview(observers: Observers, optimizer: Optimizer, members: Sequence[Member]) -> None:
    """The images of `members` (by position in the optimiser's batch) as the step left them,
    copied only when an observer wants them now (events.Observer.wants_preview)."""
    if not observers.wants_preview():
        return
    pictures = [
        events.Picture(
            np.array(optimizer.current_image(position)),
            np.array(optimizer.best(position)),
            member.content,
        )
        for position, member in enumerate(members)
        if not member.failure
    ]
    observers.preview(pictures)
