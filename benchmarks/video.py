"""Temporal consistency, quality and speed of the three ways a video's frames are optimised.

    python benchmarks/video.py                 # the real clip, 32 frames at 256 px, a van
                                               # driving through a still street, and a
                                               # synthetic pan of images/content.jpg (long)
    python benchmarks/video.py --frames 12 --skip pan,car   # the real clip only, 12 frames
    python benchmarks/video.py --skip real,pan --width 192 --modes independent,temporal \
        --motion_strip docs/video-motion.jpg   # the van, and its frames 1, 12 and 32
    python benchmarks/video.py --skip pan,car --width 192 --modes independent,temporal \
        --independent_steps 250 --independent_from KEPT/real/steps250-independent/out
                                               # against kept 250-step independent frames
    python benchmarks/video.py --frame_steps 25,50 --temporal_weights 100,1000,10000
    python benchmarks/video.py --skip pan,car --style_loss sw   # another STYLE_LOSS
    python benchmarks/video.py --skip pan,car --style_loss sw --temporal_moving_share 0
                                               # moving things restyled every frame
    python benchmarks/video.py --quick         # toy clip, toy VGG, toy steps (about a minute)

The modes, each a `neural_style.gatys.run.stylize` of the clip with the shipped settings
(tests/toy_settings.py) otherwise:
- independent: every frame from its own content (FRAME_INIT content, TEMPORAL_WEIGHT 0),
  as INIT and NOISE say, with FRAME_STEPS (or --independent_steps, such as TRAIN_STEPS for
  every frame styled as the first frame is, a fairer baseline for the motion ratio below);
- warped: a later frame starts from the earlier results moved by the optical flow
  (FRAME_INIT warped, TEMPORAL_WEIGHT 0);
- warped+temporal: that start and the temporal loss holding it there (TEMPORAL_WEIGHT w,
  one run per weight of --temporal_weights).
--independent_from and --temporal_from score a kept run's files again in place of
running that mode, so that one run is set against independent frames of 50 and of 250
steps; --motion_clip real draws the motion strip from the real clip. Each mode runs once
per value of --frame_steps. For each run the table gives the mean
warping error (Lai et al. 2018, from <OUTPUT_IMAGE>-video.json, over the run's own trusted
mask) over frames 2..N and against independent frames', the same over Ruder et al.'s mask
alone (comparable between versions of the code), the mean content and style loss at the
last step of frames 2..N (the first frame is the same run in every mode), the last frame's
style loss over frame 2's, the largest over frames 2..N of how far the moving pixels (DIS
flow above 1.5 px) are from the style's colours relative to the static ones, against the
same ratio for independent frames (a sliced 1-Wasserstein distance in RGB to
images/style.jpg, which a washed-out, smeared region cannot hide from), and the same over
the frames with MEASURABLE_MOVING moving pixels or more (too few are noise), the
first frame's seconds and the mean seconds of the later frames (the losses CSV's step
seconds summed per frame: optimisation only, flow excluded), their ratio, and the run's
wall time (flow, decoding and writing included).

Three clips: the real one (--clip, Big Buck Bunny by default); a van, generated here:
images/content.jpg as a still street and a flat white van (no texture on its roof and
sides, dark windows and wheels) driving through it at --car_speed px a frame; and a
synthetic pan, images/content.jpg seen through a window that moves --pan_pixels to the
right each frame. The generated clips are written as PNGs and encoded with
neural_style.video_write. The pan's true flow is known (backward flow +pan_pixels in x
everywhere the source is in the frame), so the benchmark also reports the median end-point
error of DIS (neural_style.media.flow.flows, FLOW_PRESET) on its first two frames. Prints
markdown tables and writes benchmarks/results/video.json with the per-frame numbers;
`--quick` makes its own 64x48 testsrc2 clip with ffmpeg and a tiny synthetic VGG.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
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

RESULTS_PATH = os.path.join(REPO_ROOT, "benchmarks", "results", "video.json")
CLIP = os.path.join(REPO_ROOT, "..", "shared", "videos", "bigbuckbunny.mp4")
CONTENT = os.path.join(REPO_ROOT, "images", "content.jpg")
STYLE = os.path.join(REPO_ROOT, "images", "style.jpg")
TOY_SETTINGS = os.path.join(REPO_ROOT, "tests", "toy_settings.py")
QUICK_WIDTHS = (8, 8, 16, 16, 16)  # conv channels per block of the quick run's VGG-19
PAN_FPS = 25.0


# --- the clips ---------------------------------------------------------------------------------


def make_test_clip(path: str, frames: int, size: str = "64x48") -> str:
    """ffmpeg's testsrc2 pattern (moving shapes and a counter) as an H.264 clip."""
    import imageio_ffmpeg

    command = [
        imageio_ffmpeg.get_ffmpeg_exe(),
        "-v",
        "error",
        "-y",
        "-f",
        "lavfi",
        "-i",
        f"testsrc2=size={size}:rate=25",
        "-frames:v",
        str(frames),
        "-pix_fmt",
        "yuv420p",
        "-c:v",
        "libx264",
        path,
    ]
    subprocess.run(command, check=True, capture_output=True)
    return path


