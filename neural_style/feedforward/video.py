"""Stylising a video: every frame, in batches, written as `<name>.mp4`, H.264, at the
input's frame rate and without audio, through imageio's own ffmpeg (`pip install imageio
imageio-ffmpeg`, the `video` extra).

A video is written to a hidden `.<name>.partial.mp4` beside its final name, renamed into
place only once whole and removed when the run stops (a signal, honoured once the batch in
hand is written) or fails, so no half file ever has the final name. A truncated or damaged
input gives the frames it has and a warning, not a traceback; ffmpeg's failures are worded
in one line, without its banner.

Frames are [H, W, 3] float32 RGB in 0..255, batches [B, H, W, 3].
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import re
import shutil
import time
from collections.abc import Iterator
from typing import TextIO

import numpy as np

from neural_style import files, stopping
from neural_style.errors import UserError, one_line, setting_fix
from neural_style.feedforward.config import NetworkSettings
from neural_style.feedforward.fit import MemoryFit, fit_image, wxh
from neural_style.feedforward.model import MIN_SIDE
from neural_style.feedforward.stylizer import Stylizer
from neural_style.reporting import format_duration

# Frames a video may decode short of its header's count (rounding, a last partial frame)
# before it is called truncated: this fraction, and at least one.
FRAME_TOLERANCE = 0.02
# Free bytes below which a failed write is put down to a full disk.
FULL_DISK_BYTES = 1024**2
# ffmpeg's start-up banner, which imageio puts in every error: not the reason.
_FFMPEG_BANNER = ("ffmpeg version", "built with", "configuration:", "lib", "copyright")
# The longest reason quoted from ffmpeg in a message.
_REASON_CHARACTERS = 160


class _Frames:
    """The decoded frames of a video, shrunk to fit; remembers why decoding stopped early,
    if it did, so that a damaged file gives what it has and a warning, not a traceback."""

    def __init__(self, reader, source: str):
        self._iterator = iter(reader)
        self.source = source
        self.decoded = 0
        self.error: str | None = None

    def __iter__(self) -> Iterator[np.ndarray]:
        while True:
            try:
                frame = next(self._iterator)
            except StopIteration:
                return
            except Exception as error:  # ffmpeg gave up on a damaged stream
                self.error = _ffmpeg_reason(error, self.source)
                return
            self.decoded += 1
            yield np.asarray(frame, dtype=np.float32)[..., :3]


def stylize_video(
    stylizer: Stylizer, settings: NetworkSettings, target: str, fit: MemoryFit, stream: TextIO
) -> str:
    """Every frame of the video, in batches; the same frame rate, no audio. Returns the
    output path, `target`; a truncated video gives the frames it has and a warning."""
    imageio = _import_imageio()
    source = settings.stylize_input
    try:
        reader = imageio.get_reader(source, "ffmpeg")
        metadata = reader.get_meta_data()
    except Exception as error:
        stopping.raise_if_requested()  # Ctrl-C reached ffmpeg too, which then failed
        raise UserError(
            f"{source}: cannot read the video ({_ffmpeg_reason(error, source)}); check the "
            f"file or {setting_fix('STYLIZE_INPUT')}"
        ) from None
    try:
        fps = float(metadata.get("fps") or 25.0)
        expected = _frame_estimate(metadata, fps)
        frames = _Frames(reader, source)
        frame_iterator = iter(frames)
        first = next(frame_iterator, None)
        if first is None:
            reason = f" ({frames.error})" if frames.error else ""
            raise UserError(f"{source}: the video has no frames that could be decoded{reason}")
        if min(first.shape[:2]) < MIN_SIDE:
            raise UserError(
                f"{source}: its frames are {wxh(first.shape[:2])} pixels, below the "
                f"network's {MIN_SIDE}x{MIN_SIDE}"
            )
        size_hw = fit.target_size(first.shape[:2], source)
        batches = _frame_batches(first, frame_iterator, size_hw, fit.batch(size_hw))
        written = _write_video(imageio, batches, stylizer, target, fps, expected, stream)
    finally:
        with contextlib.suppress(Exception):  # ffmpeg may be gone already
            reader.close()
    warning = _truncation_warning(source, written, expected, frames.error)
    if warning:
        print(warning, file=stream)
    return target


def _truncation_warning(
    source: str, written: int, expected: int | None, error: str | None
) -> str | None:
    """The warning for a video that gave fewer frames than its header announces, or whose
    decoding failed part of the way; None for a whole one."""
    why = f" ({error})" if error else ""
    damaged = f"; the file is truncated or damaged, and the output has those {written}"
    if expected and expected - written > max(1, round(FRAME_TOLERANCE * expected)):
        return (
            f"warning: {source}: only {written} of the {expected} frames its header "
            f"announces could be decoded{why}{damaged}"
        )
    if error:
        return f"warning: {source}: decoding stopped after {written} frames{why}{damaged}"
    return None


def _write_video(imageio, batches, stylizer, target, fps, expected, stream: TextIO) -> int:
    """Writes the stylised batches to `target` through a hidden partial file, renamed into
    place only once complete, and removed if anything (a signal included) stops it."""
    partial = _partial_path(target)
    writer = None
    frames, started, last_report = 0, time.perf_counter(), time.perf_counter()
    try:
        with _video_write_errors(target, partial):
            # Created here, so that a folder that cannot take it says why in plain words
            # rather than as a broken pipe to ffmpeg.
            open(partial, "wb").close()
            # macro_block_size 2: H.264 needs even sides, and an odd side is padded by one
            # pixel rather than resized to a multiple of 16.
            # ffmpeg's own log would add lines after ours; its failures are ours to word.
            writer = imageio.get_writer(
                partial,
                "ffmpeg",
                fps=fps,
                codec="libx264",
                quality=8,
                macro_block_size=2,
                ffmpeg_log_level="quiet",
            )
        for batch in batches:
            stylised = np.clip(np.rint(stylizer(batch)), 0, 255).astype(np.uint8)
            with _video_write_errors(target, partial):
                for frame in stylised:
                    writer.append_data(frame)
            frames += len(batch)
            stopping.raise_if_requested()
            now = time.perf_counter()
            if now - last_report >= 2.0:
                last_report = now
                print(_video_progress(frames, expected, now - started), file=stream, flush=True)
        # Ctrl-C reaches ffmpeg too, which may end the frames early: not a short video.
        stopping.raise_if_requested()
        with _video_write_errors(target, partial):
            writer.close()
            _check_written(partial, frames)
            os.replace(partial, target)
    except BaseException:
        # A second Ctrl-C must not cut the clean-up short and leave the partial file.
        with stopping.deferred():
            if writer is not None:
                with contextlib.suppress(Exception):
                    writer.close()
            with contextlib.suppress(OSError):
                os.remove(partial)
        raise
    print(_video_progress(frames, frames, time.perf_counter() - started), file=stream)
    return frames


def _partial_path(target: str) -> str:
    """`.<name>.partial.mp4` beside `target` (its folder created), the name cut short where
    the file system's limit would refuse it although it takes the final name."""
    folder, name = os.path.split(os.path.abspath(target))
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as error:
        raise files.output_error(target, error, "STYLIZE_OUTPUT") from None
    suffix = ".partial.mp4"
    room = files.name_limit(folder) - 1 - len(suffix)
    while len(os.fsencode(name)) > room and len(name) > 1:
        name = name[:-1]  # by characters, so that a multi-byte one is never split
    return os.path.join(os.path.dirname(target), f".{name}{suffix}")


