"""What the benchmarks share: the machine's CPU model, as `lscpu` names it, which every
reported figure is printed beside (the speed of bfloat16 and of float32 differ from one CPU
model to the next), and the VGG-19 weights a run uses."""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cpu_name() -> str:
    """`lscpu`'s Model name, else /proc/cpuinfo's, else what platform knows."""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        text = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in text.splitlines():
            if line.strip().lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as file:
        for line in file:
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def weights_path(chosen: str, quick_widths: tuple[int, ...] | None, scratch: str) -> str:
    """The .mat a benchmark runs on: `chosen` (--weights), else with `quick_widths` a tiny
    synthetic VGG-19 of those conv widths written to `scratch`, else what train.py falls
    back to (the repo's default path, or its synthetic stand-in)."""
    if chosen:
        return os.path.abspath(chosen)
    if quick_widths:
        from neural_style.vgg.synthetic import write_synthetic_vgg19

        path = os.path.join(scratch, "quick-vgg19.mat")
        return write_synthetic_vgg19(path, widths=quick_widths, fc_width=8, num_classes=5)
    from neural_style.vgg.weights_file import DEFAULT_VGG_MODEL_PATH, resolve_weights_path

    with contextlib.chdir(REPO_ROOT):  # the default path, and its fallback, are the repo's
        return os.path.abspath(resolve_weights_path(DEFAULT_VGG_MODEL_PATH, sys.stdout))
