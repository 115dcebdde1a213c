"""How large a stylise run's images and batches may be in the memory available.

Applying the network holds a few full-size maps at once (see `bytes_per_pixel`). Once the
network is loaded, each size is checked against the memory available. An input that does
not fit is shrunk to the largest size that does, with a note, when STYLIZE_MAX_SIZE is 0
(each input's own size); with STYLIZE_MAX_SIZE set, the run refuses before writing anything
and says the largest size that fits. A batch that does not fit is split into fewer images
at a time, with a note.

Sizes are (height, width) pairs, `size_hw`; messages give them as WIDTHxHEIGHT.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import TextIO

import numpy as np
from PIL import Image

from neural_style.errors import UserError, setting_fix
from neural_style.feedforward.model import MIN_SIDE
from neural_style.media import images
from neural_style.optimize import memory
from neural_style.settings.network import NetworkSettings

# Memory of one image in the network's forward pass, in bytes a pixel (`bytes_per_pixel`),
# measured as peak resident memory on a 2-core CPU, TensorFlow 2.21: at width 32, 770 to
# 1040 bytes a pixel from 256x256 to 2048x2048 and 3000x2000 (batches of 1 to 4), 990 to
# 1160 with colours kept; at width 16, 410 to 500; at width 4, 145.
# Float32 RGB copies of the image alive at the peak: the input, its scaled, padded, tanh
# and output copies, the clipped result...
IMAGE_COPIES = 8
# ...and the colour conversion's float64 and float32 planes when colours are kept.
COLOR_COPIES = 12
# Full-size feature maps of `width` float32 channels at the peak: the first conv's output
# (held for the last upsampling), the 2w-channel upsampled map and its padded copy, the
# last conv's output and an instance-normalisation temporary. The half- and quarter-size
# stages (2w and 4w channels) hold less, and never at the same time.
FEATURE_MAPS = 7
# Makes the estimate err high: 10% above the largest measurement at width 32, 13% with
# colours kept, 25% at width 16.
SAFETY_FACTOR = 1.15
# Address space a pixel maps for each byte of the estimate, where the budget is an
# address-space limit (ulimit -v): TensorFlow maps more than it touches. Measured with a
# 4000x3000 photo, width 32: under 6 GiB (3.6 GiB left once the network was loaded)
# 1600x1200 ran and 1800x1350 crashed; under 4 GiB (1.6 GiB left) 1000x750 ran and
# 1354x1016 ran out. That is 1.6 to 2.0 kB a pixel against the estimate's 1.2 kB.
ADDRESS_SPACE_PER_BYTE = 2.0


class DoesNotFit(UserError):
    """An input would not fit in memory at the size STYLIZE_MAX_SIZE asks for: the run is
    refused (not just that input skipped)."""


def bytes_per_pixel(width: int, preserve_colors: bool = False) -> float:
    """Estimated peak memory of one image in the network's forward pass, per pixel, for a
    network of base width `width` (see FEATURE_MAPS and IMAGE_COPIES): about 1140 bytes at
    the paper's width 32, so that a 12-megapixel photo needs about 13 GiB."""
    copies = IMAGE_COPIES + (COLOR_COPIES if preserve_colors else 0)
    return SAFETY_FACTOR * (copies * 3 * 4 + FEATURE_MAPS * width * 4)


