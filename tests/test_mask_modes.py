"""A transparent pixel of a mask counts as black in every mode a mask is read in (grey, RGB,
RGBA, LA, palette with a transparent entry, 16-bit, fewer than 8 bits), for STYLE_MASKS,
STYLE_IMAGE_MASKS and CONTENT_MASK alike. Each mask is a tiny PNG of 2x1 pixels: the left
one white and opaque, the right one transparent, and in the colour that makes a wrong
reading visible (white, where it would otherwise count as 1). A photo's transparent colour
is white in the depths PIL misreads (2- and 4-bit grey, 16-bit RGB)."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from neural_style.losses import masks
from neural_style.media.images import load_mask
from tests.support import tiny_settings

WHITE_THEN_TRANSPARENT = [[1.0, 0.0]]


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _raw_png(path, row: bytes, *, depth: int, colour_type: int, trns: bytes | None) -> str:
    """A 2x1 PNG written byte by byte, for the depths PIL does not write (16-bit RGB, grey
    of 2 or 4 bits) with a tRNS chunk."""
    header = struct.pack(">IIBBBBB", 2, 1, depth, colour_type, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header)
    if trns is not None:
        data += _chunk(b"tRNS", trns)
    data += _chunk(b"IDAT", zlib.compress(b"\x00" + row)) + _chunk(b"IEND", b"")
    path.write_bytes(data)
    return str(path)


def _grey_with_key(path) -> str:
    # 200 is the transparent grey; 255 is opaque white.
    Image.fromarray(np.array([[255, 200]], np.uint8), "L").save(path, transparency=200)
    return str(path)


def _rgb_with_key(path) -> str:
    pixels = np.array([[[255, 255, 255], [250, 250, 250]]], np.uint8)
    Image.fromarray(pixels, "RGB").save(path, transparency=(250, 250, 250))
    return str(path)


def _rgba(path) -> str:
    Image.fromarray(np.array([[[255] * 4, [255, 255, 255, 0]]], np.uint8), "RGBA").save(path)
    return str(path)


def _grey_alpha(path) -> str:
    Image.fromarray(np.array([[[255, 255], [255, 0]]], np.uint8), "LA").save(path)
    return str(path)


def _palette_with_key(path) -> str:
    picture = Image.new("P", (2, 1))
    picture.putpalette([255, 255, 255, 255, 255, 255] + [0] * 762)  # two whites
    picture.putdata([0, 1])
    picture.save(path, transparency=1)  # entry 1 is see-through
    return str(path)


def _palette_with_alphas(path) -> str:
    picture = Image.new("P", (2, 1))
    picture.putpalette([255, 255, 255, 255, 255, 255] + [0] * 762)
    picture.putdata([0, 1])
    picture.save(path, transparency=bytes([255, 0]))  # one alpha per entry
    return str(path)


def _grey16_with_key(path) -> str:
    Image.fromarray(np.array([[65535, 60000]], np.uint16)).save(path, transparency=60000)
    return str(path)


def _rgb16_with_key(path) -> str:
    row = struct.pack(">6H", 65535, 65535, 65535, 60000, 60000, 60000)
    return _raw_png(path, row, depth=16, colour_type=2, trns=struct.pack(">3H", *[60000] * 3))


def _grey2_with_key(path) -> str:
    # 2-bit grey: 3 is white, 2 light grey (and transparent).
    return _raw_png(path, bytes([0b11100000]), depth=2, colour_type=0, trns=struct.pack(">H", 2))


def _grey4_with_key(path) -> str:
    return _raw_png(path, bytes([0xFE]), depth=4, colour_type=0, trns=struct.pack(">H", 14))


def _one_bit_with_key(path) -> str:
    # Two white pixels, and white is the transparent grey: in 1 bit nothing else is white.
    return _raw_png(path, bytes([0b11000000]), depth=1, colour_type=0, trns=struct.pack(">H", 1))


MODES = {
    "grey with a transparent grey": _grey_with_key,
    "RGB with a transparent colour": _rgb_with_key,
    "RGBA": _rgba,
    "grey and alpha": _grey_alpha,
    "palette with a transparent entry": _palette_with_key,
    "palette with an alpha per entry": _palette_with_alphas,
    "16-bit grey with a transparent grey": _grey16_with_key,
    "16-bit RGB with a transparent colour": _rgb16_with_key,
    "2-bit grey with a transparent grey": _grey2_with_key,
    "4-bit grey with a transparent grey": _grey4_with_key,
}


@pytest.mark.parametrize("mode", sorted(MODES))
def test_a_transparent_pixel_counts_as_black(tmp_path, mode):
    path = MODES[mode](tmp_path / "mask.png")
    mask = load_mask(path, "STYLE_MASKS")
    assert mask.dtype == np.float32
    np.testing.assert_array_equal(mask, WHITE_THEN_TRANSPARENT)


def test_a_one_bit_mask_reads_its_transparent_white_as_black(tmp_path):
    path = _one_bit_with_key(tmp_path / "mask.png")
    np.testing.assert_array_equal(load_mask(path, "CONTENT_MASK"), [[0.0, 0.0]])
    opaque = tmp_path / "opaque.png"
    Image.fromarray(np.array([[True, False]])).save(opaque)
    np.testing.assert_array_equal(load_mask(str(opaque), "CONTENT_MASK"), [[1.0, 0.0]])


def test_grey_keeps_its_levels_where_it_is_opaque(tmp_path):
    grey = np.array([[0, 64, 128, 255]], np.uint8)
    Image.fromarray(grey, "L").save(tmp_path / "grey.png", transparency=64)
    np.testing.assert_allclose(
        load_mask(str(tmp_path / "grey.png"), "STYLE_MASKS"), [[0, 0, 128 / 255, 1]], atol=1e-7
    )
    grey16 = np.array([[0, 1000, 32768, 65535]], np.uint16)
    Image.fromarray(grey16).save(tmp_path / "grey16.png", transparency=1000)
    np.testing.assert_allclose(
        load_mask(str(tmp_path / "grey16.png"), "STYLE_MASKS"),
        [[0, 0, 32768 / 65535, 1]],
        atol=1e-7,
    )


def test_every_mask_setting_reads_transparency_as_black(tmp_path, tiny_mat, image_pair):
    # Masks of the photo's and the style's shape, 48x40 and 48x48: the left half white and
    # opaque, the right half white and transparent (the tRNS colour of a palette image).
    def half(path, height: int) -> str:
        picture = Image.new("P", (48, height))
        picture.putpalette([255, 255, 255, 255, 255, 255] + [0] * 762)
        picture.putdata(([0] * 24 + [1] * 24) * height)
        picture.save(path, transparency=1)
        return str(path)

    settings = tiny_settings(
        tmp_path,
        tiny_mat,
        image_pair,
        style_masks=(half(tmp_path / "region.png", 40),),
        style_image_masks=(half(tmp_path / "source.png", 48),),
        content_mask=half(tmp_path / "content.png", 40),
    )
    loaded = masks.load_masks(settings, [np.zeros((48, 48, 3), np.float32)])
    for mask in (loaded.style[0], loaded.style_image[0], loaded.content):
        assert np.all(mask[:, :24] == 1) and np.all(mask[:, 24:] == 0)


# --- Photos: a transparent colour is composited over white in every bit depth ------------


def _raw_png_of(path, rows: list[bytes], *, depth: int, colour_type: int, trns: bytes) -> str:
    """A PNG of len(rows) rows, each given as its packed bytes, with a tRNS chunk."""
    width = 32
    header = struct.pack(">IIBBBBB", width, len(rows), depth, colour_type, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"tRNS", trns)
    raw = b"".join(b"\x00" + row for row in rows)
    data += _chunk(b"IDAT", zlib.compress(raw)) + _chunk(b"IEND", b"")
    path.write_bytes(data)
    return str(path)


def _photo_grey2(path) -> tuple[str, list[float], list[float]]:
    # 32 pixels a row, 4 a byte: the left half 1 (dark grey, 85), the right 2 (transparent).
    row = bytes([0b01010101] * 4 + [0b10101010] * 4)
    return (
        _raw_png_of(path, [row] * 32, depth=2, colour_type=0, trns=struct.pack(">H", 2)),
        [85.0] * 3,
        [255.0] * 3,
    )


def _photo_grey4(path) -> tuple[str, list[float], list[float]]:
    row = bytes([0x33] * 8 + [0xEE] * 8)  # 3 (51) on the left, 14 (transparent) on the right
    trns = struct.pack(">H", 14)
    return _raw_png_of(path, [row] * 32, depth=4, colour_type=0, trns=trns), [51.0] * 3, [255.0] * 3


def _photo_rgb16(path) -> tuple[str, list[float], list[float]]:
    left = struct.pack(">3H", 10000, 20000, 30000) * 16
    right = struct.pack(">3H", 60000, 60000, 60000) * 16
    trns = struct.pack(">3H", 60000, 60000, 60000)
    path = _raw_png_of(path, [left + right] * 32, depth=16, colour_type=2, trns=trns)
    return path, [10000 >> 8, 20000 >> 8, 30000 >> 8], [255.0] * 3


PHOTOS = {
    "2-bit grey": _photo_grey2,
    "4-bit grey": _photo_grey4,
    "16-bit RGB": _photo_rgb16,
}


@pytest.mark.parametrize("mode", sorted(PHOTOS))
def test_a_photos_transparent_colour_is_white_in_every_bit_depth(tmp_path, mode):
    from neural_style.media.images import load_image

    path, opaque, transparent = PHOTOS[mode](tmp_path / "photo.png")
    image = load_image(path, "CONTENT_IMAGE")
    assert image.shape == (32, 32, 3)
    np.testing.assert_array_equal(image[:, :16], np.broadcast_to(opaque, (32, 16, 3)))
    np.testing.assert_array_equal(image[:, 16:], np.broadcast_to(transparent, (32, 16, 3)))
