"""One training step of the feed-forward network on two logical CPUs, against one device.

Run by tests/test_feedforward_training.py in a subprocess, because the CPU must be split
into logical devices before TensorFlow initialises its devices:

    python tests/feedforward_distributed_step.py TINY.mat

Prints one JSON line: the replica count and the losses of two steps on each.
"""

import json
import os
import sys

import numpy as np
import tensorflow as tf

tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices("CPU")[0],
    [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()],
)

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from neural_style.feedforward.training.loss import PerceptualLoss  # noqa: E402
from neural_style.feedforward.training.trainer import Trainer  # noqa: E402
from neural_style.losses.gatys import LossWeights  # noqa: E402
from neural_style.vgg.network import VGG19  # noqa: E402

SIZE, BATCH = 32, 4


def two_steps(strategy: tf.distribute.Strategy, loss: PerceptualLoss, photos: np.ndarray):
    """The losses of two steps on the same batch: the first checks the forward pass and its
    reduction, the second that the first step's update was the same."""
    trainer = Trainer(strategy, loss, width=2, learning_rate=0.01, global_batch_size=BATCH, seed=7)
    results = []
    for _ in range(2):
        losses = trainer.distributed_step(trainer.distribute_batch(photos))
        results.append({name: float(value) for name, value in losses.items()})
    return results


def main(mat_path: str) -> None:
    rng = np.random.default_rng(0)
    photos = rng.uniform(0, 255, (BATCH, SIZE, SIZE, 3)).astype(np.float32)
    style = rng.uniform(0, 255, (40, 40, 3)).astype(np.float32)
    weights = LossWeights(
        content_layers=(("relu2_2", 1.0),),
        style_layers=(("relu1_2", 0.5), ("relu2_2", 0.5)),
        alpha=1.0,
        beta=50.0,
        tv_weight=1e-3,
    )
    loss = PerceptualLoss(VGG19.from_mat(mat_path), style, weights)
    cpus = [device.name for device in tf.config.list_logical_devices("CPU")]
    mirrored_strategy = tf.distribute.MirroredStrategy(cpus[:2])
    report = {
        "replicas": mirrored_strategy.num_replicas_in_sync,
        "single": two_steps(tf.distribute.OneDeviceStrategy(cpus[0]), loss, photos),
        "mirrored": two_steps(mirrored_strategy, loss, photos),
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1])
