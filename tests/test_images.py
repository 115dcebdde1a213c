"""Tests for neural_style.media.images: every PIL mode loads as RGB 0..255, every bad file gives
a one-line UserError naming the setting, and sizes, resizing and saving behave."""

import io
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from neural_style.errors import UserError
from neural_style.media import color_profiles
from neural_style.media.images import (
    MIN_SIDE,
    check_encodable,
    load_image,
    output_size,
    resize_image,
    save_image,
)

SIZE = (40, 48)  # (H, W) of the generated test images


def _save(tmp_path, name, picture, **options):
    path = str(tmp_path / name)
    picture.save(path, **options)
    return path


def _load(path):
    image = load_image(path, "CONTENT_IMAGE")
    assert image.dtype == np.float32
    assert image.shape == (*SIZE, 3)
    return image


def _grey16(value, mode="I;16"):
    """A 16-bit grey image; frombytes because fromarray cannot make the big-endian mode."""
    dtype = ">u2" if mode == "I;16B" else "<u2"
    data = np.full(SIZE, value, dtype=dtype).tobytes()
    return Image.frombytes(mode, SIZE[::-1], data)


# Loading each mode.


def test_rgb_png_loads_exactly(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (*SIZE, 3), dtype=np.uint8)
    path = _save(tmp_path, "rgb.png", Image.fromarray(pixels))

    np.testing.assert_array_equal(_load(path), pixels.astype(np.float32))


def test_rgba_composites_over_white(tmp_path):
    pixels = np.zeros((*SIZE, 4), dtype=np.uint8)
    pixels[:, :] = (0, 0, 0, 0)  # fully transparent black
    pixels[0, 0] = (255, 0, 0, 255)  # opaque red
    pixels[0, 1] = (0, 0, 255, 128)  # half-transparent blue
    path = _save(tmp_path, "rgba.png", Image.fromarray(pixels, mode="RGBA"))

    image = _load(path)

    np.testing.assert_allclose(image[5, 5], (255, 255, 255))
    np.testing.assert_allclose(image[0, 0], (255, 0, 0))
    half = 128 / 255
    np.testing.assert_allclose(image[0, 1], (255 * (1 - half),) * 2 + (255,), atol=1e-3)


def test_la_composites_over_white(tmp_path):
    pixels = np.zeros((*SIZE, 2), dtype=np.uint8)
    pixels[0, 0] = (60, 255)
    path = _save(tmp_path, "la.png", Image.fromarray(pixels, mode="LA"))

    image = _load(path)

    np.testing.assert_allclose(image[0, 0], (60, 60, 60))
    np.testing.assert_allclose(image[1, 1], (255, 255, 255))


def test_grey_and_bilevel(tmp_path):
    grey = Image.new("L", SIZE[::-1], 77)
    bilevel = Image.new("1", SIZE[::-1], 0)
    bilevel.putpixel((3, 2), 1)

    np.testing.assert_array_equal(_load(_save(tmp_path, "l.png", grey)), 77)
    image = _load(_save(tmp_path, "1.png", bilevel))
    np.testing.assert_array_equal(image[2, 3], (255, 255, 255))
    np.testing.assert_array_equal(image[0, 0], (0, 0, 0))


def _palette_image():
    picture = Image.new("P", SIZE[::-1], 0)
    picture.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    picture.putpixel((0, 0), 1)
    return picture


def test_palette_without_transparency(tmp_path):
    image = _load(_save(tmp_path, "p.png", _palette_image()))

    np.testing.assert_array_equal(image[0, 0], (200, 100, 50))
    np.testing.assert_array_equal(image[5, 5], (10, 20, 30))


@pytest.mark.parametrize("name", ["p.png", "p.gif"])
def test_palette_transparent_entry_becomes_white(tmp_path, name):
    image = _load(_save(tmp_path, name, _palette_image(), transparency=0))

    np.testing.assert_array_equal(image[0, 0], (200, 100, 50))
    np.testing.assert_array_equal(image[5, 5], (255, 255, 255))


