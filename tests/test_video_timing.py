"""A clip's frame times kept (media/video_timing.py): a variable-frame-rate clip, made here
from flat frames held for different times with ffmpeg's concat demuxer and a tone, comes
out with each frame at its input time (to a tick of its clock) and its audio as long, when
written from frames, by the trained network (stylize) and by train.py's frames, resumed
part of the way; a constant-rate clip comes out byte for byte as it did before."""

from __future__ import annotations

import io
import itertools
import os
import re
import subprocess
import tempfile
from fractions import Fraction

import numpy as np
import pytest

from neural_style.media import video_io, video_timing, video_write
from tests.support import (
    FEW_LAYERS,
    ffmpeg,
    ffmpeg_exe,
    pattern_clip,
    stop_in_frame,
    stylize_settings,
    tiny_settings,
    write_image,
)

# Seconds each frame of the variable-rate clip is held: a steady start, a burst, a stall.
HELD = (0.1, 0.1, 0.1, 0.04, 0.04, 0.04, 0.04, 0.28, 0.28)


def vfr_clip(folder, held=HELD, *, size=(36, 48), audio: bool = True) -> str:
    """An H.264 .mp4 of flat frames, frame i held for held[i] seconds, with a tone as long as
    the frames if `audio`; its times in a 1/1000 s clock."""
    lines = ["ffconcat version 1.0"]
    for index, seconds in enumerate(held):
        colour = np.array([30 + 20 * index, 220 - 20 * index, 90], np.float32)
        frame = write_image(folder / f"held-{index}.png", np.broadcast_to(colour, (*size, 3)))
        lines += [f"file '{os.path.basename(frame)}'", f"duration {seconds}"]
    lines.append(lines[-2])  # the concat demuxer holds the last file only when it is repeated
    listing = folder / "held.ffconcat"
    listing.write_text("\n".join(lines) + "\n")
    total = f"{sum(held):.3f}"
    arguments = ["-f", "concat", "-i", str(listing)]
    if audio:
        arguments += ["-f", "lavfi", "-i", f"sine=frequency=440:duration={total}", "-c:a", "aac"]
    arguments += ["-fps_mode", "passthrough", "-enc_time_base", "1/1000", "-t", total]
    path = str(folder / "vfr.mp4")
    ffmpeg(*arguments, "-c:v", "libx264", "-pix_fmt", "yuv420p", path)
    return path


