"""The training loop of one run (`TrainingSession`): it takes the Trainer's steps and hands
each to the writers of the run's files (the losses log, the samples, the checkpoints) and
the progress line. A stop request (Ctrl-C, SIGTERM, SIGHUP) ends the step in progress and
saves the network and a checkpoint first. Only the chief writes files; every worker saves
checkpoints, as saving is collective.

Whoever else wants to hear the run (the live view) passes a TrainingObserver,
`train_network(settings, observers=[observer])`; the chief tells it each step and each
sample written. A snapshot asked for (Controls.request_snapshot) is a sample
after the step in progress.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from typing import NamedTuple, TextIO

import numpy as np

from neural_style import stopping
from neural_style.errors import UserError
from neural_style.feedforward.training.run_files import LOG_NAME, SKIPPED_NAME
from neural_style.feedforward.training.run_inputs import Photos, RunInputs, total_steps
from neural_style.feedforward.training.saving import Saver
from neural_style.feedforward.training.trainer import StepResult, Trainer
from neural_style.feedforward.training.writers import LazyLossLog, write_sample, write_skipped
from neural_style.names import LOSS_NAMES, TEMPORAL_LOSS_NAMES
from neural_style.progress import ProgressLine, is_due
from neural_style.settings.network import NetworkSettings


class TrainResult(NamedTuple):
    model_path: str  # the saved .keras network
    steps: int  # steps the network has had, over every resumed run
    losses: dict[str, float]  # the losses at the last step of this run
    skipped: dict[str, str]  # dataset files that could not be used, and why


class TrainingObserver:
    """Hears a training run (on the chief); every method does nothing unless overridden.
    Images are [H, W, 3] float32 RGB in 0..255."""

    def started(self, style: np.ndarray, sample: np.ndarray, first_step: int, wanted: int) -> None:
        """The style image, the photo the samples stylise, and the steps to take."""

    def step(self, step: int, losses: dict[str, float], seconds: float, wanted: int) -> None:
        pass

    def sample(self, step: int, path: str) -> None:
        """A sample was written to `path` (a JPEG of the run's folder)."""


class TrainingSession:
    """One run of the loop: each step goes to the writers of the run's files (the losses
    log, the samples, the checkpoints) and the progress line; a stop request saves first."""

    def __init__(
        self,
        settings: NetworkSettings,
        trainer: Trainer,
        saver: Saver,
        inputs: RunInputs,
        stream: TextIO,
        observers: Sequence[TrainingObserver] = (),
        controls: stopping.Controls | None = None,
    ):
        self.settings = settings
        self.controls = controls if controls is not None else stopping.Controls()
        self.trainer = trainer
        self.saver = saver
        self.inputs = inputs
        self.stream = stream
        self.observers = list(observers) if saver.folder.chief else []
        # The loss parts of each step: with the temporal loss, its own column too.
        self.loss_names = TEMPORAL_LOSS_NAMES if settings.network_temporal_weight else LOSS_NAMES
        self.chief = saver.folder.chief
        self.output = saver.folder.path
        self.wanted = total_steps(settings, len(inputs.paths))

    def run(self, first_step: int) -> TrainResult:
        """Trains from `first_step` to the wanted steps and saves the result."""
        photos = Photos(self.inputs.paths, self.settings, self.settings.network_seed + first_step)
        batches = self.trainer.distribute_dataset(photos.make_dataset)
        self._announce(first_step)
        for observer in self.observers:
            observer.started(self.inputs.style, self.inputs.sample, first_step, self.wanted)
        keep_until = first_step if self.settings.network_resume else None
        log = LazyLossLog(os.path.join(self.output, LOG_NAME), keep_until, self.loss_names)
        try:
            last = self._loop(batches, first_step, self._step_writers(first_step, log, photos))
        finally:
            log.close()
        # The final save is as safe from a stop as the steps: it completes, then the stop.
        with stopping.deferred(self.controls):
            result = self._finish(last, first_step, photos)
        self.controls.raise_if_stopped()
        return result

    def _announce(self, first_step: int) -> None:
        settings = self.settings
        print(
            f"training on {len(self.inputs.paths)} files in {settings.network_dataset}, style "
            f"{settings.network_style_image}, {self.trainer.strategy.num_replicas_in_sync} "
            f"replica(s), batch {settings.network_batch_size} of "
            f"{settings.network_image_size}px, steps {first_step + 1}..{self.wanted}",
            file=self.stream,
            flush=True,
        )

    def _step_writers(
        self, first_step: int, log: LazyLossLog, photos: Photos
    ) -> list[Callable[[StepResult], None]]:
        """What each step is handed to, in order: the log, the progress line, the sample,
        the checkpoint (the chief writes files; every worker saves checkpoints)."""
        settings, wanted = self.settings, self.wanted
        progress = ProgressLine(
            wanted,
            settings.network_print_every,
            self.stream,
            first_step=first_step,
            images_per_step=settings.network_batch_size,
            names=self.loss_names,
        )

        def show(result: StepResult) -> None:
            count = len(photos.reasons())
            due = result.step == 1 or is_due(result.step, settings.network_print_every, wanted)
            progress.update(
                result.step, result.losses, note=f"skipped {count}" if count and due else ""
            )

        def tell(result: StepResult) -> None:
            for observer in self.observers:
                observer.step(result.step, result.losses, result.seconds, wanted)

        def sample(result: StepResult) -> None:
            # The request is taken first, so that one click is one sample.
            if self.controls.take_snapshot() or is_due(
                result.step, settings.network_sample_every, wanted
            ):
                path = os.path.join(self.output, f"sample-{result.step}.jpg")
                write_sample(self.trainer.model, self.inputs.sample, path)
                for observer in self.observers:
                    observer.sample(result.step, path)

        def checkpoint(result: StepResult) -> None:
            if is_due(result.step, settings.network_checkpoint_every, wanted):
                self.saver.save(result.step)

        chief_writers = [log.write, show, tell, sample] if self.chief else [show]
        return [*chief_writers, checkpoint]

    def _loop(
        self, batches, first_step: int, writers: list[Callable[[StepResult], None]]
    ) -> StepResult | None:
        last = None
        with stopping.deferred(self.controls):
            try:
                for result in self.trainer.steps(batches, self.wanted):
                    _check_finite(result)
                    for write in writers:
                        write(result)
                    last = result
                    self.controls.raise_if_stopped()
            except KeyboardInterrupt:
                self._save_on_interrupt(first_step)
                raise
        return last

    def _save_on_interrupt(self, first_step: int) -> None:
        """Saves the steps taken, so that NETWORK_RESUME continues from the last of them."""
        done = self.trainer.steps_taken
        if done <= first_step:
            print(f"interrupted at step {done}: nothing new to save", file=self.stream)
            return
        self.saver.save(done)
        if self.chief:
            print(
                f"interrupted at step {done}: saved {self.saver.model_path} and a checkpoint; "
                "--network_resume continues",
                file=self.stream,
                flush=True,
            )

    def _finish(self, last: StepResult | None, first_step: int, photos: Photos) -> TrainResult:
        reasons = photos.reasons()
        skipped_path = os.path.join(self.output, SKIPPED_NAME)
        if self.chief:
            write_skipped(skipped_path, reasons)
        # The photos end only when every file of a worker's share has been skipped.
        if self.trainer.steps_taken < self.wanted:
            raise UserError(
                f"{self.settings.network_dataset}: none of its {len(self.inputs.paths)} image "
                f"files could be used ({_first_reason(reasons)}); see {skipped_path}"
            )
        if last is None:  # resumed at or beyond the wanted steps
            self.saver.save(first_step)
        if reasons:
            print(
                f"note: {len(reasons)} dataset files skipped; see {skipped_path}", file=self.stream
            )
        steps = last.step if last else first_step
        if self.chief:
            print(f"saved {self.saver.model_path}", file=self.stream, flush=True)
        else:
            print(f"done at step {steps}; the chief saved the network", file=self.stream)
        return TrainResult(self.saver.model_path, steps, last.losses if last else {}, reasons)


def _check_finite(result: StepResult) -> None:
    if not all(math.isfinite(value) for value in result.losses.values()):
        raise UserError(
            f"the loss became {result.losses['total']} at step {result.step}; lower "
            "NETWORK_LEARNING_RATE (--network_learning_rate) or the loss weights"
        )


def _first_reason(reasons: dict[str, str]) -> str:
    if not reasons:
        return "no reason recorded"
    path, reason = next(iter(reasons.items()))
    return f"first: {path}: {reason}"
