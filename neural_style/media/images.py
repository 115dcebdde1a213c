"""Load, resize and save images as numpy arrays, with PIL (no TensorFlow here).

Shapes and values:
    image     [H, W, 3]     float32, RGB, 0..255 (not mean-subtracted; that is VGG's job)
    batch     [1, H, W, 3]  the same with a batch axis; `save_image` takes either
    size_hw   (H, W)        height first, like numpy's shape; messages print WxH

`load_image` turns every failure (missing, corrupt, too small...) into a one-line
`UserError`, `"<path>: <problem>; <fix>"`, where the fix names the setting at fault.
"""

import functools
import math
import os

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from neural_style.errors import UserError, setting_fix
from neural_style.files import atomic_write, output_error
from neural_style.media import color_profiles

# VGG-19 halves the image five times, so each side needs at least 2**5 pixels.
MIN_SIDE = 32
# The file names read as images (a folder or glob of photos, a dataset) and as videos.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")
VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v")
# Suffixes whose format an output keeps; other inputs are written as PNG.
KEPT_OUTPUT_SUFFIXES = (".jpg", ".jpeg", ".png")

# Modes PIL converts to RGB correctly (CMYK by the usual 255*(1-C)*(1-K) formula, used
# when the file has no ICC profile; with one, color_profiles.to_srgb converts it first).
_PLAIN_MODES = frozenset({"RGB", "RGBX", "L", "1", "P", "CMYK", "YCbCr", "HSV"})
# Modes with an alpha channel ("a" means premultiplied).
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
# 16-bit grey; "I" is 32-bit but is what some TIFF readers hand back for 16-bit data.
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})
_SAVE_OPTIONS = {"JPEG": {"quality": 95}}
# The formats that can hold an ICC profile, and so are written with the sRGB one.
_PROFILE_FORMATS = frozenset({"JPEG", "PNG", "TIFF", "WEBP"})
# The 16-bit encoders, by PIL's name of the format (PIL cannot write 16-bit RGB itself).
_SIXTEEN_BIT_ENCODERS = {
    "PNG": color_profiles.encode_png16,
    "TIFF": color_profiles.encode_tiff16,
}
# The largest side, in pixels, each format's encoder can write (PIL refuses JPEG above
# 65,500, libwebp above 16,383, GIF's header holds 16 bits); others go far beyond any run.
MAX_SIDE = {"JPEG": 65500, "WEBP": 16383, "GIF": 65535}
# A classic TIFF addresses its data with 32-bit offsets: at 16 bits a channel (6 bytes a
# pixel, the most a TIFF here holds) its pixels must stay under 4 GiB.
MAX_PIXELS = {"TIFF": (2**32 - 2**20) // 6}


def list_images(folder: str, setting: str) -> list[str]:
    """Every JPEG and PNG file under `folder`, recursively, sorted.

    Raises:
      UserError: `folder` is missing, not a folder, or holds no such file; the message
        names `setting`.
    """
    fix = setting_fix(setting, "FOLDER")
    if not os.path.isdir(folder):
        problem = "no such folder" if not os.path.exists(folder) else "is a file, not a folder"
        raise UserError(f"{folder}: {problem}; {fix}")
    paths = []
    for root, folders, files in os.walk(folder):
        folders.sort()
        paths += [
            os.path.join(root, name)
            for name in sorted(files)
            if name.lower().endswith(IMAGE_SUFFIXES) and not name.startswith(".")
        ]
    if not paths:
        raise UserError(
            f"{folder}: no {', '.join(IMAGE_SUFFIXES)} images in this folder or below it; "
            f"{fix} (a folder of photos such as COCO's train2014)"
        )
    return paths


def load_image(path: str, setting: str) -> np.ndarray:
    """Reads the image at `path` as a float32 [H, W, 3] RGB array, values 0..255.

    `setting` is the settings.py name that holds `path` (e.g. "CONTENT_IMAGE"); error
    messages tell the user to change it. Transparent pixels are composited over white,
    an embedded ICC profile is converted to sRGB (none means sRGB already; a broken one
    is warned about once and ignored), 16-bit grey keeps its precision (0..65535 maps to
    0..255 as floats), 32-bit float
    ("F") images are assumed to be on the 0..255 scale and are clipped to it, and the
    EXIF orientation tag is applied so the array is upright. Of an animation or a
    multi-page file, the first frame is read.

    Raises:
        UserError: the file is missing, unreadable, not an image, truncated, in an
            unsupported mode, too large, smaller than MIN_SIDE on a side, or has NaN or
            infinite pixels (a float TIFF).
    """
    fix = _path_fix(setting)
    _check_file(path, fix)
    image = color_profiles.to_srgb(_decode(path, fix), path)
    array = _to_rgb_over_white(image, path)
    if array is None:
        problem = f"unsupported image mode {image.mode}"
        raise _file_error(path, problem, f"convert it to 8-bit RGB or {fix}")
    _check_finite(path, image, fix)
    height, width = array.shape[:2]
    if min(height, width) < MIN_SIDE:
        problem = f"image is {width}x{height} pixels, below the minimum {MIN_SIDE}x{MIN_SIDE}"
        raise _file_error(path, problem, f"use a larger image: {fix}")
    return array


def load_mask(path: str, setting: str) -> np.ndarray:
    """Reads the grey image at `path` as a float32 [H, W] mask, 0 (black) .. 1 (white):
    the mean of its colour channels times its opacity, so that a transparent pixel counts
    as black in every mode (an alpha channel, a palette's or a PNG's transparent colour, 16
    bits or fewer than 8), and a stroke painted on a transparent layer marks just the
    stroke. Any size is taken; the mask is resized to the image it guides.

    Raises:
        UserError: the file is missing, unreadable, not an image, truncated or in an
            unsupported mode, as `load_image` words them.
    """
    fix = _path_fix(setting)
    _check_file(path, fix)
    image = _decode(path, fix)
    if image.mode == "La":  # PIL cannot convert premultiplied grey straight to RGBA.
        image = image.convert("LA")
    if image.mode in _ALPHA_MODES or image.mode == "P":
        rgba = np.asarray(image.convert("RGBA"), dtype=np.float32) / 255.0
        return (rgba[..., :3].mean(axis=-1) * rgba[..., 3]).astype(np.float32)
    if image.mode in _SIXTEEN_BIT_MODES:
        grey = np.clip(np.asarray(image, dtype=np.float64), 0, 65535) / 65535
    elif image.mode in _PLAIN_MODES or image.mode == "F":
        array = _to_rgb(_without_key(image))
        _check_finite(path, image, fix)
        grey = array.mean(axis=-1) / 255.0
    else:
        problem = f"unsupported image mode {image.mode}"
        raise _file_error(path, problem, f"save the mask as 8-bit grey or RGB, or {fix}")
    grey[_keyed_out(image, path)] = 0.0
    return grey.astype(np.float32)


def _without_key(image: Image.Image) -> Image.Image:
    """`image` without its transparent colour, which _keyed_out reads instead."""
    if "transparency" not in image.info:
        return image
    plain = image.copy()
    plain.info.pop("transparency", None)
    return plain


def _keyed_out(image: Image.Image, path: str) -> np.ndarray:
    """Where a mode without alpha has its transparent colour (a PNG's tRNS): [H, W] bool.

    PIL gives that colour in the file's own bit depth while it scales the pixels: grey of
    1, 2 or 4 bits to 0..255, and 16-bit colour to its high bytes, so the colour is scaled
    alike here (16-bit colour is then matched to 8 bits, the precision the mask is read
    at). 16-bit grey is matched exactly."""
    key = image.info.get("transparency")
    if key is None or image.mode not in ("1", "L", "RGB", *_SIXTEEN_BIT_MODES):
        return np.zeros((image.height, image.width), bool)
    depth = _png_bit_depth(path)
    if image.mode == "RGB":
        if not (isinstance(key, tuple) and len(key) == 3):
            return np.zeros((image.height, image.width), bool)
        key = tuple(value >> 8 for value in key) if depth == 16 else key
        return np.all(np.asarray(image) == np.asarray(key), axis=-1)
    if not isinstance(key, int):
        return np.zeros((image.height, image.width), bool)
    if image.mode == "1":
        return np.asarray(image.convert("L")) == key
    if image.mode == "L" and depth in (1, 2, 4):
        key *= 255 // (2**depth - 1)
    return np.asarray(image) == key


def _png_bit_depth(path: str) -> int | None:
    """The bit depth in a PNG file's header; None for another format."""
    try:
        with open(path, "rb") as png:
            header = png.read(25)
    except OSError:
        return None
    if len(header) < 25 or header[:8] != b"\x89PNG\r\n\x1a\n" or header[12:16] != b"IHDR":
        return None
    return header[24]


def resize_mask(mask: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """Resamples a [H, W] 0..1 mask to `size_hw` bilinearly (antialiased when shrinking;
    no ringing at hard edges, unlike Lanczos), clipped to 0..1."""
    height, width = size_hw
    if mask.shape == (height, width):
        return np.asarray(mask, np.float32).copy()
    picture = Image.fromarray(np.ascontiguousarray(mask, dtype=np.float32))
    result = picture.resize((width, height), Image.Resampling.BILINEAR)
    return np.clip(np.asarray(result, dtype=np.float32), 0.0, 1.0)


def output_size(content_hw: tuple[int, int], width: int, height: int) -> tuple[int, int]:
    """The output's (height, width) from the IMAGE_WIDTH and IMAGE_HEIGHT settings.

    Both set: exactly that size. One set, the other 0: the content's aspect ratio,
    rounded. Both 0: the content image's own size.

    Raises:
        UserError: a side of the result is below MIN_SIDE.
        ValueError: a negative setting or a non-positive content size.
    """
    content_height, content_width = content_hw
    if width < 0 or height < 0:
        raise ValueError(f"width and height must be >= 0, got {width} and {height}")
    if content_height <= 0 or content_width <= 0:
        raise ValueError(f"content size must be positive, got {content_hw}")
    if width and height:
        size = (height, width)
    elif width:
        size = (round(content_height * width / content_width), width)
    elif height:
        size = (height, round(content_width * height / content_height))
    else:
        size = (content_height, content_width)
    if min(size) < MIN_SIDE:
        raise UserError(_too_small_message(content_hw, width, height, size))
    return size


def resize_image(image: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """Resamples a [H, W, 3] image to `size_hw` with Lanczos; float32, clipped to 0..255.

    Each channel is resized as a 32-bit float PIL image, so nothing is rounded to 8 bits.
    An image already of that size comes back as an unchanged copy.
    """
    image = np.asarray(image, dtype=np.float32)
    height, width = size_hw
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"expected an image of shape [H, W, 3], got {image.shape}")
    if height <= 0 or width <= 0:
        raise ValueError(f"size must be positive, got {size_hw}")
    if image.shape[:2] == (height, width):
        return image.copy()
    channels = [_resize_channel(image[..., channel], (width, height)) for channel in range(3)]
    return np.clip(np.stack(channels, axis=-1), 0.0, 255.0)


def save_image(
    path: str, image: np.ndarray, setting: str = "OUTPUT_IMAGE", *, bits: int = 8
) -> None:
    """Writes a [H, W, 3] or [1, H, W, 3] image to `path`, atomically, with the sRGB ICC
    profile embedded (JPEG, PNG, TIFF, WebP: the formats that hold one).

    Values are clipped to 0..255 and rounded to 8 bits; with `bits=16` (a .png or .tif
    path) they are scaled by 257 (0..255 -> 0..65535) and rounded once, straight from the
    floats. The format follows the extension: .jpg/.jpeg (quality 95), .png, or any other
    that PIL can write. `setting` is the settings.py name that decides `path`; error
    messages tell the user to change it.

    Raises:
        UserError: an extension PIL cannot write, an image too large for its format, or
            the file cannot be written (read-only, full disk, a file in the folder's place).
        ValueError: `bits=16` for a format other than PNG or TIFF (a programming error).
    """
    pixels = _checked_pixels(image)
    check_encodable(path, pixels.shape[:2], setting)
    image_format = _save_format(path, setting)
    icc = color_profiles.srgb_profile()
    if bits == 16:
        if image_format not in _SIXTEEN_BIT_ENCODERS:
            raise ValueError(f"{path}: 16-bit output is PNG or TIFF, not {image_format}")
        deep = np.rint(np.clip(pixels, 0, 255) * 257.0).astype(np.uint16)
        write = functools.partial(_SIXTEEN_BIT_ENCODERS[image_format], pixels=deep, icc=icc)
    else:
        picture = Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8))
        options = dict(_SAVE_OPTIONS.get(image_format, {}))
        if image_format in _PROFILE_FORMATS:
            options["icc_profile"] = icc
        write = functools.partial(picture.save, format=image_format, **options)
    try:
        atomic_write(path, write)
    except OSError as error:
        raise output_error(path, error, setting) from None


