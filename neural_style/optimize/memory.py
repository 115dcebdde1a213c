"""How much memory a step takes at a given size and precision, and how it is made to fit.

A Gatys step keeps VGG-19's activations for the backward pass, so its memory grows with the
pixels: about 2.2 kB a pixel in float32 and 1.4 to 1.8 kB in mixed_bfloat16, so that a
4096x3072 print does not fit in 24 GiB in one piece (it passed 22 GiB in mixed_bfloat16).
Recomputing each block's activations in the backward pass was tried and saved only about 5%
on this CPU: the first block, at full resolution with 64 channels and the largest Gram,
holds most of the peak by itself. What makes large images fit is tiles (tiling.py): a step
then needs one tile's activations, and the whole image's state, about 100 bytes a pixel,
so that prints far beyond 4096x3072 fit.

The estimate adds up the layer shapes (ReLU outputs in the compute dtype, the loss layers'
float32 copies, the image-sized float32 state) and scales them by factors measured with
benchmarks/speed.py on a 2-core CPU, TensorFlow 2.21, so that it errs high: 0 to 30% above
the peak resident memory measured there from 192x256 to 2048x1536. No TensorFlow here, so
a run can check its size before TensorFlow starts.

    plan = plan_step((3072, 4096), "mixed_bfloat16")   # raises UserError if nothing fits
    plan.grid, plan.estimate_bytes
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from neural_style.errors import UserError
from neural_style.names import BLOCKS, REAL_WIDTHS, VGG19_LAYERS
from neural_style.vgg import tile_layout as tiles

GIB = 1024**3
# Measured on the 2-core CPU (benchmarks/speed.py): the TensorFlow runtime, the conv
# weights and Python, before any image.
BASE_BYTES = int(0.85 * GIB)
# Each ReLU output kept for the backward pass costs about this many times its own size
# (its gradient, the conv's output and oneDNN's buffers live beside it for a while); set so
# that the estimate errs high, never low: a 4096x3072 mixed_bfloat16 step passed 22 GiB.
ACTIVATION_FACTOR = 2.0
# ...and each loss layer's float32 copy, with its gradient, about this many times its size.
TAP_FACTOR = 1.1
# Image-sized float32 arrays: the image, the best image, Adam's two moments, the gradient,
# the content photo and temporaries.
IMAGE_COPIES = 8
# Fraction of the available memory a run plans to use, leaving room for the rest.
USABLE_FRACTION = 0.9
ITEM_BYTES = {"float32": 4, "mixed_bfloat16": 2, "mixed_float16": 2}
DEFAULT_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu4_2", "relu5_1", "relu5_2")
# The content layers, whose whole-image features a tiled run keeps as its targets.
DEFAULT_CONTENT_LAYERS = ("relu4_2", "relu5_2")


# The smallest tile core, pixels a side, that planning considers: below it the margins
# (112 pixels each side for the default layers) would multiply the work by more than 3.5.
SMALLEST_TILE = 256
# Each planning round shrinks the tile core by this factor until a step fits.
TILE_SHRINK = 0.8
# The most pixels a step runs on at once, whole or as one tile's crop. The estimate was
# checked against measurements up to 2048x1536 (it errs high there); above that it errs low
# (3072x2304 whole in mixed_bfloat16: 13.0 GiB estimated, 14.9 GiB measured), so larger
# images go in tiles, although a whole step is faster where it fits (11.3 s against 20.8 s
# in 2x3 tiles at that size).
STEP_PIXELS = 4_000_000

# Where the limits on this process's memory are read (parameters of the readers below, so
# that tests give them trees of their own).
PROC = "/proc"
CGROUP_ROOT = "/sys/fs/cgroup"
# cgroup v1 writes "no limit" as a number near 2**63 (its page counter's maximum).
NO_CGROUP_LIMIT = 1 << 60
# Room kept under an address-space limit (ulimit -v) beyond a step's estimate. TensorFlow
# maps more address space than it touches (thread stacks, allocator arenas), but when a run
# plans it has already started, so VmSize counts that, and the estimate's BASE_BYTES counts
# it again. Measured (train.py, 3 steps in float32, 2-core CPU): the address space a run
# mapped after planning against the estimate was 441 MiB against 875 at 40 px (a tiny
# VGG-19), and with the synthetic VGG-19 649 against 1011 MiB at 256 px, 1458 against 1435
# at 512 px, 2711 against 3129 at 1024 px. This covers the worst of those with room.
ADDRESS_SPACE_RESERVE = 256 * 1024**2
ADDRESS_SPACE_SOURCE = "the address-space limit (ulimit -v)"  # how a budget names it
FREE_MEMORY = "the free memory"
FREE_MEMORY_FIX = "close other programs or use a larger machine"
LIMIT_FIX = "raise that limit (docker run --memory, systemd MemoryMax)"
ADDRESS_SPACE_FIX = "raise it (ulimit -v unlimited)"


class MemoryPlan(NamedTuple):
    estimate_bytes: int  # the step's estimated peak resident memory
    available_bytes: int  # what the machine has free for it
    grid: tuple[int, int] = (1, 1)  # (rows, columns) of tiles; (1, 1) is the whole image

    @property
    def tiled(self) -> bool:
        return self.grid != (1, 1)


def _layer_elements(height: int, width: int, widths: Sequence[int]) -> list[tuple[int, str, int]]:
    """(block index, layer name, elements per image) of every ReLU output and pool."""
    shapes, h, w = [], height, width
    for index, ((block, count), channels) in enumerate(zip(BLOCKS, widths, strict=True)):
        for conv in range(1, count + 1):
            shapes.append((index, f"relu{block}_{conv}", h * w * channels))
        h, w = h // 2, w // 2
        shapes.append((index, f"pool{block}", h * w * channels))
    return shapes


def _activation_bytes(
    size_hw: tuple[int, int],
    precision: str,
    *,
    layers: Iterable[str],
    widths: Sequence[int],
    regions: int = 1,
    copies: int = 0,
) -> float:
    """What a step's network pass keeps alive at its peak, at `size_hw` (height, width).
    With STYLE_MASKS' `regions` above 1, each loss layer also keeps a mask-weighted float32
    copy of its features per region (see losses/guided.py); a style loss that works on
    per-position values keeps `copies` more float32 copies of each (losses/style/)."""
    height, width = size_hw
    item = ITEM_BYTES.get(precision, 4)
    layers = set(layers)
    deepest = max(VGG19_LAYERS.index(name) for name in layers)
    kept = set(VGG19_LAYERS[: deepest + 1])
    total = 0.0
    for _, name, elements in _layer_elements(height, width, widths):
        if name not in kept or name.startswith("pool"):
            continue
        total += ACTIVATION_FACTOR * elements * item
        if name in layers:
            taps = (1 + regions if regions > 1 else 1) + copies
            total += TAP_FACTOR * elements * 4 * taps
    return total


def _image_state_bytes(size_hw: tuple[int, int]) -> int:
    return IMAGE_COPIES * size_hw[0] * size_hw[1] * 3 * 4


def step_bytes(
    size_hw: tuple[int, int],
    precision: str,
    *,
    layers: Iterable[str] = DEFAULT_LAYERS,
    widths: Sequence[int] = REAL_WIDTHS,
    batch: int = 1,
    regions: int = 1,
    copies: int = 0,
) -> int:
    """Estimated peak resident memory of a run's step at `size_hw` (height, width), for
    `batch` images optimised together: the activations and image state scale with it."""
    activations = _activation_bytes(
        size_hw, precision, layers=layers, widths=widths, regions=regions, copies=copies
    )
    return int(BASE_BYTES + batch * (activations + _image_state_bytes(size_hw)))


def tiled_step_bytes(
    size_hw: tuple[int, int],
    precision: str,
    grid: tuple[int, int],
    *,
    layers: Iterable[str] = DEFAULT_LAYERS,
    content_layers: Iterable[str] = DEFAULT_CONTENT_LAYERS,
    widths: Sequence[int] = REAL_WIDTHS,
    regions: int = 1,
) -> int:
    """Estimated peak resident memory of a step over `grid` tiles (see tiling.py): one
    crop's network pass, the whole image's state and its content features, and the crops
    of the whole image that a step cuts at once."""
    layers = tuple(layers)
    layout = tiles.tile_layout(size_hw, grid, tiles.tile_margin(layers))
    activations = _activation_bytes(
        layout.largest_crop, precision, layers=layers, widths=widths, regions=regions
    )
    content_features = 0
    for name in content_layers:
        stride = tiles.layer_stride(name)
        channels = widths[int(name[4]) - 1]  # relu<block>_<conv>
        content_features += (size_hw[0] // stride) * (size_hw[1] // stride) * channels * 4
    crops = layout.overhead * size_hw[0] * size_hw[1] * 3 * 4
    return int(BASE_BYTES + activations + _image_state_bytes(size_hw) + content_features + crops)


class MemoryBudget(NamedTuple):
    """What this process may still use, and the limit that sets it."""

    bytes: int
    source: str  # as messages name it: "the cgroup limit of 2.0 GiB (/sys/fs/cgroup/...)"
    fix: str  # how a user gets more: "raise that limit"


def free_memory(proc: str = PROC) -> MemoryBudget | None:
    """The machine's MemAvailable, from `proc`/meminfo; None when it cannot be read."""
    try:
        with open(os.path.join(proc, "meminfo")) as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    free = int(line.split()[1]) * 1024
                    return MemoryBudget(free, FREE_MEMORY, FREE_MEMORY_FIX)
    except (OSError, ValueError, IndexError):
        pass
    return None


