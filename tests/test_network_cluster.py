"""`python train_network.py --cluster=ray` on a real two-node Ray cluster on 127.0.0.1 in
namespaces of its own (tests/ray_cluster.py): Ray Train starts one worker per node, the
two train one network together (MultiWorkerMirroredStrategy over TF_CONFIG, which Ray
Train sets), and the chief writes the files of a local run, which `--network_resume`
continues, on the cluster as in this process; a Ctrl-C on the driver stops both workers
after the same step, and they save it.

Root only (the namespaces); the runs share one cluster, started once for the module.
"""

from __future__ import annotations

import csv
import os
import re
from types import SimpleNamespace

import numpy as np
import pytest

from tests.ray_cluster import run_all_on_cluster, run_here
from tests.support import photo, write_image

pytestmark = [pytest.mark.root, pytest.mark.slow]

WORKER_AT = re.compile(r"^worker (\d)/2 on node \S+ \((\w+)\), process \d+$", re.M)
# Measured on two nodes against this process (AMD EPYC): the largest relative difference
# of a step's loss was 8.7e-7 over 4 steps (two replicas' sums are added in another
# order); ten times that leaves room for it, and none for another batch or a lost step.
LOSS_TOLERANCE = 1e-5


def make_work(tmp_path):
    # Four copies of one 32x32 photo, the crop size: every batch is the same two images
    # whichever worker reads which share, so a step on two workers (one image each) must
    # give the losses of a step of the same batch in one process.
    os.mkdir(tmp_path / "photos")
    one = photo(32, 32, seed=3)
    for number in range(4):
        write_image(tmp_path / "photos" / f"p{number}.png", one)
    stripes = np.zeros((48, 48, 3), np.float32)
    stripes[:, ::4] = (250, 60, 20)
    write_image(tmp_path / "style.png", stripes)
    return tmp_path


def train_args(tiny_mat: str, output: str, *extra: str) -> list[str]:
    values = {
        "network_dataset": "photos",
        "network_style_image": "style.png",
        "network_style_size": 48,
        "network_sample_image": "photos/p0.png",
        "network_output_dir": output,
        "network_image_size": 32,
        "network_batch_size": 2,  # one image per worker and step
        "network_steps": 4,
        "network_width": 2,
        "network_checkpoint_every": 2,
        "network_sample_every": 2,
        "network_print_every": 1,
        "network_temporal_weight": 0.0,
        "network_style_layers": "relu1_2:0.5,relu2_2:0.5",
        "vgg_model_path": tiny_mat,
    }
    return [f"--{name}={value}" for name, value in values.items()] + list(extra)


def losses(path) -> list[dict[str, float]]:
    with open(path, encoding="utf-8") as file:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(file)]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_mat):
    """A local run, then on one two-node cluster: the same run; its --network_resume with
    no end in sight, interrupted (SIGINT to the driver) at its sixth step; and a
    --network_resume with no checkpoint."""
    work = make_work(tmp_path_factory.mktemp("network-cluster"))
    local = run_here(work, "train_network.py", *train_args(tiny_mat, "here"))
    assert local.returncode == 0, local.stderr[-3000:]
    forever = train_args(tiny_mat, "there", "--network_resume", "--network_steps=100000")
    empty = train_args(tiny_mat, "empty", "--network_resume")
    commands = [train_args(tiny_mat, "there"), forever, empty]
    trained, stopped, refused = run_all_on_cluster(
        work, commands, script="train_network.py", interrupt_at={1: r"^step +6/"}
    )
    return SimpleNamespace(work=work, trained=trained, stopped=stopped, refused=refused)


def test_two_nodes_train_one_network_with_the_losses_of_a_local_run(runs):
    work, cluster = runs.work, runs.trained
    assert cluster.code == 0, cluster.err[-3000:]

    # Ray Train started one worker on each node, and both trained to the last step.
    started = WORKER_AT.findall(cluster.out)
    assert sorted(number for number, _ in started) == ["1", "2"], cluster.out
    assert len({node for _, node in started}) == 2, cluster.out
    assert cluster.second_node[:8] in {node for _, node in started}
    for number in (1, 2):
        assert f"worker {number}/2 trained to step 4" in cluster.out
    assert "2 replica(s)" in cluster.out

    # The chief wrote the files of a local run, in the driver's folder, and nothing else
    # but the samples of the resumed run below.
    here, there = set(os.listdir(work / "here")), set(os.listdir(work / "there"))
    assert here <= there and all(re.fullmatch(r"sample-\d+\.jpg", name) for name in there - here)
    assert (work / "there" / "network.keras").exists()
    mine, theirs = losses(work / "here" / "losses.csv"), losses(work / "there" / "losses.csv")
    assert [row["step"] for row in theirs][:4] == [1, 2, 3, 4]
    for step_here, step_there in zip(mine, theirs[:4], strict=True):
        for name in ("content", "style", "tv", "total"):
            assert step_there[name] == pytest.approx(step_here[name], rel=LOSS_TOLERANCE), name


def test_ctrl_c_stops_every_worker_after_the_same_step_and_saves_it(runs):
    # The resumed run went on from step 4, and a Ctrl-C stopped both workers after one
    # step, which both saved: the log has every step to it, once, and the checkpoint is
    # of it, so --network_resume goes on from there.
    stopped = runs.stopped
    assert stopped.code == 130, stopped.err[-3000:]
    saved = re.search(
        r"^interrupted at step (\d+): saved \S+network\.keras and a checkpoint", stopped.out, re.M
    )
    assert saved, stopped.out
    step = int(saved.group(1))
    assert step >= 6
    for number in (1, 2):
        assert f"worker {number}/2 stopped and saved" in stopped.out
    folder = runs.work / "there"
    assert [row["step"] for row in losses(folder / "losses.csv")] == list(range(1, step + 1))
    assert f"ckpt-{step}.index" in os.listdir(folder / "checkpoints"), os.listdir(folder)


def test_a_worker_error_is_the_driver_s_one_line(runs):
    # The chief finds no checkpoint to resume from: its one line is the driver's.
    cluster = runs.refused
    assert cluster.code == 2, cluster.err[-3000:]
    assert cluster.err.strip().splitlines() == [
        "error: NETWORK_RESUME (--network_resume) is set but "
        f"{runs.work}/empty has no checkpoint; start without it, or set NETWORK_OUTPUT_DIR to "
        "the earlier run's folder"
    ]