def check_encodable(path: str, size_hw: tuple[int, int], setting: str) -> None:
    """Refuses, before a run starts, an output `path` of `size_hw` that cannot be written:
    an extension PIL cannot write, or a side beyond what its format can hold (JPEG: 65,500
    pixels), or more pixels than its file can address (TIFF: 4 GiB of them).

    Raises:
        UserError: one line naming the path, the size and the fix.
    """
    image_format = _save_format(path, setting)
    height, width = size_hw
    limit = MAX_SIDE.get(image_format)
    if limit is not None and max(height, width) > limit:
        problem = (
            f"a {image_format} image can be at most {limit} pixels a side, "
            f"and this output would be {width}x{height}"
        )
        fix = f"set IMAGE_WIDTH / IMAGE_HEIGHT so each side is at most {limit}"
        raise _file_error(path, problem, fix)
    most = MAX_PIXELS.get(image_format)
    if most is not None and height * width > most:
        problem = (
            f"a {image_format} file can hold at most {most:,} pixels, "
            f"and this output would be {width}x{height}"
        )
        raise _file_error(path, problem, "set IMAGE_WIDTH / IMAGE_HEIGHT to a smaller size")


def _path_fix(setting: str) -> str:
    return setting_fix(setting)


def _file_error(path: str, problem: str, fix: str) -> UserError:
    return UserError(_one_line(f"{path}: {problem}; {fix}"))


