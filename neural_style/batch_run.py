"""Stylising a folder or glob of photos, up to BATCH_SIZE of them at a time.

Photos whose stages have the same sizes (photos of the same aspect ratio) are grouped, in
folder order, into batches of up to BATCH_SIZE, and each batch is optimised as one
[B, H, W, 3] image variable (batch_optimize.py). Every other photo runs alone, as a
PhotoRun (run.py), and so does every photo when BATCH_SIZE is 1.

A photo in a batch gets what it would get alone: its own start noise (the same seed),
loss, best image, divergence recovery and Adam state, and its own files under
<OUTPUT_IMAGE>-<photo name>: snapshots, the final image, the losses log and plot, the
settings record and a checkpoint in the single-photo format, so that --resume works for
each photo. A resumed batch resumes each photo's checkpoint, together when their stages
and steps match.

One photo at a time, as before, with a note saying so: every photo with L-BFGS (on a sum
of losses it is not the same run as on each loss), and photos too large for a plain step
of two of them (see Pipeline.memory_plan). A batch too large for the memory is made
smaller until it fits.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from typing import NamedTuple, TextIO

import numpy as np
import tensorflow as tf

from neural_style import checkpoint as checkpoints
from neural_style import images
from neural_style.batch_optimize import BatchAdamOptimizer, BatchLossFunction, BatchStepResult
from neural_style.config import Settings
from neural_style.errors import UserError
from neural_style.losses import Targets
from neural_style.reporting import (
    LOSS_NAMES,
    LossLog,
    ProgressPrinter,
    snapshot_path,
    write_settings_record,
)
from neural_style.run import (
    MAX_DIVERGENCES_IN_A_ROW,
    PhotoRun,
    Pipeline,
    RunResult,
    Stage,
    plan_stages,
)
from neural_style.vgg import VGG19

Failure = tuple[str, str]  # (photo, why it was not stylised)
# Photos batch together when their keys are equal: their stage sizes and, when resuming,
# the (stage, step) their checkpoints reached.
BatchKey = tuple


class PhotoPlan(NamedTuple):
    number: int  # 1-based place of the photo in the folder or glob
    path: str
    prefix: str  # its output prefix, <OUTPUT_IMAGE>-<photo name>
    key: BatchKey | None  # None: the photo runs alone


# --- which photos run together ---------------------------------------------------------------


def unbatched_reason(settings: Settings) -> str:
    """Why this run's photos all run one at a time although BATCH_SIZE asks for more ("" if
    they need not)."""
    if settings.batch_size > 1 and settings.optimizer == "lbfgs":
        return (
            f"note: BATCH_SIZE {settings.batch_size} is for Adam; L-BFGS on a sum of losses is "
            "not the same run as on each photo's, so the photos are stylised one at a time"
        )
    return ""


def _resume_point(settings: Settings, prefix: str) -> tuple[int, int] | None:
    """The (stage, step) of the photo's checkpoint, or None when it cannot join a batch: no
    usable checkpoint (its PhotoRun reports why) or nothing left to do."""
    try:
        path = checkpoints.checkpoint_path(prefix)
        loaded = checkpoints.load_checkpoint(path)
        checkpoints.check_resumable(loaded, settings, path)
    except UserError:
        return None
    return loaded.stage, loaded.step


def plan_photo(
    settings: Settings, number: int, path: str, prefix_for: Callable[[str], str]
) -> PhotoPlan:
    """Where a photo's output goes and which photos it may share a batch with."""
    prefix = prefix_for(path)
    try:
        photo = images.load_image(path, "CONTENT_IMAGE")
    except UserError:
        return PhotoPlan(number, path, prefix, None)  # its PhotoRun reports the error
    stages = plan_stages(settings, photo.shape[:2])
    sizes = tuple(stage.size for stage in stages)
    if not settings.resume:
        return PhotoPlan(number, path, prefix, (sizes,))
    point = _resume_point(settings, prefix)
    unfinished = point is not None and point[1] < sum(stage.steps for stage in stages)
    return PhotoPlan(number, path, prefix, (sizes, point) if unfinished else None)


def _plain_step_fits(pipeline: Pipeline, size: tuple[int, int], batch: int) -> bool:
    """Whether a step of `batch` images at `size` fits in memory in one piece (no tiles)."""
    try:
        return not pipeline.memory_plan(size, batch=batch).tiled
    except UserError:
        return False


def fitting_batch_size(pipeline: Pipeline, sizes: Sequence[tuple[int, int]], wanted: int) -> int:
    """The largest batch, up to `wanted`, whose plain step fits in memory at every size."""
    for batch in range(wanted, 1, -1):
        if all(_plain_step_fits(pipeline, size, batch) for size in sizes):
            return batch
    return 1