@pytest.mark.parametrize(("name", "tolerance"), [("cmyk.tif", 0), ("cmyk.jpg", 4)])
def test_cmyk_converts_to_rgb(tmp_path, name, tolerance):
    picture = Image.new("CMYK", SIZE[::-1], (0, 255, 255, 0))  # pure red
    picture.paste((0, 0, 0, 128), (0, 0, 16, 16))  # 50% black
    path = _save(tmp_path, name, picture)
    assert Image.open(path).mode == "CMYK"

    image = _load(path)

    np.testing.assert_allclose(image[30, 30], (255, 0, 0), atol=tolerance)
    np.testing.assert_allclose(image[0, 0], (127, 127, 127), atol=tolerance)


def test_ycbcr_converts_to_rgb(tmp_path):
    rgb = Image.new("RGB", SIZE[::-1], (200, 40, 90))
    path = _save(tmp_path, "ycbcr.tif", rgb.convert("YCbCr"))
    assert Image.open(path).mode == "YCbCr"

    np.testing.assert_allclose(_load(path), np.broadcast_to((200, 40, 90), (*SIZE, 3)), atol=2)


@pytest.mark.parametrize(("mode", "name"), [("I;16", "g16.png"), ("I;16B", "g16b.tif")])
def test_16_bit_grey_keeps_its_precision(tmp_path, mode, name):
    path = _save(tmp_path, name, _grey16(32768, mode))
    assert Image.open(path).mode == mode

    image = _load(path)

    # 32768 of 65535 is 127.50195 of 255; 8-bit truncation would give 127 or 128.
    np.testing.assert_allclose(image, 32768 * 255 / 65535, atol=1e-4)
    assert 127.4 < image[0, 0, 0] < 127.6


def test_16_bit_extremes(tmp_path):
    picture = _grey16(0)
    picture.putpixel((0, 0), 65535)
    image = _load(_save(tmp_path, "g16.png", picture))

    assert image[0, 0, 0] == 255
    assert image[1, 1, 0] == 0


def test_32_bit_integer_is_read_as_16_bit_and_clipped(tmp_path):
    pixels = np.full(SIZE, 32768, dtype=np.int32)
    pixels[0, 0], pixels[0, 1] = 70000, -5
    path = _save(tmp_path, "i32.tif", Image.fromarray(pixels))
    assert Image.open(path).mode == "I"

    image = _load(path)

    np.testing.assert_allclose(image[5, 5], 32768 * 255 / 65535, atol=1e-4)
    assert image[0, 0, 0] == 255
    assert image[0, 1, 0] == 0


def test_float_image_is_clipped_to_0_255(tmp_path):
    pixels = np.full(SIZE, 100.25, dtype=np.float32)
    pixels[0, 0], pixels[0, 1] = 300.0, -7.0
    path = _save(tmp_path, "f.tif", Image.fromarray(pixels))
    assert Image.open(path).mode == "F"

    image = _load(path)

    np.testing.assert_allclose(image[5, 5], (100.25,) * 3)
    np.testing.assert_allclose(image[0, 0], (255,) * 3)
    np.testing.assert_allclose(image[0, 1], (0,) * 3)


def test_exif_orientation_6_rotates_upright(tmp_path):
    pixels = np.zeros((*SIZE, 3), dtype=np.uint8)
    pixels[0, 0] = (255, 0, 0)  # stored top-left
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    path = _save(tmp_path, "rotated.png", Image.fromarray(pixels), exif=exif)

    image = load_image(path, "CONTENT_IMAGE")

    height, width = SIZE
    assert image.shape == (width, height, 3)
    np.testing.assert_array_equal(np.argwhere(image[..., 0] == 255), [[0, height - 1]])


# Every odd mode PIL can put in a file: it loads as the right colours, or gives one line.
# (No PIL reader yields HSV, and RGBa comes back as RGBA: neither can reach load_image.)

WIDTH, HEIGHT = SIZE[1], SIZE[0]


def _saved(name, make, **options):
    def build(tmp_path):
        return _save(tmp_path, name, make(), **options)

    return build


def _associated_alpha_tiff(name, picture):
    """A TIFF whose alpha is premultiplied (ExtraSamples = 1), which PIL reads as La or
    through RGBa; PIL itself only writes unassociated alpha, so the tag is patched."""

    def build(tmp_path):
        path = _save(tmp_path, name, picture)
        data = bytearray(Path(path).read_bytes())
        assert data[:2] == b"II"
        directory = struct.unpack_from("<I", data, 4)[0]
        for index in range(struct.unpack_from("<H", data, directory)[0]):
            entry = directory + 2 + 12 * index
            if struct.unpack_from("<H", data, entry)[0] == 338:  # ExtraSamples
                struct.pack_into("<H", data, entry + 8, 1)
        Path(path).write_bytes(bytes(data))
        return path

    return build


