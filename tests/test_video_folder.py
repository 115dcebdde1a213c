"""A folder of clips through `train.py`: each clip stylised as it would be alone, under
`<OUTPUT_IMAGE>-<clip>`, one after another; a clip that cannot be read fails alone; a stop
keeps every finished clip and frame, and --resume redoes none of them."""

from __future__ import annotations

import dataclasses
import io
import os

import pytest

from neural_style import stopping
from neural_style.errors import UserError
from neural_style.gatys import run
from neural_style.gatys.events import Observer
from neural_style.gatys.outputs import OutputNames
from tests.support import streams
from tests.test_video import make_clip, read_bytes, video_settings

pytestmark = pytest.mark.slow


@pytest.fixture
def clips(tmp_path):
    folder = tmp_path / "clips"
    folder.mkdir()
    make_clip(folder / "a.mp4", frames=3)
    make_clip(folder / "b.mp4", frames=2, size="40x30", audio=False)
    return folder


def frames_of(prefix: str) -> list[bytes]:
    folder = OutputNames(prefix).frames
    return [read_bytes(os.path.join(folder, name)) for name in sorted(os.listdir(folder))]


def test_each_clip_of_a_folder_is_stylised_as_it_would_be_alone(
    tmp_path, tiny_mat, image_pair, clips
):
    (clips / "notes.txt").write_text("not a clip")
    (clips / "broken.mp4").write_bytes(b"")
    settings = video_settings(tmp_path, tiny_mat, image_pair, str(clips))
    stream = io.StringIO()
    result = run.stylize(settings, stream)
    out = settings.output_image
    assert [r.output_path for r in result.results] == [f"{out}-a.mp4", f"{out}-b.mp4"]
    assert [r.steps for r in result.results] == [3, 2]  # frames stylised
    assert [path for path, _ in result.failures] == [str(clips / "broken.mp4")]
    printed = stream.getvalue()
    assert "stylised 2 of 3 clips" in printed
    assert f"failed: {clips / 'broken.mp4'}: " in printed and "0 bytes" in printed
    assert streams(f"{out}-a.mp4") == ["Video", "Audio"] and streams(f"{out}-b.mp4") == ["Video"]
    for name in ("a", "b"):
        for made in (OutputNames.RECORD, OutputNames.LOSSES, OutputNames.VIDEO_REPORT):
            assert os.path.isfile(f"{out}-{name}{made}"), (name, made)
    assert sorted(os.listdir(clips)) == ["a.mp4", "b.mp4", "broken.mp4", "notes.txt"]

    # The frames are those of each clip stylised on its own.
    for name in ("a", "b"):
        alone = dataclasses.replace(
            settings,
            content_image=str(clips / f"{name}.mp4"),
            output_image=str(tmp_path / "alone" / name),
        )
        run.stylize(alone, io.StringIO())
        assert frames_of(alone.output_image) == frames_of(f"{out}-{name}"), name


class StopInClip(Observer):
    """Asks for a stop, as a Ctrl-C would, at the first step of frame 2 of `clip`."""

    def __init__(self, clip: str):
        self.clip = clip

    def step(self, event) -> None:
        photo = event.group.jobs[0].photo
        if photo.path.startswith(self.clip) and photo.number == 2 and event.step == 1:
            stopping.request()


def test_a_stop_in_the_second_clip_keeps_the_first_and_resume_redoes_nothing(
    tmp_path, tiny_mat, image_pair, clips
):
    settings = video_settings(tmp_path, tiny_mat, image_pair, str(clips))
    out = settings.output_image
    observers = [*run.standard_observers(settings, io.StringIO(), video=True)]
    with pytest.raises(KeyboardInterrupt):
        run.stylize(settings, io.StringIO(), observers=[*observers, StopInClip(str(clips / "b"))])
    assert streams(f"{out}-a.mp4") == ["Video", "Audio"]
    assert not os.path.exists(f"{out}-b.mp4")
    assert sorted(os.listdir(f"{out}-b-frames")) == ["frame-00001.png"]
    finished = [OutputNames(f"{out}-a").frame(index) for index in range(3)]
    finished.append(OutputNames(f"{out}-b").frame(0))
    written = {path: os.stat(path).st_mtime_ns for path in finished}

    stream = io.StringIO()
    run.stylize(dataclasses.replace(settings, resume=True), stream)
    printed = stream.getvalue()
    assert "stylised 2 of 2 clips" in printed
    assert "from frame 2 (resumed)" in printed
    assert {path: os.stat(path).st_mtime_ns for path in finished} == written  # none redone
    assert len(frames_of(f"{out}-b")) == 2
    assert streams(f"{out}-b.mp4") == ["Video"]


def test_a_folder_of_clips_refuses_what_a_video_cannot_take_in_one_line(
    tmp_path, tiny_mat, image_pair, clips
):
    settings = video_settings(tmp_path, tiny_mat, image_pair, str(clips), coarse_to_fine=(32, 48))
    with pytest.raises(UserError) as refused:
        run.stylize(settings, io.StringIO())
    assert "COARSE_TO_FINE" in str(refused.value) and "\n" not in str(refused.value)
    assert not os.path.exists(tmp_path / "out") or os.listdir(tmp_path / "out") == []