def group_photos(
    plans: Sequence[PhotoPlan], limit_of: Callable[[BatchKey], int]
) -> list[list[PhotoPlan]]:
    """Photos with equal keys, in order, in batches of up to `limit_of(key)`; a photo
    without a key alone. The groups come in the order of their first photos."""
    groups: list[list[PhotoPlan]] = []
    filling: dict[BatchKey, list[PhotoPlan]] = {}
    for plan in plans:
        if plan.key is None:
            groups.append([plan])
            continue
        batch = filling.get(plan.key)
        if batch is None or len(batch) >= limit_of(plan.key):
            batch = filling[plan.key] = []
            groups.append(batch)
        batch.append(plan)
    return groups


def _batch_limits(pipeline: Pipeline) -> Callable[[BatchKey], int]:
    """limit_of(key) for group_photos: BATCH_SIZE, or less where that does not fit, said
    once per size in a note."""
    wanted, limits = pipeline.settings.batch_size, {}

    def limit_of(key: BatchKey) -> int:
        if key not in limits:
            sizes = key[0]
            limits[key] = fitting_batch_size(pipeline, sizes, wanted)
            if limits[key] < wanted:
                height, width = sizes[-1]
                print(
                    f"note: {wanted} photos at {width}x{height} do not fit in memory together, "
                    f"so they are stylised {limits[key]} at a time",
                    file=pipeline.stream,
                )
        return limits[key]

    return limit_of


# --- the entry point -------------------------------------------------------------------------


def stylize_photos(
    pipeline: Pipeline, photos: Sequence[str], prefix_for: Callable[[str], str]
) -> tuple[list[RunResult], list[Failure]]:
    """Stylise every photo of a folder or glob run, in batches where BATCH_SIZE allows, and
    return the results and the failures, each in the photos' order."""
    settings, stream = pipeline.settings, pipeline.stream
    reason = unbatched_reason(settings)
    if reason:
        print(reason, file=stream)
    if settings.batch_size == 1 or reason:
        plans = [PhotoPlan(number, path, "", None) for number, path in enumerate(photos, 1)]
        groups = [[plan] for plan in plans]
    else:
        plans = [plan_photo(settings, n, path, prefix_for) for n, path in enumerate(photos, 1)]
        groups = group_photos(plans, _batch_limits(pipeline))
    outcomes: dict[int, RunResult | Failure] = {}
    for group in groups:
        if len(group) == 1:
            (plan,) = group
            outcomes[plan.number] = _run_alone(pipeline, plan, len(photos), prefix_for)
        else:
            outcomes.update(BatchRun(pipeline, group, len(photos)).run())
    ordered = [outcomes[number] for number in sorted(outcomes)]
    results = [outcome for outcome in ordered if isinstance(outcome, RunResult)]
    failures = [outcome for outcome in ordered if not isinstance(outcome, RunResult)]
    return results, failures


def _run_alone(
    pipeline: Pipeline, plan: PhotoPlan, count: int, prefix_for: Callable[[str], str]
) -> RunResult | Failure:
    """One photo as a PhotoRun; a UserError skips it."""
    print(f"[{plan.number}/{count}] {plan.path}", file=pipeline.stream, flush=True)
    try:
        run = PhotoRun(pipeline, plan.path, plan.prefix or prefix_for(plan.path))
        return run.run()
    except UserError as error:
        print(f"skipped {plan.path}: {error}", file=pipeline.stream)
        return plan.path, str(error)


# --- a batch ----------------------------------------------------------------------------------


class Member:
    """One photo of a batch: its PhotoRun (the photo, its stages, its files) and how far
    it has come."""

    def __init__(self, plan: PhotoPlan, run: PhotoRun):
        self.plan = plan
        self.run = run
        self.log: LossLog | None = None
        self.content: np.ndarray | None = None  # the photo at the current stage's size
        self.image: np.ndarray | None = None  # its best image at the end of the last stage
        self.state: dict[str, np.ndarray] = {}  # its optimiser state at that point
        self.losses: dict[str, float] = {}  # at the last step
        self.divergences = 0  # in a row
        self.failure = ""  # why it stopped early, if it did

    @property
    def name(self) -> str:
        return os.path.basename(self.plan.path)


