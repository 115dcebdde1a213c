"""Speed, start-up and memory of a Gatys step, against a floor measured in the same run.

    python benchmarks/speed.py            # widths 256, 512, 1024, both precisions, start-up,
                                          # quality and the largest size (about 15 min)
    python benchmarks/speed.py --quick    # a smoke run at toy sizes and weights (about 1 min)

Prints a table and writes benchmarks/results/speed.json. For each content width and
precision it reports, from a fresh subprocess each (so peak RSS is that run's own):
- seconds per Adam iteration: the median over steady-state steps, warm-up excluded;
- FLOPs per iteration from the layer shapes: 2 x the conv forward FLOPs (the forward pass
  and the input gradient; no weight gradients are needed) + the Gram FLOPs (forward FᵀF
  and its one backward product), through VGG-19 up to relu5_2;
- achieved GFLOP/s, and the floor: the time of those same convs (forward and input
  gradient) and Gram products, each timed alone by a micro-benchmark on VGG's own shapes
  in float32, in the same process; the ratio of the step to that float32 floor;
- peak resident memory (ru_maxrss) of the process.
Start-up is the wall time from launching `python train.py` to the start of its first step
(and to its first progress line, which includes that step and its tracing), with the
weights cache cold (first run) and warm. The quality check runs float32, mixed_bfloat16,
and mixed_bfloat16 with its last quarter in float32 (FLOAT32_FINISH 0.25) from the same
start for the default run's 250 steps at 512x384, and scores each final image in float32
against float32 targets. The print-size check takes steps at 4096x3072 in each precision,
planned as a run plans them (in tiles when the whole image would not fit), and reports the
largest size the memory estimate allows. The full run uses the synthetic weights file,
which has the real file's shapes and fc layers (575 MB), so start-up reads a file of
honest size.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

from neural_style.names import BLOCKS, REAL_WIDTHS, VGG19_LAYERS  # noqa: E402

RESULTS_PATH = os.path.join(REPO_ROOT, "benchmarks", "results", "speed.json")
CONTENT = os.path.join(REPO_ROOT, "images", "content.jpg")
STYLE = os.path.join(REPO_ROOT, "images", "style.jpg")
CONTENT_LAYERS = ("relu4_2", "relu5_2")
STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
DEEPEST = "relu5_2"
GIB = 1024**3


# --- FLOPs from the layer shapes -------------------------------------------------------------


def layer_shapes(height: int, width: int, widths=REAL_WIDTHS) -> dict:
    """{conv name: (h, w, in, out)} up to DEEPEST, and {relu name: (h, w, c)}."""
    convs, relus, channels, h, w = {}, {}, 3, height, width
    for (block, count), out in zip(BLOCKS, widths, strict=True):
        for index in range(1, count + 1):
            convs[f"conv{block}_{index}"] = (h, w, channels, out)
            relus[f"relu{block}_{index}"] = (h, w, out)
            channels = out
        h, w = h // 2, w // 2
    deepest = VGG19_LAYERS.index(DEEPEST)
    keep = set(VGG19_LAYERS[: deepest + 1])
    return {k: v for k, v in convs.items() if k in keep}, {
        k: v for k, v in relus.items() if k in keep
    }


def iteration_flops(height: int, width: int, widths=REAL_WIDTHS) -> dict:
    convs, relus = layer_shapes(height, width, widths)
    conv_forward = sum(2 * h * w * 9 * cin * cout for h, w, cin, cout in convs.values())
    gram = sum(2 * 2 * h * w * c * c for name, (h, w, c) in relus.items() if name in STYLE_LAYERS)
    return {"conv_forward": conv_forward, "gram": gram, "total": 2 * conv_forward + gram}


# --- workers (each in its own process) -------------------------------------------------------


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def _median_time(function, repeats: int) -> float:
    function()  # warm-up: tracing, oneDNN primitive creation
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def floor_seconds(height: int, width: int, dtype: str, repeats: int, widths=REAL_WIDTHS) -> float:
    """The time of the step's convs (forward + input gradient) and Gram products alone."""
    import numpy as np
    import tensorflow as tf

    convs, relus = layer_shapes(height, width, widths)
    rng = np.random.default_rng(0)
    total = 0.0
    for h, w, cin, cout in convs.values():
        x = tf.cast(tf.constant(rng.standard_normal((1, h, w, cin), np.float32)), dtype)
        k = tf.cast(tf.constant(rng.standard_normal((3, 3, cin, cout), np.float32) * 0.05), dtype)
        dy = tf.cast(tf.constant(rng.standard_normal((1, h, w, cout), np.float32)), dtype)
        forward = tf.function(lambda x=x, k=k: tf.nn.conv2d(x, k, 1, "SAME"))
        backward = tf.function(
            lambda k=k, dy=dy, shape=x.shape: tf.nn.conv2d_transpose(dy, k, shape, 1, "SAME")
        )
        total += _median_time(lambda f=forward: f().numpy(), repeats)
        total += _median_time(lambda f=backward: f().numpy(), repeats)
    for name, (h, w, c) in relus.items():
        if name not in STYLE_LAYERS:
            continue
        flat = tf.constant(rng.standard_normal((1, h * w, c), np.float32))
        grad = tf.constant(rng.standard_normal((1, c, c), np.float32))
        gram = tf.function(lambda f=flat: tf.matmul(f, f, transpose_a=True))
        back = tf.function(lambda f=flat, g=grad: tf.matmul(f, g))
        total += _median_time(lambda f=gram: f().numpy(), repeats)
        total += _median_time(lambda f=back: f().numpy(), repeats)
    return total


