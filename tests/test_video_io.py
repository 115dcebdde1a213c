"""Reading and writing video files (neural_style.video_io) on tiny clips made here with the
ffmpeg that imageio-ffmpeg ships: what a probe finds, every frame in order (odd sizes,
variable frame rates, a frame limit), the input's audio kept and cut to the frames, PNG
frames in, broken inputs in one line, and write failures on real read-only and full file
systems and a real stop signal, never leaving a half file or losing an earlier one."""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest

from neural_style.errors import UserError
from neural_style.media import video_io, video_write
from tests.support import (
    REPO_ROOT,
    ffmpeg,
    header,
    pattern_clip,
    photo,
    remount,
    streams,
    tmpfs,
    write_image,
)

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()


# --- clips made with ffmpeg ----------------------------------------------------------------


def colours(count: int, height: int = 36, width: int = 48) -> list[np.ndarray]:
    """`count` uint8 frames, each one flat colour of its own, so that order and channels show."""
    return [
        np.broadcast_to(
            np.array([20 + 20 * index, 235 - 20 * index, 60 + 10 * index], np.uint8),
            (height, width, 3),
        ).copy()
        for index in range(count)
    ]


def clip_of(path, frames: list[np.ndarray], fps: float = 10, *options: str) -> str:
    """The RGB `frames` as H.264 4:4:4 (odd sides allowed), with extra ffmpeg `options`."""
    height, width = frames[0].shape[:2]
    raw = b"".join(frame.tobytes() for frame in frames)
    ffmpeg(
        *("-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-r", str(fps)),
        *("-i", "-", *options, "-c:v", "libx264", "-qp", "0", "-pix_fmt", "yuv444p"),
        *("-movflags", "+faststart", str(path)),
        stdin=raw,
    )
    return str(path)


def duration(path) -> float:
    hours, minutes, seconds = re.search(r"Duration: (\d+):(\d+):([\d.]+)", header(path)).groups()
    return 3600 * int(hours) + 60 * int(minutes) + float(seconds)


def frames_of(path) -> list[np.ndarray]:
    with video_io.read_frames(video_io.probe(str(path), "X")) as reader:
        return list(reader)


def snapshot(folder) -> dict[str, bytes]:
    """Every file below `folder` (hidden ones too) by relative path."""
    folder = Path(folder)
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def mean_colours(frames) -> np.ndarray:
    return np.array([frame.reshape(-1, 3).mean(axis=0) for frame in frames])


# --- probing and reading ---------------------------------------------------------------------


def test_probe_gives_rate_size_frame_count_audio_and_duration(tmp_path):
    with_audio = pattern_clip(tmp_path / "a.mp4", frames=10, audio_seconds=1)
    info = video_io.probe(with_audio, "CONTENT_IMAGE")
    assert (info.path, info.fps, info.size, info.frames, info.has_audio) == (
        with_audio,
        10.0,
        (36, 48),
        10,
        True,
    )
    assert info.duration == pytest.approx(1.0, abs=0.05)
    silent = pattern_clip(tmp_path / "b.mp4", frames=12, rate=25)
    info = video_io.probe(silent, "CONTENT_IMAGE")
    assert (info.fps, info.size, info.frames, info.has_audio) == (25.0, (36, 48), 12, False)
    odd = clip_of(tmp_path / "odd.mp4", colours(9, 35, 47))
    assert video_io.probe(odd, "CONTENT_IMAGE").size == (35, 47)


def test_every_frame_is_read_in_order_as_float_rgb_at_an_odd_size(tmp_path):
    made = colours(9, height=35, width=47)
    source = clip_of(tmp_path / "odd.mp4", made)
    info = video_io.probe(source, "CONTENT_IMAGE")
    with video_io.read_frames(info) as reader:
        frames = list(reader)
    assert len(frames) == reader.decoded == 9 and reader.warning() is None
    assert all(frame.shape == (35, 47, 3) and frame.dtype == np.float32 for frame in frames)
    np.testing.assert_allclose(mean_colours(frames), mean_colours(made), atol=2)


def test_max_frames_stops_early_without_a_warning(tmp_path):
    info = video_io.probe(pattern_clip(tmp_path / "a.mp4", frames=10), "CONTENT_IMAGE")
    reader = video_io.read_frames(info, max_frames=4)
    assert len(list(reader)) == reader.decoded == 4 and reader.warning() is None
    assert list(reader) == []  # one pass, ended
    longer = video_io.read_frames(info, max_frames=50)
    assert len(list(longer)) == 10 and longer.warning() is None
    # Stopping early by hand ends ffmpeg too: the reader can be abandoned mid-clip.
    with video_io.read_frames(info) as partway:
        assert next(partway).shape == (36, 48, 3)
    assert list(partway) == []


