"""`python train_network.py --cluster=ray`: the multi-worker training of run.py started by
Ray Train on a Ray cluster's workers, one worker per GPU, or one per node on its CPUs.

    train_network_on_ray(settings)     # in the driver, the process train_network.py runs

Ray Train's TensorflowTrainer starts the workers and sets each one's TF_CONFIG, so every
worker runs `train_network` as a worker of a TF_CONFIG cluster does: a
MultiWorkerMirroredStrategy over all of them, each reading its own share of the photos,
and only the chief (worker 0) writing the run's files, under the names and in the folder
of a local run. So the workers read the inputs and the chief writes the outputs at the
driver's paths (made absolute here): every node must see the same files at the same paths
(one machine, or a shared file system). The chief's lines, and one line from each worker
as it starts and as it ends, come to the driver's terminal through a Ray queue; a
worker's UserError (a held output folder, NETWORK_RESUME without a checkpoint) ends the
run and is the driver's one error line.

A stop (Ctrl-C, SIGTERM) on the driver is posted on a StopBoard, which every worker reads
after each step; the board fixes one step at which every worker stops, since a worker
that stopped alone would leave the others waiting in their next step. So the workers save
together, at that step, as a local run saves, and the driver exits as a local run does.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import tempfile
import threading
from collections.abc import Callable
from typing import Any, NamedTuple, TextIO

from neural_style import stopping
from neural_style.errors import UserError, one_line
from neural_style.feedforward.training.run_inputs import read_inputs
from neural_style.feedforward.training.session import TrainResult
from neural_style.ray_cluster import CLUSTER_SETTING, RayCluster
from neural_style.settings.network import NetworkSettings
from neural_style.vgg.weights_file import resolve_weights_path

# Seconds between the driver's looks at a stop request while Ray Train runs.
POLL_SECONDS = 0.1

# The paths a worker opens, made absolute: a Ray worker's working folder is not the driver's.
_PATH_SETTINGS = (
    "network_dataset",
    "network_style_image",
    "network_sample_image",
    "network_output_dir",
    "vgg_model_path",
)


class Workers(NamedTuple):
    count: int  # training workers, one replica each
    gpu: bool  # a GPU each, else `cpus` CPUs each
    cpus: int


def plan_workers(cluster: RayCluster) -> Workers:
    """One worker per GPU of the cluster; without GPUs, one per node, on as many CPUs as
    the smallest node has (a worker's replica uses every core it is given)."""
    if cluster.gpus:
        return Workers(cluster.gpus, True, 1)
    return Workers(cluster.nodes, False, cluster.smallest_node_cpus)


def train_network_on_ray(
    settings: NetworkSettings, train: Callable[..., TrainResult], stream: TextIO | None = None
) -> TrainResult:
    """The training run of `train_network` on the Ray cluster RAY_ADDRESS names (or a local
    one started for it), through Ray Train: each worker calls `train` (run.py's
    train_network, handed over so that nothing here imports that composition root) with
    the settings and a stream; the chief's lines are printed on `stream`, and its result
    returned.

    Raises:
      UserError: one line, for the inputs (read here first), the cluster, NETWORK_BATCH_SIZE
        against the workers, or any worker's own UserError.
    """
    stream = stream or sys.stdout
    read_inputs(settings)  # the inputs' errors, before any cluster starts
    settings = _absolute_paths(settings, stream)
    cluster = RayCluster(stream)
    cluster.start()
    try:
        workers = plan_workers(cluster)
        if settings.network_batch_size % workers.count:
            raise UserError(
                f"NETWORK_BATCH_SIZE (--network_batch_size) is {settings.network_batch_size}, "
                f"which does not split evenly over the cluster's {workers.count} training "
                f"workers; use a multiple of {workers.count}"
            )
        each = "a GPU" if workers.gpu else f"{workers.cpus} CPU{'s' * (workers.cpus > 1)}"
        print(
            f"training on the Ray cluster with Ray Train: {workers.count} worker(s), {each} each",
            file=stream,
            flush=True,
        )
        return _fit(settings, train, workers, stream)
    finally:
        cluster.close()


def _absolute_paths(settings: NetworkSettings, stream: TextIO) -> NetworkSettings:
    """`settings` with CLUSTER "" (a worker trains in its own process) and every path
    absolute; the VGG file resolved here once (the synthetic stand-in written, if needed)."""
    weights = resolve_weights_path(settings.vgg_model_path, stream)
    paths = {name: getattr(settings, name) for name in _PATH_SETTINGS}
    paths["vgg_model_path"] = weights
    absolute = {name: os.path.abspath(path) for name, path in paths.items() if path}
    return dataclasses.replace(settings, cluster="", **absolute)


class StopBoard:
    """A Ray actor: the driver's stop request, and the count of steps after which every
    worker stops. The first worker to hear of the request after its step k stops after
    step k + 1, and so does every other: none can have finished step k + 2 without it (a
    step waits for every worker's gradients), and any that had gone on past k did so into
    step k + 1."""

    def __init__(self) -> None:
        self.signal_number: int | None = None
        self.at: int | None = None

    def stop(self, signal_number: int) -> None:
        if self.signal_number is None:
            self.signal_number = signal_number

    def poll(self, steps: int) -> tuple[int, int] | None:
        """After a worker's `steps`-th step: (the step count to stop after, the signal), or
        None while no stop is asked."""
        if self.signal_number is None:
            return None
        if self.at is None:
            self.at = steps + 1
        return self.at, self.signal_number


class AgreedStop(stopping.Controls):
    """A Ray Train worker's controls: a stop asked of it (a signal to this worker) or of
    the driver stops it only at the step the board fixes for every worker; before then,
    `raise_if_stopped`, which the training loop calls after each step, goes on."""

    def __init__(self, board: Any):
        super().__init__()
        self.board = board
        self.steps = 0  # calls of raise_if_stopped: steps taken by this run
        self.posted = False

    def raise_if_stopped(self) -> None:
        import ray

        self.steps += 1
        asked = self.stop_requested
        if asked is not None and not self.posted:
            self.posted = True
            self.board.stop.remote(asked)
        agreed = ray.get(self.board.poll.remote(self.steps))
        if agreed is not None and self.steps >= agreed[0]:
            self.request_stop(agreed[1])
            raise stopping.Stopped(self.stop_requested)


def _fit(
    settings: NetworkSettings, train: Callable[..., TrainResult], workers: Workers, stream: TextIO
) -> TrainResult:
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.tensorflow import TensorflowTrainer
    from ray.util.queue import Queue

    lines = Queue()
    heard = _Heard()
    printer = threading.Thread(target=_print_lines, args=(lines, stream, heard), daemon=True)
    printer.start()
    board = ray.remote(StopBoard).options(num_cpus=0).remote()
    # Ray Train keeps a record of each run (no checkpoint goes there: the chief writes the
    # run's own); a temporary folder, on the driver's file system as the outputs are.
    with tempfile.TemporaryDirectory(prefix="neural-style-ray-train-") as storage:
        scaling = ScalingConfig(
            num_workers=workers.count,
            use_gpu=workers.gpu,
            resources_per_worker=None if workers.gpu else {"CPU": workers.cpus},
            placement_strategy="SPREAD",
        )
        trainer = TensorflowTrainer(
            _train_worker,
            train_loop_config={
                "settings": settings,
                "train": train,
                "lines": lines,
                "cpus": workers.cpus,
                "board": board,
            },
            scaling_config=scaling,
            run_config=RunConfig(name="train_network", storage_path=storage),
        )
        try:
            _fit_heeding_stops(trainer, board, stream)
        except Exception as error:  # Ray Train's TrainingFailedError and its kinds
            failure = error
        else:
            failure = None
        finally:
            lines.put(("end", ""))
            printer.join()
    if heard.stopped is not None and failure is None:
        raise stopping.Stopped(heard.stopped)
    if failure is not None or heard.result is None:
        if heard.error:
            raise UserError(heard.error) from None
        raise UserError(
            one_line(
                f"{CLUSTER_SETTING} ray: the training failed on the cluster: {failure}; the "
                "workers' logs are in /tmp/ray/session_latest/logs on their nodes"
            )
        ) from None
    return heard.result


def _fit_heeding_stops(trainer: Any, board: Any, stream: TextIO) -> None:
    """trainer.fit(), in a thread of its own: Ray Train would take SIGINT in the main
    thread and end the workers where they are. Here the main thread hears the stop
    signals (stopping.deferred) and posts a stop on the board, once."""
    outcome: dict[str, BaseException] = {}

    def fit() -> None:
        try:
            trainer.fit()
        except BaseException as error:  # handed to the main thread
            outcome["error"] = error

    fitting = threading.Thread(target=fit, name="ray-train-fit", daemon=True)
    notice = "every worker stops after the same step, then saving"
    with stopping.deferred(notice=notice) as controls:
        fitting.start()
        posted = False
        while fitting.is_alive():
            fitting.join(POLL_SECONDS)
            if controls.stop_requested is not None and not posted:
                posted = True
                board.stop.remote(controls.stop_requested)
    if "error" in outcome:
        raise outcome["error"]


@dataclasses.dataclass
class _Heard:
    """What the workers sent the driver besides their lines."""

    error: str = ""  # the first worker's error line
    result: TrainResult | None = None  # the chief's
    stopped: int | None = None  # the signal the workers stopped for, having saved


def _print_lines(lines: Any, stream: TextIO, heard: _Heard) -> None:
    """Prints the workers' lines as they come, until the driver's ("end", ""); the rest of
    what they send is kept in `heard`."""
    while True:
        kind, text = lines.get()
        if kind == "end":
            return
        if kind == "error":
            heard.error = heard.error or text
        elif kind == "result":
            heard.result = text
        elif kind == "stopped":
            heard.stopped = text
        else:
            print(text, file=stream, flush=True)


class _QueueStream:
    """A text stream whose whole lines go to the driver's queue; nothing if not `shown`."""

    def __init__(self, lines: Any, shown: bool):
        self.lines = lines
        self.shown = shown
        self.pending = ""

    def write(self, text: str) -> int:
        self.pending += text
        *whole, self.pending = self.pending.split("\n")
        if self.shown:
            for line in whole:
                self.lines.put(("line", line))
        return len(text)

    def flush(self) -> None:
        pass


def _train_worker(config: dict) -> None:
    """One Ray Train worker: `train_network` as a worker of the TF_CONFIG cluster Ray Train
    set up, the chief's lines (and this worker's first and last) sent to the driver."""
    import ray
    import ray.train

    settings, train, lines = config["settings"], config["train"], config["lines"]
    cpus = config["cpus"]
    context = ray.train.get_context()
    rank, size = context.get_world_rank(), context.get_world_size()
    # Before TensorFlow starts: its thread pools use only this worker's CPUs.
    os.environ["TF_NUM_INTRAOP_THREADS"] = os.environ["TF_NUM_INTEROP_THREADS"] = str(cpus)
    node = ray.get_runtime_context().get_node_id()
    where = f"on node {ray.util.get_node_ip_address()} ({node[:8]}), process {os.getpid()}"
    lines.put(("line", f"worker {rank + 1}/{size} {where}"))
    controls = AgreedStop(config["board"])
    try:
        result = train(settings, stream=_QueueStream(lines, shown=rank == 0), controls=controls)
    except UserError as error:
        lines.put(("error", str(error)))
        raise
    except stopping.Stopped as stop:  # saved, at the step every worker stopped after
        lines.put(("line", f"worker {rank + 1}/{size} stopped and saved"))
        if rank == 0:
            lines.put(("stopped", stop.signal_number))
        return
    lines.put(("line", f"worker {rank + 1}/{size} trained to step {result.steps}"))
    if rank == 0:
        lines.put(("result", result))