def _problem(job: dict):
    """(net, loss function, content image) of the benchmark's run at job's size."""
    from neural_style.runtime import start_tensorflow

    start_tensorflow(without_keras=True)  # as train.py starts it, malloc settings included
    from neural_style.losses.gatys import LossWeights, Targets
    from neural_style.losses.targets import content_targets, style_targets
    from neural_style.media import images
    from neural_style.optimize.loss_functions import LossFunction
    from neural_style.optimize.tiling import TiledLossFunction
    from neural_style.vgg.mat import read_vgg19_mat
    from neural_style.vgg.network import VGG19
    from neural_style.vgg.tile_layout import core_side, tile_layout, tile_margin

    weights = read_vgg19_mat(job["mat"])
    net = VGG19(weights, precision=job["precision"])
    content = images.load_image(CONTENT, "CONTENT_IMAGE")
    size = images.output_size(content.shape[:2], job["width"], 0)
    content = images.resize_image(content, size)
    style = images.resize_image(images.load_image(STYLE, "STYLE_IMAGE"), size)
    loss_weights = LossWeights(
        content_layers=tuple((name, 0.5) for name in CONTENT_LAYERS),
        style_layers=tuple((name, 0.2) for name in STYLE_LAYERS),
        alpha=1.0,
        beta=500.0,
        tv_weight=0.0,
    )
    grid = tuple(job.get("grid", (1, 1)))
    layout = None
    if grid != (1, 1):
        layout = tile_layout(size, grid, tile_margin(CONTENT_LAYERS + STYLE_LAYERS))
    targets = Targets(
        content=content_targets(net, content, loss_weights, layout=layout),
        style_grams=style_targets(
            net, [style], [1.0], loss_weights, tile_side=core_side(size, grid) if layout else 0
        ),
    )
    if layout is not None:
        loss = TiledLossFunction(net, targets, loss_weights, layout)
    else:
        loss = LossFunction(net, targets, loss_weights)
    return net, loss, content, (weights, style, loss_weights)


