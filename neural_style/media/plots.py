"""The loss plot: `<prefix>-losses.png`, drawn from the run's `<prefix>-losses.csv`.

    if not write_loss_plot("output/output-losses.csv", "output/output-losses.png"):
        print(PLOT_NOTE)

matplotlib is optional (the `plot` extra): without it `write_loss_plot` does nothing and
returns False. A run draws its plots with `PlotProcess`, in a child process, so that
matplotlib (about 60 MB resident) never loads into the run's own process. It is imported
only when a plot is drawn, and the figure is drawn with matplotlib's Agg canvas directly,
never through pyplot, so nothing here touches matplotlib's global state (backend, open
figures) or needs a display.

The y axis is logarithmic, as the losses fall by orders of magnitude. A log axis cannot
show zero, negative, nan or inf: such points are left out (the line breaks there), and a
series with no point left (tv with TV_WEIGHT = 0, say) is not drawn; a note under the
plot names it.
"""

import csv
import math
import os
import subprocess
import sys

from neural_style.errors import UserError
from neural_style.files import atomic_write, output_error
from neural_style.names import LOSS_NAMES

# The exit status of `python -m neural_style.plots` when matplotlib is not installed.
NO_MATPLOTLIB_STATUS = 3
# The settings.py name that decides where the plot goes (`<prefix>-losses.png`).
PLOT_SETTING = "OUTPUT_IMAGE"
PLOT_NOTE = (
    "note: install matplotlib (python -m pip install -e '.[plot]') "
    "to get the loss plot, <prefix>-losses.png"
)

# The columns drawn, in the order of the legend, and the column they are drawn against.
SERIES = LOSS_NAMES
_STEP = "step"
# Fewer points than this get markers, so a run of one or a few steps still shows.
_MARKER_BELOW = 50
_FIGURE_SIZE = (8.0, 5.0)  # inches
_DPI = 100


def write_loss_plot(csv_path: str, png_path: str) -> bool:
    """Draws the losses in `csv_path` against step and writes the PNG `png_path` atomically.

    The CSV is the run's losses log: header `step,content,style,tv,total,seconds` (column
    order and extra columns do not matter), one row per step. A value that does not parse
    (a line cut short by an interrupted run) counts as nan; a row whose step does not
    parse is skipped. A log with no rows still gives a PNG, with a note saying so.

    Returns True when the PNG was written, False when matplotlib is not installed (then
    nothing is written). A failure leaves any existing file at `png_path` as it was.
    Raises:
        UserError: the PNG cannot be written (one line: the path, why, and the fix).
        OSError: the CSV cannot be read.
        ValueError: the CSV lacks a column this plot needs.
    """
    try:
        import matplotlib  # noqa: F401  (first, so a missing package fails before any submodule)
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return False

    steps, series = _read_losses(csv_path)
    figure = Figure(figsize=_FIGURE_SIZE, dpi=_DPI)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    marker = "." if len(steps) < _MARKER_BELOW else None
    not_shown = []
    for name in SERIES:
        values = [value if _loggable(value) else math.nan for value in series[name]]
        if all(math.isnan(value) for value in values):
            not_shown.append(name)
            continue
        axes.plot(steps, values, label=name, marker=marker, linewidth=1.2)
    if len(not_shown) < len(SERIES):
        axes.set_yscale("log")
        axes.legend()
        axes.set_ylabel("loss (log scale)")
    else:  # Nothing to draw: a log axis with no data would only warn.
        axes.set_ylabel("loss")
        message = "no steps logged" if not steps else "no positive finite losses"
        axes.text(0.5, 0.5, message, ha="center", va="center", transform=axes.transAxes)
    axes.set_xlabel(_STEP)
    axes.grid(True, which="major", alpha=0.3)
    axes.set_title(f"Losses per step: {os.path.basename(csv_path)}")
    if not_shown and steps:
        figure.text(
            0.01,
            0.01,
            f"not shown (no positive finite value): {', '.join(not_shown)}",
            fontsize="small",
            alpha=0.7,
        )
    figure.tight_layout(rect=(0.0, 0.03, 1.0, 1.0))
    try:
        atomic_write(png_path, lambda file: figure.savefig(file, format="png"))
    except OSError as error:
        raise output_error(png_path, error, PLOT_SETTING) from None
    return True


def _read_losses(csv_path: str) -> tuple[list[int], dict[str, list[float]]]:
    """The steps and each series' values, as parallel lists."""
    with open(csv_path, newline="", encoding="utf-8") as file:
        reader = csv.DictReader(file)
        missing = [name for name in (_STEP, *SERIES) if name not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(
                f"{csv_path}: not a losses log, missing column(s) {', '.join(missing)}; "
                f"expected a header like step,{','.join(SERIES)},seconds"
            )
        steps: list[int] = []
        series: dict[str, list[float]] = {name: [] for name in SERIES}
        for row in reader:
            step = _parse_float(row.get(_STEP))
            if not math.isfinite(step):
                continue
            steps.append(int(step))
            for name in SERIES:
                series[name].append(_parse_float(row.get(name)))
    return steps, series


def _parse_float(text: str | None) -> float:
    """A float, or nan for a missing or malformed value."""
    try:
        return float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan


def _loggable(value: float) -> bool:
    return math.isfinite(value) and value > 0.0


class PlotProcess:
    """`write_loss_plot(csv_path, png_path)` in a child process, started now; `wait()`
    for it when the plot is needed."""

    def __init__(self, csv_path: str, png_path: str):
        package_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        path = os.pathsep.join(filter(None, [package_parent, os.environ.get("PYTHONPATH")]))
        self.process = subprocess.Popen(
            [sys.executable, "-m", "neural_style.media.plots", csv_path, png_path],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": path},
            # A terminal's Ctrl-C goes to its whole process group: the run decides how to
            # stop, and the plot it is drawing should not die half-way.
            start_new_session=True,
        )

    def wait(self) -> str:
        """ "" once the PNG is written; else a note line saying why it is not."""
        _, error = self.process.communicate()
        if self.process.returncode == 0:
            return ""
        if self.process.returncode == NO_MATPLOTLIB_STATUS:
            return PLOT_NOTE
        why = (error.strip().splitlines() or ["no message"])[-1]
        return f"note: the loss plot could not be drawn ({why})"


def _main(csv_path: str, png_path: str) -> int:
    """The child process of PlotProcess: its status, and a failed write as one stderr line
    (the parent shows that line, never a traceback)."""
    try:
        return 0 if write_loss_plot(csv_path, png_path) else NO_MATPLOTLIB_STATUS
    except UserError as error:
        print(error, file=sys.stderr)
        return UserError.exit_code


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1], sys.argv[2]))
