"""What a run shows and leaves behind: the observers of the run loop's events.

    observers = standard_observers(settings, stream)  # in the order they must hear events
    Runner(plan, pipeline, observers).run()

- ImageWriter: snapshots `<prefix>-<step>.jpg` and final images `<prefix>.jpg` (or .png,
  .tif: OUTPUT_FORMAT);
- CheckpointWriter: `<prefix>-checkpoint.npz` beside every snapshot and final image;
- RunRecords: `<prefix>-settings.json` and the losses log `<prefix>-losses.csv`;
- LossPlots: `<prefix>-losses.png`, drawn in a child process;
- TerminalReport: what the run says: progress lines, notes, what it saved.

The progress line (ProgressLine) and the losses log (LossLog) are also what network
training uses. Every file is written atomically or line by line, so an interrupted run
never leaves a half-written image or log line; a file that cannot be written is one
UserError naming it.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import sys
import time
from typing import TextIO

import numpy as np

from neural_style import files
from neural_style.files import atomic_write_text
from neural_style.gatys import checkpoint as checkpoints
from neural_style.gatys import events, outputs
from neural_style.gatys.events import GroupStarted, Images, Observer, Step
from neural_style.gatys.plan import Group, PhotoJob, RunPlan
from neural_style.media import colors, plots
from neural_style.media.images import save_image
from neural_style.names import LOSS_NAMES
from neural_style.optimize.memory import GIB
from neural_style.settings.gatys import Settings


def is_due(step: int, every: int, total: int) -> bool:
    """True every `every` steps and on the last step (never when `every` is 0, but the last)."""
    return step == total or (every > 0 and step % every == 0)


def format_duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"


class ProgressLine:
    """`step n/N`, the losses, the speed and the ETA, printed every few steps: the one
    progress line of every kind of run (a Gatys run and network training alike).

    The speed is seconds per step, or images per second when `images_per_step` is given
    (training). The ETA is measured from `first_step` (a resumed run's start).
    """

    def __init__(
        self,
        total_steps: int,
        every: int,
        stream: TextIO | None = None,
        *,
        first_step: int = 0,
        images_per_step: int = 0,
        names: tuple[str, ...] = LOSS_NAMES,
    ):
        self.total_steps = total_steps
        self.names = names
        self.every = every
        self.stream = stream or sys.stdout
        self.images_per_step = images_per_step
        self._last_step = first_step
        self._last_time = time.perf_counter()

    def update(
        self,
        step: int,
        losses: dict[str, float],
        *,
        evaluations: int | None = None,
        note: str = "",
        label: str = "",
    ) -> None:
        """A line on cadence, and always on the first step and when there is a `note`."""
        if not (step == 1 or note or is_due(step, self.every, self.total_steps)):
            return
        now = time.perf_counter()
        seconds_per_step = (now - self._last_time) / max(step - self._last_step, 1)
        self._last_step, self._last_time = step, now
        eta = seconds_per_step * (self.total_steps - step)
        parts = "  ".join(f"{name} {losses[name]:.4g}" for name in self.names)
        width = len(str(self.total_steps))
        evals = f" ({evaluations} evals)" if evaluations and evaluations != step else ""
        if self.images_per_step:
            rate = self.images_per_step / seconds_per_step if seconds_per_step > 0 else math.inf
            speed = f"{rate:.3g} img/s"
        else:
            speed = f"{seconds_per_step:.2f} s/step"
        print(
            f"{label}step {step:>{width}}/{self.total_steps}{evals}  {parts}  "
            f"{speed}  ETA {format_duration(eta)}" + (f"  [{note}]" if note else ""),
            file=self.stream,
            flush=True,
        )


class LossLog:
    """A losses log (`<prefix>-losses.csv`, a network's `losses.csv`): a header, then one
    line per step with every loss part and the step's seconds, each line flushed as it is
    written.

    `keep_until=N` continues an existing log after step N (a resumed run), dropping the
    lines an interrupted run wrote after its last checkpoint; without it the log starts
    afresh. `extra` names columns written before the losses (e.g. "frame"); `names` are
    the loss parts, in their columns' order.
    """

    def __init__(
        self,
        path: str,
        keep_until: int | None = None,
        *,
        extra: tuple[str, ...] = (),
        names: tuple[str, ...] = LOSS_NAMES,
    ):
        self.path = path
        self.extra = extra
        self.names = names
        kept = self._rows_until(path, keep_until) if keep_until is not None else []
        # The header and the kept rows replace the file atomically, so that a run killed
        # now still leaves the earlier log whole; the steps are then appended.
        start = io.StringIO()
        start_writer = csv.writer(start)
        start_writer.writerow(("step", *extra, *names, "seconds"))
        start_writer.writerows(kept)
        atomic_write_text(path, start.getvalue())
        self._file = open(path, "a", newline="", encoding="utf-8")  # noqa: SIM115
        self._writer = csv.writer(self._file)

    @staticmethod
    def _rows_until(path: str, last_step: int) -> list[list[str]]:
        if not os.path.exists(path):
            return []
        with open(path, newline="", encoding="utf-8") as file:
            rows = list(csv.reader(file))[1:]
        return [row for row in rows if row and row[0].isdigit() and int(row[0]) <= last_step]

    def write(self, step: int, losses: dict[str, float], seconds: float, extra: tuple = ()) -> None:
        self._writer.writerow(
            (step, *extra, *(repr(losses.get(name, 0.0)) for name in self.names), f"{seconds:.4f}")
        )
        self._file.flush()

    def close(self) -> None:
        """Close the log; a row that cannot be flushed now (a full disk) was already
        reported when it was written."""
        with contextlib.suppress(OSError):
            self._file.close()

    def __enter__(self) -> LossLog:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def write_settings_record(path: str, settings_dict: dict) -> None:
    """`<prefix>-settings.json`: the settings the run used, beside its images."""
    atomic_write_text(path, json.dumps(settings_dict, indent=2, default=str) + "\n")


# --- the observers of a Gatys run ----------------------------------------------------------


def mean_losses(event: Step) -> dict[str, float]:
    """The mean of each loss part over the photos still going (all, if none is)."""
    going = [losses for losses, on in zip(event.losses, event.active, strict=True) if on]
    going = going or event.losses
    return {name: float(np.mean([losses[name] for losses in going])) for name in LOSS_NAMES}


def visible(settings: Settings, image: np.ndarray, content: np.ndarray) -> np.ndarray:
    """What is written of an image: itself, or its brightness on the photo's colours."""
    if settings.preserve_colors == "luminance":
        return colors.preserve_colors(image, content)
    return image


class ImageWriter(Observer):
    """Snapshots and final images, in OUTPUT_FORMAT (the format each job carries); a 16-bit
    format gets the optimised floats, never an 8-bit copy of them."""

    def __init__(self, settings: Settings):
        self.settings = settings

    def images(self, event: Images) -> None:
        for job, image, content in zip(event.jobs, event.images, event.contents, strict=True):
            step = event.step if event.kind == events.SNAPSHOT else None
            path = outputs.snapshot_path(job.prefix, step, job.output_format)
            bits = outputs.image_bits(job.output_format)
            save_image(path, visible(self.settings, image, content), bits=bits)


class CheckpointWriter(Observer):
    """`<prefix>-checkpoint.npz` with each snapshot and final image: the state after
    exactly the step it names."""

    def __init__(self, settings: Settings):
        self.record = checkpoints.settings_record(settings)

    def images(self, event: Images) -> None:
        if event.kind == events.GAVE_UP:
            return
        for job, state in zip(event.jobs, event.states, strict=True):
            path = checkpoints.checkpoint_path(job.prefix)
            checkpoint = checkpoints.Checkpoint(
                event.stage, event.step, state, self.record, job.photo.digest
            )
            try:
                checkpoints.save_checkpoint(path, checkpoint)
            except OSError as error:
                raise files.output_error(path, error, "OUTPUT_IMAGE") from None


class RunRecords(Observer):
    """Each photo's settings record and losses log, first written at its first step: a run
    stopped before it leaves an earlier run's record and log as they were."""

    def __init__(self, settings: Settings):
        self.record = checkpoints.settings_record(settings)
        self.logs: dict[str, LossLog] = {}

    def step(self, event: Step) -> None:
        for job, losses, on in zip(event.group.jobs, event.losses, event.active, strict=True):
            if not on:
                continue
            path = f"{job.prefix}-losses.csv"
            try:
                if job.prefix not in self.logs:
                    write_settings_record(f"{job.prefix}-settings.json", self.record)
                    keep = job.done if job.resumed else None
                    self.logs[job.prefix] = LossLog(path, keep_until=keep)
                self.logs[job.prefix].write(event.step, losses, event.seconds)
            except OSError as error:
                raise files.output_error(path, error, "OUTPUT_IMAGE") from None

    def group_finished(self, group: Group) -> None:
        self.run_finished(None)

    def run_finished(self, plan: RunPlan | None) -> None:
        for log in self.logs.values():
            log.close()
        self.logs.clear()


class LossPlots(Observer):
    """`<prefix>-losses.png` with each snapshot (drawn while the run goes on) and at the
    end (waited for); says once why plots are missing, when they are."""

    def __init__(self, stream: TextIO):
        self.stream = stream
        self._drawing: plots.PlotProcess | None = None
        self._said: set[str] = set()

    def images(self, event: Images) -> None:
        if event.kind not in (events.SNAPSHOT, events.FINISHED):
            return
        for job in event.jobs:
            self._finish()
            self._drawing = plots.PlotProcess(
                f"{job.prefix}-losses.csv", f"{job.prefix}-losses.png"
            )
            if event.kind == events.FINISHED:
                self._finish()

    def run_finished(self, plan: RunPlan) -> None:
        self._finish()  # however the run ends, its last plot is finished, not cut off

    def _finish(self) -> None:
        if self._drawing is None:
            return
        note, self._drawing = self._drawing.wait(), None
        if note and note not in self._said:
            print(note, file=self.stream)
            self._said.add(note)


class TerminalReport(Observer):
    """What a run says on the terminal."""

    def __init__(self, settings: Settings, stream: TextIO):
        self.settings = settings
        self.stream = stream
        self.progress: ProgressLine | None = None
        self.alone = True  # the current group is one photo

    def say(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def run_started(self, plan: RunPlan) -> None:
        for note in plan.notes:
            self.say(note)
        for job in plan.complete:
            self.say(
                f"{job.prefix}: already complete at step {job.done}; raise TRAIN_STEPS "
                "(--train_steps) to go on"
            )
        if not plan.is_batch and plan.groups:
            self._describe(plan.groups[0])

    def _describe(self, group: Group) -> None:
        job, s = group.jobs[0], self.settings
        height, width = job.photo.size
        sizes = ", ".join(f"{stage.size[1]}x{stage.size[0]}" for stage in job.stages)
        self.say(
            f"content {job.photo.path} {width}x{height}, style {', '.join(s.style_image)}, "
            f"output {sizes}, {s.optimizer}"
        )

    def group_started(self, event: GroupStarted) -> None:
        group = event.group
        self.alone = len(group.jobs) == 1
        for job in group.jobs:
            if event.photo_count > 1 or self.settings.content_image != job.photo.path:
                self.say(f"[{job.photo.number}/{event.photo_count}] {job.photo.path}")
        for stage, plan in zip(group.stages, group.memory_plans, strict=True):
            if plan.tiled:
                self._describe_tiles(stage.size, plan)
        for job in group.jobs:
            if job.resumed:
                self.say(
                    f"resuming from {checkpoints.checkpoint_path(job.prefix)} at step {job.done}"
                )
        if not self.alone:
            height, width = group.stages[-1].size
            self.say(
                f"{len(group.jobs)} photos at {width}x{height} optimised together; progress "
                "shows their mean losses"
            )
        total = group.jobs[0].total_steps
        self.progress = ProgressLine(total, self.settings.print_every, self.stream)

    def _describe_tiles(self, size: tuple[int, int], plan) -> None:
        why = (
            f"TILE_SIZE {self.settings.tile_size}"
            if self.settings.tile_size
            else "one step over the whole image would be too large for memory"
        )
        needs = f", about {plan.estimate_bytes / GIB:.1f} GiB" if plan.estimate_bytes else ""
        self.say(
            f"note: {size[1]}x{size[0]} is computed in {plan.grid[0]}x{plan.grid[1]} tiles "
            f"({why}{needs}); the result is the same as in one piece, each step takes longer"
        )

    def note(self, text: str) -> None:
        self.say(text)

    def step(self, event: Step) -> None:
        if self.alone:
            evaluations, note = event.evaluations[0], event.notes[0]
        else:
            evaluations = None
            note = "; ".join(
                f"{os.path.basename(job.photo.path)}: {text}"
                for job, text, on in zip(event.group.jobs, event.notes, event.active, strict=True)
                if text and on
            )
        self.progress.update(
            event.step, mean_losses(event), evaluations=evaluations, note=note, label=event.label
        )

    def photo_failed(self, job: PhotoJob, why: str) -> None:
        if not self.alone or self.settings.content_image != job.photo.path:
            self.say(f"skipped {job.photo.path}: {why}")

    def images(self, event: Images) -> None:
        if any(job.final for job in event.jobs):
            return  # a video's frames: its own report says what is kept
        finals = [job.final_path for job in event.jobs]
        if event.kind == events.FINISHED:
            for path in finals:
                self.say(f"saved {path}")
        elif event.kind == events.STOPPED:
            what = (
                f"{finals[0]} and a checkpoint"
                if len(finals) == 1
                else f"{', '.join(finals)} and their checkpoints"
            )
            self.say(f"\ninterrupted at step {event.step}: saved {what}; --resume continues")


def standard_observers(settings: Settings, stream: TextIO) -> list[Observer]:
    """What `python train.py` attaches, in order: files first, then what reports them."""
    return [
        ImageWriter(settings),
        CheckpointWriter(settings),
        RunRecords(settings),
        LossPlots(stream),
        TerminalReport(settings, stream),
    ]
