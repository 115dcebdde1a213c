"""Tests for neural_style.media.colors: the BT.601 YCbCr pair, colour preservation and the
linear colour transfer."""

import numpy as np
import pytest

from neural_style.media.colors import (
    match_color_histogram,
    preserve_colors,
    rgb_to_ycbcr,
    ycbcr_to_rgb,
)


def _random_image(seed, size_hw=(24, 32), low=0.0, high=255.0):
    rng = np.random.default_rng(seed)
    return rng.uniform(low, high, size=(*size_hw, 3)).astype(np.float32)


def _solid(rgb, size_hw=(8, 8)):
    return np.broadcast_to(np.asarray(rgb, dtype=np.float32), (*size_hw, 3)).copy()


def _correlated_image(seed, size_hw, mean, mixing):
    """Pixels mean + z @ mixing with z standard normal: a known, non-degenerate covariance."""
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((*size_hw, 3))
    return (np.asarray(mean) + noise @ np.asarray(mixing)).astype(np.float32)


def _pixel_stats(image):
    pixels = image.reshape(-1, 3).astype(np.float64)
    return pixels.mean(axis=0), np.cov(pixels, rowvar=False, bias=True)


# YCbCr.


def test_round_trip_is_exact_to_float_precision():
    image = _random_image(0)
    ycbcr = rgb_to_ycbcr(image)
    assert ycbcr.dtype == np.float32 and ycbcr.shape == image.shape
    np.testing.assert_allclose(ycbcr_to_rgb(ycbcr), image, atol=1e-3)


def test_known_values():
    white = rgb_to_ycbcr(_solid((255, 255, 255)))[0, 0]
    np.testing.assert_allclose(white, [255.0, 128.0, 128.0], atol=1e-4)
    black = rgb_to_ycbcr(_solid((0, 0, 0)))[0, 0]
    np.testing.assert_allclose(black, [0.0, 128.0, 128.0], atol=1e-4)
    red = rgb_to_ycbcr(_solid((255, 0, 0)))[0, 0]
    # JPEG's published coefficients: Cb = 128 - 0.168736 R, Cr = 128 + 0.5 R for pure red;
    # not rounded or clipped to 8 bits, so Cr reaches 255.5.
    np.testing.assert_allclose(red, [76.245, 128 - 0.168736 * 255, 255.5], atol=1e-3)
    blue = rgb_to_ycbcr(_solid((0, 0, 255)))[0, 0]
    np.testing.assert_allclose(blue, [0.114 * 255, 255.5, 128 - 0.081312 * 255], atol=1e-3)


def test_grey_has_neutral_chroma():
    ycbcr = rgb_to_ycbcr(_solid((90, 90, 90)))
    np.testing.assert_allclose(ycbcr[0, 0], [90.0, 128.0, 128.0], atol=1e-4)


@pytest.mark.parametrize("shape", [(8, 8), (8, 8, 4), (1, 8, 8, 3)])
def test_rejects_wrong_shapes(shape):
    with pytest.raises(ValueError, match=r"\[H, W, 3\]"):
        rgb_to_ycbcr(np.zeros(shape, dtype=np.float32))


# preserve_colors.


def test_preserve_colors_takes_luminance_from_stylised_and_chroma_from_content():
    # Mid-range images, so nothing is clipped and the split is exact.
    stylised = _random_image(1, low=80, high=170)
    content = _random_image(2, low=80, high=170)
    result = preserve_colors(stylised, content)
    assert result.dtype == np.float32 and result.shape == stylised.shape
    assert result.min() > 0 and result.max() < 255  # no clipping happened
    result_ycbcr = rgb_to_ycbcr(result)
    np.testing.assert_allclose(result_ycbcr[..., 0], rgb_to_ycbcr(stylised)[..., 0], atol=0.5)
    chroma_diff = np.abs(result_ycbcr[..., 1:] - rgb_to_ycbcr(content)[..., 1:])
    assert chroma_diff.max() < 0.5


