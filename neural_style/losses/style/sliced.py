"""STYLE_LOSS "sw": the sliced Wasserstein loss of Heitz et al., "A Sliced Wasserstein Loss
for Neural Texture Synthesis" (CVPR 2021), matching the whole distribution of the
features at each style layer, not only its first two moments.

At a layer with N channels, the image's features and the style's are projected on N random
unit directions, drawn afresh at every step (stateless: the same step draws the same
directions, so a resumed run repeats a straight one). Along each direction both sets of
projections are sorted, and the image's i-th smallest is pulled towards the style's value
at the same quantile; the loss is the mean squared difference, over the positions and the
directions. When the two have different numbers of positions, the style's sorted values
are interpolated at the image's quantiles. A region (STYLE_MASKS) weighs its positions by
its guide: a position's quantile is the middle of its share of the region's cumulative
weight, and its squared difference counts with its weight.

The style is kept as a sample of its features (at most MAX_SAMPLES positions a layer,
drawn with its mask's weights, if any), so that any directions can project it. A blend of
styles is a sample of their features pooled with the blend's weights.

Sliced projections are not sums over positions, so a run that needs tiles is refused by
its plan (tileable is False).

Shapes: features [B, h, w, c]; a target [1, K, c] (a sample of K positions), with regions
[1, R, K, c]; projections [B, M, D] with D = c directions.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from neural_style.losses.style.protocol import LayerShares

# The most style positions kept a layer: enough that the sample's quantiles are the
# style's to a fraction of a percent of their spread, few enough that sorting it each step
# stays cheap (relu1_1 of a 512x384 style has 196608 positions; sorting is most of sw's
# time).
MAX_SAMPLES = 32768
# The seed of the style's sample (the sample is part of the target, so it is fixed).
SAMPLE_SEED = 20210101
# The loss is multiplied by this so that at the shipped settings the first step's style
# loss is of the order of gram's and BETA keeps its meaning: on images/content.jpg and
# style.jpg at 512 px (synthetic weights) gram's initial style loss was 1.71 times sw's
# at 60 (benchmarks/style_loss.py prints the ratio), so 60 x 1.71, rounded.
SW_SCALE = 100.0


def directions(channels: int | tf.Tensor, step: int | tf.Tensor) -> tf.Tensor:
    """`channels` random unit directions [c, D = c] of the step `step`: the same for the
    same step and channel count, different for every step."""
    seed = tf.stack([tf.cast(step, tf.int64), tf.cast(channels, tf.int64)])
    drawn = tf.random.stateless_normal([channels, channels], seed=seed)
    return drawn / tf.norm(drawn, axis=0, keepdims=True)


def _quantile_values(sorted_style: tf.Tensor, levels: tf.Tensor) -> tf.Tensor:
    """The style's quantile function at `levels`, by linear interpolation of its sorted
    projections [..., K, D] between their middle quantiles (k + 0.5) / K: [..., M, D] for
    levels [..., M, D] in (0, 1)."""
    count = tf.shape(sorted_style)[-2]
    position = levels * tf.cast(count, levels.dtype) - 0.5
    position = tf.clip_by_value(position, 0.0, tf.cast(count - 1, levels.dtype))
    below = tf.floor(position)
    fraction = position - below
    lower = tf.cast(below, tf.int32)
    upper = tf.minimum(lower + 1, count - 1)
    # Gather along K for each direction: move D before K and M.
    columns = tf.linalg.matrix_transpose(sorted_style)
    rank = len(columns.shape) - 1

    def at(index: tf.Tensor) -> tf.Tensor:
        gathered = tf.gather(columns, tf.linalg.matrix_transpose(index), batch_dims=rank)
        return tf.linalg.matrix_transpose(gathered)

    return at(lower) * (1.0 - fraction) + at(upper) * fraction


def sliced_distances(flat: tf.Tensor, targets: tf.Tensor, step: tf.Tensor) -> tf.Tensor:
    """The squared sliced distance of each image's features [B, M, c] to the style sample
    [B or 1, K, c]: [B]. Every position weighs the same, so the i-th smallest projection's
    quantile is (i + 0.5) / M."""
    dirs = directions(tf.shape(flat)[-1], step)
    values = tf.sort(tf.matmul(flat, dirs), axis=1)  # [B, M, D]
    style = tf.sort(tf.matmul(targets, dirs), axis=1)  # [B or 1, K, D]
    count = tf.shape(values)[1]
    levels = (tf.cast(tf.range(count), values.dtype) + 0.5) / tf.cast(count, values.dtype)
    style = tf.broadcast_to(style, tf.concat([tf.shape(values)[:1], tf.shape(style)[1:]], 0))
    levels = tf.broadcast_to(levels[None, :, None], tf.shape(values))
    pulled = tf.stop_gradient(_quantile_values(style, levels))
    return tf.reduce_mean(tf.square(values - pulled), axis=[1, 2])


def weighted_sliced_distances(
    flat: tf.Tensor, weights: tf.Tensor, mass: tf.Tensor, targets: tf.Tensor, step: tf.Tensor
) -> tf.Tensor:
    """The squared sliced distance of each image's weighted features to each region's
    style sample: [B, R], for flat features [B, 1, M, c], weights [1, R, M, 1], masses [R]
    and targets [B or 1, R, K, c]. A position's quantile is the middle of its share of the
    region's cumulative weight, and its squared difference counts with its weight."""
    dirs = directions(tf.shape(flat)[-1], step)
    projected = tf.matmul(flat[:, 0], dirs)  # [B, M, D]
    order = tf.argsort(projected, axis=1)  # [B, M, D]
    columns = tf.linalg.matrix_transpose(projected)  # [B, D, M]
    values = tf.gather(columns, tf.linalg.matrix_transpose(order), batch_dims=2)
    values = tf.linalg.matrix_transpose(values)[:, None]  # [B, 1, M, D], sorted
    by_region = tf.transpose(weights[0, :, :, 0])  # [M, R]
    sorted_weights = tf.transpose(tf.gather(by_region, order), [0, 3, 1, 2])  # [B, R, M, D]
    cumulative = tf.cumsum(sorted_weights, axis=2) - 0.5 * sorted_weights
    levels = cumulative / mass[None, :, None, None]
    style = tf.sort(tf.matmul(targets, dirs), axis=2)  # [B or 1, R, K, D]
    style = tf.broadcast_to(style, tf.concat([tf.shape(values)[:1], tf.shape(style)[1:]], 0))
    pulled = tf.stop_gradient(_quantile_values(style, tf.stop_gradient(levels)))
    squared = sorted_weights * tf.square(values - pulled)
    per_direction = tf.reduce_sum(squared, axis=2) / mass[None, :, None]  # [B, R, D]
    return tf.reduce_mean(per_direction, axis=2)