def _png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _rgb48_png(tmp_path):
    """A 16-bit-per-channel RGB PNG, which PIL reads but cannot write: built by hand."""
    row = struct.pack(">3H", 65535, 32768, 0) * WIDTH
    raw = b"".join(b"\0" + row for _ in range(HEIGHT))
    header = struct.pack(">IIBBBBB", WIDTH, HEIGHT, 16, 2, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header)
    data += _png_chunk(b"IDAT", zlib.compress(raw)) + _png_chunk(b"IEND", b"")
    (tmp_path / "rgb48.png").write_bytes(data)
    return str(tmp_path / "rgb48.png")


def _frames(name):
    def build(tmp_path):
        red, green = (Image.new("RGB", (WIDTH, HEIGHT), colour) for colour in ("red", "lime"))
        return _save(tmp_path, name, red, save_all=True, append_images=[green])

    return build


def _float_with(*bad):
    def make():
        pixels = np.full(SIZE, 100.0, dtype=np.float32)
        pixels.flat[: len(bad)] = bad
        return Image.fromarray(pixels)

    return make


def _palette(mode="P"):
    picture = _palette_image()
    return picture.convert("PA") if mode == "PA" else picture


# name: (how to build the file, the mode PIL opens it in, pixel (row, column), its RGB)
ODD_MODES = {
    "I;16 png": (_saved("a.png", lambda: _grey16(65535)), "I;16", (0, 0), (255, 255, 255)),
    "I;16B tiff": (_saved("a.tif", lambda: _grey16(0, "I;16B")), "I;16B", (0, 0), (0, 0, 0)),
    "I tiff": (_saved("i.tif", lambda: Image.new("I", SIZE[::-1], 65535)), "I", (0, 0), (255,) * 3),
    "F tiff": (_saved("f.tif", _float_with(12.5)), "F", (0, 0), (12.5, 12.5, 12.5)),
    "LA png": (
        _saved("la.png", lambda: Image.new("LA", SIZE[::-1], (0, 0))),
        "LA",
        (0, 0),
        (255,) * 3,
    ),
    "La tiff": (
        _associated_alpha_tiff("la.tif", Image.new("LA", SIZE[::-1], (100, 255))),
        "La",
        (0, 0),
        (100, 100, 100),
    ),
    "RGBa tiff": (
        _associated_alpha_tiff("rgba.tif", Image.new("RGBA", SIZE[::-1], (100, 50, 0, 255))),
        "RGBA",
        (0, 0),
        (100, 50, 0),
    ),
    "PA tiff": (_saved("pa.tif", lambda: _palette("PA")), "PA", (0, 0), (200, 100, 50)),
    "CMYK tiff": (
        _saved("cmyk.tif", lambda: Image.new("CMYK", SIZE[::-1], (0, 0, 255, 0))),
        "CMYK",
        (0, 0),
        (255, 255, 0),
    ),
    "P with transparency png": (
        _saved("pt.png", _palette, transparency=0),
        "P",
        (5, 5),
        (255, 255, 255),
    ),
    "1 bmp": (_saved("one.bmp", lambda: Image.new("1", SIZE[::-1], 1)), "1", (0, 0), (255,) * 3),
    "YCbCr tiff": (
        _saved("y.tif", lambda: Image.new("RGB", SIZE[::-1], (0, 0, 255)).convert("YCbCr")),
        "YCbCr",
        (0, 0),
        (0, 0, 255),
    ),
    "L with transparency png": (
        _saved("lt.png", lambda: Image.new("L", SIZE[::-1], 7), transparency=7),
        "L",
        (0, 0),
        (255, 255, 255),
    ),
    "I;16 with transparency png": (
        _saved("g16t.png", lambda: _grey16(3000), transparency=3000),
        "I;16",
        (0, 0),
        (255, 255, 255),
    ),
    "RGB 16-bit png": (_rgb48_png, "RGB", (0, 0), (255, 128, 0)),
    "animated gif": (_frames("anim.gif"), "P", (0, 0), (255, 0, 0)),
    "animated png": (_frames("anim.png"), "RGB", (0, 0), (255, 0, 0)),
    "multi-page tiff": (_frames("pages.tif"), "RGB", (0, 0), (255, 0, 0)),
}


