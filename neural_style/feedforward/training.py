"""Training the feed-forward style network, on one device or many (tf.distribute).

    python train_network.py --network_dataset=coco/train2014 --network_style_image=wave.jpg

`train_network(settings)` does the whole run and owns its files in NETWORK_OUTPUT_DIR:

    network.keras            the trained network (also written on Ctrl-C)
    network-settings.json    the settings it was trained with, and the steps it has had
    checkpoints/             tf.train.CheckpointManager's, for NETWORK_RESUME
    sample-<step>.jpg        NETWORK_SAMPLE_IMAGE stylised by the network at that step
    losses.csv               one row per step: step, content, style, tv, total, seconds
    skipped-files.txt        the dataset files that could not be used, and why

The loss network is VGG-19 from the .mat file, frozen, with the optimiser's loss functions
(neural_style.losses.objective); the style image's Gram matrices are computed once.
`Trainer` holds the model, the optimiser and the distributed step and does no file I/O.

Distribution: MirroredStrategy over every visible GPU (or the CPU), MultiWorkerMirrored-
Strategy when TF_CONFIG describes a cluster. The global batch NETWORK_BATCH_SIZE is split
evenly over the replicas; each replica's loss is its images' mean loss times its share of
the global batch, so the summed gradients are those of the global batch's mean loss.

Shapes: photos and stylised images are [B, S, S, 3] float32 RGB in 0..255.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import sys
import tempfile
import time
from typing import NamedTuple, TextIO

import keras
import numpy as np
import tensorflow as tf

from neural_style import images, losses
from neural_style.config import NetworkSettings
from neural_style.errors import UserError
from neural_style.feedforward import data
from neural_style.feedforward.model import build_transformer
from neural_style.files import atomic_write_text
from neural_style.reporting import format_duration, is_due
from neural_style.vgg import VGG19

MODEL_NAME = "network.keras"
LOSS_NAMES = ("content", "style", "tv", "total")


# --- the loss ---------------------------------------------------------------------------


class PerceptualLoss:
    """Johnson et al.'s loss: content against the input photo's own VGG features, style
    against the style image's Gram matrices (computed once), and total variation.

    `loss(stylised, photos)` returns the total and its parts, each the mean over the batch.
    """

    def __init__(self, vgg: VGG19, style_image: np.ndarray, weights: losses.LossWeights):
        self.vgg = vgg
        self.weights = weights
        self.content_layers = [name for name, _ in weights.content_layers]
        self.style_layers = [name for name, _ in weights.style_layers]
        style_features = vgg(style_image[np.newaxis], self.style_layers)
        self.style_grams = {
            name: tf.constant(losses.gram_matrix(style_features[name]))
            for name in self.style_layers
        }

    def __call__(
        self, stylised: tf.Tensor, photos: tf.Tensor
    ) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
        content_targets = self.vgg(photos, self.content_layers)
        targets = losses.Targets(
            content={name: tf.stop_gradient(t) for name, t in content_targets.items()},
            style_grams=self.style_grams,
        )
        features = self.vgg(stylised, set(self.content_layers) | set(self.style_layers))
        _, per_image = losses.objective_per_image(features, stylised, targets, self.weights)
        content, style, tv = (
            tf.reduce_mean(per_image[name]) for name in ("content", "style", "tv")
        )
        total = (
            self.weights.alpha * content + self.weights.beta * style + self.weights.tv_weight * tv
        )
        return total, {"content": content, "style": style, "tv": tv, "total": total}


def loss_weights(settings: NetworkSettings) -> losses.LossWeights:
    return losses.LossWeights(
        content_layers=settings.network_content_layers,
        style_layers=settings.network_style_layers,
        alpha=settings.network_content_weight,
        beta=settings.network_style_weight,
        tv_weight=settings.network_tv_weight,
    )


# --- the distributed step ---------------------------------------------------------------


def choose_strategy() -> tf.distribute.Strategy:
    """MultiWorkerMirroredStrategy when TF_CONFIG names a cluster of several tasks, else
    MirroredStrategy over every visible GPU (the CPU when there is none)."""
    if _cluster_size() > 1:
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.MirroredStrategy()


def _cluster_size() -> int:
    text = os.environ.get("TF_CONFIG", "")
    if not text.strip():
        return 1
    try:
        cluster = json.loads(text).get("cluster", {})
        return sum(len(tasks) for tasks in cluster.values())
    except (ValueError, AttributeError, TypeError):
        raise UserError(
            "TF_CONFIG is not valid JSON of the form "
            '{"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", "index": 0}}'
        ) from None


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
    losses: dict[str, float]  # content, style, tv, total: means over the global batch
    seconds: float  # wall time of the step, including waiting for the data


class Trainer:
    """The network, Adam and one distributed training step; no file I/O.

    Build it inside `strategy.scope()` is not needed: it enters the scope itself to create
    the network and the optimiser, so their variables are mirrored on every replica.
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
        with strategy.scope():
            self.model = build_transformer(width=width, seed=seed)
            self.optimizer = keras.optimizers.Adam(learning_rate)
            self.optimizer.build(self.model.trainable_variables)
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        self.checkpoint = tf.train.Checkpoint(
            model=self.model, optimizer=self.optimizer, step=self.step
        )

    def _replica_step(self, photos: tf.Tensor) -> dict[str, tf.Tensor]:
        share = tf.cast(tf.shape(photos)[0], tf.float32) / self.global_batch_size
        with tf.GradientTape() as tape:
            stylised = self.model(photos, training=True)
            total, parts = self.loss(stylised, photos)
            scaled = total * share
        variables = self.model.trainable_variables
        gradients = tape.gradient(scaled, variables)
        # Keras sums the gradients over the replicas before applying them.
        self.optimizer.apply_gradients(zip(gradients, variables, strict=True))
        return {name: value * share for name, value in parts.items()}

    @tf.function
    def distributed_step(self, photos) -> dict[str, tf.Tensor]:
        """One step on a distributed batch; the losses are the global batch's means."""
        per_replica = self.strategy.run(self._replica_step, args=(photos,))
        self.step.assign_add(1)
        return {
            name: self.strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None)
            for name, value in per_replica.items()
        }

    def distribute_batch(self, batch: np.ndarray):
        """Splits one global batch [B, H, W, 3] evenly over the replicas, in order."""
        share = len(batch) // self.strategy.num_replicas_in_sync

        def replica_part(context: tf.distribute.InputContext):
            start = context.replica_id_in_sync_group * share
            return tf.constant(batch[start : start + share])

        return self.strategy.experimental_distribute_values_from_function(replica_part)

    def distribute_dataset(self, make_dataset):
        """`make_dataset(input_context)` -> a per-replica-batch dataset, one per worker."""
        return self.strategy.distribute_datasets_from_function(make_dataset)

    def steps(self, batches, total_steps: int):
        """Trains until `self.step` reaches `total_steps`, yielding a StepResult per step."""
        iterator = iter(batches)
        while int(self.step.numpy()) < total_steps:
            started = time.perf_counter()
            photos = next(iterator)
            parts = self.distributed_step(photos)
            values = {name: float(value.numpy()) for name, value in parts.items()}
            yield StepResult(int(self.step.numpy()), values, time.perf_counter() - started)


