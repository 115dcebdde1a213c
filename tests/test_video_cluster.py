"""`python train.py --cluster=ray` on a folder of clips, on a real two-node Ray cluster on
127.0.0.1 in namespaces of its own (tests/ray_cluster.py): a clip to a task, one on each
node; the driver writes every frame and clip, as a local run does; and a node killed in
the middle of a clip costs that clip only the frame it was on, which goes on elsewhere from
the frames already written.

Root only (the namespaces).
"""

from __future__ import annotations

import os
import re

import numpy as np
import pytest

from tests.ray_cluster import ON_NODE, pixels, run_here, run_on_cluster
from tests.support import FEW_LAYER_FLAGS, streams, write_image
from tests.test_cluster import stripes
from tests.test_video import make_clip

pytestmark = [pytest.mark.root, pytest.mark.slow]

FRAMES = 3


@pytest.fixture
def work(tmp_path):
    os.mkdir(tmp_path / "clips")
    make_clip(tmp_path / "clips" / "a.mp4", frames=FRAMES)
    make_clip(tmp_path / "clips" / "b.mp4", frames=FRAMES, audio=False)
    write_image(tmp_path / "style.jpg", stripes())
    return tmp_path


def train_args(tiny_mat: str, output: str) -> list[str]:
    return [
        f"--vgg_model_path={tiny_mat}",
        "--content_image=clips",
        "--style_image=style.jpg",
        f"--output_image={output}",
        "--image_width=48",
        "--precision=float32",
        "--train_steps=4",
        "--frame_steps=2",
        "--flow_preset=ultrafast",
        "--print_every=1",
        "--seed=3",
        *FEW_LAYER_FLAGS,
    ]


def test_a_lost_node_costs_a_clip_only_the_frame_it_was_on(work, tiny_mat):
    local = run_here(work, "train.py", *train_args(tiny_mat, "here/r"))
    assert local.returncode == 0, local.stderr[-3000:]
    # The second node is killed at the first step of the second frame of its clip: its
    # first frame is written by then (a frame's PNG is on the driver before the next starts).
    cluster = run_on_cluster(
        work, train_args(tiny_mat, "there/r"), kill_node_at=r"^\[\d/2\] step 1/2 "
    )
    assert cluster.code == 0, cluster.err[-3000:]
    out = cluster.out
    assert "stylised 2 of 2 clips" in out, out

    # A clip to a task, one on each node at first.
    first_nodes: dict[str, str] = {}
    for match in filter(None, (ON_NODE.match(line) for line in cluster.lines)):
        first_nodes.setdefault(match.group(1), match.group(2))
    assert cluster.second_node[:8] in first_nodes.values(), out
    assert len(set(first_nodes.values())) == 2, out
    killed = cluster.killed
    assert killed, out
    lost = f"clips/{'ab'[killed['photo'] - 1]}.mp4"
    assert re.search(rf"^\[{killed['photo']}/2\]: its worker was lost", out, re.M), out
    # It went on from its first frame without a PNG: frame 2, or 3 if frame 2 was written
    # before the kill took effect (its first frame was written before the kill, and not again).
    resumed = re.search(
        rf"^video {lost}: {FRAMES} frames at 10 fps, stylised at 48x36, "
        r"from frame (\d) \(resumed\)$",
        out,
        re.M,
    )
    assert resumed and int(resumed.group(1)) >= 2, out
    first = work / "there" / f"r-{lost[6]}-frames" / "frame-00001.png"
    assert os.stat(first).st_mtime < killed["time"]

    # Every frame is the local run's, and so is every file the driver wrote.
    for clip in "ab":
        here, there = work / "here" / f"r-{clip}-frames", work / "there" / f"r-{clip}-frames"
        assert sorted(os.listdir(there)) == [f"frame-{n:05d}.png" for n in range(1, FRAMES + 1)]
        for png in os.listdir(here):
            difference = np.abs(pixels(here / png) - pixels(there / png)).mean()
            assert difference < 0.5, (clip, png, difference)
    assert sorted(os.listdir(work / "there")) == sorted(os.listdir(work / "here"))
    assert streams(work / "there" / "r-a.mp4") == ["Video", "Audio"]
    assert streams(work / "there" / "r-b.mp4") == ["Video"]
