"""Applying a trained network: an image, a folder of images, or a video, in one pass each.

    python stylize.py --network_model=output/network/network.keras --stylize_input=me.jpg

`stylize_input(settings)` picks by STYLIZE_INPUT: a folder stylises every JPEG and PNG
below it, a video file (.mp4, .mov, .avi, .mkv, .webm, .m4v) every frame, anything else is
read as one image. Outputs go to the STYLIZE_OUTPUT folder under the input's own name
(a folder's sub-folders are kept); a video is written as `<name>.mp4`, H.264, at the input's
frame rate and without audio, through imageio's own ffmpeg (`pip install imageio
imageio-ffmpeg`, the `video` extra).

`Stylizer` is the network behind one compiled function that takes any batch size and
image size, so a folder of mixed sizes compiles once. Shapes: [B, H, W, 3] float32 RGB in
0..255 in and out.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from typing import NamedTuple, TextIO

import keras
import numpy as np
import tensorflow as tf

from neural_style import images
from neural_style.config import NetworkSettings
from neural_style.errors import UserError
from neural_style.feedforward import data
from neural_style.feedforward.model import MIN_SIDE, load_network
from neural_style.reporting import format_duration

VIDEO_EXTENSIONS = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v")


class Stylizer:
    """A trained network, compiled once for every input size and batch size."""

    def __init__(self, model: keras.Model, preserve_colors: bool = False):
        self.model = model
        self.preserve_colors = preserve_colors
        self._forward = tf.function(
            lambda photos: model(photos, training=False),
            input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)],
        )

    def __call__(self, photos: np.ndarray) -> np.ndarray:
        """[B, H, W, 3] -> [B, H, W, 3], float32 0..255; colours kept if asked."""
        photos = np.asarray(photos, dtype=np.float32)
        if photos.ndim != 4 or photos.shape[-1] != 3:
            raise ValueError(f"expected images of shape [B, H, W, 3], got {photos.shape}")
        stylised = np.clip(self._forward(tf.constant(photos)).numpy(), 0.0, 255.0)
        if self.preserve_colors:
            from neural_style.colors import preserve_colors

            stylised = np.stack(
                [preserve_colors(out, photo) for out, photo in zip(stylised, photos, strict=True)]
            )
        return stylised


class StylizeResult(NamedTuple):
    outputs: list[str]  # files written
    skipped: dict[str, str]  # inputs of a folder that could not be read, and why
    seconds: float  # wall time


def open_stylizer(settings: NetworkSettings) -> Stylizer:
    """The network at NETWORK_MODEL, ready to apply.

    Raises:
      UserError: the file is missing or not a network saved by train_network.py.
    """
    path = settings.network_model
    fix = "train one with python train_network.py, or set NETWORK_MODEL (--network_model)"
    if not os.path.isfile(path):
        raise UserError(f"{path}: no such network file; {fix}")
    try:
        model = load_network(path)
    except Exception as error:  # Keras raises many kinds for a damaged or foreign file
        reason = " ".join(str(error).split())[:200] or type(error).__name__
        raise UserError(f"{path}: not a network this tool can load ({reason}); {fix}") from None
    return Stylizer(model, preserve_colors=settings.stylize_preserve_colors)


def stylize_input(settings: NetworkSettings, stream: TextIO | None = None) -> StylizeResult:
    """Stylises STYLIZE_INPUT into STYLIZE_OUTPUT, as `python stylize.py` does."""
    stream = stream or sys.stdout
    source = settings.stylize_input
    if not os.path.exists(source):
        raise UserError(
            f"{source}: no such file or folder; set STYLIZE_INPUT in settings.py or pass "
            "--stylize_input=PATH (an image, a folder of images or a video)"
        )
    stylizer = open_stylizer(settings)
    started = time.perf_counter()
    if os.path.isdir(source):
        outputs, skipped = stylize_folder(stylizer, settings, stream)
    elif source.lower().endswith(VIDEO_EXTENSIONS):
        outputs, skipped = [stylize_video(stylizer, settings, stream)], {}
    else:
        image = _fit(images.load_image(source, "STYLIZE_INPUT"), settings.stylize_max_size)
        path = os.path.join(settings.stylize_output, _output_name(os.path.basename(source)))
        images.save_image(path, stylizer(image[np.newaxis])[0])
        outputs, skipped = [path], {}
    seconds = time.perf_counter() - started
    print(
        f"wrote {len(outputs)} file(s) to {settings.stylize_output} in {seconds:.2f} s", file=stream
    )
    return StylizeResult(outputs, skipped, seconds)


def stylize_folder(
    stylizer: Stylizer, settings: NetworkSettings, stream: TextIO
) -> tuple[list[str], dict[str, str]]:
    """Every image below the folder, in batches of same-sized images; unreadable files are
    skipped and reported, never a crash."""
    folder = settings.stylize_input
    paths = data.list_images(folder, setting="STYLIZE_INPUT")
    outputs: list[str] = []
    skipped: dict[str, str] = {}
    pending: list[tuple[str, np.ndarray]] = []

    def flush() -> None:
        stylised = stylizer(np.stack([image for _, image in pending]))
        for (path, _), result in zip(pending, stylised, strict=True):
            relative = os.path.relpath(path, folder)
            target = os.path.join(settings.stylize_output, _output_name(relative))
            images.save_image(target, result)
            outputs.append(target)
        pending.clear()

    for path in paths:
        try:
            image = _fit(images.load_image(path, "STYLIZE_INPUT"), settings.stylize_max_size)
        except UserError as error:
            skipped[path] = str(error).removeprefix(f"{path}: ").split("; ")[0]
            print(f"skipped {path}: {skipped[path]}", file=stream)
            continue
        if pending and (
            pending[0][1].shape != image.shape or len(pending) == settings.stylize_batch_size
        ):
            flush()
        pending.append((path, image))
    if pending:
        flush()
    if not outputs:
        raise UserError(f"{folder}: none of its {len(paths)} image files could be read")
    return outputs, skipped


def stylize_video(stylizer: Stylizer, settings: NetworkSettings, stream: TextIO) -> str:
    """Every frame of the video, in batches; the same frame rate, no audio. Returns the
    output path, `<STYLIZE_OUTPUT>/<name>.mp4`."""
    imageio = _import_imageio()
    source = settings.stylize_input
    name = os.path.splitext(os.path.basename(source))[0] + ".mp4"
    target = os.path.join(settings.stylize_output, name)
    os.makedirs(settings.stylize_output, exist_ok=True)
    try:
        reader = imageio.get_reader(source, "ffmpeg")
        metadata = reader.get_meta_data()
    except Exception as error:
        raise UserError(f"{source}: cannot read the video ({_one_line(error)})") from None
    fps = float(metadata.get("fps") or 25.0)
    expected = _frame_estimate(metadata, fps)
    partial = os.path.join(settings.stylize_output, f".{name}.partial.mp4")
    # macro_block_size 2: H.264 needs even sides, and an odd side is padded by one pixel
    # rather than resized to a multiple of 16.
    writer = imageio.get_writer(
        partial, "ffmpeg", fps=fps, codec="libx264", quality=8, macro_block_size=2
    )
    frames, started, last_report = 0, time.perf_counter(), time.perf_counter()
    try:
        for batch in _frame_batches(reader, settings):
            for frame in stylizer(batch):
                writer.append_data(np.clip(np.rint(frame), 0, 255).astype(np.uint8))
            frames += len(batch)
            now = time.perf_counter()
            if now - last_report >= 2.0:
                last_report = now
                print(_video_progress(frames, expected, now - started), file=stream, flush=True)
    finally:
        reader.close()
        writer.close()
    if frames == 0:
        os.remove(partial)
        raise UserError(f"{source}: the video has no frames that could be decoded")
    os.replace(partial, target)
    print(_video_progress(frames, frames, time.perf_counter() - started), file=stream)
    return target


def _frame_batches(reader, settings: NetworkSettings) -> Iterator[np.ndarray]:
    batch: list[np.ndarray] = []
    for frame in reader:
        batch.append(_fit(np.asarray(frame, dtype=np.float32)[..., :3], settings.stylize_max_size))
        if len(batch) == settings.stylize_batch_size:
            yield np.stack(batch)
            batch = []
    if batch:
        yield np.stack(batch)


def _video_progress(frames: int, expected: int | None, seconds: float) -> str:
    rate = frames / seconds if seconds > 0 else 0.0
    if expected and expected > frames and rate > 0:
        eta = f"  ETA {format_duration((expected - frames) / rate)}"
        return f"frame {frames}/~{expected}  {rate:.3g} frames/s{eta}"
    return f"frame {frames}  {rate:.3g} frames/s"


def _frame_estimate(metadata: dict, fps: float) -> int | None:
    duration = metadata.get("duration")
    if isinstance(duration, (int, float)) and duration > 0:
        return round(duration * fps)
    return None


def _fit(image: np.ndarray, max_size: int) -> np.ndarray:
    """Shrinks the image so its longer side is at most `max_size` (0 = no limit)."""
    height, width = image.shape[:2]
    if min(height, width) < MIN_SIDE:
        raise UserError(f"image is {width}x{height} pixels, below the network's {MIN_SIDE}")
    if not max_size or max(height, width) <= max_size:
        return image
    scale = max_size / max(height, width)
    size = (max(MIN_SIDE, round(height * scale)), max(MIN_SIDE, round(width * scale)))
    return images.resize_image(image, size)


def _output_name(name: str) -> str:
    """Keeps .jpg, .jpeg and .png; anything else (.webp, .tif...) is written as .png."""
    stem, extension = os.path.splitext(name)
    return name if extension.lower() in data.IMAGE_EXTENSIONS else f"{stem}.png"


def _import_imageio():
    try:
        import imageio.v2 as imageio
        import imageio_ffmpeg  # noqa: F401  (the ffmpeg binary imageio uses)
    except ImportError:
        raise UserError(
            "video needs imageio and imageio-ffmpeg: pip install -e '.[video]' "
            "(or pip install imageio imageio-ffmpeg)"
        ) from None
    return imageio


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split()) or type(error).__name__
