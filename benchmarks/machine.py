"""What the benchmarks say about the machine they ran on: its CPU model, as `lscpu`
names it, which every reported figure is printed beside (the speed of bfloat16 and of
float32 differ from one CPU model to the next)."""

from __future__ import annotations

import contextlib
import platform
import subprocess


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
