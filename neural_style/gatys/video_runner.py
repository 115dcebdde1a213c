"""A video through the run loop: each frame a single-photo group of runner.Runner that
starts from the previous result moved by the optical flow and is held to it by a temporal
loss (Ruder, Dosovitskiy and Brox, "Artistic style transfer for videos", 2016).

    VideoRun(runner).run()     # instead of runner.run(), for a plan with a video
    stylize_clip(clip_plan, pipeline, observers, controls)   # one clip of a folder of clips

Frame t is held to each earlier frame t-k of TEMPORAL_FRAMES (1, 2, 4: Ruder et al.'s
long-term consistency), each moved onto frame t by the optical flow between the original
frames at the output size (media/flow.py), and each only where its flow is trusted and no
nearer frame covers the pixel. Over still pixels the flow is DIS's noise and is set to zero
(flow.settle), so that they are carried over exactly, not resampled each frame. Pixels no
earlier frame covers (disocclusions, motion boundaries, and flow that carries the wrong
content there) are new: each starts with the style of a covered pixel of like content
colour (analogy.fill) and gets no temporal constraint. A pixel that moved more than 1.5 px
on the way is held by TEMPORAL_MOVING_SHARE of the weight (flow.hold): at 0, with STYLE_LOSS
sw, what moves is restyled every frame from its warped start. The earlier results are
taken as their PNGs hold them (8-bit), so that a resumed run continues exactly as a
straight one.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from neural_style import stopping
from neural_style.errors import UserError
from neural_style.gatys import events
from neural_style.gatys.plan import Group, Photo, PhotoJob, RunPlan, Stage
from neural_style.gatys.resume_rules import RESUME_FIX
from neural_style.gatys.runner import Runner
from neural_style.gatys.video_plan import FrameLink, VideoPlan
from neural_style.media import analogy, flow, images, video_io
from neural_style.optimize import memory
from neural_style.settings.gatys import Settings

if TYPE_CHECKING:
    from neural_style.gatys.pipeline import Pipeline


class Anchor(NamedTuple):
    """An earlier result as frame t sees it."""

    offset: int  # how many frames back (1: the frame before)
    backward: np.ndarray  # [H, W, 2] flow from frame t into that frame
    mask: np.ndarray  # [H, W] 1 where that flow is trusted (flow.trusted)
    warped: np.ndarray  # [H, W, 3] the earlier result moved onto frame t


class ClipFailed(UserError):
    """The clip itself cannot be stylised (a frame that cannot be decoded, or whose
    optimisation fails): in a folder of clips, that clip alone fails."""


class VideoRun:
    """The frames of a plan's video, in order, from the first unfinished one, each run by
    `runner` as a group of one; the earlier frames it looks back to are this executor's own
    state (on a resume, the plan read them from their PNGs). The frames are decoded from
    `source` when given (a cluster task's copy of the clip), else from the clip itself."""

    def __init__(self, runner: Runner, source: str = ""):
        self.runner = runner
        self.source = source
        self.plan: RunPlan = runner.plan
        self.video: VideoPlan = runner.plan.video
        self.settings: Settings = runner.plan.settings
        # The finished results and content frames (at the output size) of the frames a later
        # frame may be held to, by index; [H, W, 3] 0..255 each.
        self.results: dict[int, np.ndarray] = dict(self.video.history)
        self.contents: dict[int, np.ndarray] = {}
        self.reach = max(self.settings.temporal_frames)  # how far back a frame looks

    def run(self) -> dict[str, events.RunResult | str]:
        """Every frame; the runner's outcomes (one per frame stylised)."""
        with self.runner.running():
            limit = self.settings.video_max_frames
            info = self.video.info
            frames = video_io.read_frames(
                info._replace(path=self.source or info.path), max_frames=limit
            )
            count = 0
            for index, frame in enumerate(_as_clip_failures(frames)):
                count = index + 1
                content = images.resize_image(frame, self.video.size)
                if index >= self.video.first:
                    self._frame(index, content)
                self.contents[index] = content
                self._forget(index + 1 - self.reach)
            if frames.warning():
                self.runner.observers.note(frames.warning())
            if count < self.video.first:  # a shorter clip than the finished frames' record knew
                raise ClipFailed(
                    f"{self.video.info.path}: {count} frames, fewer than the {self.video.first} "
                    f"finished in {self.video.names.frames}; put the original clip back, or "
                    f"{RESUME_FIX}"
                )
            self.runner.observers.video_done(count)
        return self.runner.outcomes

    def _frame(self, index: int, content: np.ndarray) -> None:
        started = time.perf_counter()
        anchors = self._anchors(index, content)
        link = self._link(index, content, anchors)
        members = self.runner.run_group(self._group(index, content, link))
        if members[0].failure:
            raise ClipFailed(members[0].failure)
        result = np.clip(np.rint(members[0].image), 0.0, 255.0).astype(np.float32)
        error = math.nan
        if anchors and anchors[0].offset == 1:  # Lai et al.'s error is against the frame before
            nearest = anchors[0]
            error = flow.warping_error(
                self.results[index - 1], result, nearest.backward, nearest.mask
            )
        done = events.FrameDone(index, self.video.frames, error, time.perf_counter() - started)
        self.runner.observers.frame_done(done)
        self.results[index] = result

    def _anchors(self, index: int, content: np.ndarray) -> list[Anchor]:
        """The earlier results frame `index` is held to, nearest first, each moved onto it
        with the pixels where its flow is trusted; none for the first frame."""
        anchors = []
        offsets = sorted(self.settings.temporal_frames)
        if not self.settings.temporal_weight and self.settings.frame_init != "warped":
            offsets = [1]  # nothing is held or started from: the frame before, for the error
        for offset in offsets:
            earlier = index - offset
            if earlier not in self.results or earlier not in self.contents:
                continue
            pair = flow.flows(self.contents[earlier], content, self.settings.flow_preset)
            mask = flow.trusted(self.contents[earlier], content, pair)
            # Still pixels are carried over exactly: a warp by DIS's noise resamples them.
            backward = flow.settle(self.contents[earlier], content, pair.backward)
            warped = flow.warp_sharp(self.results[earlier], backward)
            anchors.append(Anchor(offset, backward, mask, warped))
        return anchors

    def _link(self, index: int, content: np.ndarray, anchors: list[Anchor]) -> FrameLink | None:
        """One target and mask from the anchors: each pixel held to the nearest earlier
        frame that covers it (flow.nearest_trusted); None when there is no earlier frame."""
        if not anchors:
            return None
        masks = flow.nearest_trusted([anchor.mask for anchor in anchors])
        mask = np.sum(masks, axis=0)
        target = np.zeros_like(content)
        for share, anchor in zip(masks, anchors, strict=True):
            target += share[..., None] * anchor.warped
        start = None
        if self.settings.frame_init == "warped":
            # What no earlier frame covers is new. It starts with the style of a covered pixel
            # of like content colour (analogy.fill): started from the photo, it would hardly
            # move the whole frame's style loss, so FRAME_STEPS would leave it pale and the
            # temporal loss then hold it so in the frames after.
            fresh = analogy.fill(content, target, mask, seed=(self.settings.seed, index))
            start = target + (1.0 - mask[..., None]) * fresh
        backwards = [anchor.backward for anchor in anchors]
        held = flow.hold(masks, backwards, self.settings.temporal_moving_share)
        return FrameLink(start, target, held, self.settings.temporal_weight)

    def _forget(self, oldest: int) -> None:
        """Drops the frames before `oldest`: no frame still to come looks back to them."""
        for kept in (self.results, self.contents):
            for index in [i for i in kept if i < oldest]:
                del kept[index]

    def _group(self, index: int, content: np.ndarray, link: FrameLink | None) -> Group:
        size, names = self.video.size, self.video.names
        photo = Photo(index + 1, f"{self.video.info.path} frame {index + 1}", size, "", content)
        stages = (Stage(size, self.video.steps(index)),)
        job = PhotoJob(photo, self.video.prefix, stages, None, names.frame(index))
        return Group((job,), (memory.MemoryPlan(0, 0),), link)


def _as_clip_failures(frames: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    """The frames, a decoding error raised as the clip's own failure."""
    try:
        yield from frames
    except ClipFailed:
        raise
    except UserError as error:
        raise ClipFailed(str(error)) from None


def stylize_clip(
    plan: RunPlan,
    pipeline: Pipeline,
    observers: events.Observers,
    controls: stopping.Controls,
    source: str = "",
) -> dict[str, events.RunResult | str]:
    """One clip of a folder of clips (`plan` is its own), through a runner of its own with
    `observers`: {the clip: its video, or why the clip alone failed}. A stop, and an error
    of the run's own (an output that cannot be written), end the run."""
    clip = plan.paths[0]
    try:
        frames = VideoRun(Runner(plan, pipeline, observers, controls), source).run()
    except ClipFailed as error:
        return {clip: str(error)}
    return {clip: events.RunResult(plan.video.names.video, len(frames), {})}
