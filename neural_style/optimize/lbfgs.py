"""Optimising the image: targets computed once, then Adam or L-BFGS on the pixels.

This module does no file I/O. An optimiser's `steps(n)` yields one `StepResult` per
iteration and the caller decides what to print and save (see runner.py). Both optimisers keep
the best image seen so far (the lowest loss), which is what snapshots and the result show.

Shapes: images are [1, H, W, 3] float32 RGB in 0..255; Gram matrices [1, C, C].
"""

from __future__ import annotations

import itertools
import math
import queue
import threading
import time
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from neural_style.losses import guided, masks, wasserstein
from neural_style.losses.gatys import LossWeights, Targets, gram_matrix
from neural_style.losses.tiled_targets import tiled_features, tiled_gram_matrices, tiled_moments
from neural_style.optimize.adam import BatchAdamOptimizer, BatchLossFunction, BatchStepResult
from neural_style.vgg.network import VGG19
from neural_style.vgg.tile_layout import TileLayout, grid_for_core, tile_layout, tile_margin


def content_targets(
    net: VGG19, content_image: np.ndarray, weights: LossWeights, *, layout: TileLayout | None = None
) -> dict:
    """The content image's features at the content layers: layer -> [1, h, w, c]; computed
    over the tiles of `layout` when one is given (for images too large for one pass)."""
    layers = [name for name, _ in weights.content_layers]
    if layout is not None:
        return tiled_features(net, content_image, layout, layers)
    features = net.features(content_image[None], layers)
    return {name: tf.constant(features[name]) for name in layers}


def _style_tiles(image: np.ndarray, layers: list[str], tile_side: int):
    """The tiles a style image is run in, with `tile_side` set and the image larger than
    one tile; else None (run whole)."""
    if not tile_side:
        return None
    grid = grid_for_core(image.shape[:2], tile_side)
    if grid == (1, 1):
        return None
    return tile_layout(image.shape[:2], grid, tile_margin(layers))


def _image_guide(mask, image: np.ndarray, layers: list[str]) -> dict | None:
    """The guide of STYLE_IMAGE_MASKS's `mask` over `image`: {layer: [1, h, w]}, or None
    for the whole image."""
    if mask is None:
        return None
    return masks.layer_guides([mask], image.shape[:2], layers)


def _gram_matrices(
    net: VGG19, image: np.ndarray, layers: list[str], tile_side: int, guide=None
) -> dict:
    """{layer: [1, c, c]} of one image, guided Grams of the region `guide` marks if given;
    in tiles of about `tile_side` pixels if it is set."""
    layout = _style_tiles(image, layers, tile_side)
    if layout is not None:
        return tiled_gram_matrices(net, image, layout, layers, guide)
    features = net.features(image[None], layers)
    if guide is None:
        return {name: gram_matrix(features[name]) for name in layers}
    return {name: guided.guided_grams(features[name], guide[name])[:, 0] for name in layers}


def style_targets(
    net: VGG19,
    style_images: Sequence[np.ndarray],
    blend_weights: Sequence[float],
    weights: LossWeights,
    *,
    tile_side: int = 0,
    image_masks: Sequence[np.ndarray | None] = (),
    regions: bool = False,
) -> dict:
    """The blend of the style images' Gram matrices at the style layers: layer -> [1, c, c];
    for STYLE_LOSS "w2", the packed mean and covariance root of their blend (see
    wasserstein.blended_target): layer -> [1, c + 1, c].

    Blend weights are normalised to sum to 1; a style with weight 0 is not even computed.
    With `tile_side`, a style image larger than that is run in tiles of about that size.
    `image_masks` (STYLE_IMAGE_MASKS) restricts each style to a region of its image
    (None: all of it). With `regions` (STYLE_MASKS) the styles are not blended: each is
    its own target, stacked in order as [1, R, c, c] or [1, R, c + 1, c] (see guided.py).
    """
    layers = [name for name, _ in weights.style_layers]
    guides = [
        _image_guide(mask, image, layers)
        for image, mask in itertools.zip_longest(style_images, image_masks)
    ]
    if regions:
        each = [
            _blended(net, [image], np.ones(1), [guide], weights.style_loss, layers, tile_side)
            for image, guide in zip(style_images, guides, strict=True)
        ]
        return {name: tf.stack([target[name][0] for target in each])[None] for name in layers}
    blend = np.asarray(blend_weights, np.float64)
    blend = blend / blend.sum()
    return _blended(net, style_images, blend, guides, weights.style_loss, layers, tile_side)


