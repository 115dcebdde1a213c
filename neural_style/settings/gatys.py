"""The typed settings of one run, and the checks that turn a bad value into one clear line.

`Settings` is what the library takes; nothing below `train.py` reads flags or settings.py.
Build one from a settings module (`Settings.from_module(settings, train_steps=2)`), from
flags (`Settings.from_flag_values`), or directly in a test and pass it
through `validate`. Every problem is a `UserError` whose message names the setting both
as settings.py spells it and as its flag, e.g. `TRAIN_STEPS (--train_steps) ...`.

No TensorFlow and no absl here, so settings are checked before anything heavy loads.
"""

import importlib.util
import math
import os
import types
from dataclasses import dataclass
from typing import Any

from neural_style import names
from neural_style.errors import UserError
from neural_style.ray_cluster import CLUSTER_INSTALL
from neural_style.settings.values import (
    Floats,
    Ints,
    LayerWeights,
    Paths,
    checked_types,
    describe,
    flag_field_values,
    module_values,
)

POOLING_CHOICES = ("max", "avg")
PRECISION_CHOICES = ("auto", "float32", "mixed_bfloat16", "mixed_float16")
OPTIMIZER_CHOICES = ("adam", "lbfgs")
PRESERVE_COLORS_CHOICES = ("off", "luminance", "histogram")
INIT_CHOICES = ("content", "style", "noise")  # or the path of an image
FRAME_INIT_CHOICES = ("warped", "content")
FLOW_PRESET_CHOICES = ("ultrafast", "fast", "medium")
# The file formats of the snapshots and final images (gatys/outputs.py names their suffixes).
OUTPUT_FORMAT_CHOICES = ("jpg", "png", "png16", "tiff16")
# The style losses (losses/style/: one class each, in its REGISTRY): Gram matrices (Gatys et
# al.), the Wasserstein distance of Gaussian fits, the sliced Wasserstein distance.
STYLE_LOSS_CHOICES = ("gram", "w2", "sw")
# Where a folder's photos run: "" in this process, "ray" as Ray tasks (gatys/ray_executor.py).
CLUSTER_CHOICES = ("", "ray")
MIN_TILE_SIZE = 64  # pixels a side; smaller tiles would be mostly margin
# The largest loss weight, alone or as ALPHA (BETA) times a content (style) layer's weight.
# The losses are float32 and Adam squares each gradient: a square above float32's largest
# number (so a gradient above its square root, 1.8e19) is infinite, and every step is then
# 0 (the image never changes), or the loss itself is infinite. The unweighted terms'
# largest gradients, each layer's and TV's, were 1.6e-5 to 0.2 a pixel value at 512 px
# (synthetic weights; images/content.jpg against style.jpg and the_scream.jpg, starting
# from the photo, noise, black and white), and grow as 1/pixels at smaller sizes; so
# MAX_TERM_GRADIENT leaves a margin of more than 1e4 even at 32 px, and weights up to
# MAX_WEIGHT keep the weighted gradient, and its square, finite.
FLOAT32_MAX = 3.4028234663852886e38
MAX_TERM_GRADIENT = 1e6  # per pixel value (0..255)
MAX_WEIGHT = 10.0 ** math.floor(math.log10(math.sqrt(FLOAT32_MAX) / MAX_TERM_GRADIENT))
# The largest ratio between ALPHA, BETA and TV_WEIGHT (those above 0). A float32 sum keeps
# 24 bits (1 part in 1.7e7), and the unweighted terms' gradients above spread over 1e4: past
# 1.7e7 x 1e4 the lighter term drops out of the gradient's sum even where its own gradient
# is the largest, and the run optimises the heavier terms alone.
TERM_GRADIENT_SPREAD = 1e4
MAX_WEIGHT_RATIO = 10.0 ** math.floor(math.log10(2**24 * TERM_GRADIENT_SPREAD))


