"""Adam vs L-BFGS vs coarse-to-fine on the sample images: loss reached and wall time.

    python benchmarks/compare_optimizers.py            # 384x512, Adam 1000 steps (about 30 min)
    python benchmarks/compare_optimizers.py --quick    # 96x128, a smoke run (about 1 min)

Every result is scored the same way: the total loss of its best image (from the run's
final checkpoint, in float32, not the JPEG) at the full size, against the full-size targets.
From the per-step logs it also reports how long each method took to first reach the loss
that Adam has after all its steps. Prints a table; writes benchmarks/results/optimizers.json.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import settings as user_settings
from neural_style.gatys import run
from neural_style.gatys.pipeline import loss_weights
from neural_style.media import images
from neural_style.settings.gatys import Settings
from neural_style.vgg import weights_file


def lowest_logged_loss(log_path: str) -> float:
    with open(log_path) as file:
        return min(float(row["total"]) for row in csv.DictReader(file))


def seconds_to_reach(log_path: str, target: float, last_stage_from: int) -> float | None:
    """Wall seconds of the logged steps until the total loss first is <= target (only steps
    from `last_stage_from` on count as reaching it: earlier stages are at other sizes)."""
    elapsed = 0.0
    with open(log_path) as file:
        for row in csv.DictReader(file):
            elapsed += float(row["seconds"])
            if int(row["step"]) >= last_stage_from and float(row["total"]) <= target:
                return elapsed
    return None


def full_size_objective(settings: Settings):
    """The total loss, in the precision of `settings` (float32 for a score), of an image
    [H, W, 3] resized to the run's full size, against the full-size targets."""
    from neural_style.losses.gatys import Targets
    from neural_style.losses.targets import content_targets, style_targets
    from neural_style.optimize.loss_functions import LossFunction
    from neural_style.vgg.network import VGG19

    content = images.load_image(settings.content_image, "CONTENT_IMAGE")
    size = images.output_size(content.shape[:2], settings.image_width, settings.image_height)
    content = images.resize_image(content, size)
    styles = [
        images.resize_image(images.load_image(p, "STYLE_IMAGE"), size) for p in settings.style_image
    ]
    net = VGG19.from_mat(weights_file.resolve_weights_path(settings.vgg_model_path, io.StringIO()))
    weights = loss_weights(settings)
    targets = Targets(
        content_targets(net, content, weights),
        style_targets(net, styles, [1.0] * len(styles), weights),
    )
    loss = LossFunction(net, targets, weights)

    def total(image: np.ndarray) -> float:
        parts, _ = loss.value_and_gradient(images.resize_image(image, size)[None])
        return float(parts["total"])

    return total


def score(settings: Settings, prefix: str) -> float:
    """The total loss of a run's best image at the full size, with the full-size targets."""
    with np.load(f"{prefix}-checkpoint.npz") as saved:
        best = saved["state/best_image"]
    return full_size_objective(settings)(best)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes and step counts")
    parser.add_argument("--precision", default="float32", help="PRECISION of every run")
    args = parser.parse_args()
    width, adam_steps, lbfgs_steps = (128, 60, 20) if args.quick else (512, 1000, 300)
    stages = [width // 2, width]
    configs = {
        f"adam {adam_steps}": dict(optimizer="adam", train_steps=adam_steps),
        f"lbfgs {lbfgs_steps}": dict(optimizer="lbfgs", train_steps=lbfgs_steps),
        f"coarse-to-fine lbfgs {lbfgs_steps}+{lbfgs_steps // 3}": dict(
            optimizer="lbfgs",
            coarse_to_fine=stages,
            coarse_to_fine_steps=[lbfgs_steps, lbfgs_steps // 3],
        ),
    }
    os.makedirs("benchmarks/results", exist_ok=True)
    rows, target = [], None
    for name, overrides in configs.items():
        prefix = f"benchmarks/results/{name.split()[0]}"
        settings = Settings.from_module(
            user_settings,
            image_width=width,
            image_height=0,
            snapshot_every=0,
            print_every=50,
            output_image=prefix,
            overwrite=True,
            **overrides,
        )
        started = time.perf_counter()
        result = run.stylize(settings, io.StringIO())
        seconds = time.perf_counter() - started
        # Scored in float32 whatever the runs' precision.
        full = Settings.from_module(
            user_settings, image_width=width, image_height=0, precision="float32"
        )
        loss = score(full, prefix)
        if target is None:  # the first row is Adam's: its lowest logged loss is the bar
            target = lowest_logged_loss(f"{prefix}-losses.csv")
        last_stage_from = 1 + sum(overrides.get("coarse_to_fine_steps", [0])[:-1])
        reach = seconds_to_reach(f"{prefix}-losses.csv", target, last_stage_from)
        rows.append(
            {
                "config": name,
                "seconds": round(seconds, 1),
                "loss": loss,
                "steps": result.steps,
                "seconds_to_adam_loss": None if reach is None else round(reach, 1),
            }
        )
        reached = "never" if reach is None else f"{reach:.0f} s"
        print(
            f"{name:<34} {seconds:8.1f} s  loss {loss:.4g}  reaches Adam's loss: {reached}",
            flush=True,
        )
    with open("benchmarks/results/optimizers.json", "w") as file:
        json.dump({"width": width, "precision": args.precision, "rows": rows}, file, indent=2)


if __name__ == "__main__":
    main()
