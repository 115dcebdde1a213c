"""The typed settings of one run, and the checks that turn a bad value into one clear line.

`Settings` is what the library takes; nothing below `train.py` reads flags or settings.py.
Build one from a settings module (`Settings.from_module(settings, train_steps=2)`), from
flags (`neural_style.cli_flags.settings_from_flags`), or directly in a test and pass it
through `validate`. Every problem is a `UserError` whose message names the setting both
as settings.py spells it and as its flag, e.g. `TRAIN_STEPS (--train_steps) ...`.

No TensorFlow and no absl here, so settings are checked before anything heavy loads.
"""

import dataclasses
import math
import os
import types
import typing
from dataclasses import dataclass
from typing import Any

from neural_style import layer_names
from neural_style.errors import UserError

# (VGG layer name, weight) pairs, e.g. (("relu1_1", 0.2), ("relu2_1", 0.2)).
LayerWeights = tuple[tuple[str, float], ...]

# The weights settings.py points at by default; a run may substitute a synthetic stand-in
# when this exact path is missing, but never for a path the user chose.
DEFAULT_VGG_MODEL_PATH = "weights/imagenet-vgg-verydeep-19.mat"

POOLING_CHOICES = ("max", "avg")


@dataclass(frozen=True)
class Settings:
    """Everything one style-transfer run needs; the fields mirror settings.py in lower case."""

    content_image: str  # path of the photo whose content is kept
    style_image: str  # path of the artwork whose style is copied
    output_image: str  # path prefix: snapshots <prefix>-<step>.jpg, result <prefix>.jpg
    vgg_model_path: str  # path of the MatConvNet VGG-19 .mat file
    image_width: int  # pixels; 0 = the content image's own width
    image_height: int  # pixels; 0 = keep the content image's aspect ratio
    content_loss_layers: LayerWeights  # (layer, unitless weight) pairs
    style_loss_layers: LayerWeights  # (layer, unitless weight) pairs
    alpha: float  # unitless weight of the content loss
    beta: float  # unitless weight of the style loss
    tv_weight: float  # unitless weight of the total-variation loss; 0 = off
    noise: float  # fraction 0..1 of noise in the starting image
    learning_rate: float  # Adam step size, pixel values (0..255) per step
    train_steps: int  # optimisation steps
    snapshot_every: int  # steps between snapshots; 0 = final image only
    print_every: int  # steps between progress lines
    pooling: str  # "max" or "avg"
    seed: int  # random seed for the starting noise

    @classmethod
    def from_module(cls, module: types.ModuleType, **overrides: Any) -> "Settings":
        """Reads every field's UPPER_CASE constant from `module`, applies `overrides`
        (lower-case field names), and returns the validated Settings."""
        names = [field.name for field in dataclasses.fields(cls)]
        unknown = sorted(set(overrides) - set(names))
        if unknown:
            raise TypeError(f"Settings has no field(s) {', '.join(unknown)}")
        where = module_label(module)
        values = {}
        for name in names:
            if name in overrides:
                values[name] = overrides[name]
            elif hasattr(module, name.upper()):
                values[name] = getattr(module, name.upper())
            else:
                raise UserError(f"{name.upper()} is missing from {where}; add it back")
        return validate(cls(**{name: _lists_to_tuples(value) for name, value in values.items()}))


def parse_layer_weights(text: str, setting: str) -> LayerWeights:
    """Parses `relu1_1:0.2, relu2_1:0.2` into pairs; a name without `:weight` weighs 1.0.

    `setting` (e.g. "STYLE_LOSS_LAYERS") names the setting in error messages. Only the
    syntax is checked here; `validate` checks the names and the weights.
    """
    where = describe(setting)
    pairs = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue  # tolerate a trailing or doubled comma
        name, colon, weight_text = item.partition(":")
        name, weight_text = name.strip(), weight_text.strip()
        if not name or ":" in weight_text:
            raise UserError(
                f"{where}: cannot read {item!r}; write layer:weight pairs separated by commas, "
                "e.g. relu1_1:0.2,relu2_1:0.2"
            )
        if not colon:
            pairs.append((name, 1.0))
            continue
        try:
            weight = float(weight_text)
        except ValueError:
            raise UserError(
                f"{where}: the weight {weight_text!r} of {name} is not a number; "
                "write layer:weight, e.g. relu1_1:0.2"
            ) from None
        pairs.append((name, weight))
    return tuple(pairs)


def format_layer_weights(layers: LayerWeights) -> str:
    """The inverse of `parse_layer_weights`: (("relu1_1", 0.2),) -> "relu1_1:0.2"."""
    return ",".join(f"{name}:{_format_number(weight)}" for name, weight in layers)


def describe(setting: str) -> str:
    """How messages name a setting: "TRAIN_STEPS (--train_steps)"."""
    return f"{setting.upper()} (--{setting.lower()})"