@dataclass(frozen=True)
class Settings:
    """Everything one style-transfer run needs; the fields mirror settings.py in lower case."""

    content_image: str  # path of the photo, or a folder or glob of photos
    batch_size: int  # photos of a folder or glob optimised together; 1 = one at a time
    style_image: Paths  # paths of the artworks whose styles are blended
    output_image: str  # path prefix: snapshots <prefix>-<step>.jpg, result <prefix>.jpg
    output_format: str  # "jpg", "png" (8 bits a channel), "png16" or "tiff16" (16 bits)
    vgg_model_path: str  # path of the MatConvNet VGG-19 .mat file
    image_width: int  # pixels; 0 = the content image's own width
    image_height: int  # pixels; 0 = keep the content image's aspect ratio
    content_loss_layers: LayerWeights  # (layer, unitless weight) pairs
    style_loss_layers: LayerWeights  # (layer, unitless weight) pairs
    style_loss: str  # "gram" (Gram matrices), "w2" (means, covariances) or "sw" (all)
    alpha: float  # unitless weight of the content loss
    beta: float  # unitless weight of the style loss
    tv_weight: float  # unitless weight of the total-variation loss; 0 = off
    init: str  # starting image: "content", "style", "noise" or an image path
    noise: float  # fraction 0..1 of noise in the starting image
    optimizer: str  # "adam" or "lbfgs"
    learning_rate: float  # Adam step size, pixel values (0..255) per step
    beta1: float  # Adam's first-moment decay, 0..1
    beta2: float  # Adam's second-moment decay, 0..1
    epsilon: float  # Adam's epsilon, in pixel-gradient units
    style_blend_weights: Floats  # unitless, one per style image; empty = equal
    style_scale: float  # style image size / output size
    style_masks: Paths  # one grey mask per style: where in the output it goes; empty = none
    style_image_masks: Paths  # one per style: the region of its image to copy; empty = none
    content_mask: str  # grey map of the content loss's weight; "" = 1 everywhere
    preserve_colors: str  # "off", "luminance" or "histogram"
    coarse_to_fine: Ints  # output widths of the stages, pixels; empty = one stage
    coarse_to_fine_steps: Ints  # steps of each stage; empty = train_steps each
    train_steps: int  # optimisation steps
    snapshot_every: int  # steps between snapshots; 0 = final image only
    print_every: int  # steps between progress lines
    pooling: str  # "max" or "avg"
    precision: str  # conv arithmetic: "auto", "float32", "mixed_bfloat16", "mixed_float16"
    float32_finish: float  # fraction 0..1 of a stage's last steps run in float32
    tile_size: int  # pixels a side of the tiles a step is computed in; 0 = only if needed
    seed: int  # random seed for the starting noise
    resume: bool  # continue from <output_image>-checkpoint.npz
    overwrite: bool  # replace an earlier run's files under the same prefix
    temporal_weight: float  # unitless weight of a video frame's temporal loss; 0 = off
    frame_steps: int  # optimisation steps of each video frame after the first
    temporal_moving_share: float  # share 0..1 of temporal_weight over pixels that moved
    temporal_frames: Ints  # earlier frames a video frame is held to, in frames back (1 = the last)
    frame_init: str  # a later frame starts "warped" (the previous result moved) or "content"
    video_max_frames: int  # frames of a video stylised; 0 = all
    flow_preset: str  # OpenCV DIS optical flow preset: "ultrafast", "fast" or "medium"
    cluster: str  # "" = in this process; "ray" = each batch a task on a Ray cluster

    @classmethod
    def from_module(cls, module: types.ModuleType, **overrides: Any) -> "Settings":
        """Reads every field's UPPER_CASE constant from `module`, applies `overrides`
        (lower-case field names), and returns the validated Settings."""
        return validate(cls(**module_values(cls, module, overrides)))

    @classmethod
    def from_flag_values(cls, flag_values: Any) -> "Settings":
        """The validated Settings from parsed flags (see flag_field_values).

        Raises:
          UserError: a flag's value is unusable; the message names the flag.
        """
        return validate(cls(**flag_field_values(cls, flag_values)))


