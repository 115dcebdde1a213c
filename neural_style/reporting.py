"""What a run shows and leaves behind: progress lines, the losses log, snapshot names.

Every file written here is written atomically or appended line by line, so an interrupted
run never leaves a half-written image or log line.
"""

from __future__ import annotations

import csv
import json
import os
import sys
import time
from typing import TextIO

from neural_style.files import atomic_write_text

LOSS_NAMES = ("content", "style", "tv", "total")


def is_due(step: int, every: int, total: int) -> bool:
    """True every `every` steps and on the last step (never when `every` is 0, but the last)."""
    return step == total or (every > 0 and step % every == 0)


def snapshot_path(prefix: str, step: int | None = None) -> str:
    """`<prefix>-<step>.jpg` for a snapshot, `<prefix>.jpg` for the final image."""
    return f"{prefix}.jpg" if step is None else f"{prefix}-{step}.jpg"


def format_duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"


class ProgressPrinter:
    """Prints `step n/N`, the losses, seconds per step and the ETA every few steps."""

    def __init__(self, total_steps: int, every: int, stream: TextIO | None = None):
        self.total_steps = total_steps
        self.every = every
        self.stream = stream or sys.stdout
        self._last_step = 0
        self._last_time = time.perf_counter()

    def update(
        self,
        step: int,
        losses: dict[str, float],
        *,
        evaluations: int | None = None,
        note: str = "",
        label: str = "",
    ) -> None:
        """A line on cadence, and always when there is a `note` to tell."""
        if not (step == 1 or note or is_due(step, self.every, self.total_steps)):
            return
        now = time.perf_counter()
        seconds_per_step = (now - self._last_time) / max(step - self._last_step, 1)
        self._last_step, self._last_time = step, now
        eta = seconds_per_step * (self.total_steps - step)
        parts = "  ".join(f"{name} {losses[name]:.4g}" for name in LOSS_NAMES)
        width = len(str(self.total_steps))
        evals = f" ({evaluations} evals)" if evaluations and evaluations != step else ""
        print(
            f"{label}step {step:>{width}}/{self.total_steps}{evals}  {parts}  "
            f"{seconds_per_step:.2f} s/step  ETA {format_duration(eta)}"
            + (f"  [{note}]" if note else ""),
            file=self.stream,
            flush=True,
        )


class LossLog:
    """`<prefix>-losses.csv`: one line per step with every loss and the step's seconds.

    `keep_until=N` continues an existing log after step N (a resumed run), dropping the
    lines an interrupted run wrote after its last checkpoint.
    """

    def __init__(self, path: str, keep_until: int | None = None):
        self.path = path
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        kept = self._rows_until(path, keep_until) if keep_until is not None else []
        self._file = open(path, "w", newline="", encoding="utf-8")  # noqa: SIM115
        self._writer = csv.writer(self._file)
        self._writer.writerow(("step", *LOSS_NAMES, "seconds"))
        self._writer.writerows(kept)

    @staticmethod
    def _rows_until(path: str, last_step: int) -> list[list[str]]:
        if not os.path.exists(path):
            return []
        with open(path, newline="", encoding="utf-8") as file:
            rows = list(csv.reader(file))[1:]
        return [row for row in rows if row and row[0].isdigit() and int(row[0]) <= last_step]

    def write(self, step: int, losses: dict[str, float], seconds: float) -> None:
        self._writer.writerow(
            (step, *(repr(losses[name]) for name in LOSS_NAMES), f"{seconds:.4f}")
        )
        self._file.flush()

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> LossLog:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def write_settings_record(path: str, settings_dict: dict) -> None:
    """`<prefix>-settings.json`: the settings the run used, beside its images."""
    atomic_write_text(path, json.dumps(settings_dict, indent=2, default=str) + "\n")
