"""A video through the run loop: each frame a single-photo group of runner.Runner that
starts from the previous result moved by the optical flow and is held to it by a temporal
loss (Ruder, Dosovitskiy and Brox, "Artistic style transfer for videos", 2016).

    VideoRun(runner).run()     # instead of runner.run(), for a plan with a video

The flow is computed between the original frames at the output size (media/flow.py);
pixels the flow cannot follow (disocclusions, motion boundaries) start from the content
frame and get no temporal constraint. The previous result is taken as its PNG holds it
(8-bit), so that a resumed run continues exactly as a straight one.
"""

from __future__ import annotations

import math
import time

import numpy as np

from neural_style.errors import UserError
from neural_style.gatys import events
from neural_style.gatys.plan import Group, Photo, PhotoJob, RunPlan, Stage
from neural_style.gatys.resume_rules import RESUME_FIX
from neural_style.gatys.runner import Runner
from neural_style.gatys.video_plan import FrameLink, VideoPlan
from neural_style.media import flow, images, video_io
from neural_style.optimize import memory
from neural_style.settings.gatys import Settings


class VideoRun:
    """The frames of a plan's video, in order, from the first unfinished one, each run by
    `runner` as a group of one; the previous frame is this executor's own state."""

    def __init__(self, runner: Runner):
        self.runner = runner
        self.plan: RunPlan = runner.plan
        self.video: VideoPlan = runner.plan.video
        self.settings: Settings = runner.plan.settings
        self.previous = self.video.previous  # the last finished result, [H, W, 3] 0..255
        self.previous_content: np.ndarray | None = None  # its frame at the output size

    def run(self) -> dict[str, events.RunResult | str]:
        """Every frame; the runner's outcomes (one per frame stylised)."""
        with self.runner.running():
            limit = self.settings.video_max_frames
            frames = video_io.read_frames(self.video.info, max_frames=limit)
            count = 0
            for index, frame in enumerate(frames):
                count = index + 1
                content = images.resize_image(frame, self.video.size)
                if index >= self.video.first:
                    self._frame(index, content)
                self.previous_content = content
            if frames.warning():
                self.runner.observers.note(frames.warning())
            if count < self.video.first:  # a shorter clip than the finished frames' record knew
                raise UserError(
                    f"{self.video.info.path}: {count} frames, fewer than the {self.video.first} "
                    f"finished in {self.video.names.frames}; put the original clip back, or "
                    f"{RESUME_FIX}"
                )
            self.runner.observers.video_done(count)
        return self.runner.outcomes

    def _frame(self, index: int, content: np.ndarray) -> None:
        started = time.perf_counter()
        link, backward = self._link(index, content)
        members = self.runner.run_group(self._group(index, content, link))
        if members[0].failure:
            raise UserError(members[0].failure)
        result = np.clip(np.rint(members[0].image), 0.0, 255.0).astype(np.float32)
        error = math.nan
        if link is not None:
            error = flow.warping_error(self.previous, result, backward, link.mask)
        done = events.FrameDone(index, self.video.frames, error, time.perf_counter() - started)
        self.runner.observers.frame_done(done)
        self.previous = result

    def _link(self, index: int, content: np.ndarray) -> tuple[FrameLink | None, np.ndarray]:
        """How frame `index` follows the previous result, and the backward flow; (None,
        empty) for the first frame."""
        if index == 0 or self.previous is None:
            return None, np.zeros(0)
        settings = self.settings
        pair = flow.flows(self.previous_content, content, settings.flow_preset)
        warped = flow.warp(self.previous, pair.backward)
        mask = flow.reliability(pair.backward, pair.forward)
        start = None
        if settings.frame_init == "warped":
            start = mask[..., None] * warped + (1.0 - mask[..., None]) * content
        return FrameLink(start, warped, mask, settings.temporal_weight), pair.backward

    def _group(self, index: int, content: np.ndarray, link: FrameLink | None) -> Group:
        size, names = self.video.size, self.video.names
        photo = Photo(index + 1, f"{self.video.info.path} frame {index + 1}", size, "", content)
        stages = (Stage(size, self.video.steps(index)),)
        job = PhotoJob(photo, self.video.prefix, stages, None, names.frame(index))
        return Group((job,), (memory.MemoryPlan(0, 0),), link)
