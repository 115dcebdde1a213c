"""Styles by region, shown: the photo's sky in one style and the rest in another, beside the
same two styles blended everywhere. Writes docs/regions.jpg.

    python benchmarks/regions.py                      # 512 px, 250 steps, about 10 minutes
    python benchmarks/regions.py --width 256 --steps 60
    python benchmarks/regions.py --time 5            # s/step with and without the masks

The masks are images/content-sky.png and its inverse images/content-ground.png, which this
script derives from images/content.jpg when they are missing: blue, bright pixels
connected to the top edge, holes filled, the edge softened by a few pixels. The styles are
images/style.jpg (sky) and images/the_scream.jpg (the town). The run uses the shipped
settings.py otherwise, so its weights are what train.py uses (the synthetic stand-in when
the real VGG-19 file is absent; the picture says which).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(HERE)
sys.path.insert(0, REPO_ROOT)

from benchmarks.machine import cpu_name  # noqa: E402

CONTENT = "images/content.jpg"
STYLES = ("images/style.jpg", "images/the_scream.jpg")
MASKS = ("images/content-sky.png", "images/content-ground.png")
PICTURE = "docs/regions.jpg"


def sky_mask(photo: np.ndarray) -> np.ndarray:
    """1 on the photo's sky: blue, bright pixels connected to the top edge, holes filled,
    softened over about 3 pixels; 0 elsewhere."""
    from scipy import ndimage

    red, blue = photo[..., 0], photo[..., 2]
    candidate = (blue - red > 45) & (blue > 130)
    labels, _ = ndimage.label(candidate)
    touching_top = np.unique(labels[0][labels[0] > 0])
    sky = ndimage.binary_fill_holes(np.isin(labels, touching_top))
    sky = ndimage.binary_opening(sky, iterations=2)
    return np.clip(ndimage.gaussian_filter(sky.astype(np.float32), 1.5), 0, 1)


def write_masks() -> None:
    """MASKS from CONTENT, unless both exist already (a user's own are kept)."""
    if all(os.path.exists(path) for path in MASKS):
        return
    photo = np.asarray(Image.open(CONTENT).convert("RGB"), np.float32)
    sky = sky_mask(photo)
    for path, mask in zip(MASKS, (sky, 1 - sky), strict=True):
        Image.fromarray(np.round(mask * 255).astype(np.uint8)).save(path)
        print(f"wrote {path}")


def stylize(width: int, steps: int, folder: str, **overrides) -> np.ndarray:
    import settings as shipped
    from neural_style.gatys import run
    from neural_style.settings.gatys import Settings

    result = run.stylize(
        Settings.from_module(
            shipped,
            content_image=CONTENT,
            style_image=STYLES,
            image_width=width,
            train_steps=steps,
            snapshot_every=0,
            output_image=os.path.join(folder, "result"),
            overwrite=True,
            **overrides,
        )
    )
    return np.asarray(Image.open(result.output_path).convert("RGB"))


def picture(width: int, steps: int) -> str:
    """photo | sky mask | the styles by region | the styles blended everywhere."""
    with tempfile.TemporaryDirectory() as folder:
        by_region = stylize(width, steps, folder, style_masks=MASKS)
        blended = stylize(width, steps, folder)
    height = by_region.shape[0]
    photo = np.asarray(Image.open(CONTENT).convert("RGB").resize((width, height)))
    mask = np.asarray(Image.open(MASKS[0]).convert("RGB").resize((width, height)))
    gap = np.full((height, 8, 3), 255, np.uint8)
    row = [photo, gap, mask, gap, by_region, gap, blended]
    Image.fromarray(np.concatenate(row, axis=1)).save(PICTURE, quality=92)
    return PICTURE


def time_steps(width: int, precision: str, repeats: int) -> dict[str, list[float]]:
    """Seconds of one loss-and-gradient evaluation (an Adam step's work) at `width`, with
    the two styles blended and by region, in alternated blocks of 3 after a warm-up."""
    import time

    import settings as shipped
    from neural_style.gatys.pipeline import Pipeline
    from neural_style.losses import masks
    from neural_style.media import images
    from neural_style.settings.gatys import Settings
    from neural_style.vgg import weights_file
    from neural_style.vgg.network import VGG19

    settings = Settings.from_module(shipped, style_image=STYLES, style_masks=MASKS)
    path = weights_file.resolve_weights_path(settings.vgg_model_path, sys.stdout)
    net = VGG19.from_mat(path, precision=precision)
    styles = [images.load_image(style, "STYLE_IMAGE") for style in STYLES]
    photo = images.load_image(CONTENT, "CONTENT_IMAGE")
    content = images.resize_image(photo, images.output_size(photo.shape[:2], width, 0))
    losses = {}
    for name, chosen in (("blended", masks.NO_MASKS), ("by region", None)):
        chosen = chosen if chosen is not None else masks.load_masks(settings, styles)
        pipeline = Pipeline(settings, net, styles, style_masks=chosen)
        losses[name] = pipeline.make_loss(net, pipeline.targets(net, 0, content), None)
    image = content[None]
    seconds: dict[str, list[float]] = {name: [] for name in losses}
    for block in range(repeats + 1):
        for name, loss in losses.items():
            start = time.perf_counter()
            for _ in range(3):
                loss.value_and_gradient(image)[1].numpy()
            if block:  # the first block traces and warms up
                seconds[name].append((time.perf_counter() - start) / 3)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--steps", type=int, default=250)
    parser.add_argument("--time", type=int, default=0, help="timed blocks (0 = the picture)")
    parser.add_argument("--precision", default="float32", help="with --time")
    arguments = parser.parse_args()
    os.chdir(REPO_ROOT)
    print(f"CPU: {cpu_name()} ({os.cpu_count()} logical CPUs)")
    write_masks()
    if not arguments.time:
        print(f"wrote {picture(arguments.width, arguments.steps)}")
        return
    import statistics

    seconds = time_steps(arguments.width, arguments.precision, arguments.time)
    for name, values in seconds.items():
        spread = ", ".join(f"{value:.3f}" for value in values)
        print(f"{name}: median {statistics.median(values):.3f} s/step ({spread})")


if __name__ == "__main__":
    main()
