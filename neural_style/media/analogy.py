"""A styled start for the pixels of a video frame that no earlier result covers (what a moving
thing uncovers, or what the flow cannot follow): each such pixel is given the style of a
covered pixel of like content colour, a pixel-wise image analogy (after Hertzmann et al.,
"Image Analogies", 2001). Numpy and scipy only: importing this never loads TensorFlow.

    start = analogy.fill(content, target, mask, (SEED, frame))   # use start where mask is 0

Shapes: `content` (the frame) and `target` (the earlier results moved onto it) [H, W, 3]
float32 in 0..255; `mask` [H, W], 1 where the target covers the pixel.

Why: the style loss is one Gram matrix over the whole frame. Once the covered pixels carry
the style, a few new pixels that still look like the photo hardly change it, so the steps
of a later frame leave them as they started, and the temporal loss then holds them so, frame
after frame: a pale ghost of the photo where something moved. Started from the styled
values of pixels like them, they carry the style from their first frame.
"""

from __future__ import annotations

import numpy as np

# Each new pixel takes one of this many covered pixels nearest to it in content colour and
# place, drawn at random, so that a flat new area gets the style's spread of colours, not
# one pixel's colour copied over it.
CANDIDATES = 8
# Grey levels of content colour that one pixel of distance weighs as. At 0.02 a covered pixel
# 100 px away is as near as one beside it whose colour differs by 2 levels: colour decides,
# and of like colours the nearer win. On Big Buck Bunny (frames 2-14 at 192 px) the moving
# pixels kept more style the less place weighed: 0.5, 0.1 and 0.02 gave a moving/static
# ratio against independent frames of 1.53, 1.36 and 1.28 at most (docs/performance.md).
PLACE_WEIGHT = 0.02
# At most this many covered pixels are searched (drawn at random from more): enough for the
# colours of a frame, and it keeps a 1080p frame's fill to a few seconds.
MAX_SOURCES = 65536


def fill(
    content: np.ndarray, target: np.ndarray, mask: np.ndarray, seed: int | tuple[int, ...]
) -> np.ndarray:
    """`content` with each pixel where `mask` is 0 replaced by its analogy: the target value
    of a covered pixel of like content colour and place, plus how this pixel's content
    differs from that pixel's, so that the photo's own detail stays. That pixel is one of
    the CANDIDATES nearest in (R, G, B, PLACE_WEIGHT x, PLACE_WEIGHT y), drawn with `seed`
    (non-negative ints, such as the run's SEED and the frame's index). [H, W, 3] float32
    clipped to 0..255; the covered pixels keep their content. With fewer covered pixels
    than CANDIDATES there is no style to borrow, and the content is returned."""
    from scipy.spatial import cKDTree

    content = np.asarray(content, dtype=np.float32)
    target = np.asarray(target, dtype=np.float32)
    covered = np.asarray(mask) > 0.5
    if content.shape != target.shape or covered.shape != content.shape[:2]:
        raise ValueError(
            f"content {content.shape}, target {target.shape} and mask {covered.shape}; "
            "the fill needs two [H, W, 3] images and an [H, W] mask of their size"
        )
    result = content.copy()
    new, sources = np.flatnonzero(~covered), np.flatnonzero(covered)
    if not new.size or sources.size < CANDIDATES:
        return result
    rng = np.random.default_rng(seed)
    if sources.size > MAX_SOURCES:
        sources = np.sort(rng.choice(sources, MAX_SOURCES, replace=False))
    features = _features(content)
    _, nearest = cKDTree(features[sources]).query(features[new], CANDIDATES)
    chosen = sources[nearest[np.arange(new.size), rng.integers(0, CANDIDATES, new.size)]]
    pixels, styled = content.reshape(-1, 3), target.reshape(-1, 3)
    result.reshape(-1, 3)[new] = styled[chosen] + (pixels[new] - pixels[chosen])
    return np.clip(result, 0.0, 255.0)


def _features(content: np.ndarray) -> np.ndarray:
    """[H * W, 5]: each pixel's colour and its place, weighed by PLACE_WEIGHT."""
    height, width = content.shape[:2]
    rows, columns = np.mgrid[0:height, 0:width].astype(np.float32)
    place = PLACE_WEIGHT * np.stack([columns, rows], axis=-1)
    return np.concatenate([content, place], axis=-1).reshape(height * width, 5)