def validate(settings: Settings) -> Settings:
    """Checks every field; returns a copy with numbers as floats and layer lists as tuples.

    Raises:
      UserError: one line naming the first bad setting and how to fix it.
    """
    hints = typing.get_type_hints(Settings)
    values = {
        field.name: _check_type(field.name, getattr(settings, field.name), hints[field.name])
        for field in dataclasses.fields(Settings)
    }
    checked = dataclasses.replace(settings, **values)
    _check_paths(checked)
    _check_sizes_and_steps(checked)
    _check_weights_and_rates(checked)
    _check_layers("content_loss_layers", checked.content_loss_layers)
    _check_layers("style_loss_layers", checked.style_loss_layers)
    if checked.pooling not in POOLING_CHOICES:
        raise UserError(f"{describe('pooling')} must be 'max' or 'avg', got {checked.pooling!r}")
    return checked


def _check_type(name: str, value: Any, hint: Any) -> Any:
    where = describe(name)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise UserError(f"{where} must be a whole number, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserError(f"{where} must be a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise UserError(f"{where} must be text (a quoted string), got {value!r}")
        return value
    if hint == LayerWeights:
        return as_layer_weights(value, name)
    raise TypeError(f"no check for the type {hint!r} of Settings.{name}")


def as_layer_weights(value: Any, setting: str) -> LayerWeights:
    """Checks that `value` is a list or tuple of (name, number) pairs, as settings.py
    writes them, and returns them as a tuple of (str, float) tuples.

    Raises:
      UserError: naming `setting` (e.g. "STYLE_LOSS_LAYERS") and the expected form.
    """
    name = setting.lower()
    example = 'e.g. [("relu1_1", 0.2), ("relu2_1", 0.2)] or --{}=relu1_1:0.2,relu2_1:0.2'
    problem = f"{describe(name)} must be (layer name, weight) pairs, {example.format(name)}"
    if not isinstance(value, (list, tuple)):
        raise UserError(f"{problem}; got {value!r}")
    pairs = []
    for pair in value:
        if (
            not isinstance(pair, (list, tuple))
            or len(pair) != 2
            or not isinstance(pair[0], str)
            or isinstance(pair[1], bool)
            or not isinstance(pair[1], (int, float))
        ):
            raise UserError(f"{problem}; got {pair!r}")
        pairs.append((pair[0], float(pair[1])))
    return tuple(pairs)


def _check_paths(settings: Settings) -> None:
    for name in ("content_image", "style_image", "vgg_model_path", "output_image"):
        if not getattr(settings, name).strip():
            raise UserError(f"{describe(name)} must be a file path, got an empty string")
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
    }
    for name, (minimum, meaning) in minimums.items():
        value = getattr(settings, name)
        if value < minimum:
            raise UserError(f"{describe(name)} must be at least {minimum}{meaning}, got {value}")


def _check_weights_and_rates(settings: Settings) -> None:
    for name in ("alpha", "beta", "tv_weight"):
        value = getattr(settings, name)
        if not (math.isfinite(value) and value >= 0):
            raise UserError(f"{describe(name)} must be a finite number >= 0, got {value}")
    if not 0 <= settings.noise <= 1:
        raise UserError(
            f"{describe('noise')} must be between 0 (start from the content image) "
            f"and 1 (start from pure noise), got {settings.noise}"
        )
    if not (math.isfinite(settings.learning_rate) and settings.learning_rate > 0):
        raise UserError(
            f"{describe('learning_rate')} must be a finite number > 0, got {settings.learning_rate}"
        )


def _check_layers(name: str, layers: LayerWeights) -> None:
    where = describe(name)
    if not layers:
        raise UserError(f"{where} must list at least one layer, e.g. relu1_1:0.2,relu2_1:0.2")
    seen = set()
    for layer, weight in layers:
        if layer not in layer_names.VGG19_LAYERS:
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
    """ "conv1_1 .. conv5_4, relu1_1 .. relu5_4, pool1 .. pool5", from layer_names."""
    ranges = []
    for kind in ("conv", "relu", "pool"):
        names = [name for name in layer_names.VGG19_LAYERS if name.startswith(kind)]
        ranges.append(f"{names[0]} .. {names[-1]}")
    return ", ".join(ranges)


def _lists_to_tuples(value: Any) -> Any:
    # settings.py writes layer lists as lists; Settings is frozen and hashable, so tuples.
    if isinstance(value, (list, tuple)):
        return tuple(_lists_to_tuples(item) for item in value)
    return value


def _format_number(value: float) -> str:
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


def module_label(module: types.ModuleType) -> str:
    """How messages name a settings module: its file name, e.g. "settings.py"."""
    path = getattr(module, "__file__", None)
    return os.path.basename(path) if path else getattr(module, "__name__", "the settings module")
