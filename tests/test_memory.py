"""The memory estimate of a step, the largest size that fits, and the refusal up front."""

from __future__ import annotations

import os

import pytest

from neural_style.errors import UserError
from neural_style.optimize import memory

GIB = memory.GIB


def test_the_estimate_grows_with_the_pixels_and_halves_with_bfloat16():
    small = memory.step_bytes((384, 512), "float32")
    large = memory.step_bytes((768, 1024), "float32")
    assert large - memory.BASE_BYTES == pytest.approx(4 * (small - memory.BASE_BYTES), rel=0.02)
    half = memory.step_bytes((768, 1024), "mixed_bfloat16")
    assert half < large


def test_the_estimate_is_near_what_was_measured():
    # Peak RSS measured with benchmarks/speed.py on the 2-core CPU (see docs/speed.md).
    measured = {
        ((384, 512), "float32"): 1.31,
        ((768, 1024), "float32"): 2.54,
        ((384, 512), "mixed_bfloat16"): 1.15,
        ((768, 1024), "mixed_bfloat16"): 2.10,
        ((1536, 2048), "mixed_bfloat16"): 5.06,
    }
    for (size, precision), gib in measured.items():
        estimate = memory.step_bytes(size, precision) / GIB
        assert gib <= estimate <= 1.3 * gib, (size, precision)


def test_a_style_loss_with_copies_of_the_features_is_planned_larger():
    # Measured (/usr/bin/time -v python train.py --style_loss=sw --image_width=1024
    # --train_steps=3 --precision=float32) on the 2-core CPU: 3.67 GiB peak.
    from neural_style.losses.style import feature_copies

    copies = feature_copies("sw")
    estimate = memory.step_bytes((768, 1024), "float32", copies=copies) / GIB
    assert 3.67 <= estimate <= 1.3 * 3.67
    assert feature_copies("gram") == feature_copies("w2") == 0


def test_a_size_that_fits_is_planned_whole():
    plan = memory.plan_step((384, 512), "float32", available=8 * GIB)
    assert not plan.tiled
    assert plan.estimate_bytes < 8 * GIB


def test_too_large_even_in_tiles_is_refused_in_one_line_with_the_largest_size_that_fits():
    with pytest.raises(UserError) as caught:
        memory.plan_step((3072, 4096), "float32", available=2 * GIB)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("IMAGE_WIDTH (--image_width): a 4096x3072 image needs about")
    assert "even in tiles" in message
    assert "the largest that fits is" in message
    width = int(message.split("--image_width=")[1].split(")")[0])
    height = round(3072 * width / 4096)
    budget = 2 * GIB * memory.USABLE_FRACTION
    assert memory.least_bytes((height, width), "float32") <= budget
    assert memory.least_bytes((round(3072 * (width + 1) / 4096), width + 1), "float32") > budget
    assert memory.plan_step((height, width), "float32", available=2 * GIB)
    assert "mixed_bfloat16" in message


def test_a_print_that_does_not_fit_whole_is_planned_in_tiles_that_fit():
    size = (3072, 4096)
    available = 8 * GIB
    assert memory.step_bytes(size, "float32") > available
    plan = memory.plan_step(size, "float32", available=available)
    assert plan.tiled
    assert plan.estimate_bytes <= available * memory.USABLE_FRACTION
    rows, columns = plan.grid
    # The largest cores that fit: with a tile fewer each way the step would not fit.
    fewer = memory.tiled_step_bytes(size, "float32", (rows - 1, columns - 1))
    assert fewer > available * memory.USABLE_FRACTION


def test_the_tile_estimate_keeps_the_whole_images_state_and_one_crops_activations():
    size, grid = (3072, 4096), (3, 4)
    estimate = memory.tiled_step_bytes(size, "float32", grid)
    one_crop = memory.step_bytes((1248, 1248), "float32") - memory.BASE_BYTES
    state = memory.IMAGE_COPIES * 3072 * 4096 * 3 * 4
    assert one_crop + state < estimate - memory.BASE_BYTES < 1.5 * (one_crop + state)


def test_tile_size_sets_the_grid_and_is_refused_when_too_large():
    plan = memory.plan_step((768, 1024), "float32", available=24 * GIB, tile_size=512)
    assert plan.grid == (2, 2)
    assert memory.plan_step((300, 400), "float32", available=24 * GIB, tile_size=512).grid == (
        1,
        1,
    )
    with pytest.raises(UserError, match=r"^TILE_SIZE \(--tile_size\): tiles of 4096 pixels"):
        memory.plan_step((3072, 8192), "float32", available=8 * GIB, tile_size=4096)


def test_largest_size_keeps_the_aspect_ratio():
    height, width = memory.largest_size((300, 400), "mixed_bfloat16", 3 * GIB)
    assert height / width == pytest.approx(0.75, abs=0.01)
    assert memory.largest_size((300, 400), "float32", memory.BASE_BYTES // 2) is None


def _mem_available() -> int:
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no MemAvailable in /proc/meminfo")


def test_available_memory_is_what_the_kernel_says_is_free():
    before = _mem_available()
    available = memory.available_bytes()
    after = _mem_available()
    # Other processes move MemAvailable a little between the readings; a cgroup or
    # address-space limit can only lower what this process may use.
    assert 0 < available <= max(before, after) * 1.05
    limited = memory.cgroup_budgets() or memory.address_space_budget()
    if not limited:
        assert available >= min(before, after) * 0.8


def test_a_run_too_large_for_the_memory_is_refused_before_it_starts(
    tmp_path, tiny_mat, image_pair, monkeypatch
):
    from neural_style.gatys import run
    from tests.support import tiny_settings

    monkeypatch.setattr(
        memory, "memory_budget", lambda: memory.MemoryBudget(GIB, "the free memory", "")
    )
    settings = tiny_settings(tmp_path, tiny_mat, image_pair, image_width=2000)
    with pytest.raises(UserError) as caught:
        run.stylize(settings)
    message = str(caught.value)
    assert "a 2000x1667 image needs about" in message
    assert "the largest that fits is" in message
    assert not os.path.exists(tmp_path / "out" / "result-losses.csv")
