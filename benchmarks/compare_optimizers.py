"""Adam vs L-BFGS vs coarse-to-fine on the sample images: loss reached and wall time.

    python benchmarks/compare_optimizers.py            # 384x512, Adam 1000 steps (about 30 min)
    python benchmarks/compare_optimizers.py --quick    # 96x128, a smoke run (about 1 min)

Every result is scored the same way: the total loss of its final image at the full size,
against the full-size targets. Prints a table and writes benchmarks/results/optimizers.json.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import settings as user_settings  # noqa: E402
from neural_style import images, run  # noqa: E402
from neural_style.config import Settings  # noqa: E402


def score(settings: Settings, image_path: str) -> float:
    """The total loss of a saved result at the full size, with the full-size targets."""
    from neural_style.optimize import LossFunction, compute_targets
    from neural_style.vgg import VGG19

    content = images.load_image(settings.content_image, "CONTENT_IMAGE")
    size = images.output_size(content.shape[:2], settings.image_width, settings.image_height)
    content = images.resize_image(content, size)
    styles = [images.resize_image(images.load_image(p, "STYLE_IMAGE"), size)
              for p in settings.style_image]
    net = VGG19.from_mat(run.resolve_weights_path(settings.vgg_model_path, io.StringIO()))
    weights = run.loss_weights(settings)
    loss = LossFunction(net, compute_targets(net, content, styles, [1.0] * len(styles), weights),
                        weights)
    result = images.resize_image(images.load_image(image_path, "OUTPUT_IMAGE"), size)
    parts, _ = loss.value_and_gradient(result[None])
    return float(parts["total"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes and step counts")
    args = parser.parse_args()
    width, adam_steps, lbfgs_steps = (128, 60, 20) if args.quick else (512, 1000, 300)
    stages = [width // 2, width]
    configs = {
        f"adam {adam_steps}": dict(optimizer="adam", train_steps=adam_steps),
        f"lbfgs {lbfgs_steps}": dict(optimizer="lbfgs", train_steps=lbfgs_steps),
        f"coarse-to-fine lbfgs {lbfgs_steps}+{lbfgs_steps // 3}": dict(
            optimizer="lbfgs", coarse_to_fine=stages,
            coarse_to_fine_steps=[lbfgs_steps, lbfgs_steps // 3],
        ),
    }
    os.makedirs("benchmarks/results", exist_ok=True)
    rows = []
    for name, overrides in configs.items():
        prefix = f"benchmarks/results/{name.split()[0]}"
        settings = Settings.from_module(
            user_settings, image_width=width, image_height=0, snapshot_every=0,
            print_every=50, output_image=prefix, overwrite=True, **overrides,
        )
        started = time.perf_counter()
        result = run.stylize(settings, io.StringIO())
        seconds = time.perf_counter() - started
        full = Settings.from_module(user_settings, image_width=width, image_height=0)
        rows.append({"config": name, "seconds": round(seconds, 1),
                     "loss": score(full, result.output_path), "steps": result.steps})
        print(f"{name:<34} {seconds:8.1f} s  loss {rows[-1]['loss']:.4g}", flush=True)
    with open("benchmarks/results/optimizers.json", "w") as file:
        json.dump({"width": width, "rows": rows}, file, indent=2)


if __name__ == "__main__":
    main()
