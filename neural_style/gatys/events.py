"""What the run loop announces, and the observer interface that hears it.

The loop (runner.py) does no file I/O and prints nothing: it calls these methods with
plain-data events, and the observers the composition root (run.py) attaches decide what
to show or write (observers/: files, plots, the terminal, a video's frames; web/: the live
view). The images in events are copies, which an observer may keep.

Shapes: images [H, W, 3] float32 RGB in 0..255, one per photo of the group.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from neural_style.names import LOSS_NAMES

if TYPE_CHECKING:
    from neural_style.gatys.plan import Group, PhotoJob, RunPlan

# Images.kind: why images are handed out.
SNAPSHOT = "snapshot"  # SNAPSHOT_EVERY came round: <prefix>-<step>.jpg and a checkpoint
FINISHED = "finished"  # the photo's last stage is done: its final image and checkpoint
STOPPED = "stopped"  # a stop was asked for (Ctrl-C, SIGTERM...): final image and checkpoint
GAVE_UP = "gave_up"  # the photo kept diverging: its best image as the final one
RESCUE = "rescue"  # an output could not be written: the final images, if they still can be


class RunResult(NamedTuple):
    """What a photo's run ends with."""

    output_path: str  # the final image
    steps: int  # steps taken over all stages
    losses: dict[str, float]  # the losses at the last step


class GroupStarted(NamedTuple):
    group: Group
    first_step: int  # the first step this run takes (after a resume: the checkpoint's + 1)
    photo_count: int  # photos in the whole run, for `[n/N]`


class Step(NamedTuple):
    group: Group
    stage: int  # index of the coarse-to-fine stage
    label: str  # `stage 2/3 512x384  `, or "" for a single stage
    step: int  # 1-based over all stages
    total_steps: int
    losses: list[dict[str, float]]  # each photo's loss parts (content, style, tv, total)
    seconds: float  # wall time of the step, for the whole group
    notes: list[str]  # each photo's note (a divergence), "" for a plain step
    evaluations: list[int]  # each photo's loss evaluations so far (L-BFGS takes several)
    active: list[bool]  # which photos are still being optimised

    def mean_losses(self) -> dict[str, float]:
        """The mean of each loss part over the photos still going (all, if none is)."""
        going = [losses for losses, on in zip(self.losses, self.active, strict=True) if on]
        going = going or self.losses
        return {name: float(np.mean([losses[name] for losses in going])) for name in LOSS_NAMES}


class Images(NamedTuple):
    kind: str  # SNAPSHOT, FINISHED, STOPPED, GAVE_UP or RESCUE
    jobs: list[PhotoJob]  # the photos concerned
    stage: int  # the stage the images belong to
    step: int  # the step they were taken at (the state holds exactly that many steps)
    images: list[np.ndarray]  # each photo's best image
    contents: list[np.ndarray]  # each photo at the stage's size (colour preservation)
    states: list[dict[str, np.ndarray]]  # each photo's optimiser state (empty for GAVE_UP)
    why: str = ""  # GAVE_UP, STOPPED, RESCUE: what happened, in words


class FrameDone(NamedTuple):
    """A video frame is finished (its PNG is written by then)."""

    index: int  # 0-based
    frames: int  # frames the run stylises
    warping_error: float  # against the previous frame (flow.warping_error); nan for the first
    seconds: float  # wall time of the frame, flow included


class Picture(NamedTuple):
    """One photo of the group as a step left it, for an observer that asked (a live view)."""

    current: np.ndarray  # the optimiser's image now
    best: np.ndarray  # its lowest-loss image so far: what a stop would keep
    content: np.ndarray | None  # the photo at the same size (colour preservation)


class Observer:
    """Hears a run's events; every method does nothing unless overridden. Observers are
    called in the order they were attached, so writers come before what reports them."""

    def run_started(self, plan: RunPlan) -> None:
        pass

    def group_started(self, event: GroupStarted) -> None:
        pass

    def note(self, text: str) -> None:
        """A line the loop wants said (a precision switch, an optimiser that stopped)."""

    def step(self, event: Step) -> None:
        pass

    def wants_preview(self) -> bool:
        """Asked after every step: True to be handed the images as they are now (`preview`).
        The images are copied only when someone wants them, so say True sparingly."""
        return False

    def preview(self, pictures: list[Picture]) -> None:
        """Each going photo's current and best image, after a step (see wants_preview)."""

    def photo_failed(self, job: PhotoJob, why: str) -> None:
        """The photo cannot go on (unreadable, or it kept diverging); the others do."""

    def images(self, event: Images) -> None:
        pass

    def group_finished(self, group: Group) -> None:
        pass

    def frame_done(self, event: FrameDone) -> None:
        """A video frame is finished."""

    def video_done(self, frames: int) -> None:
        """Every frame of a video is finished (`frames` of them, earlier runs' included)."""

    def run_finished(self, plan: RunPlan) -> None:
        """The run is over, however it ended (also after an error or a stop)."""


class Observers(Observer):
    """A run's observers heard as one, each in the order attached: what the loop calls.
    Events are methods, so a misspelt one fails at once instead of reaching no one."""

    def __init__(self, observers: Sequence[Observer]):
        self.each = list(observers)
        self._wanting: list[Observer] = []

    def run_started(self, plan: RunPlan) -> None:
        for observer in self.each:
            observer.run_started(plan)

    def group_started(self, event: GroupStarted) -> None:
        for observer in self.each:
            observer.group_started(event)

    def note(self, text: str) -> None:
        for observer in self.each:
            observer.note(text)

    def step(self, event: Step) -> None:
        for observer in self.each:
            observer.step(event)

    def wants_preview(self) -> bool:
        self._wanting = [observer for observer in self.each if observer.wants_preview()]
        return bool(self._wanting)

    def preview(self, pictures: list[Picture]) -> None:
        for observer in self._wanting:
            observer.preview(pictures)

    def photo_failed(self, job: PhotoJob, why: str) -> None:
        for observer in self.each:
            observer.photo_failed(job, why)

    def images(self, event: Images) -> None:
        for observer in self.each:
            observer.images(event)

    def group_finished(self, group: Group) -> None:
        for observer in self.each:
            observer.group_finished(group)

    def frame_done(self, event: FrameDone) -> None:
        for observer in self.each:
            observer.frame_done(event)

    def video_done(self, frames: int) -> None:
        for observer in self.each:
            observer.video_done(frames)

    def run_finished(self, plan: RunPlan) -> None:
        for observer in self.each:
            observer.run_finished(plan)