def validate(settings: Settings) -> Settings:
    """Checks every field; returns a copy with numbers as floats and layer lists as tuples.

    Raises:
      UserError: one line naming the first bad setting and how to fix it.
    """
    checked = checked_types(settings)
    _check_paths(checked)
    _check_sizes_and_steps(checked)
    _check_weights_and_rates(checked)
    check_layers("content_loss_layers", checked.content_loss_layers)
    check_layers("style_loss_layers", checked.style_loss_layers)
    check_weight_scales(
        checked,
        (("alpha", "content_loss_layers"), ("beta", "style_loss_layers"), ("tv_weight", "")),
        ("temporal_weight",),
    )
    for name, choices in (
        ("pooling", POOLING_CHOICES),
        ("precision", PRECISION_CHOICES),
        ("optimizer", OPTIMIZER_CHOICES),
        ("preserve_colors", PRESERVE_COLORS_CHOICES),
        ("frame_init", FRAME_INIT_CHOICES),
        ("flow_preset", FLOW_PRESET_CHOICES),
        ("output_format", OUTPUT_FORMAT_CHOICES),
        ("style_loss", STYLE_LOSS_CHOICES),
    ):
        if getattr(checked, name) not in choices:
            raise UserError(
                f"{describe(name)} must be one of {', '.join(choices)}; "
                f"got {getattr(checked, name)!r}"
            )
    _check_artist_controls(checked)
    _check_masks(checked)
    check_cluster(checked.cluster)
    return checked


def check_cluster(cluster: str) -> None:
    """CLUSTER is a known choice, and "ray" has its extra installed (looked up, not
    imported: Ray's import takes seconds)."""
    if cluster not in CLUSTER_CHOICES:
        raise UserError(
            f'{describe("cluster")} must be "" (this process) or "ray"; got {cluster!r}'
        )
    if cluster == "ray" and importlib.util.find_spec("ray") is None:
        raise UserError(
            f"{describe('cluster')} ray needs the cluster extra, which is not installed: "
            f"{CLUSTER_INSTALL}"
        )


def _check_artist_controls(settings: Settings) -> None:
    for name in ("beta1", "beta2"):
        if not 0 <= getattr(settings, name) < 1:
            raise UserError(f"{describe(name)} must be in [0, 1), got {getattr(settings, name)}")
    if not (math.isfinite(settings.epsilon) and settings.epsilon > 0):
        raise UserError(f"{describe('epsilon')} must be a number > 0, got {settings.epsilon}")
    if not (math.isfinite(settings.style_scale) and 0.05 <= settings.style_scale <= 20):
        raise UserError(
            f"{describe('style_scale')} must be between 0.05 and 20, got {settings.style_scale}"
        )
    blend = settings.style_blend_weights
    if blend:
        if len(blend) != len(settings.style_image):
            raise UserError(
                f"{describe('style_blend_weights')} has {len(blend)} weights for "
                f"{len(settings.style_image)} style images; give one per image, or none"
            )
        if not all(math.isfinite(w) and w >= 0 for w in blend) or sum(blend) <= 0:
            raise UserError(
                f"{describe('style_blend_weights')} must be numbers >= 0 with a positive sum, "
                f"got {list(blend)}"
            )
        if not math.isfinite(sum(blend)):
            raise UserError(
                f"{describe('style_blend_weights')} are relative and their sum overflows; "
                f"scale them all down alike (e.g. [1, 2] for [1e308, 2e308]), got {list(blend)}"
            )
    if any(width < 32 for width in settings.coarse_to_fine):
        raise UserError(
            f"{describe('coarse_to_fine')} lists output widths of at least 32 pixels, "
            f"got {list(settings.coarse_to_fine)}"
        )
    steps = settings.coarse_to_fine_steps
    if steps and len(steps) != len(settings.coarse_to_fine):
        raise UserError(
            f"{describe('coarse_to_fine_steps')} needs one step count per stage of "
            f"COARSE_TO_FINE ({len(settings.coarse_to_fine)}), got {len(steps)}"
        )
    if any(count < 1 for count in steps):
        raise UserError(f"{describe('coarse_to_fine_steps')} must be at least 1 each")


