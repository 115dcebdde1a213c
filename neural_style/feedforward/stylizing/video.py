"""Stylising a video: every frame, in batches, written as `<name>.mp4`, H.264, at the
input's frame rate and with its audio, through the ffmpeg that imageio-ffmpeg ships (the
`video` extra); neural_style.video_io reads the files and video_write writes them.

With STYLIZE_VIDEO_BLEND = b above 0, each frame's output is blended with the previous
output moved onto it by the optical flow of the original frames (media/flow.py: DIS, and
the trusted mask m, Ruder et al.'s checks with the photometric one):
out_t = (1 - b m) net(frame_t) + b m warp(out_t-1). Disoccluded pixels and the first
frame are the network's own. The flow needs OpenCV (the `video` extra); with b = 0 no
flow is computed and the output is the network's alone.

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
from contextlib import closing
from typing import TextIO

import numpy as np

from neural_style import stopping
from neural_style.errors import UserError
from neural_style.feedforward.model import MIN_SIDE
from neural_style.feedforward.stylizing.batches import BatchExecutor, LocalBatches, Results
from neural_style.feedforward.stylizing.fit import MemoryFit, fit_image, wxh
from neural_style.feedforward.stylizing.overlap import read_ahead
from neural_style.feedforward.stylizing.stylizer import Stylizer
from neural_style.media import video_io, video_write
from neural_style.progress import format_duration
from neural_style.settings.network import NetworkSettings

# Seconds between two progress lines.
PROGRESS_SECONDS = 2.0
# DIS preset of the blend's optical flow (media.flow.FLOW_PRESETS): the optimiser's
# default; both flows, the mask and the warp take about 50 ms a frame at 256x144 on 2 cores.
BLEND_FLOW_PRESET = "medium"


def stylize_video(
    stylizer: Stylizer,
    settings: NetworkSettings,
    target: str,
    fit: MemoryFit,
    stream: TextIO,
    executor: BatchExecutor | None = None,
) -> str:
    """Every frame of the video, in batches; the same frame rate, and its audio. Returns the
    output path, `target`; a truncated video gives the frames it has and a warning.
    `executor` runs the batches (batches.py), by default here; its results may come back
    in any order, and are written in the frames' order."""
    source = settings.stylize_input
    info = video_io.probe(source, "STYLIZE_INPUT")
    if min(info.size) < MIN_SIDE:
        raise UserError(
            f"{source}: its frames are {wxh(info.size)} pixels, below the "
            f"network's {MIN_SIDE}x{MIN_SIDE}"
        )
    blend = FlowBlend(settings.stylize_video_blend) if settings.stylize_video_blend else None
    size_hw = fit.target_size(info.size, source)
    started = time.perf_counter()
    batch_size = fit.batch(size_hw)
    with (
        fit.memory_guard(source, size_hw, batch_size),
        video_io.read_frames(info) as frames,
        # Frames are decoded and resized while the network works on the batch before.
        closing(read_ahead(_frame_batches(frames, size_hw, batch_size, source))) as batches,
    ):
        executor = executor or LocalBatches(stylizer, fit)
        stylised = _stylised_frames(batches, executor, source, info.frames, stream, blend)
        written = video_write.write_video(
            stylised,
            target,
            fps=info.fps,
            timing=info.timing,
            audio_from=info,
            setting="STYLIZE_OUTPUT",
        )
    seconds = time.perf_counter() - started
    print(_video_progress(written.frames, written.frames, seconds), file=stream)
    for warning in (frames.warning(), written.warning):
        if warning:
            print(warning, file=stream)
    return target


def _stylised_frames(
    batches: Iterable[np.ndarray],
    executor: BatchExecutor,
    source: str,
    expected: int | None,
    stream: TextIO,
    blend: FlowBlend | None = None,
) -> Iterator[np.ndarray]:
    """The stylised frames, as uint8, in the frames' order, as the executor's results
    allow (blended frame by frame, in order, if asked); a stop signal is honoured once the
    batch in hand has gone to the writer."""
    started = time.perf_counter()
    last_report = started
    numbers: dict[str, int] = {}  # a frame's key for the executor -> its 0-based number
    frames: dict[int, np.ndarray] = {}  # the frames submitted and not yet written
    results: dict[int, np.ndarray] = {}  # the outputs back and not yet written
    written = 0

    def in_order(finished: Results) -> Iterator[np.ndarray]:
        nonlocal written
        results.update((numbers.pop(key), output) for key, output in finished)
        ready = []
        while written in results:
            frame, output = frames.pop(written), results.pop(written)
            ready.append(output if blend is None else blend(frame, output))
            written += 1
        if ready:
            yield from np.clip(np.rint(ready), 0, 255).astype(np.uint8)

    for batch in batches:
        batch_keys = []
        for frame in batch:
            number = written + len(frames)
            key = f"{source} frame {number + 1}"
            numbers[key], frames[number] = number, frame
            batch_keys.append((key, frame))
        yield from in_order(executor.submit(batch_keys))
        stopping.raise_if_requested()
        now = time.perf_counter()
        if now - last_report >= PROGRESS_SECONDS:
            last_report = now
            print(_video_progress(written, expected, now - started), file=stream, flush=True)
    yield from in_order(executor.drain())


class FlowBlend:
    """Blends each output with the previous output moved along the optical flow of the
    original frames, where that flow is trusted (flow.trusted, as the optimiser's video
    uses it: Ruder et al.'s checks and the photometric one); call it on the
    frames in order. Frames and outputs are [H, W, 3] float32 in 0..255."""

    def __init__(self, blend: float, preset: str = BLEND_FLOW_PRESET):
        self.flow = flow_module()
        self.blend = float(blend)
        self.preset = preset
        self._previous: tuple[np.ndarray, np.ndarray] | None = None  # (frame, output)

    def __call__(self, frame: np.ndarray, output: np.ndarray) -> np.ndarray:
        """`output`, the network's for `frame`, blended with the previous output."""
        if self._previous is not None:
            previous_frame, previous_output = self._previous
            pair = self.flow.flows(previous_frame, frame, self.preset)
            mask = self.flow.trusted(previous_frame, frame, pair)
            moved = self.flow.warp(previous_output, pair.backward)
            weight = (self.blend * mask)[..., np.newaxis]
            output = (1.0 - weight) * output + weight * moved
        self._previous = (frame, output)
        return output


def flow_module():
    """neural_style.media.flow, or one line saying how to install OpenCV, which it needs."""
    try:
        from neural_style.media import flow
    except ImportError:
        raise UserError(
            "STYLIZE_VIDEO_BLEND (--stylize_video_blend) needs OpenCV for the optical flow: "
            "pip install -e '.[video]' (or pip install opencv-python-headless), or set "
            "STYLIZE_VIDEO_BLEND to 0"
        ) from None
    return flow


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
