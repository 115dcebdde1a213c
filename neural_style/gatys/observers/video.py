"""The observers of a video run (video_runner.py): the finished frames as PNGs, one losses
log for the clip, a line per frame, and at the end the clip itself with the input's audio
and `<OUTPUT_IMAGE>-video.json` with each frame's warping error.

A frame is written only when it is finished: a stop keeps every finished frame and drops
the one in progress, which --resume starts again.
"""

from __future__ import annotations

import json
import math
import time
from typing import TextIO

from neural_style import files
from neural_style.files import atomic_write_text
from neural_style.gatys import events, resume_rules
from neural_style.gatys.events import FrameDone, Images, Observer, Step
from neural_style.gatys.plan import RunPlan
from neural_style.media import images, video_write
from neural_style.media.colors import as_written
from neural_style.names import TEMPORAL_LOSS_NAMES
from neural_style.progress import LossLog, format_duration, write_settings_record
from neural_style.settings.gatys import Settings


class FrameWriter(Observer):
    """Each finished frame's PNG, written atomically."""

    def __init__(self, settings: Settings):
        self.settings = settings

    def images(self, event: Images) -> None:
        if event.kind != events.FINISHED:
            return
        for job, image, content in zip(event.jobs, event.images, event.contents, strict=True):
            images.save_image(
                job.final_path, as_written(image, content, self.settings.preserve_colors)
            )


class VideoReport(Observer):
    """The clip's settings record, losses log (step over the whole clip, and the frame),
    a line per frame with s/frame and the ETA, and the finished clip with its report."""

    def __init__(self, settings: Settings, stream: TextIO):
        self.settings = settings
        self.stream = stream
        self.plan: RunPlan | None = None
        self.log: LossLog | None = None
        self.errors: list[float] = []
        self.times: list[float] = []
        self.complete = 0  # frames of the finished video, once every one is

    def say(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def run_started(self, plan: RunPlan) -> None:
        if plan.video is None:  # a folder of clips: each clip is heard on its own
            return
        self.plan, self.complete = plan, 0
        video = plan.video
        self.errors = self._earlier_errors(video.first)
        height, width = video.size
        self.say(
            f"video {video.info.path}: {video.frames} frames at {video.info.fps:g} fps, "
            f"stylised at {width}x{height}"
            + (f", from frame {video.first + 1} (resumed)" if video.first else "")
        )

    def step(self, event: Step) -> None:
        job = event.group.jobs[0]
        index = job.photo.number - 1
        video = self.plan.video
        path = video.names.losses
        try:
            if self.log is None:
                record = resume_rules.run_record(self.settings, self.plan.identities)
                write_settings_record(video.names.record, record)
                self.log = LossLog(
                    path,
                    keep_until=video.steps_before(index),
                    extra=("frame",),
                    names=TEMPORAL_LOSS_NAMES,
                )
            losses = event.losses[0]
            step = video.steps_before(index) + event.step
            self.log.write(step, losses, event.seconds, (index + 1,))
        except OSError as error:
            raise files.output_error(path, error, "OUTPUT_IMAGE") from None

    def frame_done(self, event: FrameDone) -> None:
        self.errors.append(event.warping_error)
        self.times.append(event.seconds)
        # Frames after the first take FRAME_STEPS: their mean time predicts the rest.
        later = self.times[1:] if len(self.times) > 1 else self.times
        each = sum(later) / len(later)
        left = event.frames - event.index - 1
        error = (
            "" if math.isnan(event.warping_error) else f"  warping error {event.warping_error:.3g}"
        )
        self.say(
            f"frame {event.index + 1}/{event.frames} done  {event.seconds:.1f} s/frame{error}  "
            f"ETA {format_duration(each * left)}"
        )
        self._write_report()

    def video_done(self, frames: int) -> None:
        self.complete = frames

    def images(self, event: Images) -> None:
        if event.kind == events.STOPPED and self.plan is not None:
            index = event.jobs[0].photo.number - 1
            self.say(
                f"\ninterrupted in frame {index + 1}: frames 1-{index} are kept in "
                f"{self.plan.video.names.frames}; --resume continues at frame {index + 1}"
            )

    def run_finished(self, plan: RunPlan) -> None:
        if self.log is not None:
            self.log.close()
            self.log = None
        if not self.complete or plan.video is None:
            return
        video = plan.video
        paths = [video.names.frame(index) for index in range(self.complete)]
        target = video.names.video
        written = video_write.write_video_from_pngs(
            paths,
            target,
            fps=video.info.fps,
            timing=video.info.timing,
            audio_from=video.info,
            setting="OUTPUT_IMAGE",
        )
        if written.warning:
            self.say(written.warning)
        self.say(f"saved {target}" + (" with the input's audio" if written.audio else ""))

    def _report_path(self) -> str:
        return self.plan.video.names.video_report

    def _earlier_errors(self, count: int) -> list[float]:
        if not count:
            return []
        try:
            with open(self._report_path(), encoding="utf-8") as file:
                saved = json.load(file)["warping_error"]
        except (OSError, ValueError, KeyError, TypeError):
            saved = []
        saved = [math.nan if value is None else float(value) for value in saved][:count]
        return saved + [math.nan] * (count - len(saved))

    def _write_report(self) -> None:
        known = [value for value in self.errors if not math.isnan(value)]
        report = {
            "input": self.plan.video.info.path,
            "frames": len(self.errors),
            "fps": self.plan.video.info.fps,
            "size": list(self.plan.video.size),
            "warping_error": [None if math.isnan(value) else value for value in self.errors],
            "mean_warping_error": sum(known) / len(known) if known else None,
            "metric": "Lai et al. 2018: mask-weighted mean squared difference, pixels in 0..1",
            "written": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        path = self._report_path()
        try:
            atomic_write_text(path, json.dumps(report, indent=2) + "\n")
        except OSError as error:
            raise files.output_error(path, error, "OUTPUT_IMAGE") from None