def _check_masks(settings: Settings) -> None:
    """One mask (or "whole") per style image, or none; masks place the styles, so they do
    not mix with STYLE_BLEND_WEIGHTS, which mixes them everywhere."""
    styles = len(settings.style_image)
    for name in ("style_masks", "style_image_masks"):
        listed = getattr(settings, name)
        if listed and len(listed) != styles:
            raise UserError(
                f"{describe(name)} has {len(listed)} masks for {styles} style images; give "
                "one per style image in the same order ('whole' for all of it), or none"
            )
        if not all(path.strip() for path in listed):
            raise UserError(
                f"{describe(name)} has an empty path; write 'whole' where a style has no mask"
            )
    if settings.style_masks and settings.style_blend_weights:
        raise UserError(
            f"{describe('style_blend_weights')} mixes the styles everywhere, STYLE_MASKS "
            "(--style_masks) places each in its region: set one of them, not both (grey "
            "in a mask blends)"
        )


def _check_paths(settings: Settings) -> None:
    for name in ("content_image", "vgg_model_path", "output_image", "init"):
        if not getattr(settings, name).strip():
            raise UserError(f"{describe(name)} must be a file path, got an empty string")
    if not settings.style_image or not all(path.strip() for path in settings.style_image):
        raise UserError(f"{describe('style_image')} must name at least one image file")
    separators = tuple(sep for sep in ("/", os.sep, os.altsep) if sep)
    if settings.output_image.endswith(separators):
        raise UserError(
            f"{describe('output_image')} is a file name prefix, not a folder: "
            f"got {settings.output_image!r}; write e.g. 'output/result'"
        )


def _check_sizes_and_steps(settings: Settings) -> None:
    minimums = {
        "image_width": (0, " (0 = the content image's width)"),
        "image_height": (0, " (0 = keep the aspect ratio)"),
        "train_steps": (1, ""),
        "snapshot_every": (0, " (0 = only the final image)"),
        "print_every": (1, ""),
        "seed": (0, ""),
        "tile_size": (0, " (0 = tiles only where needed)"),
        "frame_steps": (1, ""),
        "video_max_frames": (0, " (0 = every frame)"),
        "batch_size": (1, " (1 = one photo at a time)"),
    }
    check_minimums(settings, minimums)
    _check_temporal_frames(settings.temporal_frames)
    if 0 < settings.tile_size < MIN_TILE_SIZE:
        raise UserError(
            f"{describe('tile_size')} must be 0 or at least {MIN_TILE_SIZE} pixels (the tiles'"
            f" margins are 112 pixels), got {settings.tile_size}"
        )


MAX_TEMPORAL_FRAMES_BACK = 16  # a frame looks at most this far back (each costs two flows)


def _check_temporal_frames(offsets: tuple[int, ...]) -> None:
    if (
        not offsets
        or 1 not in offsets
        or len(set(offsets)) != len(offsets)
        or not all(1 <= offset <= MAX_TEMPORAL_FRAMES_BACK for offset in offsets)
    ):
        raise UserError(
            f"{describe('temporal_frames')} must list different frames back from 1 to "
            f"{MAX_TEMPORAL_FRAMES_BACK}, 1 (the frame before) among them, e.g. [1, 2, 4]; "
            f"got {list(offsets)}"
        )


def check_minimums(settings: Any, minimums: dict[str, tuple[int, str]]) -> None:
    """Each named whole-number setting is at least its minimum; (minimum, what 0 means)."""
    for name, (minimum, meaning) in minimums.items():
        value = getattr(settings, name)
        if value < minimum:
            raise UserError(f"{describe(name)} must be at least {minimum}{meaning}, got {value}")


def check_loss_weights(settings: Any, names: tuple[str, ...]) -> None:
    for name in names:
        value = getattr(settings, name)
        if not (math.isfinite(value) and value >= 0):
            raise UserError(f"{describe(name)} must be a finite number >= 0, got {value}")


