"""The network, its optimiser and one distributed training step; no file I/O.

Distribution: MirroredStrategy over every visible GPU (or the CPU), MultiWorkerMirrored-
Strategy when TF_CONFIG describes a cluster (`choose_strategy`). The global batch
NETWORK_BATCH_SIZE is split evenly over the replicas; each replica's loss is its images'
mean loss times its share of the global batch, so the summed gradients are those of the
global batch's mean loss. Only the chief (`is_chief`) writes the run's files.

Shapes: photos and stylised images are [B, S, S, 3] float32 RGB in 0..255.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import NamedTuple, TextIO

import keras
import numpy as np
import tensorflow as tf

from neural_style import stopping
from neural_style.errors import UserError
from neural_style.feedforward.model import build_transformer, with_precision
from neural_style.feedforward.training.cluster import read_cluster
from neural_style.feedforward.training.loss import PerceptualLoss, perceptual_loss
from neural_style.feedforward.training.temporal import random_transforms, synthetic_motion_loss
from neural_style.runtime import native_stderr_silenced, resolve_network_precision
from neural_style.settings.network import NetworkSettings


def choose_strategy(stream: TextIO | None = None) -> tf.distribute.Strategy:
    """MultiWorkerMirroredStrategy when TF_CONFIG names a cluster of several tasks, else
    MirroredStrategy over every visible GPU (the CPU when there is none).

    Call it before anything else of TensorFlow's: a multi-worker strategy configures the
    collective ops, which TensorFlow refuses once it has listed its devices. A worker waits
    here until every task of the cluster has started, saying so on `stream`; a stop signal
    ends that wait (see stopping.interruptible), with nothing written yet.

    Raises:
      UserError: TF_CONFIG is malformed, or its task is not one of its cluster's.
    """
    if read_cluster().size > 1:
        return stopping.interruptible(
            _multi_worker_strategy,
            waiting_for="the other tasks of the cluster in TF_CONFIG",
            kept="nothing was trained or written",
            stream=stream,
        )
    return tf.distribute.MirroredStrategy()


def _multi_worker_strategy() -> tf.distribute.Strategy:
    """MultiWorkerMirroredStrategy, which waits for every task of the cluster, without
    TensorFlow's coordination service. That service waits for the other tasks inside one
    C++ call that holds Python's lock (no Python thread runs, so no stop signal is heard
    until the last task comes, which may be never) and takes SIGTERM's handler for itself,
    ignoring it. Without it the strategy waits with a first all-reduce that lets Python
    run, and checks its peers' health from a Python thread instead of the service's
    heartbeats. The setting lives in TensorFlow's private eager context: the public API has
    no switch for it."""
    from tensorflow.python.eager import context

    context.context().configure_coordination_service(service_type="")
    return tf.distribute.MultiWorkerMirroredStrategy()


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the run's files: always, except for the workers of a
    multi-worker cluster other than the chief (or worker 0 when there is no chief)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief


class StepResult(NamedTuple):
    step: int  # 1-based number of the step just taken
    # content, style, tv, total (and temporal when it is on): means over the global batch
    losses: dict[str, float]
    seconds: float  # wall time of the step, including waiting for the data


class Trainer:
    """The network, Adam and one distributed training step; no file I/O.

    It enters `strategy.scope()` itself to create the network and the optimiser, so their
    variables are mirrored on every replica. With `temporal_weight` above 0 each step also
    adds the synthetic-motion temporal loss (temporal.py) times that weight. With
    `precision` "mixed_bfloat16" the network's convolutions compute in bfloat16 (its
    weights, instance normalisations, residual sums and Adam stay float32).
    """

    def __init__(
        self,
        strategy: tf.distribute.Strategy,
        loss: PerceptualLoss,
        *,
        width: int,
        learning_rate: float,
        global_batch_size: int,
        seed: int,
        temporal_weight: float = 0.0,
        precision: str = "float32",
    ):
        replicas = strategy.num_replicas_in_sync
        if global_batch_size % replicas:
            raise UserError(
                f"NETWORK_BATCH_SIZE (--network_batch_size) is {global_batch_size}, which does "
                f"not split evenly over {replicas} replicas (GPUs x workers); use a multiple "
                f"of {replicas}"
            )
        self.strategy = strategy
        self.loss = loss
        self.global_batch_size = global_batch_size
        self.seed = seed
        self.temporal_weight = float(temporal_weight)
        with strategy.scope():
            self.model = with_precision(build_transformer(width=width, seed=seed), precision)
            self.optimizer = keras.optimizers.Adam(learning_rate)
            self.optimizer.build(self.model.trainable_variables)
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        self.checkpoint = tf.train.Checkpoint(
            model=self.model, optimizer=self.optimizer, step=self.step
        )

    @property
    def steps_taken(self) -> int:
        """The steps the network has had, over every resumed run."""
        return int(self.step.numpy())

    def _replica_step(self, photos: tf.Tensor) -> dict[str, tf.Tensor]:
        share = tf.cast(tf.shape(photos)[0], tf.float32) / self.global_batch_size
        with tf.GradientTape() as tape:
            # Decided when the step is traced: with the weight at 0 the step is the plain
            # one, without the moved crops' forward pass.
            if self.temporal_weight > 0:
                total, parts = self._temporal_losses(photos)
            else:
                stylised = self.model(photos, training=True)
                total, parts = self.loss(stylised, photos)
            scaled = total * share
        variables = self.model.trainable_variables
        gradients = tape.gradient(scaled, variables)
        # Keras sums the gradients over the replicas before applying them.
        self.optimizer.apply_gradients(zip(gradients, variables, strict=True))
        return {name: value * share for name, value in parts.items()}

    def _temporal_losses(self, photos: tf.Tensor) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
        """The perceptual loss plus NETWORK_TEMPORAL_WEIGHT x the synthetic-motion loss."""
        transforms = self._replica_transforms(photos)
        stylised, temporal = synthetic_motion_loss(self.model, photos, transforms)
        total, parts = self.loss(stylised, photos)
        temporal = tf.reduce_mean(temporal)
        total = total + self.temporal_weight * temporal
        return total, {**parts, "temporal": temporal, "total": total}

    def _replica_transforms(self, photos: tf.Tensor) -> tf.Tensor:
        """This replica's photos' motions: drawn for the global batch from the seed and
        the step, then this replica's share, so that the motions do not depend on how the
        batch is split over replicas."""
        context = tf.distribute.get_replica_context()
        replica = tf.cast(context.replica_id_in_sync_group, tf.int32)
        count = tf.shape(photos)[0]
        seed = tf.stack([tf.constant(self.seed, tf.int64), tf.cast(self.step, tf.int64)])
        size_h, size_w = photos.shape[1], photos.shape[2]
        every = random_transforms(self.global_batch_size, size_h, size_w, seed)
        return every[replica * count : (replica + 1) * count]

    @tf.function
    def distributed_step(self, photos: tf.distribute.DistributedValues) -> dict[str, tf.Tensor]:
        """One step on a distributed batch; the losses are the global batch's means."""
        per_replica = self.strategy.run(self._replica_step, args=(photos,))
        self.step.assign_add(1)
        return {
            name: self.strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None)
            for name, value in per_replica.items()
        }

    def distribute_batch(self, batch: np.ndarray) -> tf.distribute.DistributedValues:
        """Splits one global batch [B, H, W, 3] evenly over the replicas, in order."""
        share = len(batch) // self.strategy.num_replicas_in_sync

        def replica_part(context: tf.distribute.InputContext):
            start = context.replica_id_in_sync_group * share
            return tf.constant(batch[start : start + share])

        return self.strategy.experimental_distribute_values_from_function(replica_part)

    def distribute_dataset(
        self, make_dataset: Callable[[tf.distribute.InputContext], tf.data.Dataset]
    ) -> tf.distribute.DistributedDataset:
        """`make_dataset(input_context)` -> a per-replica-batch dataset, one per worker."""
        return self.strategy.distribute_datasets_from_function(make_dataset)

    def steps(
        self, batches: tf.distribute.DistributedDataset, total_steps: int
    ) -> Iterator[StepResult]:
        """Trains until `self.step` reaches `total_steps`, yielding a StepResult per step;
        stops early if `batches` ends (every photo of a worker's share was skipped)."""
        # The distributed iterator's C++ side logs two notes as it starts, on every run.
        with native_stderr_silenced():
            iterator = iter(batches)
        while self.steps_taken < total_steps:
            started = time.perf_counter()
            try:
                photos = next(iterator)
            except (StopIteration, tf.errors.OutOfRangeError):
                return
            parts = self.distributed_step(photos)
            values = {name: float(value.numpy()) for name, value in parts.items()}
            yield StepResult(self.steps_taken, values, time.perf_counter() - started)


