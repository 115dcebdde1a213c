"""A folder's or a clip's batches stylised on a Ray cluster (CLUSTER "ray"): one network
loaded per worker, a pool of Ray actors, as many as the cluster has room for (sized by
neural_style/ray_cluster.py as for train.py: a GPU each, else the smallest node's CPUs,
at most 4).

    RAY_ADDRESS=head:6379 python stylize.py --stylize_input=photos/ --cluster=ray
    python stylize.py --stylize_input=clip.mp4 --cluster=ray    # a local cluster, started now

Only this process, the driver, reads inputs and writes outputs: it sends the network
file's bytes once (through Ray's object store) and each batch's decoded pixels; a worker
returns the stylised pixels with the node and process that made them, and the driver
saves them under the planned names (run.py's loop, outputs.py's rules), or writes a
clip's frames in order (video.py). The workers need no shared file system, only this
package and its dependencies installed.

An actor pool, not Ray Data: the pixels are in the driver's memory (decoded, and shrunk
to fit, by MemoryFit.load, or a clip's frames from ffmpeg), and the loop hands batches
over one at a time as it reads them, so a pool fed from the loop keeps the driver's
reading, skipping, ordering and stopping as they are; at most one batch per actor is in
flight, so the driver never holds more than that many batches of results. The pool is
kept here rather than in ray.util.ActorPool, which does not say which batch a lost
worker had: a batch whose worker (or node) dies goes to another worker, and since
nothing of it was written, nothing is written twice.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any, TextIO

import numpy as np

from neural_style import runtime
from neural_style.errors import UserError
from neural_style.feedforward.stylizing.batches import Batch, Results
from neural_style.ray_cluster import CLUSTER_SETTING, RayCluster
from neural_style.settings.network import NetworkSettings

# Workers lost in one run before it gives up: a cluster losing more is not one to rely on.
MAX_LOST_WORKERS = 3


class StylizerActor:
    """A Ray actor: the network, loaded once from the bytes the driver sent."""

    def __init__(self, network: bytes, settings: NetworkSettings, threads: int):
        import ray

        runtime.start_tensorflow(without_keras=False, threads=threads)
        from neural_style.feedforward.stylizing.stylizer import open_stylizer

        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "network.keras")
            with open(path, "wb") as file:
                file.write(network)
            self.stylizer = open_stylizer(_with_model(settings, path))
        self.where = (
            ray.util.get_node_ip_address(),
            ray.get_runtime_context().get_node_id(),
            os.getpid(),
        )

    def stylize(self, numbers: list[int], pixels: np.ndarray) -> tuple:
        """The batch stylised, with its numbers and where it ran."""
        return numbers, self.stylizer(pixels), self.where


def _with_model(settings: NetworkSettings, path: str) -> NetworkSettings:
    import dataclasses

    return dataclasses.replace(settings, network_model=path)


class RayBatches:
    """A BatchExecutor (batches.py) whose batches go to a pool of StylizerActors.

    With `inputs` (a folder's images in reading order) each result is said in a line,
    `[n/total] on node ...`; without (a video's frames, keyed as they come), nothing is
    said per batch and `tally` says how many frames each node made."""

    def __init__(self, settings: NetworkSettings, stream: TextIO, inputs: list[str] | None = None):
        self.settings = settings
        self.say_each = inputs is not None
        self.inputs = list(inputs or [])  # the keys, in order: numbers are places here + 1
        self.numbers = {path: number for number, path in enumerate(self.inputs, 1)}
        self.stream = stream
        self.cluster = RayCluster(stream)
        self.idle: list[Any] = []  # the actors with no batch
        self.running: dict[Any, tuple[Any, list[int], np.ndarray]] = {}  # result -> batch
        self.lost_batches: list[tuple[list[int], np.ndarray]] = []  # to send again
        self.losses = 0  # workers lost so far
        self.made_by: dict[str, int] = {}  # "ip (node)" -> results made there

    def start(self) -> str:
        """Connects to the cluster (or starts a local one) and starts the actors; returns
        a line saying where the folder runs."""
        device = self.cluster.start()
        import ray

        with open(self.settings.network_model, "rb") as file:
            network = ray.put(file.read())
        cluster = self.cluster
        resources = {"num_gpus": 1} if cluster.gpus else {"num_cpus": cluster.cpus_per_task}
        threads = 0 if cluster.gpus else cluster.cpus_per_task
        actor = ray.remote(StylizerActor).options(scheduling_strategy="SPREAD", **resources)
        actors = [actor.remote(network, self.settings, threads) for _ in range(cluster.slots)]
        self.idle = actors
        each = "a GPU" if cluster.gpus else f"{cluster.cpus_per_task} CPU(s)"
        where = device.description.split(": ")[0]
        return f"{where}: {cluster.slots} worker(s) of {each}, one network loaded in each"

    def submit(self, batch: Batch) -> Results:
        results: Results = []
        while not self.idle:
            results += self._next()
        for path, _ in batch:
            if path not in self.numbers:
                self.inputs.append(path)
                self.numbers[path] = len(self.inputs)
        numbers = [self.numbers[path] for path, _ in batch]
        self._launch(numbers, np.stack([image for _, image in batch]))
        return results

    def drain(self) -> Results:
        results: Results = []
        while self.running or self.lost_batches:
            results += self._next()
        return results

    def _launch(self, numbers: list[int], pixels: np.ndarray) -> None:
        actor = self.idle.pop(0)
        self.running[actor.stylize.remote(numbers, pixels)] = (actor, numbers, pixels)

    def _next(self) -> Results:
        """The next batch to finish, its lines said; a lost worker's batch sent to another
        worker (nothing of it was written), a worker's own failure as here."""
        import ray

        if not self.running:  # every worker lost, and batches left
            raise UserError(
                f"{CLUSTER_SETTING} ray: every worker was lost ({self.losses} lost); "
                "finished outputs are kept, run again to stylise the rest"
            )
        [done], _ = ray.wait(list(self.running), num_returns=1)
        actor, numbers, pixels = self.running.pop(done)
        try:
            numbers, stylised, (ip, node, pid) = ray.get(done)
        except ray.exceptions.RayTaskError as error:
            cause = getattr(error, "cause", None)
            if isinstance(cause, MemoryError):
                raise UserError(
                    f"a worker ran out of memory: {cause}; set STYLIZE_BATCH_SIZE to 1 "
                    "(--stylize_batch_size=1) or STYLIZE_MAX_SIZE lower"
                ) from None
            if isinstance(cause, UserError):
                raise UserError(str(cause)) from None
            raise
        except (ray.exceptions.RayActorError, ray.exceptions.ObjectLostError) as error:
            # The worker's process or node died with the batch (or its result) on it.
            self.losses += 1
            if self.losses > MAX_LOST_WORKERS:
                raise UserError(
                    f"{CLUSTER_SETTING} ray: {self.losses} workers were lost; finished "
                    "outputs are kept, run again to stylise the rest"
                ) from None
            why = str(error).split(". ")[0].strip().splitlines()[0] or type(error).__name__
            first, last = self.inputs[numbers[0] - 1], self.inputs[numbers[-1] - 1]
            said = first if first == last else f"{first} .. {last}"
            print(
                f"note: a worker was lost ({why}); its batch ({said}) goes to another worker",
                file=self.stream,
                flush=True,
            )
            self.lost_batches.append((numbers, pixels))
            self._retry()
            return []
        self.idle.append(actor)
        self._retry()
        results = []
        where = f"{ip} ({node[:8]})"
        self.made_by[where] = self.made_by.get(where, 0) + len(numbers)
        for number, result in zip(numbers, stylised, strict=True):
            path = self.inputs[number - 1]
            if self.say_each:
                print(
                    f"[{number}/{len(self.inputs)}] on node {where}, process {pid}: {path}",
                    file=self.stream,
                    flush=True,
                )
            else:  # a video's frame: its key is not needed once it is back
                del self.numbers[path]
            results.append((path, result))
        return results

    def _retry(self) -> None:
        """Sends lost batches to the idle workers, first of all."""
        while self.lost_batches and self.idle:
            self._launch(*self.lost_batches.pop(0))

    def tally(self, what: str) -> str:
        """A line saying how many results (`what`: "frames") each node made."""
        counts = ", ".join(f"{count} on node {where}" for where, count in self.made_by.items())
        return f"{what} stylised on the cluster: {counts or 'none'}"

    def close(self) -> None:
        self.idle, self.running = [], {}
        self.cluster.close()