class BatchRun:
    """Photos with the same stage sizes, optimised together through every stage."""

    def __init__(self, pipeline: Pipeline, plans: Sequence[PhotoPlan], count: int):
        self.pipeline = pipeline
        self.settings = pipeline.settings
        self.stream: TextIO = pipeline.stream
        self.members: list[Member] = []
        self.outcomes: dict[int, RunResult | Failure] = {}
        for plan in plans:
            print(f"[{plan.number}/{count}] {plan.path}", file=self.stream, flush=True)
            try:
                self.members.append(Member(plan, PhotoRun(pipeline, plan.path, plan.prefix)))
            except UserError as error:
                self._fail_early(plan, str(error))
        self.stages: list[Stage] = self.members[0].run.stages if self.members else []
        self.total_steps = sum(stage.steps for stage in self.stages)
        self.step = 0

    def _fail_early(self, plan: PhotoPlan, why: str) -> None:
        print(f"skipped {plan.path}: {why}", file=self.stream)
        self.outcomes[plan.number] = (plan.path, why)

    @property
    def active(self) -> list[Member]:
        """The members still being optimised."""
        return [member for member in self.members if not member.failure]

    def run(self) -> dict[int, RunResult | Failure]:
        """Every stage for the whole batch; each photo's result or failure by its number."""
        if not self.members:
            return self.outcomes
        resumed = self._load_checkpoints()
        first_stage, done = (resumed[0].stage, resumed[0].step) if resumed else (0, 0)
        self.step = done
        size = self.stages[-1].size
        print(
            f"{len(self.members)} photos at {size[1]}x{size[0]} optimised together; progress "
            "shows their mean losses",
            file=self.stream,
        )
        progress = ProgressPrinter(self.total_steps, self.settings.print_every, self.stream)
        with contextlib.ExitStack() as logs:
            for member in self.members:
                write_settings_record(
                    f"{member.run.prefix}-settings.json",
                    checkpoints.settings_record(self.settings),
                )
                member.log = logs.enter_context(
                    LossLog(f"{member.run.prefix}-losses.csv", keep_until=done if resumed else None)
                )
            stage_start = 0
            for index, stage in enumerate(self.stages):
                stage_end = stage_start + stage.steps
                if index >= first_stage and self.active:
                    restore = resumed if resumed and index == first_stage else None
                    first = max(done, stage_start) + 1
                    self._run_stage(index, stage, first, stage_end, progress, restore)
                stage_start = stage_end
        self._finish()
        return self.outcomes

    def _load_checkpoints(self) -> list[checkpoints.Checkpoint]:
        """Each member's checkpoint when resuming (grouping made their stages and steps
        equal), else an empty list."""
        if not self.settings.resume:
            return []
        loaded = []
        for member in self.members:
            path = checkpoints.checkpoint_path(member.run.prefix)
            loaded.append(checkpoints.load_checkpoint(path))
            print(f"resuming from {path} at step {loaded[-1].step}", file=self.stream)
        return loaded

    # --- one stage ---

    def _run_stage(
        self,
        index: int,
        stage: Stage,
        first: int,
        last: int,
        progress: ProgressPrinter,
        resumed: list[checkpoints.Checkpoint] | None,
    ) -> None:
        members = self.active
        for member in members:
            member.content = images.resize_image(member.run.photo, stage.size)
        optimizer = None
        try:
            for phase in self.pipeline.phases(last - stage.steps, stage.steps, first - 1):
                targets = self._targets(phase.net, index, members)
                loss = BatchLossFunction(phase.net, targets, self.pipeline.weights)
                if optimizer is None:
                    optimizer = self._make_optimizer(loss, stage, members)
                    for position, checkpoint in enumerate(resumed or []):
                        optimizer.restore(checkpoint.optimizer_state, position)
                else:
                    optimizer.use_loss(loss)
                if phase.switched and phase.first <= phase.last:
                    self.pipeline.say_float32_finish(
                        self._stage_label(index), phase.first, phase.last
                    )
                self._optimise(optimizer, members, phase.first, phase.last, progress, index)
        except KeyboardInterrupt:
            if optimizer is not None:
                self._save_on_interrupt(optimizer, members, index)
            raise
        for position, (member, state) in enumerate(zip(members, optimizer.states(), strict=True)):
            member.image, member.state = optimizer.best(position), state

    def _make_optimizer(
        self, loss: BatchLossFunction, stage: Stage, members: Sequence[Member]
    ) -> BatchAdamOptimizer:
        """Adam on the members' start images: each photo's own seeded start, or its last
        stage's result upsampled."""
        pipeline = self.pipeline
        starts = [
            pipeline.start_image(member.content)
            if member.image is None
            else images.resize_image(member.image, stage.size)
            for member in members
        ]
        return BatchAdamOptimizer(loss, np.stack(starts), **pipeline.adam_options())

    def _targets(self, net: VGG19, index: int, members: Sequence[Member]) -> Targets:
        """Each photo's content features from `net`, computed alone as a single run computes
        them, and the style Grams: shared [1, c, c], or [B, c, c] when each photo has its own
        (PRESERVE_COLORS histogram)."""
        per_photo = [self.pipeline.targets(net, index, member.content, None) for member in members]
        contents = [targets.content for targets in per_photo]
        grams = [targets.style_grams for targets in per_photo]
        shared = all(gram is grams[0] for gram in grams)
        return Targets(
            content={name: tf.concat([c[name] for c in contents], 0) for name in contents[0]},
            style_grams=grams[0]
            if shared
            else {name: tf.concat([g[name] for g in grams], 0) for name in grams[0]},
        )

    def _optimise(
        self,
        optimizer: BatchAdamOptimizer,
        members: Sequence[Member],
        first: int,
        last: int,
        progress: ProgressPrinter,
        index: int,
    ) -> None:
        label = self._stage_label(index)
        for result in optimizer.steps(last - first + 1, first=first):
            self.step = result.step
            for position, member in enumerate(members):
                if not member.failure:
                    member.log.write(result.step, result.losses[position], result.seconds)
                    member.losses = result.losses[position]
            progress.update(
                result.step,
                self._mean_losses(members),
                note=self._note(members, result),
                label=label,
            )
            self._give_up_on_diverging(optimizer, members, result)
            if not any(not member.failure for member in members):
                return
            if self.settings.snapshot_every and result.step % self.settings.snapshot_every == 0:
                self._snapshot(optimizer, members, index, result.step)

    def _stage_label(self, index: int) -> str:
        if len(self.stages) == 1:
            return ""
        height, width = self.stages[index].size
        return f"stage {index + 1}/{len(self.stages)} {width}x{height}  "

    @staticmethod
    def _mean_losses(members: Sequence[Member]) -> dict[str, float]:
        going = [member.losses for member in members if not member.failure] or [
            member.losses for member in members
        ]
        return {name: float(np.mean([losses[name] for losses in going])) for name in LOSS_NAMES}

    @staticmethod
    def _note(members: Sequence[Member], result: BatchStepResult) -> str:
        return "; ".join(
            f"{member.name}: {note}"
            for member, note in zip(members, result.notes, strict=True)
            if note and not member.failure
        )

    def _give_up_on_diverging(
        self, optimizer: BatchAdamOptimizer, members: Sequence[Member], result: BatchStepResult
    ) -> None:
        """A photo that keeps diverging stops, with its best image saved, as it would alone;
        the others go on."""
        for position, member in enumerate(members):
            if member.failure:
                continue
            member.divergences = member.divergences + 1 if result.notes[position] else 0
            if member.divergences < MAX_DIVERGENCES_IN_A_ROW:
                continue
            member.run.save(member.run.final_path, optimizer.best(position), member.content)
            member.failure = (
                f"the loss became {result.losses[position]['total']} at step {result.step} and "
                f"kept diverging after {member.divergences} restarts at ever lower learning "
                f"rates; the best image is saved as {member.run.final_path}; lower "
                "LEARNING_RATE (--learning_rate) or the loss weights"
            )
            self._fail_early(member.plan, member.failure)

    def _snapshot(
        self, optimizer: BatchAdamOptimizer, members: Sequence[Member], index: int, step: int
    ) -> None:
        states = optimizer.states()
        for position, member in enumerate(members):
            if member.failure:
                continue
            member.run.save(
                snapshot_path(member.run.prefix, step), optimizer.best(position), member.content
            )
            self._checkpoint(member, states[position], index, step)
            self.pipeline.write_plot(member.run.prefix)

    def _save_on_interrupt(
        self, optimizer: BatchAdamOptimizer, members: Sequence[Member], index: int
    ) -> None:
        """Ctrl-C: every photo's best image and checkpoint, as a single run saves its own."""
        states, saved = optimizer.states(), []
        for position, member in enumerate(members):
            if member.failure:
                continue
            member.run.save(member.run.final_path, optimizer.best(position), member.content)
            self._checkpoint(member, states[position], index, self.step)
            saved.append(member.run.final_path)
        print(
            f"\ninterrupted at step {self.step}: saved {', '.join(saved)} and their "
            "checkpoints; --resume continues",
            file=self.stream,
            flush=True,
        )

    def _checkpoint(self, member: Member, state: dict, stage: int, step: int) -> None:
        checkpoints.save_checkpoint(
            checkpoints.checkpoint_path(member.run.prefix),
            checkpoints.Checkpoint(stage, step, state, checkpoints.settings_record(self.settings)),
        )

    def _finish(self) -> None:
        """Each finished photo's final image, checkpoint and plot, and its result."""
        for member in self.active:
            member.run.save(member.run.final_path, member.image, member.content)
            self._checkpoint(member, member.state, len(self.stages) - 1, self.total_steps)
            self.pipeline.write_plot(member.run.prefix, wait=True)
            print(f"saved {member.run.final_path}", file=self.stream)
            self.outcomes[member.plan.number] = RunResult(
                member.run.final_path, self.total_steps, member.losses
            )