# --- the run: data, files, progress -----------------------------------------------------


class TrainResult(NamedTuple):
    model_path: str  # the saved .keras network
    steps: int  # steps the network has had, over every resumed run
    losses: dict[str, float]  # the losses at the last step of this run
    skipped: dict[str, str]  # dataset files that could not be used, and why


def total_steps(settings: NetworkSettings, file_count: int) -> int:
    """NETWORK_STEPS, or NETWORK_EPOCHS passes over `file_count` photos when it is set."""
    if settings.network_epochs:
        return max(1, math.ceil(settings.network_epochs * file_count / settings.network_batch_size))
    return settings.network_steps


def load_style_image(settings: NetworkSettings) -> np.ndarray:
    style = images.load_image(settings.network_style_image, "NETWORK_STYLE_IMAGE")
    longest = settings.network_style_size
    height, width = style.shape[:2]
    if longest and max(height, width) != longest:
        scale = longest / max(height, width)
        size = (
            max(images.MIN_SIDE, round(height * scale)),
            max(images.MIN_SIDE, round(width * scale)),
        )
        style = images.resize_image(style, size)
    return style


class ProgressLine:
    """`step 20/400  content 9.4 ... total 152  3.1 img/s  ETA 2m05s`, every few steps."""

    def __init__(self, first_step: int, total: int, every: int, batch: int, stream: TextIO):
        self.total, self.every, self.batch, self.stream = total, every, batch, stream
        self._last_step, self._last_time = first_step, time.perf_counter()

    def update(self, result: StepResult, skipped: int) -> None:
        if not (result.step == 1 or is_due(result.step, self.every, self.total)):
            return
        now = time.perf_counter()
        steps = max(result.step - self._last_step, 1)
        seconds_per_step = (now - self._last_time) / steps
        self._last_step, self._last_time = result.step, now
        parts = "  ".join(f"{name} {result.losses[name]:.4g}" for name in LOSS_NAMES)
        rate = self.batch / seconds_per_step if seconds_per_step > 0 else float("inf")
        eta = format_duration(seconds_per_step * (self.total - result.step))
        note = f"  skipped {skipped}" if skipped else ""
        width = len(str(self.total))
        print(
            f"step {result.step:>{width}}/{self.total}  {parts}  {rate:.3g} img/s  ETA {eta}{note}",
            file=self.stream,
            flush=True,
        )