class MemoryFit:
    """The sizes and batch sizes that fit in the memory left once the network is loaded
    (measured once, at the start), with a note or a refusal where they do not."""

    def __init__(self, settings: NetworkSettings, width: int, stream: TextIO):
        budget = memory.memory_budget()
        self.available = budget.bytes
        self.budget = int(self.available * memory.USABLE_FRACTION)
        self.per_pixel = bytes_per_pixel(width, settings.stylize_preserve_colors)
        self.of_what = "memory"  # what the estimates count, and where the room is
        self.room = f"{_gib(self.available)} is available"
        if budget.source.startswith(memory.ADDRESS_SPACE_SOURCE):
            self.per_pixel *= ADDRESS_SPACE_PER_BYTE
            self.of_what = "address space"
            self.room = f"{_gib(self.available)} is left under {budget.source}"
        self.max_size = settings.stylize_max_size
        self.batch_size = settings.stylize_batch_size
        self.stream = stream
        self._noted: set[tuple] = set()

    def estimate(self, size_hw: tuple[int, int], batch: int = 1) -> float:
        """Estimated peak memory, bytes, of `batch` images of `size_hw` in one pass."""
        return self.per_pixel * size_hw[0] * size_hw[1] * batch

    def largest_side(self, size_hw: tuple[int, int]) -> int:
        """The longest side at which an image of this shape fits alone, at most its own;
        0 when not even one with a shorter side of images.MIN_SIDE fits."""
        longest = max(size_hw)
        scale = math.sqrt(self.budget / max(self.estimate(size_hw), 1.0))
        side = min(longest, math.floor(longest * scale))
        while side > 0 and self.estimate(_scaled(size_hw, side)) > self.budget:
            side -= 1
        if side <= 0 or min(_scaled(size_hw, side)) < images.MIN_SIDE:
            return 0
        return side

    def target_size(self, size_hw: tuple[int, int], name: str) -> tuple[int, int]:
        """The size an input of `size_hw` is stylised at: STYLIZE_MAX_SIZE's, or smaller
        with a note when that does not fit and STYLIZE_MAX_SIZE is 0.

        Raises:
          DoesNotFit: it does not fit and STYLIZE_MAX_SIZE asks for that size, or no size
            fits at all.
        """
        wanted = _fitted_size(size_hw, self.max_size)
        if self.estimate(wanted) <= self.budget:
            return wanted
        side = self.largest_side(wanted)
        if self.max_size or not side:
            raise DoesNotFit(self._refusal(wanted, name, side))
        smaller = _scaled(wanted, side)
        self._note_once(
            ("shrink", wanted),
            f"note: {name}: {wxh(wanted)} needs about {_gib(self.estimate(wanted))} of "
            f"{self.of_what}, {self.room}; stylising it (and any other "
            f"input of that size) at {wxh(smaller)}; to choose the size, "
            f"{setting_fix('STYLIZE_MAX_SIZE', 'PIXELS')}",
        )
        return smaller

    def _refusal(self, size_hw: tuple[int, int], name: str, side: int) -> str:
        needs = (
            f"STYLIZE_MAX_SIZE (--stylize_max_size): {name} at {wxh(size_hw)} needs about "
            f"{_gib(self.estimate(size_hw))} of {self.of_what}, but {self.room}"
        )
        if not side:
            return f"{needs}; no size fits: close other programs or use a larger machine"
        return (
            f"{needs}; the largest that fits is {side} pixels (--stylize_max_size={side}), "
            "or 0 to shrink each input to what fits"
        )

    def batch(self, size_hw: tuple[int, int]) -> int:
        """Images of `size_hw` stylised together: STYLIZE_BATCH_SIZE, or fewer (with a
        note) when that many do not fit."""
        fitting = max(1, int(self.budget // max(self.estimate(size_hw), 1.0)))
        if fitting >= self.batch_size:
            return self.batch_size
        self._note_once(
            ("batch", size_hw),
            f"note: {self.batch_size} images of {wxh(size_hw)} at once need about "
            f"{_gib(self.estimate(size_hw, self.batch_size))} of memory, "
            f"{_gib(self.available)} is available; stylising {fitting} at a time "
            "(STYLIZE_BATCH_SIZE)",
        )
        return fitting

    def load(self, path: str) -> np.ndarray:
        """The image at `path` (STYLIZE_INPUT or a file of its folder), at the size it is
        stylised at.

        Raises:
          UserError: the file cannot be read as an image.
          DoesNotFit: as `target_size`.
        """
        with self.memory_guard(path, _header_size(path) or (0, 0)):
            image = images.load_image(path, "STYLIZE_INPUT")
            return fit_image(image, self.target_size(image.shape[:2], path))

    def _note_once(self, key: tuple, note: str) -> None:
        """Prints `note` the first time `key` comes up: a size or batch that does not fit
        is said once, not for every image or frame of that size."""
        if key not in self._noted:
            self._noted.add(key)
            print(note, file=self.stream, flush=True)

    def check_folder(self, paths: list[str]) -> None:
        """With STYLIZE_MAX_SIZE set, refuses before anything is written when an image of
        the folder would not fit at that size (read from the files' headers).

        Raises:
          DoesNotFit: as `target_size`.
        """
        if not self.max_size:
            return  # inputs that do not fit are shrunk as they come
        for path in paths:
            size_hw = _header_size(path)
            if size_hw is not None and min(size_hw) >= images.MIN_SIDE:
                self.target_size(size_hw, path)

    @contextlib.contextmanager
    def memory_guard(self, name: str, size_hw: tuple[int, int], batch: int = 1) -> Iterator[None]:
        """Turns running out of memory inside the block (MemoryError; the Stylizer turns
        TensorFlow's ResourceExhaustedError into one), as `batch` images of `size_hw` from
        `name` are stylised, into one UserError saying how to make them fit. The estimate
        of this module can miss a limit it does not see, or other programs' growth.

        Raises:
          DoesNotFit: the block ran out of memory.
        """
        try:
            yield
        except MemoryError:
            raise DoesNotFit(self._out_of_memory(name, size_hw, batch)) from None

    def _out_of_memory(self, name: str, size_hw: tuple[int, int], batch: int) -> str:
        many = f" ({batch} at once)" if batch > 1 else ""
        smaller = max(images.MIN_SIDE, max(size_hw) // 2)
        fix = f"{setting_fix('STYLIZE_MAX_SIZE', 'PIXELS')} below {max(size_hw)}"
        if batch > 1:
            fix = f"set STYLIZE_BATCH_SIZE to 1 (--stylize_batch_size=1), or {fix}"
        return (
            f"{name}: stylising it at {wxh(size_hw)}{many} ran out of the memory this process "
            f"may use{_address_space_note()}; {fix} (e.g. --stylize_max_size={smaller})"
        )


def _address_space_note() -> str:
    """`, which ulimit -v limits to 4.0 GiB`, when the process's address space is limited."""
    try:
        import resource
    except ImportError:  # Windows
        return ""
    limit = resource.getrlimit(resource.RLIMIT_AS)[0]
    if limit == resource.RLIM_INFINITY:
        return ""
    return f", which ulimit -v limits to {_gib(limit)} of address space"


def _header_size(path: str) -> tuple[int, int] | None:
    """(height, width) from an image file's header, without decoding it; None if unreadable
    (the file is then skipped, and reported, when it is read)."""
    try:
        with Image.open(path) as picture:
            return picture.height, picture.width
    except Exception:  # PIL raises many kinds for a damaged header; the read reports it
        return None


def _gib(size: float) -> str:
    return f"{size / memory.GIB:.1f} GiB"


def wxh(size_hw: tuple[int, int]) -> str:
    """A (height, width) size as messages give it: WIDTHxHEIGHT."""
    return f"{size_hw[1]}x{size_hw[0]}"


def _fitted_size(size_hw: tuple[int, int], max_size: int) -> tuple[int, int]:
    """`size_hw` shrunk so its longer side is at most `max_size` (0 = no limit)."""
    if not max_size or max(size_hw) <= max_size:
        return size_hw
    return _scaled(size_hw, max_size)


def _scaled(size_hw: tuple[int, int], longest: int) -> tuple[int, int]:
    """`size_hw` scaled so that its longer side is `longest`."""
    scale = longest / max(size_hw)
    return max(MIN_SIDE, round(size_hw[0] * scale)), max(MIN_SIDE, round(size_hw[1] * scale))


def fit_image(image: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """The image at `size_hw` (a copy only when it is resized)."""
    height, width = image.shape[:2]
    if min(height, width) < MIN_SIDE:
        raise UserError(f"image is {width}x{height} pixels, below the network's {MIN_SIDE}")
    if (height, width) == tuple(size_hw):
        return image
    return images.resize_image(image, size_hw)