@pytest.mark.parametrize("case", ODD_MODES)
def test_odd_modes_load_as_their_colours(tmp_path, case):
    build, mode, (row, column), expected = ODD_MODES[case]
    path = build(tmp_path)
    with Image.open(path) as picture:
        assert picture.mode == mode  # the case really is the mode it is named after
    before = Path(path).read_bytes()

    image = _load(path)

    assert np.all(np.isfinite(image)) and image.min() >= 0 and image.max() <= 255
    np.testing.assert_allclose(image[row, column], expected, atol=1.5)
    assert Path(path).read_bytes() == before


ODD_FAILURES = {
    "F with NaN": (_saved("nan.tif", _float_with(np.nan)), "the image has 1 NaN/infinite pixels"),
    "F with inf": (
        _saved("inf.tif", _float_with(np.inf, -np.inf, np.nan)),
        "the image has 3 NaN/infinite pixels",
    ),
    "LAB tiff": (
        _saved("lab.tif", lambda: Image.new("LAB", SIZE[::-1], (50, 128, 128))),
        "unsupported image mode LAB",
    ),
}


@pytest.mark.parametrize("case", ODD_FAILURES)
def test_odd_modes_that_cannot_load_give_one_line(tmp_path, case):
    build, problem = ODD_FAILURES[case]
    path = build(tmp_path)

    with pytest.raises(UserError) as caught:
        load_image(path, "STYLE_IMAGE")

    message = str(caught.value)
    assert message.startswith(f"{path}: {problem}; ")
    assert message.endswith("set STYLE_IMAGE in settings.py or pass --style_image=PATH")
    assert "\n" not in message and "LEARNING_RATE" not in message


# Failures: one line, starting with the path, naming the setting and its flag.


def _missing(tmp_path):
    return str(tmp_path / "nope.jpg")


def _directory(tmp_path):
    return str(tmp_path)


def _empty(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    return str(tmp_path / "empty.png")


def _text(tmp_path):
    (tmp_path / "notes.jpg").write_text("this is not an image\n" * 5)
    return str(tmp_path / "notes.jpg")


def _truncated(name, keep):
    """An image file cut short after `keep` bytes: mid-pixels, or mid-header when small."""

    def make(tmp_path):
        pixels = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
        path = _save(tmp_path, name, Image.fromarray(pixels))
        data = Path(path).read_bytes()
        Path(path).write_bytes(data[:keep])
        return path

    return make


def _lab(tmp_path):
    return _save(tmp_path, "lab.tif", Image.new("LAB", (40, 40), (50, 128, 128)))


def _small(tmp_path):
    return _save(tmp_path, "small.png", Image.new("RGB", (20, 40)))


FAILURES = {
    "missing": (_missing, "no such file"),
    "directory": (_directory, "directory"),
    "empty": (_empty, "empty"),
    "not an image": (_text, "not an image"),
    "truncated png": (_truncated("cut.png", 6000), "truncated or corrupt"),
    "truncated jpeg": (_truncated("cut.jpg", 1500), "truncated or corrupt"),
    "jpeg cut in its header": (_truncated("cut.jpg", 40), "truncated or corrupt"),
    "unsupported mode": (_lab, "unsupported image mode LAB"),
    "too small": (_small, f"20x40 pixels, below the minimum {MIN_SIDE}x{MIN_SIDE}"),
}


@pytest.mark.parametrize("case", FAILURES)
@pytest.mark.parametrize("setting", ["CONTENT_IMAGE", "STYLE_IMAGE"])
def test_bad_files_give_one_line_user_errors(tmp_path, case, setting):
    make, problem = FAILURES[case]
    path = make(tmp_path)

    with pytest.raises(UserError) as caught:
        load_image(path, setting)

    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    assert problem in message
    assert f"set {setting} in settings.py or pass --{setting.lower()}=PATH" in message
    # No PIL or OS traceback is chained on to the message.
    assert caught.value.__cause__ is None
    assert caught.value.__context__ is None or caught.value.__suppress_context__


def test_small_image_message_says_to_use_a_larger_one(tmp_path):
    with pytest.raises(UserError, match="use a larger image"):
        load_image(_small(tmp_path), "STYLE_IMAGE")


def test_unreadable_file_says_why(tmp_path, monkeypatch):
    path = _save(tmp_path, "locked.png", Image.new("RGB", (40, 40)))

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Image, "open", refuse)  # chmod cannot lock out root, who runs CI
    with pytest.raises(UserError) as caught:
        load_image(path, "CONTENT_IMAGE")

    assert str(caught.value).startswith(f"{path}: cannot read file (Permission denied); set ")


