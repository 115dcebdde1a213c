"""Where the tiles of an image too large for one step lie (optimize/tiling.py runs them).

No TensorFlow here, so that optimize/memory.py can plan tiles before TensorFlow starts.

    layout = tile_layout((3072, 4096), grid=(2, 3), margin=tile_margin(layers))
    layout.tiles[0].core, layout.tiles[0].crop, layout.overhead
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable
from typing import Any, NamedTuple

import numpy as np

from neural_style.names import VGG19_LAYERS

# Tile edges lie on multiples of this: the stride of the deepest layer VGG-19 computes
# after its fourth pool, so that each layer's feature positions split between tiles.
ALIGNMENT = 16


def layer_stride(name: str) -> int:
    """Input pixels per feature position at `name`: 2 to the number of pools before it."""
    pools = sum(1 for layer in VGG19_LAYERS[: VGG19_LAYERS.index(name)] if layer.startswith("pool"))
    return 2**pools


def receptive_radius(layers: Iterable[str]) -> int:
    """How many pixels beyond a position, on the wider side, the deepest of `layers` sees:
    each 3x3 conv adds its stride on both sides, each 2x2 pool its stride on one side."""
    deepest = max(VGG19_LAYERS.index(name) for name in layers)
    radius, stride = 0, 1
    for name in VGG19_LAYERS[: deepest + 1]:
        if name.startswith("conv"):
            radius += stride
        elif name.startswith("pool"):
            radius += stride
            stride *= 2
    return radius


def tile_margin(layers: Iterable[str]) -> int:
    """The crop margin for `layers`: their receptive radius, rounded up to the alignment."""
    return math.ceil(receptive_radius(layers) / ALIGNMENT) * ALIGNMENT


class Tile(NamedTuple):
    core: tuple[int, int, int, int]  # top, bottom, left, right in image pixels
    crop: tuple[int, int, int, int]  # the core plus the margin, clipped to the image

    def core_in_crop(self) -> np.ndarray:
        """The core's box in the crop's pixels: [top, bottom, left, right], int32."""
        top, bottom, left, right = self.core
        return np.array(
            [top - self.crop[0], bottom - self.crop[0], left - self.crop[2], right - self.crop[2]],
            np.int32,
        )

    def feature_box(self, stride: int) -> tuple[int, int, int, int]:
        """The core's positions at a layer of `stride`, in the whole image's features."""
        return tuple(edge // stride for edge in self.core)


def feature_positions(size: tuple[int, int], stride: int) -> int:
    """Positions of an image's features at a layer of `stride` (VALID pools)."""
    return (size[0] // stride) * (size[1] // stride)


def crop_of(array: Any, box: tuple[int, int, int, int]) -> Any:
    """`array`[:, top:bottom, left:right, :] (numpy or TensorFlow)."""
    return array[:, box[0] : box[1], box[2] : box[3], :]


def core_of(features: Any, box: Any, stride: int) -> Any:
    """The core's positions of a crop's features at a layer of `stride`, for the core's
    `box` in the crop's pixels (numpy or TensorFlow; a tensor `box` inside a graph)."""
    return features[:, box[0] // stride : box[1] // stride, box[2] // stride : box[3] // stride, :]


def _edges(length: int, pieces: int) -> list[int]:
    """`pieces` + 1 cut points from 0 to `length`, the inner ones on the alignment grid."""
    inner = [round(length * index / pieces / ALIGNMENT) * ALIGNMENT for index in range(1, pieces)]
    return sorted({0, *(edge for edge in inner if 0 < edge < length), length})


class TileLayout(NamedTuple):
    size: tuple[int, int]  # (height, width) of the whole image
    grid: tuple[int, int]  # (rows, columns) of tiles
    margin: int
    tiles: tuple[Tile, ...]

    @property
    def largest_crop(self) -> tuple[int, int]:
        """(height, width) of the largest crop: what one tile's step needs memory for."""
        return (
            max(tile.crop[1] - tile.crop[0] for tile in self.tiles),
            max(tile.crop[3] - tile.crop[2] for tile in self.tiles),
        )

    @property
    def overhead(self) -> float:
        """Pixels the crops run through the network, over the image's pixels."""
        crops = sum((t.crop[1] - t.crop[0]) * (t.crop[3] - t.crop[2]) for t in self.tiles)
        return crops / (self.size[0] * self.size[1])


def tile_layout(size: tuple[int, int], grid: tuple[int, int], margin: int) -> TileLayout:
    """`size` (height, width) cut into `grid` (rows, columns) of cores, each cropped with
    `margin` pixels around it."""
    height, width = size
    rows, columns = _edges(height, grid[0]), _edges(width, grid[1])
    tiles = []
    for top, bottom in itertools.pairwise(rows):
        for left, right in itertools.pairwise(columns):
            crop = (
                max(top - margin, 0),
                min(bottom + margin, height),
                max(left - margin, 0),
                min(right + margin, width),
            )
            tiles.append(Tile((top, bottom, left, right), crop))
    return TileLayout(size, grid, margin, tuple(tiles))


def core_side(size: tuple[int, int], grid: tuple[int, int]) -> int:
    """The longest side of the cores of `size` cut into `grid`, in pixels."""
    return max(math.ceil(size[0] / grid[0]), math.ceil(size[1] / grid[1]))


def grid_for_core(size: tuple[int, int], core_side: int) -> tuple[int, int]:
    """The (rows, columns) of tiles whose cores are at most about `core_side` a side."""
    return (max(math.ceil(size[0] / core_side), 1), max(math.ceil(size[1] / core_side), 1))
