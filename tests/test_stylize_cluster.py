"""`python stylize.py --cluster=ray` on a folder, on a real two-node Ray cluster on
127.0.0.1 in namespaces of its own (tests/ray_cluster.py): the network is loaded once on
each worker, the driver reads the images and writes the results, which are those of a
run in this process, under the same names, with both nodes having stylised some.

Root only (the namespaces); the lost-worker test starts a cluster of its own, the others
share one.
"""

from __future__ import annotations

import os
import re
from types import SimpleNamespace

import numpy as np
import pytest

from tests.ray_cluster import pixels, run_all_on_cluster, run_here, run_on_cluster
from tests.support import pattern_clip, photo, streams, write_image

pytestmark = [pytest.mark.root, pytest.mark.slow]

IMAGES = 4
ON_NODE = re.compile(r"^\[(\d+)/(\d+)\] on node \S+ \((\w+)\), process \d+: (\S+)$", re.M)


CLIP_ARGS = ["--stylize_input=clip.mp4", "--stylize_batch_size=1", "--network_precision=float32"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, network):
    """Local runs of the folder and of a clip, then on one two-node cluster: the same two,
    and the folder again, interrupted (SIGINT to the driver) at its first result."""
    work = tmp_path_factory.mktemp("stylize-cluster")
    os.mkdir(work / "photos")
    for number in range(IMAGES):
        write_image(work / "photos" / f"p{number}.png", photo(40, 48, seed=number + 1))
    (work / "photos" / "broken.jpg").write_bytes(b"not an image")
    # 12 frames in batches of one: the frames go to both workers, come back in any order,
    # and must be written in the clip's order, with its audio, under a local run's name.
    pattern_clip(work / "clip.mp4", frames=12, rate=12, size="48x36", audio_seconds=1)
    clip = [f"--network_model={network}", *CLIP_ARGS]
    local = run_here(work, "stylize.py", *stylize_args(network, "here"))
    assert local.returncode == 0, local.stderr
    local_clip = run_here(work, "stylize.py", *clip, "--stylize_output=clip-here")
    assert local_clip.returncode == 0, local_clip.stderr
    commands = [
        stylize_args(network, "there"),
        [*clip, "--stylize_output=clip-there"],
        stylize_args(network, "stopped"),
    ]
    # The Ctrl-C comes once the driver has said its first result.
    folder, clip_run, stopped = run_all_on_cluster(
        work, commands, script="stylize.py", interrupt_at={2: r"^\[\d+/\d+\] on node "}
    )
    return SimpleNamespace(work=work, local=local, folder=folder, clip=clip_run, stopped=stopped)


def stylize_args(network: str, output: str) -> list[str]:
    return [
        f"--network_model={network}",
        "--stylize_input=photos",
        f"--stylize_output={output}",
        "--stylize_batch_size=1",  # each image a call of its own: both workers get some
        "--network_precision=float32",
    ]


def test_a_folder_on_two_nodes_gives_the_images_of_a_local_run(runs):
    work, local, cluster = runs.work, runs.local, runs.folder
    assert cluster.code == 0, cluster.err
    # The same names, the unreadable file skipped and said as a local run says it.
    names = sorted(os.listdir(work / "here"))
    assert names == [f"p{number}.png" for number in range(IMAGES)]
    assert sorted(os.listdir(work / "there")) == names
    skipped = [line for line in local.stdout.splitlines() if line.startswith("skipped ")]
    assert len(skipped) == 1 and "broken.jpg" in skipped[0], local.stdout
    assert skipped[0] + "\n" in cluster.out
    assert f"wrote {IMAGES} file(s) to there" in cluster.out
    for name in names:
        difference = np.abs(pixels(work / "there" / name) - pixels(work / "here" / name))
        assert difference.mean() < 0.5, name
    # Each image said once, with the node that ran it; both nodes ran some.
    placed = ON_NODE.findall(cluster.out)
    assert sorted(os.path.basename(path) for *_, path in placed) == names, cluster.out
    assert {total for _, total, _, _ in placed} == {str(IMAGES + 1)}
    nodes = {node for _, _, node, _ in placed}
    assert len(nodes) == 2, cluster.out
    assert cluster.second_node[:8] in nodes


