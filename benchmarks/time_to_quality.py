"""Loss against wall time: how soon each way of running reaches a good image.

    python benchmarks/time_to_quality.py --quick            # 128 px, a smoke run (minutes)
    python benchmarks/time_to_quality.py --sizes 512,1024   # the plain and staged runs
    python benchmarks/time_to_quality.py --plot docs/time-to-quality.png

Each run is a whole `python train.py` process, as a user starts it (start-up, tracing and
writes included), with the shipped settings but for the size, the optimiser, the schedule
and the output: PNG snapshots of the best image so far every --snapshot_every steps. When
the process ends, every snapshot and the final image is scored the same way: the float32
total loss of the image resized to the full size, against the full-size targets (the
objective a plain full-size run minimises). A snapshot's time is its file's modification
time, counted from the process's start. The runs at each size, alternated in the order
given, are:

- plain Adam of --adam_steps, the reference;
- plain L-BFGS of --lbfgs_steps;
- Adam and L-BFGS staged from half the width to the full width (COARSE_TO_FINE as it is
  written by hand today: the half-size stage takes the same steps, the full-size stage a
  third of them).

The table gives each run's wall time, final score, and how long it took to first reach
the reference's final score (`never` when it did not). --plot draws the curves of the
first size (matplotlib). Without the real weights the synthetic ones are used, so the
scores compare the runs on those filters, not on ImageNet's. Writes the rows to
benchmarks/results/time_to_quality.json.

    python benchmarks/time_to_quality.py --detail_check output/output.png

scores one finished image as it is and halved and enlarged again, by style layer and
content: what the best picture a half-size stage could make is worth at full size.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import subprocess
import sys
import tempfile
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

from benchmarks.machine import cpu_name  # noqa: E402

RESULTS = os.path.join(REPO_ROOT, "benchmarks", "results", "time_to_quality.json")


def runs(width: int, adam_steps: int, lbfgs_steps: int) -> dict[str, list[str]]:
    """Each run's name and the flags it adds to train.py's."""
    stages = f"--coarse_to_fine={width // 2},{width}"
    return {
        f"Adam {adam_steps}": ["--optimizer=adam", f"--train_steps={adam_steps}"],
        f"L-BFGS {lbfgs_steps}": ["--optimizer=lbfgs", f"--train_steps={lbfgs_steps}"],
        f"Adam {adam_steps}+{adam_steps // 3}, half then full": [
            "--optimizer=adam",
            stages,
            f"--coarse_to_fine_steps={adam_steps},{adam_steps // 3}",
        ],
        f"L-BFGS {lbfgs_steps}+{lbfgs_steps // 3}, half then full": [
            "--optimizer=lbfgs",
            stages,
            f"--coarse_to_fine_steps={lbfgs_steps},{lbfgs_steps // 3}",
        ],
    }


def run_process(flags: list[str], prefix: str, width: int, every: int) -> tuple[float, list]:
    """Runs train.py; its wall seconds and [(seconds since its start, image path)] of every
    snapshot and of the final image, in time order."""
    command = [
        sys.executable,
        os.path.join(REPO_ROOT, "train.py"),
        f"--image_width={width}",
        "--image_height=0",
        f"--output_image={prefix}",
        "--output_format=png",
        f"--snapshot_every={every}",
        "--print_every=1000000",
        *flags,
    ]
    started = time.time()
    done = subprocess.run(command, cwd=REPO_ROOT, check=False, capture_output=True, text=True)
    seconds = time.time() - started
    if done.returncode:
        raise SystemExit(f"train.py {' '.join(flags)} failed:\n{done.stderr[-2000:]}")
    pattern = re.compile(re.escape(os.path.basename(prefix)) + r"(-\d+)?\.png")
    found = [
        (os.path.getmtime(path) - started, path)
        for path in glob.glob(f"{prefix}*.png")
        if pattern.fullmatch(os.path.basename(path))
    ]
    return seconds, sorted(found)


def measure(width: int, arguments: argparse.Namespace) -> list[dict]:
    """Every run at `width`, scored; the first is the reference."""
    import settings as shipped
    from benchmarks.compare_optimizers import full_size_objective
    from neural_style.media import images
    from neural_style.settings.gatys import Settings

    full = Settings.from_module(shipped, image_width=width, image_height=0, precision="float32")
    objective = full_size_objective(full)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name, flags in runs(width, arguments.adam_steps, arguments.lbfgs_steps).items():
            prefix = os.path.join(folder, re.sub(r"\W+", "-", name).strip("-"))
            seconds, shots = run_process(flags, prefix, width, arguments.snapshot_every)
            curve = [
                (round(at, 2), objective(images.load_image(path, "snapshot"))) for at, path in shots
            ]
            rows.append({"size": width, "run": name, "seconds": seconds, "curve": curve})
            print(f"{width} px  {name:<36} {seconds:7.1f} s  score {curve[-1][1]:.5g}", flush=True)
    reference = rows[0]["curve"][-1][1]
    for row in rows:
        reached = [at for at, loss in row["curve"] if loss <= reference]
        row["reaches_reference_at"] = reached[0] if reached else None
    return rows


def report(rows: list[dict]) -> None:
    print("\n| size | run | wall s | final score | reaches the reference's score at |")
    print("| --- | --- | --- | --- | --- |")
    for row in rows:
        at = row["reaches_reference_at"]
        reached = "never" if at is None else f"{at:.1f} s ({at / row['seconds']:.2f} of its time)"
        print(
            f"| {row['size']} | {row['run']} | {row['seconds']:.1f} | "
            f"{row['curve'][-1][1]:.5g} | {reached} |"
        )


def plot(rows: list[dict], path: str) -> None:
    """The curves of the first size: score against wall seconds, log scale."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    size = rows[0]["size"]
    figure, axes = pyplot.subplots(figsize=(7, 4.2))
    for row in (row for row in rows if row["size"] == size):
        seconds, losses = zip(*row["curve"], strict=True)
        axes.plot(seconds, losses, marker=".", label=row["run"])
    axes.set_yscale("log")
    axes.set_xlabel("wall seconds since the process started")
    axes.set_ylabel("float32 total loss at full size")
    axes.set_title(f"Loss against wall time, {size} px wide ({cpu_name()})")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def detail_check(path: str) -> None:
    """What a smaller stage's picture can be worth: the full-size objective of the image at
    `path` (a finished run's) as it is and halved and enlarged again, each style layer
    alone and the content loss alone, at the image's width."""
    import settings as shipped
    from benchmarks.compare_optimizers import full_size_objective
    from neural_style.media import images
    from neural_style.settings.gatys import Settings

    image = images.load_image(path, "the image to check")
    height, width = image.shape[:2]
    blurred = images.resize_image(
        images.resize_image(image, (height // 2, width // 2)), (height, width)
    )
    base = {"image_width": width, "image_height": 0, "precision": "float32"}
    parts = {
        layer: {"style_loss_layers": ((layer, weight),), "alpha": 0.0}
        for layer, weight in shipped.STYLE_LOSS_LAYERS
    }
    parts["content"] = {"beta": 0.0}
    parts["total"] = {}
    print(f"| {width}x{height}, float32 | as it is | halved and enlarged |")
    print("| --- | --- | --- |")
    for name, overrides in parts.items():
        objective = full_size_objective(Settings.from_module(shipped, **base, **overrides))
        print(f"| {name} | {objective(image):.5g} | {objective(blurred):.5g} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="128 px, few steps (smoke)")
    parser.add_argument("--sizes", default="512,1024,2048", help="output widths")
    parser.add_argument("--adam_steps", type=int, default=1000)
    parser.add_argument("--lbfgs_steps", type=int, default=300)
    parser.add_argument("--snapshot_every", type=int, default=0, help="0: a tenth of Adam's")
    parser.add_argument("--plot", default="", help="PNG of the first size's curves")
    parser.add_argument(
        "--detail_check", default="", help="an image: its score as it is and halved and enlarged"
    )
    arguments = parser.parse_args()
    if arguments.detail_check:
        os.chdir(REPO_ROOT)
        detail_check(arguments.detail_check)
        return
    if arguments.quick:
        arguments.sizes, arguments.adam_steps, arguments.lbfgs_steps = "128", 30, 9
    arguments.snapshot_every = arguments.snapshot_every or max(arguments.adam_steps // 10, 1)
    os.chdir(REPO_ROOT)
    print(f"CPU: {cpu_name()} ({os.cpu_count()} logical CPUs)", flush=True)
    rows = []
    for width in (int(size) for size in arguments.sizes.split(",")):
        rows += measure(width, arguments)
    report(rows)
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS, "w", encoding="utf-8") as file:
        json.dump(rows, file, indent=1)
    if arguments.plot:
        plot(rows, arguments.plot)
        print("wrote", arguments.plot)


if __name__ == "__main__":
    main()
