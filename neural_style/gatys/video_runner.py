"""A video through the run loop: each frame a single-photo run (runner.Runner.run_group)
that starts from the previous result moved by the optical flow and is held to it by a
temporal loss (Ruder, Dosovitskiy and Brox, "Artistic style transfer for videos", 2016).

The flow is computed between the original frames at the output size (flow.py); pixels the
flow cannot follow (disocclusions, motion boundaries) start from the content frame and get
no temporal constraint. The previous result is taken as its PNG holds it (8-bit), so that
a resumed run continues exactly as a straight one.
"""

from __future__ import annotations

import math
import time

import numpy as np

from neural_style.errors import UserError
from neural_style.gatys import events
from neural_style.gatys.pipeline import TemporalTerm
from neural_style.gatys.plan import Group, Photo, PhotoJob, Stage
from neural_style.gatys.video_plan import frame_path
from neural_style.media import flow, images, video_io
from neural_style.optimize import memory


def run_video(runner) -> None:
    """Every frame of the plan's video, in order, from the first unfinished one."""
    plan, settings = runner.plan, runner.plan.settings
    video = plan.video
    runner.count = video.frames
    previous, previous_content = video.previous, None
    frames = video_io.read_frames(video.info, max_frames=settings.video_max_frames)
    count = 0
    for index, frame in enumerate(frames):
        count = index + 1
        started = time.perf_counter()
        content = images.resize_image(frame, video.size)
        if index < video.first:
            previous_content = content
            continue
        start, term = None, None
        if index > 0 and previous is not None:
            pair = flow.flows(previous_content, content, settings.flow_preset)
            warped = flow.warp(previous, pair.backward)
            mask = flow.reliability(pair.backward, pair.forward)
            if settings.frame_init == "warped":
                start = mask[..., None] * warped + (1.0 - mask[..., None]) * content
            if settings.temporal_weight > 0:
                term = TemporalTerm(warped, mask, settings.temporal_weight)
        members = runner.run_group(
            _frame_group(video, settings, index, content), start=start, temporal=term
        )
        if members[0].failure:
            raise UserError(members[0].failure)
        result = np.clip(np.rint(members[0].image), 0.0, 255.0).astype(np.float32)
        error = math.nan
        if index > 0 and previous is not None:
            error = flow.warping_error(previous, result, pair.backward, mask)
        runner.emit(
            "frame_done",
            events.FrameDone(index, video.frames, error, time.perf_counter() - started),
        )
        previous, previous_content = result, content
    if frames.warning():
        runner.emit("note", frames.warning())
    runner.emit("video_done", count)


def _frame_group(video, settings, index: int, content: np.ndarray) -> Group:
    size = video.size
    steps = video.steps(index, settings)
    photo = Photo(index + 1, f"{video.info.path} frame {index + 1}", size, "", content)
    job = PhotoJob(
        photo, video.prefix, (Stage(size, steps),), None, frame_path(video.prefix, index)
    )
    return Group((job,), (memory.MemoryPlan(0, 0),))
