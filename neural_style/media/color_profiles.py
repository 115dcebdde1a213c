"""Colour management: every image read is converted to sRGB, every image written says it is
sRGB, and 16-bit outputs are encoded without an 8-bit step (PIL cannot write 16-bit RGB).

    image = to_srgb(image, path)       # on load: the embedded ICC profile applied
    srgb_profile()                     # on save: the profile bytes every output embeds
    encode_png16(file, pixels, icc)    # [H, W, 3] uint16 -> 48-bit PNG with an iCCP chunk
    encode_tiff16(file, pixels, icc)   # [H, W, 3] uint16 -> 48-bit TIFF with tag 34675

A photo without a profile is taken as sRGB, which is what the web and most cameras assume.
A profile that cannot be read or does not fit the image's colours is reported once per file
(a warning line on stderr) and the pixels are used as they are.
"""

from __future__ import annotations

import functools
import io
import os
import struct
import sys
import zlib
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageCms

# Relative colorimetric: colours inside sRGB (nearly all of a photo, even a Display P3 one)
# keep their exact appearance, and only the few outside are clipped to sRGB's edge. The
# matrix profiles of phones and cameras (Display P3, Adobe RGB, ProPhoto) have no
# perceptual tables anyway, and the LUT profiles that do would desaturate every colour.
INTENT = ImageCms.Intent.RELATIVE_COLORIMETRIC
# Colour modes a profile can describe, and the mode their sRGB version is read in; a mode
# with alpha has its colour part converted and its alpha kept as it was.
_COLOUR_MODES = {"RGB": "RGB", "RGBX": "RGB", "CMYK": "RGB", "L": "RGB"}
_ALPHA_SPLIT = {"RGBA": "RGB", "LA": "L"}
# Every mode whose profile is applied (the others are 16-bit, float or not colours at all).
_PROFILED_MODES = {*_COLOUR_MODES, *_ALPHA_SPLIT, "P", "PA", "La", "RGBa", "1", "YCbCr"}
_warned: set[str] = set()


@functools.cache
def srgb_profile() -> bytes:
    """The ICC profile every output embeds: LittleCMS's built-in sRGB, built once."""
    built = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    # LittleCMS stamps the profile with the time it was built (header bytes 24..35); a
    # fixed stamp keeps the same run's files byte for byte the same on every day. (The
    # profile ID, bytes 84..99, is left zero by LittleCMS, "not computed", so stays valid.)
    return built[:24] + bytes(12) + built[36:]


def to_srgb(image: Image.Image, path: str) -> Image.Image:
    """`image` converted from its embedded ICC profile to sRGB, in an 8-bit mode that
    images.py reads (RGB, or RGBA when it has transparency). Unchanged: an image without a
    profile; 16-bit grey and float images (a conversion through 8 bits would lose their
    precision); and, with one warning line per file, an image whose profile is broken."""
    data = image.info.get("icc_profile")
    if not data or image.mode not in _PROFILED_MODES:
        return image
    image = _plain_mode(image)
    colour_mode = _ALPHA_SPLIT.get(image.mode, image.mode)
    try:
        source = _profile(bytes(data))
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError) as error:
        warn_once(path, f"its ICC colour profile is broken ({_one_line(error)}); read as sRGB")
        return image
    try:
        colour = image.convert(colour_mode) if colour_mode != image.mode else image
        converted = ImageCms.applyTransform(colour, _transform(source, colour_mode))
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError) as error:
        problem = f"its ICC colour profile does not fit its {colour_mode} pixels"
        warn_once(path, f"{problem} ({_one_line(error)}); read as sRGB")
        return image
    if image.mode in _ALPHA_SPLIT:
        converted.putalpha(image.getchannel("A"))
    return converted


def warn_once(path: str, problem: str) -> None:
    """`warning: <path>: <problem>` on stderr, the first time only for each file."""
    key = os.path.abspath(path)
    if key not in _warned:
        _warned.add(key)
        print(f"warning: {path}: {problem}", file=sys.stderr, flush=True)


def _plain_mode(image: Image.Image) -> Image.Image:
    """A mode a transform takes: palettes and premultiplied alpha expanded, a transparent
    colour key (which the conversion would move) turned into an alpha channel."""
    transparent = "transparency" in image.info or image.mode in ("PA", "La", "RGBa")
    if image.mode in ("P", "PA"):
        return image.convert("RGBA" if transparent or _palette_alpha(image) else "RGB")
    if image.mode in ("1", "La") or (image.mode == "L" and transparent):
        return image.convert("LA" if transparent else "L")
    if image.mode in ("RGBX", "RGBa", "YCbCr") or transparent:
        return image.convert("RGBA" if transparent else "RGB")
    return image


