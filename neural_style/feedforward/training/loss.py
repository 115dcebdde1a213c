"""The perceptual loss the feed-forward network trains against (Johnson et al.): VGG-19
from the .mat file, frozen, with the optimiser's loss functions
(losses/gatys.py: objective_per_image).

Shapes: photos and stylised images are [B, S, S, 3] float32 RGB in 0..255; the style
image is [H, W, 3].
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from neural_style.losses import gatys as losses
from neural_style.losses.style.gram import gram_matrix
from neural_style.settings.network import NetworkSettings
from neural_style.vgg.network import VGG19


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
            name: tf.constant(gram_matrix(style_features[name])) for name in self.style_layers
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
        parts = {name: tf.reduce_mean(value) for name, value in per_image.items()}
        return parts["total"], parts


def loss_weights(settings: NetworkSettings) -> losses.LossWeights:
    """The loss weights and layers of NETWORK_*."""
    return losses.LossWeights(
        content_layers=settings.network_content_layers,
        style_layers=settings.network_style_layers,
        alpha=settings.network_content_weight,
        beta=settings.network_style_weight,
        tv_weight=settings.network_tv_weight,
    )


def perceptual_loss(
    settings: NetworkSettings, style: np.ndarray, weights: str, precision: str = "float32"
) -> PerceptualLoss:
    """The loss network from the .mat file `weights`, with `style`'s Gram matrices, its
    convolutions in `precision` (the Grams and losses stay float32)."""
    vgg = VGG19.from_mat(weights, pooling=settings.pooling, precision=precision)
    return PerceptualLoss(vgg, style, loss_weights(settings))