def test_decompression_bomb_is_a_user_error(tmp_path, monkeypatch):
    path = _save(tmp_path, "huge.png", Image.new("RGB", (64, 64)))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)

    with pytest.raises(UserError) as caught:
        load_image(path, "CONTENT_IMAGE")

    message = str(caught.value)
    assert message.startswith(f"{path}: image is too large")
    assert "use a smaller image" in message and "CONTENT_IMAGE" in message


# output_size.


@pytest.mark.parametrize(
    ("content_hw", "width", "height", "expected"),
    [
        ((100, 200), 64, 48, (48, 64)),  # both given: exactly that, aspect ignored
        ((100, 200), 100, 0, (50, 100)),  # width only: keep the aspect ratio
        ((100, 200), 0, 80, (80, 160)),  # height only
        ((100, 200), 0, 0, (100, 200)),  # neither: the content's own size
        ((100, 300), 100, 0, (33, 100)),  # 33.33 rounds down
        ((300, 100), 0, 100, (100, 33)),
        ((60, 90), 100, 0, (67, 100)),  # 66.67 rounds up
    ],
)
def test_output_size(content_hw, width, height, expected):
    assert output_size(content_hw, width, height) == expected


def test_output_size_too_small_when_both_given():
    with pytest.raises(UserError) as caught:
        output_size((100, 200), 20, 15)

    message = str(caught.value)
    assert message.startswith("output size 20x15 is too small")
    assert f"IMAGE_WIDTH to at least {MIN_SIDE} and IMAGE_HEIGHT to at least {MIN_SIDE}" in message
    assert "\n" not in message


def test_output_size_names_only_the_short_side():
    with pytest.raises(UserError) as caught:
        output_size((100, 200), 64, 20)

    assert "IMAGE_HEIGHT to at least 32" in str(caught.value)
    assert "IMAGE_WIDTH" not in str(caught.value)


@pytest.mark.parametrize(
    ("content_hw", "width", "height", "setting"),
    [
        ((100, 1000), 200, 0, "IMAGE_WIDTH"),  # the derived height is 20
        ((1000, 100), 0, 200, "IMAGE_HEIGHT"),  # the derived width is 20
        ((30, 90), 0, 0, "IMAGE_WIDTH"),  # the content itself is too small
        ((70, 100), 20, 0, "IMAGE_WIDTH"),  # the given side itself is too small
    ],
)
def test_output_size_suggests_the_least_value_that_works(content_hw, width, height, setting):
    with pytest.raises(UserError, match=f"set {setting} to at least") as caught:
        output_size(content_hw, width, height)
    suggested = int(str(caught.value).split(f"{setting} to at least ")[1].split()[0])
    keyword = "width" if setting == "IMAGE_WIDTH" else "height"
    other = {"width": width, "height": height, keyword: suggested}

    assert min(output_size(content_hw, **other)) >= MIN_SIDE
    with pytest.raises(UserError):
        output_size(content_hw, **{**other, keyword: suggested - 1})
    assert f"--{setting.lower()}={suggested}" in str(caught.value)


@pytest.mark.parametrize(("width", "height"), [(-1, 0), (0, -5)])
def test_output_size_rejects_negative_settings(width, height):
    with pytest.raises(ValueError):
        output_size((100, 100), width, height)


# resize_image.


