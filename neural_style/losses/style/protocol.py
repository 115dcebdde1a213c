"""The seam of the style losses: what every STYLE_LOSS's class provides (StyleStatistic),
and what a tiled loss tells it of a layer (LayerShares). See the package's docstring.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

if TYPE_CHECKING:
    import tensorflow as tf


class StyleStatistic(Protocol):
    """One way to compare an image's style with an artwork's at a layer."""

    name: str  # its STYLE_LOSS value
    # Its statistic is a sum over positions, so an image in tiles gets exactly the whole
    # image's loss; else a run that needs tiles is refused.
    tileable: bool

    # --- a target: measured once per style image, then blended ---

    def measure(self, features: tf.Tensor, guide: tf.Tensor | None) -> Any:
        """One style image's statistic from its features [1, h, w, c], of the region of
        `guide` [1, h, w] (STYLE_IMAGE_MASKS) if one is given."""
        ...

    def partial_sums(self, flat: tf.Tensor, weights: tf.Tensor | None) -> Any:
        """What one tile's core adds to a style image's statistic: its features [M, c],
        weighted by [M, 1] or not (tileable statistics only)."""
        ...

    def from_sums(self, total: Any, mass: float) -> Any:
        """The statistic from the sum of every tile's partial_sums and the image's (or its
        region's) mass."""
        ...

    def target(self, measured: Sequence[Any], shares: Sequence[float]) -> tf.Tensor:
        """The target [1, ...] of the styles measured, blended by `shares` (summing to 1):
        the distribution of their features pooled with those weights."""
        ...

    # --- the loss between an image and a target, each image of a batch alone ---

    def loss(self, features: tf.Tensor, target: tf.Tensor, step: tf.Tensor) -> tf.Tensor:
        """Each image's loss at a layer: [B]."""
        ...

    def region_losses(
        self,
        flat: tf.Tensor,
        weights: tf.Tensor,
        mass: tf.Tensor,
        targets: tf.Tensor,
        step: tf.Tensor,
    ) -> tf.Tensor:
        """Each image's loss of each region against its own target ([B or 1, R, ...]):
        [B, R]."""
        ...

    # --- the loss of an image in tiles (tileable statistics only) ---

    def tile_sums(self, flat: tf.Tensor, weights: tf.Tensor | None) -> tf.Tensor:
        """A tile core's sums per region, [R, ...], of its features [M, c] weighted by
        [R, M, 1] (None: one region of weight 1)."""
        ...

    def loss_of_sums(
        self, sums: tf.Tensor, target: tf.Tensor, shares: LayerShares
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """A layer's loss times its weight, from the whole image's sums [R, ...], and
        `shares.factor` times its gradient with respect to them: the coefficients of the
        tiles' carriers."""
        ...

    def carrier(
        self, features: tf.Tensor, guide: tf.Tensor | None, coefficients: tf.Tensor
    ) -> tf.Tensor:
        """Zero, with the gradient of the core's share of the loss with respect to its
        features [1, h, w, c], given the coefficients of loss_of_sums."""
        ...

    def coefficient_shape(self, target_shape: tuple[int, ...], regions: bool) -> tuple:
        """The shape of a layer's coefficients, from its target's [R, rows, c]."""
        ...


class LayerShares(NamedTuple):
    """What loss_of_sums needs to know of a layer of an image in tiles."""

    masses: Any  # [R] each region's mass, at least weighted.MIN_MASS (M without regions)
    fractions: Any  # [R] each region's mass over M (1 without regions)
    positions: int  # M, the layer's positions in the whole image
    regions: bool  # STYLE_MASKS guide the layer
    weight: float  # the layer's weight in STYLE_LOSS_LAYERS
    factor: float  # BETA times the layer's weight over the number of style layers