def _sysconf_free() -> MemoryBudget | None:
    """Free pages, where there is no /proc/meminfo."""
    try:
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None
    return MemoryBudget(free, FREE_MEMORY, FREE_MEMORY_FIX)


def own_cgroups(proc: str = PROC) -> tuple[str | None, str | None]:
    """This process's cgroup paths from `proc`/self/cgroup: (the cgroup v2 path from the
    `0::/path` line, the cgroup v1 memory controller's path); None where there is none."""
    unified = v1_memory = None
    try:
        with open(os.path.join(proc, "self", "cgroup")) as cgroup_file:
            lines = cgroup_file.read().splitlines()
    except (OSError, UnicodeDecodeError):
        return None, None
    for line in lines:
        fields = line.split(":", 2)
        if len(fields) != 3 or not fields[2].startswith("/"):
            continue
        hierarchy, controllers, path = fields
        if hierarchy == "0" and controllers == "":
            unified = path
        elif "memory" in controllers.split(","):
            v1_memory = path
    return unified, v1_memory


def _cgroup_folders(mount: str, path: str) -> list[str]:
    """The folders of the cgroup at `path` and of its ancestors, its own first, as `mount`
    shows them. A mount that shows the process's cgroup at its root (a container's cgroup
    namespace, or a v1 bind mount) hides the ancestors: then only the root is read."""
    parts = [part for part in path.split("/") if part]
    if any(part in (".", "..") for part in parts) or not os.path.isdir(os.path.join(mount, *parts)):
        parts = []
    return [os.path.join(mount, *parts[:count]) for count in range(len(parts), -1, -1)]