def worker_step(job: dict) -> dict:
    """Seconds per Adam step at one size and precision, then the floor at that size."""
    from neural_style.gatys.pipeline import initial_image
    from neural_style.optimize.adam import BatchAdamOptimizer

    started = time.perf_counter()
    _, loss, content, _ = _problem(job)
    optimizer = BatchAdamOptimizer(loss, initial_image(content, 0.5, 0)[None], learning_rate=5.0)
    seconds = [result.seconds for result in optimizer.steps(job["warmup"] + job["steps"])]
    steady = seconds[job["warmup"] :]
    peak = _peak_rss()
    height, width = content.shape[:2]
    result = {
        "width": width,
        "height": height,
        "precision": job["precision"],
        "grid": list(job.get("grid", (1, 1))),
        "seconds_per_iteration": statistics.median(steady),
        "step_seconds": steady,
        "first_step_seconds": seconds[0],
        "peak_rss_bytes": peak,
        "setup_seconds": time.perf_counter() - started - sum(seconds),
    }
    if job.get("floor"):
        widths = job.get("widths", REAL_WIDTHS)
        result["floor_seconds"] = floor_seconds(height, width, "float32", job["repeats"], widths)
        if job["precision"] != "float32":
            result["precision_floor_seconds"] = floor_seconds(
                height, width, "bfloat16", job["repeats"], widths
            )
    return result


def worker_quality(job: dict) -> dict:
    """Final losses of a float32 run and of mixed-precision runs from the same start for the
    same steps, each scored in float32, and their wall times. A mixed run takes its last
    `finish` fraction of the steps in float32 (FLOAT32_FINISH), for each finish given."""
    from neural_style.gatys.pipeline import initial_image
    from neural_style.losses.gatys import Targets
    from neural_style.losses.targets import content_targets, style_targets
    from neural_style.optimize.adam import BatchAdamOptimizer
    from neural_style.optimize.loss_functions import LossFunction
    from neural_style.vgg.network import VGG19

    job32 = {**job, "precision": "float32"}
    _, reference, content, (weights, style, loss_weights) = _problem(job32)
    nets = {
        precision: VGG19(weights, precision=precision)
        for precision in ("float32", job["precision"])
    }

    def loss_in(precision):
        net = nets[precision]
        targets = Targets(
            content_targets(net, content, loss_weights),
            style_targets(net, [style], [1.0], loss_weights),
        )
        return LossFunction(nets[precision], targets, loss_weights)

    runs = [("float32", 0.0)] + [(job["precision"], finish) for finish in job["finishes"]]
    results = []
    for precision, finish in runs:
        started = time.perf_counter()
        exact = round(job["steps"] * finish) if precision != "float32" else 0
        optimizer = BatchAdamOptimizer(
            loss_in(precision), initial_image(content, 0.5, 0)[None], learning_rate=5.0
        )
        for _ in optimizer.steps(job["steps"] - exact):
            pass
        if exact:
            optimizer.use_loss(loss_in("float32"))
            for _ in optimizer.steps(exact, first=job["steps"] - exact + 1):
                pass
        seconds = time.perf_counter() - started
        parts, _ = reference.value_and_gradient(optimizer.best()[None])
        results.append(
            {
                "precision": precision,
                "float32_finish": finish,
                "final_loss_scored_in_float32": float(parts["total"]),
                "seconds": seconds,
            }
        )
    reference_run = results[0]
    for result in results:
        loss_ratio = (
            result["final_loss_scored_in_float32"] / reference_run["final_loss_scored_in_float32"]
        )
        result["relative_difference"] = loss_ratio - 1
        result["time_ratio"] = result["seconds"] / reference_run["seconds"]
    return {
        "width": int(content.shape[1]),
        "height": int(content.shape[0]),
        "steps": job["steps"],
        "runs": results,
    }


def _run_worker(kind: str, job: dict, timeout: float = 1800) -> dict:
    command = [sys.executable, os.path.abspath(__file__), f"--worker-{kind}", json.dumps(job)]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES", "")}
    if "TF_CPP_MIN_LOG_LEVEL" not in env:
        env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, env=env, check=False
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        return {"error": f"exit {done.returncode}: {' | '.join(tail)}", **job}
    return json.loads(lines[-1])


# --- the largest size -----------------------------------------------------------------------


