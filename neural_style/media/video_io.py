"""Video files in through the ffmpeg that imageio-ffmpeg ships (`pip install
imageio-ffmpeg`, the `video` extra), without TensorFlow: what stylize.py (a trained network
over every frame) and train.py (a video as CONTENT_IMAGE) share; video_write.py writes.

    info = probe("clip.mp4", "CONTENT_IMAGE")  # VideoInfo(fps=25.0, size=(360, 640), ...)
    with read_frames(info, max_frames=100) as frames:
        for frame in frames:                   # [H, W, 3] float32 RGB in 0..255
            ...
    warning = frames.warning()                 # a truncated file: what it gave, or None

Reading: every frame in order, as the file stores them (a variable frame rate is neither
padded nor thinned), at the size the player shows (rotation applied, odd sides kept). The
probe also times every frame (`info.timing`, video_timing.py), so that video_write keeps
a variable rate as it was. A file that is missing, empty, not a video or without a video
stream is one `UserError` line naming it and its setting; a damaged one gives the frames
it has and a warning.
ffmpeg runs in its own process group: Ctrl-C reaches Python, which ends ffmpeg itself.
"""

from __future__ import annotations

import logging
import math
import os
import re
import stat
import subprocess
from collections.abc import Iterator
from typing import NamedTuple

import numpy as np

from neural_style import stopping
from neural_style.errors import UserError, one_line, setting_fix
from neural_style.media.video_timing import Timing, frame_rate_of, parse_timing, timing_arguments

# The frame rate assumed when a file does not state one.
DEFAULT_FPS = 25.0
# Frames a video may decode short of its header's count (rounding, a last partial frame)
# before it is called truncated: this fraction, and at least one.
FRAME_TOLERANCE = 0.02
# Seconds allowed for ffmpeg to read a file's stream headers or to add the audio.
_FFMPEG_SECONDS = 600
# The longest reason quoted from ffmpeg in a message, so that it stays a short line.
_REASON_CHARACTERS = 80
# Lines of ffmpeg's log that describe the file, its banner, its progress or how its threads
# ended: never the reason.
_NOT_A_REASON = re.compile(
    r"^(ffmpeg version|built with|configuration:|lib\w+ +\d|copyright|(input|output) #|"
    r"stream #|stream mapping|duration:|metadata:|side data:|press \[q\]|frame=|size=|"
    r"\.\.\. showing|conversion failed|nothing was written into output|task finished with|"
    r"terminating thread with|could not open encoder before|cannot determine format of|"
    r"consider increasing)",
    re.IGNORECASE,
)
# The streams an `ffmpeg -i` header lists for its input: "Stream #0:1[0x2](und): Audio: aac".
_INPUT_STREAM = re.compile(r"^\s*Stream #0:\d+\S*: (Video|Audio|Subtitle|Data|Attachment): (.*)$")


class VideoInfo(NamedTuple):
    """A video file as `probe` found it."""

    path: str  # as the caller spelt it
    fps: float  # frames per second (the average, for a variable rate; DEFAULT_FPS if unknown)
    size: tuple[int, int]  # (height, width) of the frames as read_frames gives them
    frames: int | None  # frames expected: duration * fps, None when the file does not say
    has_audio: bool  # whether it has an audio track
    duration: float | None  # seconds, None when the file does not say
    timing: Timing | None = None  # when each frame is shown; None if ffmpeg could not say