def _read_bytes(path: str) -> int | None:
    """The whole number in the file at `path`; None when missing, "max" or unreadable."""
    try:
        with open(path) as number_file:
            text = number_file.read(64).strip()
        value = int(text)
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return value if 0 <= value < NO_CGROUP_LIMIT else None


def cgroup_budgets(proc: str = PROC, cgroup_root: str = CGROUP_ROOT) -> list[MemoryBudget]:
    """The room left under each memory limit of this process's cgroup and its ancestors,
    cgroup v2 (memory.max less memory.current) and v1 (memory.limit_in_bytes less
    memory.usage_in_bytes): a limit counts everything its cgroup holds, this process's
    siblings included. A limit whose usage cannot be read counts whole."""
    unified, v1_memory = own_cgroups(proc)
    hierarchies = []
    if unified is not None:
        hierarchies.append((cgroup_root, unified, "memory.max", "memory.current"))
    if v1_memory is not None:
        mount = os.path.join(cgroup_root, "memory")
        hierarchies.append((mount, v1_memory, "memory.limit_in_bytes", "memory.usage_in_bytes"))
    budgets = []
    for mount, path, limit_name, usage_name in hierarchies:
        for folder in _cgroup_folders(mount, path):
            limit = _read_bytes(os.path.join(folder, limit_name))
            if limit is None:
                continue
            used = _read_bytes(os.path.join(folder, usage_name)) or 0
            limit_file = os.path.join(folder, limit_name)
            source = f"the cgroup limit of {limit / GIB:.1f} GiB ({limit_file})"
            budgets.append(MemoryBudget(limit - used, source, LIMIT_FIX))
    return budgets


