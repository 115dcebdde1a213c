"""Multi-worker training for real: two worker processes of one cluster (TF_CONFIG) on this
machine, on the CPU, talking over 127.0.0.1, each running train_network.py through
tests/multiworker_train.py, which logs the dataset files its input pipeline opens.
"""

import csv
import json
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.support import REPO_ROOT, photo, write_image

WORKER = os.path.join(REPO_ROOT, "tests", "multiworker_train.py")
TIMEOUT = 240  # seconds for the whole cluster run


def free_ports(count: int) -> list[int]:
    """Ports nothing listens on now: the system's choice for sockets bound to port 0."""
    sockets = []
    try:
        for _ in range(count):
            sockets.append(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sockets[-1].bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def write_inputs(tmp_path) -> None:
    """photos/ (four photos), style.png and sample.jpg under `tmp_path`."""
    (tmp_path / "photos").mkdir()
    for index in range(4):
        write_image(tmp_path / "photos" / f"photo{index}.jpg", photo(40, 48, seed=index))
    stripes = np.zeros((48, 48, 3), np.float32)
    stripes[:, ::4] = (250, 60, 20)
    write_image(tmp_path / "style.png", stripes)
    write_image(tmp_path / "sample.jpg", photo(40, 40, seed=8))


def worker_flags(tiny_mat: str, tmp_path, output) -> list[str]:
    values = {
        "network_dataset": tmp_path / "photos",
        "network_style_image": tmp_path / "style.png",
        "network_style_size": 48,
        "network_sample_image": tmp_path / "sample.jpg",
        "network_output_dir": output,
        "network_image_size": 32,
        "network_batch_size": 2,  # one photo per worker and step
        "network_steps": 2,
        "network_width": 4,
        "network_checkpoint_every": 0,
        "network_sample_every": 0,
        "network_print_every": 1,
        # The first two blocks' style layers: a quicker trace of the step, which still has
        # the temporal loss (on by default), the one multi-replica run of it.
        "network_style_layers": "relu1_2:0.5,relu2_2:0.5",
        "vgg_model_path": tiny_mat,
    }
    return [f"--{name}={value}" for name, value in values.items()]


def run_cluster(tiny_mat: str, tmp_path) -> list[subprocess.CompletedProcess]:
    """Both workers, started together and waited for; killed if they outlast TIMEOUT."""
    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(2)]}
    processes = []
    try:
        for index in range(2):
            (tmp_path / f"tmp-{index}").mkdir()
            task = {"cluster": cluster, "task": {"type": "worker", "index": index}}
            environment = {
                **os.environ,
                "CUDA_VISIBLE_DEVICES": "",
                "TF_CONFIG": json.dumps(task),
                "READ_LOG": str(tmp_path / f"reads-{index}.txt"),
                "TMPDIR": str(tmp_path / f"tmp-{index}"),
            }
            flags = worker_flags(tiny_mat, tmp_path, tmp_path / f"output-{index}")
            out_path, err_path = tmp_path / f"out-{index}.txt", tmp_path / f"err-{index}.txt"
            with open(out_path, "w") as out, open(err_path, "w") as err:
                processes.append(
                    subprocess.Popen(
                        [sys.executable, WORKER, *flags],
                        cwd=REPO_ROOT,
                        env=environment,
                        stdout=out,
                        stderr=err,
                    )
                )
        deadline = time.monotonic() + TIMEOUT
        for process in processes:
            process.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    return [
        subprocess.CompletedProcess(
            process.args,
            process.returncode,
            (tmp_path / f"out-{index}.txt").read_text(),
            (tmp_path / f"err-{index}.txt").read_text(),
        )
        for index, process in enumerate(processes)
    ]


@pytest.mark.slow
def test_two_workers_train_together_each_on_its_share_and_only_the_chief_writes(tmp_path, tiny_mat):
    write_inputs(tmp_path)
    dataset = sorted(str(path) for path in (tmp_path / "photos").iterdir())

    chief, other = run_cluster(tiny_mat, tmp_path)

    for worker in (chief, other):
        assert worker.returncode == 0, worker.stderr[-3000:]
        assert "2 replica(s)" in worker.stdout and "step 2/2" in worker.stdout
    assert f"saved {tmp_path}/output-0/network.keras" in chief.stdout
    output = tmp_path / "output-0"
    assert sorted(os.listdir(output)) == [
        ".lock",
        "checkpoints",
        "losses.csv",
        "network-settings.json",
        "network.keras",
        "sample-2.jpg",
        "skipped-files.txt",
    ]
    with open(output / "losses.csv", encoding="utf-8") as file:
        assert [row["step"] for row in csv.DictReader(file)] == ["1", "2"]
    assert json.loads((output / "network-settings.json").read_text())["steps_trained"] == 2
    # The other worker writes nothing: no output folder, and its temporary checkpoints gone.
    assert not (tmp_path / "output-1").exists()
    assert os.listdir(tmp_path / "tmp-1") == []

    # Each worker opened only its own share of the photos; the shares cover the dataset.
    reads = [set((tmp_path / f"reads-{index}.txt").read_text().split()) for index in range(2)]
    assert reads[0] and reads[1]
    assert not reads[0] & reads[1]
    assert sorted(reads[0] | reads[1]) == dataset