def test_grey_stylised_with_red_content_comes_out_reddish():
    result = preserve_colors(_solid((128, 128, 128)), _solid((200, 30, 30)))
    red, green, blue = result[0, 0]
    assert red > green + 50 and red > blue + 50
    # ... at the grey image's brightness.
    assert rgb_to_ycbcr(result)[0, 0, 0] == pytest.approx(128.0, abs=0.5)


def test_preserve_colors_resizes_the_content_and_clips():
    stylised = _random_image(3, size_hw=(32, 40))
    content = _random_image(4, size_hw=(48, 64))
    result = preserve_colors(stylised, content)
    assert result.shape == (32, 40, 3) and result.dtype == np.float32
    assert result.min() >= 0.0 and result.max() <= 255.0


def test_preserve_colors_keeps_inputs_unchanged():
    stylised, content = _random_image(5), _random_image(6)
    stylised_copy, content_copy = stylised.copy(), content.copy()
    preserve_colors(stylised, content)
    np.testing.assert_array_equal(stylised, stylised_copy)
    np.testing.assert_array_equal(content, content_copy)


# match_color_histogram.


def test_match_color_histogram_matches_mean_and_covariance():
    # Different sizes and clearly different covariances; the content's spread is small
    # enough that no recoloured pixel is clipped, so the match should be near exact.
    content = _correlated_image(
        7, (40, 48), mean=(140, 100, 80), mixing=[[20, 8, 2], [0, 15, 6], [0, 0, 10]]
    )
    style = _correlated_image(
        8, (56, 36), mean=(60, 150, 200), mixing=[[30, -10, 0], [0, 25, 12], [5, 0, 18]]
    )
    result = match_color_histogram(style, content)
    assert result.dtype == np.float32 and result.shape == style.shape
    assert result.min() > 0 and result.max() < 255  # nothing clipped
    result_mean, result_covariance = _pixel_stats(result)
    content_mean, content_covariance = _pixel_stats(content)
    np.testing.assert_allclose(result_mean, content_mean, atol=0.5)
    relative_error = np.linalg.norm(result_covariance - content_covariance) / np.linalg.norm(
        content_covariance
    )
    assert relative_error < 0.03


def test_match_color_histogram_keeps_the_style_structure():
    # An affine recolouring: the result stays strongly correlated with the style pixels.
    style = _random_image(9, size_hw=(32, 32), low=40, high=220)
    content = _correlated_image(10, (32, 32), mean=(120, 120, 120), mixing=np.eye(3) * 20)
    result = match_color_histogram(style, content)
    luma_style = rgb_to_ycbcr(style)[..., 0].ravel()
    luma_result = rgb_to_ycbcr(result)[..., 0].ravel()
    assert np.corrcoef(luma_style, luma_result)[0, 1] > 0.5


def test_constant_style_gives_no_nan():
    style = _solid((30, 60, 90), size_hw=(32, 32))
    content = _random_image(11)
    result = match_color_histogram(style, content)
    assert np.isfinite(result).all()
    # A flat style has no spread to scale: every pixel becomes the content's mean.
    np.testing.assert_allclose(result[0, 0], content.reshape(-1, 3).mean(axis=0), atol=1e-3)


def test_grey_style_and_constant_content_give_no_nan():
    # Rank-one style covariance (R = G = B) and an all-zero content covariance.
    grey = np.repeat(_random_image(12)[..., :1], 3, axis=-1)
    result = match_color_histogram(grey, _solid((10, 200, 40)))
    assert np.isfinite(result).all()
    np.testing.assert_allclose(result, _solid((10, 200, 40), size_hw=grey.shape[:2]), atol=1e-3)


def test_match_color_histogram_clips():
    style = _random_image(13)
    content = _random_image(14)  # uniform over the whole range: the transfer overshoots
    result = match_color_histogram(style, content)
    assert result.min() >= 0.0 and result.max() <= 255.0
