"""One style-transfer run from one Settings object, as `python train.py` does it.

settings -> images -> network -> losses -> optimiser -> snapshots: this module wires them
together and owns the run's files: snapshots, the final image, the losses log and the
settings record, all under the OUTPUT_IMAGE prefix.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
from typing import TYPE_CHECKING, NamedTuple, TextIO

import numpy as np

from neural_style import images
from neural_style.config import DEFAULT_VGG_MODEL_PATH, Settings
from neural_style.errors import UserError
from neural_style.reporting import LossLog, ProgressPrinter, snapshot_path, write_settings_record
from neural_style.vgg import GET_REAL_WEIGHTS, VGG19, read_vgg19_mat

if TYPE_CHECKING:  # the losses import TensorFlow, which start_tensorflow() imports quietly
    from neural_style.losses import LossWeights

SYNTHETIC_WEIGHTS_PATH = os.path.join("weights", "synthetic-vgg-verydeep-19-v1.mat")


class RunResult(NamedTuple):
    output_path: str  # the final image
    steps: int  # steps taken
    losses: dict[str, float]  # the losses at the last step


@contextlib.contextmanager
def _native_stderr_silenced():
    """Hide what TensorFlow's C++ side prints while it starts (CUDA probing on machines
    without a GPU, oneDNN notes): it writes to file descriptor 2 directly, before its log
    level is read, and buries the progress lines. Setting TF_CPP_MIN_LOG_LEVEL yourself
    shows it all again."""
    if "TF_CPP_MIN_LOG_LEVEL" in os.environ:
        yield
        return
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def start_tensorflow() -> str:
    """Import TensorFlow and find its devices; says which one the run uses."""
    with _native_stderr_silenced():
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        return f"running on the GPU ({', '.join(gpu.name for gpu in gpus)})"
    return "running on the CPU (TensorFlow sees no GPU)"


def resolve_weights_path(path: str, stream: TextIO) -> str:
    """The .mat file to load: `path`, or the synthetic stand-in when the default is missing."""
    if os.path.exists(path) or os.path.normpath(path) != os.path.normpath(DEFAULT_VGG_MODEL_PATH):
        return path  # a path the user gave is loaded, and reported, as it is
    print(
        f"note: {path} not found, so a synthetic VGG-19 is used (textures, not art); "
        f"for real results {GET_REAL_WEIGHTS}",
        file=stream,
    )
    synthetic_path = os.path.join(os.path.dirname(path), os.path.basename(SYNTHETIC_WEIGHTS_PATH))
    if not os.path.exists(synthetic_path):
        from neural_style.synthetic import write_synthetic_vgg19

        print(f"writing the synthetic weights to {synthetic_path} (once)", file=stream, flush=True)
        write_synthetic_vgg19(synthetic_path)
    return synthetic_path


def load_images(settings: Settings, stream: TextIO) -> tuple[np.ndarray, np.ndarray]:
    """The content image at the output size, and the style image resized to the same size."""
    content = images.load_image(settings.content_image, "CONTENT_IMAGE")
    style = images.load_image(settings.style_image, "STYLE_IMAGE")
    size = images.output_size(content.shape[:2], settings.image_width, settings.image_height)
    print(
        f"content {settings.content_image} {content.shape[1]}x{content.shape[0]}, "
        f"style {settings.style_image} {style.shape[1]}x{style.shape[0]}, "
        f"output {size[1]}x{size[0]}",
        file=stream,
    )
    return images.resize_image(content, size), images.resize_image(style, size)


def loss_weights(settings: Settings) -> LossWeights:
    from neural_style.losses import LossWeights

    return LossWeights(
        content_layers=settings.content_loss_layers,
        style_layers=settings.style_loss_layers,
        alpha=settings.alpha,
        beta=settings.beta,
        tv_weight=settings.tv_weight,
    )


def stylize(settings: Settings, stream: TextIO | None = None) -> RunResult:
    """Run the whole optimisation, writing snapshots, the final image and the logs."""
    stream = stream or sys.stdout
    content, style = load_images(settings, stream)
    weights_path = resolve_weights_path(settings.vgg_model_path, stream)

    vgg_weights = read_vgg19_mat(weights_path)  # checked before TensorFlow starts
    print(start_tensorflow(), file=stream, flush=True)

    from neural_style.optimize import ImageOptimizer, compute_targets, initial_image

    net = VGG19(vgg_weights, pooling=settings.pooling)
    weights = loss_weights(settings)
    targets = compute_targets(net, content, style, weights)
    start = initial_image(content, settings.noise, settings.seed)
    optimizer = ImageOptimizer(net, targets, weights, start, settings.learning_rate)

    prefix = settings.output_image
    final_path = snapshot_path(prefix)
    write_settings_record(f"{prefix}-settings.json", dataclasses.asdict(settings))
    progress = ProgressPrinter(settings.train_steps, settings.print_every, stream)
    result = None
    with LossLog(f"{prefix}-losses.csv") as log:
        try:
            for result in optimizer.steps(settings.train_steps):
                log.write(result.step, result.losses, result.seconds)
                if not result.finite:
                    images.save_image(final_path, optimizer.last_good_image())
                    raise UserError(
                        f"the loss became {result.losses['total']} at step {result.step}; "
                        f"the last good image is saved as {final_path}; "
                        "lower LEARNING_RATE (--learning_rate) or the loss weights"
                    )
                progress.update(result.step, result.losses)
                if settings.snapshot_every and result.step % settings.snapshot_every == 0:
                    images.save_image(snapshot_path(prefix, result.step), optimizer.current_image())
        except KeyboardInterrupt:
            images.save_image(final_path, optimizer.current_image())
            done = result.step if result else 0
            print(f"\ninterrupted at step {done}: saved {final_path}", file=stream, flush=True)
            raise
    images.save_image(final_path, optimizer.current_image())
    print(f"saved {final_path}", file=stream)
    return RunResult(final_path, result.step, result.losses)