def address_space_budget(proc: str = PROC, limit: int | None = None) -> MemoryBudget | None:
    """The room left under RLIMIT_AS (`ulimit -v`; `limit`, bytes, else this process's own
    soft limit; a negative `limit` is none): the limit less the address space in use
    (VmSize in `proc`/self/status) and less ADDRESS_SPACE_RESERVE. None without a limit.

    The limit is on address space, not memory: TensorFlow maps far more than it touches,
    so the room is counted from what is mapped, not from what is resident."""
    if limit is None:
        try:
            import resource
        except ImportError:  # not on this system
            return None
        limit = resource.getrlimit(resource.RLIMIT_AS)[0]
        if limit == resource.RLIM_INFINITY:
            return None
    if limit < 0:
        return None
    in_use = 0
    try:
        with open(os.path.join(proc, "self", "status")) as status:
            for line in status:
                if line.startswith("VmSize:"):
                    in_use = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        pass
    source = f"{ADDRESS_SPACE_SOURCE} of {limit / GIB:.1f} GiB"
    return MemoryBudget(limit - in_use - ADDRESS_SPACE_RESERVE, source, ADDRESS_SPACE_FIX)


def memory_budget(
    proc: str = PROC, cgroup_root: str = CGROUP_ROOT, address_limit: int | None = None
) -> MemoryBudget:
    """The tightest of the free memory, every cgroup limit over this process and the
    address-space limit: what a run plans with (files under `proc` and `cgroup_root`;
    `address_limit` as address_space_budget's `limit`)."""
    free = free_memory(proc) or (_sysconf_free() if proc == PROC else None)
    address_space = address_space_budget(proc, address_limit)
    candidates = [free, *cgroup_budgets(proc, cgroup_root), address_space]
    known = [budget for budget in candidates if budget is not None]
    if not known:
        return MemoryBudget(1 << 62, "no known limit", FREE_MEMORY_FIX)  # refuse nothing
    tightest = min(known, key=lambda budget: budget.bytes)
    return tightest._replace(bytes=max(tightest.bytes, 0))


def available_bytes() -> int:
    """Memory this process may still use: the bytes of memory_budget()."""
    return memory_budget().bytes


def _tile_plan(
    size_hw, precision, core: int, layers, content_layers, widths, regions=1
) -> tuple[tuple[int, int], int, int]:
    """The grid of cores about `core` pixels a side, its step's estimate, and the pixels of
    its largest crop."""
    grid = tiles.grid_for_core(size_hw, core)
    if grid == (1, 1):
        estimate = step_bytes(size_hw, precision, layers=layers, widths=widths, regions=regions)
        return grid, estimate, size_hw[0] * size_hw[1]
    estimate = tiled_step_bytes(
        size_hw,
        precision,
        grid,
        layers=layers,
        content_layers=content_layers,
        widths=widths,
        regions=regions,
    )
    crop = tiles.tile_layout(size_hw, grid, tiles.tile_margin(layers)).largest_crop
    return grid, estimate, crop[0] * crop[1]


def least_bytes(
    size_hw: tuple[int, int],
    precision: str,
    *,
    layers: Iterable[str] = DEFAULT_LAYERS,
    content_layers: Iterable[str] = DEFAULT_CONTENT_LAYERS,
    widths: Sequence[int] = REAL_WIDTHS,
    regions: int = 1,
) -> int:
    """The least memory a step at `size_hw` can take: whole, or in tiles of SMALLEST_TILE
    pixels."""
    whole = step_bytes(size_hw, precision, layers=layers, widths=widths, regions=regions)
    _, tiled, _ = _tile_plan(
        size_hw, precision, SMALLEST_TILE, layers, content_layers, widths, regions
    )
    return min(whole, tiled)


def largest_size(
    size_hw: tuple[int, int], precision: str, budget: int, **options
) -> tuple[int, int] | None:
    """The largest (height, width) of `size_hw`'s aspect ratio whose step fits `budget`
    in some way (see least_bytes)."""
    height, width = size_hw
    low, high = 0, width  # the width that fits lies in [low, high]
    while low < high:
        middle = (low + high + 1) // 2
        candidate = (max(round(height * middle / width), 1), middle)
        if min(candidate) >= 32 and least_bytes(candidate, precision, **options) <= budget:
            low = middle
        else:
            high = middle - 1
    if low < 32:
        return None
    return max(round(height * low / width), 1), low