def _one_line(text: object) -> str:
    return " ".join(str(text).splitlines())


def _check_file(path: str, fix: str) -> None:
    """Catches the problems that need no decoder, with plainer messages than PIL's."""
    if os.path.isdir(path):
        raise _file_error(path, "is a directory, not an image file", fix)
    if not os.path.exists(path):
        raise _file_error(path, "no such file", fix)
    if os.path.getsize(path) == 0:
        raise _file_error(path, "file is empty", fix)


def _decode(path: str, fix: str) -> Image.Image:
    """Opens and fully decodes the image, upright per its EXIF orientation."""
    try:
        image = Image.open(path)
    except Image.DecompressionBombError:
        raise _too_large(path, fix) from None
    except UnidentifiedImageError:
        raise _file_error(path, "not an image file PIL can read", fix) from None
    except OSError as error:
        if error.errno is not None:  # The system refused, e.g. no permission to read.
            raise _file_error(path, f"cannot read file ({error.strerror})", fix) from None
        raise _corrupt(path, error, fix) from None
    except Exception as error:  # A plugin that failed oddly on a malformed header.
        raise _corrupt(path, error, fix) from None
    with image:
        try:
            # Image.open reads only the header; load() decodes every pixel, so a
            # truncated file fails here and not later, deep inside TensorFlow.
            image.load()
            return ImageOps.exif_transpose(image)
        except Image.DecompressionBombError:
            raise _too_large(path, fix) from None
        except MemoryError:
            problem = "image is too large to fit in memory"
            raise _file_error(path, problem, f"use a smaller image: {fix}") from None
        except Exception as error:  # PIL's decoders raise OSError, SyntaxError, ValueError...
            raise _corrupt(path, error, fix) from None


