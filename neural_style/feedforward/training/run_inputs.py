"""What a training run reads: the dataset's file list, the style and sample images and the
steps it is to take (`read_inputs`, `total_steps`), all checked before TensorFlow starts;
then the photos as one tf.data pipeline per worker (`Photos`).

Shapes: the style and sample images are [H, W, 3] float32 RGB in 0..255.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from neural_style import files
from neural_style.feedforward.training import data
from neural_style.media import images
from neural_style.settings.network import NetworkSettings


class RunInputs(NamedTuple):
    paths: list[str]  # the dataset's image files, sorted
    style: np.ndarray  # [H, W, 3] the style image at NETWORK_STYLE_SIZE
    style_sha256: str  # of the style image file's bytes, which a resumed run must match
    sample: np.ndarray  # [H, W, 3] the photo the samples stylise


def read_inputs(settings: NetworkSettings) -> RunInputs:
    """The dataset's file list, the style and sample images: every input error before
    TensorFlow starts."""
    paths = images.list_images(settings.network_dataset, "NETWORK_DATASET")
    style = load_style_image(settings)
    sample = images.load_image(settings.network_sample_image, "NETWORK_SAMPLE_IMAGE")
    return RunInputs(paths, style, file_sha256(settings.network_style_image), sample)


def file_sha256(path: str) -> str:
    """The hex sha256 of a file's bytes."""
    return files.sha256_of(path)


def total_steps(settings: NetworkSettings, file_count: int) -> int:
    """NETWORK_STEPS, or NETWORK_EPOCHS passes over `file_count` photos when it is set."""
    if settings.network_epochs:
        return max(1, math.ceil(settings.network_epochs * file_count / settings.network_batch_size))
    return settings.network_steps


def load_style_image(settings: NetworkSettings) -> np.ndarray:
    """NETWORK_STYLE_IMAGE, its longer side resized to NETWORK_STYLE_SIZE (0 = as it is)."""
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


class Photos:
    """The dataset as one input pipeline per worker, each with its own share of the files
    and its own record of the ones it skipped."""

    def __init__(self, paths: list[str], settings: NetworkSettings, seed: int):
        self.paths = paths
        self.settings = settings
        self.seed = seed
        self.skipped: list[data.SkippedFiles] = []

    def make_dataset(self, context: tf.distribute.InputContext) -> tf.data.Dataset:
        """This worker's share of the files, as batches of one replica's share."""
        share = self.paths[context.input_pipeline_id :: context.num_input_pipelines]
        skipped = data.SkippedFiles(len(share))
        self.skipped.append(skipped)
        return data.photo_batches(
            share,
            image_size=self.settings.network_image_size,
            batch_size=context.get_per_replica_batch_size(self.settings.network_batch_size),
            seed=self.seed,
            skipped=skipped,
        )

    def reasons(self) -> dict[str, str]:
        """{path: why it was skipped}, over this worker's pipelines."""
        return {path: why for s in self.skipped for path, why in s.reasons().items()}