def _blended(
    net: VGG19,
    style_images: Sequence[np.ndarray],
    blend: np.ndarray,
    guides: list,
    style_loss: str,
    layers: list[str],
    tile_side: int,
) -> dict:
    """The target of the styles blended by `blend` (summing to 1): Grams or packed w2."""
    chosen = [
        (image, float(share), guide)
        for image, share, guide in zip(style_images, blend, guides, strict=True)
        if share != 0
    ]
    if style_loss == "w2":
        each = [_moments(net, image, layers, tile_side, guide) for image, _, guide in chosen]
        shares = [share for _, share, _ in chosen]
        return {
            name: wasserstein.blended_target([moments[name] for moments in each], shares)
            for name in layers
        }
    grams = {name: 0.0 for name in layers}
    for style_image, share, guide in chosen:
        image_grams = _gram_matrices(net, style_image, layers, tile_side, guide)
        for name in layers:
            grams[name] += share * image_grams[name]
    return {name: tf.constant(gram) for name, gram in grams.items()}


def _moments(net: VGG19, image: np.ndarray, layers: list[str], tile_side: int, guide) -> dict:
    """{layer: (mean [c], covariance [c, c])} of one image in float64, of the region
    `guide` marks if given; in tiles of about `tile_side` pixels if it is set."""
    layout = _style_tiles(image, layers, tile_side)
    if layout is not None:
        return tiled_moments(net, image, layout, layers, guide)
    features = net.features(image[None], layers)
    moments = {}
    for name in layers:
        flat = np.asarray(features[name], np.float64).reshape(-1, features[name].shape[3])
        weights = np.ones(len(flat)) if guide is None else np.ravel(guide[name])
        moments[name] = weighted_moments(flat, weights)
    return moments