def _corrupt(path: str, error: Exception, fix: str) -> UserError:
    problem = f"image data is truncated or corrupt ({_one_line(error)})"
    return _file_error(path, problem, f"re-export the image or {fix}")


def _too_large(path: str, fix: str) -> UserError:
    limit = 2 * (Image.MAX_IMAGE_PIXELS or 0)
    problem = f"image is too large to load safely (over {limit:,} pixels)"
    return _file_error(path, problem, f"use a smaller image: {fix}")


def _check_finite(path: str, image: Image.Image, fix: str) -> None:
    """A float image's NaN or infinite pixels would be clipped, or poison the run later."""
    if image.mode != "F":
        return
    bad = int(np.count_nonzero(~np.isfinite(np.asarray(image, dtype=np.float32))))
    if bad:
        problem = f"the image has {bad} NaN/infinite pixels"
        raise _file_error(path, problem, f"re-export it with finite values, or {fix}")


def _to_rgb_over_white(image: Image.Image, path: str) -> np.ndarray | None:
    """_to_rgb, with a transparent colour (a PNG's tRNS) of grey or RGB read in the file's
    own bit depth (_keyed_out) and made white: PIL matches it against pixels it has already
    scaled, and misses it at 1, 2, 4 and 16 bits."""
    if image.mode not in ("1", "L", "RGB") or "transparency" not in image.info:
        return _to_rgb(image)
    array = _to_rgb(_without_key(image))
    if array is not None:
        array[_keyed_out(image, path)] = 255.0
    return array