def pan_frames(width: int, frames: int, pan: int):
    """[frames] float32 [H, W, 3] windows of images/content.jpg, each `pan` px right of the
    one before, at `width` px wide (even height, as H.264 wants)."""
    from neural_style.media import images

    photo = images.load_image(CONTENT, "CONTENT_IMAGE")
    wide = width + pan * (frames - 1)
    height = images.output_size(photo.shape[:2], width, 0)[0] // 2 * 2
    # The photo scaled to cover `height` x `wide`; what lies beyond is cut off.
    scale = max(height / photo.shape[0], wide / photo.shape[1])
    size = (math.ceil(photo.shape[0] * scale), math.ceil(photo.shape[1] * scale))
    scaled = images.resize_image(photo, size)[:height, :wide]
    return [scaled[:, t * pan : t * pan + width] for t in range(frames)]


def make_pan_clip(folder: str, width: int, frames: int, pan: int) -> tuple[str, list]:
    """The pan as PNGs in `folder` and as `folder`/pan.mp4; (clip path, frames)."""
    from neural_style.media import images, video_write

    windows = pan_frames(width, frames, pan)
    paths = []
    for index, window in enumerate(windows):
        paths.append(os.path.join(folder, f"pan-{index + 1:05d}.png"))
        images.save_image(paths[-1], window)
    clip = os.path.join(folder, "pan.mp4")
    video_write.write_video_from_pngs(paths, clip, fps=PAN_FPS, setting="CONTENT_IMAGE")
    return clip, windows


def pan_flow_error(windows: list, clip: str, pan: int, preset: str) -> dict:
    """Median end-point error (px) of DIS between the pan's first two frames against the
    true flow, over the pixels whose match lies inside the other frame: on the exact frames
    (the PNGs) and on the frames as a run decodes them from the H.264 clip."""
    from neural_style.media import video_io

    decoded = list(video_io.read_frames(video_io.probe(clip, "CONTENT_IMAGE"), max_frames=2))
    errors = {"pan_pixels": pan, "preset": preset}
    for source, (previous, current) in (("png", windows[:2]), ("decoded", decoded)):
        backward, forward = _flow_errors(previous, current, pan, preset)
        errors[f"{source}_backward"], errors[f"{source}_forward"] = backward, forward
    return errors


def _flow_errors(previous, current, pan: int, preset: str) -> tuple[float, float]:
    import numpy as np

    from neural_style.media import flow

    pair = flow.flows(previous, current, preset)
    width = previous.shape[1]
    # backward: current(x) = previous(x + pan); forward: previous(x) = current(x - pan).
    backward = pair.backward[:, : width - pan] - np.array([pan, 0.0], np.float32)
    forward = pair.forward[:, pan:] - np.array([-pan, 0.0], np.float32)
    return tuple(float(np.median(np.linalg.norm(e, axis=-1))) for e in (backward, forward))


CAR_BODY = (236.0, 238.0, 240.0)  # the van's flat white paint, RGB
CAR_DARK = (40.0, 44.0, 52.0)  # its windows, wheels and bumper
CAR_SUPERSAMPLE = 4  # drawn at 4x and shrunk by area, so its edges move by fractions of a px


def car_frames(width: int, frames: int, speed: float) -> list:
    """[frames] float32 [H, W, 3]: images/content.jpg as a still street, and a flat white van
    (a roof and sides with no texture, dark windows and wheels) driving left to right at
    `speed` px a frame along its lower third, entering from the left edge."""
    import cv2
    import numpy as np

    from neural_style.media import images

    photo = images.load_image(CONTENT, "CONTENT_IMAGE")
    height = images.output_size(photo.shape[:2], width, 0)[0] // 2 * 2
    street = images.resize_image(photo, (height, width))
    big_size = (width * CAR_SUPERSAMPLE, height * CAR_SUPERSAMPLE)
    big = cv2.resize(street, big_size, interpolation=cv2.INTER_CUBIC)
    van_w, van_h = 0.34 * width, 0.3 * height
    top = 0.62 * height - van_h
    windows = []
    for t in range(frames):
        canvas = big.copy()
        _draw_van(canvas, -0.5 * van_w + speed * t, top, van_w, van_h)
        small = cv2.resize(canvas, (width, height), interpolation=cv2.INTER_AREA)
        windows.append(np.clip(small, 0.0, 255.0).astype(np.float32))
    return windows


