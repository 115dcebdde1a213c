"""The live view's observers: they turn a run's events into the LiveState (state.py).

`LiveView` hears a Gatys run (one photo, a batch, a video) like any other observer of the
run loop (events.Observer), and asks for the image as it forms (wants_preview) at most
every WEB_EVERY seconds and only while a page is open. `LiveTraining`
hears network training (feedforward.session's hooks). Both only record; they never wait.
"""

from __future__ import annotations

import math
import os
import sys
import time
from typing import TYPE_CHECKING

import numpy as np

from neural_style import stopping
from neural_style.gatys import events
from neural_style.gatys.events import FrameDone, GroupStarted, Images, Observer, Step
from neural_style.web.state import LiveState

if TYPE_CHECKING:
    from neural_style.gatys.plan import PhotoJob, RunPlan

# The page's words for what the run does with its images.
_SAVED = {
    events.SNAPSHOT: "snapshot",
    events.FINISHED: "final",
    events.STOPPED: "saved at the stop",
    events.GAVE_UP: "best (gave up)",
    events.RESCUE: "rescued",
}


class Actions:
    """What the page's buttons do: ask the run's `controls` (the same ones its loop heeds)
    to stop or to snapshot, and tell the page. A stop clicked while the run starts is
    kept in the controls until the loop looks."""

    def __init__(self, state: LiveState, controls: stopping.Controls):
        self.state = state
        self.controls = controls

    def stop(self) -> None:
        self.controls.request_stop()
        # What Ctrl-C says, so that the terminal tells why the run stops.
        print("\nlive view: Stop pressed: stopping after this step, then saving", file=sys.stderr)
        self.state.set("status", {"status": "stopping", "text": "stopping after this step"})

    def snapshot(self) -> None:
        self.controls.request_snapshot()
        self.state.note("snapshot asked for: taken after this step")


class Progress:
    """Seconds per step (a moving average) and the ETA of the progress bar."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def update(self, seconds: float, remaining: float) -> tuple[float, float]:
        """(seconds per step, seconds left) after a step of `seconds`, with `remaining`
        steps of this one's cost left."""
        self.seconds = seconds if self.seconds == 0 else 0.9 * self.seconds + 0.1 * seconds
        return self.seconds, self.seconds * max(remaining, 0)