def probe(path: str, setting: str) -> VideoInfo:
    """The frame rate, size, expected frame count, audio and duration of the video at
    `path`, after decoding its first frame.

    Raises:
        UserError: one line naming `path` and `setting` (e.g. "CONTENT_IMAGE"): no such
            file, a folder, not a regular file, empty, not a video, no video stream, or
            no frame that can be decoded.
    """
    _check_input_file(path, setting)
    fix = f"check the file or {setting_fix(setting)}"
    decoder = _decoder(path)
    try:
        try:
            meta = next(decoder)
        except Exception as error:
            stopping.raise_if_requested()
            raise UserError(f"{path}: {_open_failure(str(error), path)}; {fix}") from None
        reason = ""
        try:
            first = next(decoder, None)
        except Exception as error:  # ffmpeg gave up on the first frame
            first, reason = None, f" ({ffmpeg_reason(str(error), path, 'ffmpeg gave up')})"
        if first is None:
            raise UserError(f"{path}: the video has no frames that could be decoded{reason}; {fix}")
    finally:
        decoder.close()
    width, height = meta["size"]
    fps = float(meta.get("fps") or 0.0)
    fps = fps if math.isfinite(fps) and fps > 0 else DEFAULT_FPS
    duration = meta.get("duration")
    if not (isinstance(duration, (int, float)) and math.isfinite(duration) and duration > 0):
        duration = None
    frames = max(1, round(duration * fps)) if duration else None
    timing, whole = read_timing(path, fps)
    if timing is not None and timing.variable:
        # ffmpeg's stated rate of a variable-rate clip is a guess: the times are not.
        fps = frame_rate_of(timing)
    if timing is not None and (whole or timing.variable):
        # A file ffmpeg decoded without a complaint has the frames it gave, although its
        # header may say more (a longer audio track, or an average rate times the length).
        decoded = len(timing.starts)
        frames = decoded if whole or not duration else max(decoded, round(duration * fps))
    has_audio = "audio_codec" in meta
    return VideoInfo(path, fps, (height, width), frames, has_audio, duration, timing)


def read_timing(path: str, fps: float) -> tuple[Timing | None, bool]:
    """When each frame of the video at `path` (stated at `fps` frames per second) is shown,
    from one pass of ffmpeg over its frames, and whether ffmpeg decoded it without an error.
    The timing is None if ffmpeg gives no usable times (the frames are then written at
    `fps`); a damaged file gives those of the frames ffmpeg could decode, as read_frames
    gives those frames. As long as one decoding of the clip."""
    result = run_ffmpeg(timing_arguments(os.path.abspath(path)), path, timeout=None)
    whole = result.returncode == 0 and not result.stderr.strip()
    return parse_timing(result.stdout, fps), whole


class FrameReader:
    """The frames of a probed video, in order: an iterator (one pass) of [H, W, 3] float32
    RGB arrays in 0..255 at `info.size`, ending after `max_frames` (0: all).

    `decoded` counts the frames given so far; `error` is ffmpeg's reason if decoding gave
    up part of the way (the frames before it are given, no exception), and `warning()` words
    a shortfall once the iteration has ended. A `with` block, or `close()`, ends ffmpeg
    when the caller stops early.
    """

    def __init__(self, info: VideoInfo, max_frames: int = 0):
        self.info = info
        self.max_frames = max_frames
        self.decoded = 0
        self.error: str | None = None
        self._decoder: Iterator[bytes] | None = None
        self._finished = False

    def __iter__(self) -> FrameReader:
        return self

    def __next__(self) -> np.ndarray:
        if self._finished or (self.max_frames and self.decoded >= self.max_frames):
            self.close()
            raise StopIteration
        if self._decoder is None:
            self._decoder = self._open()
        try:
            raw = next(self._decoder)
        except StopIteration:
            self.close()
            raise
        except Exception as error:  # ffmpeg gave up on a damaged stream
            self.error = ffmpeg_reason(str(error), self.info.path, "ffmpeg gave up")
            self.close()
            raise StopIteration from None
        self.decoded += 1
        height, width = self.info.size
        return np.frombuffer(raw, np.uint8).reshape(height, width, 3).astype(np.float32)

    def _open(self) -> Iterator[bytes]:
        path = self.info.path
        decoder = _decoder(path)
        try:
            meta = next(decoder)
        except Exception as error:
            decoder.close()
            stopping.raise_if_requested()
            failure = _open_failure(str(error), path)
            raise UserError(f"{path}: {failure}, although it could a moment ago") from None
        width, height = meta["size"]
        if (height, width) != self.info.size:
            decoder.close()
            raise UserError(
                f"{path}: the video changed while in use: its frames are now {width}x{height}, "
                f"not {self.info.size[1]}x{self.info.size[0]}"
            )
        return decoder

    def close(self) -> None:
        """Ends ffmpeg; the iteration ends too."""
        self._finished = True
        if self._decoder is not None:
            self._decoder.close()

    def __enter__(self) -> FrameReader:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def warning(self) -> str | None:
        """The warning for a video that gave fewer frames than its header announces (up to
        `max_frames`), or whose decoding failed part of the way; None for a whole one."""
        written, expected = self.decoded, self.info.frames
        if expected and self.max_frames:
            expected = min(expected, self.max_frames)
        why = f" ({self.error})" if self.error else ""
        damaged = f"; the file is truncated or damaged, and the output has those {written}"
        source = self.info.path
        if expected and expected - written > max(1, round(FRAME_TOLERANCE * expected)):
            return (
                f"warning: {source}: only {written} of the {expected} frames its header "
                f"announces could be decoded{why}{damaged}"
            )
        if self.error:
            return f"warning: {source}: decoding stopped after {written} frames{why}{damaged}"
        return None


