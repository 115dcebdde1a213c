"""`python train.py --cluster=ray` on a folder, on a real two-node Ray cluster on
127.0.0.1 in namespaces of its own (tests/ray_cluster.py): the same images as a run in
this process, and a node killed mid-run costs each of its photos at most the steps since
its last checkpoint, with nothing written twice and nothing skipped.

Root only (the namespaces); the kill test starts a cluster of its own, the others share
one, about a minute each on 2 cores.
"""

from __future__ import annotations

import csv
import os
import re
from types import SimpleNamespace

import numpy as np
import pytest

from tests.ray_cluster import pixels, run_all_on_cluster, run_here, run_on_cluster
from tests.support import FEW_LAYER_FLAGS, photo, write_image

pytestmark = [pytest.mark.root, pytest.mark.slow]

PHOTOS = 6
STEPS = 12
EVERY = 4  # SNAPSHOT_EVERY
RESUMING = re.compile(r"^resuming from (\S+)-checkpoint\.npz at step (\d+)$", re.M)


def stripes() -> np.ndarray:
    image = np.zeros((48, 48, 3), np.float32)
    image[:, ::4] = (250, 60, 20)
    image[::6, :] = (20, 80, 240)
    return image


def make_work(folder):
    os.mkdir(folder / "photos")
    for number in range(PHOTOS):
        write_image(folder / "photos" / f"p{number}.jpg", photo(40, 48, seed=number + 1))
    write_image(folder / "style.jpg", stripes())
    return folder


@pytest.fixture
def work(tmp_path):
    return make_work(tmp_path)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_mat):
    """A local run, then on one two-node cluster: the same run, and a run of photos that
    only a stop ends, interrupted (SIGINT to the driver) at a photo's sixth step."""
    work = make_work(tmp_path_factory.mktemp("cluster"))
    local = run_here(work, "train.py", *train_args(tiny_mat, "here/r"))
    assert local.returncode == 0, local.stderr
    forever = [*train_args(tiny_mat, "out/r"), "--train_steps=100000"]
    commands = [train_args(tiny_mat, "there/r"), forever]
    folder, stopped = run_all_on_cluster(work, commands, interrupt_at={1: r"step +6/"})
    return SimpleNamespace(work=work, folder=folder, stopped=stopped)


def train_args(tiny_mat: str, output: str) -> list[str]:
    return [
        f"--vgg_model_path={tiny_mat}",
        "--content_image=photos",
        "--style_image=style.jpg",
        f"--output_image={output}",
        "--image_width=40",
        "--precision=float32",
        "--batch_size=1",
        f"--train_steps={STEPS}",
        f"--snapshot_every={EVERY}",
        "--print_every=1",
        "--seed=3",
        *FEW_LAYER_FLAGS,
    ]


def logged_steps(path) -> list[int]:
    with open(path, newline="") as log:
        return [int(row["step"]) for row in csv.DictReader(log)]


def test_a_folder_on_two_nodes_gives_the_images_of_a_local_run(runs):
    work, cluster = runs.work, runs.folder
    assert cluster.code == 0, cluster.err
    assert f"stylised {PHOTOS} of {PHOTOS} photos" in cluster.out
    nodes = set(re.findall(r"^\[\d+/\d+\] on node \S+ \((\w+)\)", cluster.out, re.M))
    assert len(nodes) == 2, cluster.out  # both nodes took photos
    for number in range(PHOTOS):
        name = f"r-p{number}"
        ours, theirs = pixels(work / "there" / f"{name}.jpg"), pixels(work / "here" / f"{name}.jpg")
        assert np.abs(ours - theirs).mean() < 0.5, name
        # The same files, written by the driver: snapshots, checkpoint, record, log.
        for suffix in ("-checkpoint.npz", "-settings.json", "-losses.csv", f"-{EVERY}.jpg"):
            assert (work / "there" / f"{name}{suffix}").exists(), name + suffix
        assert logged_steps(work / "there" / f"{name}-losses.csv") == list(range(1, STEPS + 1))
    assert sorted(os.listdir(work / "there")) == sorted(os.listdir(work / "here"))


def test_a_lost_node_costs_its_photos_at_most_one_snapshot_interval(work, tiny_mat):
    # The node is killed once the driver has printed step 6 of a photo it runs: by then
    # the snapshot of step 4, and its checkpoint, are written (events come in order).
    result = run_on_cluster(
        work, train_args(tiny_mat, "out/r"), kill_node_at=r"^\[\d+/\d+\] step +6/"
    )
    assert result.killed, result.out
    assert result.code == 0, result.err
    assert f"stylised {PHOTOS} of {PHOTOS} photos" in result.out
    assert "its worker was lost" in result.out
    lost = f"r-p{result.killed['photo'] - 1}"
    resumed = {os.path.basename(prefix): int(step) for prefix, step in RESUMING.findall(result.out)}
    assert lost in resumed, result.out
    assert resumed[lost] >= EVERY and resumed[lost] % EVERY == 0
    for number in range(PHOTOS):
        name = f"r-p{number}"
        assert (work / "out" / f"{name}.jpg").exists(), name
        # Every step logged once: the steps after the checkpoint were taken again, and
        # the lost node's lines for them replaced, as a local --resume does.
        assert logged_steps(work / "out" / f"{name}-losses.csv") == list(range(1, STEPS + 1))
        saved = re.findall(rf"^saved out/{name}\.jpg$", result.out, re.M)
        assert len(saved) == 1, name  # one final image each
    # The snapshots up to the resume point were written once: all of them before the
    # driver said the worker was lost (it had replayed everything the lost task posted),
    # none again by the retry, which began after that.
    heard = zip(result.lines, result.heard, strict=True)
    lost_at = next(when for line, when in heard if "its worker was lost" in line)
    for step in range(EVERY, resumed[lost] + 1, EVERY):
        written = os.stat(work / "out" / f"{lost}-{step}.jpg").st_mtime
        assert written <= lost_at, step


INTERRUPTED = re.compile(r"^interrupted at step (\d+): saved out/(r-p\d+)\.jpg and a chec", re.M)


def test_ctrl_c_on_the_driver_saves_every_running_photo(runs):
    # Photos that only a stop ends, so that the stop finds them running.
    work, result = runs.work, runs.stopped
    assert result.code == 130, result.out + result.err
    started = set(re.findall(r"^\[(\d+)/\d+\] on node", result.out, re.M))
    stepping = set(re.findall(r"^\[(\d+)/\d+\] step", result.out, re.M))
    stopped = {name: int(step) for step, name in INTERRUPTED.findall(result.out)}
    # Each photo that had begun stepping was saved where it stopped.
    assert {f"r-p{int(number) - 1}" for number in stepping} == set(stopped), result.out
    for name, step in stopped.items():
        assert step >= 1
        assert (work / "out" / f"{name}.jpg").exists(), name
        with np.load(work / "out" / f"{name}-checkpoint.npz") as checkpoint:
            assert int(checkpoint["step"]) == step, name
        assert logged_steps(work / "out" / f"{name}-losses.csv") == list(range(1, step + 1))
    # No photo was started after the stop, and none but those has a final image.
    assert len(started) <= 2, result.out  # one task on each node at most
    finals = {path.stem for path in (work / "out").glob("r-p?.jpg")}
    assert finals == set(stopped)
