"""Images per second of a folder run, one photo at a time vs BATCH_SIZE photos together.

    python benchmarks/batch.py            # widths 256 and 512, batch sizes 1, 2, 4 (~4 min)
    python benchmarks/batch.py --precision=float32   # (PRECISION: settings.py's by default)
    python benchmarks/batch.py --quick    # a smoke run at toy sizes and weights (~30 s)

Four 4:3 crops of images/content.jpg (so that they batch together) are stylised with Adam
through `run.stylize`, as `python train.py --content_image=<folder> --batch_size=B` does,
with the synthetic full-size VGG-19 (weights/synthetic-vgg-verydeep-19-v1.mat, the real
file's shapes, written once if missing) for a few steps each. The rate comes from the
per-photo losses logs, with the first step of each run (TensorFlow's tracing) left out:
images/s is the batch size over the fastest step time, the step least slowed by other
programs on a shared machine (on a quiet one the steps of a run agree within a few %).
The median and mean rates are in the JSON too. Prints a table and writes
benchmarks/results/batch.json.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import platform
import statistics
import sys
import tempfile
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

import settings as user_settings  # noqa: E402
from neural_style.gatys import run  # noqa: E402
from neural_style.media import images  # noqa: E402
from neural_style.settings.gatys import Settings  # noqa: E402
from neural_style.vgg.weights_file import SYNTHETIC_WEIGHTS_PATH  # noqa: E402

RESULTS_PATH = os.path.join(REPO_ROOT, "benchmarks", "results", "batch.json")
CONTENT = os.path.join(REPO_ROOT, "images", "content.jpg")
STYLE = os.path.join(REPO_ROOT, "images", "style.jpg")
PHOTOS = 4
BATCH_SIZES = (1, 2, 4)


def write_crops(folder: str, count: int = PHOTOS) -> list[str]:
    """`count` different 4:3 crops of the sample photo, each 7/8 of its size."""
    photo = images.load_image(CONTENT, "CONTENT_IMAGE")
    height, width = photo.shape[:2]
    crop_h, crop_w = height * 7 // 8, width * 7 // 8
    corners = [(0, 0), (0, width - crop_w), (height - crop_h, 0), (height - crop_h, width - crop_w)]
    paths = []
    for number in range(count):
        top, left = corners[number % len(corners)]
        path = os.path.join(folder, f"crop{number + 1}.png")
        images.save_image(path, photo[top : top + crop_h, left : left + crop_w])
        paths.append(path)
    return paths


def weights_file(quick: bool, scratch: str) -> str:
    from neural_style.vgg.synthetic import write_synthetic_vgg19

    if quick:  # toy widths: the quick run checks the machinery, not the numbers
        path = os.path.join(scratch, "quick-vgg19.mat")
        write_synthetic_vgg19(path, widths=(8, 16, 32, 32, 32), fc_width=64, num_classes=10)
        return path
    path = os.path.join(REPO_ROOT, SYNTHETIC_WEIGHTS_PATH)
    if not os.path.exists(path):
        print(f"writing the synthetic weights to {path} (once)", flush=True)
        write_synthetic_vgg19(path)
    return path


def step_seconds(prefix: str) -> list[float]:
    """The step times a photo's log holds, the first step left out; the photos of a batch
    all log the batch's step times."""
    with open(f"{prefix}-losses.csv") as file:
        return [float(row["seconds"]) for row in csv.DictReader(file) if int(row["step"]) > 1]


def measure(
    folder: str, mat: str, width: int, batch_size: int, steps: int, out: str, precision: str
) -> dict:
    """One folder run at `width` with `batch_size`: its images per second."""
    settings = Settings.from_module(
        user_settings,
        content_image=folder,
        style_image=STYLE,
        output_image=os.path.join(out, f"w{width}-b{batch_size}"),
        vgg_model_path=mat,
        image_width=width,
        image_height=0,
        optimizer="adam",
        train_steps=steps,
        snapshot_every=0,
        print_every=steps,
        batch_size=batch_size,
        precision=precision,
        overwrite=True,
    )
    printed = io.StringIO()
    started = time.perf_counter()
    batch = run.stylize(settings, printed)
    wall = time.perf_counter() - started
    if batch_size > 1 and "optimised together" not in printed.getvalue():
        raise SystemExit(f"batch size {batch_size} at width {width} did not batch:\n{printed}")
    prefixes = [os.path.splitext(result.output_path)[0] for result in batch.results]
    # Every batch_size-th photo starts a batch: its log holds that batch's steps once.
    times = [seconds for prefix in prefixes[::batch_size] for seconds in step_seconds(prefix)]
    height = images.load_image(batch.results[0].output_path, "OUTPUT_IMAGE").shape[0]
    return {
        "width": width,
        "height": height,
        "batch_size": batch_size,
        "photos": len(batch.results),
        "timed_batch_steps": len(times),
        "images_per_second": batch_size / min(times),
        "seconds_per_batch_step": min(times),
        "median_images_per_second": batch_size / statistics.median(times),
        "mean_images_per_second": batch_size * len(times) / sum(times),
        "step_seconds": times,
        "wall_seconds": wall,
    }


def table(rows: list[dict]) -> str:
    lines = [
        "| size | batch size | images/s | s per batch step | vs batch 1 | median images/s |",
        "|---|---|---|---|---|---|",
    ]
    single = {row["width"]: row["images_per_second"] for row in rows if row["batch_size"] == 1}
    for row in rows:
        speedup = row["images_per_second"] / single[row["width"]]
        lines.append(
            f"| {row['width']}x{row['height']} | {row['batch_size']} | "
            f"{row['images_per_second']:.3f} | {row['seconds_per_batch_step']:.3f} | "
            f"{speedup:.2f}x | {row['median_images_per_second']:.3f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="toy sizes and weights (smoke run)")
    parser.add_argument("--output", default=RESULTS_PATH, help="where the JSON goes")
    parser.add_argument(
        "--precision", default=user_settings.PRECISION, help="PRECISION of every run"
    )
    args = parser.parse_args()
    widths, steps = ((64, 96), 3) if args.quick else ((256, 512), 6)
    load = os.getloadavg()
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} cores")
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        folder = os.path.join(scratch, "photos")
        os.makedirs(folder)
        write_crops(folder)
        mat = weights_file(args.quick, scratch)
        for width in widths:
            for batch_size in BATCH_SIZES:
                out = os.path.join(scratch, "out")
                row = measure(folder, mat, width, batch_size, steps, out, args.precision)
                rows.append(row)
                print(table(rows).splitlines()[-1], flush=True)
    report = {
        "machine": {
            "cpu_count": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
            "load_average_at_start": load,
            "load_average_at_end": os.getloadavg(),
            "python": platform.python_version(),
        },
        "quick": args.quick,
        "precision": args.precision,
        "weights": "synthetic VGG-19, toy widths" if args.quick else SYNTHETIC_WEIGHTS_PATH,
        "rows": rows,
    }
    print(table(rows))
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, "w") as stream:
        json.dump(report, stream, indent=2)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
