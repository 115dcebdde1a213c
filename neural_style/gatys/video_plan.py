"""A video as CONTENT_IMAGE, planned: its frames, their size and steps, where the run's
files go, and where a resumed run picks up.

    <OUTPUT_IMAGE>.mp4             the stylised clip, with the input's audio
    <OUTPUT_IMAGE>-frames/         each finished frame, frame-00001.png ..., written as it ends
    <OUTPUT_IMAGE>-losses.csv      one row per step, with the frame
    <OUTPUT_IMAGE>-settings.json   the settings
    <OUTPUT_IMAGE>-video.json      the warping error of each frame (temporal consistency)

A video is a sequence of single-photo runs (runner.py): frame t starts from the earlier
results (TEMPORAL_FRAMES back) moved by the optical flow and is held to them by a temporal
loss (video_runner.py). Resuming continues at the first frame without a PNG and redoes
none, once the settings record shows the same clip, inputs and settings (resume_rules.py),
and never with fewer frames than are finished; the finished frames the first one looks
back to are read from their PNGs, as a straight run has them.
"""

from __future__ import annotations

import os
from typing import NamedTuple

import numpy as np

from neural_style.errors import UserError
from neural_style.gatys import resume_rules
from neural_style.gatys.outputs import OutputNames
from neural_style.media import images, video_io
from neural_style.settings.gatys import Settings
from neural_style.settings.values import describe


class VideoPlan(NamedTuple):
    info: video_io.VideoInfo  # the input clip
    prefix: str  # OUTPUT_IMAGE, claimed
    size: tuple[int, int]  # (height, width) of every stylised frame
    frames: int  # frames to stylise (VIDEO_MAX_FRAMES or the clip's), None-free estimate
    first: int  # 0-based index of the first frame this run stylises (resume: after the PNGs)
    history: dict  # {index: finished frame} of those the first frame looks back to (resume)
    first_steps: int  # TRAIN_STEPS: the first frame's steps
    later_steps: int  # FRAME_STEPS: each later frame's
    identities: dict | None = None  # the run's input identities, its clip's included

    @property
    def names(self) -> OutputNames:
        return OutputNames(self.prefix)

    def steps(self, index: int) -> int:
        """Frame `index`'s steps: TRAIN_STEPS for the first, FRAME_STEPS after."""
        return self.first_steps if index == 0 else self.later_steps

    def steps_before(self, index: int) -> int:
        """The clip's steps before frame `index` (the losses log counts over the clip)."""
        return 0 if index == 0 else self.first_steps + (index - 1) * self.later_steps


class FrameLink(NamedTuple):
    """What ties a video frame to the result before it (Ruder, Dosovitskiy and Brox 2016):
    where its optimisation starts and what holds it there."""

    start: np.ndarray | None  # [H, W, 3] its start image; None: as INIT says
    warped: np.ndarray  # [H, W, 3] the earlier results moved to this frame by the flow
    # [H, W] how firmly each pixel is held (flow.hold): 1 where a trusted flow reaches an
    # earlier result, TEMPORAL_MOVING_SHARE where the pixel moved on the way, 0 where none does
    mask: np.ndarray
    weight: float  # TEMPORAL_WEIGHT; 0: no temporal loss


def is_video(path: str) -> bool:
    return path.lower().endswith(images.VIDEO_SUFFIXES) and os.path.isfile(path)


def check_video_settings(settings: Settings) -> None:
    """The settings a video cannot combine with, refused in one line."""
    if settings.coarse_to_fine:
        raise UserError(
            f"{describe('coarse_to_fine')} is for single photos: each video frame starts from "
            "the previous one at full size; set it to [] for a video"
        )
    if settings.optimizer == "lbfgs" and settings.temporal_weight:
        raise UserError(
            f"{describe('optimizer')} lbfgs is not supported for video frames yet; use adam"
        )