def test_resize_keeps_shape_type_and_range():
    checkerboard = (np.indices((40, 48)).sum(axis=0) % 2 * 255).astype(np.float32)
    image = np.repeat(checkerboard[..., np.newaxis], 3, axis=-1)

    resized = resize_image(image, (97, 33))

    assert resized.shape == (97, 33, 3)
    assert resized.dtype == np.float32
    assert resized.min() >= 0 and resized.max() <= 255  # Lanczos overshoots; it is clipped


def test_resize_keeps_a_constant_image_constant():
    image = np.full((40, 48, 3), (12.5, 200.0, 99.75), dtype=np.float32)

    resized = resize_image(image, (64, 35))

    np.testing.assert_allclose(resized, np.broadcast_to(image[0, 0], (64, 35, 3)), atol=1e-3)


def test_resize_does_not_quantise_to_8_bits():
    ramp = np.linspace(0, 255, 48, dtype=np.float32)
    image = np.repeat(np.tile(ramp, (40, 1))[..., np.newaxis], 3, axis=-1)

    resized = resize_image(image, (40, 37))

    assert np.any(np.abs(resized - np.round(resized)) > 0.01)
    assert np.all(np.diff(resized[20, 2:-2, 0]) > 0)  # still a ramp


def test_resize_to_the_same_size_returns_an_equal_copy():
    image = np.random.default_rng(2).uniform(0, 255, (40, 48, 3)).astype(np.float32)

    resized = resize_image(image, (40, 48))
    resized[0, 0] = -1

    assert image[0, 0, 0] != -1
    np.testing.assert_array_equal(resized[1:], image[1:])


# save_image.


def test_png_round_trip_is_exact(tmp_path):
    pixels = np.random.default_rng(3).integers(0, 256, (*SIZE, 3), dtype=np.uint8)
    path = str(tmp_path / "out" / "result.png")  # the folder does not exist yet

    save_image(path, pixels.astype(np.float32))

    np.testing.assert_array_equal(load_image(path, "CONTENT_IMAGE"), pixels)
    assert sorted(os.listdir(tmp_path / "out")) == ["result.png"]


def test_save_clips_rounds_and_takes_a_batch(tmp_path):
    image = np.full((1, *SIZE, 3), 10.6, dtype=np.float32)
    image[0, 0, 0] = (300.0, -4.0, 254.4)
    path = str(tmp_path / "batch.png")

    save_image(path, image)

    loaded = load_image(path, "CONTENT_IMAGE")
    np.testing.assert_array_equal(loaded[0, 0], (255, 0, 254))
    np.testing.assert_array_equal(loaded[5, 5], (11, 11, 11))


@pytest.mark.parametrize(
    ("name", "image_format", "tolerance"),
    [("a.jpg", "JPEG", 4), ("a.JPEG", "JPEG", 4), ("a.bmp", "BMP", 0), ("a.tif", "TIFF", 0)],
)
def test_save_format_follows_the_extension(tmp_path, name, image_format, tolerance):
    image = np.full((*SIZE, 3), (200, 40, 90), dtype=np.float32)
    path = str(tmp_path / name)

    save_image(path, image)

    with Image.open(path) as written:
        assert written.format == image_format
    np.testing.assert_allclose(load_image(path, "CONTENT_IMAGE"), image, atol=tolerance)


def test_jpeg_quality_is_95(tmp_path, monkeypatch):
    calls = []
    real_save = Image.Image.save
    monkeypatch.setattr(
        Image.Image, "save", lambda self, *a, **k: calls.append(k) or real_save(self, *a, **k)
    )

    save_image(str(tmp_path / "q.jpg"), np.zeros((*SIZE, 3), dtype=np.float32))

    assert calls == [
        {"format": "JPEG", "quality": 95, "icc_profile": color_profiles.srgb_profile()}
    ]


@pytest.mark.parametrize("name", ["out.xyz", "out", "out.psd"])  # PIL reads PSD, cannot write
def test_unknown_extension_names_output_image(tmp_path, name):
    path = str(tmp_path / name)

    with pytest.raises(UserError) as caught:
        save_image(path, np.zeros((*SIZE, 3), dtype=np.float32))

    message = str(caught.value)
    assert message.startswith(f"{path}: cannot save images with extension")
    assert "OUTPUT_IMAGE" in message and "--output_image=PATH" in message
    assert "\n" not in message
    assert os.listdir(tmp_path) == []


