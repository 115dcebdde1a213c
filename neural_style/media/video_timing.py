"""When each frame of a clip is shown, so that a clip made at a variable frame rate (a
phone's, a screen recording) comes out with the timing it went in with, and its audio in
step; video_io.probe reads it, video_write.write_video writes it.

    timing = read_timing("clip.mp4", fps=25.0)  # Timing(time_base=Fraction(1, 16000), ...)
    timing.variable                             # False: every frame 1/25 s after the last
    timing.seconds(10)                          # where the 10th frame ends, from the first's
    pts_expression(timing)                      # "if(lt(N,4),N*1600,6400+(N-4)*640)"

The times come from ffmpeg decoding the clip as read_frames does (the first video stream,
every frame as stored), in the stream's own ticks, so they are exact. A clip whose frames
are evenly spaced at its stated rate is `variable=False`, and is written as before: at that
rate, from the first frame.
"""

from __future__ import annotations

import itertools
import re
from fractions import Fraction
from typing import NamedTuple

# ffmpeg's framecrc lines: "#tb 0: 1/16000" for each stream (0 the video, 1 the audio), then
# "0, dts, pts, duration, size, checksum" for each frame.
_TIME_BASE = r"^#tb {}: (\d+)/(\d+)\s*$"
_FRAME = r"^{},\s*(-?\d+),\s*(-?\d+),"


class Timing(NamedTuple):
    """The presentation times of a clip's frames, in ticks of `time_base` seconds."""

    time_base: Fraction  # seconds per tick, the video stream's own
    starts: tuple[int, ...]  # when each frame is shown, from the first frame (0)
    end: int  # when the last frame ends: its start and the interval before it
    offset: int  # the first frame's time in the file (where its audio is taken from), >= 0
    variable: bool  # False: each frame 1/fps after the last, as the stated rate says

    def ticks(self, count: int) -> int:
        """Where the first `count` frames end, from the first frame's start."""
        return self.starts[count] if count < len(self.starts) else self.end

    def seconds(self, count: int) -> float:
        """`ticks(count)` in seconds."""
        return float(self.ticks(count) * self.time_base)

    def offset_seconds(self) -> float:
        return float(self.offset * self.time_base)


def timing_arguments(path: str) -> list[str]:
    """ffmpeg's arguments that list each decoded frame of `path` (as video_io decodes it)
    with its time, and the first audio's, as framecrc text on stdout. The frames are not
    copied out of the decoder (`wrapped_avframe`), so this costs about one decoding of the
    clip."""
    return [
        *("-i", path, "-map", "0:V:0", "-map", "0:a:0?", "-fps_mode", "passthrough"),
        *("-enc_time_base", "demux", "-c:v", "wrapped_avframe", "-f", "framecrc", "-"),
    ]


def parse_timing(text: str, fps: float) -> Timing | None:
    """The Timing in ffmpeg's framecrc `text` (see timing_arguments), for a clip that
    states `fps` frames per second; None if it lists no frames or times that do not rise
    (then the frames are written at `fps`, as a constant rate)."""
    time_base, times = _stream(text, 0)
    if time_base is None or not times:
        return None
    first = times[0]
    starts = tuple(time - first for time in times)
    if any(later <= earlier for earlier, later in itertools.pairwise(starts)):
        return None
    step = 1 / (fps * time_base)  # ticks per frame at the stated rate
    last = starts[-1] - starts[-2] if len(starts) > 1 else max(1, round(step))
    # One tick either way is the stream's rounding of an even rate, not a variable one.
    variable = any(abs(start - index * step) > 1 for index, start in enumerate(starts))
    # The video's start after the audio's (a broadcast's), which the audio is cut by.
    audio_base, audio = _stream(text, 1)
    late = first * time_base - audio[0] * audio_base if audio_base and audio else 0
    offset = max(0, round(late / time_base))
    return Timing(time_base, starts, starts[-1] + last, offset, variable)


def _stream(text: str, index: int) -> tuple[Fraction | None, list[int]]:
    """(time base, the time of each frame) of stream `index` in framecrc `text`."""
    base = re.search(_TIME_BASE.format(index), text, re.MULTILINE)
    if base is None or int(base.group(1)) <= 0 or int(base.group(2)) <= 0:
        return None, []
    times = [int(pts) for _, pts in re.findall(_FRAME.format(index), text, re.MULTILINE)]
    return Fraction(int(base.group(1)), int(base.group(2))), times


def pts_expression(timing: Timing) -> str:
    """An ffmpeg expression (setpts) of the frame number N giving frame N's start in
    ticks: each run of frames at one interval is one term, and the runs are found by
    halving, so that ffmpeg evaluates a few comparisons a frame even for a long clip whose
    every interval differs. A frame past the last known one goes on at the last interval."""
    times = (*timing.starts, timing.end)
    runs: list[tuple[int, int, int]] = []  # (first frame, its start, interval)
    for index in range(len(times) - 1):
        interval = times[index + 1] - times[index]
        if not runs or runs[-1][2] != interval:
            runs.append((index, times[index], interval))
    return _halved(runs)


def _halved(runs: list[tuple[int, int, int]]) -> str:
    if len(runs) == 1:
        first, start, interval = runs[0]
        return f"{start}+(N-{first})*{interval}" if first else f"N*{interval}"
    middle = len(runs) // 2
    return f"if(lt(N,{runs[middle][0]}),{_halved(runs[:middle])},{_halved(runs[middle:])})"


def frame_rate_of(timing: Timing) -> float:
    """The average frame rate of a variable-rate clip: frames per second of its length."""
    return len(timing.starts) / float(timing.end * timing.time_base)
