"""What every kind of run prints and logs as it goes: the progress line, the losses log,
the settings record, and the cadence of both (a Gatys run and network training alike).

    progress = ProgressLine(total_steps, print_every, stream)
    with LossLog(path) as log:
        ...
        log.write(step, losses, seconds)
        progress.update(step, losses)

Every line is flushed as it is written and every record is written atomically, so an
interrupted run never leaves half a line or half a file.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import sys
import time
from collections.abc import Callable
from typing import TextIO

from neural_style.files import atomic_write_text
from neural_style.names import LOSS_NAMES


def is_due(step: int, every: int, total: int) -> bool:
    """True every `every` steps and on the last step (never when `every` is 0, but the last)."""
    return step == total or (every > 0 and step % every == 0)


def format_duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"


class ProgressLine:
    """`step n/N`, the losses, the speed and the ETA, printed every few steps: the one
    progress line of every kind of run (a Gatys run and network training alike).

    The speed is seconds per step, or images per second when `images_per_step` is given
    (training). The ETA is measured from `first_step` (a resumed run's start).
    """

    def __init__(
        self,
        total_steps: int,
        every: int,
        stream: TextIO | None = None,
        *,
        first_step: int = 0,
        images_per_step: int = 0,
        names: tuple[str, ...] = LOSS_NAMES,
        work_left: Callable[[int], float] | None = None,
    ):
        self.total_steps = total_steps
        # The steps left after a step, counted in steps of that step's cost (for the ETA).
        self.work_left = work_left or (lambda step: total_steps - step)
        self.names = names
        self.every = every
        self.stream = stream or sys.stdout
        self.images_per_step = images_per_step
        self._last_step = first_step
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
        """A line on cadence, and always on the first step and when there is a `note`."""
        if not (step == 1 or note or is_due(step, self.every, self.total_steps)):
            return
        now = time.perf_counter()
        seconds_per_step = (now - self._last_time) / max(step - self._last_step, 1)
        self._last_step, self._last_time = step, now
        eta = seconds_per_step * self.work_left(step)
        parts = "  ".join(f"{name} {losses[name]:.4g}" for name in self.names)
        width = len(str(self.total_steps))
        evals = f" ({evaluations} evals)" if evaluations and evaluations != step else ""
        if self.images_per_step:
            rate = self.images_per_step / seconds_per_step if seconds_per_step > 0 else math.inf
            speed = f"{rate:.3g} img/s"
        else:
            speed = f"{seconds_per_step:.2f} s/step"
        print(
            f"{label}step {step:>{width}}/{self.total_steps}{evals}  {parts}  "
            f"{speed}  ETA {format_duration(eta)}" + (f"  [{note}]" if note else ""),
            file=self.stream,
            flush=True,
        )


class LossLog:
    """A losses log (`<prefix>-losses.csv`, a network's `losses.csv`): a header, then one
    line per step with every loss part and the step's seconds, each line flushed as it is
    written.

    `keep_until=N` continues an existing log after step N (a resumed run), dropping the
    lines an interrupted run wrote after its last checkpoint; without it the log starts
    afresh. `extra` names columns written before the losses (e.g. "frame"); `names` are
    the loss parts, in their columns' order.
    """

    def __init__(
        self,
        path: str,
        keep_until: int | None = None,
        *,
        extra: tuple[str, ...] = (),
        names: tuple[str, ...] = LOSS_NAMES,
    ):
        self.path = path
        self.extra = extra
        self.names = names
        kept = self._rows_until(path, keep_until) if keep_until is not None else []
        # The header and the kept rows replace the file atomically, so that a run killed
        # now still leaves the earlier log whole; the steps are then appended.
        start = io.StringIO()
        start_writer = csv.writer(start)
        start_writer.writerow(("step", *extra, *names, "seconds"))
        start_writer.writerows(kept)
        atomic_write_text(path, start.getvalue())
        self._file = open(path, "a", newline="", encoding="utf-8")  # noqa: SIM115
        self._writer = csv.writer(self._file)

    @staticmethod
    def _rows_until(path: str, last_step: int) -> list[list[str]]:
        if not os.path.exists(path):
            return []
        with open(path, newline="", encoding="utf-8") as file:
            rows = list(csv.reader(file))[1:]
        return [row for row in rows if row and row[0].isdigit() and int(row[0]) <= last_step]

    def write(self, step: int, losses: dict[str, float], seconds: float, extra: tuple = ()) -> None:
        self._writer.writerow(
            (step, *extra, *(repr(losses.get(name, 0.0)) for name in self.names), f"{seconds:.4f}")
        )
        self._file.flush()

    def close(self) -> None:
        """Close the log; a row that cannot be flushed now (a full disk) was already
        reported when it was written."""
        with contextlib.suppress(OSError):
            self._file.close()

    def __enter__(self) -> LossLog:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def write_settings_record(path: str, settings_dict: dict) -> None:
    """`<prefix>-settings.json`: the settings the run used, beside its images."""
    atomic_write_text(path, json.dumps(settings_dict, indent=2, default=str) + "\n")