def frame_times(path) -> tuple[list[float], float]:
    """(when each frame of `path` is shown, in seconds, as ffmpeg's showinfo filter reports
    it; the tick of the video's clock in seconds)."""
    shown = subprocess.run(
        [
            *(ffmpeg_exe(), "-hide_banner", "-i", str(path), "-map", "0:V:0"),
            *("-vf", "showinfo", "-f", "null", "-"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    ).stderr
    tick = Fraction(re.search(r"config in time_base: (\d+/\d+)", shown).group(1))
    return [float(value) for value in re.findall(r"pts_time:([-\d.]+)", shown)], float(tick)


def audio_end(path) -> float:
    """Where the audio of `path` ends, in seconds: its last packet's time and length."""
    listed = subprocess.run(
        [
            *(ffmpeg_exe(), "-hide_banner", "-v", "error", "-i", str(path), "-map", "0:a:0"),
            *("-c", "copy", "-f", "framecrc", "-"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    base = Fraction(re.search(r"#tb 0: (\d+/\d+)", listed).group(1))
    last = [line.split(",") for line in listed.splitlines() if line.startswith("0,")][-1]
    return float((int(last[2]) + int(last[3])) * base)


def assert_same_times(output, source, frames: int | None = None) -> None:
    """`output`'s frames are shown when the first `frames` of `source` were, to a tick."""
    written, tick = frame_times(output)
    expected, source_tick = frame_times(source)
    expected = expected[:frames] if frames else expected
    assert len(written) == len(expected)
    np.testing.assert_allclose(written, expected, rtol=0, atol=max(tick, source_tick) + 1e-6)


def stylised_copy(info, target, count: int = 0) -> video_write.WrittenVideo:
    """The frames of `info` (the first `count`, or all) inverted, written with its timing."""
    with video_io.read_frames(info, max_frames=count) as frames:
        inverted = (255.0 - frame for frame in frames)
        return video_write.write_video(
            inverted, str(target), fps=info.fps, timing=info.timing, audio_from=info, setting="X"
        )


# --- frames in, frames out -------------------------------------------------------------------


def test_a_variable_rate_clip_keeps_each_frames_time_and_its_audio(tmp_path):
    source = vfr_clip(tmp_path)
    shown, _ = frame_times(source)
    intervals = [later - earlier for earlier, later in itertools.pairwise(shown)]
    assert max(intervals) > 5 * min(intervals)  # truly variable
    info = video_io.probe(source, "STYLIZE_INPUT")
    assert info.timing.variable and info.frames == len(HELD)
    assert info.fps == pytest.approx(len(HELD) / sum(HELD), rel=0.02)  # the real average
    written = stylised_copy(info, tmp_path / "out.mp4")
    assert written == video_write.WrittenVideo(str(tmp_path / "out.mp4"), len(HELD), True, None)
    assert_same_times(tmp_path / "out.mp4", source)
    # The tone lasts as long as the frames, as it did in the input: no drift, nothing cut.
    assert audio_end(tmp_path / "out.mp4") == pytest.approx(audio_end(source), abs=0.025)
    assert audio_end(source) == pytest.approx(sum(HELD), abs=0.025)


def test_the_first_frames_of_a_variable_rate_clip_keep_their_times(tmp_path):
    info = video_io.probe(vfr_clip(tmp_path), "CONTENT_IMAGE")
    stylised_copy(info, tmp_path / "out.mp4", count=5)  # as VIDEO_MAX_FRAMES=5 would
    assert_same_times(tmp_path / "out.mp4", info.path, frames=5)
    # The audio runs until the sixth frame would have been shown.
    assert audio_end(tmp_path / "out.mp4") == pytest.approx(sum(HELD[:5]), abs=0.025)


def test_a_constant_rate_clip_is_written_as_before(tmp_path):
    source = pattern_clip(tmp_path / "steady.mp4", frames=12, rate=12, audio_seconds=1)
    info = video_io.probe(source, "STYLIZE_INPUT")
    assert not info.timing.variable and (info.fps, info.frames) == (12.0, 12)
    stylised_copy(info, tmp_path / "timed.mp4")
    with video_io.read_frames(info) as frames:
        inverted = (255.0 - frame for frame in frames)
        video_write.write_video(
            inverted, str(tmp_path / "untimed.mp4"), fps=12.0, audio_from=info, setting="X"
        )
    assert (tmp_path / "timed.mp4").read_bytes() == (tmp_path / "untimed.mp4").read_bytes()
    assert_same_times(tmp_path / "timed.mp4", source)


def test_a_long_clip_whose_every_interval_differs_is_timed_to_the_tick(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "temporary"))  # the timing's file
    os.mkdir(tmp_path / "temporary")
    # A phone's 30 fps: each interval 30 to 36 ticks of 1/1000 s, none repeated twice running.
    intervals = 30 + (np.arange(400) * 5) % 7
    starts = tuple(int(value) for value in np.concatenate([[0], np.cumsum(intervals[:-1])]))
    timing = video_timing.Timing(Fraction(1, 1000), starts, starts[-1] + 33, 0, True)
    frames = (np.full((16, 16, 3), index % 256, np.uint8) for index in range(len(starts)))
    video_write.write_video(frames, str(tmp_path / "out.mp4"), fps=30, timing=timing, setting="X")
    written, _ = frame_times(tmp_path / "out.mp4")
    assert [round(value * 1000) for value in written] == list(starts)
    assert sorted(os.listdir(tmp_path)) == ["out.mp4", "temporary"]  # nothing partial left
    assert os.listdir(tmp_path / "temporary") == []


def test_a_late_video_takes_its_audio_from_its_first_frame(tmp_path):
    # A broadcast's cut: the sound starts 0.5 s before the first picture.
    ffmpeg(
        *("-f", "lavfi", "-i", "testsrc2=size=48x36:rate=10:duration=1", "-itsoffset", "0.5"),
        *("-f", "lavfi", "-i", "testsrc2=size=48x36:rate=10:duration=1"),
        *("-f", "lavfi", "-i", "sine=frequency=440:duration=1.5", "-map", "1:v", "-map", "2:a"),
        *("-c:v", "libx264", "-c:a", "aac", "-f", "mpegts", str(tmp_path / "late.ts")),
    )
    info = video_io.probe(str(tmp_path / "late.ts"), "STYLIZE_INPUT")
    assert info.timing.offset_seconds() == pytest.approx(0.5, abs=0.03)
    assert info.frames == 10  # the frames it has, not the longer sound's length at 10 fps
    stylised_copy(info, tmp_path / "out.mp4")
    assert audio_end(tmp_path / "out.mp4") == pytest.approx(1.0, abs=0.025)


def _framecrc(video: list[int], audio: list[int] | None = None) -> str:
    lines = ["#tb 0: 1/1000", *(f"0, {t}, {t}, 1, 424, 0x0" for t in video)]
    if audio is not None:
        lines += ["#tb 1: 1/44100", *(f"1, {t}, {t}, 1024, 2048, 0x0" for t in audio)]
    return "\n".join(lines) + "\n"


def test_times_that_do_not_rise_or_a_tick_of_rounding_are_not_a_variable_rate():
    assert video_timing.parse_timing(_framecrc([0, 40, 40, 80]), 25) is None
    assert video_timing.parse_timing("", 25) is None
    # 30 fps in milliseconds: 33 or 34 ticks apart, the stream's rounding of one rate.
    rounded = video_timing.parse_timing(_framecrc([0, 33, 67, 100, 133, 167]), 30)
    assert not rounded.variable and rounded.end == 201 and rounded.offset == 0
    late = video_timing.parse_timing(_framecrc([500, 540, 580], [0, 1024]), 25)
    assert (late.starts, late.offset, late.variable) == ((0, 40, 80), 500, False)
    early = video_timing.parse_timing(_framecrc([0, 40, 120], [22050]), 25)
    assert (early.offset, early.variable, early.end) == (0, True, 200)


def test_a_run_of_even_intervals_is_one_term():
    timing = video_timing.Timing(Fraction(1, 1000), (0, 40, 80, 120, 400, 420), 440, 0, True)
    assert video_timing.pts_expression(timing) == (
        "if(lt(N,3),N*40,if(lt(N,4),120+(N-3)*280,400+(N-4)*20))"
    )


# --- the two video paths, end to end ---------------------------------------------------------


@pytest.mark.slow
def test_stylize_keeps_a_variable_rate_clips_times_and_audio(network, tmp_path):
    from neural_style.feedforward.stylizing.run import stylize_input

    source = vfr_clip(tmp_path, size=(48, 64))
    settings = stylize_settings(network, source, tmp_path / "out", stylize_batch_size=4)
    (output,) = stylize_input(settings).outputs
    assert_same_times(output, source)
    assert audio_end(output) == pytest.approx(audio_end(source), abs=0.025)


@pytest.mark.slow
def test_train_keeps_a_variable_rate_clips_times_across_a_resume(tmp_path, tiny_mat, image_pair):
    from neural_style.gatys import run

    held = HELD[:6]
    source = vfr_clip(tmp_path, held)
    settings = tiny_settings(
        tmp_path,
        tiny_mat,
        image_pair,
        content_image=source,
        **{"train_steps": 3, "frame_steps": 2, "flow_preset": "ultrafast", "image_width": 48},
        **{"snapshot_every": 0, "temporal_weight": 50.0, **FEW_LAYERS},
    )
    observers = [*run.standard_observers(settings, io.StringIO(), video=True), stop_in_frame(4)]
    with pytest.raises(KeyboardInterrupt):
        run.stylize(settings, io.StringIO(), observers=observers)
    assert not os.path.exists(f"{settings.output_image}.mp4")
    stream = io.StringIO()
    run.stylize(settings.__class__(**{**settings.__dict__, "resume": True}), stream)
    assert "6 frames at" in stream.getvalue() and "from frame 4 (resumed)" in stream.getvalue()
    assert_same_times(f"{settings.output_image}.mp4", source)
    assert audio_end(f"{settings.output_image}.mp4") == pytest.approx(sum(held), abs=0.025)
