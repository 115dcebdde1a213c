"""The style losses side by side (STYLE_LOSS gram, w2, sw): seconds per Adam step in the same
process, the initial style losses that set w2's W2_SCALE and sw's SW_SCALE, how each
converges at several sizes, and optionally the three final images side by side.

    python benchmarks/style_loss.py                      # timing and scale at 512x384
    python benchmarks/style_loss.py --convergence        # and 200 steps at 96..512 px
    python benchmarks/style_loss.py --image_steps 250    # and docs/style-losses.jpg

The timing alternates the losses (a block of --steps Adam steps each, --repeats times)
after a warm-up that traces them all, so that load from other processes falls on each
alike, and prints the median seconds per step of each, in float32. The convergence runs
--convergence_steps Adam steps of w2 and sw from the shipped start (photo and half noise)
at each of --sizes, in float32 and in PRECISION auto, and prints each run's first and last
style loss, their ratio, its lowest style loss and how many steps diverged. The image runs
train.py's own pipeline (run.stylize) with the shipped settings.py, changing only
STYLE_LOSS, TRAIN_STEPS and the output prefix, on images/content.jpg and images/style.jpg
at 512 px. Without the real weights the synthetic ones are used (weights/synthetic-...), so
the figures and images show the losses' behaviour on those filters, not on ImageNet's.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

from benchmarks.machine import cpu_name  # noqa: E402

CONTENT = os.path.join(REPO_ROOT, "images", "content.jpg")
STYLE = os.path.join(REPO_ROOT, "images", "style.jpg")
SIDE_BY_SIDE = os.path.join(REPO_ROOT, "docs", "style-losses.jpg")
LOSSES = ("gram", "w2", "sw")


def _problem(width: int, precision: str = "float32"):
    """(net, content, style, loss weights by STYLE_LOSS) at the shipped layers and weights."""
    import settings as shipped
    from neural_style.gatys.pipeline import loss_weights
    from neural_style.media import images
    from neural_style.settings.gatys import Settings
    from neural_style.vgg.network import VGG19

    base = Settings.from_module(shipped, image_width=width)
    net = VGG19.from_mat(_weights_path(base), precision=precision)
    content = images.load_image(CONTENT, "CONTENT_IMAGE")
    size = images.output_size(content.shape[:2], width, 0)
    content = images.resize_image(content, size)
    style = images.resize_image(images.load_image(STYLE, "STYLE_IMAGE"), size)
    weights = {name: loss_weights(base)._replace(style_loss=name) for name in LOSSES}
    return net, content, style, weights


def _weights_path(settings) -> str:
    if os.path.exists(settings.vgg_model_path):
        return settings.vgg_model_path
    folder = os.path.join(REPO_ROOT, "weights")
    synthetic = sorted(name for name in os.listdir(folder) if name.endswith(".mat"))
    return os.path.join(folder, synthetic[0])


def measure(width: int, steps: int, repeats: int) -> dict:
    """Median s/step of each loss, and each loss's style part at the first step."""
    import numpy as np

    from neural_style.gatys.pipeline import initial_image
    from neural_style.losses.gatys import Targets
    from neural_style.losses.targets import content_targets, style_targets
    from neural_style.optimize.adam import BatchAdamOptimizer
    from neural_style.optimize.loss_functions import LossFunction

    net, content, style, weights = _problem(width)
    start = initial_image(content, 0.5, 0)
    optimizers, initial = {}, {}
    for name in LOSSES:
        targets = Targets(
            content_targets(net, content, weights[name]),
            style_targets(net, [style], [1.0], weights[name]),
        )
        loss = LossFunction(net, targets, weights[name])
        parts, _ = loss.value_and_gradient(start[None])
        initial[name] = float(parts["style"])
        optimizers[name] = BatchAdamOptimizer(loss, start[None], learning_rate=5.0)
        list(optimizers[name].steps(2))  # trace and warm up
    times: dict[str, list[float]] = {name: [] for name in LOSSES}
    for _ in range(repeats):
        for name in LOSSES:
            began = time.perf_counter()
            list(optimizers[name].steps(steps))
            times[name].append((time.perf_counter() - began) / steps)
    return {
        "size": f"{content.shape[1]}x{content.shape[0]}",
        "seconds": {name: statistics.median(values) for name, values in times.items()},
        "all": times,
        "initial_style": initial,
        "finite": all(np.isfinite(v) for v in initial.values()),
    }


