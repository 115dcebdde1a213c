"""Stylising a video: every frame, in batches, written as `<name>.mp4`, H.264, at the
input's frame rate and with its audio, through the ffmpeg that imageio-ffmpeg ships (the
`video` extra); neural_style.video_io reads the files and video_write writes them.

A video is written to a hidden `.<name>.partial.mp4` beside its final name, renamed into
place only once whole and removed when the run stops (a signal, honoured once the batch in
hand is written) or fails, so no half file ever has the final name. A truncated or damaged
input gives the frames it has and a warning, not a traceback; ffmpeg's failures are worded
in one line, without its banner.

Frames are [H, W, 3] float32 RGB in 0..255, batches [B, H, W, 3].
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import TextIO

import numpy as np

from neural_style import stopping, video_io, video_write
from neural_style.errors import UserError
from neural_style.feedforward.config import NetworkSettings
from neural_style.feedforward.fit import MemoryFit, fit_image, wxh
from neural_style.feedforward.model import MIN_SIDE
from neural_style.feedforward.stylizer import Stylizer
from neural_style.reporting import format_duration

# Seconds between two progress lines.
PROGRESS_SECONDS = 2.0


def stylize_video(
    stylizer: Stylizer, settings: NetworkSettings, target: str, fit: MemoryFit, stream: TextIO
) -> str:
    """Every frame of the video, in batches; the same frame rate, and its audio. Returns the
    output path, `target`; a truncated video gives the frames it has and a warning."""
    source = settings.stylize_input
    info = video_io.probe(source, "STYLIZE_INPUT")
    if min(info.size) < MIN_SIDE:
        raise UserError(
            f"{source}: its frames are {wxh(info.size)} pixels, below the "
            f"network's {MIN_SIDE}x{MIN_SIDE}"
        )
    size_hw = fit.target_size(info.size, source)
    started = time.perf_counter()
    with video_io.read_frames(info) as frames:
        batches = _frame_batches(frames, size_hw, fit.batch(size_hw), source)
        stylised = _stylised_frames(batches, stylizer, info.frames, stream)
        written = video_write.write_video(
            stylised, target, fps=info.fps, audio_from=info, setting="STYLIZE_OUTPUT"
        )
    seconds = time.perf_counter() - started
    print(_video_progress(written.frames, written.frames, seconds), file=stream)
    for warning in (frames.warning(), written.warning):
        if warning:
            print(warning, file=stream)
    return target


def _stylised_frames(
    batches: Iterable[np.ndarray], stylizer: Stylizer, expected: int | None, stream: TextIO
) -> Iterator[np.ndarray]:
    """The stylised frames, as uint8, one batch at a time; a stop signal is honoured once
    the batch in hand has gone to the writer."""
    frames, started = 0, time.perf_counter()
    last_report = started
    for batch in batches:
        yield from np.clip(np.rint(stylizer(batch)), 0, 255).astype(np.uint8)
        frames += len(batch)
        stopping.raise_if_requested()
        now = time.perf_counter()
        if now - last_report >= PROGRESS_SECONDS:
            last_report = now
            print(_video_progress(frames, expected, now - started), file=stream, flush=True)


def _frame_batches(
    frames: Iterable[np.ndarray], size_hw: tuple[int, int], batch_size: int, source: str
) -> Iterator[np.ndarray]:
    batch: list[np.ndarray] = []
    for frame in frames:
        if len(batch) == batch_size:
            yield np.stack(batch)
            batch = []
        batch.append(fit_image(frame, size_hw))
    if not batch:  # probed a moment ago, then changed
        raise UserError(f"{source}: the video has no frames that could be decoded")
    yield np.stack(batch)


def _video_progress(frames: int, expected: int | None, seconds: float) -> str:
    rate = frames / seconds if seconds > 0 else 0.0
    if expected and expected > frames and rate > 0:
        eta = f"  ETA {format_duration((expected - frames) / rate)}"
        return f"frame {frames}/~{expected}  {rate:.3g} frames/s{eta}"
    return f"frame {frames}  {rate:.3g} frames/s"