def _draw_van(canvas, left: float, top: float, width: float, height: float) -> None:
    """The van on `canvas` (drawn CAR_SUPERSAMPLE times larger), its box in output pixels."""
    import cv2

    def box(x0: float, y0: float, x1: float, y1: float, colour: tuple) -> None:
        corners = [round(value * CAR_SUPERSAMPLE) for value in (x0, y0, x1, y1)]
        cv2.rectangle(canvas, corners[:2], corners[2:], colour, thickness=-1)

    right, bottom = left + width, top + height
    box(left, top + 0.3 * height, right, bottom, CAR_BODY)  # the body
    box(left + 0.08 * width, top, left + 0.75 * width, top + 0.32 * height, CAR_BODY)  # roof
    windscreen = (left + 0.55 * width, top + 0.06 * height, left + 0.72 * width)
    box(*windscreen, top + 0.3 * height, CAR_DARK)
    box(left, top + 0.86 * height, right, top + 0.9 * height, CAR_DARK)  # bumper line
    radius = round(0.11 * height * CAR_SUPERSAMPLE)
    for centre in (0.2, 0.8):
        wheel = (round((left + centre * width) * CAR_SUPERSAMPLE), round(bottom * CAR_SUPERSAMPLE))
        cv2.circle(canvas, wheel, radius, CAR_DARK, thickness=-1)


def make_car_clip(folder: str, width: int, frames: int, speed: float) -> str:
    """The van's clip as PNGs in `folder` and as `folder`/car.mp4; its path."""
    from neural_style.media import images, video_write

    paths = []
    for index, window in enumerate(car_frames(width, frames, speed)):
        paths.append(os.path.join(folder, f"car-{index + 1:05d}.png"))
        images.save_image(paths[-1], window)
    clip = os.path.join(folder, "car.mp4")
    video_write.write_video_from_pngs(paths, clip, fps=PAN_FPS, setting="CONTENT_IMAGE")
    return clip


# --- the runs -----------------------------------------------------------------------------------


