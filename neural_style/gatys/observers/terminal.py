"""What a run says on the terminal: what it will do, a progress line every few steps,
notes, and what it saved."""

from __future__ import annotations

import os
from typing import TextIO

from neural_style.gatys import events
from neural_style.gatys.events import GroupStarted, Images, Observer, Step
from neural_style.gatys.plan import Group, PhotoJob, RunPlan
from neural_style.optimize.memory import GIB
from neural_style.progress import ProgressLine
from neural_style.settings.gatys import Settings


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
                self.say(f"resuming from {job.names.checkpoint} at step {job.done}")
        if not self.alone:
            height, width = group.stages[-1].size
            self.say(
                f"{len(group.jobs)} photos at {width}x{height} optimised together; progress "
                "shows their mean losses"
            )
        total = group.jobs[0].total_steps
        self.progress = ProgressLine(
            total, self.settings.print_every, self.stream, work_left=group.jobs[0].work_left
        )

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
            event.step, event.mean_losses(), evaluations=evaluations, note=note, label=event.label
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