def _to_rgb(image: Image.Image) -> np.ndarray | None:
    """A float32 [H, W, 3] array for any supported mode, or None for an unsupported one."""
    if image.mode in _SIXTEEN_BIT_MODES:
        raw = np.asarray(image, dtype=np.float64)
        grey = np.clip(raw, 0, 65535) * (255 / 65535)
        transparent = image.info.get("transparency")
        if isinstance(transparent, int):  # a PNG's tRNS grey value: that grey is see-through
            grey[raw == transparent] = 255.0
        return _grey_to_rgb(grey)
    if image.mode == "F":
        return _grey_to_rgb(np.clip(np.asarray(image, dtype=np.float32), 0, 255))
    if image.mode in _ALPHA_MODES or (image.mode in _PLAIN_MODES and _has_transparency(image)):
        return _over_white(image)
    if image.mode in _PLAIN_MODES:
        return np.asarray(image.convert("RGB"), dtype=np.float32)
    return None


def _grey_to_rgb(grey: np.ndarray) -> np.ndarray:
    return np.repeat(grey.astype(np.float32)[..., np.newaxis], 3, axis=-1)


def _has_transparency(image: Image.Image) -> bool:
    """A transparent colour or palette entry (GIF, PNG tRNS) in a mode without alpha."""
    palette_alpha = image.mode == "P" and image.palette is not None and "A" in image.palette.mode
    return "transparency" in image.info or palette_alpha


def _over_white(image: Image.Image) -> np.ndarray:
    """Composites an image with transparency over a white background."""
    if image.mode == "La":  # PIL cannot convert premultiplied grey straight to RGBA.
        image = image.convert("LA")
    rgba = np.asarray(image.convert("RGBA"), dtype=np.float32)
    alpha = rgba[..., 3:] / 255.0
    return rgba[..., :3] * alpha + 255.0 * (1.0 - alpha)