class _LossCsv:
    """losses.csv, appended to, so that a resumed run continues the same log."""

    def __init__(self, path: str):
        new = not os.path.exists(path)
        self._file = open(path, "a", newline="", encoding="utf-8")  # noqa: SIM115
        self._writer = csv.writer(self._file)
        if new:
            self._writer.writerow(("step", *LOSS_NAMES, "seconds"))

    def write(self, result: StepResult) -> None:
        values = (repr(result.losses[name]) for name in LOSS_NAMES)
        self._writer.writerow((result.step, *values, f"{result.seconds:.4f}"))
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def save_network(model: keras.Model, path: str, settings_record: dict) -> None:
    """The .keras file and `<name>-settings.json` beside it, each written atomically."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    # Keras insists on the .keras extension, so the temporary file keeps it.
    with tempfile.TemporaryDirectory(dir=directory, prefix=".saving-") as temporary:
        partial = os.path.join(temporary, os.path.basename(path))
        model.save(partial)
        os.replace(partial, path)
    record = json.dumps(settings_record, indent=2, default=str) + "\n"
    atomic_write_text(settings_path(path), record)


def settings_path(model_path: str) -> str:
    """`network.keras` -> `network-settings.json`."""
    return f"{os.path.splitext(model_path)[0]}-settings.json"


def _checkpoint_directory(settings: NetworkSettings, chief: bool) -> str:
    # Every worker must save (saving is a collective operation); only the chief's counts.
    if chief:
        return os.path.join(settings.network_output_dir, "checkpoints")
    return tempfile.mkdtemp(prefix="neural-style-worker-checkpoints-")


def train_network(settings: NetworkSettings, stream: TextIO | None = None) -> TrainResult:
    """The whole training run, as `python train_network.py` does it (see the module doc)."""
    stream = stream or sys.stdout
    from neural_style.run import resolve_weights_path, start_tensorflow

    paths = data.list_images(settings.network_dataset)
    style = load_style_image(settings)
    sample = images.load_image(settings.network_sample_image, "NETWORK_SAMPLE_IMAGE")
    weights_path = resolve_weights_path(settings.vgg_model_path, stream)
    vgg = VGG19.from_mat(weights_path, pooling=settings.pooling)
    print(start_tensorflow()[0], file=stream, flush=True)

    strategy = choose_strategy()
    chief = is_chief(strategy)
    steps_wanted = total_steps(settings, len(paths))
    loss = PerceptualLoss(vgg, style, loss_weights(settings))
    trainer = Trainer(
        strategy,
        loss,
        width=settings.network_width,
        learning_rate=settings.network_learning_rate,
        global_batch_size=settings.network_batch_size,
        seed=settings.network_seed,
    )
    output = settings.network_output_dir
    os.makedirs(output, exist_ok=True)
    manager = tf.train.CheckpointManager(
        trainer.checkpoint, _checkpoint_directory(settings, chief), max_to_keep=3
    )
    _restore_or_start(settings, manager, stream)
    first_step = int(trainer.step.numpy())
    print(
        f"training on {len(paths)} files in {settings.network_dataset}, style "
        f"{settings.network_style_image}, {strategy.num_replicas_in_sync} replica(s), "
        f"batch {settings.network_batch_size} of {settings.network_image_size}px, "
        f"steps {first_step + 1}..{steps_wanted}",
        file=stream,
        flush=True,
    )

    skipped_per_pipeline: list[data.SkippedFiles] = []

    def make_dataset(context: tf.distribute.InputContext) -> tf.data.Dataset:
        share = paths[context.input_pipeline_id :: context.num_input_pipelines]
        skipped = data.SkippedFiles(len(share))
        skipped_per_pipeline.append(skipped)
        return data.photo_batches(
            share,
            image_size=settings.network_image_size,
            batch_size=context.get_per_replica_batch_size(settings.network_batch_size),
            seed=settings.network_seed + first_step,
            skipped=skipped,
        )

    batches = trainer.distribute_dataset(make_dataset)
    model_path = os.path.join(output, MODEL_NAME)
    record = {**dataclasses.asdict(settings), "vgg_weights_used": weights_path}

    def skipped_reasons() -> dict[str, str]:
        return {k: v for s in skipped_per_pipeline for k, v in s.reasons().items()}

    def save_all(step: int) -> None:
        manager.save(checkpoint_number=step)
        if chief:
            save_network(trainer.model, model_path, {**record, "steps_trained": step})

    progress = ProgressLine(
        first_step, steps_wanted, settings.network_print_every, settings.network_batch_size, stream
    )
    log = _LossCsv(os.path.join(output, "losses.csv")) if chief else None
    result = None
    try:
        for result in trainer.steps(batches, steps_wanted):
            if not all(math.isfinite(value) for value in result.losses.values()):
                raise UserError(
                    f"the loss became {result.losses['total']} at step {result.step}; lower "
                    "NETWORK_LEARNING_RATE (--network_learning_rate) or the loss weights"
                )
            if log:
                log.write(result)
            progress.update(result, len(skipped_reasons()))
            if chief and is_due(result.step, settings.network_sample_every, steps_wanted):
                _write_sample(
                    trainer.model, sample, os.path.join(output, f"sample-{result.step}.jpg")
                )
            if is_due(result.step, settings.network_checkpoint_every, steps_wanted):
                save_all(result.step)
    except tf.errors.OpError as error:
        if any(s.count >= s.total for s in skipped_per_pipeline):
            _write_skipped(output, skipped_reasons())
            raise UserError(
                f"{settings.network_dataset}: none of its {len(paths)} image files could be "
                f"used ({_first_reason(skipped_reasons())}); see {output}/skipped-files.txt"
            ) from None
        raise error
    except KeyboardInterrupt:
        done = int(trainer.step.numpy())
        if done > first_step:
            save_all(done)
        print(f"\ninterrupted at step {done}: saved {model_path}", file=stream, flush=True)
        raise
    finally:
        if log:
            log.close()
    if result is None:  # resumed at or beyond the wanted steps
        save_all(first_step)
    reasons = skipped_reasons()
    if chief:
        _write_skipped(output, reasons)
    if reasons:
        print(
            f"note: {len(reasons)} dataset files skipped; see {output}/skipped-files.txt",
            file=stream,
        )
    print(f"saved {model_path}", file=stream, flush=True)
    steps = result.step if result else first_step
    return TrainResult(model_path, steps, result.losses if result else {}, reasons)


def _restore_or_start(
    settings: NetworkSettings, manager: tf.train.CheckpointManager, stream: TextIO
) -> None:
    latest = manager.latest_checkpoint
    where = settings.network_output_dir
    if settings.network_resume:
        if latest is None:
            raise UserError(
                f"NETWORK_RESUME (--network_resume) is set but {where} has no checkpoint; "
                "start without it, or set NETWORK_OUTPUT_DIR to the earlier run's folder"
            )
        manager.checkpoint.restore(latest).assert_existing_objects_matched()
        print(f"resuming from {latest}", file=stream)
    elif latest is not None:
        raise UserError(
            f"{where} holds checkpoints of an earlier run; pass --network_resume to continue "
            "it, or set NETWORK_OUTPUT_DIR (--network_output_dir) to a new folder"
        )


def _write_sample(model: keras.Model, photo: np.ndarray, path: str) -> None:
    stylised = model(photo[np.newaxis], training=False)
    images.save_image(path, np.asarray(stylised)[0])


def _write_skipped(output: str, reasons: dict[str, str]) -> None:
    lines = "".join(f"{path}\t{reason}\n" for path, reason in reasons.items())
    atomic_write_text(os.path.join(output, "skipped-files.txt"), lines)


def _first_reason(reasons: dict[str, str]) -> str:
    if not reasons:
        return "no reason recorded"
    path, reason = next(iter(reasons.items()))
    return f"first: {path}: {reason}"