def plan_step(
    size_hw: tuple[int, int],
    precision: str,
    *,
    available: int | MemoryBudget | None = None,
    tile_size: int = 0,
    layers: Iterable[str] = DEFAULT_LAYERS,
    content_layers: Iterable[str] = DEFAULT_CONTENT_LAYERS,
    widths: Sequence[int] = REAL_WIDTHS,
    batch: int = 1,
    regions: int = 1,
    copies: int = 0,
) -> MemoryPlan:
    """How a step at `size_hw` fits: whole, or in tiles (the largest that fit, or cores of
    `tile_size` pixels a side when that is set), with at most STEP_PIXELS in one piece;
    else a UserError that says how much it needs and suggests the largest size that fits.
    `copies` are the style loss's own copies of each loss layer's features in a whole step
    (a loss with them is not computed in tiles).

    A `batch` of several images is planned whole or not at all (a UserError). `available`
    is memory_budget()'s when None; a number of bytes is taken as free memory."""
    layers, content_layers = tuple(layers), tuple(content_layers)
    limit = _as_budget(available)
    available = limit.bytes
    budget = int(available * USABLE_FRACTION)
    shapes = dict(layers=layers, content_layers=content_layers, widths=widths, regions=regions)
    if tile_size:
        grid, estimate, _ = _tile_plan(size_hw, precision, tile_size, **shapes)
        if estimate <= budget:
            return MemoryPlan(estimate, available, grid)
        raise UserError(
            f"TILE_SIZE (--tile_size): tiles of {tile_size} pixels need about "
            f"{estimate / GIB:.1f} GiB of memory, but {_left(limit)}; "
            "use smaller tiles, or 0 to choose them by the memory"
        )
    plain = step_bytes(
        size_hw,
        precision,
        layers=layers,
        widths=widths,
        batch=batch,
        regions=regions,
        copies=copies,
    )
    if plain <= budget and size_hw[0] * size_hw[1] <= STEP_PIXELS:
        return MemoryPlan(plain, available)
    if batch > 1:
        raise UserError(
            f"a batch of {batch} images of {size_hw[1]}x{size_hw[0]} needs about "
            f"{plain / GIB:.1f} GiB of memory in one piece, but {_left(limit)}; lower "
            "BATCH_SIZE (--batch_size)"
        )
    core = max(size_hw)
    while core > SMALLEST_TILE:
        core = max(int(core * TILE_SHRINK), SMALLEST_TILE)
        grid, estimate, crop_pixels = _tile_plan(size_hw, precision, core, **shapes)
        if estimate <= budget and crop_pixels <= STEP_PIXELS:
            return MemoryPlan(estimate, available, grid)
    raise _does_not_fit(size_hw, precision, limit, budget, shapes)


def _as_budget(available: int | MemoryBudget | None) -> MemoryBudget:
    if available is None:
        return memory_budget()
    if isinstance(available, MemoryBudget):
        return available
    return MemoryBudget(int(available), FREE_MEMORY, FREE_MEMORY_FIX)


def _left(limit: MemoryBudget) -> str:
    """How a message says what is left: "1.2 GiB is available", or "1.2 GiB is left under
    the cgroup limit of 2.0 GiB (...)"."""
    if limit.source == FREE_MEMORY:
        return f"{limit.bytes / GIB:.1f} GiB is available"
    return f"{limit.bytes / GIB:.1f} GiB is left under {limit.source}"


def _does_not_fit(
    size_hw: tuple[int, int], precision: str, limit: MemoryBudget, budget: int, shapes: dict
) -> UserError:
    """The one line for a step that fits neither whole nor in tiles."""
    height, width = size_hw
    least = least_bytes(size_hw, precision, **shapes)
    largest = largest_size(size_hw, precision, budget, **shapes)
    if largest is None:
        fit = f"no image of this shape fits; {limit.fix}"
    else:
        fit = f"the largest that fits is {largest[1]}x{largest[0]} (--image_width={largest[1]})"
        if limit.source != FREE_MEMORY:
            fit += f", or {limit.fix}"
    other = "" if precision != "float32" else "; PRECISION (--precision) mixed_bfloat16 needs less"
    return UserError(
        f"IMAGE_WIDTH (--image_width): a {width}x{height} image needs about "
        f"{least / GIB:.1f} GiB of memory at PRECISION {precision}, even in tiles, but "
        f"{_left(limit)}; {fit}{other}"
    )
