"""Colour handling for style transfer: keep the content's colours, or recolour the style.

Two ways to stop the style image's palette taking over the result (Gatys et al.,
"Preserving Color in Neural Artistic Style Transfer", 2016):

    preserve_colors(stylised, content)     after the run: the stylised image's luminance
                                           with the content's chrominance (YCbCr)
    match_color_histogram(style, content)  before the run: recolour the style image so its
                                           RGB mean and covariance match the content's

Shapes and values: every image is float32 [H, W, 3], RGB, 0..255, as images.py
loads them; YCbCr images have the same shape, with Y, Cb and Cr on the same 0..255 scale.
numpy only, no TensorFlow.
"""

import numpy as np

from neural_style.media.images import resize_image

# ITU-R BT.601 luma weights for R and B (G gets the rest), as used by JPEG/JFIF.
_KR = 0.299
_KB = 0.114
_KG = 1.0 - _KR - _KB
# Rows give Y, Cb and Cr from R, G, B; Cb and Cr are then offset by _CHROMA_OFFSET.
_RGB_TO_YCBCR = np.array(
    [
        [_KR, _KG, _KB],
        [-0.5 * _KR / (1.0 - _KB), -0.5 * _KG / (1.0 - _KB), 0.5],
        [0.5, -0.5 * _KG / (1.0 - _KR), -0.5 * _KB / (1.0 - _KR)],
    ]
)
# Inverted in float64 rather than typed in from the standard's rounded constants
# (1.402, 1.772...), so the pair is exactly inverse up to float rounding.
_YCBCR_TO_RGB = np.linalg.inv(_RGB_TO_YCBCR)
_CHROMA_OFFSET = np.array([0.0, 128.0, 128.0])

# Added to the style covariance's diagonal before it is inverted, in squared grey levels
# (0..255 scale): negligible next to a real image's spread (hundreds to thousands), yet it
# keeps a flat image (all one colour, or pure grey) from dividing by zero.
_COVARIANCE_EPSILON = 1.0


def rgb_to_ycbcr(image: np.ndarray) -> np.ndarray:
    """RGB 0..255 to full-range BT.601 YCbCr (JPEG's): Y 0..255, Cb and Cr centred on 128.

    Computed in float64 and returned as float32, neither rounded nor clipped to 8 bits (so
    Cb and Cr span 0.5..255.5: pure blue has Cb = 255.5).
    """
    pixels = _as_image(image, "image")
    return (pixels @ _RGB_TO_YCBCR.T + _CHROMA_OFFSET).astype(np.float32)


def ycbcr_to_rgb(image: np.ndarray) -> np.ndarray:
    """The inverse of `rgb_to_ycbcr`: full-range BT.601 YCbCr to RGB, float32, not clipped."""
    pixels = _as_image(image, "image")
    return ((pixels - _CHROMA_OFFSET) @ _YCBCR_TO_RGB.T).astype(np.float32)


def preserve_colors(stylised: np.ndarray, content: np.ndarray) -> np.ndarray:
    """The stylised image's luminance (Y) with the content image's chrominance (Cb, Cr).

    The content is resized (Lanczos) to the stylised image's size if they differ. The
    result has the stylised image's size and is float32, clipped to 0..255.
    """
    stylised = _as_image(stylised, "stylised")
    content = _as_image(content, "content")
    if content.shape != stylised.shape:
        content = resize_image(content, stylised.shape[:2])
    combined = rgb_to_ycbcr(content)
    combined[..., 0] = rgb_to_ycbcr(stylised)[..., 0]
    return np.clip(ycbcr_to_rgb(combined), 0.0, 255.0)


def as_written(image: np.ndarray, content: np.ndarray, preserve: str) -> np.ndarray:
    """What is written of an optimised image: the image itself, or with PRESERVE_COLORS
    `preserve` "luminance" its brightness on the photo's colours (preserve_colors)."""
    if preserve == "luminance":
        return preserve_colors(image, content)
    return image


def match_color_histogram(style: np.ndarray, content: np.ndarray) -> np.ndarray:
    """Recolours `style` so its RGB pixels have the content's mean and 3x3 covariance.

    The linear colour transfer used with Gatys' method: each style pixel x becomes
    A (x - mean_style) + mean_content with A = C_content^(1/2) C_style^(-1/2), using
    symmetric matrix square roots, so the result's covariance is C_content. Only the
    distributions are compared, so the two images may differ in size. Returns the style
    image's shape, float32, clipped to 0..255 (clipping can move the mean and covariance
    slightly when the content's spread pushes style colours out of range).
    """
    style = _as_image(style, "style")
    content = _as_image(content, "content")
    style_pixels = style.reshape(-1, 3)
    content_pixels = content.reshape(-1, 3)
    style_mean = style_pixels.mean(axis=0)
    content_mean = content_pixels.mean(axis=0)
    style_covariance = _covariance(style_pixels, style_mean)
    style_covariance += _COVARIANCE_EPSILON * np.eye(3)
    transfer = _matrix_power(_covariance(content_pixels, content_mean), 0.5) @ _matrix_power(
        style_covariance, -0.5
    )
    recoloured = (style_pixels - style_mean) @ transfer.T + content_mean
    return np.clip(recoloured, 0.0, 255.0).reshape(style.shape).astype(np.float32)


def _as_image(image: np.ndarray, name: str) -> np.ndarray:
    """A float64 copy of a [H, W, 3] image, for exact arithmetic."""
    pixels = np.asarray(image, dtype=np.float64)
    if pixels.ndim != 3 or pixels.shape[-1] != 3:
        raise ValueError(f"expected the {name} image of shape [H, W, 3], got {pixels.shape}")
    if pixels.shape[0] == 0 or pixels.shape[1] == 0:
        raise ValueError(f"the {name} image is empty: shape {pixels.shape}")
    return pixels


def _covariance(pixels: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """The 3x3 population covariance of [N, 3] pixels."""
    centred = pixels - mean
    return centred.T @ centred / len(pixels)


def _matrix_power(matrix: np.ndarray, power: float) -> np.ndarray:
    """A symmetric positive semi-definite matrix to a real power, via its eigenvectors.

    Eigenvalues that rounding made slightly negative are taken as zero; a negative power
    needs them positive, which the caller ensures by adding _COVARIANCE_EPSILON.
    """
    eigenvalues, eigenvectors = np.linalg.eigh(matrix)
    eigenvalues = np.maximum(eigenvalues, 0.0)
    return (eigenvectors * eigenvalues**power) @ eigenvectors.T