def _toy_settings_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("video_benchmark_settings", TOY_SETTINGS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


MODE_NAMES = ("independent", "warped", "temporal")


def modes(temporal_weights: list[float], chosen=MODE_NAMES) -> list[tuple[str, str, float]]:
    """(name, FRAME_INIT, TEMPORAL_WEIGHT) of every run of one clip and FRAME_STEPS."""
    runs = []
    if "independent" in chosen:
        runs.append(("independent", "content", 0.0))
    if "warped" in chosen:
        runs.append(("warped", "warped", 0.0))
    if "temporal" in chosen:
        runs += [(f"warped+temporal {w:g}", "warped", w) for w in temporal_weights]
    return runs


def run_mode(clip: str, prefix: str, options: dict) -> dict:
    """One stylize of `clip`'s first frames; its per-frame numbers and the summary."""
    from neural_style.gatys.run import stylize
    from neural_style.settings.gatys import Settings

    values = {
        "content_image": clip,
        "style_image": (STYLE,),
        "output_image": prefix,
        "snapshot_every": 0,
        "print_every": 100000,
        "overwrite": True,
        **options,
    }
    settings = Settings.from_module(_toy_settings_module(), **values)
    log = io.StringIO()
    started = time.perf_counter()
    stylize(settings, log)
    wall = time.perf_counter() - started
    return summarise(prefix, wall)


def _per_frame(prefix: str) -> dict[int, dict]:
    """{frame: its last step's content and style loss, and its summed step seconds}."""
    frames: dict[int, dict] = {}
    with open(f"{prefix}-losses.csv", newline="", encoding="utf-8") as file:
        for row in csv.DictReader(file):
            entry = frames.setdefault(int(row["frame"]), {"step": -1, "seconds": 0.0})
            entry["seconds"] += float(row["seconds"])
            if int(row["step"]) > entry["step"]:
                entry.update(
                    step=int(row["step"]), content=float(row["content"]), style=float(row["style"])
                )
    return frames


def _mean(values: list) -> float:
    known = [value for value in values if value is not None and not math.isnan(value)]
    return statistics.fmean(known) if known else math.nan


def summarise(prefix: str, wall: float) -> dict:
    """A run's per-frame lists (frame 1 first) and the table's numbers."""
    with open(f"{prefix}-video.json", encoding="utf-8") as file:
        report = json.load(file)
    frames = _per_frame(prefix)
    order = sorted(frames)
    seconds = [frames[f]["seconds"] for f in order]
    later = seconds[1:]
    first = seconds[0] if seconds else math.nan
    each_later = _mean(later)
    return {
        "frames": len(order),
        "size": report["size"],
        "warping_error": report["warping_error"],
        "content": [frames[f]["content"] for f in order],
        "style": [frames[f]["style"] for f in order],
        "seconds": seconds,
        "wall_seconds": wall,
        "mean_warping_error": _mean(report["warping_error"][1:]),
        "mean_content": _mean([frames[f]["content"] for f in order[1:]]),
        "mean_style": _mean([frames[f]["style"] for f in order[1:]]),
        "first_seconds": first,
        "later_seconds_per_frame": each_later,
        "later_over_first": each_later / first if first else math.nan,
    }


# Frames with fewer moving pixels than this are left out of the guarded maximum: on a frame
# of Big Buck Bunny, the sliced distance of 50 random pixels varies by 24% (coefficient of
# variation over 20 draws), of 200 by 11%, of 500 by 10% and of 1000 by 6%, so fewer than
# 500 cannot tell a ratio of 1.2 from noise.
MEASURABLE_MOVING = 500
SLICES = 64  # random RGB directions of the sliced Wasserstein distance
QUANTILES = 256  # the points at which each slice's two distributions are compared


def sliced_wasserstein(pixels, reference, seed: int = 0) -> float:
    """The sliced 1-Wasserstein distance between two sets of RGB values ([N, 3] and [M, 3],
    0..255): the mean over SLICES fixed random unit directions of the mean absolute gap
    between the two sets' quantiles along that direction. It compares colour distributions:
    a pale, washed-out region is far from a colourful style however its texture looks."""
    import numpy as np

    directions = np.random.default_rng(seed).normal(size=(3, SLICES))
    directions /= np.linalg.norm(directions, axis=0, keepdims=True)
    levels = (np.arange(QUANTILES) + 0.5) / QUANTILES
    ours = np.quantile(np.asarray(pixels, np.float64) @ directions, levels, axis=0)
    theirs = np.quantile(np.asarray(reference, np.float64) @ directions, levels, axis=0)
    return float(np.mean(np.abs(ours - theirs)))


def motion_metrics(frames_folder: str, clip: str, count: int, preset: str) -> dict:
    """Per frame 2..count (1-based), how far the moving and the static pixels are from the
    style's colours: each region's sliced_wasserstein to images/style.jpg, where the moving
    region is the pixels whose DIS backward flow between the original frames (at the run's
    size) exceeds flow.MOVING_DISTANCE (1.5 px: the pixels TEMPORAL_MOVING_SHARE holds).
    Lists with None for frame 1, and for a frame with fewer than 50 moving or static pixels.
    Also each frame's warping error over Ruder et al.'s mask alone (flow.reliability), which
    does not change with the code's own idea of a trusted flow, so that runs of different
    versions compare."""
    import numpy as np

    from neural_style.media import flow, images, video_io

    style = images.load_image(STYLE, "STYLE_IMAGE")
    style = images.resize_image(style, images.output_size(style.shape[:2], 256, 0))
    style_pixels = style.reshape(-1, 3)
    info = video_io.probe(clip, "CONTENT_IMAGE")
    originals = list(video_io.read_frames(info, max_frames=count))
    moving, static, moving_share, ruder_error = [None], [None], [None], [None]
    moving_pixels = [None]
    previous = previous_result = None
    for index, original in enumerate(originals):
        result = images.load_image(os.path.join(frames_folder, f"frame-{index + 1:05d}.png"), "x")
        content = images.resize_image(original, result.shape[:2])
        if previous is not None:
            pair = flow.flows(previous, content, preset)
            reliable = flow.reliability(pair.backward, pair.forward)
            ruder_error.append(flow.warping_error(previous_result, result, pair.backward, reliable))
            mask = np.linalg.norm(pair.backward, axis=-1) > flow.MOVING_DISTANCE
            moving_share.append(float(mask.mean()))
            moving_pixels.append(int(mask.sum()))
            if mask.sum() >= 50 and (~mask).sum() >= 50:
                moving.append(sliced_wasserstein(result[mask], style_pixels))
                static.append(sliced_wasserstein(result[~mask], style_pixels))
            else:
                moving.append(None)
                static.append(None)
        previous, previous_result = content, result
    return {
        "moving_distance": moving,
        "static_distance": static,
        "moving_share": moving_share,
        "moving_pixels": moving_pixels,
        "ruder_warping_error": ruder_error,
    }


def _relative_motion(rows: list[dict]) -> None:
    """Each run's moving/static distance ratio per frame, divided by the independent run's of
    the same clip and steps (1: moving things are as styled as when every frame is fresh);
    its maximum over frames 2..N, and the last frame's style loss over frame 2's."""
    for row in rows:
        style = row["style"]
        row["style_last_over_2"] = style[-1] / style[1] if len(style) > 1 else math.nan
        row["motion_ratio"] = [
            m / s if m is not None and s else None
            for m, s in zip(row["moving_distance"], row["static_distance"], strict=True)
        ]
    for row in rows:
        base = next(
            (
                other
                for other in rows
                if other["mode"] == "independent"
                and other["clip"] == row["clip"]
                and other["frame_steps"] == row["frame_steps"]
            ),
            None,
        )
        if base is None:
            row["motion_vs_independent"], row["max_motion_vs_independent"] = [], math.nan
            continue
        relative = [
            r / b if r is not None and b else None
            for r, b in zip(row["motion_ratio"], base["motion_ratio"], strict=True)
        ]
        row["motion_vs_independent"] = relative
        known = [value for value in relative if value is not None]
        row["max_motion_vs_independent"] = max(known) if known else math.nan
        # The same over the frames with MEASURABLE_MOVING moving pixels or more, beside it
        # (not instead of it): how many frames that leaves is in the table too.
        enough = [
            value
            for value, pixels in zip(relative, row["moving_pixels"], strict=True)
            if value is not None and pixels >= MEASURABLE_MOVING
        ]
        row["max_motion_vs_independent_measurable"] = max(enough) if enough else math.nan
        row["frames_measurable"] = len(enough)
        row["warping_vs_independent"] = row["mean_warping_error"] / base["mean_warping_error"]
        row["ruder_warping_vs_independent"] = _mean(row["ruder_warping_error"]) / _mean(
            base["ruder_warping_error"]
        )


def run_clip(name: str, clip: str, folder: str, base: dict, args) -> list[dict]:
    """Every mode at every FRAME_STEPS on one clip, a table line printed as each ends."""
    rows = []
    for frame_steps in args.frame_steps:
        for mode, frame_init, weight in modes(args.temporal_weights, args.modes):
            label = mode.replace(" ", "-").replace("+", "-")
            prefix = os.path.join(folder, name, f"steps{frame_steps}-{label}", "out")
            steps = frame_steps
            if mode == "independent" and args.independent_steps:
                # Every frame styled as the first is (TRAIN_STEPS, say): the baseline of what
                # a user gets from independent frames at full quality. The row still belongs
                # to this FRAME_STEPS, whose runs it is the baseline of.
                steps = args.independent_steps
                prefix = os.path.join(folder, name, f"steps{steps}-{label}", "out")
            options = {
                **base,
                "frame_steps": steps,
                "frame_init": frame_init,
                "temporal_weight": weight,
            }
            row = {"clip": name, "mode": mode, "frame_steps": frame_steps, "clip_path": clip}
            row["temporal_weight"] = weight
            row["steps_per_frame"] = steps
            reused = args.independent_from if mode == "independent" else ""
            if mode.startswith("warped+temporal"):
                reused = args.temporal_from
            if reused:
                # An earlier run's files are scored again: independent frames do not depend
                # on the temporal code, and a temporal run can be scored against another
                # baseline (its -video.json error is over that version's mask).
                prefix = reused
                row.update(summarise(prefix, math.nan), reused=prefix)
            else:
                row.update(run_mode(clip, prefix, options))
            row["frames_folder"] = f"{prefix}-frames"
            row.update(motion_metrics(row["frames_folder"], clip, row["frames"], args.preset))
            _relative_motion([*rows, row])
            rows.append(row)
            print(table_line(row), flush=True)
    return rows


# --- the strip -----------------------------------------------------------------------------------

STRIP_GAIN = 4.0  # the error map's brightness: |difference| x this


def write_strip(path: str, rows: list[dict], frame: int, preset: str) -> None:
    """One row per run of the first clip at its first FRAME_STEPS: frame t-1, frame t, and
    |frame t - frame t-1 moved by the flow| x STRIP_GAIN where the flow is reliable (black:
    no flicker). Original frames on top, for reference."""
    import numpy as np

    from neural_style.media import flow, images

    chosen = [row for row in rows if row["clip"] == rows[0]["clip"]]
    chosen = [row for row in chosen if row["frame_steps"] == chosen[0]["frame_steps"]]

    def frame_image(row: dict, index: int) -> np.ndarray:
        name = os.path.join(row["frames_folder"], f"frame-{index:05d}.png")
        return images.load_image(name, "strip")

    lines = []
    for row in chosen:
        previous, current = frame_image(row, frame - 1), frame_image(row, frame)
        lines.append((row["mode"], previous, current))
    originals = _original_frames(rows[0], frame, previous.shape[:2])
    pair = flow.flows(originals[0], originals[1], preset)
    mask = flow.reliability(pair.backward, pair.forward)[..., None]
    tiles = [[originals[0], originals[1], np.zeros_like(originals[0])]]
    for _, previous, current in lines:
        error = np.abs(current - flow.warp(previous, pair.backward)) * mask * STRIP_GAIN
        tiles.append([previous, current, np.clip(error, 0, 255)])
    gap = 4
    height, width = previous.shape[:2]
    strip = np.full(
        (len(tiles) * (height + gap) - gap, 3 * (width + gap) - gap, 3), 255.0, np.float32
    )
    for r, line in enumerate(tiles):
        for c, tile in enumerate(line):
            top, left = r * (height + gap), c * (width + gap)
            strip[top : top + height, left : left + width] = tile
    images.save_image(path, strip)
    print(f"wrote {path}: rows original, " + ", ".join(mode for mode, _, _ in lines))


def write_motion_strip(
    path: str, rows: list[dict], frames: tuple[int, ...], before: str = "", clip: str = "car"
) -> None:
    """Frames `frames` (1-based) of the `clip` clip (car or real), one column each: the
    original, then one row per run of that clip at its first FRAME_STEPS, and with `before`
    (a frames folder of an earlier run, such as the code before a change) a row of that
    run's frames too."""
    import numpy as np

    from neural_style.media import images

    chosen = [row for row in rows if row["clip"].startswith(clip)]
    if not chosen:
        raise SystemExit(f"--motion_strip needs the {clip} clip: leave {clip} out of --skip")
    chosen = [row for row in chosen if row["frame_steps"] == chosen[0]["frame_steps"]]
    folders = [(row["mode"], row["frames_folder"]) for row in chosen]
    if before:
        folders.insert(1, ("before", before))

    def load(folder: str, index: int) -> np.ndarray:
        return images.load_image(os.path.join(folder, f"frame-{index:05d}.png"), "strip")

    size = load(folders[0][1], frames[0]).shape[:2]
    originals = _original_frames({"clip_path": chosen[0]["clip_path"]}, max(frames), size, 0)
    tiles = [[originals[index - 1] for index in frames]]
    tiles += [[load(folder, index) for index in frames] for _, folder in folders]
    gap = 4
    height, width = size
    strip = np.full(
        (len(tiles) * (height + gap) - gap, len(frames) * (width + gap) - gap, 3),
        255.0,
        np.float32,
    )
    for r, line in enumerate(tiles):
        for c, tile in enumerate(line):
            top, left = r * (height + gap), c * (width + gap)
            strip[top : top + height, left : left + width] = tile
    images.save_image(path, strip)
    labels = ", ".join(label for label, _ in folders)
    print(f"wrote {path}: frames {', '.join(map(str, frames))}; rows original, {labels}")


def _original_frames(row: dict, frame: int, size: tuple[int, int], first: int | None = None):
    """Frames `first`..`frame` (0-based first; default frame t-1 and t) of the run's clip at
    the size the run stylised them."""
    from neural_style.media import images, video_io

    first = frame - 2 if first is None else first
    info = video_io.probe(row["clip_path"], "strip")
    frames = list(video_io.read_frames(info, max_frames=frame))[first:frame]
    return [images.resize_image(f, size) for f in frames]


# --- the report --------------------------------------------------------------------------------

HEADER = (
    "| clip | frame steps | mode | warping error 2..N | vs independent | Ruder-mask error "
    "vs independent | content 2..N "
    "| style 2..N | style N / style 2 | moving/static vs independent, max 2..N "
    f"| the same over frames with {MEASURABLE_MOVING}+ moving px (frames) "
    "| frame 1 s | later s/frame | later/first | wall s |\n"
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
)


def table_line(row: dict) -> str:
    return (
        f"| {row['clip']} | {row['frame_steps']} | {row['mode']} "
        f"| {row['mean_warping_error']:.3g} | {row.get('warping_vs_independent', math.nan):.3f} "
        f"| {row.get('ruder_warping_vs_independent', math.nan):.3f} "
        f"| {row['mean_content']:.4g} | {row['mean_style']:.4g} "
        f"| {row.get('style_last_over_2', math.nan):.3f} "
        f"| {row.get('max_motion_vs_independent', math.nan):.3f} "
        f"| {row.get('max_motion_vs_independent_measurable', math.nan):.3f} "
        f"({row.get('frames_measurable', 0)}) "
        f"| {row['first_seconds']:.2f} "
        f"| {row['later_seconds_per_frame']:.2f} | {row['later_over_first']:.3f} "
        f"| {row['wall_seconds']:.1f} |"
    )


def table(rows: list[dict]) -> str:
    return "\n".join([HEADER, *(table_line(row) for row in rows)])


def _numbers(text: str, kind, name: str, parser) -> list:
    try:
        values = [kind(part) for part in text.split(",") if part.strip()]
    except ValueError:
        what = "whole numbers" if kind is int else "numbers"
        parser.error(f"--{name}: {text!r} is not a comma list of {what}")
    if not values or any(value < (1 if kind is int else 0) for value in values):
        wanted = "whole numbers of 1 or more" if kind is int else "numbers of 0 or more"
        parser.error(f"--{name}: {text!r}; give {wanted}, e.g. 50 or 25,50")
    return values


def parse_arguments() -> argparse.Namespace:
    from neural_style.settings.gatys import STYLE_LOSS_CHOICES

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="toy clip, VGG and steps (smoke)")
    parser.add_argument("--clip", default=None, help="the real clip (default Big Buck Bunny)")
    parser.add_argument("--frames", type=int, default=None, help="frames per run (32; quick 6)")
    parser.add_argument("--width", type=int, default=None, help="frame width, px (256; quick 64)")
    parser.add_argument("--train_steps", type=int, default=None, help="first frame's steps")
    parser.add_argument("--frame_steps", default=None, help="later frames' steps, comma list")
    parser.add_argument(
        "--temporal_weights",
        default="",
        help="TEMPORAL_WEIGHTs to sweep (default: the shipped one)",
    )
    parser.add_argument("--weights", default="", help="VGG-19 .mat (default: as train.py)")
    parser.add_argument(
        "--style_loss",
        default=None,
        choices=STYLE_LOSS_CHOICES,
        help="STYLE_LOSS of every mode (default: the shipped settings')",
    )
    parser.add_argument(
        "--temporal_moving_share",
        type=float,
        default=None,
        help="TEMPORAL_MOVING_SHARE of every mode (default: the shipped settings')",
    )
    parser.add_argument("--pan_pixels", type=int, default=None, help="pan per frame (4; quick 2)")
    parser.add_argument("--skip", default="", help="clips to skip: real,pan,car")
    parser.add_argument("--car_speed", type=float, default=3.0, help="the van's px a frame")
    parser.add_argument(
        "--modes", default=",".join(MODE_NAMES), help="modes to run: independent,warped,temporal"
    )
    parser.add_argument(
        "--strip", default="", help="write a side-by-side strip of the real clip's runs here"
    )
    parser.add_argument("--strip_frame", type=int, default=16, help="the strip's frame t (1-based)")
    parser.add_argument(
        "--motion_strip", default="", help="write a clip's frames side by side here"
    )
    parser.add_argument(
        "--motion_clip", default="car", choices=("car", "real"), help="the motion strip's clip"
    )
    parser.add_argument(
        "--motion_frames", default="1,12,32", help="the motion strip's frames (1-based)"
    )
    parser.add_argument(
        "--before", default="", help="a frames folder of an earlier run for the motion strip"
    )
    parser.add_argument(
        "--independent_from",
        default="",
        help="score this kept run's prefix (<--keep>/<clip>/steps50-independent/out) as the "
        "independent mode of the one clip instead of running it",
    )
    parser.add_argument(
        "--temporal_from",
        default="",
        help="score this kept run's prefix (<--keep>/<clip>/steps50-warped-temporal-10/out) as "
        "the temporal mode of the one clip instead of running it",
    )
    parser.add_argument(
        "--independent_steps",
        type=int,
        default=0,
        help="FRAME_STEPS of the independent frames (default: the same as the other modes'; "
        "give TRAIN_STEPS for every frame styled as the first is)",
    )
    parser.add_argument("--keep", default="", help="keep the clips and frames in this folder")
    parser.add_argument("--output", default=RESULTS_PATH, help="where the JSON goes")
    args = parser.parse_args()
    quick = args.quick
    args.frames = args.frames or (6 if quick else 32)
    args.width = args.width or (64 if quick else 256)
    args.pan_pixels = args.pan_pixels or (2 if quick else 4)
    steps = args.frame_steps or ("4" if quick else "50")
    args.frame_steps = _numbers(steps, int, "frame_steps", parser)
    weights = args.temporal_weights or str(_toy_settings_module().TEMPORAL_WEIGHT)
    args.temporal_weights = _numbers(weights, float, "temporal_weights", parser)
    args.preset = _toy_settings_module().FLOW_PRESET
    args.motion_frames = tuple(_numbers(args.motion_frames, int, "motion_frames", parser))
    if args.motion_strip and max(args.motion_frames) > args.frames:
        parser.error(f"--motion_frames {max(args.motion_frames)} is past --frames {args.frames}")
    args.skip = {part for part in args.skip.split(",") if part}
    args.modes = {part for part in args.modes.split(",") if part}
    if not args.modes or args.modes - set(MODE_NAMES):
        parser.error(f"--modes {','.join(sorted(args.modes))}: choose from {', '.join(MODE_NAMES)}")
    if args.strip and not 2 <= args.strip_frame <= args.frames:
        parser.error(f"--strip_frame {args.strip_frame} must be 2..--frames ({args.frames})")
    if args.frames < 2 or args.width < 16 or args.pan_pixels < 1:
        parser.error("--frames must be 2 or more, --width 16 or more, --pan_pixels 1 or more")
    if args.pan_pixels >= args.width:
        parser.error(f"--pan_pixels {args.pan_pixels} must be less than --width {args.width}")
    clip = args.clip or CLIP
    if not quick and "real" not in args.skip and not os.path.isfile(clip):
        parser.error(f"--clip {clip}: no such file; give a video, or --skip real")
    from neural_style.media.images import VIDEO_SUFFIXES

    if not quick and "real" not in args.skip and not clip.lower().endswith(VIDEO_SUFFIXES):
        parser.error(f"--clip {clip}: not a video; give one of {', '.join(VIDEO_SUFFIXES)}")
    args.clip = os.path.abspath(clip)
    return args