def test_a_variable_frame_rate_clip_gives_each_stored_frame_once_in_order(tmp_path):
    made = colours(10)
    # Five frames 0.1 s apart, then five 0.02 s apart.
    timing = "settb=1/1000,setpts='if(lt(N,5),N*0.1,0.5+(N-5)*0.02)/TB'"
    source = clip_of(
        tmp_path / "vfr.mp4",
        made,
        10,
        "-vf",
        timing,
        "-fps_mode",
        "vfr",
        "-enc_time_base",
        "1/1000",
    )
    shown = subprocess.run(
        [FFMPEG, "-hide_banner", "-i", source, "-vf", "showinfo", "-f", "null", "-"],
        capture_output=True,
        text=True,
        timeout=60,
    ).stderr
    times = [float(value) for value in re.findall(r"pts_time:([\d.]+)", shown)]
    assert sorted({round(b - a, 2) for a, b in itertools.pairwise(times)}) == [0.02, 0.1]
    info = video_io.probe(source, "CONTENT_IMAGE")
    frames = frames_of(source)
    # Neither repeated to a constant rate (ffmpeg's default for raw output) nor dropped.
    assert len(frames) == 10
    np.testing.assert_allclose(mean_colours(frames), mean_colours(made), atol=2)
    assert info.frames is not None and abs(info.frames - 10) <= 2  # from the average rate


def test_a_rotated_clip_is_read_upright_without_a_warning(tmp_path, caplog):
    # A phone held upright stores 48x36 frames and a display rotation of 90 degrees.
    stored = pattern_clip(tmp_path / "stored.mp4", frames=5)
    source = str(tmp_path / "upright.mp4")
    ffmpeg("-display_rotation", "90", "-i", stored, "-c", "copy", source)
    assert "rotation of 90" in header(source)
    info = video_io.probe(source, "STYLIZE_INPUT")
    assert info.size == (48, 36)
    frames = frames_of(source)
    assert len(frames) == 5 and frames[0].shape == (48, 36, 3)
    # The stored picture turned a quarter (anticlockwise, as the display matrix says).
    stored_first = frames_of(stored)[0]
    assert np.abs(np.rot90(stored_first, k=1) - frames[0]).mean() < 3
    assert not [record for record in caplog.records if record.name.startswith("imageio")]