def converge(width: int, steps: int, precision: str) -> list[dict]:
    """w2 and sw, `steps` Adam steps each from the shipped start at `width`: each run's
    first, last and lowest style loss and its divergent steps."""
    from neural_style.gatys.pipeline import initial_image
    from neural_style.losses.gatys import Targets
    from neural_style.losses.targets import content_targets, style_targets
    from neural_style.optimize.adam import BatchAdamOptimizer
    from neural_style.optimize.loss_functions import LossFunction

    net, content, style, weights = _problem(width, precision)
    rows = []
    for name in ("w2", "sw"):
        targets = Targets(
            content_targets(net, content, weights[name]),
            style_targets(net, [style], [1.0], weights[name]),
        )
        loss = LossFunction(net, targets, weights[name])
        optimizer = BatchAdamOptimizer(
            loss, initial_image(content, 0.5, 0)[None], learning_rate=5.0
        )
        styles, diverged = [], 0
        for result in optimizer.steps(steps):
            styles.append(result.losses[0]["style"])
            diverged += bool(result.notes[0])
        rows.append(
            {
                "loss": name,
                "size": f"{content.shape[1]}x{content.shape[0]}",
                "precision": precision,
                "first": styles[0],
                "last": styles[-1],
                "lowest": min(styles),
                "diverged": diverged,
            }
        )
    return rows


def side_by_side(steps: int) -> str:
    """Runs the shipped settings with each loss for `steps` steps; writes SIDE_BY_SIDE."""
    import numpy as np
    from PIL import Image

    import settings as shipped
    from neural_style.gatys import run
    from neural_style.settings.gatys import Settings

    finals = []
    with tempfile.TemporaryDirectory() as folder:
        for name in LOSSES:
            result = run.stylize(
                Settings.from_module(
                    shipped,
                    style_loss=name,
                    train_steps=steps,
                    snapshot_every=0,
                    output_image=os.path.join(folder, name),
                )
            )
            finals.append(np.asarray(Image.open(result.output_path).convert("RGB")))
    gap = np.full((finals[0].shape[0], 8, 3), 255, np.uint8)
    joined = np.concatenate([part for final in finals for part in (final, gap)][:-1], 1)
    Image.fromarray(joined).save(SIDE_BY_SIDE, quality=92)
    return SIDE_BY_SIDE


def _print_timing(result: dict, arguments: argparse.Namespace) -> None:
    seconds = result["seconds"]
    print(f"size {result['size']}, {arguments.repeats} x {arguments.steps} steps each, alternated")
    print("| loss | s/step | vs gram | initial style loss | gram's / this |")
    print("| --- | --- | --- | --- | --- |")
    style = result["initial_style"]
    for name in LOSSES:
        print(
            f"| {name} | {seconds[name]:.3f} | {seconds[name] / seconds['gram']:.2f}x | "
            f"{style[name]:.4g} | {style['gram'] / style[name]:.3g} |"
        )
    print("per block:", {name: [round(t, 3) for t in v] for name, v in result["all"].items()})


def _print_convergence(rows: list[dict]) -> None:
    print("| loss | size | precision | first style | last style | first/last | lowest | diverged |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        print(
            f"| {row['loss']} | {row['size']} | {row['precision']} | {row['first']:.4g} | "
            f"{row['last']:.4g} | {row['first'] / row['last']:.1f}x | {row['lowest']:.4g} | "
            f"{row['diverged']} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--steps", type=int, default=5, help="Adam steps per timed block")
    parser.add_argument("--repeats", type=int, default=4, help="blocks of each loss")
    parser.add_argument("--convergence", action="store_true", help="w2 and sw at --sizes")
    parser.add_argument("--sizes", default="96,128,256,512", help="widths of --convergence")
    parser.add_argument("--convergence_steps", type=int, default=200)
    parser.add_argument("--image_steps", type=int, default=0, help="0 = no side-by-side")
    arguments = parser.parse_args()
    os.chdir(REPO_ROOT)
    print(f"CPU: {cpu_name()} ({os.cpu_count()} logical CPUs)")
    if arguments.steps:
        _print_timing(measure(arguments.width, arguments.steps, arguments.repeats), arguments)
    if arguments.convergence:
        from neural_style.runtime import resolve_precision

        auto = resolve_precision("auto", on_gpu=False)
        rows = []
        for width in (int(size) for size in arguments.sizes.split(",")):
            for precision in dict.fromkeys(("float32", auto)):
                rows += converge(width, arguments.convergence_steps, precision)
                _print_convergence(rows[-2:])
        print(f"PRECISION auto is {auto} here")
        _print_convergence(rows)
    if arguments.image_steps:
        print("wrote", side_by_side(arguments.image_steps))


if __name__ == "__main__":
    main()
