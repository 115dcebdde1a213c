"""Gram against w2 (STYLE_LOSS): seconds per Adam step in the same process, the initial
style losses that set wasserstein.W2_SCALE, and optionally the two final images side by side.

    python benchmarks/style_loss.py                      # timing and scale at 512x384
    python benchmarks/style_loss.py --image_steps 100    # and docs/w2-vs-gram.jpg

The timing alternates the two losses (a block of --steps Adam steps each, --repeats times)
after a warm-up that traces both, so that load from other processes falls on both alike,
and prints the median seconds per step of each. The image runs train.py's own pipeline
(run.stylize) with the shipped settings.py, changing only STYLE_LOSS, TRAIN_STEPS and the
output prefix, on images/content.jpg and images/style.jpg at 512 px. The repository ships
only synthetic VGG weights (weights/synthetic-...), so the images show the losses'
behaviour on those filters, not on ImageNet's.
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
SIDE_BY_SIDE = os.path.join(REPO_ROOT, "docs", "w2-vs-gram.jpg")
LOSSES = ("gram", "w2")


def _problem(width: int):
    """(net, content, style, loss weights by STYLE_LOSS) at the shipped layers and weights."""
    import settings as shipped
    from neural_style.gatys.pipeline import loss_weights
    from neural_style.media import images
    from neural_style.settings.gatys import Settings
    from neural_style.vgg.network import VGG19

    base = Settings.from_module(shipped, image_width=width)
    # float32 convs, so the figures compare the losses and not the precision choice.
    net = VGG19.from_mat(_weights_path(base))
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
    joined = np.concatenate([finals[0], np.full((finals[0].shape[0], 8, 3), 255, np.uint8)], 1)
    joined = np.concatenate([joined, finals[1]], 1)
    Image.fromarray(joined).save(SIDE_BY_SIDE, quality=92)
    return SIDE_BY_SIDE


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--steps", type=int, default=5, help="Adam steps per timed block")
    parser.add_argument("--repeats", type=int, default=4, help="blocks of each loss")
    parser.add_argument("--image_steps", type=int, default=0, help="0 = no side-by-side")
    arguments = parser.parse_args()
    os.chdir(REPO_ROOT)
    print(f"CPU: {cpu_name()} ({os.cpu_count()} logical CPUs)")
    result = measure(arguments.width, arguments.steps, arguments.repeats)
    gram, w2 = (result["seconds"][name] for name in LOSSES)
    print(f"size {result['size']}, {arguments.repeats} x {arguments.steps} steps each, alternated")
    print(f"gram: {gram:.3f} s/step   w2: {w2:.3f} s/step   ({w2 / gram:.2f}x)")
    print("per block:", {name: [round(t, 3) for t in v] for name, v in result["all"].items()})
    style = result["initial_style"]
    print(
        f"initial style loss: gram {style['gram']:.4g}, w2 {style['w2']:.4g} "
        f"(ratio {style['gram'] / style['w2']:.3g})"
    )
    if arguments.image_steps:
        print("wrote", side_by_side(arguments.image_steps))


if __name__ == "__main__":
    main()
