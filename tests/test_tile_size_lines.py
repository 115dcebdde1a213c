"""When TILE_SIZE is what cuts an image into tiles, the line that says what follows names
TILE_SIZE, never the memory or IMAGE_WIDTH: a video's frames (stepped whole) and a batch
(whose photos in tiles go one at a time)."""

from __future__ import annotations

import io

import pytest

from neural_style.errors import UserError
from neural_style.gatys import plan, run
from tests.support import FEW_LAYERS, pattern_clip, tiny_settings


def memory_of(settings, *, on_gpu: bool) -> plan.Memory:
    content = tuple(name for name, _ in settings.content_loss_layers)
    style = tuple(name for name, _ in settings.style_loss_layers)
    layers = tuple(sorted(set(content + style)))
    return plan.Memory(settings, "float32", on_gpu, layers, content)


@pytest.mark.parametrize("on_gpu", [False, True])
def test_photos_that_tile_size_cuts_go_alone_and_the_note_says_why(
    tmp_path, tiny_mat, image_pair, on_gpu
):
    settings = tiny_settings(
        tmp_path, tiny_mat, image_pair, batch_size=4, tile_size=64, **FEW_LAYERS
    )
    notes: list[str] = []
    limit_of = plan.batch_limits(settings, memory_of(settings, on_gpu=on_gpu), notes)
    assert limit_of((((200, 240),), None)) == 1
    assert limit_of((((48, 60),), None)) == 4  # smaller than a tile: whole, together
    assert notes == [
        "note: TILE_SIZE 64 cuts 240x200 photos into tiles, and photos in tiles are stylised "
        "one at a time, not BATCH_SIZE 4 together; TILE_SIZE 0 (--tile_size=0) tiles only "
        "what memory needs"
    ]


def test_tile_size_on_a_video_is_named_as_the_cause(tmp_path, tiny_mat, image_pair):
    """Before, this said that the frames do not fit in memory and to lower IMAGE_WIDTH."""
    clip = pattern_clip(tmp_path / "clip.mp4", frames=2, size="160x120", audio_seconds=None)
    settings = tiny_settings(
        tmp_path,
        tiny_mat,
        image_pair,
        content_image=clip,
        image_width=160,
        tile_size=64,
        train_steps=1,
        frame_steps=1,
        **FEW_LAYERS,
    )
    with pytest.raises(UserError) as caught:
        run.stylize(settings, io.StringIO())
    message = str(caught.value)
    assert message.startswith(
        "TILE_SIZE (--tile_size) 64 would cut these 160x120 video frames into tiles"
    )
    assert "set TILE_SIZE 0 (--tile_size=0)" in message
    assert "IMAGE_WIDTH" not in message and "memory" not in message
    written = tmp_path / "out"
    assert not written.exists() or not list(written.iterdir())  # refused before any write