def test_failed_save_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "result.png"
    save_image(str(path), np.full((*SIZE, 3), 50, dtype=np.float32))
    old_bytes = path.read_bytes()

    def failing_save(self, file, *args, **kwargs):
        file.write(b"half an image")
        raise OSError("No space left on device")

    monkeypatch.setattr(Image.Image, "save", failing_save)
    with pytest.raises(UserError, match="No space left on device") as caught:
        save_image(str(path), np.full((*SIZE, 3), 200, dtype=np.float32))

    assert str(caught.value).startswith(f"{path}: cannot write the file: ")
    assert "OUTPUT_IMAGE" in str(caught.value)
    assert path.read_bytes() == old_bytes
    assert os.listdir(tmp_path) == ["result.png"]


def test_save_rejects_a_wrong_shape(tmp_path):
    with pytest.raises(ValueError, match="shape"):
        save_image(str(tmp_path / "x.png"), np.zeros((2, *SIZE, 3), dtype=np.float32))


def test_module_does_not_import_tensorflow():
    code = "import sys, neural_style.media.images; print('tensorflow' in sys.modules)"
    root = Path(__file__).resolve().parent.parent
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root)

    assert result.stdout.strip() == "False", result.stderr


def test_save_names_the_setting_it_is_given(tmp_path):
    path = str(tmp_path / "out.psd")
    with pytest.raises(UserError, match=r"set STYLIZE_OUTPUT in settings\.py") as caught:
        save_image(path, np.zeros((*SIZE, 3), dtype=np.float32), setting="STYLIZE_OUTPUT")
    assert "OUTPUT_IMAGE" not in str(caught.value).replace("STYLIZE_OUTPUT", "")


# check_encodable: an output the format cannot hold is refused before the run starts.


@pytest.mark.parametrize(
    ("name", "image_format", "limit"), [("a.jpg", "JPEG", 65500), ("a.webp", "WEBP", 16383)]
)
def test_check_encodable_matches_what_pil_can_encode(tmp_path, name, image_format, limit):
    path = str(tmp_path / name)
    check_encodable(path, (2, limit), "OUTPUT_IMAGE")
    Image.new("RGB", (limit, 2)).save(io.BytesIO(), format=image_format)  # really fits

    with pytest.raises(UserError) as caught:
        check_encodable(path, (40, limit + 1), "OUTPUT_IMAGE")
    with pytest.raises((OSError, ValueError)):  # and PIL really refuses one pixel more
        Image.new("RGB", (limit + 1, 2)).save(io.BytesIO(), format=image_format)

    assert str(caught.value) == (
        f"{path}: a {image_format} image can be at most {limit} pixels a side, and this "
        f"output would be {limit + 1}x40; set IMAGE_WIDTH / IMAGE_HEIGHT so each side is at "
        f"most {limit}"
    )
    assert os.listdir(tmp_path) == []


def test_check_encodable_takes_a_tall_jpeg_too(tmp_path):
    with pytest.raises(UserError, match="would be 40x70000;"):
        check_encodable(str(tmp_path / "tall.jpeg"), (70000, 40), "OUTPUT_IMAGE")


def test_check_encodable_lets_a_large_png_pass(tmp_path):
    check_encodable(str(tmp_path / "big.png"), (70000, 70000), "OUTPUT_IMAGE")


@pytest.mark.parametrize("name", ["out.psd", "out.xyz", "out"])
def test_check_encodable_refuses_a_suffix_pil_cannot_write(tmp_path, name):
    path = str(tmp_path / name)
    with pytest.raises(UserError) as caught:
        check_encodable(path, (40, 48), "STYLIZE_OUTPUT")
    message = str(caught.value)
    assert message.startswith(f"{path}: cannot save images with extension")
    assert "set STYLIZE_OUTPUT in settings.py or pass --stylize_output=PATH" in message


def test_save_refuses_a_jpeg_too_wide_before_writing(tmp_path):
    path = tmp_path / "wide.jpg"
    path.write_bytes(b"an earlier result")

    with pytest.raises(UserError, match="at most 65500 pixels a side"):
        save_image(str(path), np.zeros((2, 65501, 3), dtype=np.float32))

    assert path.read_bytes() == b"an earlier result"
    assert os.listdir(tmp_path) == ["wide.jpg"]
