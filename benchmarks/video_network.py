"""Temporal stability of the trained (feed-forward) network's video: flicker, style, speed.

    python benchmarks/video_network.py                  # 2 networks, 4 modes (12-20 min)
    python benchmarks/video_network.py --temporal_weights 100,300 --blends 0.3,0.5
    python benchmarks/video_network.py --quick          # tiny everything (under a minute)

Trains small networks with train_network (NETWORK_IMAGE_SIZE --image_size, batch --batch,
--steps steps, the style images/style.jpg, the repo's VGG-19 or the synthetic stand-in that
train_network falls back to) on the photos of ../shared/images (tubingen, golden_gate,
hoovertowernight: photos only, linked into a temporary folder): one without the temporal
loss and one per NETWORK_TEMPORAL_WEIGHT of --temporal_weights. Each network stylises the
first --frames frames of ../shared/videos/bigbuckbunny.mp4 with stylize_input at
STYLIZE_MAX_SIZE --width, once without the flow blend and once per STYLIZE_VIDEO_BLEND of
--blends. The modes:
- none: NETWORK_TEMPORAL_WEIGHT 0, STYLIZE_VIDEO_BLEND 0;
- (a) training: NETWORK_TEMPORAL_WEIGHT w, blend 0;
- (b) blend: weight 0, STYLIZE_VIDEO_BLEND b;
- (a)+(b): both.
For each, from the .mp4 stylize.py wrote (decoded as a user sees it): the mean warping
error over frames 2..N (neural_style.media.flow.warping_error, Lai et al. 2018, with DIS flow and
Ruder et al.'s mask of the original frames, as benchmarks/video.py measures the optimiser),
the mean style and content loss of the frames (the training loss's, PerceptualLoss, with
the networks' loss layers and style) and the seconds per frame of stylize_input (decoding,
the network, the blend's flow and encoding; the first batch also compiles). The input row
is the original frames' own warping error: what the scene's motion leaves after the flow.

Prints a markdown table and writes benchmarks/results/video_network.json with the CPU, the
settings and every number.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import itertools
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

from benchmarks.machine import cpu_name, weights_path  # noqa: E402

RESULTS_PATH = os.path.join(REPO_ROOT, "benchmarks", "results", "video_network.json")
SHARED = os.path.join(REPO_ROOT, "..", "shared")
CLIP = os.path.join(SHARED, "videos", "bigbuckbunny.mp4")
PHOTOS = ("tubingen.jpg", "golden_gate.jpg", "hoovertowernight.jpg")  # not the paintings
STYLE = os.path.join(REPO_ROOT, "images", "style.jpg")
TOY_SETTINGS = os.path.join(REPO_ROOT, "tests", "toy_settings.py")
QUICK_WIDTHS = (8, 8, 16, 16, 16)  # conv channels per block of the quick run's VGG-19
FLOW_PRESET = "medium"  # the measurement's flow, as benchmarks/video.py's FLOW_PRESET


def _toy_settings():
    spec = importlib.util.spec_from_file_location("video_network_settings", TOY_SETTINGS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- inputs ----------------------------------------------------------------------------------


def link_photos(folder: str) -> str:
    """The shared photos (not the paintings) linked into `folder`/photos."""
    photos = os.path.join(folder, "photos")
    os.makedirs(photos)
    for name in PHOTOS:
        os.symlink(
            os.path.abspath(os.path.join(SHARED, "images", name)), os.path.join(photos, name)
        )
    return photos


def cut_clip(source: str, target: str, frames: int) -> str:
    """The first `frames` frames of `source`, near-losslessly re-encoded (H.264, CRF 10), so
    that every mode reads the same frames and stylize.py need not decode the rest."""
    import imageio_ffmpeg

    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-i", source]
    command += ["-frames:v", str(frames), "-c:v", "libx264", "-crf", "10", "-pix_fmt", "yuv444p"]
    command += ["-c:a", "copy", target]
    subprocess.run(command, check=True, capture_output=True, timeout=300)
    return target


def decoded_frames(path: str, size_hw: tuple[int, int] | None = None) -> list:
    """Every frame of the video at `path`, [H, W, 3] float32 0..255, resized to `size_hw`
    as stylize.py fits them."""
    from neural_style.feedforward.stylizing.fit import fit_image
    from neural_style.media import video_io

    with video_io.read_frames(video_io.probe(path, "STYLIZE_INPUT")) as frames:
        return [fit_image(frame, size_hw) if size_hw else frame for frame in frames]


def frame_flows(frames: list) -> list[tuple]:
    """(backward flow, reliability mask) of each frame from the second on."""
    from neural_style.media import flow

    pairs = []
    for previous, current in itertools.pairwise(frames):
        pair = flow.flows(previous, current, FLOW_PRESET)
        pairs.append((pair.backward, flow.reliability(pair.backward, pair.forward)))
    return pairs


# --- training and stylising --------------------------------------------------------------


def network_settings(args, folder: str, weight: float, **overrides):
    """The toy (= shipped) settings with the benchmark's sizes, for one temporal weight."""
    from neural_style.settings.network import NetworkSettings

    values = {
        "network_dataset": args.dataset,
        "network_style_image": STYLE,
        "network_style_size": args.style_size,
        "network_output_dir": os.path.join(folder, f"network-w{weight:g}"),
        "network_image_size": args.image_size,
        "network_batch_size": args.batch,
        "network_steps": args.steps,
        "network_width": args.network_width,
        "network_learning_rate": args.learning_rate,
        "network_checkpoint_every": 0,
        "network_sample_every": 0,
        "network_sample_image": os.path.join(args.dataset, PHOTOS[0]),
        "network_print_every": max(1, args.steps // 5),
        "network_temporal_weight": weight,
        "network_overwrite": True,
        "vgg_model_path": args.weights,
        **overrides,
    }
    return NetworkSettings.from_module(_toy_settings(), **values)


def train(args, folder: str, weight: float) -> dict:
    """One network; its path, its last losses and the training seconds per step."""
    from neural_style.feedforward.training.run import train_network

    settings = network_settings(args, folder, weight)
    log = io.StringIO()
    started = time.perf_counter()
    result = train_network(settings, log)
    seconds = time.perf_counter() - started
    print(f"trained NETWORK_TEMPORAL_WEIGHT {weight:g}: {seconds:.0f} s", flush=True)
    return {"model": result.model_path, "losses": result.losses, "seconds": seconds}


def stylise(args, folder: str, clip: str, model: str, weight: float, blend: float) -> tuple:
    """stylize_input of the clip; (the output's decoded frames, seconds per frame)."""
    from neural_style.feedforward.stylizing.run import stylize_input

    output = os.path.join(folder, f"stylised-w{weight:g}-b{blend:g}")
    settings = network_settings(
        args,
        folder,
        weight,
        network_model=model,
        stylize_input=clip,
        stylize_output=output,
        stylize_max_size=args.width,
        stylize_batch_size=4,
        stylize_video_blend=blend,
    )
    result = stylize_input(settings, io.StringIO())
    frames = decoded_frames(result.outputs[0])
    return frames, result.seconds / len(frames)


class FrameLosses:
    """Mean style and content loss of stylised frames, each against the style image and its
    original frame: the training loss's parts (PerceptualLoss, the networks' loss layers and
    style), built once."""

    def __init__(self, args):
        from neural_style.feedforward.training.loss import perceptual_loss
        from neural_style.feedforward.training.run_inputs import load_style_image

        settings = network_settings(args, "", 0.0)
        self.loss = perceptual_loss(settings, load_style_image(settings), args.weights)

    def __call__(self, frames: list, originals: list) -> dict[str, float]:
        import numpy as np

        sums = {"style": 0.0, "content": 0.0}
        for start in range(0, len(frames), 8):
            stylised = np.stack(frames[start : start + 8]).astype(np.float32)
            photos = np.stack(originals[start : start + 8]).astype(np.float32)
            _, parts = self.loss(stylised, photos)
            for name in sums:
                sums[name] += float(parts[name]) * len(stylised)
        return {name: value / len(frames) for name, value in sums.items()}


def warping_errors(frames: list, pairs: list) -> list[float]:
    """The warping error of each frame from the second on."""
    from neural_style.media import flow

    return [
        flow.warping_error(previous, current, backward, mask)
        for (previous, current), (backward, mask) in zip(
            itertools.pairwise(frames), pairs, strict=True
        )
    ]


def _mean(values) -> float:
    known = [value for value in values if not math.isnan(value)]
    return statistics.fmean(known) if known else math.nan


def modes(weights: list[float], blends: list[float]) -> list[tuple[str, float, float]]:
    """(name, NETWORK_TEMPORAL_WEIGHT, STYLIZE_VIDEO_BLEND) of every stylised run."""
    runs = [("none", 0.0, 0.0)]
    runs += [(f"(a) training w={w:g}", w, 0.0) for w in weights]
    runs += [(f"(b) blend b={b:g}", 0.0, b) for b in blends]
    runs += [(f"(a)+(b) w={w:g} b={b:g}", w, b) for w in weights for b in blends]
    return runs


# --- the report --------------------------------------------------------------------------------

HEADER = (
    "| mode | warping error 2..N | vs none | style loss | vs none | content loss | s/frame |\n"
    "| --- | --- | --- | --- | --- | --- | --- |"
)


def table_line(row: dict, none: dict | None) -> str:
    error_ratio = row["mean_warping_error"] / none["mean_warping_error"] if none else 1.0
    style_ratio = row["mean_style"] / none["mean_style"] if none else 1.0
    return (
        f"| {row['mode']} | {row['mean_warping_error']:.3g} | {error_ratio:.2f}x "
        f"| {row['mean_style']:.4g} | {style_ratio - 1:+.1%} | {row['mean_content']:.4g} "
        f"| {row['seconds_per_frame']:.3f} |"
    )


def table(rows: list[dict], input_error: float) -> str:
    none = rows[0]
    lines = [HEADER, *(table_line(row, none) for row in rows)]
    lines.append(f"| input frames (reference) | {input_error:.3g} | | | | | |")
    return "\n".join(lines)


def _numbers(text: str, name: str, parser, *, top: float = math.inf) -> list[float]:
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        parser.error(f"--{name}: {text!r} is not a comma list of numbers")
    if any(not (0 < value <= top) for value in values):
        parser.error(
            f"--{name}: {text!r}; give numbers above 0"
            + (f" up to {top:g}" if top < math.inf else "")
        )
    return values


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes and steps (smoke)")
    parser.add_argument("--clip", default=CLIP, help="the video (default Big Buck Bunny)")
    parser.add_argument("--frames", type=int, default=None, help="frames stylised (32; quick 6)")
    parser.add_argument("--width", type=int, default=None, help="STYLIZE_MAX_SIZE (256; quick 64)")
    parser.add_argument("--steps", type=int, default=None, help="training steps (300; quick 6)")
    parser.add_argument("--image_size", type=int, default=None, help="crop side (128; quick 32)")
    parser.add_argument("--batch", type=int, default=None, help="training batch (2)")
    parser.add_argument("--network_width", type=int, default=None, help="NETWORK_WIDTH (32; 4)")
    parser.add_argument("--style_size", type=int, default=None, help="style side (256; quick 64)")
    parser.add_argument("--learning_rate", type=float, default=0.001, help="Adam's rate")
    parser.add_argument("--temporal_weights", default="100", help="NETWORK_TEMPORAL_WEIGHTs > 0")
    parser.add_argument("--blends", default="0.3", help="STYLIZE_VIDEO_BLENDs in (0, 1]")
    parser.add_argument("--weights", default="", help="VGG-19 .mat (default: as train_network)")
    parser.add_argument("--output", default=RESULTS_PATH, help="where the JSON goes")
    args = parser.parse_args()
    quick = args.quick
    args.frames = args.frames or (6 if quick else 32)
    args.width = args.width or (64 if quick else 256)
    args.steps = args.steps or (6 if quick else 300)
    args.image_size = args.image_size or (32 if quick else 128)
    args.batch = args.batch or 2
    args.network_width = args.network_width or (4 if quick else 32)
    args.style_size = args.style_size or (64 if quick else 256)
    args.temporal_weights = _numbers(args.temporal_weights, "temporal_weights", parser)
    args.blends = _numbers(args.blends, "blends", parser, top=1.0)
    if args.frames < 2 or args.width < 16 or args.steps < 1:
        parser.error("--frames must be 2 or more, --width 16 or more, --steps 1 or more")
    if not os.path.isfile(args.clip):
        parser.error(f"--clip {args.clip}: no such file")
    missing = [name for name in PHOTOS if not os.path.isfile(os.path.join(SHARED, "images", name))]
    if missing:
        parser.error(f"{os.path.join(SHARED, 'images')}: missing {', '.join(missing)}")
    return args


def run(args, scratch: str) -> dict:
    """Every network and mode; the report."""
    args.dataset = link_photos(scratch)
    args.weights = weights_path(args.weights, QUICK_WIDTHS if args.quick else None, scratch)
    clip = cut_clip(args.clip, os.path.join(scratch, "clip.mp4"), args.frames)
    networks = {w: train(args, scratch, w) for w in [0.0, *args.temporal_weights]}
    frame_losses = FrameLosses(args)
    rows, pairs, originals = [], None, None
    print(HEADER, flush=True)
    for name, weight, blend in modes(args.temporal_weights, args.blends):
        frames, seconds = stylise(args, scratch, clip, networks[weight]["model"], weight, blend)
        if originals is None:  # the input at the size the network saw it
            originals = decoded_frames(clip, frames[0].shape[:2])
            pairs = frame_flows(originals)
        errors = warping_errors(frames, pairs)
        losses = frame_losses(frames, originals)
        row = {"mode": name, "temporal_weight": weight, "blend": blend, "frames": len(frames)}
        row.update(
            size=list(frames[0].shape[:2]),
            warping_error=errors,
            mean_warping_error=_mean(errors),
            mean_style=losses["style"],
            mean_content=losses["content"],
            seconds_per_frame=seconds,
        )
        rows.append(row)
        print(table_line(row, rows[0]), flush=True)
    input_errors = warping_errors(originals, pairs)
    training = {
        f"{w:g}": {
            "seconds": n["seconds"],
            "seconds_per_step": n["seconds"] / args.steps,
            "last_losses": n["losses"],
        }
        for w, n in networks.items()
    }
    return {"runs": rows, "input_warping_error": _mean(input_errors), "training": training}


def main() -> int:
    args = parse_arguments()
    load = os.getloadavg()
    cpu = cpu_name()
    print(f"{cpu}, {os.cpu_count()} cores, load average {load[0]:.2f} {load[1]:.2f}")
    from neural_style.errors import UserError

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="video-network-benchmark-") as scratch:
        try:
            measured = run(args, scratch)
        except UserError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
    settings = {
        name: getattr(args, name)
        for name in (
            "frames",
            "width",
            "steps",
            "image_size",
            "batch",
            "network_width",
            "style_size",
            "learning_rate",
            "temporal_weights",
            "blends",
        )
    }
    report = {
        "machine": {
            "cpu": cpu,
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_at_start": load,
            "load_average_at_end": os.getloadavg(),
        },
        "command": " ".join(["python", "benchmarks/video_network.py", *sys.argv[1:]]),
        "quick": args.quick,
        "clip": os.path.relpath(args.clip, REPO_ROOT),
        "photos": list(PHOTOS),
        "style_image": os.path.relpath(STYLE, REPO_ROOT),
        "vgg_weights": os.path.basename(args.weights),
        "flow_preset": FLOW_PRESET,
        "settings": settings,
        "wall_seconds": time.perf_counter() - started,
        **measured,
    }
    print()
    print(table(report["runs"], report["input_warping_error"]))
    print(f"wall time {report['wall_seconds'] / 60:.1f} min")
    from neural_style.files import atomic_write_text

    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    atomic_write_text(args.output, json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
