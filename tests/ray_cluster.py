"""A real two-node Ray cluster on 127.0.0.1, in network and PID namespaces of its own, and
`python train.py --cluster=ray` (or another script of the repository, such as stylize.py)
run against it: what tests/test_cluster.py and tests/test_stylize_cluster.py assert on.

    result = run_on_cluster(work_dir, train_args, kill_node_at=r"^\\[\\d+/6\\] step +7/")
    result = run_on_cluster(work_dir, train_args, nodes=1)    # the head node alone
    result = run_on_cluster(work_dir, stylize_args, script="stylize.py")
    first, second = run_all_on_cluster(work_dir, [args, more_args])   # one cluster, in turn

Ray listens on (and connects over) every address of the machine even when told
127.0.0.1, so the whole cluster lives in `unshare --net --pid --fork --mount-proc`, where
only a loopback exists and nothing outside can be reached or stopped. This module is then
run as a script inside (PID 1 there), which brings the loopback up, starts the head node
(1 CPU) and a second node (1 CPU, `ray start --block`, so that its processes are all its
descendants), runs train.py with RAY_ADDRESS set and, when asked, kills the second node's
processes by their PIDs after train.py prints a line matching `kill_node_at` for a photo
running on that node. Everything in the namespaces ends when this script does.

Needs root (to make the namespaces and mount a tmpfs on /tmp/ray there), as CI has; the
tests that use it are marked root.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
HEAD_PORT = 6380
RAY_TEMP = "/tmp/ray"  # Ray's default temporary folder
SECOND_NODE_RESOURCE = "second_node"  # a custom resource that tells the second node apart
# Seconds; only a hung cluster comes near it. A Ray Train run of train_network.py took 534 s
# here (at nice 19, beside other work at full speed), so 600 s was not enough.
DEADLINE = 1800
HEAD_TRIES = 3
ON_NODE = re.compile(r"^\[(\d+)/\d+\] on node \S+ \((\w+)\), process (\d+)")


def run_on_cluster(
    work_dir: Path,
    train_args: list[str],
    *,
    nodes: int = 2,
    kill_node_at: str = "",
    kill_on_any_node: bool = False,
    interrupt_at: str = "",
    script: str = "train.py",
) -> SimpleNamespace:
    """`script` (train.py unless said) ARGS --cluster=ray in `work_dir`, on a fresh cluster
    of `nodes` (1 or 2) nodes of 1 CPU in its own namespaces; with `kill_node_at` (a
    regular expression), the second node is killed once a line matching it is printed for
    a photo that node runs (for a photo of either node with `kill_on_any_node`); with
    `interrupt_at`, the script gets a SIGINT (a Ctrl-C) once a line matching it is.
    Returns the script's exit code, output (with when each line came) and wall time, and
    what was killed when."""
    return _on_cluster(
        work_dir,
        [train_args],
        nodes=nodes,
        kill_node_at=kill_node_at,
        kill_on_any_node=kill_on_any_node,
        interrupts=[interrupt_at],
        script=script,
    )[0]


def run_all_on_cluster(
    work_dir: Path,
    runs: list[list[str]],
    *,
    script: str = "train.py",
    interrupt_at: dict[int, str] | None = None,
) -> list[SimpleNamespace]:
    """`script` with each ARGS of `runs` --cluster=ray, one after another, on one fresh
    two-node cluster (as run_on_cluster, which starts a cluster for each command): each
    run's result. `interrupt_at` {run's index: expression} interrupts those runs as
    run_on_cluster's does."""
    interrupts = [(interrupt_at or {}).get(index, "") for index in range(len(runs))]
    return _on_cluster(work_dir, runs, script=script, interrupts=interrupts)