def largest_size_run(mat: str, goal_width: int, precisions: list[str]) -> dict:
    """Steps at the goal width (a print, 4096x3072), planned as a run plans them (whole,
    or in the largest tiles that fit), and the largest size the memory estimate allows."""
    from neural_style.media import images
    from neural_style.optimize import memory

    content = images.load_image(CONTENT, "CONTENT_IMAGE")
    goal = images.output_size(content.shape[:2], goal_width, 0)
    available = memory.available_bytes()
    budget = int(available * memory.USABLE_FRACTION)
    result = {"goal": f"{goal[1]}x{goal[0]}", "available_bytes": available, "runs": []}
    for precision in precisions:
        fits = memory.largest_size((goal[0] * 8, goal[1] * 8), precision, budget)
        plan = memory.plan_step(goal, precision, available=available)
        job = {
            "mat": mat,
            "width": goal_width,
            "precision": precision,
            "warmup": 1,
            "steps": 2,
            "grid": list(plan.grid),
        }
        run = _run_worker("step", job, timeout=3600)
        run["estimate_bytes"] = plan.estimate_bytes
        run["estimated_largest"] = f"{fits[1]}x{fits[0]}" if fits else None
        result["runs"].append(run)
        print(f"largest {precision}: {json.dumps(run)}", flush=True)
    return result


# --- start-up -----------------------------------------------------------------------------