def read_frames(info: VideoInfo, *, max_frames: int = 0) -> FrameReader:
    """The frames of the probed video `info`, in order (see FrameReader); `max_frames` > 0
    stops after that many. ffmpeg starts at the first frame asked for."""
    return FrameReader(info, max_frames)


# --- reading ---------------------------------------------------------------------------------


def _check_input_file(path: str, setting: str) -> None:
    """What can be said of `path` before ffmpeg looks at it (ffmpeg would hang on a pipe)."""
    fix = setting_fix(setting)
    try:
        status = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        raise UserError(f"{path}: no such file; {fix}") from None
    except OSError as error:
        raise UserError(
            f"{path}: cannot read the video ({one_line(error.strerror)}); {fix}"
        ) from None
    if stat.S_ISDIR(status.st_mode):
        raise UserError(f"{path}: is a folder, not a video file; {fix}")
    if not stat.S_ISREG(status.st_mode):
        raise UserError(f"{path}: not a regular file (a pipe or a device); {fix}")
    if status.st_size == 0:
        raise UserError(
            f"{path}: cannot read the video (the file is empty, 0 bytes); check the file or {fix}"
        )


def _decoder(path: str) -> Iterator:
    """imageio-ffmpeg's reader of `path`: its metadata first, then raw RGB frames. Only the
    first video stream that is not a cover picture; every frame as stored (`passthrough`:
    ffmpeg would otherwise repeat frames to make a variable rate constant)."""
    imageio_ffmpeg = _imageio_ffmpeg()
    # An absolute path: a name such as "http:x.mp4" would otherwise be read as a protocol.
    return imageio_ffmpeg.read_frames(
        os.path.abspath(path), output_params=["-map", "0:V:0", "-fps_mode", "passthrough"]
    )


def _open_failure(text: str, path: str) -> str:
    """What went wrong when ffmpeg could not start giving the frames of `path`: no video
    stream, no frame it could decode (ffmpeg reads the header first), or its own reason."""
    kinds = [kind for kind, rest in input_streams(text) if "(attached pic)" not in rest]
    reason = ffmpeg_reason(text, path, "")
    if "Video" in kinds:
        return "the video has no frames that could be decoded" + (f" ({reason})" if reason else "")
    if "Input #0" in text:
        only = ", only audio" if "Audio" in kinds else ""
        return f"cannot read the video (it has no video stream{only})"
    return f"cannot read the video ({reason or 'ffmpeg could not open it'})"


def input_streams(text: str) -> list[tuple[str, str]]:
    """(kind, description) of each stream of ffmpeg's input, from its log `text`."""
    header = text.split("Output #0", 1)[0]
    return [match.groups() for match in map(_INPUT_STREAM.match, header.splitlines()) if match]