def test_ctrl_c_keeps_every_finished_image_whole(runs):
    # The Ctrl-C came once the driver had said its first result: that one at least is
    # kept, and the run stops once the batches in hand are written.
    work, cluster = runs.work, runs.stopped
    kept = sorted(os.listdir(work / "stopped"))
    assert kept, cluster.out
    if cluster.code == 130:
        assert f"stopped: kept the {len(kept)} finished file(s) in stopped" in cluster.err
    else:  # the signal came after the run's end (its cluster closed): all written
        assert cluster.code == 0 and len(kept) == IMAGES, cluster.err
    # Each kept file is a whole result, said with its node, as a local run writes it.
    placed = sorted(os.path.basename(path) for *_, path in ON_NODE.findall(cluster.out))
    assert kept == placed, cluster.out
    for name in kept:
        difference = np.abs(pixels(work / "stopped" / name) - pixels(work / "here" / name))
        assert difference.mean() < 0.5, name


def clip_frames(path) -> np.ndarray:
    """Every frame of the clip at `path`, [N, H, W, 3] float32."""
    from neural_style.media import video_io

    info = video_io.probe(str(path), "STYLIZE_INPUT")
    with video_io.read_frames(info) as frames:
        return np.stack([np.asarray(frame, np.float32) for frame in frames])


def test_a_clip_on_two_nodes_gives_the_frames_of_a_local_run(runs):
    work, cluster = runs.work, runs.clip
    assert cluster.code == 0, cluster.err
    assert os.listdir(work / "clip-there") == os.listdir(work / "clip-here") == ["clip.mp4"]
    assert streams(work / "clip-there" / "clip.mp4") == ["Video", "Audio"]
    here = clip_frames(work / "clip-here" / "clip.mp4")
    there = clip_frames(work / "clip-there" / "clip.mp4")
    assert there.shape == here.shape and len(here) == 12
    for number, (mine, theirs) in enumerate(zip(here, there, strict=True), 1):
        assert np.abs(theirs - mine).mean() < 0.5, f"frame {number}"
    # Both nodes stylised frames, and every frame was counted once.
    tally = re.search(r"^frames stylised on the cluster: (.*)$", cluster.out, re.M)
    assert tally, cluster.out
    counts = dict(
        (node, int(count)) for count, node in re.findall(r"(\d+) on node \S+ \((\w+)\)", tally[1])
    )
    assert len(counts) == 2 and sum(counts.values()) == 12, tally[0]
    assert cluster.second_node[:8] in counts


def test_a_lost_worker_s_batch_goes_to_another_worker(tmp_path, network):
    # The second node is killed (its processes, by their PIDs) at the first image either
    # node makes. It holds a batch then, whatever the nodes' speeds: its first one, sent
    # at the start, if the head node made that image; else the next one, which the driver
    # hands it as soon as it has said the image, with 14 more to go. That batch goes to the
    # head node's worker; every image is written once, and is what a local run makes. (A
    # kill at the second node's own first image came after the head node had made all
    # the others, on a machine where the second node's worker was slow to start.)
    os.mkdir(tmp_path / "photos")
    for number in range(16):
        write_image(tmp_path / "photos" / f"p{number:02d}.png", photo(40, 48, seed=number + 1))
    cluster = run_on_cluster(
        tmp_path,
        stylize_args(network, "there"),
        script="stylize.py",
        kill_node_at=r"^\[\d+/\d+\] on node ",
        kill_on_any_node=True,
    )
    assert cluster.code == 0, cluster.err
    assert cluster.killed, cluster.out
    names = [f"p{number:02d}.png" for number in range(16)]
    assert sorted(os.listdir(tmp_path / "there")) == names
    assert "note: a worker was lost (" in cluster.out, cluster.out
    # Each image said once: none made twice, none written twice.
    placed = ON_NODE.findall(cluster.out)
    assert sorted(os.path.basename(path) for *_, path in placed) == names, cluster.out
    # After the kill, only the head node made images.
    after = cluster.out.split(cluster.killed["line"], 1)[1]
    assert {node for _, _, node, _ in ON_NODE.findall(after)} <= {
        node for _, _, node, _ in placed if not cluster.second_node.startswith(node)
    }
    local = run_here(tmp_path, "stylize.py", *stylize_args(network, "here"))
    assert local.returncode == 0, local.stderr
    for name in names:
        difference = np.abs(pixels(tmp_path / "there" / name) - pixels(tmp_path / "here" / name))
        assert difference.mean() < 0.5, name