def weighted_moments(flat: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The mean [c] and covariance [c, c] of the rows of `flat` [M, c], row p weighing
    `weights`[p] (float64)."""
    weights = np.asarray(weights, np.float64)
    mass = max(weights.sum(), guided.MIN_MASS)
    mean = weights @ flat / mass
    centred = flat - mean
    return mean, (centred * weights[:, None]).T @ centred / mass


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


def initial_image(base: np.ndarray, noise: float, seed: int) -> np.ndarray:
    """`base` with a `noise` fraction of uniform 0..255 noise blended in."""
    rng = np.random.default_rng(seed)
    random_pixels = rng.uniform(0.0, 255.0, base.shape).astype(np.float32)
    return ((1.0 - noise) * base + noise * random_pixels).astype(np.float32)


class LossFunction(BatchLossFunction):
    """The objective of one content target and style blend, and its gradient, over the
    whole image in one tf.function call (tiling.TiledLossFunction computes the same in
    tiles). The network runs in its own precision (see VGG19); its features, the Grams,
    the losses and the gradient are float32."""

    def value_and_gradient(self, images: tf.Tensor) -> tuple[dict[str, tf.Tensor], tf.Tensor]:
        """The named loss parts (content, style, tv, total) at `images` [1, H, W, 3], as
        scalars, and the gradient of the total with respect to them."""
        parts, gradient = super().value_and_gradient(images)
        return {name: tf.reduce_sum(value) for name, value in parts.items()}, gradient


class StepResult(NamedTuple):
    step: int  # 1-based number of the iteration just taken
    evaluations: int  # loss-and-gradient evaluations so far
    losses: dict[str, float]  # content, style, tv, total at the iteration's image
    seconds: float  # wall time of the iteration
    note: str = ""  # what the optimiser did besides a plain step, e.g. a divergence

    @property
    def finite(self) -> bool:
        return all(math.isfinite(value) for value in self.losses.values())


def _floats(parts: dict) -> dict[str, float]:
    return {name: float(value) for name, value in parts.items()}


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


class _Stop(Exception):
    pass


class LbfgsOptimizer:
    """scipy's L-BFGS-B on the pixels with the box [0, 255] as bounds.

    The loss and gradient come from one tf.function call in float32; only the scipy boundary
    is float64. scipy runs in a worker thread so that each iteration can be yielded; its
    curvature history lives inside scipy, so a resumed run restarts it from the saved image.
    """

    def __init__(self, loss: LossFunction, start_image: np.ndarray, *, history: int = 10):
        self.loss = loss
        self.history = history
        self.shape = (1, *start_image.shape)
        self.image = start_image.astype(np.float32)
        self.best_image = self.image.copy()
        self.best_loss = math.inf
        self.evaluations = 0
        self.message = ""

    def use_loss(self, loss) -> None:
        """Go on with another loss function from the current image; the best image is
        chosen afresh by the new loss, and the curvature history restarts."""
        self.loss = loss
        self.best_loss = math.inf

    def _evaluate(self, x: np.ndarray) -> tuple[float, np.ndarray, dict[str, float]]:
        images = tf.constant(x.reshape(self.shape), dtype=tf.float32)
        parts, gradient = self.loss.value_and_gradient(images)
        self.evaluations += 1
        losses = _floats(parts)
        total = losses["total"]
        gradient = gradient.numpy().astype(np.float64).ravel()
        if not (math.isfinite(total) and np.all(np.isfinite(gradient))):
            # Tell the line search this point is bad, so that it steps back.
            return 1e30, np.zeros_like(gradient), losses
        if total < self.best_loss:
            self.best_loss = total
            self.best_image = x.reshape(self.shape)[0].astype(np.float32)
        return total, gradient, losses

    def _minimise(self, count: int, first: int, results: queue.Queue, go: queue.Queue) -> None:
        from scipy.optimize import minimize

        latest = {}
        iteration = [first - 1]
        started = [time.perf_counter()]

        def function(x):
            total, gradient, latest["losses"] = self._evaluate(x)
            return total, gradient

        def callback(intermediate_result):
            iteration[0] += 1
            self.image = intermediate_result.x.reshape(self.shape)[0].astype(np.float32)
            now = time.perf_counter()
            results.put(
                StepResult(iteration[0], self.evaluations, latest["losses"], now - started[0])
            )
            if not go.get():
                raise _Stop
            started[0] = time.perf_counter()

        try:
            outcome = minimize(
                function,
                self.image.astype(np.float64).ravel(),
                jac=True,
                method="L-BFGS-B",
                bounds=[(0.0, 255.0)] * self.image.size,
                callback=callback,
                options={
                    "maxiter": count,
                    "maxfun": count * 20,
                    "maxcor": self.history,
                    "ftol": 0.0,
                    "gtol": 0.0,
                },
            )
            self.message = str(outcome.message)
            results.put(None)
        except _Stop:
            results.put(None)
        except BaseException as error:  # handed to the consumer's thread
            results.put(error)

    def steps(self, count: int, first: int = 1) -> Iterator[StepResult]:
        """Run up to `count` iterations, numbered from `first`, yielding after each.
        L-BFGS may stop earlier when it can make no more progress (see `message`)."""
        results: queue.Queue = queue.Queue()
        go: queue.Queue = queue.Queue()
        worker = threading.Thread(
            target=self._minimise, args=(count, first, results, go), daemon=True
        )
        worker.start()
        try:
            while (item := results.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                yield item
                go.put(True)
        finally:
            go.put(False)
            worker.join()

    def current_image(self) -> np.ndarray:
        return self.image

    def best(self) -> np.ndarray:
        return self.best_image if math.isfinite(self.best_loss) else self.image

    def state(self) -> dict[str, np.ndarray]:
        return {
            "image": self.image,
            "best_image": self.best_image,
            "best_loss": np.float64(self.best_loss),
            "evaluations": np.int64(self.evaluations),
        }

    def restore(self, state: dict[str, np.ndarray]) -> None:
        self.image = np.asarray(state["image"], np.float32)
        self.best_image = np.asarray(state["best_image"], np.float32)
        self.best_loss = float(state["best_loss"])
        self.evaluations = int(state["evaluations"])


class LbfgsBatchOfOne(LbfgsOptimizer):
    """L-BFGS behind the batch optimisers' interface (BatchAdamOptimizer's), as a batch of
    one image, so that the run loop steps every optimiser alike."""

    def steps(self, count: int, first: int = 1) -> Iterator[BatchStepResult]:
        for result in super().steps(count, first):
            yield BatchStepResult(
                result.step, [result.evaluations], [result.losses], result.seconds, [result.note]
            )

    def best(self, index: int = 0) -> np.ndarray:
        del index  # a batch of one
        return super().best()

    def current_image(self, index: int = 0) -> np.ndarray:
        del index
        return super().current_image()

    def states(self) -> list[dict[str, np.ndarray]]:
        return [self.state()]

    def restore(self, state: dict[str, np.ndarray], index: int = 0) -> None:
        del index
        super().restore(state)
