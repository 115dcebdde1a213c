"""TF_CONFIG, the cluster a training run joins: checked in one line before TensorFlow starts,
and a worker waiting for a task that never comes is ended by Ctrl-C and SIGTERM (real
signals to a real `train_network.py`, whose cluster's other worker is never started)."""

import json
import os
import queue
import signal
import subprocess
import sys
import threading

import pytest

from neural_style.errors import UserError
from neural_style.feedforward.training.cluster import Cluster, read_cluster
from tests.support import REPO_ROOT
from tests.test_feedforward_multiworker import free_ports, worker_flags, write_inputs

TRAIN_NETWORK = os.path.join(REPO_ROOT, "train_network.py")
TWO_WORKERS = {"worker": ["127.0.0.1:2222", "127.0.0.1:2223"]}


def tf_config(cluster: object, task: object = None) -> str:
    config = {"cluster": cluster}
    if task is not None:
        config["task"] = task
    return json.dumps(config)


@pytest.mark.parametrize(
    ("text", "cluster"),
    [
        ("", Cluster(1, "", 0)),
        ("  ", Cluster(1, "", 0)),
        (tf_config({"worker": ["127.0.0.1:2222"]}), Cluster(1, "", 0)),
        (tf_config(TWO_WORKERS, {"type": "worker", "index": 1}), Cluster(2, "worker", 1)),
        (tf_config(TWO_WORKERS, {"type": "worker", "index": "0"}), Cluster(2, "worker", 0)),
        (
            tf_config({"chief": ["a:1"], "worker": ["b:1", "c:1"]}, {"type": "chief"}),
            Cluster(3, "chief", 0),
        ),
    ],
)
def test_a_usable_tf_config_is_read(text, cluster):
    assert read_cluster(text) == cluster


@pytest.mark.parametrize(
    ("text", "said"),
    [
        (
            tf_config(TWO_WORKERS, {"type": "worker", "index": 2}),
            'TF_CONFIG: its task\'s index is 2, out of range for the 2 "worker" task(s) of '
            'its cluster; set "index" to a number from 0 to 1 in the environment variable '
            "TF_CONFIG",
        ),
        (
            tf_config(TWO_WORKERS, {"type": "worker", "index": -1}),
            "TF_CONFIG: its task's index is -1, out of range",
        ),
        (
            tf_config(TWO_WORKERS, {"type": "worker", "index": 0.5}),
            "TF_CONFIG: its task's index is 0.5, out of range",
        ),
        (
            tf_config(TWO_WORKERS, {"type": "chief", "index": 0}),
            'TF_CONFIG: its task\'s type is "chief", not a job of its cluster ("worker")',
        ),
        (tf_config(TWO_WORKERS), 'TF_CONFIG: its cluster has several tasks but no "task"'),
        (
            tf_config({"ps": ["a:1"], "worker": ["b:1"]}, {"type": "worker"}),
            'TF_CONFIG: its cluster has a job "ps", which train_network.py does not run',
        ),
        (
            tf_config({"worker": "127.0.0.1:2222"}),
            'TF_CONFIG: its cluster\'s "worker" is not a list of "host:port" addresses',
        ),
        (
            tf_config({"chief": ["a:1", "b:1"]}, {"type": "chief"}),
            "TF_CONFIG: its cluster has 2 chiefs, not one",
        ),
        ('{"cluster": ', "TF_CONFIG is not valid JSON ("),
        ("[1, 2]", "TF_CONFIG is not a JSON object"),
    ],
)
def test_a_bad_tf_config_is_one_line_naming_what_is_wrong(text, said):
    with pytest.raises(UserError) as raised:
        read_cluster(text)
    message = str(raised.value)
    assert message.startswith(said), message
    assert "\n" not in message and "TF_CONFIG" in message.split(";")[-1]


@pytest.fixture
def refusing_tensorflow(tmp_path_factory):
    """A folder for PYTHONPATH whose `tensorflow` refuses to import: a run that gets as far
    as TensorFlow says so in its error."""
    folder = tmp_path_factory.mktemp("no_tensorflow")
    (folder / "tensorflow").mkdir()
    (folder / "tensorflow" / "__init__.py").write_text(
        'raise ImportError("train_network.py imported TensorFlow before checking TF_CONFIG")\n'
    )
    return folder