def _palette_alpha(image: Image.Image) -> bool:
    return image.palette is not None and "A" in image.palette.mode


@functools.lru_cache(maxsize=16)
def _profile(data: bytes) -> ImageCms.ImageCmsProfile:
    """The profile read from its bytes, kept for the next image that has it (a folder of
    one camera's photos shares one profile)."""
    return ImageCms.ImageCmsProfile(io.BytesIO(data))


@functools.lru_cache(maxsize=16)
def _transform(source: ImageCms.ImageCmsProfile, mode: str) -> ImageCms.ImageCmsTransform:
    """The `source` -> sRGB transform for images of `mode`, built once per profile."""
    target = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
    return ImageCms.buildTransform(source, target, mode, _COLOUR_MODES[mode], INTENT)


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split()) or type(error).__name__


# --- 16 bits a channel ----------------------------------------------------------------------


def encode_png16(file: BinaryIO, pixels: np.ndarray, icc: bytes) -> None:
    """Writes [H, W, 3] uint16 `pixels` as a 48-bit RGB PNG with `icc` in its iCCP chunk.
    Each row is filtered as the difference from the row above (PNG filter 2, "Up"), which
    a smooth image compresses far better than raw rows."""
    height, width, _ = pixels.shape
    raw = np.ascontiguousarray(pixels, dtype=">u2").view(np.uint8).reshape(height, width * 6)
    filtered = raw.copy()
    filtered[1:] -= raw[:-1]  # uint8 arithmetic wraps modulo 256, as the filter defines
    rows = np.concatenate([np.full((height, 1), 2, np.uint8), filtered], axis=1)
    file.write(b"\x89PNG\r\n\x1a\n")
    _png_chunk(file, b"IHDR", struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0))
    _png_chunk(file, b"iCCP", b"sRGB\x00\x00" + zlib.compress(icc, 9))
    _png_chunk(file, b"IDAT", zlib.compress(rows.tobytes(), 6))
    _png_chunk(file, b"IEND", b"")


def _png_chunk(file: BinaryIO, kind: bytes, data: bytes) -> None:
    file.write(struct.pack(">I", len(data)) + kind + data)
    file.write(struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def encode_tiff16(file: BinaryIO, pixels: np.ndarray, icc: bytes) -> None:
    """Writes [H, W, 3] uint16 `pixels` as a baseline uncompressed 48-bit RGB TIFF
    (little-endian, one strip) with `icc` in tag 34675, which every print workflow reads."""
    height, width, _ = pixels.shape
    data = np.ascontiguousarray(pixels, dtype="<u2").tobytes()
    header_size, entry_count = 8, 11
    ifd_size = 2 + 12 * entry_count + 4
    bits_at = header_size + ifd_size  # the three BitsPerSample values do not fit in an entry
    icc_at = bits_at + 6
    pixels_at = icc_at + len(icc) + (len(icc) % 2)  # word-aligned, as TIFF asks of offsets
    entries = [  # (tag, type: 3 SHORT / 4 LONG / 7 UNDEFINED, count, value or offset)
        (256, 4, 1, width),
        (257, 4, 1, height),
        (258, 3, 3, bits_at),
        (259, 3, 1, 1),  # no compression
        (262, 3, 1, 2),  # RGB
        (273, 4, 1, pixels_at),
        (277, 3, 1, 3),  # samples per pixel
        (278, 4, 1, height),  # rows per strip: one strip
        (279, 4, 1, len(data)),
        (284, 3, 1, 1),  # interleaved RGBRGB...
        (34675, 7, len(icc), icc_at),
    ]
    out = bytearray(b"II*\x00" + struct.pack("<I", header_size))
    out += struct.pack("<H", entry_count)
    for tag, kind, count, value in entries:
        packed = struct.pack("<H", value) + b"\x00\x00" if kind == 3 and count == 1 else None
        out += struct.pack("<HHI", tag, kind, count) + (packed or struct.pack("<I", value))
    out += struct.pack("<I", 0)  # no next IFD
    out += b"\x00" * (bits_at - len(out)) + struct.pack("<HHH", 16, 16, 16)
    out += b"\x00" * (icc_at - len(out)) + icc
    out += b"\x00" * (pixels_at - len(out))
    file.write(bytes(out))
    file.write(data)