def _too_small_message(
    content_hw: tuple[int, int], width: int, height: int, size_hw: tuple[int, int]
) -> str:
    """Says which of IMAGE_WIDTH / IMAGE_HEIGHT to raise, and to what."""
    content_height, content_width = content_hw
    output_height, output_width = size_hw
    if width and height:
        fixes = [("IMAGE_WIDTH", MIN_SIDE)] if output_width < MIN_SIDE else []
        fixes += [("IMAGE_HEIGHT", MIN_SIDE)] if output_height < MIN_SIDE else []
    elif height:
        fixes = [("IMAGE_HEIGHT", _smallest_setting(content_height, content_width))]
    else:  # The other side follows the aspect ratio, so widening is enough.
        fixes = [("IMAGE_WIDTH", _smallest_setting(content_width, content_height))]
    settings = " and ".join(f"{name} to at least {value}" for name, value in fixes)
    flags = " ".join(f"--{name.lower()}={value}" for name, value in fixes)
    return (
        f"output size {output_width}x{output_height} is too small: each side needs at least "
        f"{MIN_SIDE} pixels for VGG-19's five poolings; set {settings} in settings.py "
        f"or pass {flags}"
    )


def _smallest_setting(content_side: int, content_other: int) -> int:
    """The least value for one side such that both sides, at the content's aspect
    ratio, reach MIN_SIDE."""
    side = max(MIN_SIDE, math.floor((MIN_SIDE - 0.5) * content_side / content_other))
    while round(content_other * side / content_side) < MIN_SIDE:
        side += 1
    return side


def _resize_channel(channel: np.ndarray, size_wh: tuple[int, int]) -> np.ndarray:
    picture = Image.fromarray(np.ascontiguousarray(channel, dtype=np.float32))
    return np.asarray(picture.resize(size_wh, Image.Resampling.LANCZOS), dtype=np.float32)


def _save_format(path: str, setting: str = "OUTPUT_IMAGE") -> str:
    """PIL's format name for the extension of `path`, if PIL can write it."""
    extension = os.path.splitext(path)[1].lower()
    image_format = Image.registered_extensions().get(extension)
    if image_format is None or image_format not in Image.SAVE:
        problem = f"cannot save images with extension {extension or '(none)'!r}"
        raise _file_error(path, problem, f"use .jpg or .png: {_path_fix(setting)}")
    return image_format


def _checked_pixels(image: np.ndarray) -> np.ndarray:
    """The [H, W, 3] float32 image of a [H, W, 3] or [1, H, W, 3] array."""
    pixels = np.asarray(image, dtype=np.float32)
    if pixels.ndim == 4 and pixels.shape[0] == 1:
        pixels = pixels[0]
    if pixels.ndim != 3 or pixels.shape[-1] != 3:
        raise ValueError(
            f"expected an image of shape [H, W, 3] or [1, H, W, 3], got {pixels.shape}"
        )
    return pixels


def probe_size(path: str, setting: str) -> tuple[int, int]:
    """The (height, width) `load_image` would return, read from the file's header without
    decoding its pixels (EXIF orientation applied); the same one-line errors for a missing
    or unreadable file. A file whose pixels are damaged is found only when it is loaded."""
    fix = _path_fix(setting)
    _check_file(path, fix)
    try:
        with Image.open(path) as image:
            width, height = image.size
            orientation = image.getexif().get(0x0112, 1)
    except Image.DecompressionBombError:
        raise _too_large(path, fix) from None
    except (OSError, UnidentifiedImageError, ValueError) as error:
        raise _corrupt(path, error, fix) from None
    if orientation in (5, 6, 7, 8):  # rotated a quarter turn
        width, height = height, width
    if min(height, width) < MIN_SIDE:
        problem = f"image is {width}x{height} pixels, below the minimum {MIN_SIDE}x{MIN_SIDE}"
        raise _file_error(path, problem, f"use a larger image: {fix}")
    return height, width