def ffmpeg_reason(text: str, path: str, default: str) -> str:
    """The reason in an ffmpeg log or an imageio-ffmpeg error, without ffmpeg's banner of
    version and build flags (thousands of characters), the file's description or the
    command line: its last two distinct messages, or the last if both would be long;
    `default` if it gave none."""
    python_part, _, log = text.partition("=== stderr ===")
    names = {path, os.path.abspath(path)}
    reasons: list[str] = []
    for line in (log or python_part).splitlines():
        if line[:1].isspace():  # the file's description: its streams and metadata
            continue
        line = re.sub(r"^(\[[^\]]*\]\s*)+", "", line.strip())
        if not line or _NOT_A_REASON.match(line) or any(name in line for name in names):
            continue
        if line.lower().startswith("error") and ": " in line:
            line = line.rsplit(": ", 1)[1]  # "Error opening input: <reason>"
        if line not in reasons:
            reasons.append(line)
    if reasons:
        both = one_line("; ".join(reasons[-2:]))
        last = one_line(reasons[-1])
        return _shortened(both if len(both) <= _REASON_CHARACTERS else last)
    lines = [line.strip() for line in python_part.splitlines() if line.strip()]
    if log or not lines:  # ffmpeg said nothing beyond describing the file
        return default
    return _shortened(one_line(lines[0]))


def _shortened(reason: str) -> str:
    if len(reason) <= _REASON_CHARACTERS:
        return reason
    return reason[: _REASON_CHARACTERS - 3].rstrip() + "..."


# --- writing ---------------------------------------------------------------------------------


# --- ffmpeg ----------------------------------------------------------------------------------


def _imageio_ffmpeg():
    try:
        import imageio_ffmpeg
    except ImportError:
        raise UserError(
            "video needs imageio-ffmpeg: pip install -e '.[video]' (or pip install imageio-ffmpeg)"
        ) from None
    logger = logging.getLogger("imageio_ffmpeg")
    if _RotationNote not in {type(existing) for existing in logger.filters}:
        logger.addFilter(_RotationNote())
    return imageio_ffmpeg


class _RotationNote(logging.Filter):
    """Drops imageio-ffmpeg's warning that a rotated video (a phone held upright) is read at
    its displayed size: that is what we want, and it is not the user's to act on."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("The frame size for reading")


def _ffmpeg_exe() -> str:
    try:
        return _imageio_ffmpeg().get_ffmpeg_exe()
    except RuntimeError as error:  # no binary for this platform, or a bad IMAGEIO_FFMPEG_EXE
        raise UserError(f"video needs ffmpeg: {one_line(error)}") from None


def start_ffmpeg(arguments: list[str], level: str = "error", **streams) -> subprocess.Popen:
    """ffmpeg logging at `level`, in its own process group, so that Ctrl-C in the terminal
    reaches only us: we end it ourselves, after removing what it was writing."""
    command = [_ffmpeg_exe(), "-hide_banner", "-nostdin", "-nostats", "-v", level, "-y"]
    streams.setdefault("stdout", subprocess.DEVNULL)
    try:
        return subprocess.Popen(
            [*command, *arguments],
            start_new_session=os.name == "posix",
            creationflags=getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0),
            **streams,
        )
    except OSError as error:
        raise UserError(f"{command[0]}: cannot run ffmpeg ({one_line(error)})") from None


def run_ffmpeg(
    arguments: list[str],
    about: str,
    level: str = "error",
    timeout: float | None = _FFMPEG_SECONDS,
) -> subprocess.CompletedProcess:
    """ffmpeg run to its end, for at most `timeout` seconds (None: no limit); its output as
    text in `stdout` and its log in `stderr` ("info" lists the streams)."""
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    process = start_ffmpeg(arguments, level, stdin=subprocess.DEVNULL, **pipes)
    try:
        output, log = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise UserError(f"{about}: ffmpeg took over {_FFMPEG_SECONDS} s; check the file") from None
    except BaseException:
        process.kill()
        process.wait()
        raise
    return subprocess.CompletedProcess(
        arguments,
        process.returncode,
        output.decode("utf-8", "replace"),
        log.decode("utf-8", "replace"),
    )
