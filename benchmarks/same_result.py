"""Does a change of the code change what a run paints? Five pinned runs, compared image by
image against the same runs of another checkout.

    python benchmarks/same_result.py --output /tmp/after                  # this checkout
    PYTHONPATH=/path/to/other/checkout python benchmarks/same_result.py --output /tmp/before
    python benchmarks/same_result.py --compare /tmp/before /tmp/after

The runs use only `stylize(Settings)` and `Settings.from_module`, which every version of
the package has (in `neural_style.gatys.run` and `neural_style.settings.gatys`, or before
the layer folders in `neural_style.run` and `neural_style.config`), with float32
arithmetic and one seed, on a small synthetic VGG-19 (deterministic weights) so that they
take about a minute in all:
one photo (Adam), a folder of two photos (BATCH_SIZE 2), L-BFGS, coarse-to-fine with
histogram colours, and a run in tiles. --compare prints each final image's mean absolute
difference in grey levels (0..255) and fails when one is 0.5 or more.
"""

from __future__ import annotations

import argparse
import glob
import importlib.util
import io
import os
import shutil
import sys

import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(HERE)
CONTENT = os.path.join(REPO_ROOT, "images", "content.jpg")
STYLE = os.path.join(REPO_ROOT, "images", "style.jpg")
PHOTOS = [os.path.join(REPO_ROOT, "images", "photos", name) for name in ("golden_gate.jpg",)]
WIDTHS = (16, 24, 32, 32, 32)  # conv channels per block of the small synthetic VGG-19
TOLERANCE = 0.5  # grey levels

# name -> (content: "photo" or "folder", overrides)
RUNS = {
    "one-photo": ("photo", {"train_steps": 30}),
    "batch-of-two": ("folder", {"train_steps": 20, "batch_size": 2}),
    "lbfgs": ("photo", {"optimizer": "lbfgs", "train_steps": 15}),
    "coarse-to-fine-histogram": (
        "photo",
        {
            "coarse_to_fine": (64, 128),
            "coarse_to_fine_steps": (15, 10),
            "preserve_colors": "histogram",
        },
    ),
    "tiled": ("photo", {"image_width": 160, "train_steps": 10, "tile_size": 64}),
}


def _toy_settings_module():
    """tests/toy_settings.py of THIS checkout: the same base settings whichever package runs."""
    path = os.path.join(REPO_ROOT, "tests", "toy_settings.py")
    spec = importlib.util.spec_from_file_location("same_result_settings", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _package_api() -> tuple:
    """(stylize, Settings, write_synthetic_vgg19) of whichever layout the package on the
    path has: in layer folders, or the flat modules of before them."""
    try:
        from neural_style.gatys.run import stylize
        from neural_style.settings.gatys import Settings
        from neural_style.vgg.synthetic import write_synthetic_vgg19
    except ImportError:  # the flat layout
        from neural_style.config import Settings
        from neural_style.run import stylize
        from neural_style.synthetic import write_synthetic_vgg19
    return stylize, Settings, write_synthetic_vgg19


def run_all(output: str) -> None:
    stylize, Settings, write_synthetic_vgg19 = _package_api()

    os.makedirs(output, exist_ok=True)
    weights = os.path.join(output, "small-vgg.mat")
    write_synthetic_vgg19(weights, widths=WIDTHS, fc_width=8, num_classes=5)
    folder = os.path.join(output, "photos")
    os.makedirs(folder, exist_ok=True)
    for path in [CONTENT, *PHOTOS]:
        shutil.copy(path, folder)
    base = _toy_settings_module()
    for name, (content, overrides) in RUNS.items():
        values = {
            "content_image": CONTENT if content == "photo" else folder,
            "style_image": (STYLE,),
            "output_image": os.path.join(output, name, "out"),
            "vgg_model_path": weights,
            "image_width": 128,
            "precision": "float32",
            "snapshot_every": 0,
            "print_every": 1000,
            "seed": 3,
            **overrides,
        }
        stylize(Settings.from_module(base, **values), io.StringIO())
        print(f"{name}: done", flush=True)


def final_images(folder: str) -> dict[str, str]:
    found = {}
    for name in RUNS:
        for path in sorted(glob.glob(os.path.join(folder, name, "out*.jpg"))):
            stem = os.path.basename(path)
            if not stem.split(".")[0].rsplit("-", 1)[-1].isdigit():  # not a snapshot
                found[f"{name}/{stem}"] = path
    return found


def compare(before: str, after: str) -> bool:
    old, new = final_images(before), final_images(after)
    same = True
    if sorted(old) != sorted(new):
        print(f"different outputs: before {sorted(old)}, after {sorted(new)}")
        same = False
    for key in sorted(set(old) & set(new)):
        a = np.asarray(Image.open(old[key]), np.float64)
        b = np.asarray(Image.open(new[key]), np.float64)
        difference = float(np.abs(a - b).mean()) if a.shape == b.shape else float("inf")
        verdict = "ok" if difference < TOLERANCE else "DIFFERENT"
        same &= difference < TOLERANCE
        print(f"{key:45s} mean |difference| {difference:.4f} grey levels  {verdict}")
    return same


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output", help="folder for this checkout's runs")
    parser.add_argument("--compare", nargs=2, metavar=("BEFORE", "AFTER"))
    args = parser.parse_args()
    if args.compare:
        return 0 if compare(*args.compare) else 1
    if not args.output:
        parser.error("give --output or --compare")
    run_all(args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
