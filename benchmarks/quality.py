"""A quality scorecard of the style losses (STYLE_LOSS gram, w2, sw): each stylises every
content x style pair of images/ for the same wall-time budget, and every result is scored
the same way, against the style and the photo.

    python benchmarks/quality.py --quick     # 2 photos x 2 styles, 256 px, 25 s each
    python benchmarks/quality.py             # 3 photos x 2 styles, 512 px, 120 s each

Each run is Adam from the shipped start (the photo with half noise, SEED 0) with the
shipped loss weights and layers, in PRECISION auto, and takes as many steps as fit in the
budget, counted from the start of its targets (so tracing is part of the budget). Its best
image is then scored, by one float32 network at the run's size:
- Gram: each style layer's sum((G - A)²) / (4·N²) against the style's Gram matrix (the
  style loss of Gatys et al.);
- SW: each style layer's squared sliced Wasserstein distance to the style's features along
  fixed random directions (sw's loss without its scale): how far the whole distribution of
  the features is from the style's;
- content: the content loss at relu4_2 against the photo;
- colour: the mean over R, G and B of the 1-Wasserstein distance between the pixel values of
  the result and of the style image, in levels of 0..255.
Lower is better in every column. The table gives each pair, then each loss's mean over the
pairs; the per-layer figures follow.

The weights are those train.py would use (the real file, or else the synthetic stand-in),
and the script says which. With the synthetic weights the scores measure how well each loss
is optimised on those random filters, not how good the picture is as art.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

from benchmarks.machine import cpu_name, weights_path  # noqa: E402

IMAGES = os.path.join(REPO_ROOT, "images")
CONTENTS = ("content.jpg", "photos/golden_gate.jpg", "photos/hoovertowernight.jpg")
STYLES = ("style.jpg", "the_scream.jpg")
LOSSES = ("gram", "w2", "sw")
SCORE_STEP = 1_000_000  # the fixed "step" whose directions score SW, drawn by no run


def _settings(style_loss: str, width: int):
    import settings as shipped
    from neural_style.settings.gatys import Settings

    return Settings.from_module(shipped, style_loss=style_loss, image_width=width)


def _load(name: str, size=None):
    from neural_style.media import images

    image = images.load_image(os.path.join(IMAGES, name), "IMAGE")
    return image if size is None else images.resize_image(image, size)


def stylise(net, content, style, style_loss: str, width: int, budget: float) -> tuple:
    """(best image, steps taken) of Adam from the shipped start within `budget` seconds."""
    from neural_style.gatys.pipeline import initial_image, loss_weights
    from neural_style.losses.gatys import Targets
    from neural_style.losses.targets import content_targets, style_targets
    from neural_style.optimize.adam import BatchAdamOptimizer
    from neural_style.optimize.loss_functions import LossFunction

    started = time.perf_counter()
    weights = loss_weights(_settings(style_loss, width))
    targets = Targets(
        content_targets(net, content, weights), style_targets(net, [style], [1.0], weights)
    )
    loss = LossFunction(net, targets, weights)
    optimizer = BatchAdamOptimizer(loss, initial_image(content, 0.5, 0)[None], learning_rate=5.0)
    steps = 0
    while time.perf_counter() - started < budget:
        for _ in optimizer.steps(1, first=steps + 1):
            steps += 1
    return optimizer.best(0), steps


def score(scorer, image, content, style, width: int) -> dict:
    """The scorecard's figures of `image` (see the module doc)."""
    import tensorflow as tf

    from neural_style.losses.gatys import content_loss_per_image
    from neural_style.losses.style.gram import gram_matrix
    from neural_style.losses.style.sliced import sliced_distances

    layers = [name for name, _ in _settings("gram", width).style_loss_layers]
    mine = scorer(image[None], [*layers, "relu4_2"])
    theirs = scorer(style[None], layers)
    photo = scorer(content[None], ["relu4_2"])
    gram, sliced = {}, {}
    for name in layers:
        channels = float(mine[name].shape[-1])
        difference = gram_matrix(mine[name]) - gram_matrix(theirs[name])
        gram[name] = float(tf.reduce_sum(tf.square(difference)) / (4.0 * channels**2))
        flat = tf.reshape(mine[name], [1, -1, mine[name].shape[-1]])
        sample = tf.reshape(theirs[name], [1, -1, theirs[name].shape[-1]])
        sliced[name] = float(sliced_distances(flat, sample, tf.constant(SCORE_STEP))[0])
    content_distance = float(content_loss_per_image(mine["relu4_2"], photo["relu4_2"])[0])
    colour = np.mean(
        [
            np.mean(np.abs(np.sort(image[..., c].ravel()) - np.sort(style[..., c].ravel())))
            for c in range(3)
        ]
    )
    return {"gram": gram, "sw": sliced, "content": content_distance, "colour": float(colour)}