def startup_seconds(mat: str, width: int, output_dir: str, extra: list[str]) -> dict:
    """Wall time from launching `python train.py` to the start of its first step (its
    first progress line, less the time that step took, which the line shows), and to
    that line."""
    command = [
        sys.executable,
        os.path.join(REPO_ROOT, "train.py"),
        f"--vgg_model_path={mat}",
        f"--image_width={width}",
        "--train_steps=2",
        "--print_every=1",
        "--snapshot_every=0",
        f"--output_image={os.path.join(output_dir, 'startup')}",
        "--overwrite",
        *extra,
    ]
    started = time.perf_counter()
    process = subprocess.Popen(
        command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    first_line, first_step_seconds, lines = None, None, []
    for line in process.stdout:
        lines.append(line.rstrip())
        if first_line is None and line.lstrip().startswith("step"):
            first_line = time.perf_counter() - started
            timed = re.search(r"([0-9.]+) s/step", line)
            first_step_seconds = float(timed.group(1)) if timed else None
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    error = process.stderr.read().strip()
    ready = first_line - first_step_seconds if first_line and first_step_seconds else None
    return {
        "seconds_to_first_step": ready,
        "seconds_to_first_progress_line": first_line,
        "first_step_seconds": first_step_seconds,
        "peak_rss_bytes": usage.ru_maxrss * 1024,
        "exit_code": process.returncode,
        "output": lines[:4] + ([error.splitlines()[-1]] if error else []),
    }


# --- the report ----------------------------------------------------------------------------


def _table(rows: list[dict]) -> str:
    header = (
        "| size | precision | s/iter | GFLOP/iter | GFLOP/s | fp32 floor s | x fp32 floor "
        "| peak RSS GiB |\n| --- | --- | --- | --- | --- | --- | --- | --- |"
    )
    lines = [header]
    for row in rows:
        if "error" in row:
            lines.append(f"| {row.get('width')} | {row.get('precision')} | {row['error']} |")
            continue
        lines.append(
            f"| {row['width']}x{row['height']} | {row['precision']} "
            f"| {row['seconds_per_iteration']:.3f} | {row['gflop']:.0f} "
            f"| {row['gflops_per_second']:.0f} | {row.get('floor_seconds', float('nan')):.3f} "
            f"| {row.get('ratio_to_fp32_floor', float('nan')):.2f} "
            f"| {row['peak_rss_bytes'] / GIB:.2f} |"
        )
    return "\n".join(lines)


def _weights_file(quick: bool, scratch: str) -> tuple[str, tuple]:
    from neural_style.vgg.synthetic import write_synthetic_vgg19

    if quick:  # toy widths: the quick run checks the machinery, not the numbers
        widths = (8, 16, 32, 32, 32)
        path = os.path.join(scratch, "quick-vgg19.mat")
        write_synthetic_vgg19(path, widths=widths, fc_width=64, num_classes=10)
        return path, widths
    from neural_style.vgg.weights_file import SYNTHETIC_WEIGHTS_PATH

    path = os.path.join(REPO_ROOT, SYNTHETIC_WEIGHTS_PATH)
    if not os.path.exists(path):
        print(f"writing the synthetic weights to {path} (once)", flush=True)
        write_synthetic_vgg19(path)
    return path, REAL_WIDTHS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="toy sizes and weights (CI smoke)")
    parser.add_argument("--widths", default="", help="content widths, e.g. 256,512")
    parser.add_argument("--precisions", default="float32,mixed_bfloat16")
    parser.add_argument("--skip", default="", help="parts to skip: startup,quality,large")
    parser.add_argument(
        "--largest_goal", type=int, default=4096, help="width to try for print size"
    )
    parser.add_argument("--quality_width", type=int, default=0, help="quality check's width")
    parser.add_argument("--quality_steps", type=int, default=0, help="quality check's steps")
    parser.add_argument("--output", default=RESULTS_PATH, help="where the JSON goes")
    args, rest = parser.parse_known_args()
    for kind, worker in (("step", worker_step), ("quality", worker_quality)):
        if rest and rest[0] == f"--worker-{kind}":
            print(json.dumps(worker(json.loads(rest[1]))), flush=True)
            return
    if rest:
        parser.error(f"unrecognised arguments: {' '.join(rest)}")

    quick = args.quick
    widths = [int(w) for w in args.widths.split(",") if w] or (
        [64, 128] if quick else [256, 512, 1024]
    )
    precisions = [p for p in args.precisions.split(",") if p]
    skip = set(args.skip.split(","))
    steps = {64: 3, 128: 3, 256: 20, 512: 10, 1024: 5}
    load = os.getloadavg()
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as scratch:
        mat, net_widths = _weights_file(quick, scratch)
        report = {
            "machine": {
                "cpu_count": os.cpu_count(),
                "processor": platform.processor() or platform.machine(),
                "load_average_at_start": load,
                "python": platform.python_version(),
            },
            "quick": quick,
            "weights_file": {"path": mat, "bytes": os.path.getsize(mat)},
            "iterations": [],
        }
        for width in widths:
            for precision in precisions:
                job = {
                    "mat": mat,
                    "width": width,
                    "precision": precision,
                    "warmup": 1 if quick else 3,
                    "steps": steps.get(width, 3),
                    "floor": True,
                    "repeats": 2 if quick else 3,
                    "widths": list(net_widths),
                }
                row = _run_worker("step", job)
                if "error" not in row:
                    flops = iteration_flops(row["height"], row["width"], net_widths)
                    row["gflop"] = flops["total"] / 1e9
                    row["gflops_per_second"] = row["gflop"] / row["seconds_per_iteration"]
                    row["floor_gflops_per_second"] = row["gflop"] / row["floor_seconds"]
                    row["ratio_to_fp32_floor"] = row["seconds_per_iteration"] / row["floor_seconds"]
                report["iterations"].append(row)
                print(_table([row]).splitlines()[-1], flush=True)
        if "quality" not in skip and "mixed_bfloat16" in precisions:
            job = {
                "mat": mat,
                "width": args.quality_width or (widths[0] if quick else 512),
                "precision": "mixed_bfloat16",
                "finishes": [0.0, 0.1],
                "steps": args.quality_steps or (10 if quick else 250),
            }
            report["quality"] = _run_worker("quality", job)
            print(f"quality: {json.dumps(report['quality'])}", flush=True)
        if "large" not in skip and not quick:
            report["largest"] = largest_size_run(mat, args.largest_goal, precisions)
            print(f"largest: {json.dumps(report['largest'])}", flush=True)
        if "startup" not in skip:
            # The cache beside the .mat is removed once, so the first run is cold.
            from neural_style.vgg.weights_cache import cache_path

            if os.path.exists(cache_path(mat)):
                os.remove(cache_path(mat))
            start_width = widths[0] if quick else 512  # the default IMAGE_WIDTH
            report["startup"] = {
                "cold": startup_seconds(mat, start_width, scratch, []),
                "warm": [startup_seconds(mat, start_width, scratch, []) for _ in range(2)],
            }
            print(f"startup: {json.dumps(report['startup'])}", flush=True)
        report["load_average_at_end"] = os.getloadavg()
    print(_table(report["iterations"]))
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, "w") as stream:
        json.dump(report, stream, indent=2)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
