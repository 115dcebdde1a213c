"""The feed-forward network's speed: training images per second, stylising ms per image.

    python benchmarks/feedforward.py            # the paper's sizes (a few minutes on 2 cores)
    python benchmarks/feedforward.py --quick    # tiny sizes, a smoke run (under a minute)

Training: steps of the full network (width 32) and the VGG-19 loss network at 256x256,
batch 4, on one fixed random batch, so the data pipeline is left out; the first steps
compile and warm up and are not timed. Stylising: images/content.jpg resized to 512x512,
1024x768 and 1920x1080, through the same compiled function stylize.py uses, in float32 and
in the precision NETWORK_PRECISION "auto" gives here (when it is another), alternated, the
median of 5 runs each; and how far the two precisions' images are apart (mean absolute
difference in grey levels, after rounding to 8 bits). --network times a trained network
(a .keras file) instead of a freshly built one; --stylising_only leaves training out.

The weights need not be real for timing: without weights/imagenet-vgg-verydeep-19.mat the
synthetic stand-in of the same shapes is used. Prints a table and writes
benchmarks/results/feedforward.json.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.machine import cpu_name
from neural_style import runtime
from neural_style.vgg import weights_file
from neural_style.vgg.weights_file import DEFAULT_VGG_MODEL_PATH

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "feedforward.json")

FULL = {
    "width": 32,
    "train_size": 256,
    "batch": 4,
    "train_steps": 4,
    "sizes": ((512, 512), (768, 1024), (1080, 1920)),
}
QUICK = {
    "width": 4,
    "train_size": 64,
    "batch": 2,
    "train_steps": 3,
    "sizes": ((128, 128), (96, 128)),
}
ROUNDS = 5  # timed runs of each precision at each size, alternated


def time_training(config: dict, weights_path: str) -> dict:
    import numpy as np
    import tensorflow as tf

    from neural_style.feedforward.training.loss import PerceptualLoss
    from neural_style.feedforward.training.trainer import Trainer
    from neural_style.losses.gatys import LossWeights
    from neural_style.vgg.network import VGG19

    rng = np.random.default_rng(0)
    size, batch = config["train_size"], config["batch"]
    photos = rng.uniform(0, 255, (batch, size, size, 3)).astype(np.float32)
    style = rng.uniform(0, 255, (size, size, 3)).astype(np.float32)
    weights = LossWeights(
        content_layers=(("relu2_2", 1.0),),
        style_layers=tuple((name, 0.25) for name in ("relu1_2", "relu2_2", "relu3_3", "relu4_3")),
        alpha=1.0,
        beta=500.0,
        tv_weight=1e-3,
    )
    loss = PerceptualLoss(VGG19.from_mat(weights_path), style, weights)
    strategy = tf.distribute.MirroredStrategy()
    trainer = Trainer(
        strategy,
        loss,
        width=config["width"],
        learning_rate=1e-3,
        global_batch_size=batch,
        seed=0,
    )
    distributed = trainer.distribute_batch(photos)
    for _ in range(2):  # compile, then one step to settle the allocators
        trainer.distributed_step(distributed)["total"].numpy()
    started = time.perf_counter()
    for _ in range(config["train_steps"]):
        trainer.distributed_step(distributed)["total"].numpy()
    seconds = (time.perf_counter() - started) / config["train_steps"]
    return {
        "image_size": size,
        "batch_size": batch,
        "replicas": strategy.num_replicas_in_sync,
        "seconds_per_step": round(seconds, 4),
        "images_per_second": round(batch / seconds, 3),
    }


def time_stylising(config: dict, network: str = "") -> list[dict]:
    """Per size: each precision's median ms per image and the images' distance."""
    import numpy as np

    from neural_style.feedforward.model import build_transformer, load_network
    from neural_style.feedforward.stylizing.run import Stylizer
    from neural_style.media import images

    model = load_network(network) if network else build_transformer(config["width"], seed=0)
    auto = runtime.resolve_network_precision("auto", runtime.start_tensorflow().on_gpu)
    stylizers = {name: Stylizer(model, precision=name) for name in dict.fromkeys(["float32", auto])}
    photo = images.load_image(os.path.join(REPO_ROOT, "images", "content.jpg"), "photo")
    results = []
    for size in config["sizes"]:
        image = images.resize_image(photo, size)[None]
        outputs = {name: np.rint(stylizer(image)) for name, stylizer in stylizers.items()}
        times: dict[str, list[float]] = {name: [] for name in stylizers}
        for _ in range(ROUNDS):
            for name, stylizer in stylizers.items():
                started = time.perf_counter()
                stylizer(image)
                times[name].append(time.perf_counter() - started)
        row = {
            "size": f"{size[1]}x{size[0]}",
            "ms_per_image": {
                name: round(1000 * statistics.median(each), 1) for name, each in times.items()
            },
            "grey_levels_from_float32": {
                name: round(float(np.abs(out - outputs["float32"]).mean()), 3)
                for name, out in outputs.items()
            },
        }
        results.append(row)
        print(f"stylising {row['size']}: {row['ms_per_image']} ms/image", flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    parser.add_argument("--output", default=RESULTS, help="where to write the JSON results")
    parser.add_argument("--network", default="", help="a trained .keras network to stylise with")
    parser.add_argument("--stylising_only", action="store_true", help="leave training out")
    arguments = parser.parse_args()
    config = QUICK if arguments.quick else FULL
    load_before = os.getloadavg() if hasattr(os, "getloadavg") else None
    device = runtime.start_tensorflow().description
    weights_path = weights_file.resolve_weights_path(DEFAULT_VGG_MODEL_PATH, io.StringIO())

    training = None if arguments.stylising_only else time_training(config, weights_path)
    stylising = time_stylising(config, arguments.network)
    report = {
        "device": device,
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "load_average_before": load_before,
        "machine": platform.machine(),
        "network_width": config["width"],
        "vgg_weights": os.path.basename(weights_path),
        "quick": arguments.quick,
        "training": training,
        "stylising": stylising,
    }
    print(device, "on", cpu_name())
    if training:
        print(
            f"training  {training['image_size']}x{training['image_size']}, batch "
            f"{training['batch_size']}: {training['images_per_second']} images/s "
            f"({training['seconds_per_step']} s/step)"
        )
    for row in stylising:
        print(
            f"stylising {row['size']}: {row['ms_per_image']} ms/image, "
            f"{row['grey_levels_from_float32']} grey levels from float32"
        )
    os.makedirs(os.path.dirname(os.path.abspath(arguments.output)), exist_ok=True)
    with open(arguments.output, "w", encoding="utf-8") as file:
        json.dump(report, file, indent=2)
        file.write("\n")
    print(f"wrote {arguments.output}")


if __name__ == "__main__":
    main()