class LiveView(Observer):
    """A Gatys run's events (and previews) into `state`."""

    def __init__(self, state: LiveState, every: float):
        self.state = state
        self.every = every
        self._last_preview = -math.inf
        self._progress = Progress()
        self._photos: list[dict] = []
        self._numbers: dict[str, int] = {}  # photo path -> index in _photos
        self._differs = False  # the best image is shown beside the current one

    # --- the run ---

    def run_started(self, plan: RunPlan) -> None:
        kind = "video" if plan.video is not None else "batch" if plan.is_batch else "photo"
        self.state.set("kind", kind)
        for index, style in enumerate(plan.styles):
            self.state.picture(f"style-{index}", f"style {index + 1}", style)
        if plan.is_batch:
            self._photos = [
                {"name": f"photo-{number}", "path": path, "state": "waiting"}
                for number, path in enumerate(plan.paths, 1)
            ]
            self._numbers = {path: index for index, path in enumerate(plan.paths)}
            for path, _ in plan.failures:
                self._photos[self._numbers[path]]["state"] = "failed"
            for job in plan.complete:
                self._photos[self._numbers[job.photo.path]]["state"] = "done"
            self.state.set("photos", self._photos)
        if plan.video is not None:
            video = plan.video
            self.state.set("frames", _frames(video.first, video.first, video.frames, math.nan))
        self.state.set("status", {"status": "running", "text": "running"})

    def group_started(self, event: GroupStarted) -> None:
        self._mark(event.group.jobs, "running")
        job = event.group.jobs[0]
        if job.photo.pixels is not None and len(event.group.jobs) == 1:
            self.state.picture("content", "content", job.photo.pixels)
        self._last_preview = -math.inf  # the new photo's first image at once

    def step(self, event: Step) -> None:
        losses = event.mean_losses()
        remaining = event.group.jobs[0].work_left(event.step)
        seconds, eta = self._progress.update(event.seconds, remaining)
        self.state.step(
            {
                "step": event.step,
                "total": event.total_steps,
                "label": event.label.strip(),
                "losses": losses,
                "seconds": seconds,
                "eta": eta,
                "rate": 0.0,
            }
        )

    def images(self, event: Images) -> None:
        label = f"{_SAVED.get(event.kind, event.kind)} at step {event.step}"
        if len(event.jobs) == 1 and not event.jobs[0].final:
            self.state.picture("current", label, event.images[0], content=event.contents[0])
            self._best_differs(False)  # what the run saves is its best image
        for job, image, content in zip(event.jobs, event.images, event.contents, strict=True):
            if job.final:  # a video's frame
                self.state.picture("frame", f"frame {job.photo.number}", image, content=content)
            elif job.photo.path in self._numbers:
                self._thumb(job.photo.path, image, content, label)
        if event.kind == events.SNAPSHOT:
            self.state.note(f"snapshot at step {event.step}")
        if event.kind == events.FINISHED:
            self._mark(event.jobs, "done")
        if event.kind == events.GAVE_UP:
            self._mark(event.jobs, "failed")

    def photo_failed(self, job: PhotoJob, why: str) -> None:
        self._mark([job], "failed")
        self.state.note(f"{job.photo.path}: {why}")

    def note(self, text: str) -> None:
        self.state.note(text.strip())

    def frame_done(self, event: FrameDone) -> None:
        done = event.index + 1
        self.state.set("frames", _frames(done, done, event.frames, event.warping_error))

    def video_done(self, frames: int) -> None:
        self.state.set("frames", _frames(frames, frames, frames, math.nan))

    # --- previews (events.Observer.wants_preview) ---

    def wants_preview(self) -> bool:
        if self.state.pages == 0 or time.monotonic() - self._last_preview < self.every:
            return False
        self._last_preview = time.monotonic()
        return True

    def preview(self, pictures: list[events.Picture]) -> None:
        if not pictures:
            return
        if len(pictures) == 1 and not self._photos:
            picture = pictures[0]
            label = f"step {self.state.view_step()}"
            self.state.picture("current", label, picture.current, content=picture.content)
            differs = _differs(picture.current, picture.best)
            if differs:
                self.state.picture("best", f"best, {label}", picture.best, content=picture.content)
            self._best_differs(differs)
            if picture.content is not None:
                self.state.picture("content", "content", picture.content)
            return
        first = pictures[0]
        self.state.picture("current", "the batch's first photo", first.best, content=first.content)
        running = [item for item in self._photos if item["state"] == "running"]
        for item, picture in zip(running, pictures, strict=False):
            self.state.picture(
                item["name"], "running", picture.best, content=picture.content, thumb=True
            )

    # --- helpers ---

    def _best_differs(self, differs: bool) -> None:
        if differs != self._differs:
            self._differs = differs
            self.state.set("best_differs", differs)

    def _mark(self, jobs, state: str) -> None:
        changed = False
        for job in jobs:
            index = self._numbers.get(job.photo.path)
            if index is not None and self._photos[index]["state"] != state:
                self._photos[index] = {**self._photos[index], "state": state}
                changed = True
        if changed:
            self.state.set("photos", list(self._photos))

    def _thumb(self, path: str, image, content, label: str) -> None:
        name = self._photos[self._numbers[path]]["name"]
        self.state.picture(name, label, image, content=content, thumb=True)


def _frames(current: int, done: int, total: int, error: float) -> dict:
    return {
        "current": current + 1 if current < total else total,
        "done": done,
        "total": total,
        "error": None if math.isnan(error) else error,
    }


def _differs(current, best) -> bool:
    """The current image is visibly not the best one (a coarse look, 1/64 of the pixels)."""
    if current.shape != best.shape:
        return True
    return float(abs(current[::8, ::8] - best[::8, ::8]).mean()) > 1.0


class LiveTraining:
    """Network training's hooks (feedforward.session.TrainingObserver) into `state`."""

    def __init__(self, state: LiveState, batch_size: int):
        self.state = state
        self.batch_size = batch_size
        self._progress = Progress()

    def started(self, style: np.ndarray, sample: np.ndarray, first_step: int, wanted: int) -> None:
        del first_step, wanted
        self.state.picture("style-0", "style", style)
        self.state.picture("content", "sample photo", sample)
        self.state.set("status", {"status": "running", "text": "training"})

    def step(self, step: int, losses: dict[str, float], seconds: float, wanted: int) -> None:
        seconds, eta = self._progress.update(seconds, wanted - step)
        self.state.step(
            {
                "step": step,
                "total": wanted,
                "label": "",
                "losses": dict(losses),
                "seconds": seconds,
                "eta": eta,
                "rate": self.batch_size / seconds if seconds > 0 else 0.0,
            }
        )

    def sample(self, step: int, path: str) -> None:
        self.state.picture(
            "current", f"sample at step {step} ({os.path.basename(path)})", path=path
        )