@contextlib.contextmanager
def _scratch_folder(keep: str):
    """Where the clips and runs go: `keep` (--keep), left in place, or a temporary folder."""
    if keep:
        os.makedirs(keep, exist_ok=True)
        yield os.path.abspath(keep)
        return
    with tempfile.TemporaryDirectory(prefix="video-benchmark-") as scratch:
        yield scratch


def main() -> int:
    args = parse_arguments()
    toy = _toy_settings_module()
    train_steps = args.train_steps or (10 if args.quick else toy.TRAIN_STEPS)
    load = os.getloadavg()
    print(f"{cpu_name()}, {os.cpu_count()} cores, load average {load[0]:.2f} {load[1]:.2f}")
    from neural_style.errors import UserError

    with _scratch_folder(args.keep) as scratch:
        try:
            weights = weights_path(args.weights, QUICK_WIDTHS if args.quick else None, scratch)
            base = {
                "vgg_model_path": weights,
                "image_width": args.width,
                "train_steps": train_steps,
                "video_max_frames": args.frames,
                "style_loss": args.style_loss or toy.STYLE_LOSS,
                "temporal_moving_share": (
                    toy.TEMPORAL_MOVING_SHARE
                    if args.temporal_moving_share is None
                    else args.temporal_moving_share
                ),
            }
            report = {
                "machine": {
                    "cpu": cpu_name(),
                    "cpu_count": os.cpu_count(),
                    "python": platform.python_version(),
                    "load_average_at_start": load,
                },
                "quick": args.quick,
                "weights": weights,
                "settings": {**base, "flow_preset": toy.FLOW_PRESET, "precision": toy.PRECISION},
                "runs": [],
            }
            clips = []
            if "real" not in args.skip:
                clip = args.clip
                if args.quick:
                    clip = make_test_clip(os.path.join(scratch, "testsrc2.mp4"), args.frames)
                clips.append(("testsrc2" if args.quick else "real", clip))
            if "car" not in args.skip:
                car_clip = make_car_clip(scratch, args.width, args.frames, args.car_speed)
                clips.append((f"car {args.car_speed:g}px", car_clip))
            if "pan" not in args.skip:
                pan_clip, windows = make_pan_clip(scratch, args.width, args.frames, args.pan_pixels)
                report["pan_flow"] = pan_flow_error(
                    windows, pan_clip, args.pan_pixels, toy.FLOW_PRESET
                )
                clips.append((f"pan {args.pan_pixels}px", pan_clip))
            print(HEADER, flush=True)
            for name, clip in clips:
                report["runs"] += run_clip(name, clip, scratch, base, args)
            if args.motion_strip:
                write_motion_strip(
                    args.motion_strip,
                    report["runs"],
                    args.motion_frames,
                    args.before,
                    args.motion_clip,
                )
            if args.strip:
                write_strip(args.strip, report["runs"], args.strip_frame, toy.FLOW_PRESET)
        except UserError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
    for row in report["runs"]:
        row.pop("frames_folder", None)  # gone with the scratch folder
        row.pop("clip_path", None)
    report["load_average_at_end"] = os.getloadavg()
    print()
    print(table(report["runs"]))
    if "pan_flow" in report:
        flow = report["pan_flow"]
        print(
            f"\nDIS flow ({flow['preset']}) against the known pan of {flow['pan_pixels']} "
            "px/frame, median end-point error of frames 1-2:"
        )
        for source in ("png", "decoded"):
            print(
                f"  {source} frames: {flow[f'{source}_backward']:.3f} px backward, "
                f"{flow[f'{source}_forward']:.3f} px forward"
            )
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, "w", encoding="utf-8") as stream:
        json.dump(report, stream, indent=2)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
