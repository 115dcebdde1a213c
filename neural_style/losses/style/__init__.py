"""The style losses behind one seam: each compares a statistic of the image's features with
the artwork's, at every style layer, and is one class with the methods of StyleStatistic.

    gram.py     "gram": Gram matrices (Gatys et al. 2015)
    w2.py       "w2": Gaussian fits matched in the 2-Wasserstein distance
    sliced.py   "sw": the whole feature distribution, matched along random directions
                (Heitz et al. 2021)

What uses a statistic is written once against the protocol: the targets of one or several
style images, blended or one per region (targets.py, tiled_targets.py), the loss of whole
images and batches (gatys.py), the loss by region under masks (guided.py), and the loss of
an image in tiles (optimize/tiling.py). A new style loss is a new module here, an entry in
REGISTRY, and its STYLE_LOSS choice (settings/gatys.py and the comment in settings.py).

This module imports no TensorFlow (the plan asks it whether a loss works in tiles); the
statistics' own modules are imported when one is asked for.

Shapes: features [B, h, w, c]; flat features [B, 1, M, c] with position weights
[1, R, M, 1] and masses [R] (weighted.py); a target [1, ...] or [B, ...] (one per photo),
with regions [1, R, ...]; a tile's sums [R, ...]. `step` is the step being taken, 1-based
over the run: a statistic that varies with it (sw's random directions) gives the same
loss for the same step, so a resumed run repeats a straight one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from neural_style.losses.style.protocol import LayerShares, StyleStatistic

__all__ = [
    "REGISTRY",
    "LayerShares",
    "StyleStatistic",
    "feature_copies",
    "is_tileable",
    "style_statistic",
]


class Entry(NamedTuple):
    """A style loss in the registry: whether it works in tiles, how many float32 copies of
    each style layer's features its loss keeps beyond the network's (for the memory plan),
    and how to make it."""

    tileable: bool
    copies: int
    make: Callable[[], StyleStatistic]


def _gram() -> StyleStatistic:
    from neural_style.losses.style.gram import Gram

    return Gram()


def _w2() -> StyleStatistic:
    from neural_style.losses.style.w2 import Wasserstein

    return Wasserstein()


def _sw() -> StyleStatistic:
    from neural_style.losses.style.sliced import SlicedWasserstein

    return SlicedWasserstein()


REGISTRY: dict[str, Entry] = {
    "gram": Entry(tileable=True, copies=0, make=_gram),
    "w2": Entry(tileable=True, copies=0, make=_w2),
    # Its projections, sorted with their order, and the quantiles they are pulled to: a step
    # at 1024x768 in float32 peaked at 3.67 GiB against gram's 2.76 (the estimate: 4.33).
    "sw": Entry(tileable=False, copies=3, make=_sw),
}

_made: dict[str, StyleStatistic] = {}


def style_statistic(name: str) -> StyleStatistic:
    """The statistic of STYLE_LOSS `name` (one object per name, stateless)."""
    if name not in _made:
        _made[name] = REGISTRY[name].make()
    return _made[name]


def is_tileable(name: str) -> bool:
    """Whether STYLE_LOSS `name` works in tiles, without importing TensorFlow."""
    return REGISTRY[name].tileable


def feature_copies(name: str) -> int:
    """The float32 copies of each style layer's features STYLE_LOSS `name` keeps, without
    importing TensorFlow."""
    return REGISTRY[name].copies
