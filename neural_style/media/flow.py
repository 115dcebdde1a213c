"""The motion between video frames, as Ruder, Dosovitskiy and Brox, "Artistic style transfer for
videos" (GCPR 2016) use it: optical flow both ways, warping along it, and the mask of pixels
whose flow can be trusted. Flow comes from OpenCV's DIS (dense inverse search), which needs no
model file and downloads nothing. Numpy and OpenCV only: importing this never loads TensorFlow.

Shapes and conventions:
    frame  [H, W, 3] float32 RGB in 0..255, as media/images.py loads it ([H, W] grey also
           accepted by optical_flow)
    flow   [H, W, 2] float32, (dx, dy) in pixels, x to the right and y down; a flow belongs to
           the frame whose pixel grid it is laid on, and points into the other frame
    mask   [H, W] float32 in {0, 1}, 1 where the flow is reliable

For a pair (previous, current), `forward` is previous -> current, `backward` is current ->
previous, and `warp(previous_stylised, backward)` moves the previous stylised frame onto the
current frame's pixels: the temporal loss compares the current stylised frame with it where
`reliability(backward, forward)` is 1.
"""

from __future__ import annotations

from typing import NamedTuple

import cv2
import numpy as np

FLOW_PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}

# OpenCV's DIS refuses frames this small; smaller frames are edge-padded up to it, which keeps
# tiny videos working (their flow is then mostly the padding's: zero motion).
_DIS_MIN_SIDE = 16

# Ruder et al.'s thresholds (section 3.2 of the paper).
_DISOCCLUSION_RELATIVE = 0.01
_DISOCCLUSION_ABSOLUTE = 0.5
_BOUNDARY_RELATIVE = 0.01
_BOUNDARY_ABSOLUTE = 0.002

# The photometric check (not in the paper): a warped content pixel more than this many grey
# levels (0..255) from the current one, in any channel, shows the flow is wrong there; H.264
# noise and bilinear resampling of real frames stay well within it.
PHOTOMETRIC_TOLERANCE = 24.0
PHOTOMETRIC_MARGIN = 1  # px around a mismatch also distrusted


class FramePair(NamedTuple):
    """Both flows between consecutive frames, each [H, W, 2] float32 (dx, dy) in pixels."""

    forward: np.ndarray  # on previous's grid: previous(x) ~ current(x + forward(x))
    backward: np.ndarray  # on current's grid: current(x) ~ previous(x + backward(x))


def check_preset(preset: str) -> int:
    """The OpenCV constant for a FLOW_PRESETS name; ValueError naming the valid ones."""
    try:
        return FLOW_PRESETS[preset]
    except (KeyError, TypeError):
        valid = ", ".join(FLOW_PRESETS)
        raise ValueError(f"unknown optical flow preset {preset!r}; use one of {valid}") from None


def optical_flow(
    frame_from: np.ndarray, frame_to: np.ndarray, preset: str = "medium"
) -> np.ndarray:
    """Dense optical flow from `frame_from` to `frame_to`, [H, W, 2] float32 (dx, dy) in pixels.

    The flow f lies on frame_from's pixel grid and points into frame_to:
    frame_from(x) ~ frame_to(x + f(x)), which is the convention of OpenCV's
    DISOpticalFlow.calc(prev=frame_from, next=frame_to). Hence warp(frame_to, f) ~ frame_from.
    Both frames are [H, W, 3] RGB (or [H, W] grey) in 0..255, of the same shape; DIS runs on
    their 8-bit grey versions. `preset` is a key of FLOW_PRESETS (ValueError otherwise).
    """
    code = check_preset(preset)
    grey_from, grey_to = _grey(frame_from, "frame_from"), _grey(frame_to, "frame_to")
    if grey_from.shape != grey_to.shape:
        raise ValueError(
            f"frames differ in size: {frame_from.shape[:2]} and {frame_to.shape[:2]}; "
            "optical flow needs two frames of the same size"
        )
    height, width = grey_from.shape
    pad = ((0, max(0, _DIS_MIN_SIDE - height)), (0, max(0, _DIS_MIN_SIDE - width)))
    if any(after for _, after in pad):
        grey_from, grey_to = np.pad(grey_from, pad, "edge"), np.pad(grey_to, pad, "edge")
    flow = cv2.DISOpticalFlow_create(code).calc(grey_from, grey_to, None)
    return np.ascontiguousarray(flow[:height, :width], dtype=np.float32)


def flows(previous: np.ndarray, current: np.ndarray, preset: str = "medium") -> FramePair:
    """Forward (previous -> current) and backward (current -> previous) flows of a frame pair;
    see optical_flow for the convention and FramePair for what each one means."""
    check_preset(preset)
    return FramePair(
        forward=optical_flow(previous, current, preset),
        backward=optical_flow(current, previous, preset),
    )