def test_train_network_py_says_a_task_out_of_range_before_tensorflow(tmp_path, refusing_tensorflow):
    config = tf_config(TWO_WORKERS, {"type": "worker", "index": 5})
    result = subprocess.run(
        [sys.executable, TRAIN_NETWORK, f"--network_output_dir={tmp_path / 'out'}"],
        cwd=tmp_path,
        env={**os.environ, "TF_CONFIG": config, "PYTHONPATH": str(refusing_tensorflow)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr
    assert lines == [
        'error: TF_CONFIG: its task\'s index is 5, out of range for the 2 "worker" task(s) of '
        'its cluster; set "index" to a number from 0 to 1 in the environment variable TF_CONFIG'
    ], result.stderr
    assert os.listdir(tmp_path) == []  # nothing written


# --- A stop while waiting for the cluster --------------------------------------------------


# A command waiting in native code that also takes SIGTERM's handler behind Python's back,
# as TensorFlow's cluster set-up does: libc's signal(), then libc's pause() (Python's
# handlers cannot run inside it, and SIGTERM is ignored). Without `interruptible` only
# SIGKILL would end it.
NATIVE_WAIT = """
import ctypes, os, signal, sys
from neural_style import stopping

stopping.install(exit_at_once=True)
libc = ctypes.CDLL(None)
libc.signal.restype = ctypes.c_void_p
libc.signal.argtypes = [ctypes.c_int, ctypes.c_void_p]

def wait_in_native_code():
    libc.signal(signal.SIGTERM, 1)  # SIG_IGN
    os.write(1, b"took SIGTERM\\n")  # one write, never inside the other thread's line
    libc.pause()

stopping.interruptible(
    wait_in_native_code, waiting_for="the peer", kept="nothing was written", stream=sys.stdout
)
"""


@pytest.mark.parametrize("signal_number", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_interruptible_ends_a_wait_in_native_code_that_took_the_signal(signal_number):
    process = subprocess.Popen(
        [sys.executable, "-c", NATIVE_WAIT],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # Both lines come, in either order; a signal sent before the native code set
        # SIG_IGN would be discarded by that very call (POSIX), so wait for both.
        ready = {process.stdout.readline(), process.stdout.readline()}
        assert ready == {"waiting for the peer\n", "took SIGTERM\n"}
        process.send_signal(signal_number)
        code = process.wait(timeout=60)  # a hang guard
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    named = "" if signal_number == signal.SIGINT else f" ({signal.Signals(signal_number).name})"
    assert code == 128 + signal_number
    assert process.stderr.read().splitlines() == [
        f"interrupted{named} while waiting for the peer; nothing was written"
    ]


AFTER_NATIVE_CODE = """
import ctypes, os, signal
from neural_style import stopping

stopping.install()
libc = ctypes.CDLL(None)
libc.signal.restype = ctypes.c_void_p
libc.signal.argtypes = [ctypes.c_int, ctypes.c_void_p]

def ignore_sigterm_natively():
    libc.signal(signal.SIGTERM, 1)  # SIG_IGN, which Python does not know of
    return 7

value = stopping.interruptible(ignore_sigterm_natively, waiting_for="x", kept="y")
try:
    # Delivered to this thread before os.kill returns; Python runs its handler at the next
    # check between its steps, which a loop's every turn makes.
    os.kill(os.getpid(), signal.SIGTERM)
    for _ in range(1000):
        pass
    print("ignored", value)
except stopping.Stopped as stop:
    print("stopped", stop.signal_number, value)
"""


def test_interruptible_puts_back_the_handlers_native_code_replaced():
    result = subprocess.run(
        [sys.executable, "-c", AFTER_NATIVE_CODE],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.stdout == f"stopped {int(signal.SIGTERM)} 7\n", result.stderr


class LoneWorker:
    """Worker 0 of a two-worker cluster on 127.0.0.1 whose worker 1 never starts, its
    stdout read line by line as it comes."""

    def __init__(self, tiny_mat: str, tmp_path):
        write_inputs(tmp_path)
        cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(2)]}
        config = {"cluster": cluster, "task": {"type": "worker", "index": 0}}
        self.stderr_path = tmp_path / "err.txt"
        self.output = tmp_path / "output"
        with open(self.stderr_path, "w") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, TRAIN_NETWORK, *worker_flags(tiny_mat, tmp_path, self.output)],
                cwd=REPO_ROOT,
                env={**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CONFIG": json.dumps(config)},
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
            )
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_for_line(self, wanted: str, timeout: float = 150) -> None:
        """Until the worker prints `wanted` (a hang guard, not a speed claim)."""
        while (line := self.lines.get(timeout=timeout)) != wanted:
            if line is None:
                pytest.fail(f"ended before {wanted!r}: {self.stderr_path.read_text()[-2000:]}")

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.mark.slow
@pytest.mark.parametrize("signal_number", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_ends_a_worker_waiting_for_the_cluster(tiny_mat, tmp_path, signal_number):
    worker = LoneWorker(tiny_mat, tmp_path)
    try:
        worker.wait_for_line("waiting for the other tasks of the cluster in TF_CONFIG")
        worker.process.send_signal(signal_number)
        # Before, only SIGKILL ended it: TensorFlow's cluster set-up waits in C++ (Python's
        # handlers never ran) and takes SIGTERM's handler for itself.
        code = worker.process.wait(timeout=60)
    finally:
        worker.kill()
    assert code == 128 + signal_number
    lines = [line for line in worker.stderr_path.read_text().splitlines() if line.strip()]
    named = "" if signal_number == signal.SIGINT else " (SIGTERM)"
    assert lines[-1] == (
        f"interrupted{named} while waiting for the other tasks of the cluster in TF_CONFIG; "
        "nothing was trained or written"
    ), lines[-5:]
    assert not any("Traceback" in line for line in lines)
    assert not worker.output.exists()