def _check_written(partial: str, frames: int) -> None:
    """Raises if fewer than `frames` frames reached the file: imageio does not report ffmpeg
    failing as it finishes (a disk that filled up), which would leave a broken video."""
    import imageio_ffmpeg

    try:
        found = imageio_ffmpeg.count_frames_and_secs(partial)[0]
    except Exception:  # no video stream at all
        found = 0
    if found != frames:
        raise RuntimeError(f"ffmpeg wrote {found} of the {frames} frames")


@contextlib.contextmanager
def _video_write_errors(target: str, partial: str) -> Iterator[None]:
    """Write failures (a read-only folder, a full disk, ffmpeg giving up) as one line."""
    try:
        yield
    except Exception as error:
        stopping.raise_if_requested()  # Ctrl-C reached ffmpeg too, which then failed
        if isinstance(error, OSError) and error.errno is not None:
            raise files.output_error(target, error, "STYLIZE_OUTPUT") from None
        # ffmpeg's failures reach us as a broken pipe or a short file, whatever the cause.
        folder = os.path.dirname(os.path.abspath(partial))
        if shutil.disk_usage(folder).free < FULL_DISK_BYTES:
            full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), partial)
            raise files.output_error(target, full, "STYLIZE_OUTPUT") from None
        raise UserError(_video_write_message(target, partial, error)) from None


