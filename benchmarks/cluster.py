"""Throughput of `python train.py --cluster=ray` on a folder: one Ray node of 1 CPU against
two nodes of 1 CPU each, on this machine (the issue's target: at least 1.7x); with
--clips, on a folder of clips; with --clip, `python stylize.py --cluster=ray` on a clip
instead, in frames per second.

    sudo python benchmarks/cluster.py                 # 8 photos, 128 px, 50 steps
    sudo python benchmarks/cluster.py --photos 4 --steps 20 --width 64   # a smoke run
    sudo python benchmarks/cluster.py --clips 4       # 4 clips of 8 frames, a clip a task
    sudo python benchmarks/cluster.py --clip          # stylize.py: 96 frames of 256x144

With --clips N, the folder holds N clips of ffmpeg's moving test pattern (--clip_frames
frames of --size each, the first frame taking --steps, each later one --frame_steps),
stylised frame by frame by the optimiser, a clip to a task.

The clip (--clip) is ffmpeg's moving test pattern (--frames at 24 per second, --size, a
440 Hz tone) through an untrained network of the paper's width (32: the speed does not
depend on the weights), float32, STYLIZE_BATCH_SIZE --clip_batch, on one node and on two,
and in this process without Ray; the time is stylize.py's own `wrote ... in` figure
(connecting, the workers' start-up, reading, stylising, writing), and frames per second
are the frames over it. Writes benchmarks/results/cluster-clip.json.

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
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from neural_style.media import images  # noqa: E402
from tests.ray_cluster import run_on_cluster  # noqa: E402

RESULTS_PATH = REPO_ROOT / "benchmarks" / "results" / "cluster.json"
CLIP_RESULTS_PATH = REPO_ROOT / "benchmarks" / "results" / "cluster-clip.json"
CLIPS_RESULTS_PATH = REPO_ROOT / "benchmarks" / "results" / "cluster-clips.json"
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


def make_clips(folder: Path, options: argparse.Namespace) -> None:
    """--clips clips of the moving test pattern."""
    from tests.support import pattern_clip

    folder.mkdir()
    for number in range(options.clips):
        pattern_clip(
            folder / f"clip{number}.mp4",
            frames=options.clip_frames,
            rate=24,
            size=options.size,
            audio_seconds=None,
        )


def cpu_model() -> str:
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def wrote_seconds(out: str) -> float:
    """stylize.py's own time: its `wrote N file(s) to ... in S s` line."""
    found = re.search(r"^wrote \d+ file\(s\) to .* in ([\d.]+) s$", out, re.M)
    if not found:
        sys.exit(f"stylize.py said no `wrote` line:\n{out}")
    return float(found[1])


def clip_benchmark(options: argparse.Namespace) -> None:
    """stylize.py on a clip: one node, two nodes, and this process without Ray."""
    from neural_style.feedforward.model import build_transformer
    from tests.ray_cluster import run_here
    from tests.support import pattern_clip

    runs = {}
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        network = str(work / "network.keras")
        build_transformer(width=32, seed=0).save(network)
        seconds = options.frames / 24
        pattern_clip(
            work / "clip.mp4",
            frames=options.frames,
            rate=24,
            size=options.size,
            audio_seconds=seconds,
        )
        args = [
            f"--network_model={network}",
            f"--stylize_input={work / 'clip.mp4'}",
            f"--stylize_batch_size={options.clip_batch}",
            "--network_precision=float32",
        ]
        for nodes in (0, 1, 2):
            run_dir = work / f"nodes{nodes}"
            run_dir.mkdir()
            output = f"--stylize_output={run_dir / 'out'}"
            if nodes:
                result = run_on_cluster(run_dir, [*args, output], nodes=nodes, script="stylize.py")
                code, out, err = result.code, result.out, result.err
            else:
                done = run_here(run_dir, "stylize.py", *args, output)
                code, out, err = done.returncode, done.stdout, done.stderr
            if code != 0:
                sys.exit(f"stylize.py failed ({nodes} node(s)):\n{out}\n{err}")
            took = wrote_seconds(out)
            name = f"{nodes} node(s) of 1 CPU" if nodes else "this process, without Ray"
            runs[nodes] = {"seconds": took, "frames_per_second": options.frames / took}
            print(
                f"{name}: {options.frames} frames in {took:.2f} s "
                f"({options.frames / took:.2f} frames/s)",
                flush=True,
            )
    record = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "frames": options.frames,
        "size": options.size,
        "batch": options.clip_batch,
        "width": 32,
        "runs": {
            ("nodes" if key else "local") + (str(key) if key else ""): value
            for key, value in runs.items()
        },
    }
    CLIP_RESULTS_PATH.parent.mkdir(exist_ok=True)
    CLIP_RESULTS_PATH.write_text(json.dumps(record, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=8)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--clips", type=int, default=0, help="a folder of N clips instead")
    parser.add_argument("--clip_frames", type=int, default=8, help="each clip's frames (--clips)")
    parser.add_argument("--frame_steps", type=int, default=20, help="a later frame's steps")
    parser.add_argument("--clip", action="store_true", help="stylize.py on a clip instead")
    parser.add_argument("--frames", type=int, default=96, help="the clip's frames (--clip)")
    parser.add_argument("--size", default="256x144", help="the clip's WxH (--clip)")
    parser.add_argument("--clip_batch", type=int, default=4, help="frames a batch (--clip)")
    options = parser.parse_args()
    if options.clip:
        clip_benchmark(options)
        return
    runs = {}
    count, unit = (options.clips, "clips") if options.clips else (options.photos, "photos")
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        if options.clips:
            make_clips(work / "photos", options)
        else:
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
            f"--frame_steps={options.frame_steps}",
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
            per_minute = count / result.seconds * 60
            runs[nodes] = {"seconds": round(result.seconds, 1), f"{unit}_per_minute": per_minute}
            print(
                f"{nodes} node(s) of 1 CPU: {count} {unit} in {result.seconds:.1f} s "
                f"({per_minute:.2f} {unit}/min)",
                flush=True,
            )
    ratio = runs[1]["seconds"] / runs[2]["seconds"]
    print(f"two nodes against one: {ratio:.2f}x the throughput (target: at least 1.7x)")
    record = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        unit: count,
        "width": options.width,
        "steps": options.steps,
        "frames": options.clip_frames if options.clips else None,
        "frame_steps": options.frame_steps if options.clips else None,
        "weights": weights,
        "runs": runs,
        "two_against_one": round(ratio, 2),
    }
    path = CLIPS_RESULTS_PATH if options.clips else RESULTS_PATH
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