class SlicedWasserstein:
    """The features' whole distribution, matched along random directions."""

    name = "sw"
    tileable = False

    def measure(self, features: tf.Tensor, guide: np.ndarray | None) -> np.ndarray:
        """A sample [K, c] of the style's positions, drawn with the guide's weights."""
        flat = np.asarray(features, np.float32).reshape(-1, features.shape[3])
        count = min(len(flat), MAX_SAMPLES)
        rng = np.random.default_rng(SAMPLE_SEED)
        if guide is None:
            chosen = rng.permutation(len(flat))[:count]
        else:
            weights = np.ravel(guide).astype(np.float64)
            chosen = rng.choice(len(flat), count, replace=True, p=weights / weights.sum())
        return flat[chosen]

    def partial_sums(self, flat: tf.Tensor, weights: tf.Tensor | None) -> object:
        raise NotImplementedError("sw is not computed in tiles (see its plan's refusal)")

    def from_sums(self, total: object, mass: float) -> object:
        raise NotImplementedError("sw is not computed in tiles")

    def target(self, measured: Sequence[np.ndarray], shares: Sequence[float]) -> tf.Tensor:
        """A sample [1, K, c] of the styles' features pooled with the shares."""
        count = max(len(sample) for sample in measured)
        wanted = np.floor(np.asarray(shares, np.float64) * count).astype(int)
        wanted[int(np.argmax(shares))] += count - wanted.sum()
        rng = np.random.default_rng(SAMPLE_SEED)
        parts = [
            sample[rng.choice(len(sample), number, replace=number > len(sample))]
            for sample, number in zip(measured, wanted, strict=True)
            if number > 0
        ]
        return tf.constant(np.concatenate(parts)[None], tf.float32)

    def loss(self, features: tf.Tensor, target: tf.Tensor, step: tf.Tensor) -> tf.Tensor:
        shape = tf.shape(features)
        flat = tf.reshape(features, [shape[0], shape[1] * shape[2], shape[3]])
        return SW_SCALE * sliced_distances(flat, target, step)

    def region_losses(
        self,
        flat: tf.Tensor,
        weights: tf.Tensor,
        mass: tf.Tensor,
        targets: tf.Tensor,
        step: tf.Tensor,
    ) -> tf.Tensor:
        return SW_SCALE * weighted_sliced_distances(flat, weights, mass, targets, step)

    def tile_sums(self, flat: tf.Tensor, weights: tf.Tensor | None) -> tf.Tensor:
        raise NotImplementedError("sw is not computed in tiles")

    def loss_of_sums(
        self, sums: tf.Tensor, target: tf.Tensor, shares: LayerShares
    ) -> tuple[tf.Tensor, tf.Tensor]:
        raise NotImplementedError("sw is not computed in tiles")

    def carrier(
        self, features: tf.Tensor, guide: tf.Tensor | None, coefficients: tf.Tensor
    ) -> tf.Tensor:
        raise NotImplementedError("sw is not computed in tiles")

    def coefficient_shape(self, target_shape: tuple[int, ...], regions: bool) -> tuple:
        raise NotImplementedError("sw is not computed in tiles")