def test_a_truncated_clip_gives_its_frames_and_a_warning(tmp_path):
    whole = clip_of(
        tmp_path / "whole.mp4", [photo(48, 64, seed=i).astype(np.uint8) for i in range(24)]
    )
    source = tmp_path / "cut.mp4"
    source.write_bytes(Path(whole).read_bytes()[: os.path.getsize(whole) // 2])
    original = source.read_bytes()
    info = video_io.probe(str(source), "CONTENT_IMAGE")
    assert info.frames == 24
    reader = video_io.read_frames(info)
    decoded = len(list(reader))
    assert 0 < decoded < 24
    warning = reader.warning()
    assert warning.startswith(f"warning: {source}: only {decoded} of the 24 frames its header")
    assert "\n" not in warning and source.read_bytes() == original


def _no_frames(path: Path) -> None:
    """A clip whose header is whole and whose frame data is gone (cut at its mdat box)."""
    data = Path(pattern_clip(path.with_name("whole.mp4"), frames=10)).read_bytes()
    offset = 0
    while data[offset + 4 : offset + 8] != b"mdat":
        offset += int.from_bytes(data[offset : offset + 4], "big")
    path.write_bytes(data[: offset + 8])


def _cover_art_only(path: Path) -> None:
    """Audio with a cover picture: a video stream ffmpeg lists, which is not a video."""
    cover = path.with_name("cover.png")
    write_image(cover, photo(36, 48))
    ffmpeg(
        *("-f", "lavfi", "-i", "sine=duration=1", "-i", str(cover), "-map", "0", "-map", "1"),
        *("-c:a", "aac", "-c:v", "png", "-disposition:v", "attached_pic", "-f", "mp4", str(path)),
    )


BAD_INPUTS = {
    "missing": (lambda path: None, "no such file"),
    "folder": (lambda path: path.mkdir(), "is a folder, not a video file"),
    "empty": (lambda path: path.write_bytes(b""), "cannot read the video (the file is empty"),
    "text": (
        lambda path: path.write_text("my holiday notes, not a video\n" * 50),
        "cannot read the video (moov atom not found; Invalid data found",
    ),
    "audio_only": (
        lambda path: ffmpeg("-f", "lavfi", "-i", "sine=duration=1", "-f", "mp4", str(path)),
        "cannot read the video (it has no video stream, only audio)",
    ),
    "cover_art_only": (_cover_art_only, "cannot read the video (it has no video stream, only"),
    "no_frames": (_no_frames, "the video has no frames that could be decoded"),
    "pipe": (lambda path: os.mkfifo(path), "not a regular file (a pipe or a device)"),
}


@pytest.mark.parametrize("kind", list(BAD_INPUTS))
def test_a_bad_input_is_one_short_line_naming_it_and_its_setting(tmp_path, kind):
    make, problem = BAD_INPUTS[kind]
    source = tmp_path / "clip.mp4"
    make(source)
    before = {name: (tmp_path / name).stat().st_mtime_ns for name in os.listdir(tmp_path)}
    contents = snapshot(tmp_path)
    with pytest.raises(UserError) as raised:
        video_io.probe(str(source), "CONTENT_IMAGE")
    message = str(raised.value)
    assert message.startswith(f"{source}: {problem}"), message
    assert message.endswith("set CONTENT_IMAGE in settings.py or pass --content_image=PATH")
    assert "\n" not in message and len(message) - len(str(source)) < 200, message
    assert "configuration:" not in message and "ffmpeg version" not in message
    assert snapshot(tmp_path) == contents
    assert {name: (tmp_path / name).stat().st_mtime_ns for name in os.listdir(tmp_path)} == before


# --- writing -------------------------------------------------------------------------------


def test_the_inputs_audio_is_kept_and_cut_to_the_frames(tmp_path):
    source = pattern_clip(tmp_path / "in.mp4", frames=12, audio_seconds=3)
    info = video_io.probe(source, "STYLIZE_INPUT")
    target = tmp_path / "out" / "result.mp4"
    with video_io.read_frames(info) as reader:
        written = video_write.write_video(
            (255 - frame for frame in reader),
            str(target),
            fps=info.fps,
            audio_from=source,
            setting="STYLIZE_OUTPUT",
        )
    assert duration(source) == pytest.approx(3.0, abs=0.05)  # the tone outlasts the frames
    assert written == video_write.WrittenVideo(str(target), 12, True, None)
    assert streams(target) == ["Video", "Audio"]
    assert duration(target) == pytest.approx(1.2, abs=0.05)  # the frames', not the tone's 3 s
    assert len(frames_of(target)) == 12
    assert os.listdir(target.parent) == ["result.mp4"]  # no partial file left


def test_a_shorter_audio_track_never_cuts_the_frames(tmp_path):
    source = pattern_clip(tmp_path / "in.mp4", frames=12, audio_seconds=0.5)
    info = video_io.probe(source, "STYLIZE_INPUT")
    target = str(tmp_path / "out.mp4")
    written = video_write.write_video(
        frames_of(source), target, fps=info.fps, audio_from=info, setting="STYLIZE_OUTPUT"
    )
    assert written.frames == 12 and written.audio
    assert streams(target) == ["Video", "Audio"]
    assert len(frames_of(target)) == 12
    assert duration(target) == pytest.approx(1.2, abs=0.05)


@pytest.mark.slow
def test_a_clip_without_audio_is_written_without_an_audio_stream(tmp_path):
    source = pattern_clip(tmp_path / "silent.mp4", frames=8)
    made = colours(8)
    for audio_from in (source, video_io.probe(source, "X"), None):
        target = tmp_path / "out.mp4"
        floats = [frame.astype(np.float32) + 0.3 for frame in made]  # rounded to 8 bits
        written = video_write.write_video(
            floats, str(target), fps=12.5, audio_from=audio_from, setting="OUTPUT_IMAGE"
        )
        assert written == video_write.WrittenVideo(str(target), 8, False, None)
        assert streams(target) == ["Video"]
        info = video_io.probe(str(target), "X")
        assert (info.fps, info.size, info.frames, info.has_audio) == (12.5, (36, 48), 8, False)
        np.testing.assert_allclose(mean_colours(frames_of(target)), mean_colours(made), atol=3)
    assert sorted(os.listdir(tmp_path)) == ["out.mp4", "silent.mp4"]


def test_frames_of_an_odd_size_gain_one_edge_pixel(tmp_path):
    # Grey, so that what is compared is H.264's full-resolution brightness, not its
    # half-resolution colour.
    y, x = np.mgrid[0:35, 0:47].astype(np.float32)
    gradient = np.repeat((x * 4 + y * 2)[..., None], 3, axis=-1)
    target = str(tmp_path / "odd.mp4")
    video_write.write_video([gradient] * 3, target, fps=10, setting="OUTPUT_IMAGE")
    frames = frames_of(target)
    assert len(frames) == 3 and frames[0].shape == (36, 48, 3)
    np.testing.assert_allclose(frames[0][:35, :47], gradient, atol=4)
    np.testing.assert_allclose(frames[0][:, 47], frames[0][:, 46], atol=4)  # the copied column
    np.testing.assert_allclose(frames[0][35], frames[0][34], atol=4)  # the copied row


def test_png_frames_are_written_with_the_audio(tmp_path):
    made = colours(6)
    pngs = [write_image(tmp_path / f"frame-{i + 1:05d}.png", frame) for i, frame in enumerate(made)]
    audio = pattern_clip(tmp_path / "in.mp4", frames=6, audio_seconds=1)
    target = tmp_path / "out" / "video.mp4"
    written = video_write.write_video_from_pngs(
        pngs, str(target), fps=10, audio_from=audio, setting="OUTPUT_IMAGE"
    )
    assert written == video_write.WrittenVideo(str(target), 6, True, None)
    assert streams(target) == ["Video", "Audio"]
    assert duration(target) == pytest.approx(0.6, abs=0.05)
    np.testing.assert_allclose(mean_colours(frames_of(target)), mean_colours(made), atol=3)
    # A frame gone is said before anything is encoded.
    os.remove(pngs[3])
    earlier = snapshot(tmp_path / "out")
    with pytest.raises(UserError, match=r"frame-00004.png: no such frame \(1 of the 6 frames"):
        video_write.write_video_from_pngs(pngs, str(target), fps=10, setting="OUTPUT_IMAGE")
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(UserError, match=r"bad.png: cannot read this frame \("):
        video_write.write_video_from_pngs(
            [pngs[0], tmp_path / "bad.png"], str(target), fps=10, setting="OUTPUT_IMAGE"
        )
    assert snapshot(tmp_path / "out") == earlier


def test_audio_lost_after_the_frames_leaves_the_video_and_a_warning(tmp_path):
    # The input goes away while its frames are being made: the frames are kept.
    source = tmp_path / "in.mp4"
    info = video_io.probe(pattern_clip(source, frames=6, audio_seconds=1), "X")

    def frames():
        yield from frames_of(source)
        source.unlink()

    target = str(tmp_path / "out.mp4")
    written = video_write.write_video(frames(), target, fps=10, audio_from=info, setting="X")
    assert written.frames == 6 and not written.audio
    assert written.warning.startswith(f"warning: {target}: written without the audio of {source}")
    assert "\n" not in written.warning
    assert streams(target) == ["Video"] and len(frames_of(target)) == 6
    assert os.listdir(tmp_path) == ["out.mp4"]


def test_an_unreadable_audio_source_or_a_folder_at_the_path_is_said_first(tmp_path):
    (tmp_path / "notes.mp4").write_text("not a video")
    (tmp_path / "taken.mp4").mkdir()
    made = colours(2)
    with pytest.raises(UserError, match=r"notes.mp4: cannot read its audio \(.*; check the file"):
        video_write.write_video(
            made,
            str(tmp_path / "out.mp4"),
            fps=10,
            audio_from=str(tmp_path / "notes.mp4"),
            setting="OUTPUT_IMAGE",
        )
    with pytest.raises(UserError, match=r"taken.mp4: cannot write the file: a folder stands"):
        video_write.write_video(made, str(tmp_path / "taken.mp4"), fps=10, setting="OUTPUT_IMAGE")
    assert sorted(os.listdir(tmp_path)) == ["notes.mp4", "taken.mp4"]
    assert os.listdir(tmp_path / "taken.mp4") == []


def test_an_error_while_making_the_frames_leaves_no_partial_file(tmp_path):
    (tmp_path / "out.mp4").write_bytes(b"an earlier video")

    def frames():
        yield from colours(3)
        raise UserError("the network gave up")

    with pytest.raises(UserError, match="the network gave up"):
        video_write.write_video(frames(), str(tmp_path / "out.mp4"), fps=10, setting="X")
    assert snapshot(tmp_path) == {"out.mp4": b"an earlier video"}


def noise(count: int, seed: int = 0) -> list[np.ndarray]:
    """Frames H.264 cannot compress much: a disk fills up quickly."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (96, 128, 3), dtype=np.uint8) for _ in range(count)]


@pytest.mark.root
def test_a_read_only_or_full_disk_is_one_line_and_keeps_the_earlier_file(tmp_path):
    audio = pattern_clip(tmp_path / "in.mp4", frames=4, audio_seconds=1)
    inputs = snapshot(tmp_path)
    with tmpfs(tmp_path / "disk", size="256k") as disk:
        (disk / "out.mp4").write_bytes(b"an earlier video")
        earlier = snapshot(disk)
        target = str(disk / "out.mp4")
        remount(disk, read_only=True)
        with pytest.raises(UserError) as raised:
            video_write.write_video(
                colours(3), target, fps=10, audio_from=audio, setting="OUTPUT_IMAGE"
            )
        message = str(raised.value)
        assert message.startswith(f"{target}: cannot write the file: the file system is read-only")
        assert "set OUTPUT_IMAGE in settings.py" in message and "\n" not in message
        assert snapshot(disk) == earlier
        remount(disk, read_only=False)
        # 40 frames of noise are some megabytes: the disk fills part of the way through.
        for audio_from in (None, audio):
            with pytest.raises(UserError) as raised:
                video_write.write_video(
                    noise(40), target, fps=10, audio_from=audio_from, setting="OUTPUT_IMAGE"
                )
            message = str(raised.value)
            assert message.startswith(f"{target}: cannot write the file: the disk is full")
            assert "set OUTPUT_IMAGE in settings.py" in message and "\n" not in message
            assert snapshot(disk) == earlier  # no partial file, the earlier video as it was
    assert snapshot(tmp_path) == inputs


@pytest.mark.root
def test_a_disk_without_room_for_the_audio_copy_keeps_the_video_alone(tmp_path):
    audio = pattern_clip(tmp_path / "in.mp4", frames=4, audio_seconds=1)
    frames = noise(6, seed=1)
    video_write.write_video(frames, str(tmp_path / "measure.mp4"), fps=10, setting="X")
    size = os.path.getsize(tmp_path / "measure.mp4")
    # Room for the video once and a half: it fits, a second copy with audio does not.
    with tmpfs(tmp_path / "disk", size=f"{size * 3 // 2 // 1024 + 8}k") as disk:
        target = str(disk / "out.mp4")
        written = video_write.write_video(frames, target, fps=10, audio_from=audio, setting="X")
        assert written.frames == 6 and not written.audio
        assert written.warning == (
            f"warning: {target}: written without the audio of {audio} (the disk is full (no "
            "space left), with no room for a copy with audio)"
        )
        assert os.listdir(disk) == ["out.mp4"] and streams(target) == ["Video"]
        assert len(frames_of(target)) == 6


_SLOW_WRITER = """
import sys, time
import numpy as np
from neural_style import stopping
from neural_style.media import video_io, video_write

stopping.install()

def frames():
    for index in range(10_000):
        time.sleep(0.01)
        yield np.full((36, 48, 3), index % 256, np.uint8)

try:
    video_write.write_video(frames(), sys.argv[1], fps=10, audio_from=sys.argv[2], setting="X")
except stopping.Stopped as stop:
    sys.exit(stop.exit_code)
"""


def _processes_using(folder) -> list[str]:
    """The command lines of running processes that name `folder`."""
    found = []
    for entry in os.listdir("/proc"):
        with contextlib.suppress(OSError):
            command = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            if entry.isdigit() and str(folder) in command:
                found.append(command)
    return found


def test_a_stop_signal_removes_the_partial_file_and_ends_ffmpeg(tmp_path):
    audio = pattern_clip(tmp_path / "in.mp4", frames=4, audio_seconds=1)
    out = tmp_path / "out"
    out.mkdir()
    (out / "video.mp4").write_bytes(b"an earlier video")
    process = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(_SLOW_WRITER), str(out / "video.mp4"), audio],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    partial = out / ".video.mp4.partial.mp4"
    while not (partial.exists() and partial.stat().st_size > 0):
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.01)
    process.send_signal(signal.SIGTERM)
    _, errors = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGTERM, errors
    assert "Traceback" not in errors
    assert snapshot(out) == {"video.mp4": b"an earlier video"}
    assert _processes_using(out) == []  # ffmpeg, in its own process group, was ended too