def finished_frames(prefix: str) -> int:
    """How many frames an earlier run finished: the PNGs frame-00001.png ... in order."""
    done = 0
    while os.path.isfile(OutputNames(prefix).frame(done)):
        done += 1
    return done


def plan_video(
    settings: Settings, prefix: str, identities: dict | None = None, notes: list[str] | None = None
) -> VideoPlan:
    """The clip probed and checked, and where this run starts. With RESUME, the record of
    the finished frames is checked against this run's settings and `identities` (the files
    it reads, see resume_rules.input_identities; the clip's is added here), and a note
    goes to `notes` when the record is too old to know its files."""
    check_video_settings(settings)
    info = video_io.probe(settings.content_image, "CONTENT_IMAGE")
    identities = {**(identities or {}), "content_image": [resume_rules.clip_identity(info)]}
    size = images.output_size(info.size, settings.image_width, settings.image_height)
    names = OutputNames(prefix)
    images.check_encodable(names.frame(0), size, "IMAGE_WIDTH")
    frames = info.frames or 0
    if settings.video_max_frames:
        frames = min(frames, settings.video_max_frames) if frames else settings.video_max_frames
    first, history = 0, {}
    if settings.resume:
        first = finished_frames(prefix)
        note = _check_record(settings, prefix, identities, first)
        if note and notes is not None:
            notes.append(note)
        _check_not_fewer(settings, names, first)
        history = _finished_history(names, first, settings.temporal_frames, size)
    return VideoPlan(
        info,
        prefix,
        size,
        frames,
        first,
        history,
        settings.train_steps,
        settings.frame_steps,
        identities,
    )


def _finished_history(
    names: OutputNames, first: int, offsets: tuple[int, ...], size: tuple[int, int]
) -> dict[int, np.ndarray]:
    """The finished frames that frames from `first` on are held to (the TEMPORAL_FRAMES
    before it), {index: float32 [H, W, 3]}, read
    from their PNGs; a UserError if one is of another size than this run's."""
    history = {}
    # Every frame within reach, not only those `first` looks back to: frame first + 1 looks
    # back to first + 1 - offset, which may be none of them.
    for index in range(max(0, first - max(offsets)), first):
        frame = images.load_image(names.frame(index), "OUTPUT_IMAGE")
        if frame.shape[:2] != size:
            raise UserError(
                f"{names.frame(index)}: the finished frames are {frame.shape[1]}x"
                f"{frame.shape[0]}, this run's {size[1]}x{size[0]}; set IMAGE_WIDTH back, or "
                "start afresh without --resume"
            )
        history[index] = frame
    return history


def _check_record(settings: Settings, prefix: str, identities: dict, finished: int) -> str:
    """A resumed video goes on with the clip, inputs and settings its `finished` frames
    were made with (a UserError naming the first that changed, or saying that their record
    is gone); a note if the record is too old to know its files."""
    import json

    path = OutputNames(prefix).record
    try:
        with open(path, encoding="utf-8") as file:
            record = json.load(file)
    except (OSError, ValueError):
        record = None
    if not isinstance(record, dict):
        if not finished:
            return ""  # nothing finished yet: nothing to check
        raise UserError(
            f"{path}: the record of the {finished} finished frame(s) is missing or damaged, "
            f"so this resume cannot tell what they were made with; {resume_rules.RESUME_FIX}"
        )
    return resume_rules.check_record(record, settings, identities, path, video=True)


def _check_not_fewer(settings: Settings, names: OutputNames, finished: int) -> None:
    """VIDEO_MAX_FRAMES may grow on a resume, never below the frames already finished:
    the video would be made again without them."""
    wanted = settings.video_max_frames
    if wanted and wanted < finished:
        raise UserError(
            f"{names.frames}: {finished} frames are finished, and {describe('video_max_frames')}"
            f" {wanted} asks for fewer; a resume cannot unmake frames: set it to 0 (every "
            f"frame) or at least {finished}, or {resume_rules.RESUME_FIX}"
        )
