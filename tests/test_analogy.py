"""The styled start of a video frame's new pixels (neural_style.media.analogy), on a real frame
of images/bunny.mp4 whose moving bunny is the hole, and a stand-in for its stylised result
made from images/style.jpg's own colours. Colours are compared as distributions, with the
video benchmark's sliced 1-Wasserstein distance in RGB."""

from __future__ import annotations

import os

import numpy as np
import pytest

from benchmarks.video import sliced_wasserstein as colour_distance
from neural_style.media import analogy, flow, images
from tests.support import REPO_ROOT
from tests.test_flow import bunny_pair


def stylised(content: np.ndarray, seed: int = 0) -> np.ndarray:
    """A stand-in for a stylised frame: each pixel is a pixel of images/style.jpg of about the
    same brightness rank (drawn among the 2% of the style's pixels around that rank), so
    that the colours are the style's, their spread is the style's, and which colours a
    pixel gets depends on its content, as in a stylised frame."""
    style = images.load_image(os.path.join(REPO_ROOT, "images", "style.jpg"), "STYLE_IMAGE")
    palette = style.reshape(-1, 3)
    palette = palette[np.argsort(palette @ np.float32([0.299, 0.587, 0.114]), kind="stable")]
    luma = content @ np.float32([0.299, 0.587, 0.114])
    rank = np.argsort(np.argsort(luma.ravel(), kind="stable"), kind="stable") / luma.size
    jitter = np.random.default_rng(seed).uniform(-0.01, 0.01, luma.size)
    index = np.clip(((rank + jitter) * len(palette)).astype(int), 0, len(palette) - 1)
    return palette[index].reshape(content.shape).astype(np.float32)


@pytest.fixture(scope="module")
def frame():
    """(content, its stand-in result, the mask with the moving bunny as the hole)."""
    previous, current = bunny_pair()
    pair = flow.flows(previous, current)
    hole = np.linalg.norm(pair.backward, axis=-1) > 1.5  # the bunny's head and ears
    mask = (~hole).astype(np.float32)
    return current, stylised(current), mask


def test_new_pixels_start_with_the_style_of_like_covered_pixels(frame):
    content, target, mask = frame
    hole = mask == 0
    assert 200 < hole.sum() < 0.2 * hole.size  # a real hole in a real frame
    filled = analogy.fill(content, target, mask, seed=1)
    # Outside the hole the content is left as it is: the caller starts those from the target.
    np.testing.assert_array_equal(filled[~hole], content[~hole])
    # Inside it, the colours are distributed as the stylised frame's are there, far nearer
    # than the photo's (measured: 2.5 grey levels against the photo's 30).
    photo_distance = colour_distance(content[hole], target[hole])
    assert colour_distance(filled[hole], target[hole]) < 0.2 * photo_distance
    # With the style's spread: a flat hole does not get one borrowed colour copied over it.
    spread, wanted = filled[hole].std(axis=0), target[hole].std(axis=0)
    assert np.all(spread > 0.75 * wanted) and np.all(spread < 1.5 * wanted)
    assert filled.dtype == np.float32 and filled.min() >= 0.0 and filled.max() <= 255.0


def test_the_fill_is_the_same_for_a_seed_and_differs_between_seeds(frame):
    content, target, mask = frame
    first = analogy.fill(content, target, mask, seed=7)
    np.testing.assert_array_equal(first, analogy.fill(content, target, mask, seed=7))
    assert not np.array_equal(first, analogy.fill(content, target, mask, seed=8))


def test_a_large_frame_searches_a_sample_of_its_covered_pixels(frame, monkeypatch):
    content, target, mask = frame
    hole = mask == 0
    monkeypatch.setattr(analogy, "MAX_SOURCES", 2000)  # fewer than the frame's covered pixels
    assert (mask == 1).sum() > 2000
    filled = analogy.fill(content, target, mask, seed=1)
    # Measured: 3.5 grey levels against the photo's 30.
    photo_distance = colour_distance(content[hole], target[hole])
    assert colour_distance(filled[hole], target[hole]) < 0.3 * photo_distance


def test_with_nothing_covered_or_nothing_new_the_content_is_returned(frame):
    content, target, mask = frame
    nothing = np.zeros_like(mask)
    np.testing.assert_array_equal(analogy.fill(content, target, nothing, seed=0), content)
    everything = np.ones_like(mask)
    np.testing.assert_array_equal(analogy.fill(content, target, everything, seed=0), content)


def test_mismatched_shapes_are_refused(frame):
    content, target, mask = frame
    with pytest.raises(ValueError, match="the fill needs two"):
        analogy.fill(content, target[:-1], mask, seed=0)
    with pytest.raises(ValueError, match="the fill needs two"):
        analogy.fill(content, target, mask[:, :-1], seed=0)
