"""Styles by region: the masks of STYLE_MASKS, STYLE_IMAGE_MASKS and CONTENT_MASK, read and
checked once, and brought to each layer's grid (no TensorFlow here; guided.py holds the
losses that use them).

A mask is a grey image read as weights 0..1 (black 0, white 1). At a layer of stride s
(input pixels per feature position, see tile_layout.layer_stride) the mask, resized to the
image it guides, is averaged over each s x s block of pixels: the blocks are the pixels of
that feature position (VGG's pools are 2 x 2, stride 2, VALID), so the grid is the layer's
own, floor(H/s) x floor(W/s), and a tile's core cuts it where it cuts the features.

The word "whole" in place of a mask's path means the whole image (all white).

Shapes: a mask [H, W] float32 0..1; a layer's guide [h, w]; a stack of guides [R, h, w],
one per region (style).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple

import numpy as np

from neural_style.errors import UserError, setting_fix
from neural_style.media import images
from neural_style.settings.gatys import Settings
from neural_style.vgg.tile_layout import layer_stride

# The path that means "no mask: the whole image".
WHOLE = "whole"

# How far a mask's width/height ratio may be from its image's before it is refused (a mask
# drawn over a photo and saved at another resolution differs by rounding only).
ASPECT_TOLERANCE = 0.02


class Masks(NamedTuple):
    """The masks of a run, each [H, W] float32 0..1 at its file's own size."""

    style: tuple[np.ndarray | None, ...] = ()  # STYLE_MASKS: one per style, None = whole
    style_image: tuple[np.ndarray | None, ...] = ()  # STYLE_IMAGE_MASKS, alike
    content: np.ndarray | None = None  # CONTENT_MASK

    @property
    def regions(self) -> bool:
        """Each style is matched in its own region of the output (STYLE_MASKS is set)."""
        return bool(self.style)

    def style_image_mask(self, index: int) -> np.ndarray | None:
        return self.style_image[index] if self.style_image else None


NO_MASKS = Masks()


def load_masks(settings: Settings, styles: Sequence[np.ndarray]) -> Masks:
    """The masks the settings name, read and checked: each an image with something white
    in it, each STYLE_IMAGE_MASKS entry of its style image's shape.

    Raises:
      UserError: one line naming the mask file and the fix.
    """
    style_image = tuple(_load(path, "STYLE_IMAGE_MASKS") for path in settings.style_image_masks)
    for mask, style, path, style_path in zip(
        style_image,
        styles,
        settings.style_image_masks,
        settings.style_image,
        strict=False,
    ):
        if mask is not None:
            check_shape(mask, style.shape[:2], path, "STYLE_IMAGE_MASKS", f"style {style_path}")
    return Masks(
        style=tuple(_load(path, "STYLE_MASKS") for path in settings.style_masks),
        style_image=style_image,
        content=_load(settings.content_mask, "CONTENT_MASK") if settings.content_mask else None,
    )


def check_output_masks(
    settings: Settings, masks: Masks, size_hw: tuple[int, int], what: str
) -> None:
    """STYLE_MASKS and CONTENT_MASK have the shape of `what` (a photo or video), whose
    size is `size_hw`: a mask is drawn over the photo, and resized with it."""
    for mask, path in zip(masks.style, settings.style_masks, strict=True):
        if mask is not None:
            check_shape(mask, size_hw, path, "STYLE_MASKS", what)
    if masks.content is not None:
        check_shape(masks.content, size_hw, settings.content_mask, "CONTENT_MASK", what)


def check_shape(
    mask: np.ndarray, size_hw: tuple[int, int], path: str, setting: str, what: str
) -> None:
    """A UserError unless `mask` has the width/height ratio of `size_hw` (to rounding)."""
    mask_ratio = mask.shape[1] / mask.shape[0]
    ratio = size_hw[1] / size_hw[0]
    if abs(mask_ratio / ratio - 1.0) > ASPECT_TOLERANCE:
        raise UserError(
            f"{path}: the mask is {mask.shape[1]}x{mask.shape[0]} but {what} is "
            f"{size_hw[1]}x{size_hw[0]}, another shape; draw the mask over that image "
            f"(any resolution of it) or {setting_fix(setting)}"
        )


def _load(path: str, setting: str) -> np.ndarray | None:
    if path == WHOLE:
        return None
    mask = images.load_mask(path, setting)
    if not np.any(mask > 0):
        raise UserError(
            f"{path}: the mask is all black, so it marks no region; paint the region white "
            f"(grey blends), write {WHOLE!r} for the whole image, or {setting_fix(setting)}"
        )
    return mask


def resized(mask: np.ndarray | None, size_hw: tuple[int, int]) -> np.ndarray:
    """`mask` at `size_hw` (None: all ones), bilinear, in 0..1."""
    if mask is None:
        return np.ones(size_hw, np.float32)
    return images.resize_mask(mask, size_hw)


def pooled(mask: np.ndarray, stride: int) -> np.ndarray:
    """The [H, W] mask averaged over stride x stride blocks: [H // stride, W // stride]."""
    height, width = mask.shape[0] // stride, mask.shape[1] // stride
    blocks = mask[: height * stride, : width * stride].reshape(height, stride, width, stride)
    return blocks.mean(axis=(1, 3), dtype=np.float64).astype(np.float32)


def layer_guides(
    masks: Sequence[np.ndarray | None], size_hw: tuple[int, int], layers: Iterable[str]
) -> dict[str, np.ndarray]:
    """Each layer's guides of an image of `size_hw`: {layer: [R, h, w]}, one per mask."""
    full = [resized(mask, size_hw) for mask in masks]
    return {name: np.stack([pooled(mask, layer_stride(name)) for mask in full]) for name in layers}