def _on_cluster(
    work_dir: Path,
    runs: list[list[str]],
    *,
    nodes: int = 2,
    kill_node_at: str = "",
    kill_on_any_node: bool = False,
    interrupts: list[str],
    script: str = "train.py",
) -> list[SimpleNamespace]:
    spec = {
        "work_dir": str(work_dir),
        "runs": runs,
        "kill_node_at": kill_node_at,
        "kill_on_any_node": kill_on_any_node,
        "nodes": nodes,
        "interrupts": interrupts,
        "script": script,
    }
    spec_path = work_dir / "cluster-spec.json"
    spec_path.write_text(json.dumps(spec))
    # A home of its own: a local Ray cluster leaves a token in ~/.ray that later clusters
    # of the same home would then ask for.
    home = work_dir / "home"
    home.mkdir(exist_ok=True)
    env = {
        **os.environ,
        "HOME": str(home),
        "PYTHONPATH": str(REPO_ROOT),
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    # --kill-child: when the deadline kills unshare, its child (PID 1 of the namespace, so
    # every process of the cluster) dies too, rather than running on as an orphan.
    command = ["unshare", "--net", "--pid", "--kill-child", "--mount-proc"]
    command += [sys.executable, "-m", "tests.ray_cluster", str(spec_path)]
    done = subprocess.run(
        command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=DEADLINE
    )
    result_path = work_dir / "cluster-result.json"
    if done.returncode != 0 or not result_path.exists():
        raise AssertionError(f"the cluster harness failed ({done.returncode}):\n{done.stderr}")
    return [SimpleNamespace(**result) for result in json.loads(result_path.read_text())]


# --- inside the namespaces ------------------------------------------------------------------


def _ray(*args: str, block: bool = False) -> subprocess.Popen | None:
    command = [str(Path(sys.executable).parent / "ray"), *args]
    if block:
        return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    done = subprocess.run(command, capture_output=True, text=True, timeout=DEADLINE)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    return None


def _start_cluster(nodes: int) -> tuple[subprocess.Popen | None, str]:
    """The head node and the second node, if asked for: the second's `ray start` process
    and node id (None and "" without one)."""
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    # Ray's sessions (sockets, logs, the current cluster's address) in a tmpfs of this
    # mount namespace: nothing of this cluster is seen outside, nor anything of another.
    os.makedirs(RAY_TEMP, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", RAY_TEMP], check=True)
    common = ["--node-ip-address=127.0.0.1", "--num-cpus=1", "--disable-usage-stats"]
    _start_head(common)
    if nodes < 2:
        return None, ""
    resources = json.dumps({SECOND_NODE_RESOURCE: 1})
    joining = ("start", f"--address=127.0.0.1:{HEAD_PORT}", f"--resources={resources}")
    second = _ray(*joining, "--block", *common, block=True)
    for _ in range(HEAD_TRIES):
        found = _second_node_id(second)
        if found:
            return second, found
        # It gave up within Ray's fixed 30 s to register, on a busy machine: again.
        second = _ray(*joining, "--block", *common, block=True)
    raise RuntimeError("the second Ray node never joined")


def _start_head(common: list[str]) -> None:
    """`ray start --head`, tried again (after `ray stop`, which this namespace confines to
    its own processes) when it fails: Ray gives a new node a fixed 30 s to register, which
    a machine busy with other work can miss."""
    for attempt in range(HEAD_TRIES):
        try:
            _ray("start", "--head", f"--port={HEAD_PORT}", "--include-dashboard=false", *common)
            return
        except RuntimeError:
            if attempt == HEAD_TRIES - 1:
                raise
            _ray("stop", "--force")


def _second_node_id(second: subprocess.Popen) -> str:
    """Waits until the second node has joined: its node id; "" if its `ray start` ended."""
    probe = (
        "import ray, sys\n"
        f"ray.init(address='127.0.0.1:{HEAD_PORT}', logging_level='ERROR')\n"
        "found = [n['NodeID'] for n in ray.nodes()\n"
        f"         if n['Alive'] and '{SECOND_NODE_RESOURCE}' in n['Resources']]\n"
        "print(found[0] if found else '')\n"
    )
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        done = subprocess.run(
            [sys.executable, "-c", probe], capture_output=True, text=True, timeout=DEADLINE
        )
        if done.stdout.strip():
            return done.stdout.strip()
        if second.poll() is not None:
            return ""
    raise RuntimeError("the second Ray node never joined")


def _descendants(root: int) -> list[int]:
    """`root` and every process below it (this PID namespace's /proc)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(parents.get(pid, []))
    return found


def _kill_node(second: subprocess.Popen) -> list[int]:
    pids = _descendants(second.pid)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    second.wait()
    return pids


def _run_train(
    spec: dict,
    train_args: list[str],
    interrupt_at: str,
    second: subprocess.Popen | None,
    second_id: str,
) -> dict:
    env = {**os.environ, "RAY_ADDRESS": f"127.0.0.1:{HEAD_PORT}", "CUDA_VISIBLE_DEVICES": ""}
    script = str(REPO_ROOT / spec["script"])
    command = [sys.executable, script, *train_args, "--cluster=ray"]
    started = time.monotonic()
    train = subprocess.Popen(
        command,
        cwd=spec["work_dir"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        bufsize=1,
    )
    errors: list[str] = []
    reader = threading.Thread(target=lambda: errors.extend(train.stderr))
    reader.start()
    lines, heard, on_second, killed = [], [], set(), {}
    trigger = re.compile(spec["kill_node_at"]) if spec["kill_node_at"] else None
    interrupt = re.compile(interrupt_at) if interrupt_at else None
    interrupted = False
    for line in train.stdout:
        lines.append(line)
        heard.append(time.time())
        placed = ON_NODE.match(line)
        if placed and second_id and second_id.startswith(placed.group(2)):
            on_second.add(placed.group(1))
        photo = re.match(r"^\[(\d+)/", line)
        due = trigger is not None and not killed and trigger.search(line)
        if due and photo and (spec["kill_on_any_node"] or photo.group(1) in on_second):
            killed = {"photo": int(photo.group(1)), "line": line, "time": time.time()}
            killed["pids"] = _kill_node(second)
        if interrupt is not None and not interrupted and interrupt.search(line):
            interrupted = True
            train.send_signal(signal.SIGINT)
    code = train.wait()
    seconds = time.monotonic() - started
    reader.join()
    return {
        "code": code,
        "out": "".join(lines),
        "lines": lines,
        "heard": heard,  # when each line was read, by time.time()
        "err": "".join(errors),
        "killed": killed,
        "second_node": second_id,
        "seconds": seconds,  # train.py's wall time, from its start to its end
    }


def main(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    second, second_id = _start_cluster(spec["nodes"])
    runs = zip(spec["runs"], spec["interrupts"], strict=True)
    results = [_run_train(spec, *run, second, second_id) for run in runs]
    Path(spec["work_dir"], "cluster-result.json").write_text(json.dumps(results))


if __name__ == "__main__":
    main(sys.argv[1])


def pixels(path) -> np.ndarray:
    """The RGB pixels of the image at `path`, float32: what the cluster tests compare with
    a local run's."""
    import numpy as np
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), np.float32)


def run_here(work_dir: Path, script: str, *args: str) -> subprocess.CompletedProcess:
    """A script of the repository (train.py, stylize.py) with ARGS in this machine's
    process, without a cluster: the local run a cluster run is compared with."""
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / script), *args],
        cwd=work_dir,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "CUDA_VISIBLE_DEVICES": ""},
        capture_output=True,
        text=True,
        timeout=DEADLINE,
    )
