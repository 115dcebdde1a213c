"""What every photo of a run shares, and the objects the run loop steps: the networks,
the loss weights, the style Gram targets (computed once per stage and precision), and the
factories for a stage's targets, loss, start images and optimiser.

Shapes: images [B, H, W, 3] float32 RGB in 0..255; content targets [B, h, w, c]; style
Grams [1, c, c] shared by a batch, or [B, c, c] when each photo has its own (PRESERVE_COLORS
histogram recolours the styles to each photo).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from neural_style.gatys.plan import RunPlan
from neural_style.gatys.video_plan import FrameLink
from neural_style.losses import masks
from neural_style.losses.gatys import LossWeights, Targets
from neural_style.losses.targets import content_targets, style_targets
from neural_style.media import colors, images
from neural_style.optimize.adam import BatchAdamOptimizer
from neural_style.optimize.lbfgs import LbfgsBatchOfOne
from neural_style.optimize.loss_functions import BatchLossFunction, LossFunction, TemporalLoss
from neural_style.optimize.memory import MemoryPlan
from neural_style.optimize.protocols import ImageLoss, Optimizer
from neural_style.optimize.tiling import TiledLossFunction
from neural_style.settings.gatys import Settings
from neural_style.vgg import tile_layout
from neural_style.vgg.mat import VGGWeights
from neural_style.vgg.network import VGG19


class Phase(NamedTuple):
    net: VGG19  # the network of this part of a stage
    first: int  # the first step to take (after a resume: the one after the checkpoint's)
    last: int
    switched: bool  # a later phase: the optimiser goes on with a new loss here


def loss_weights(settings: Settings) -> LossWeights:
    return LossWeights(
        content_layers=settings.content_loss_layers,
        style_layers=settings.style_loss_layers,
        alpha=settings.alpha,
        beta=settings.beta,
        tv_weight=settings.tv_weight,
        style_loss=settings.style_loss,
    )


def build_pipeline(plan: RunPlan, weights: VGGWeights) -> Pipeline:
    """The pipeline of `plan`: its networks in its precision (and a float32 one for
    FLOAT32_FINISH's last steps), its styles and masks. Every executor builds its own, in
    the process that steps (in this one, or in each cluster task)."""
    settings = plan.settings
    net = VGG19(weights, pooling=settings.pooling, precision=plan.precision)
    exact_net = None
    if plan.precision != "float32" and settings.float32_finish > 0:
        exact_net = VGG19(weights, pooling=settings.pooling)
    return Pipeline(settings, net, plan.styles, exact_net=exact_net, style_masks=plan.masks)


class Pipeline:
    """The networks, the styles and the loss weights of a run, and what a stage of it
    needs from them."""

    def __init__(
        self,
        settings: Settings,
        net: VGG19,
        styles: list[np.ndarray],
        *,
        exact_net: VGG19 | None = None,
        style_masks: masks.Masks = masks.NO_MASKS,
    ):
        self.settings = settings
        self.net = net
        # The float32 network of FLOAT32_FINISH's last steps, when `net` is a mixed one.
        self.exact_net = exact_net
        self.styles = styles
        self.masks = style_masks
        self.weights = loss_weights(settings)
        self.layers = sorted(
            {name for name, _ in self.weights.content_layers + self.weights.style_layers}
        )
        self.blend = settings.style_blend_weights or (1.0,) * len(styles)
        self._style_grams: dict = {}
        self._guides: dict = {}

    def phases(self, stage_start: int, steps: int, done: int) -> list[Phase]:
        """The phases of a stage of `steps` steps after `stage_start`, for a run `done`
        steps in: all in the run's precision, or the last FLOAT32_FINISH of them in float32
        when the run's precision is a mixed one. Phases a resumed run is past are left
        out, except the last, whose optimiser the checkpoint restores."""
        counts = [(self.net, steps)]
        if self.exact_net is not None:
            exact = round(steps * self.settings.float32_finish)
            counts = [(self.net, steps - exact), (self.exact_net, exact)]
        phases, start = [], stage_start
        for net, count in counts:
            if count > 0:
                phases.append(Phase(net, max(done, start) + 1, start + count, start > stage_start))
                start += count
        return [phase for phase in phases[:-1] if phase.first <= phase.last] + phases[-1:]

    def layout(self, size: tuple[int, int], plan: MemoryPlan) -> tile_layout.TileLayout | None:
        """Where the tiles of a step at `size` lie, or None for the whole image at once."""
        if not plan.tiled:
            return None
        return tile_layout.tile_layout(size, plan.grid, tile_layout.tile_margin(self.layers))

    # --- targets and losses ---

    def targets(
        self,
        net: VGG19,
        stage_index: int,
        content: np.ndarray,
        layout: tile_layout.TileLayout | None = None,
    ) -> Targets:
        """One photo's content features and the style Grams that `net` pulls it towards."""
        size = content.shape[:2]
        tile_side = tile_layout.core_side(size, layout.grid) if layout else 0
        return Targets(
            content=content_targets(net, content, self.weights, layout=layout),
            style_grams=self.style_grams(net, stage_index, size, content, tile_side),
            **self.guides(size),
        )

    def guides(self, size: tuple[int, int]) -> dict:
        """The masks' guides at every layer for an image of `size` (see guided.py), as
        Targets fields: style_guides with STYLE_MASKS, content_guides with CONTENT_MASK."""
        if size not in self._guides:
            found = {}
            if self.masks.regions:
                found["style_guides"] = _constants(
                    masks.layer_guides(self.masks.style, size, self._style_layers)
                )
            if self.masks.content is not None:
                layers = [name for name, _ in self.weights.content_layers]
                stacked = masks.layer_guides([self.masks.content], size, layers)
                found["content_guides"] = _constants({n: g[0] for n, g in stacked.items()})
            self._guides[size] = found
        return self._guides[size]

    @property
    def _style_layers(self) -> list[str]:
        return [name for name, _ in self.weights.style_layers]

    def batch_targets(
        self,
        net: VGG19,
        stage_index: int,
        contents: Sequence[np.ndarray],
        layout: tile_layout.TileLayout | None,
    ) -> Targets:
        """Each photo's targets, computed alone as a single photo's are, stacked."""
        if len(contents) == 1:
            return self.targets(net, stage_index, contents[0], layout)
        each = [self.targets(net, stage_index, content) for content in contents]
        grams = [targets.style_grams for targets in each]
        shared = all(gram is grams[0] for gram in grams)
        return each[0]._replace(
            content={
                name: tf.concat([t.content[name] for t in each], 0) for name in each[0].content
            },
            style_grams=grams[0]
            if shared
            else {name: tf.concat([g[name] for g in grams], 0) for name in grams[0]},
        )

    def style_grams(
        self,
        net: VGG19,
        stage_index: int,
        size: tuple[int, int],
        content: np.ndarray,
        tile_side: int = 0,
    ) -> dict:
        """The blended style Grams for a stage: computed once per stage and network and
        shared by every photo, except in histogram mode, which recolours the styles to each
        photo. With `tile_side`, style images larger than that are run in tiles of about
        that size."""
        if self.settings.preserve_colors == "histogram":
            styles = [colors.match_color_histogram(style, content) for style in self.styles]
            return self._grams_of(net, styles, size, tile_side)
        key = (stage_index, net.precision)
        if key not in self._style_grams:
            self._style_grams[key] = self._grams_of(net, self.styles, size, tile_side)
        return self._style_grams[key]

    def _grams_of(
        self, net: VGG19, styles: list[np.ndarray], size: tuple[int, int], tile_side: int
    ) -> dict:
        scale = self.settings.style_scale
        style_size = (
            max(round(size[0] * scale), images.MIN_SIDE),
            max(round(size[1] * scale), images.MIN_SIDE),
        )
        resized = [images.resize_image(style, style_size) for style in styles]
        return style_targets(
            net,
            resized,
            self.blend,
            self.weights,
            tile_side=tile_side,
            image_masks=self.masks.style_image,
            regions=self.masks.regions,
        )

    def make_loss(
        self,
        net: VGG19,
        targets: Targets,
        layout: tile_layout.TileLayout | None,
        link: FrameLink | None = None,
    ) -> ImageLoss:
        """The loss of a stage: over whole images, or over the tiles of one image; for a
        video frame with a temporal weight (its `link`), held to the previous frame too."""
        if link is not None and link.weight > 0:
            base = LossFunction(net, targets, self.weights)
            return TemporalLoss(base, link.warped, link.mask, link.weight)
        if layout is not None:
            return TiledLossFunction(net, targets, self.weights, layout)
        if len(next(iter(targets.content.values()))) == 1:
            # One image: its losses as scalars, in the graph single runs have always
            # traced (a batch of one traces another, whose rounding differs slightly).
            return LossFunction(net, targets, self.weights)
        return BatchLossFunction(net, targets, self.weights)

    # --- optimisers ---

    def start_image(self, content: np.ndarray) -> np.ndarray:
        """A photo's first image, as INIT and NOISE say, seeded by SEED."""
        init, size = self.settings.init, content.shape[:2]
        if init == "content":
            base = content
        elif init == "style":
            base = images.resize_image(self.styles[0], size)
        elif init == "noise":
            return initial_image(content, 1.0, self.settings.seed)
        else:
            base = images.resize_image(images.load_image(init, "INIT"), size)
        return initial_image(base, self.settings.noise, self.settings.seed)

    def make_optimizer(self, loss: ImageLoss, starts: np.ndarray) -> Optimizer:
        """L-BFGS (one image) or Adam (a batch of one or more) on `starts` [B, H, W, 3]."""
        s = self.settings
        if s.optimizer == "lbfgs":
            return LbfgsBatchOfOne(loss, starts[0])
        return BatchAdamOptimizer(
            loss,
            starts,
            learning_rate=s.learning_rate,
            beta1=s.beta1,
            beta2=s.beta2,
            epsilon=s.epsilon,
        )


def initial_image(base: np.ndarray, noise: float, seed: int) -> np.ndarray:
    """`base` with a `noise` fraction of uniform 0..255 noise blended in."""
    rng = np.random.default_rng(seed)
    random_pixels = rng.uniform(0.0, 255.0, base.shape).astype(np.float32)
    return ((1.0 - noise) * base + noise * random_pixels).astype(np.float32)


def _constants(arrays: dict) -> dict[str, tf.Tensor]:
    return {name: tf.constant(array, tf.float32) for name, array in arrays.items()}
