"""The machinery every settings class shares (config.Settings, the feed-forward
NetworkSettings, the live view's WebSettings): the value types, reading the fields from a
settings module or from flags, the type checks, and how a message names a setting.

No TensorFlow and no absl here.
"""

import dataclasses
import os
import types
import typing
from typing import Any

from neural_style.errors import UserError

# (VGG layer name, weight) pairs, e.g. (("relu1_1", 0.2), ("relu2_1", 0.2)).
LayerWeights = tuple[tuple[str, float], ...]
# Lists of plain values: in settings.py a list (or one value), on the command line
# comma-separated, e.g. --style_image=a.jpg,b.jpg or --coarse_to_fine=256,512.
Paths = tuple[str, ...]
Floats = tuple[float, ...]
Ints = tuple[int, ...]
LIST_ITEM_TYPES = {Paths: str, Floats: float, Ints: int}


def module_values(cls: type, module: types.ModuleType, overrides: dict) -> dict[str, Any]:
    """Each field of the dataclass `cls` from `overrides` (lower-case names), else from
    `module`'s UPPER_CASE constant; lists become tuples."""
    names = [field.name for field in dataclasses.fields(cls)]
    unknown = sorted(set(overrides) - set(names))
    if unknown:
        raise TypeError(f"{cls.__name__} has no field(s) {', '.join(unknown)}")
    values = {}
    for name in names:
        if name in overrides:
            values[name] = overrides[name]
        elif hasattr(module, name.upper()):
            values[name] = getattr(module, name.upper())
        else:
            raise UserError(f"{name.upper()} is missing from {module_label(module)}; add it back")
    return {name: _lists_to_tuples(value) for name, value in values.items()}


def flag_field_values(cls: type, flag_values: Any, module_name: str = "settings.py") -> dict:
    """Each field of the dataclass `cls` from parsed absl flags (defined from the settings
    module by neural_style.cli_flags.define_flags): layer lists arrive as
    `relu1_1:0.2,relu2_1:0.2` text, path lists comma-separated. The one way flags become
    settings, for Settings and the feed-forward NetworkSettings alike.

    Raises:
      UserError: a setting is missing from the settings module (deleted by an edit).
    """
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for field in dataclasses.fields(cls):
        if field.name not in flag_values:
            raise UserError(f"{field.name.upper()} is missing from {module_name}; add it back")
        value = flag_values[field.name].value
        if hints[field.name] == LayerWeights and isinstance(value, str):
            value = parse_layer_weights(value, field.name.upper())
        elif hints[field.name] == Paths and isinstance(value, str):
            value = tuple(path.strip() for path in value.split(",") if path.strip())
        values[field.name] = value
    return values


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


def check_type(name: str, value: Any, hint: Any) -> Any:
    where = describe(name)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise UserError(f"{where} must be a whole number, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserError(f"{where} must be a number, got {value!r}")
        return float(value)
    if hint is bool:
        if not isinstance(value, bool):
            raise UserError(f"{where} must be True or False, got {value!r}")
        return value
    if hint in LIST_ITEM_TYPES:
        return as_list(value, name, LIST_ITEM_TYPES[hint])
    if hint is str:
        if not isinstance(value, str):
            raise UserError(f"{where} must be text (a quoted string), got {value!r}")
        return value
    if hint == LayerWeights:
        return as_layer_weights(value, name)
    raise TypeError(f"no check for the type {hint!r} of the setting {name}")


def as_layer_weights(value: Any, setting: str) -> LayerWeights:
    """`value`, (name, number) pairs as settings.py writes them, as (str, float) tuples;
    else a UserError naming `setting` (e.g. "STYLE_LOSS_LAYERS") and the expected form."""
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


def as_list(value: Any, setting: str, item_type: type) -> tuple:
    """One value or a list of them (numbers may be text, as flags give them) -> a tuple.

    Raises:
      UserError: an item is not of `item_type`; the message names `setting`.
    """
    items = value if isinstance(value, (list, tuple)) else [value]
    if isinstance(value, str) and item_type is not str:
        items = [item for item in value.split(",") if item.strip()]
    return tuple(_list_item(item, setting, item_type) for item in items)


def _list_item(item: Any, setting: str, item_type: type) -> Any:
    kind = {str: "a path", float: "a number", int: "a whole number"}[item_type]
    if isinstance(item, str):
        try:
            return item_type(item.strip())
        except ValueError:
            pass
    elif item_type is float and isinstance(item, (int, float)) and not isinstance(item, bool):
        return float(item)
    elif item_type is int and isinstance(item, int) and not isinstance(item, bool):
        return item
    raise UserError(f"{describe(setting)}: {item!r} is not {kind}")


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


def checked_types(settings: Any) -> Any:
    """The dataclass `settings` with every field checked against its annotation (numbers
    as numbers, lists as tuples...); a wrong type is a UserError naming the setting."""
    hints = typing.get_type_hints(type(settings))
    values = {
        field.name: check_type(field.name, getattr(settings, field.name), hints[field.name])
        for field in dataclasses.fields(settings)
    }
    return dataclasses.replace(settings, **values)
