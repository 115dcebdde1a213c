"""The one run loop: a plan's groups -> stages -> precision phases -> steps, emitting
events (events.py) for the observers to report and write.

A single photo is a group of one, and L-BFGS and tiled runs go through the same loop
behind the optimisers' batch interface, so everything a run does around its steps exists
once: the phases, the divergence give-up, snapshots, the stop on a signal, the final save.
The loop itself writes nothing.

Stops (Ctrl-C, SIGTERM, SIGHUP) are deferred while the loop runs (see stopping.py): a
step always completes, so that the images and optimiser states handed out with STOPPED
are exactly those after the step they are numbered with, and --resume goes on exactly.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Sequence

import numpy as np

from neural_style import stopping
from neural_style.errors import UserError
from neural_style.gatys import events
from neural_style.gatys.events import Images, Observer, RunResult
from neural_style.gatys.pipeline import Pipeline
from neural_style.gatys.plan import Group, PhotoJob, RunPlan, photo_pixels
from neural_style.media import images

# Divergences in a row after which a photo is given up (its learning rate has halved each
# time), with its best image kept.
MAX_DIVERGENCES_IN_A_ROW = 8


class _Member:
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
        self.start: np.ndarray | None = None  # a start image given by the caller (video)


def stage_label(group: Group, index: int) -> str:
    if len(group.stages) == 1:
        return ""
    height, width = group.stages[index].size
    return f"stage {index + 1}/{len(group.stages)} {width}x{height}  "


class Runner:
    """Runs a plan's groups with a pipeline's networks, telling `observers` everything."""

    def __init__(self, plan: RunPlan, pipeline: Pipeline, observers: Sequence[Observer]):
        self.plan = plan
        self.pipeline = pipeline
        self.observers = list(observers)
        self.outcomes: dict[str, RunResult | str] = {}  # by photo path: result or why not
        self.step = 0  # the last step whose state the optimiser holds
        self.count = plan.photo_count  # photos (or a video's frames) in the run, for [n/N]

    def emit(self, name: str, *payload) -> None:
        for observer in self.observers:
            getattr(observer, name)(*payload)

    def run(self) -> dict[str, RunResult | str]:
        """Every group of the plan; each photo's result or why it failed, by its path."""
        stopping.reset()  # a stop asked of an earlier run in this process is not this one's
        self.emit("run_started", self.plan)
        # Everything from here is deferred, the observers' closing writes too (a video is
        # assembled there): a stop asked meanwhile ends the run once they are done.
        with stopping.deferred():
            try:
                if self.plan.video is not None:
                    from neural_style.gatys.video_runner import run_video

                    run_video(self)
                for group in self.plan.groups:
                    self.run_group(group)
            finally:
                self.emit("run_finished", self.plan)
        stopping.raise_if_requested()
        return self.outcomes

    # --- a group ---

    def run_group(self, group: Group, *, start=None, temporal=None) -> list[_Member]:
        """One group through its stages; `start` (one image) and `temporal` (the loss term
        that holds it to an earlier image) are a video frame's. Returns the members."""
        self._group, self._temporal = group, temporal
        members = [_Member(job) for job in group.jobs]
        members[0].start = start
        resumed = group.jobs[0].resumed
        first_stage, done = (resumed.stage, resumed.step) if resumed else (0, 0)
        self.step = self._steps_at_start = done
        self.emit("group_started", events.GroupStarted(group, done + 1, self.count))
        for member in members:
            try:
                member.pixels = photo_pixels(member.job.photo)
            except UserError as error:
                self._fail(member, str(error))
        stage_start = 0
        for index, stage in enumerate(group.stages):
            if index >= first_stage and self._active(members):
                self._run_stage(group, members, index, stage_start, done)
            stage_start += stage.steps
        going = self._active(members)
        if going:
            self._hand_out(events.FINISHED, going, len(group.stages) - 1, stage_start)
        for member in going:
            final = member.job.final_path
            self.outcomes[member.job.photo.path] = RunResult(final, stage_start, member.losses)
        self.emit("group_finished", group)
        return members

    @staticmethod
    def _active(members: Sequence[_Member]) -> list[_Member]:
        return [member for member in members if not member.failure]

    def _fail(self, member: _Member, why: str) -> None:
        member.failure = why
        self.outcomes[member.job.photo.path] = why
        self.emit("photo_failed", member.job, why)

    # --- a stage ---

    def _run_stage(self, group: Group, members, index: int, stage_start: int, done: int) -> None:
        stage = group.stages[index]
        active = self._active(members)
        for member in active:
            member.content = images.resize_image(member.pixels, stage.size)
        layout = self.pipeline.layout(stage.size, group.memory_plans[index])
        label = stage_label(group, index)
        optimizer = None
        try:
            for phase in self.pipeline.phases(stage_start, stage.steps, done):
                contents = [member.content for member in active]
                targets = self.pipeline.batch_targets(phase.net, index, contents, layout)
                loss = self.pipeline.make_loss(phase.net, targets, layout, self._temporal)
                if optimizer is None:
                    optimizer = self._start(loss, active, stage.size, group, index)
                else:
                    optimizer.use_loss(loss)
                if phase.switched and phase.first <= phase.last:
                    self.emit(
                        "note",
                        f"{label}float32 from step {phase.first} to {phase.last} "
                        f"(FLOAT32_FINISH {self.pipeline.settings.float32_finish:g})",
                    )
                stopping.raise_if_requested()  # asked during start-up: stop before stepping
                self._take_steps(optimizer, active, phase.first, phase.last, index, label)
        except KeyboardInterrupt as stop:
            self._stopped(optimizer, active, index, stage_start, stop)
            raise
        states = optimizer.states()
        for position, member in enumerate(active):
            member.image, member.state = optimizer.best(position), states[position]

    def _start(self, loss, active: Sequence[_Member], size, group: Group, index: int):
        """The stage's optimiser on each photo's seeded start, or its last stage's result
        upsampled; restored from the checkpoints in a resumed run's first stage."""
        starts = [
            member.start
            if member.start is not None
            else self.pipeline.start_image(member.content)
            if member.image is None
            else images.resize_image(member.image, size)
            for member in active
        ]
        optimizer = self.pipeline.make_optimizer(loss, np.stack(starts))
        resumed = group.jobs[0].resumed
        if resumed is not None and index == resumed.stage:
            for position, member in enumerate(active):
                optimizer.restore(member.job.resumed.optimizer_state, position)
        return optimizer

    def _take_steps(self, optimizer, active, first: int, last: int, index: int, label: str):
        s, result = self.pipeline.settings, None
        total = active[0].job.total_steps
        for result in optimizer.steps(last - first + 1, first=first):
            self.step = result.step
            going = [not member.failure for member in active]
            for position, member in enumerate(active):
                if going[position]:
                    member.losses = result.losses[position]
            try:
                self.emit("step", self._step_event(index, label, result, going, total))
            except (UserError, OSError) as error:  # its log could not be written
                alive = [(p, member) for p, member in enumerate(active) if not member.failure]
                self._rescue(
                    self._images(events.RESCUE, alive, index, result.step, optimizer), error
                )
            self._give_up_on_diverging(optimizer, active, result, index)
            if not self._active(active):
                return
            # A snapshot asked for now (a live view's button) is taken first, so it is one.
            if stopping.take_snapshot_request() or (
                s.snapshot_every and result.step % s.snapshot_every == 0
            ):
                going = [(p, member) for p, member in enumerate(active) if not member.failure]
                self._hand_out(events.SNAPSHOT, going, index, result.step, optimizer)
            offer_preview(self.observers, optimizer, active)
            stopping.raise_if_requested()
        if result is not None and result.step < last:
            message = getattr(optimizer, "message", "")
            self.emit(
                "note", f"{label}the optimiser stopped at step {result.step} of {last}: {message}"
            )

    def _step_event(self, index: int, label: str, result, going, total: int) -> events.Step:
        size = len(going)
        return events.Step(
            self._group,
            index,
            label,
            result.step,
            total,
            result.losses[:size],
            result.seconds,
            result.notes[:size],
            result.evaluations[:size],
            going,
        )

    def _give_up_on_diverging(self, optimizer, active, result, index: int) -> None:
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
            self._emit_images(
                Images(
                    events.GAVE_UP,
                    [member.job],
                    index,
                    result.step,
                    [image],
                    [member.content],
                    [],
                    why,
                )
            )
            self._fail(member, why)

    # --- handing images out ---

    def _hand_out(self, kind: str, members, index: int, step: int, optimizer=None) -> None:
        """Tell the observers each member's best image and state (see _images)."""
        self._emit_images(self._images(kind, members, index, step, optimizer))

    def _images(self, kind: str, members, index: int, step: int, optimizer=None) -> Images:
        """Each member's best image and state, from `optimizer` at `step` (members are then
        (position, member) pairs), or without one from the end of their last stage."""
        if optimizer is None:
            pictures = [member.image for member in members]
            states = [member.state for member in members]
        else:
            positions = [position for position, _ in members]
            states_now = optimizer.states()
            members = [member for _, member in members]
            pictures = [optimizer.best(position) for position in positions]
            states = [states_now[position] for position in positions]
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
            self.emit("images", event)
        except (UserError, OSError) as error:
            if event.kind == events.RESCUE:
                raise
            self._rescue(event, error)

    def _rescue(self, event: Images, error: Exception) -> None:
        started = time.time()
        rescue = event._replace(kind=events.RESCUE, why=str(error))
        for observer in self.observers:
            with contextlib.suppress(UserError, OSError):
                observer.images(rescue)
        kept = [job.final_path for job in event.jobs if _written_since(job.final_path, started)]
        said = f"kept {', '.join(kept)}" if kept else "the final image could not be kept either"
        message = str(error) if isinstance(error, UserError) else f"{error}"
        raise UserError(f"{message}; {said}") from None

    def _stopped(self, optimizer, active, index: int, stage_start: int, stop) -> None:
        """Hand out what a stop keeps: the images and states after the last step taken, or
        after the last finished stage when this one had not started stepping."""
        del stop
        going = [(p, member) for p, member in enumerate(active) if not member.failure]
        if self.step == self._steps_at_start:
            self.emit("note", "\ninterrupted before the first step: nothing new to save")
            return
        if optimizer is not None and self.step > stage_start:
            self._hand_out(events.STOPPED, going, index, self.step, optimizer)
        elif all(member.state for _, member in going):
            self._hand_out(events.STOPPED, [m for _, m in going], index - 1, stage_start)


def _written_since(path: str, moment: float) -> bool:
    try:
        return os.stat(path).st_mtime >= moment - 1
    except OSError:
        return False


def offer_preview(observers: Sequence[Observer], optimizer, members: Sequence) -> None:
    """The images of `members` (by position in the optimiser's batch) as the step left them,
    copied only for the observers that want them now (events.Observer.wants_preview)."""
    wanting = [observer for observer in observers if observer.wants_preview()]
    if not wanting:
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
    for observer in wanting:
        observer.preview(pictures)
