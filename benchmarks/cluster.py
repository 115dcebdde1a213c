"""Throughput of `python train.py --cluster=ray` on a folder: one Ray node of 1 CPU against
two nodes of 1 CPU each, on this machine (the issue's target: at least 1.7x).

    sudo python benchmarks/cluster.py                 # 8 photos, 128 px, 50 steps
    sudo python benchmarks/cluster.py --photos 4 --steps 20 --width 64   # a smoke run

Each cluster is a fresh one in network, PID and mount namespaces of its own (the harness of
tests/test_cluster.py, tests/ray_cluster.py: root only), so that Ray sees only a loopback.
The photos are crops of images/content.jpg, the weights the real VGG-19 file where it is
in weights/, else the synthetic stand-in of the same shapes (weights/synthetic-...mat,
which one run of train.py writes), float32, BATCH_SIZE 1 (each photo a task). The time
is train.py's wall time, from its start to its end: connecting, planning, every task's
TensorFlow start-up and every step. Prints a line per cluster and the ratio, and writes
benchmarks/results/cluster.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from neural_style.media import images  # noqa: E402
from tests.ray_cluster import run_on_cluster  # noqa: E402

RESULTS_PATH = REPO_ROOT / "benchmarks" / "results" / "cluster.json"
# The real weights where they are, else the synthetic stand-in of the same shapes that a
# run writes beside the default path (made once, not timed here).
REAL_WEIGHTS = REPO_ROOT / "weights" / "imagenet-vgg-verydeep-19.mat"
SYNTHETIC_WEIGHTS = REPO_ROOT / "weights" / "synthetic-vgg-verydeep-19-v1.mat"
WEIGHTS = REAL_WEIGHTS if REAL_WEIGHTS.exists() else SYNTHETIC_WEIGHTS


def make_photos(folder: Path, count: int) -> None:
    """`count` different 4:3 crops of images/content.jpg."""
    content = images.load_image(str(REPO_ROOT / "images" / "content.jpg"), "CONTENT_IMAGE")
    height, width = content.shape[:2]
    crop_h, crop_w = height * 3 // 4, width * 3 // 4
    folder.mkdir()
    for number in range(count):
        top = (height - crop_h) * number // max(count - 1, 1)
        left = (width - crop_w) * (count - 1 - number) // max(count - 1, 1)
        crop = content[top : top + crop_h, left : left + crop_w]
        images.save_image(str(folder / f"photo{number}.jpg"), crop)


def cpu_model() -> str:
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=8)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--steps", type=int, default=50)
    options = parser.parse_args()
    runs = {}
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        make_photos(work / "photos", options.photos)
        if not WEIGHTS.exists():
            sys.exit(f"{WEIGHTS}: missing; run python train.py once to write it")
        weights = WEIGHTS.name
        args = [
            f"--content_image={work / 'photos'}",
            f"--style_image={REPO_ROOT / 'images' / 'style.jpg'}",
            f"--image_width={options.width}",
            f"--train_steps={options.steps}",
            "--precision=float32",
            "--batch_size=1",
            "--snapshot_every=0",
            f"--print_every={options.steps}",
        ]
        args.append(f"--vgg_model_path={WEIGHTS}")
        for nodes in (1, 2):
            run_dir = work / f"nodes{nodes}"
            run_dir.mkdir()
            result = run_on_cluster(
                run_dir, [*args, f"--output_image={run_dir / 'out' / 'r'}"], nodes=nodes
            )
            if result.code != 0:
                sys.exit(f"train.py failed on {nodes} node(s):\n{result.out}\n{result.err}")
            per_minute = options.photos / result.seconds * 60
            runs[nodes] = {"seconds": round(result.seconds, 1), "photos_per_minute": per_minute}
            print(
                f"{nodes} node(s) of 1 CPU: {options.photos} photos in {result.seconds:.1f} s "
                f"({per_minute:.2f} photos/min)",
                flush=True,
            )
    ratio = runs[1]["seconds"] / runs[2]["seconds"]
    print(f"two nodes against one: {ratio:.2f}x the throughput (target: at least 1.7x)")
    record = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "photos": options.photos,
        "width": options.width,
        "steps": options.steps,
        "weights": weights,
        "runs": runs,
        "two_against_one": round(ratio, 2),
    }
    RESULTS_PATH.parent.mkdir(exist_ok=True)
    RESULTS_PATH.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
