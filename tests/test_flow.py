"""Optical flow, warping, the reliability mask and the warping error (neural_style.media.flow), on
synthetic clips whose true motion the tests know: a pan and a square moving over a still
background."""

from __future__ import annotations

import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from neural_style.media import flow, images, video_io
from tests.support import REPO_ROOT, photo

HEIGHT, WIDTH = 96, 128
PAN_X, PAN_Y = 5, 3  # the camera moves so that content goes 5 px right and 3 px down
MARGIN = 12  # pixels kept clear of the borders, where new content enters the frame


def textured(height: int, width: int, seed: int = 0) -> np.ndarray:
    """photo() plus blurred noise: detail at a few pixels' scale for DIS to lock onto."""
    rng = np.random.default_rng(seed)
    noise = cv2.GaussianBlur(rng.normal(0, 1, (height, width)).astype(np.float32), (0, 0), 1.5)
    detail = noise / noise.std() * 25
    return np.clip(photo(height, width, seed) + detail[..., None], 0, 255).astype(np.float32)


def panned_pair(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two crops of one larger picture: current(y, x) = previous(y - PAN_Y, x - PAN_X)."""
    big = textured(HEIGHT + 20, WIDTH + 20, seed)
    previous = big[10 : 10 + HEIGHT, 10 : 10 + WIDTH]
    current = big[10 - PAN_Y : 10 - PAN_Y + HEIGHT, 10 - PAN_X : 10 - PAN_X + WIDTH]
    return previous.copy(), current.copy()


def interior(array: np.ndarray) -> np.ndarray:
    return array[MARGIN:-MARGIN, MARGIN:-MARGIN]


def constant_flow(dx: float, dy: float, height: int = HEIGHT, width: int = WIDTH) -> np.ndarray:
    return np.broadcast_to(np.float32([dx, dy]), (height, width, 2)).copy()


def test_pan_flows_recover_the_motion_both_ways():
    previous, current = panned_pair()
    pair = flow.flows(previous, current)
    assert pair.forward.shape == pair.backward.shape == (HEIGHT, WIDTH, 2)
    assert pair.forward.dtype == pair.backward.dtype == np.float32
    forward = np.median(interior(pair.forward).reshape(-1, 2), axis=0)
    backward = np.median(interior(pair.backward).reshape(-1, 2), axis=0)
    np.testing.assert_allclose(forward, [PAN_X, PAN_Y], atol=0.5)
    np.testing.assert_allclose(backward, [-PAN_X, -PAN_Y], atol=0.5)
    # optical_flow is the one-way call flows() is made of, with DIS's own convention
    np.testing.assert_array_equal(flow.optical_flow(previous, current), pair.forward)


def test_warp_along_the_backward_flow_rebuilds_the_current_frame():
    previous, current = panned_pair()
    pair = flow.flows(previous, current)
    moved = flow.warp(previous, pair.backward)
    assert moved.shape == current.shape and moved.dtype == np.float32
    assert np.abs(interior(moved) - interior(current)).mean() < 3.0
    # the wrong direction is far off, so the check above can tell the two apart
    assert np.abs(interior(flow.warp(previous, pair.forward)) - interior(current)).mean() > 15.0


def test_warp_by_a_whole_pixel_shift_is_exact_for_grey_colour_and_many_channels():
    previous, current = panned_pair()
    true_backward = constant_flow(-PAN_X, -PAN_Y)
    np.testing.assert_array_equal(
        flow.warp(previous, true_backward)[PAN_Y:, PAN_X:], current[PAN_Y:, PAN_X:]
    )
    grey = previous[..., 0]
    np.testing.assert_array_equal(
        flow.warp(grey, true_backward)[PAN_Y:, PAN_X:], current[PAN_Y:, PAN_X:, 0]
    )
    stacked = np.concatenate([previous, previous[..., ::-1]], axis=-1)  # 6 channels
    np.testing.assert_array_equal(
        flow.warp(stacked, true_backward)[PAN_Y:, PAN_X:],
        np.concatenate([current, current[..., ::-1]], axis=-1)[PAN_Y:, PAN_X:],
    )
    # outside the picture the border pixels are replicated
    np.testing.assert_array_equal(flow.warp(grey, true_backward)[0, 0], grey[0, 0])
    with pytest.raises(ValueError, match="flow must be"):
        flow.warp(previous, true_backward[:-1])


def test_pan_mask_trusts_the_picture_and_not_what_enters_at_the_edges():
    previous, current = panned_pair()
    pair = flow.flows(previous, current)
    mask = flow.reliability(pair.backward, pair.forward)
    assert mask.shape == (HEIGHT, WIDTH) and mask.dtype == np.float32
    assert set(np.unique(mask)) <= {0.0, 1.0}
    assert interior(mask).mean() > 0.98
    # the strips that came into view had no past: nothing there to carry over
    assert mask[:, : PAN_X - 1].max() == 0.0
    assert mask[: PAN_Y - 1].max() == 0.0


def test_mask_marks_what_a_moving_square_uncovers():
    size, shift, top, left = 32, 6, 32, 40
    background = textured(HEIGHT, WIDTH, seed=1)
    square = textured(size, size, seed=11)[..., ::-1] * 0.5 + 100
    previous, current = background.copy(), background.copy()
    previous[top : top + size, left : left + size] = square
    current[top : top + size, left + shift : left + shift + size] = square
    pair = flow.flows(previous, current)
    mask = flow.reliability(pair.backward, pair.forward)
    uncovered = mask[top : top + size, left : left + shift]
    assert 1.0 - uncovered.mean() > 0.8
    far = np.ones((HEIGHT, WIDTH), dtype=bool)
    far[top - 16 : top + size + 16, left - 16 : left + shift + size + 16] = False
    far[:8], far[-8:], far[:, :8], far[:, -8:] = False, False, False, False
    assert mask[far].mean() > 0.95


def test_mask_thresholds_are_the_papers():
    # disocclusion: |w_tilde + w_hat|^2 > 0.01 (|w_tilde|^2 + |w_hat|^2) + 0.5, with
    # w_hat = (-1, 0): w_tilde = 1.7 gives 0.49 <= 0.5389, w_tilde = 1.75 gives 0.5625 > 0.5406
    backward = constant_flow(-1.0, 0.0, 16, 16)
    kept = flow.reliability(backward, constant_flow(1.7, 0.0, 16, 16))
    dropped = flow.reliability(backward, constant_flow(1.75, 0.0, 16, 16))
    assert kept[:, 1:].min() == 1.0 and dropped.max() == 0.0
    assert kept[:, 0].max() == 0.0  # x - 1 leaves the frame there
    # motion boundary: u steps from 0 to a at x = 10, so central differences give
    # |grad u|^2 = a^2 / 4 at x = 9 and 10: 0.01 > 0.002 for a = 0.2, 0.0016 < 0.002 for a = 0.08
    for step, expected in ((0.2, 0.0), (0.08, 1.0)):
        backward = np.zeros((16, 16, 2), np.float32)
        backward[:, 10:, 0] = step
        mask = flow.reliability(backward, np.zeros_like(backward))
        np.testing.assert_array_equal(mask[:, 9:11], expected)
        assert np.delete(mask, [9, 10], axis=1).min() == 1.0


@pytest.mark.parametrize(("down", "expected"), [(10.0, 0.0), (20.0, 1.0)])
def test_mask_boundary_threshold_grows_with_the_motion(down, expected):
    # u steps from 0 to 3 at x = 10 (|grad u|^2 = 2.25 at x = 9 and 10) under a vertical motion
    # of `down` px: 0.01 |w_hat|^2 + 0.002 is about 1.0 for 10 px and 4.0 for 20 px
    backward = np.zeros((40, 24, 2), np.float32)
    backward[..., 1] = down
    backward[:, 10:, 0] = 3.0
    # a forward flow that undoes it exactly, so only the boundary check can object
    forward = np.zeros_like(backward)
    forward[..., 1] = -down
    forward[:, 10:, 0] = -3.0
    mask = flow.reliability(backward, forward)[:16, :20]  # rows and columns that stay in frame
    np.testing.assert_array_equal(mask[:, 9:11], expected)
    assert np.delete(mask, [9, 10], axis=1).min() == 1.0


def test_warping_error_is_zero_for_an_exact_warp_and_grows_with_noise():
    previous, current = panned_pair()
    true_backward = constant_flow(-PAN_X, -PAN_Y)
    mask = np.zeros((HEIGHT, WIDTH), np.float32)
    mask[PAN_Y:, PAN_X:] = 1.0
    assert flow.warping_error(previous, current, true_backward, mask) == 0.0
    noise = np.random.default_rng(3).normal(0, 10, current.shape).astype(np.float32)
    noisy = flow.warping_error(previous, current + noise, true_backward, mask)
    # Lai et al.'s scale: the noise's variance in 0..1 units, (10 / 255)^2
    assert noisy == pytest.approx((10 / 255) ** 2, rel=0.05)
    assert np.isnan(flow.warping_error(previous, current, true_backward, np.zeros_like(mask)))


def test_warping_error_scale_worked_by_hand():
    previous = np.zeros((2, 2, 3), np.float32)
    current = np.zeros((2, 2, 3), np.float32)
    current[0, 0] = [255, 0, 0]  # one channel off by 1.0
    current[0, 1] = [51, 51, 51]  # three channels off by 0.2
    current[1, 0] = [255, 255, 255]  # masked out
    mask = np.float32([[1, 1], [0, 0]])
    zero = np.zeros((2, 2, 2), np.float32)
    # (1.0^2 + 3 * 0.2^2) / (3 channels * 2 pixels) = 1.12 / 6
    assert flow.warping_error(previous, current, zero, mask) == pytest.approx(1.12 / 6)
    with pytest.raises(ValueError, match="mask"):
        flow.warping_error(previous, current, zero, mask[:1])


def test_every_preset_works_and_an_unknown_one_names_the_valid_ones():
    previous, current = panned_pair()
    for preset in ("ultrafast", "fast", "medium"):
        pair = flow.flows(previous, current, preset)
        forward = np.median(interior(pair.forward).reshape(-1, 2), axis=0)
        np.testing.assert_allclose(forward, [PAN_X, PAN_Y], atol=0.5)
    for call in (flow.flows, flow.optical_flow):
        with pytest.raises(ValueError, match=r"'slow'.*ultrafast, fast, medium"):
            call(previous, current, "slow")


def test_bad_frames_are_refused_and_tiny_ones_still_get_a_flow():
    previous, current = panned_pair()
    with pytest.raises(ValueError, match="differ in size"):
        flow.optical_flow(previous, current[:-1])
    with pytest.raises(ValueError, match="NaN"):
        flow.optical_flow(previous, np.where(current > 100, np.nan, current))
    with pytest.raises(ValueError, match=r"\[H, W, 3\]"):
        flow.optical_flow(previous[..., :2], current[..., :2])
    # DIS itself refuses frames under 12 px; these are padded, and a still one has no motion
    tiny = previous[:5, :7]
    still = flow.optical_flow(tiny, tiny)
    assert still.shape == (5, 7, 2) and np.abs(still).max() < 0.5


def test_importing_flow_does_not_load_tensorflow():
    code = "import sys, neural_style.media.flow; assert 'tensorflow' not in sys.modules"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True)
    assert done.returncode == 0, done.stderr.decode()


# --- trusting the flow: the photometric check, long-term masks, sharp warps ----------------------


def white_van_pair(shift: int = 6) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int, int]]:
    """A flat white block (no texture at all, a van's roof) `shift` px further right in the
    current frame than in the previous one, over a still textured street; (previous, current,
    (top, left, height, width) of the block in the previous frame)."""
    top, left, height, width = 30, 30, 28, 44
    street = textured(HEIGHT, WIDTH, seed=5)
    previous, current = street.copy(), street.copy()
    previous[top : top + height, left : left + width] = 240.0
    current[top : top + height, left + shift : left + shift + width] = 240.0
    return previous, current, (top, left, height, width)


def test_flows_that_agree_on_the_wrong_motion_pass_ruder_but_not_the_photometric_check():
    previous, current, (top, left, height, width) = white_van_pair(shift=6)
    still = constant_flow(0.0, 0.0)  # both ways: no motion, as DIS can say of a flat roof
    assert flow.reliability(still, still).min() == 1.0  # the paper's checks are satisfied
    match = flow.photometric_match(previous, current, still)
    # The van's front now covers street and its back uncovers street: what the still flow
    # brings there is not what is there.
    front = match[top : top + height, left + width : left + width + 6]
    back = match[top : top + height, left : left + 6]
    assert front.max() == 0.0 and back.max() == 0.0
    # Inside the flat roof a still flow is photometrically right (white onto white) and
    # kept; on the street away from the van everything is kept.
    assert match[top + 4 : top + height - 4, left + 12 : left + width - 4].min() == 1.0
    street = np.ones((HEIGHT, WIDTH), dtype=bool)
    street[top - 4 : top + height + 4, left - 4 : left + width + 10] = False
    assert match[street].min() == 1.0
    # The true motion, -6 px on the van, is trusted all over it but for the margin beside
    # its edges (where the street beside it moved too, in this flow).
    true = constant_flow(-6.0, 0.0)
    moved = flow.photometric_match(previous, current, true)
    assert moved[top + 2 : top + height - 2, left + 8 : left + width + 4].min() == 1.0


def test_photometric_tolerance_and_margin():
    previous = np.full((20, 20, 3), 100.0, np.float32)
    current = previous.copy()
    current[10, 10, 1] += flow.PHOTOMETRIC_TOLERANCE  # at the tolerance: still a match
    still = constant_flow(0.0, 0.0, 20, 20)
    assert flow.photometric_match(previous, current, still).min() == 1.0
    current[10, 10, 1] += 1.0  # one grey level beyond, in one channel: a mismatch
    match = flow.photometric_match(previous, current, still)
    side = 2 * flow.PHOTOMETRIC_MARGIN + 1
    assert match.sum() == 20 * 20 - side * side
    margin = flow.PHOTOMETRIC_MARGIN
    assert match[10 - margin : 11 + margin, 10 - margin : 11 + margin].max() == 0.0


def test_trusted_is_reliability_and_the_photometric_check():
    previous, current, _ = white_van_pair()
    pair = flow.flows(previous, current)
    expected = flow.reliability(pair.backward, pair.forward) * flow.photometric_match(
        previous, current, pair.backward
    )
    np.testing.assert_array_equal(flow.trusted(previous, current, pair), expected)
    with pytest.raises(ValueError, match="photometric check"):
        flow.photometric_match(previous[:10], current, pair.backward)


def test_nearest_trusted_gives_each_pixel_to_the_nearest_frame_that_covers_it():
    one = np.array([[1, 0, 0, 1]], np.float32)  # the frame before
    two = np.array([[1, 1, 0, 0]], np.float32)  # two back
    four = np.array([[1, 1, 1, 0]], np.float32)  # four back
    kept = flow.nearest_trusted([one, two, four])
    np.testing.assert_array_equal(kept[0], [[1, 0, 0, 1]])
    np.testing.assert_array_equal(kept[1], [[0, 1, 0, 0]])
    np.testing.assert_array_equal(kept[2], [[0, 0, 1, 0]])
    np.testing.assert_array_equal(np.sum(kept, axis=0), np.maximum(np.maximum(one, two), four))


def test_hold_lets_go_of_what_moved_by_each_frames_own_flow():
    one = np.array([[1, 0, 0, 1]], np.float32)  # the frame before covers pixels 1 and 4
    two = np.array([[0, 1, 0, 0]], np.float32)  # two back covers pixel 2; none covers 3
    # Pixel 4 moved 2 px since the frame before; pixel 2 moved 2 px since two back. The flow
    # of a frame that does not hold the pixel does not count.
    near = np.array([[[0.0, 0.0], [5.0, 0.0], [5.0, 0.0], [0.0, 2.0]]], np.float32)
    far = np.array([[[9.0, 0.0], [2.0, 0.0], [9.0, 0.0], [9.0, 0.0]]], np.float32)
    np.testing.assert_array_equal(flow.hold([one, two], [near, far], 0.25), [[1, 0.25, 0, 0.25]])
    np.testing.assert_array_equal(flow.hold([one, two], [near, far], 1.0), one + two)
    slow = np.full_like(near, flow.MOVING_DISTANCE / 2)
    np.testing.assert_array_equal(flow.hold([one, two], [slow, slow], 0.0), one + two)


def test_hold_finds_the_moving_bunny_of_a_real_clip():
    previous, current = bunny_pair()
    pair = flow.flows(previous, current)
    trusted = flow.trusted(previous, current, pair)
    backward = flow.settle(previous, current, pair.backward)
    held = flow.hold([trusted], [backward], 0.0)
    moving = (trusted > 0) & (held == 0)
    # The bunny moves and the meadow is still: what is let go of is a few hundred pixels
    # that the flow carries over 1.5 px, and every still pixel the flow reaches is held.
    # (Measured: 288 pixels, 3% of the frame.)
    assert 0.005 < moving.mean() < 0.2
    assert np.linalg.norm(backward[moving], axis=-1).min() > flow.MOVING_DISTANCE
    np.testing.assert_array_equal(held[trusted > 0][~moving[trusted > 0]], 1.0)


def fine_detail(image: np.ndarray) -> float:
    """Mean distance of an image from its 1-px Gaussian blur: what a blur takes away."""
    return float(np.abs(image - cv2.GaussianBlur(image, (0, 0), 1.0)).mean())


def test_warp_sharp_keeps_the_detail_that_repeated_bilinear_warps_blur_away():
    image = textured(HEIGHT, WIDTH, seed=2)
    sharp, bilinear = image, image
    for step in range(8):  # a video's frames, each moved by a fraction of a pixel
        shift = constant_flow(0.37 if step % 2 == 0 else -0.61, 0.0)
        sharp, bilinear = flow.warp_sharp(sharp, shift), flow.warp(bilinear, shift)
    start = fine_detail(interior(image))
    # Measured: 50% of the detail is left after eight bilinear warps, 87% after Lanczos.
    assert fine_detail(interior(bilinear)) < 0.6 * start
    assert fine_detail(interior(sharp)) > 0.8 * start
    assert sharp.min() >= 0.0 and sharp.max() <= 255.0  # Lanczos overshoots; clipped
    # A whole-pixel shift is as exact as the bilinear warp's.
    whole = constant_flow(2.0, -1.0)
    np.testing.assert_allclose(
        interior(flow.warp_sharp(image, whole)), interior(flow.warp(image, whole)), atol=1e-3
    )


def bunny_pair(width: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """images/bunny.mp4's frames 15 and 16 at `width` px: the bunny moves, the meadow is still."""
    info = video_io.probe(os.path.join(REPO_ROOT, "images", "bunny.mp4"), "CONTENT_IMAGE")
    frames = list(video_io.read_frames(info, max_frames=16))[14:16]
    size = images.output_size(frames[0].shape[:2], width, 0)
    previous, current = (images.resize_image(frame, size) for frame in frames)
    return previous, current


def test_settle_carries_the_still_pixels_of_a_real_clip_over_exactly():
    previous, current = bunny_pair()
    pair = flow.flows(previous, current)
    settled = flow.settle(previous, current, pair.backward)
    slow = np.linalg.norm(pair.backward, axis=-1) < flow.SETTLE_SPEED
    zero = np.all(settled == 0.0, axis=-1)
    # DIS's flow over the still meadow is noise (0.09 px on average here); warping by it
    # would resample the stylised meadow every frame. (Measured: 94% of the slow pixels.)
    assert np.abs(pair.backward[slow]).mean() > 0.02
    assert zero[slow].mean() > 0.9
    # What moves keeps its flow, to the bit.
    np.testing.assert_array_equal(settled[~slow], pair.backward[~slow])


def test_settle_keeps_a_slow_pan_over_texture():
    street = textured(HEIGHT, WIDTH, seed=3)
    # Content 0.4 px further right: the content frames differ, so no motion matches worse
    # than the flow, which is kept. (At 0.2 px a frame, 89% of the pixels settle: so slow a
    # pan over this texture is within SETTLE_TOLERANCE of no motion, and its texture stands.)
    moved = flow.warp_sharp(street, constant_flow(-0.4, 0.0))
    pair = flow.flows(street, moved)
    settled = flow.settle(street, moved, pair.backward)
    assert interior(np.any(settled != 0.0, axis=-1)).mean() > 0.95
    with pytest.raises(ValueError, match="settle needs"):
        flow.settle(street[:10], moved, pair.backward)


def test_use_threads_sizes_opencv_to_a_cluster_task_s_cpus():
    before = cv2.getNumThreads()
    try:
        cv2.setNumThreads(2)
        flow.use_threads(1)
        assert cv2.getNumThreads() == 1
        flow.use_threads(0)  # no size given (a task on a GPU): left as it is
        assert cv2.getNumThreads() == 1
    finally:
        cv2.setNumThreads(before)