def warp(image: np.ndarray, flow: np.ndarray, interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
    """`image` sampled at x + flow(x) for every pixel x of flow's grid: float32, image's shape.

    Bilinear (OpenCV's remap, whose sub-pixel weights are quantised to 1/32 px), with the
    border pixels replicated outside the image. So warp(previous, backward) is the previous
    frame moved onto the current frame's pixels. `image` is [H, W] or [H, W, C], `flow`
    [H, W, 2] on the same H, W.
    """
    image = np.asarray(image, dtype=np.float32)
    flow = np.asarray(flow, dtype=np.float32)
    if image.ndim not in (2, 3) or flow.shape != (*image.shape[:2], 2):
        raise ValueError(
            f"cannot warp an image of shape {image.shape} with a flow of shape {flow.shape}; "
            "the flow must be [H, W, 2] on the image's H, W"
        )
    height, width = image.shape[:2]
    grid_y, grid_x = np.mgrid[0:height, 0:width].astype(np.float32)
    map_x = grid_x + flow[..., 0]
    map_y = grid_y + flow[..., 1]

    def remap(plane: np.ndarray) -> np.ndarray:
        return cv2.remap(
            np.ascontiguousarray(plane),
            map_x,
            map_y,
            interpolation=interpolation,
            borderMode=cv2.BORDER_REPLICATE,
        )

    if image.ndim == 2:
        return remap(image)
    # One channel at a time: remap drops a lone channel axis and older OpenCV caps channels at 4.
    return np.stack([remap(image[..., c]) for c in range(image.shape[2])], axis=-1)


def warp_sharp(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """warp with Lanczos (8x8) in place of bilinear interpolation, clipped to 0..255: for
    moving a stylised frame, which a video warps again each frame. A bilinear warp by a
    fraction of a pixel is a blur, and the blur adds up: eight warps by 0.37 and 0.61 px in
    turn left 45% of images/style.jpg's fine detail (its mean distance from a 1-px Gaussian
    blur) at 192 px, bicubic 87% and Lanczos 93%."""
    return np.clip(warp(image, flow, cv2.INTER_LANCZOS4), 0.0, 255.0)


def reliability(backward: np.ndarray, forward: np.ndarray) -> np.ndarray:
    """Which pixels of the current frame have a trustworthy backward flow: [H, W] float32, 1/0.

    `backward` is current -> previous (on the current frame's grid), `forward` previous ->
    current. With Ruder et al.'s names, w_hat(x) = backward(x) and
    w_tilde(x) = forward(x + w_hat(x)) = warp(forward, backward)(x); a pixel is unreliable (0)
    when any of these holds:
      disocclusion, the two flows do not undo each other:
          |w_tilde + w_hat|^2 > 0.01 (|w_tilde|^2 + |w_hat|^2) + 0.5
      motion boundary, with u, v the components of the backward flow:
          |grad u|^2 + |grad v|^2 > 0.01 |w_hat|^2 + 0.002
      off frame (not in the paper): x + w_hat(x) lies more than half a pixel outside the
          previous frame, so there is nothing there to carry over (the paper's check would
          pass on the replicated border flow and keep smeared edge pixels).
    Gradients are central differences (one-sided at the borders), per pixel.
    """
    backward = np.asarray(backward, dtype=np.float32)
    forward = np.asarray(forward, dtype=np.float32)
    if backward.ndim != 3 or backward.shape[2] != 2 or forward.shape != backward.shape:
        raise ValueError(
            f"flows of shapes {backward.shape} and {forward.shape}; "
            "reliability needs two [H, W, 2] flows of the same shape"
        )
    w_hat = backward.astype(np.float64)
    w_tilde = warp(forward, backward).astype(np.float64)
    w_hat_sq = np.sum(w_hat**2, axis=-1)
    round_trip = np.sum((w_tilde + w_hat) ** 2, axis=-1)
    disoccluded = round_trip > (
        _DISOCCLUSION_RELATIVE * (np.sum(w_tilde**2, axis=-1) + w_hat_sq) + _DISOCCLUSION_ABSOLUTE
    )
    gradient_sq = sum(_gradient_sq(w_hat[..., component]) for component in (0, 1))
    boundary = gradient_sq > _BOUNDARY_RELATIVE * w_hat_sq + _BOUNDARY_ABSOLUTE
    return (~(disoccluded | boundary | _off_frame(backward))).astype(np.float32)


def photometric_match(
    previous_content: np.ndarray, current_content: np.ndarray, backward: np.ndarray
) -> np.ndarray:
    """Where the backward flow carries the previous content frame onto the current one:
    [H, W] float32, 1 where |current - warp(previous, backward)| stays within
    PHOTOMETRIC_TOLERANCE grey levels in every channel, 0 elsewhere, and 0 too within
    PHOTOMETRIC_MARGIN pixels of such a mismatch (a bilinear warp reads the 2x2 pixels around
    its point, so the pixels beside a wrong match are tainted by it).

    Forward-backward consistency cannot see a flow that is wrong both ways, as DIS is inside a
    flat, moving region (a white roof) whose two flows agree on too little motion; the content
    frames themselves can: what the flow brings there is not what is there. Frames are
    [H, W, 3] in 0..255, `backward` current -> previous [H, W, 2].
    """
    previous, current, backward = _checked(
        previous_content, current_content, backward, "the photometric check"
    )
    worst = _worst_channel(np.abs(current - warp(previous, backward)))
    mismatch = (worst > PHOTOMETRIC_TOLERANCE).astype(np.uint8)
    if PHOTOMETRIC_MARGIN:
        side = 2 * PHOTOMETRIC_MARGIN + 1
        mismatch = cv2.dilate(mismatch, np.ones((side, side), np.uint8))
    return (1 - mismatch).astype(np.float32)


def trusted(
    previous_content: np.ndarray, current_content: np.ndarray, pair: FramePair
) -> np.ndarray:
    """The pixels of the current frame whose backward flow can be trusted, [H, W] float32 1/0:
    reliability (Ruder et al.'s forward-backward and motion-boundary checks, and the frame's
    edge) and photometric_match of the content frames."""
    return reliability(pair.backward, pair.forward) * photometric_match(
        previous_content, current_content, pair.backward
    )


def nearest_trusted(masks: list[np.ndarray]) -> list[np.ndarray]:
    """Ruder et al.'s long-term weights (2016, section 3.3): `masks` are the trusted masks of
    the earlier frames a frame is held to, nearest first ([H, W] each); each pixel is given
    to the nearest frame that covers it, so mask j keeps a pixel only where no mask before it
    does. The results are disjoint and sum to at most 1."""
    taken = None
    kept = []
    for mask in masks:
        mask = np.asarray(mask, dtype=np.float32)
        kept.append(mask if taken is None else mask * (1.0 - taken))
        taken = mask if taken is None else np.maximum(taken, mask)
    return kept


# flow.hold: a pixel that moved further than this (px) since the earlier frame holding it
# moves (benchmarks/video.py's moving region, between neighbouring frames).
MOVING_DISTANCE = 1.5


def hold(shares: list[np.ndarray], backwards: list[np.ndarray], moving_share: float) -> np.ndarray:
    """How firmly the temporal loss holds each pixel, [H, W] float32 in 0..1: the earlier
    frames' `shares` of it (nearest_trusted), each times `moving_share` where that frame's
    backward flow (`backwards`, [H, W, 2] each, in the same order) moves the pixel further
    than MOVING_DISTANCE. 1 over a still pixel an earlier frame covers, 0 over a new one."""
    held = np.zeros(shares[0].shape, np.float32)
    for share, backward in zip(shares, backwards, strict=True):
        moved = np.linalg.norm(backward, axis=-1) > MOVING_DISTANCE
        held += share * np.where(moved, np.float32(moving_share), np.float32(1.0))
    return held


def use_threads(count: int) -> None:
    """OpenCV's threads for the flow, `count` of them when above 0: a cluster task sizes
    them as it sizes TensorFlow's, to the CPUs it was given (OpenCV takes every core)."""
    if count > 0:
        cv2.setNumThreads(count)


# flow.settle: a flow slower than this (px) may be noise, and is tested against no motion.
SETTLE_SPEED = 0.5
SETTLE_TOLERANCE = 2.0  # grey levels no motion may match worse than the flow and still win


def settle(previous_content: np.ndarray, current_content: np.ndarray, backward: np.ndarray):
    """The backward flow with its noise over still pixels set to zero: [H, W, 2] float32.

    DIS finds a few hundredths to tenths of a pixel of motion over a still textured area, and
    a warp by a fraction of a pixel resamples, which a stylised frame's finest texture does
    not survive (with the synthetic weights, a Lanczos warp of a Big Buck Bunny result by
    0.1 px raises its style loss by a sixth, by 0.25 px sixfold). A pixel is still where its
    flow is slower than SETTLE_SPEED and no motion matches the content frames about as well
    as the flow does: the mean over its 3x3 neighbourhood of |current - previous| (worst
    channel) is within SETTLE_TOLERANCE grey levels of that of |current - warped previous|.
    A slow real motion over texture changes the content and keeps its flow; a flat region
    keeps any flow of SETTLE_SPEED or more. Frames [H, W, 3] in 0..255, `backward`
    current -> previous [H, W, 2].
    """
    previous, current, backward = _checked(previous_content, current_content, backward, "settle")
    unmoved = cv2.blur(_worst_channel(np.abs(current - previous)), (3, 3))
    moved = cv2.blur(_worst_channel(np.abs(current - warp(previous, backward))), (3, 3))
    slow = np.linalg.norm(backward, axis=-1) < SETTLE_SPEED
    still = slow & (unmoved <= moved + SETTLE_TOLERANCE)
    return np.where(still[..., None], np.float32(0.0), backward).astype(np.float32)


def _checked(
    previous_content: np.ndarray, current_content: np.ndarray, backward: np.ndarray, user: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The two content frames and the backward flow as float32 arrays; a ValueError naming
    `user` unless the frames are of one shape and the flow [H, W, 2] of it."""
    previous = np.asarray(previous_content, dtype=np.float32)
    current = np.asarray(current_content, dtype=np.float32)
    backward = np.asarray(backward, dtype=np.float32)
    if previous.shape != current.shape or backward.shape != (*current.shape[:2], 2):
        raise ValueError(
            f"content frames {previous.shape} and {current.shape} with a flow {backward.shape}; "
            f"{user} needs two frames of one shape and an [H, W, 2] flow"
        )
    return previous, current, backward


def _worst_channel(difference: np.ndarray) -> np.ndarray:
    return difference.max(axis=-1) if difference.ndim == 3 else difference


def warping_error(
    stylised_previous: np.ndarray,
    stylised_current: np.ndarray,
    backward: np.ndarray,
    mask: np.ndarray,
) -> float:
    """The temporal warping error of Lai et al., "Learning Blind Video Temporal Consistency"
    (ECCV 2018): the mean, over reliable pixels and their channels, of the squared difference
    between the current frame and the previous one warped onto it, on images scaled to 0..1:

        sum(mask * (current - warp(previous, backward))^2) / (C * sum(mask)),  pixels / 255

    Frames are [H, W, C] (or [H, W]) in 0..255, `backward` current -> previous [H, W, 2],
    `mask` [H, W] weights (reliability's 0/1). Returns nan when no pixel is reliable
    (sum(mask) == 0): there is nothing to measure, and 0 would claim a perfect match.
    """
    previous = np.asarray(stylised_previous, dtype=np.float32)
    current = np.asarray(stylised_current, dtype=np.float32)
    mask = np.asarray(mask, dtype=np.float64)
    if previous.shape != current.shape or mask.shape != current.shape[:2]:
        raise ValueError(
            f"frames {previous.shape} and {current.shape} with a mask {mask.shape}; "
            "the warping error needs two frames of one shape and an [H, W] mask"
        )
    weight = float(mask.sum())
    if weight == 0.0:
        return float("nan")
    difference = (current.astype(np.float64) - warp(previous, backward)) / 255.0
    squared = difference**2 if difference.ndim == 2 else np.sum(difference**2, axis=-1)
    channels = 1 if current.ndim == 2 else current.shape[2]
    return float(np.sum(mask * squared) / (channels * weight))


def _grey(frame: np.ndarray, name: str) -> np.ndarray:
    """An [H, W] RGB-or-grey frame in 0..255 as the 8-bit grey image DIS works on."""
    frame = np.asarray(frame, dtype=np.float32)
    if not (frame.ndim == 2 or (frame.ndim == 3 and frame.shape[2] == 3)):
        raise ValueError(f"{name} has shape {frame.shape}; optical flow needs [H, W, 3] or [H, W]")
    if frame.size == 0:
        raise ValueError(f"{name} is empty (shape {frame.shape}); optical flow needs pixels")
    if not np.all(np.isfinite(frame)):
        raise ValueError(f"{name} holds NaN or infinite values; optical flow needs finite pixels")
    grey = frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    return np.clip(np.rint(grey), 0, 255).astype(np.uint8)


def _gradient_sq(plane: np.ndarray) -> np.ndarray:
    """|grad plane|^2 per pixel; a plane of one row or column has no gradient along it."""
    total = np.zeros_like(plane)
    for axis in (0, 1):
        if plane.shape[axis] > 1:
            total += np.gradient(plane, axis=axis) ** 2
    return total


def _off_frame(flow: np.ndarray) -> np.ndarray:
    """Where x + flow(x) lands more than half a pixel outside the frame flow's grid covers."""
    height, width = flow.shape[:2]
    grid_y, grid_x = np.mgrid[0:height, 0:width].astype(np.float32)
    target_x, target_y = grid_x + flow[..., 0], grid_y + flow[..., 1]
    return (
        (target_x < -0.5) | (target_x > width - 0.5) | (target_y < -0.5) | (target_y > height - 0.5)
    )
