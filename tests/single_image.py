"""The library's batch API as tests of a single image use it: both targets of one photo,
Adam on one image, and the objective summed over a batch. Test-only: the run itself goes
through gatys/pipeline.py and the batch optimisers."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import numpy as np
import tensorflow as tf

from neural_style.losses.gatys import LossWeights, Targets, objective_per_image
from neural_style.losses.targets import content_targets, style_targets
from neural_style.optimize.adam import BatchAdamOptimizer
from neural_style.optimize.lbfgs import StepResult
from neural_style.vgg.network import VGG19


def compute_targets(
    net: VGG19,
    content_image: np.ndarray,
    style_images: Sequence[np.ndarray],
    blend_weights: Sequence[float],
    weights: LossWeights,
) -> Targets:
    """Both targets of one run, computed once before optimising."""
    return Targets(
        content=content_targets(net, content_image, weights),
        style_grams=style_targets(net, style_images, blend_weights, weights),
    )


class AdamOptimizer(BatchAdamOptimizer):
    """Adam on one image (see BatchAdamOptimizer, of which this is a batch of one), with
    the loss parts and notes of each step as plain values."""

    def __init__(self, loss, start_image: np.ndarray, **adam):
        super().__init__(loss, start_image[None], **adam)

    def steps(self, count: int, first: int = 1) -> Iterator[StepResult]:
        """Take `count` steps, numbered from `first`, yielding after each."""
        for result in super().steps(count, first):
            yield StepResult(
                result.step,
                result.evaluations[0],
                result.losses[0],
                result.seconds,
                result.notes[0],
            )

    @property
    def rate(self) -> float:
        return self.rate_of(0)


def objective(
    features: Mapping[str, tf.Tensor], images: tf.Tensor, targets: Targets, weights: LossWeights
) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
    """The total loss α·content + β·style + tv_weight·tv, and its named parts, each summed
    over the batch: of one image, that image's (see objective_per_image).

    `features` must hold every content and style layer, computed from `images`.
    """
    _, per_image = objective_per_image(features, images, targets, weights)
    parts = {name: tf.reduce_sum(value) for name, value in per_image.items()}
    return parts["total"], parts