def run(arguments: argparse.Namespace) -> list[dict]:
    from neural_style.media import images
    from neural_style.runtime import resolve_precision, start_tensorflow
    from neural_style.vgg.mat import read_vgg19_mat
    from neural_style.vgg.network import VGG19

    with tempfile.TemporaryDirectory() as scratch:
        path = weights_path(arguments.weights, None, scratch)
    print(f"weights: {path}")
    if "synthetic" in os.path.basename(path):
        print(
            "note: synthetic VGG-19 weights: the scores measure how well each loss is "
            "optimised on random filters, not how good the picture is as art"
        )
    start_tensorflow(without_keras=True)
    weights = read_vgg19_mat(path)
    precision = resolve_precision("auto", on_gpu=False)
    net, scorer = VGG19(weights, precision=precision), VGG19(weights)
    print(f"PRECISION auto: {precision}; scored in float32")
    rows = []
    for content_name in CONTENTS[: arguments.contents]:
        photo = _load(content_name)
        size = images.output_size(photo.shape[:2], arguments.width, 0)
        content = images.resize_image(photo, size)
        for style_name in STYLES[: arguments.styles]:
            style = _load(style_name, size)
            for loss in LOSSES:
                image, steps = stylise(net, content, style, loss, arguments.width, arguments.budget)
                figures = score(scorer, image, content, style, arguments.width)
                rows.append(
                    {
                        "pair": f"{content_name} x {style_name}",
                        "loss": loss,
                        "steps": steps,
                        **figures,
                    }
                )
                print(_row(rows[-1]), flush=True)
    return rows


def _row(row: dict) -> str:
    gram = statistics.mean(row["gram"].values())
    sliced = statistics.mean(row["sw"].values())
    return (
        f"| {row['pair']} | {row['loss']} | {row['steps']} | {gram:.4g} | {sliced:.4g} | "
        f"{row['content']:.4g} | {row['colour']:.3g} |"
    )


def report(rows: list[dict]) -> None:
    print("\n| pair | loss | steps | Gram (layers' mean) | SW (layers' mean) | content | colour |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        print(_row(row))
    print("\nMean over the pairs:\n")
    print("| loss | steps | Gram | SW | content | colour |")
    print("| --- | --- | --- | --- | --- | --- |")
    for loss in LOSSES:
        mine = [row for row in rows if row["loss"] == loss]
        mean = {
            key: statistics.mean(statistics.mean(row[key].values()) for row in mine)
            for key in ("gram", "sw")
        }
        print(
            f"| {loss} | {statistics.mean(row['steps'] for row in mine):.0f} | "
            f"{mean['gram']:.4g} | {mean['sw']:.4g} | "
            f"{statistics.mean(row['content'] for row in mine):.4g} | "
            f"{statistics.mean(row['colour'] for row in mine):.3g} |"
        )
    print("\nPer style layer (mean over the pairs), Gram / SW:\n")
    layers = list(rows[0]["gram"])
    print("| loss | " + " | ".join(layers) + " |")
    print("| --- |" + " --- |" * len(layers))
    for loss in LOSSES:
        mine = [row for row in rows if row["loss"] == loss]
        cells = [
            f"{statistics.mean(r['gram'][name] for r in mine):.3g} / "
            f"{statistics.mean(r['sw'][name] for r in mine):.3g}"
            for name in layers
        ]
        print(f"| {loss} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 x 2 pairs, 256 px, 25 s each")
    parser.add_argument("--width", type=int, default=0, help="output width (512; quick 256)")
    parser.add_argument("--budget", type=float, default=0, help="seconds a run (120; quick 25)")
    parser.add_argument("--contents", type=int, default=0, help="photos (3; quick 2)")
    parser.add_argument("--styles", type=int, default=len(STYLES), help="styles (2)")
    parser.add_argument("--weights", default="", help="VGG-19 .mat (default: as train.py)")
    arguments = parser.parse_args()
    quick = arguments.quick
    arguments.width = arguments.width or (256 if quick else 512)
    arguments.budget = arguments.budget or (25.0 if quick else 120.0)
    arguments.contents = arguments.contents or (2 if quick else 3)
    os.chdir(REPO_ROOT)
    print(f"CPU: {cpu_name()} ({os.cpu_count()} logical CPUs)")
    print(
        f"{arguments.contents} photos x {arguments.styles} styles at {arguments.width} px, "
        f"{arguments.budget:g} s of Adam each, losses {', '.join(LOSSES)}"
    )
    started = time.perf_counter()
    report(run(arguments))
    print(f"\n{time.perf_counter() - started:.0f} s in all")


if __name__ == "__main__":
    main()
