"""Training the feed-forward style network, on one device or many (tf.distribute).

    python train_network.py --network_dataset=coco/train2014 --network_style_image=wave.jpg

`train_network(settings)` does the whole run and owns its files in NETWORK_OUTPUT_DIR:

    network.keras            the trained network (also written when the run is stopped)
    network-settings.json    the settings it was trained with, and the steps it has had
    checkpoints/             tf.train.CheckpointManager's, for NETWORK_RESUME, and
                             training-settings.json: what they were trained towards
    sample-<step>.jpg        NETWORK_SAMPLE_IMAGE stylised by the network at that step
    losses.csv               one row per step: step, content, style, tv, total, seconds
    skipped-files.txt        the dataset files that could not be used, and why
    .lock                    held while a run lives, so that two runs never share the folder

A run never replaces an earlier run's files unless NETWORK_RESUME continues that run or
NETWORK_OVERWRITE replaces it; a resumed run must keep what shapes the network (the style
image's bytes, its size, the loss layers and weights, the crop size, the width). Ctrl-C,
SIGTERM and SIGHUP end the step in progress, save the network and a checkpoint, and stop.

The run in order, one module a job (data flows one way, down this list):

    run_inputs.py  the dataset's files, the style and sample images; the photo pipelines
    run_files.py   the names of the run's files and the settings record
    run_folder.py  the output folder: locked, checked against an earlier run
    loss.py        the perceptual loss: frozen VGG-19, the style's Grams computed once
    trainer.py     the strategy, the network, Adam and the distributed step; no file I/O
    saving.py      the network and the checkpoints on disk
    writers.py     the losses log, the samples, the skipped files
    session.py     the loop: each step to the writers; a stop request saves first

Distribution: MirroredStrategy over every visible GPU (or the CPU), MultiWorkerMirrored-
Strategy when TF_CONFIG describes a cluster. Each worker reads its own share of the photos;
only the chief (worker 0) writes files.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TextIO

from neural_style import stopping
from neural_style.feedforward.training.run_files import settings_record
from neural_style.feedforward.training.run_folder import claimed_output
from neural_style.feedforward.training.run_inputs import read_inputs
from neural_style.feedforward.training.saving import Saver
from neural_style.feedforward.training.session import TrainingObserver, TrainingSession, TrainResult
from neural_style.feedforward.training.trainer import (
    build_trainer,
    choose_strategy,
    is_chief,
    training_precision,
)
from neural_style.runtime import start_tensorflow
from neural_style.settings.network import NetworkSettings
from neural_style.vgg.weights_file import resolve_weights_path


def train_network(
    settings: NetworkSettings,
    stream: TextIO | None = None,
    observers: Sequence[TrainingObserver] = (),
    controls: stopping.Controls | None = None,
) -> TrainResult:
    """The whole training run, as `python train_network.py` does it (see the module doc);
    `observers` (the chief's) hear each step and sample, e.g. a live view, whose buttons
    ask `controls` to stop or to sample now.

    Raises:
      UserError: one line for anything the user can fix (inputs, the output folder, a
        failed write, a diverging loss).
      stopping.Stopped: the run was asked to stop (after saving, once it had trained).
    """
    stream = stream or sys.stdout
    if settings.cluster == "ray":
        from neural_style.feedforward.training.ray_train import train_network_on_ray

        if observers:
            print("note: the live view (--web) does not follow a run on a cluster", file=stream)
        return train_network_on_ray(settings, train_network, stream)
    inputs = read_inputs(settings)
    # Before anything else of TensorFlow's: see choose_strategy.
    strategy = choose_strategy(stream)
    record = settings_record(settings, inputs.style_sha256)
    with claimed_output(settings, is_chief(strategy), record) as folder:
        weights_path = resolve_weights_path(settings.vgg_model_path, stream)
        machine = start_tensorflow()
        precision, note = training_precision(settings.network_precision, machine.on_gpu)
        print(f"{machine.description}; training in {precision}", file=stream, flush=True)
        if note:
            print(note, file=stream, flush=True)
        trainer = build_trainer(settings, strategy, inputs.style, weights_path, precision)
        saver = Saver(trainer, folder, {**record, "vgg_weights_used": weights_path})
        first_step = 0
        if settings.network_resume:
            first_step = saver.restore(stream)
            # The checkpoint holds the earlier run's rate; a resumed run may change it.
            trainer.optimizer.learning_rate.assign(settings.network_learning_rate)
        session = TrainingSession(settings, trainer, saver, inputs, stream, observers, controls)
        return session.run(first_step)
