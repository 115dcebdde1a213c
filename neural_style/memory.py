"""How much memory a step takes at a given size and precision, and the largest size that fits.

A Gatys step keeps VGG-19's activations for the backward pass, so its memory grows with the
pixels: about 2.2 kB a pixel in float32 and 1.4 to 1.8 kB in mixed_bfloat16, so that a
4096x3072 print does not fit in 24 GiB either way (it passed 22 GiB in mixed_bfloat16).
Recomputing each block's activations in the backward pass (LossFunction's `recompute`) keeps
only one block's at a time, but the first block, at full resolution with 64 channels and
the largest Gram, holds most of the peak by itself: on this CPU recomputing saved only
about 5%, and the estimate says so.

The estimate adds up the layer shapes (ReLU outputs in the compute dtype, the loss layers'
float32 copies, the image-sized float32 state) and scales them by factors measured with
benchmarks/speed.py on a 2-core CPU, TensorFlow 2.21, so that it errs high: 0 to 30% above
the peak resident memory measured there from 192x256 to 2048x1536. No TensorFlow here, so
a run can check its size before TensorFlow starts.

    plan = plan_step((3072, 4096), "mixed_bfloat16")   # raises UserError if nothing fits
    plan.recompute, plan.estimate_bytes
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from neural_style.errors import UserError
from neural_style.layer_names import BLOCKS, VGG19_LAYERS

REAL_WIDTHS = (64, 128, 256, 512, 512)  # output channels of the convs in each block
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
# Recomputing, the one block being differentiated costs about this many times its share of
# a plain step: its gradients and its loss layer's Gram gradient dominate (measured).
RECOMPUTED_BLOCK_FACTOR = 1.9
# Image-sized float32 arrays: the image, the best image, Adam's two moments, the gradient,
# the content photo and temporaries.
IMAGE_COPIES = 8
# Fraction of the available memory a run plans to use, leaving room for the rest.
USABLE_FRACTION = 0.9
ITEM_BYTES = {"float32": 4, "mixed_bfloat16": 2, "mixed_float16": 2}
DEFAULT_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu4_2", "relu5_1", "relu5_2")


class MemoryPlan(NamedTuple):
    recompute: bool  # recompute activations in the backward pass
    estimate_bytes: int  # the step's estimated peak resident memory
    available_bytes: int  # what the machine has free for it


def _layer_elements(height: int, width: int, widths: Sequence[int]) -> list[tuple[int, str, int]]:
    """(block index, layer name, elements per image) of every ReLU output and pool."""
    shapes, h, w = [], height, width
    for index, ((block, count), channels) in enumerate(zip(BLOCKS, widths, strict=True)):
        for conv in range(1, count + 1):
            shapes.append((index, f"relu{block}_{conv}", h * w * channels))
        h, w = h // 2, w // 2
        shapes.append((index, f"pool{block}", h * w * channels))
    return shapes


def step_bytes(
    size_hw: tuple[int, int],
    precision: str,
    *,
    recompute: bool = False,
    layers: Iterable[str] = DEFAULT_LAYERS,
    widths: Sequence[int] = REAL_WIDTHS,
    batch: int = 1,
) -> int:
    """Estimated peak resident memory of a run's step at `size_hw` (height, width), for
    `batch` images optimised together: the activations and image state scale with it."""
    height, width = size_hw
    item = ITEM_BYTES.get(precision, 4)
    layers = set(layers)
    deepest = max(VGG19_LAYERS.index(name) for name in layers)
    kept = set(VGG19_LAYERS[: deepest + 1])
    per_block: dict[int, float] = {}
    block_inputs = 0
    for block, name, elements in _layer_elements(height, width, widths):
        if name not in kept:
            continue
        if name.startswith("pool"):
            block_inputs += elements * item
            continue
        cost = ACTIVATION_FACTOR * elements * item
        if name in layers:
            cost += TAP_FACTOR * elements * 4
        per_block[block] = per_block.get(block, 0.0) + cost
    # Recomputing, only the largest block's activations are alive at once, beside the
    # block inputs kept from the first pass.
    largest_block = RECOMPUTED_BLOCK_FACTOR * max(per_block.values()) + block_inputs
    activations = largest_block if recompute else sum(per_block.values())
    image_state = IMAGE_COPIES * height * width * 3 * 4
    return int(BASE_BYTES + batch * (activations + image_state))


def available_bytes() -> int:
    """Memory this process may still use: MemAvailable, capped by a cgroup limit if any."""
    available = None
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError):
        pass
    if available is None:
        try:
            available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return 1 << 62  # unknown: do not refuse anything
    try:
        with open("/sys/fs/cgroup/memory.max") as limit_file:
            limit = limit_file.read().strip()
        with open("/sys/fs/cgroup/memory.current") as current_file:
            used = int(current_file.read().strip())
        if limit != "max":
            available = min(available, int(limit) - used)
    except (OSError, ValueError):
        pass
    return max(available, 0)


def largest_size(
    size_hw: tuple[int, int], precision: str, budget: int, *, recompute: bool = True, **options
) -> tuple[int, int] | None:
    """The largest (height, width) of `size_hw`'s aspect ratio whose step fits `budget`."""
    height, width = size_hw
    low, high = 0, width  # the width that fits lies in [low, high]
    while low < high:
        middle = (low + high + 1) // 2
        candidate = (max(round(height * middle / width), 1), middle)
        if (
            min(candidate) >= 32
            and step_bytes(candidate, precision, recompute=recompute, **options) <= budget
        ):
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
    available: int | None = None,
    **options,
) -> MemoryPlan:
    """Whether a step at `size_hw` fits as it is, or with recomputation; else a UserError
    that says how much it needs and suggests the largest size that fits."""
    available = available_bytes() if available is None else available
    budget = int(available * USABLE_FRACTION)
    plain = step_bytes(size_hw, precision, recompute=False, **options)
    if plain <= budget:
        return MemoryPlan(False, plain, available)
    recomputed = step_bytes(size_hw, precision, recompute=True, **options)
    if recomputed <= budget:
        return MemoryPlan(True, recomputed, available)
    height, width = size_hw
    largest = largest_size(size_hw, precision, budget, **options)
    if largest is None:
        fit = "no image of this shape fits; close other programs or use a larger machine"
    else:
        fit = f"the largest that fits is {largest[1]}x{largest[0]} (--image_width={largest[1]})"
    other = "" if precision != "float32" else "; PRECISION (--precision) mixed_bfloat16 needs less"
    raise UserError(
        f"IMAGE_WIDTH (--image_width): a {width}x{height} image needs about "
        f"{recomputed / GIB:.1f} GiB of memory at PRECISION {precision}, but "
        f"{available / GIB:.1f} GiB is available; {fit}{other}"
    )