def _video_write_message(target: str, partial: str, error: Exception) -> str:
    return (
        f"{target}: cannot write the video ({_ffmpeg_reason(error, partial)}); check the "
        f"folder or {setting_fix('STYLIZE_OUTPUT')}"
    )


def _frame_batches(
    first: np.ndarray, rest: Iterator[np.ndarray], size_hw: tuple[int, int], batch_size: int
) -> Iterator[np.ndarray]:
    batch = [fit_image(first, size_hw)]
    for frame in rest:
        if len(batch) == batch_size:
            yield np.stack(batch)
            batch = []
        batch.append(fit_image(frame, size_hw))
    yield np.stack(batch)


def _video_progress(frames: int, expected: int | None, seconds: float) -> str:
    rate = frames / seconds if seconds > 0 else 0.0
    if expected and expected > frames and rate > 0:
        eta = f"  ETA {format_duration((expected - frames) / rate)}"
        return f"frame {frames}/~{expected}  {rate:.3g} frames/s{eta}"
    return f"frame {frames}  {rate:.3g} frames/s"


def _frame_estimate(metadata: dict, fps: float) -> int | None:
    duration = metadata.get("duration")
    if isinstance(duration, (int, float)) and math.isfinite(duration) and duration > 0:
        return round(duration * fps)
    return None


def _ffmpeg_reason(error: BaseException, path: str) -> str:
    """The reason in an imageio/ffmpeg error, without ffmpeg's banner of version and build
    flags (thousands of characters) or the command line: its last two distinct messages."""
    text = str(error)
    if "=== stderr ===" not in text:
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        return one_line(lines[0] if lines else type(error).__name__)[:_REASON_CHARACTERS]
    reasons: list[str] = []
    for line in text.split("=== stderr ===", 1)[1].splitlines():
        line = re.sub(r"^(\[[^\]]*\]\s*)+", "", line.strip())
        if not line or line.lower().startswith(_FFMPEG_BANNER) or path in line:
            continue
        if line.lower().startswith("error") and ": " in line:
            line = line.rsplit(": ", 1)[1]  # "Error opening input: <reason>"
        if line not in reasons:
            reasons.append(line)
    reason = "; ".join(reasons[-2:]) or "ffmpeg could not read it"
    return one_line(reason)[:_REASON_CHARACTERS]


def _import_imageio():
    try:
        import imageio.v2 as imageio
        import imageio_ffmpeg  # noqa: F401  (the ffmpeg binary imageio uses)
    except ImportError:
        raise UserError(
            "video needs imageio and imageio-ffmpeg: pip install -e '.[video]' "
            "(or pip install imageio imageio-ffmpeg)"
        ) from None
    return imageio