def check_weight_scales(
    settings: Any, terms: tuple[tuple[str, str], ...], others: tuple[str, ...]
) -> None:
    """Weights that float32 can carry: each term's weight, times each weight of its layer
    list (`terms`: (weight, layers) names, layers "" for none), and each of `others`, at
    most MAX_WEIGHT; the terms' weights above 0 within MAX_WEIGHT_RATIO of each other.

    Raises:
      UserError: one line naming the setting and the bound.
    """
    for name in (*(weight for weight, _ in terms), *others):
        value = getattr(settings, name)
        if value > MAX_WEIGHT:
            raise UserError(
                f"{describe(name)} must be at most {MAX_WEIGHT:g}: above it the float32 "
                f"loss or its gradient overflows and the image stops changing; got {value:g}"
            )
    for weight_name, layers_name in terms:
        weight = getattr(settings, weight_name)
        for layer, layer_weight in getattr(settings, layers_name) if layers_name else ():
            if layer_weight > MAX_WEIGHT:
                raise UserError(
                    f"{describe(layers_name)}: the weight of {layer} must be at most "
                    f"{MAX_WEIGHT:g}, as a float32 loss can carry; got {layer_weight:g}"
                )
            if weight * layer_weight > MAX_WEIGHT:
                raise UserError(
                    f"{describe(weight_name)} {weight:g} times the weight {layer_weight:g} of "
                    f"{layer} in {describe(layers_name)} is {weight * layer_weight:g}, above "
                    f"{MAX_WEIGHT:g}: the float32 gradient would overflow and the image stop "
                    "changing; lower one of them"
                )
    _check_weight_ratio(settings, tuple(weight for weight, _ in terms))


def _check_weight_ratio(settings: Any, names: tuple[str, ...]) -> None:
    used = [(getattr(settings, name), name) for name in names if getattr(settings, name) > 0]
    if len(used) < 2:
        return
    (lightest, light), (heaviest, heavy) = min(used), max(used)
    if heaviest > MAX_WEIGHT_RATIO * lightest:
        raise UserError(
            f"{describe(heavy)} {heaviest:g} is {heaviest / lightest:.1e} times "
            f"{describe(light)} {lightest:g}: past {MAX_WEIGHT_RATIO:g} the lighter term "
            "drops below float32's precision and is not optimised at all; bring them within "
            f"{MAX_WEIGHT_RATIO:g} of each other (or set the one you do not want to 0)"
        )


def _check_weights_and_rates(settings: Settings) -> None:
    check_loss_weights(settings, ("alpha", "beta", "tv_weight", "temporal_weight"))
    for name, at_zero, at_one in (
        ("noise", "start from the content image", "start from pure noise"),
        ("temporal_moving_share", "moving pixels are not held", "held as still ones"),
        ("float32_finish", "all steps in PRECISION", "all in float32"),
    ):
        value = getattr(settings, name)
        if not 0 <= value <= 1:
            raise UserError(
                f"{describe(name)} must be between 0 ({at_zero}) and 1 ({at_one}), got {value}"
            )
    if not (math.isfinite(settings.learning_rate) and settings.learning_rate > 0):
        raise UserError(
            f"{describe('learning_rate')} must be a finite number > 0, got {settings.learning_rate}"
        )


def check_layers(name: str, layers: LayerWeights) -> None:
    where = describe(name)
    if not layers:
        raise UserError(f"{where} must list at least one layer, e.g. relu1_1:0.2,relu2_1:0.2")
    seen = set()
    for layer, weight in layers:
        if layer not in names.VGG19_LAYERS:
            raise UserError(
                f"unknown layer {layer!r} in {where}; valid names are {_valid_layer_summary()}"
            )
        if layer in seen:
            raise UserError(f"{where} lists {layer} more than once; give each layer once")
        seen.add(layer)
        if not (math.isfinite(weight) and weight >= 0):
            raise UserError(
                f"{where}: the weight of {layer} must be a finite number >= 0, got {weight}"
            )
    if not any(weight > 0 for _, weight in layers):
        raise UserError(f"{where} needs at least one weight above 0; all of them are 0")


def _valid_layer_summary() -> str:
    """ "conv1_1 .. conv5_4, relu1_1 .. relu5_4, pool1 .. pool5", from names."""
    ranges = []
    for kind in ("conv", "relu", "pool"):
        layers = [name for name in names.VGG19_LAYERS if name.startswith(kind)]
        ranges.append(f"{layers[0]} .. {layers[-1]}")
    return ", ".join(ranges)
