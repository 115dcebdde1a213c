"""The Ray cluster a CLUSTER "ray" run works on, connected and sized: shared by train.py's
executor (gatys/ray_executor.py), stylize.py's folder (feedforward/stylizing/
ray_batches.py) and train_network.py's Ray Train run (feedforward/training/ray_train.py),
so all reach and size a cluster alike.

`RayCluster.start` connects to the cluster RAY_ADDRESS names, or starts a local one (no
dashboard), and sizes a unit of work: a GPU where the cluster has GPUs, else the smallest
node's CPUs (at most MAX_CPUS_PER_TASK); `slots` is how many such units run at once. A
missing Ray or an unreachable cluster is one line naming CLUSTER and the fix.
"""

from __future__ import annotations

import os
from typing import Any, TextIO

from neural_style import runtime
from neural_style.errors import UserError

CLUSTER_INSTALL = "python -m pip install -e '.[cluster]'"
CLUSTER_SETTING = "CLUSTER (--cluster)"
MAX_CPUS_PER_TASK = 4


class RayCluster:
    """A connection to a Ray cluster and the size of a unit of work on it."""

    def __init__(self, stream: TextIO):
        self.stream = stream
        self.connected = False
        self.cpus_per_task = 1
        self.gpus = 0
        self.slots = 1
        self.nodes = 1  # alive nodes when the run began
        self.smallest_node_cpus = 1  # of the nodes with CPUs

    def start(self) -> runtime.Device:
        """Connect to the cluster RAY_ADDRESS names, or start a local one."""
        try:
            import ray
        except ImportError:
            raise UserError(
                f"{CLUSTER_SETTING} ray needs the cluster extra: {CLUSTER_INSTALL}"
            ) from None
        address = os.environ.get("RAY_ADDRESS", "")
        where = f"the Ray cluster at {address} (RAY_ADDRESS)" if address else "a local Ray cluster"
        options = {} if address else {"include_dashboard": False}
        try:
            with runtime.native_stderr_silenced():
                ray.init(
                    address=address or "local",
                    log_to_driver=False,
                    logging_level="WARNING",
                    **options,
                )
        except (ConnectionError, RuntimeError, ValueError) as error:
            raise UserError(
                f"{CLUSTER_SETTING} ray: cannot reach {where}: {error}; start it (ray "
                "start --head) or unset RAY_ADDRESS to start a local one"
            ) from None
        self.connected = True
        return self._sized(ray, where)

    def _sized(self, ray: Any, where: str) -> runtime.Device:
        nodes = [node for node in ray.nodes() if node.get("Alive")]
        cpus = [node["Resources"].get("CPU", 0) for node in nodes]
        self.gpus = int(sum(node["Resources"].get("GPU", 0) for node in nodes))
        self.nodes = max(1, len(nodes))
        self.smallest_node_cpus = int(max(1, min([c for c in cpus if c] or [1])))
        self.cpus_per_task = min(MAX_CPUS_PER_TASK, self.smallest_node_cpus)
        if self.gpus:
            self.slots = self.gpus
            each = "a GPU"
        else:
            self.slots = max(1, int(sum(cpus)) // self.cpus_per_task)
            each = f"{self.cpus_per_task} CPU{'s' if self.cpus_per_task > 1 else ''}"
        return runtime.Device(
            f"running on {where}: {len(nodes)} node(s), {sum(cpus):g} CPUs, {self.gpus} "
            f"GPUs; each batch is a task on {each}",
            self.gpus > 0,
        )

    def close(self) -> None:
        if self.connected:
            import ray

            ray.shutdown()
            self.connected = False