def build_trainer(
    settings: NetworkSettings,
    strategy: tf.distribute.Strategy,
    style: np.ndarray,
    weights: str,
    precision: str = "float32",
) -> Trainer:
    """The loss network from the .mat file `weights`, the style's Grams, and the Trainer,
    whose network computes in `precision` (see training_precision). The loss network stays
    in float32: in bfloat16 its rounding stops the loss falling (at 128 px, 500 steps, a
    loss of 2737 against float32's 1223; benchmarks/feedforward.py --compare_steps)."""
    return Trainer(
        strategy,
        perceptual_loss(settings, style, weights),
        width=settings.network_width,
        learning_rate=settings.network_learning_rate,
        global_batch_size=settings.network_batch_size,
        seed=settings.network_seed,
        temporal_weight=settings.network_temporal_weight,
        precision=precision,
    )


def training_precision(setting: str, on_gpu: bool) -> tuple[str, str]:
    """(the precision train_network.py trains in, a note for the user or ""), from
    NETWORK_PRECISION. Only an explicit mixed_bfloat16 trains in bfloat16 (1.2x faster a
    step on the AMD EPYC of this work, the loss network staying float32): "auto" trains in
    float32 until bfloat16's losses are shown to follow float32's over hundreds of steps,
    which their run-to-run swings have not yet allowed (docs/performance.md). Mixed float16
    trains in float32 too, as it would need loss scaling, which training does not have (and
    no GPU was at hand)."""
    resolve_network_precision(setting, on_gpu)  # refuses mixed_float16 without a GPU
    if setting == "mixed_bfloat16":
        return setting, ""
    if setting != "mixed_float16":
        return "float32", ""
    note = (
        "note: train_network.py trains in float32 on a GPU; NETWORK_PRECISION's mixed "
        "float16 is for stylize.py"
    )
    return "float32", note
