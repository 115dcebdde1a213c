"""The cluster that the environment variable TF_CONFIG describes, checked before TensorFlow
starts (`read_cluster`), so that a mistake in it is one line rather than a traceback from
deep inside tf.distribute, or a worker that waits for ever for a task that cannot exist.

    TF_CONFIG='{"cluster": {"worker": ["host1:2222", "host2:2222"]},
                "task": {"type": "worker", "index": 0}}' python train_network.py

Jobs may be "chief" (at most one task) and "worker"; each task is a "host:port" string.
Nothing here imports TensorFlow.
"""

from __future__ import annotations

import json
import os
from typing import NamedTuple

from neural_style.errors import UserError

VARIABLE = "TF_CONFIG"
# The jobs of a MultiWorkerMirroredStrategy cluster, the only kind train_network.py runs.
JOBS = ("chief", "worker")
_FORM = '{"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", "index": 0}}'
# The end of every message: where the fix goes.
_FIX = f"set the environment variable {VARIABLE} to the form {_FORM}, or unset it to train alone"


class Cluster(NamedTuple):
    size: int  # tasks in the cluster; 1 when TF_CONFIG is unset (training alone)
    task_type: str  # this process's job, "" when training alone
    task_index: int


def read_cluster(text: str | None = None) -> Cluster:
    """The cluster in TF_CONFIG (`text`, else the environment's), checked: every job is one
    of JOBS with a list of "host:port" tasks, and, in a cluster of several tasks, this
    process's task names one of them.

    Raises:
      UserError: TF_CONFIG is not of that form; the message names what is wrong.
    """
    text = os.environ.get(VARIABLE, "") if text is None else text
    if not text.strip():
        return Cluster(1, "", 0)
    try:
        config = json.loads(text)
    except ValueError as error:
        raise UserError(f"{VARIABLE} is not valid JSON ({error}); {_FIX}") from None
    if not isinstance(config, dict):
        raise UserError(f"{VARIABLE} is not a JSON object; {_FIX}")
    jobs = _jobs(config.get("cluster", {}))
    size = sum(len(tasks) for tasks in jobs.values())
    if size <= 1:
        return Cluster(size or 1, "", 0)
    task_type, index = _task(config.get("task"), jobs)
    return Cluster(size, task_type, index)


def _jobs(cluster: object) -> dict[str, list[str]]:
    """The cluster's jobs, each a list of "host:port" addresses."""
    if not isinstance(cluster, dict):
        raise UserError(f'{VARIABLE}: its "cluster" is not an object of jobs; {_FIX}')
    for job, tasks in cluster.items():
        if job not in JOBS:
            raise UserError(
                f'{VARIABLE}: its cluster has a job "{job}", which train_network.py does not '
                f'run (only "chief" and "worker"); {_FIX}'
            )
        if not isinstance(tasks, list) or not all(
            isinstance(task, str) and ":" in task for task in tasks
        ):
            raise UserError(
                f'{VARIABLE}: its cluster\'s "{job}" is not a list of "host:port" addresses; {_FIX}'
            )
    chiefs = len(cluster.get("chief", []))
    if chiefs > 1:
        raise UserError(f"{VARIABLE}: its cluster has {chiefs} chiefs, not one; {_FIX}")
    return cluster


def _task(task: object, jobs: dict[str, list[str]]) -> tuple[str, int]:
    """This process's (job, index), which must name a task of `jobs`."""
    if not isinstance(task, dict):
        raise UserError(
            f'{VARIABLE}: its cluster has several tasks but no "task" says which one this '
            f"process is; {_FIX}"
        )
    task_type, index = task.get("type"), task.get("index", 0)
    if isinstance(index, str) and index.isdigit():  # as TensorFlow reads it too
        index = int(index)
    if task_type not in jobs:
        named = ", ".join(f'"{job}"' for job in jobs)
        raise UserError(
            f"{VARIABLE}: its task's type is {json.dumps(task_type)}, not a job of its "
            f"cluster ({named}); {_FIX}"
        )
    count = len(jobs[task_type])
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < count:
        raise UserError(
            f"{VARIABLE}: its task's index is {json.dumps(index)}, out of range for the "
            f'{count} "{task_type}" task(s) of its cluster; set "index" to a number from 0 '
            f"to {count - 1} in the environment variable {VARIABLE}"
        )
    return task_type, index
