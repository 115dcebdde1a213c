"""Video files out through the ffmpeg that imageio-ffmpeg ships (see video_io.py, which
reads them).

    written = write_video(results, "out.mp4", fps=info.fps, audio_from=info.path,
                          setting="OUTPUT_IMAGE")  # WrittenVideo(path, frames, audio, warning)
    write_video_from_pngs(["f-00001.png", ...], "out.mp4", fps=info.fps, audio_from=info,
                          setting="OUTPUT_IMAGE")

H.264 (yuv420p) in an .mp4 at `fps`, or at the input's own frame times when its `timing`
(video_timing.py) says the rate is variable, into a hidden `.<name>.partial.mp4` beside the final
name, renamed into place only once whole; on any failure or a stop signal the partial
files go and an earlier file at the final name stays as it was. The audio of `audio_from`,
if it has any, is re-encoded as AAC and cut to the frames' duration. H.264 in yuv420p needs
even sides, so an odd side gains one pixel, a copy of the last row or column.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from fractions import Fraction
from typing import IO, NamedTuple

import numpy as np

from neural_style import files, stopping
from neural_style.errors import UserError, one_line, setting_fix
from neural_style.media import video_io, video_timing

# Free bytes below which a failed write is put down to a full disk.
FULL_DISK_BYTES = 1024**2


# x264's constant quality (0 lossless, 18 about visually lossless): what imageio's quality
# 8 gave the videos stylize.py wrote before.
CRF = 10


# The AAC bit rate of the audio copied from the input, bits per second.
AUDIO_BITRATE = "192k"


class WrittenVideo(NamedTuple):
    """What `write_video` wrote."""

    path: str  # the final path
    frames: int  # frames written
    audio: bool  # whether audio from `audio_from` is in it
    warning: str | None  # why the audio was left out although there is some, else None


def write_video(
    frames: Iterable[np.ndarray | str | os.PathLike],
    path: str,
    *,
    fps: float,
    audio_from: str | video_io.VideoInfo | None = None,
    setting: str,
    timing: video_timing.Timing | None = None,
) -> WrittenVideo:
    """Writes `frames` to `path` as an H.264 .mp4 at `fps` frames per second, with the
    audio of `audio_from` (a file, or a probed video_io.VideoInfo) if it has any.

    With the `timing` of the input (video_io.VideoInfo.timing) the frames keep its times:
    frame i is shown when the input's frame i was (a variable rate stays as it was), and
    the audio is taken from the input's first frame on, so that it stays in step.

    Each frame is an [H, W, 3] array (uint8, or float in 0..255, rounded and clipped) or
    the path of an image file (a PNG frame); all of one size. The frames are consumed as
    they are encoded, so a generator may compute them; whatever it raises (a stop signal
    included) removes the partial file and propagates. The audio is cut to the frames'
    duration (a shorter track ends early, never the frames). Audio that cannot be added
    once the frames are encoded (unreadable, or no room left for the copy with it) leaves
    the video without it and a `warning` in the result, rather than no video.

    Raises:
        UserError: one line naming `path` and `setting` for a failed write (a read-only
            folder, a full disk, a folder at `path`), and naming `audio_from` when it
            cannot be read; nothing is then left at `path` but what was there before.
        ValueError: no frames, frames of different sizes, or an unusable `fps`.
    """
    if not (math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a positive number, not {fps!r}")
    audio_source, has_audio = _audio_source(audio_from)
    if os.path.isdir(path):
        refusal = IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
        raise files.output_error(path, refusal, setting)
    partial = _partial_path(path, ".partial.mp4", setting)
    muxed = _partial_path(path, ".partial-audio.mp4", setting) if has_audio else None
    try:
        count = _encode(frames, path, partial, fps, setting, not has_audio, timing)
        final, warning = partial, None
        if has_audio:
            span = _span(count, fps, timing)
            final, warning = _add_audio(partial, muxed, audio_source, span, path, setting)
        with _output_errors(path, setting):
            _fsync(final)
            os.replace(final, path)
    except BaseException:
        # A second Ctrl-C must not cut the clean-up short and leave a partial file.
        with stopping.deferred():
            for leftover in (partial, muxed):
                if leftover is not None:
                    with contextlib.suppress(OSError):
                        os.remove(leftover)
        raise
    with contextlib.suppress(OSError):
        os.remove(partial)  # the video without audio, once the one with it is in place
    return WrittenVideo(path, count, has_audio and warning is None, warning)


def write_video_from_pngs(
    paths: Sequence[str | os.PathLike],
    path: str,
    *,
    fps: float,
    audio_from: str | video_io.VideoInfo | None = None,
    setting: str,
    timing: video_timing.Timing | None = None,
) -> WrittenVideo:
    """`write_video` of the image files `paths` (PNG frames, in order), each checked to
    exist before anything is encoded."""
    paths = [os.fspath(frame) for frame in paths]
    if not paths:
        raise ValueError("no frames to write")
    missing = [frame for frame in paths if not os.path.isfile(frame)]
    if missing:
        raise UserError(
            f"{missing[0]}: no such frame ({len(missing)} of the {len(paths)} frames for "
            f"{path} are missing); run again to make them"
        )
    return write_video(paths, path, fps=fps, audio_from=audio_from, setting=setting, timing=timing)


def _span(count: int, fps: float, timing: video_timing.Timing | None) -> tuple[float, float]:
    """(where the input's audio starts, how long it runs) for `count` frames: from the
    first frame, for as long as they are shown."""
    start = timing.offset_seconds() if timing is not None else 0.0
    if timing is not None and timing.variable:
        return start, timing.seconds(count)
    return start, count / fps


def _audio_source(audio_from: str | video_io.VideoInfo | None) -> tuple[str | None, bool]:
    """(the file to take audio from, whether it has any), checked before any frame is made."""
    if audio_from is None:
        return None, False
    if isinstance(audio_from, video_io.VideoInfo):
        return audio_from.path, audio_from.has_audio
    source = os.fspath(audio_from)
    if not os.path.isfile(source):
        raise UserError(f"{source}: no such file to take the audio from")
    # No output named: ffmpeg lists the input's streams and stops (with status 1).
    text = video_io.run_ffmpeg(["-i", os.path.abspath(source)], source, level="info").stderr
    if "Input #0" not in text:
        reason = video_io.ffmpeg_reason(text, source, "not a file ffmpeg can read")
        raise UserError(f"{source}: cannot read its audio ({reason}); check the file")
    return source, any(kind == "Audio" for kind, _ in video_io.input_streams(text))


def _encode(
    frames,
    path: str,
    partial: str,
    fps: float,
    setting: str,
    faststart: bool,
    timing: video_timing.Timing | None,
) -> int:
    """Encodes `frames` into `partial`; the number of frames. ffmpeg starts with the first
    frame (its size is the video's) and is killed if anything goes wrong."""
    with _output_errors(path, setting):
        # Created here, so that a folder that cannot take it says why in plain words
        # rather than as a broken pipe to ffmpeg.
        open(partial, "wb").close()
    encoder: _Encoder | None = None
    count = 0
    try:
        for frame in frames:
            image = _frame_array(frame)
            if encoder is None:
                size = image.shape[:2]
                encoder = _Encoder(partial, size, fps, faststart=faststart, timing=timing)
            if not encoder.write(image):
                break  # ffmpeg has ended: finish() says why
            count += 1
        if encoder is None:
            raise ValueError("no frames to write")
        log = encoder.finish(count)
    except BaseException:
        if encoder is not None:
            encoder.kill()
        raise
    if log is not None:
        raise _write_failure(path, partial, log, setting)
    return count


class _Encoder:
    """An ffmpeg process encoding raw RGB frames from its stdin into an H.264 .mp4."""

    def __init__(
        self,
        partial: str,
        size: tuple[int, int],
        fps: float,
        *,
        faststart: bool,
        timing: video_timing.Timing | None = None,
    ):
        self.size = size
        self.written = 0
        # Files, not pipes: a full pipe would stall ffmpeg's log, and a clip's times can
        # outgrow a command line. Closed or removed by finish() or kill().
        self.log: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115
        self.script: str | None = None
        try:
            if timing is not None and timing.variable:
                self.script = _timing_script(timing)
            arguments = _encoder_arguments(partial, size, fps, faststart, self.script, timing)
            self.process = video_io.start_ffmpeg(arguments, stdin=subprocess.PIPE, stderr=self.log)
        except BaseException:
            self._close_files()
            raise

    def write(self, image: np.ndarray) -> bool:
        """Sends one frame; False if ffmpeg has ended (it failed)."""
        if image.shape[:2] != self.size:
            raise ValueError(f"a frame of {image.shape[:2]} among frames of {self.size}")
        height, width = self.size
        # H.264 in yuv420p needs even sides: a copy of the last row or column.
        even = np.pad(image, ((0, height % 2), (0, width % 2), (0, 0)), mode="edge")
        try:
            self.process.stdin.write(even.tobytes())
        except OSError:
            return False
        self.written += 1
        return True

    def finish(self, count: int) -> str | None:
        """Waits for ffmpeg to end; None if it wrote all `count` frames, else its log."""
        with contextlib.suppress(OSError):
            self.process.stdin.close()
        status = self.process.wait()
        self.log.seek(0)
        text = self.log.read().decode("utf-8", "replace")
        self._close_files()
        if status == 0 and self.written == count:
            return None
        return text or f"ffmpeg ended with status {status}"

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        with contextlib.suppress(OSError):
            self.process.stdin.close()
        self._close_files()

    def _close_files(self) -> None:
        self.log.close()
        if self.script is not None:
            with contextlib.suppress(OSError):
                os.remove(self.script)


def _encoder_arguments(
    partial: str,
    size: tuple[int, int],
    fps: float,
    faststart: bool,
    script: str | None,
    timing: video_timing.Timing | None,
) -> list[str]:
    """ffmpeg's arguments that encode raw RGB frames of `size` from stdin into `partial`:
    at `fps`, or, with a timing `script` (a variable rate), each frame at its own time."""
    height, width = size
    rate = Fraction(fps).limit_denominator(100_000)
    if script is not None:
        # The input's rate is only the last frame's length, which the muxer gives it.
        rate = 1 / (Fraction(timing.end - timing.starts[-1]) * timing.time_base)
    arguments = ["-f", "rawvideo", "-pix_fmt", "rgb24"]
    arguments += ["-s", f"{width + width % 2}x{height + height % 2}", "-r", str(rate), "-i", "-"]
    if script is not None:
        # The times as they are, in the input's own ticks: no frame repeated or dropped.
        arguments += ["-/filter:v", script, "-fps_mode", "passthrough"]
        arguments += ["-enc_time_base", "filter"]
    arguments += ["-an", "-c:v", "libx264", "-crf", str(CRF), "-pix_fmt", "yuv420p"]
    arguments += ["-movflags", "+faststart"] if faststart else []
    return [*arguments, "-f", "mp4", os.path.abspath(partial)]


def _timing_script(timing: video_timing.Timing) -> str:
    """A file with the filters that give each frame its time (see video_timing); its path."""
    base = timing.time_base
    text = f"settb={base.numerator}/{base.denominator},"
    text += f"setpts='{video_timing.pts_expression(timing)}'\n"
    descriptor, path = tempfile.mkstemp(prefix="neural-style-timing-", suffix=".txt")
    with os.fdopen(descriptor, "w", encoding="ascii") as file:
        file.write(text)
    return path


def _frame_array(frame: np.ndarray | str | os.PathLike) -> np.ndarray:
    """A frame as contiguous uint8 [H, W, 3]; an image file's path is read."""
    if isinstance(frame, (str, os.PathLike)):
        return _load_frame(os.fspath(frame))
    image = np.asarray(frame)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"a frame must be [H, W, 3], not {list(image.shape)}")
    if image.dtype != np.uint8:
        image = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(image)


def _load_frame(path: str) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"), dtype=np.uint8)
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise UserError(
            f"{path}: cannot read this frame ({one_line(error)}); check the file"
        ) from None


def _add_audio(
    video: str, muxed: str, audio: str, span: tuple[float, float], path: str, setting: str
) -> tuple[str, str | None]:
    """`video` with the audio of `audio` added, from and for the seconds of `span` (start,
    length), as `muxed`; returns the file to keep and, if the audio could not be added, a
    warning saying why (the video alone is then kept).

    `-t` and not `-shortest`: a track a few milliseconds short must not cut the last frame.
    """
    start, seconds = span
    # The input's audio from its first frame on: a clip whose video starts late (a
    # broadcast's) keeps its sound where it was.
    skip = ["-ss", f"{start:.6f}"] if start > 0 else []
    arguments = ["-i", os.path.abspath(video), *skip, "-i", os.path.abspath(audio)]
    arguments += ["-map", "0:v:0", "-map", "1:a?", "-c:v", "copy", "-c:a", "aac"]
    arguments += ["-b:a", AUDIO_BITRATE, "-t", f"{seconds:.6f}", "-movflags", "+faststart"]
    arguments += ["-f", "mp4", os.path.abspath(muxed)]
    with _output_errors(path, setting):
        open(muxed, "wb").close()
    result = video_io.run_ffmpeg(arguments, path)
    if result.returncode == 0:
        return muxed, None
    stopping.raise_if_requested()
    with contextlib.suppress(OSError):
        os.remove(muxed)
    # The video fitted, so a disk full now had no room for its second copy: the video
    # alone is kept rather than lost.
    cause = _disk_failure(result.stderr, muxed)
    if cause is not None and cause.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", None)):
        reason = f"{files.write_cause(path, cause)}, with no room for a copy with audio"
    else:
        reason = video_io.ffmpeg_reason(result.stderr, audio, "ffmpeg could not add it")
    return video, f"warning: {path}: written without the audio of {audio} ({reason})"


def _write_failure(path: str, partial: str, log: str, setting: str) -> UserError:
    """One line for ffmpeg failing to write `partial` (on its way to `path`)."""
    stopping.raise_if_requested()  # a stop signal that reached ffmpeg too
    cause = _disk_failure(log, partial)
    if cause is not None:
        return files.output_error(path, cause, setting)
    reason = video_io.ffmpeg_reason(log, partial, "ffmpeg failed")
    return UserError(
        f"{path}: cannot write the video ({reason}); check the folder or {setting_fix(setting)}"
    )


def _disk_failure(log: str, partial: str) -> OSError | None:
    """The file system's refusal behind ffmpeg's failure to write `partial`, if that was
    the cause: named in its log, or a disk with next to no room left."""
    lowered = log.lower()
    for marker, code in (
        ("no space left", errno.ENOSPC),
        ("quota exceeded", getattr(errno, "EDQUOT", errno.ENOSPC)),
        ("read-only file system", errno.EROFS),
        ("permission denied", errno.EACCES),
    ):
        if marker in lowered:
            return OSError(code, os.strerror(code), partial)
    folder = os.path.dirname(os.path.abspath(partial))
    with contextlib.suppress(OSError):
        if shutil.disk_usage(folder).free < FULL_DISK_BYTES:
            return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), partial)
    return None


@contextlib.contextmanager
def _output_errors(path: str, setting: str) -> Iterator[None]:
    """A failed file operation on the way to `path` as one line naming `setting`."""
    try:
        yield
    except OSError as error:
        raise files.output_error(path, error, setting) from None


def _partial_path(target: str, suffix: str, setting: str) -> str:
    """`.<name><suffix>` beside `target` (its folder created), the name cut short where
    the file system's limit would refuse it although it takes the final name."""
    folder, name = os.path.split(os.path.abspath(target))
    with _output_errors(target, setting):
        os.makedirs(folder, exist_ok=True)
    room = files.name_limit(folder) - 1 - len(suffix)
    while len(os.fsencode(name)) > room and len(name) > 1:
        name = name[:-1]  # by characters, so that a multi-byte one is never split
    return os.path.join(os.path.dirname(target), f".{name}{suffix}")


def _fsync(path: str) -> None:
    """Flushes `path` to the disk, so that a full disk shows now, not after the rename."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
