"""Settings: built from settings.py, checked by validate, overridden by generated flags."""

import ast
import dataclasses
import importlib.util
import math
import os
import pathlib
import re

import pytest
from absl import flags

import settings
from neural_style.errors import UserError
from neural_style.settings import cli_flags
from neural_style.settings import gatys as config
from neural_style.settings import network as ff_config
from neural_style.settings import values as setting_values
from neural_style.settings.gatys import Settings
from neural_style.settings.values import parse_layer_weights
from neural_style.settings.web import WebSettings
from tests.support import one_line_refusal

SETTINGS_FILE = settings.__file__
CONSTANTS = [name for name in vars(settings) if re.fullmatch(r"[A-Z][A-Z0-9_]*", name)]
FIELDS = [field.name for field in dataclasses.fields(Settings)]
# train_network.py and stylize.py read these; vgg_model_path and pooling are shared.
NETWORK_FIELDS = [field.name for field in dataclasses.fields(ff_config.NetworkSettings)]


def defined_flags(module=settings) -> flags.FlagValues:
    flag_values = flags.FlagValues()
    cli_flags.define_flags(module, flag_values)
    return flag_values


def parsed_settings(*args: str, module=settings) -> Settings:
    flag_values = defined_flags(module)
    flag_values(["prog", *args])
    return config.Settings.from_flag_values(flag_values)


def comment_above(name: str, path: str = SETTINGS_FILE) -> str:
    """The comment line directly above `NAME = ...`, read independently of cli_flags."""
    with open(path, encoding="utf-8") as file:
        lines = file.read().splitlines()
    index = next(i for i, line in enumerate(lines) if line.startswith(f"{name} ="))
    assert lines[index - 1].startswith("# "), f"{name} has no comment in {path}"
    return lines[index - 1][2:].strip()


def load_module_from(path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# Settings from the module ------------------------------------------------------------


def test_from_module_reads_every_default():
    loaded = Settings.from_module(settings)
    for name in FIELDS:
        default = getattr(settings, name.upper())
        if isinstance(default, list):
            default = tuple(tuple(x) if isinstance(x, (list, tuple)) else x for x in default)
        if name == "style_image" and isinstance(default, str):
            default = (default,)  # one path is a list of one
        assert getattr(loaded, name) == default, name
    assert isinstance(loaded.style_loss_layers, tuple)
    assert all(isinstance(pair, tuple) for pair in loaded.style_loss_layers)
    hash(loaded)  # frozen, with tuples all the way down


def test_from_module_applies_overrides_and_checks_them():
    loaded = Settings.from_module(settings, train_steps=3, style_loss_layers=[["relu1_1", 1]])
    assert loaded.train_steps == 3
    assert loaded.style_loss_layers == (("relu1_1", 1.0),)
    with pytest.raises(UserError, match=r"TRAIN_STEPS \(--train_steps\)"):
        Settings.from_module(settings, train_steps=0)
    with pytest.raises(TypeError, match="no_such_field"):
        Settings.from_module(settings, no_such_field=1)


def test_from_module_names_a_missing_constant(tmp_path):
    source = pathlib.Path(SETTINGS_FILE).read_text(encoding="utf-8").replace("\nSEED = 0", "\n")
    (tmp_path / "partial_settings.py").write_text(source)
    module = load_module_from(tmp_path / "partial_settings.py", "partial_settings")
    with pytest.raises(UserError, match=r"SEED is missing from partial_settings\.py"):
        Settings.from_module(module)


def test_whole_numbers_become_floats_for_float_settings():
    loaded = Settings.from_module(settings, alpha=1, beta=1000)
    assert loaded.alpha == 1.0 and isinstance(loaded.alpha, float)
    assert isinstance(loaded.beta, float)


def test_the_shipped_weights_path_falls_back_to_the_synthetic_stand_in(tmp_path, monkeypatch):
    """A fresh checkout has no weights: settings.py's VGG_MODEL_PATH must be the path whose
    absence brings the synthetic stand-in (written once, here at toy size), not an error."""
    import io

    from neural_style.vgg import synthetic, weights_file
    from tests.support import TINY_OPTIONS

    monkeypatch.chdir(tmp_path)
    written, real = [], synthetic.write_synthetic_vgg19
    monkeypatch.setattr(
        synthetic,
        "write_synthetic_vgg19",
        lambda path: written.append(path) or real(path, **TINY_OPTIONS),
    )
    stream = io.StringIO()
    path = weights_file.resolve_weights_path(settings.VGG_MODEL_PATH, stream)
    assert path == weights_file.SYNTHETIC_WEIGHTS_PATH and written == [path]
    assert os.path.getsize(path) > 0
    assert "synthetic VGG-19 is used" in stream.getvalue()
    # A path the user chose is theirs: it is returned as it is, to fail when it is read.
    assert weights_file.resolve_weights_path("weights/mine.mat", stream) == "weights/mine.mat"


# Validation: each rule names the setting and its flag ---------------------------------

BAD_VALUES = [
    ({"train_steps": 0}, "TRAIN_STEPS (--train_steps) must be at least 1, got 0"),
    ({"train_steps": -5}, "TRAIN_STEPS (--train_steps) must be at least 1, got -5"),
    ({"train_steps": 2.5}, "TRAIN_STEPS (--train_steps) must be a whole number"),
    ({"train_steps": True}, "TRAIN_STEPS (--train_steps) must be a whole number"),
    ({"snapshot_every": -1}, "SNAPSHOT_EVERY (--snapshot_every) must be at least 0"),
    ({"print_every": 0}, "PRINT_EVERY (--print_every) must be at least 1"),
    ({"image_width": -1}, "IMAGE_WIDTH (--image_width) must be at least 0"),
    ({"image_height": -2}, "IMAGE_HEIGHT (--image_height) must be at least 0"),
    ({"alpha": -1.0}, "ALPHA (--alpha) must be a finite number >= 0"),
    ({"beta": math.nan}, "BETA (--beta) must be a finite number >= 0, got nan"),
    ({"beta": math.inf}, "BETA (--beta) must be a finite number >= 0, got inf"),
    ({"beta": "500"}, "BETA (--beta) must be a number"),
    ({"tv_weight": -0.1}, "TV_WEIGHT (--tv_weight) must be a finite number >= 0"),
    ({"noise": 1.5}, "NOISE (--noise) must be between 0"),
    ({"noise": -0.1}, "NOISE (--noise) must be between 0"),
    ({"noise": math.nan}, "NOISE (--noise) must be between 0"),
    ({"temporal_moving_share": 1.5}, "TEMPORAL_MOVING_SHARE (--temporal_moving_share) must be "),
    ({"temporal_moving_share": math.nan}, "TEMPORAL_MOVING_SHARE (--temporal_moving_share) must"),
    ({"learning_rate": 0.0}, "LEARNING_RATE (--learning_rate) must be a finite number > 0"),
    ({"learning_rate": math.inf}, "LEARNING_RATE (--learning_rate) must be a finite number > 0"),
    ({"pooling": "median"}, "POOLING (--pooling) must be one of max, avg; got 'median'"),
    ({"precision": "fp8"}, "PRECISION (--precision) must be one of auto, float32, mixed_bf"),
    ({"seed": -1}, "SEED (--seed) must be at least 0, got -1"),
    ({"content_image": ""}, "CONTENT_IMAGE (--content_image) must be a file path"),
    ({"style_image": "  "}, "STYLE_IMAGE (--style_image) must name at least one image"),
    ({"style_image": 3}, "STYLE_IMAGE (--style_image): 3 is not a path"),
    ({"optimizer": "sgd"}, "OPTIMIZER (--optimizer) must be one of adam, lbfgs; got 'sgd'"),
    ({"preserve_colors": "yes"}, "PRESERVE_COLORS (--preserve_colors) must be one of off,"),
    ({"beta1": 1.0}, "BETA1 (--beta1) must be in [0, 1), got 1.0"),
    ({"epsilon": 0}, "EPSILON (--epsilon) must be a number > 0"),
    ({"style_scale": 0}, "STYLE_SCALE (--style_scale) must be between 0.05 and 20"),
    ({"style_blend_weights": [1, 2]}, "STYLE_BLEND_WEIGHTS (--style_blend_weights) has 2"),
    ({"style_blend_weights": ["x"]}, "STYLE_BLEND_WEIGHTS (--style_blend_weights): 'x' is not a"),
    ({"coarse_to_fine": [16]}, "COARSE_TO_FINE (--coarse_to_fine) lists output widths of at"),
    ({"coarse_to_fine": [64], "coarse_to_fine_steps": [1, 2]}, "needs one step count per"),
    ({"coarse_to_fine": [64.5]}, "COARSE_TO_FINE (--coarse_to_fine): 64.5 is not a whole"),
    ({"resume": "yes"}, "RESUME (--resume) must be True or False"),
    ({"vgg_model_path": ""}, "VGG_MODEL_PATH (--vgg_model_path) must be a file path"),
    ({"output_image": ""}, "OUTPUT_IMAGE (--output_image) must be a file path"),
    ({"output_image": "output/"}, "OUTPUT_IMAGE (--output_image) is a file name prefix"),
    ({"style_loss_layers": []}, "STYLE_LOSS_LAYERS (--style_loss_layers) must list at least one"),
    (
        {"style_loss_layers": [("relu9_1", 1.0)]},
        "unknown layer 'relu9_1' in STYLE_LOSS_LAYERS (--style_loss_layers); valid names are "
        "conv1_1 .. conv5_4, relu1_1 .. relu5_4, pool1 .. pool5",
    ),
    (
        {"content_loss_layers": [("conv4_2", 1.0), ("conv4_2", 0.5)]},
        "CONTENT_LOSS_LAYERS (--content_loss_layers) lists conv4_2 more than once",
    ),
    (
        {"style_loss_layers": [("relu1_1", -0.2)]},
        "STYLE_LOSS_LAYERS (--style_loss_layers): the weight of relu1_1 must be a finite",
    ),
    (
        {"style_loss_layers": [("relu1_1", math.nan)]},
        "STYLE_LOSS_LAYERS (--style_loss_layers): the weight of relu1_1 must be a finite",
    ),
    (
        {"style_loss_layers": [("relu1_1", 0.0), ("relu2_1", 0)]},
        "STYLE_LOSS_LAYERS (--style_loss_layers) needs at least one weight above 0",
    ),
    (
        {"style_loss_layers": ["relu1_1"]},
        "STYLE_LOSS_LAYERS (--style_loss_layers) must be (layer name, weight) pairs",
    ),
    (
        {"content_loss_layers": [("relu4_2", "0.5")]},
        "CONTENT_LOSS_LAYERS (--content_loss_layers) must be (layer name, weight) pairs",
    ),
]


@pytest.mark.parametrize(("override", "message"), BAD_VALUES)
def test_validate_rejects_with_one_line_naming_the_setting(override, message):
    assert message in one_line_refusal(lambda: Settings.from_module(settings, **override))


def test_validate_also_checks_a_directly_built_settings():
    direct = dataclasses.replace(Settings.from_module(settings), print_every=0)
    with pytest.raises(UserError, match=r"PRINT_EVERY \(--print_every\)"):
        config.validate(direct)


@pytest.mark.parametrize(
    "override",
    [
        {"noise": 0.0},
        {"noise": 1},
        {"snapshot_every": 0},
        {"image_width": 0, "image_height": 0},
        {"tv_weight": 0.0, "alpha": 0},
        {"pooling": "avg"},
        {"style_loss_layers": [("relu1_1", 0.0), ("pool5", 2)]},
        {"output_image": "out/painting"},
    ],
)
def test_validate_accepts_edge_values(override):
    Settings.from_module(settings, **override)


# Layer lists on the command line ------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("relu1_1:0.2,relu2_1:0.2", (("relu1_1", 0.2), ("relu2_1", 0.2))),
        ("  relu1_1 : 0.5 ,  relu2_1:1e-3 ", (("relu1_1", 0.5), ("relu2_1", 0.001))),
        ("relu1_1", (("relu1_1", 1.0),)),
        ("relu1_1,relu2_1:2", (("relu1_1", 1.0), ("relu2_1", 2.0))),
        ("relu1_1:1,", (("relu1_1", 1.0),)),
        ("", ()),
    ],
)
def test_parse_layer_weights(text, expected):
    assert parse_layer_weights(text, "STYLE_LOSS_LAYERS") == expected


@pytest.mark.parametrize("text", ["relu1_1:x", "relu1_1:", ":0.5", "relu1_1:0.5:2", "a b:1:"])
def test_parse_layer_weights_rejects_bad_syntax(text):
    with pytest.raises(UserError, match=r"^STYLE_LOSS_LAYERS \(--style_loss_layers\): "):
        parse_layer_weights(text, "STYLE_LOSS_LAYERS")


def test_format_layer_weights_round_trips():
    layers = (("relu1_1", 0.2), ("relu2_1", 1.0), ("pool3", 1e-05))
    text = setting_values.format_layer_weights(layers)
    assert text == "relu1_1:0.2,relu2_1:1,pool3:1e-05"
    assert parse_layer_weights(text, "STYLE_LOSS_LAYERS") == layers


# Flags generated from settings.py -----------------------------------------------------


def test_every_constant_has_a_flag_and_a_field_and_vice_versa():
    flag_values = defined_flags()
    # The live view's settings (WEB_*) are read by train.py and train_network.py alike.
    web_fields = [field.name for field in dataclasses.fields(WebSettings)]
    every_field = set(FIELDS) | set(NETWORK_FIELDS) | set(web_fields)
    assert sorted(name.lower() for name in CONSTANTS) == sorted(every_field)
    assert every_field <= set(flag_values)
    assert cli_flags.setting_names(settings) == CONSTANTS


def test_flag_help_is_the_comment_above_the_setting():
    flag_values = defined_flags()
    for name in CONSTANTS:
        assert flag_values[name.lower()].help == comment_above(name), name


def test_flag_types_follow_the_settings_fields():
    flag_values = defined_flags()
    assert flag_values["train_steps"].flag_type() == "int"
    assert flag_values["alpha"].flag_type() == "float"
    assert flag_values["pooling"].flag_type() == "string"
    assert flag_values["style_loss_layers"].flag_type() == "string"
    assert flag_values["style_loss_layers"].default == (
        "relu1_1:0.2,relu2_1:0.2,relu3_1:0.2,relu4_1:0.2,relu5_1:0.2"
    )


def test_flag_defaults_give_the_module_settings():
    assert parsed_settings() == Settings.from_module(settings)


def test_flags_override_settings():
    loaded = parsed_settings("--beta=1000", "--style_loss_layers=relu1_1:1")
    assert loaded == Settings.from_module(
        settings, beta=1000.0, style_loss_layers=(("relu1_1", 1.0),)
    )


def test_bad_flag_values_raise_user_errors():
    with pytest.raises(UserError, match=r"^TRAIN_STEPS \(--train_steps\) must be at least 1"):
        parsed_settings("--train_steps=-1")
    with pytest.raises(UserError, match=r"^STYLE_LOSS_LAYERS \(--style_loss_layers\): "):
        parsed_settings("--style_loss_layers=relu1_1:x")


def test_flags_are_defined_per_flag_values():
    first, second = defined_flags(), defined_flags()
    first(["prog", "--seed=3"])
    second(["prog"])
    assert config.Settings.from_flag_values(first).seed == 3
    assert config.Settings.from_flag_values(second).seed == settings.SEED
    with pytest.raises(flags.DuplicateFlagError):
        cli_flags.define_flags(settings, first)


SETTINGS_WITH_ODD_LAYOUT = '''"""A settings module laid out awkwardly on purpose."""

# A detached note, separated by a blank line, belongs to nobody.

# Weight of the content loss,
# over two comment lines.
ALPHA = 1
# Style layers; the list spans lines and holds comments of its own.
STYLE_LOSS_LAYERS = [
    # a comment inside the value
    ("relu1_1", 1),  # and one after an item
    ("relu2_1", 0.5),
]
TRAIN_STEPS = 7  # a trailing comment is not help text
# Text that "# looks like a comment" inside a string.
POOLING = "# not a comment"
# A setting no Settings field knows yet, typed by its default.
EXTRA_FLAG = True
'''


def test_odd_layouts_give_the_right_help_and_types(tmp_path):
    path = tmp_path / "odd_settings.py"
    path.write_text(SETTINGS_WITH_ODD_LAYOUT)
    module = load_module_from(path, "odd_settings")
    flag_values = defined_flags(module)
    assert flag_values["alpha"].help == "Weight of the content loss, over two comment lines."
    assert flag_values["style_loss_layers"].help == (
        "Style layers; the list spans lines and holds comments of its own."
    )
    assert flag_values["style_loss_layers"].default == "relu1_1:1,relu2_1:0.5"
    assert flag_values["train_steps"].help == "TRAIN_STEPS in odd_settings.py."
    assert flag_values["pooling"].default == "# not a comment"
    assert flag_values["extra_flag"].flag_type() == "bool"
    # ALPHA = 1 is a whole number, but Settings.alpha is a float, so 0.5 must parse.
    flag_values(["prog", "--alpha=0.5", "--noextra_flag"])
    assert flag_values["alpha"].value == 0.5
    assert flag_values["extra_flag"].value is False


def test_a_default_that_cannot_be_a_flag_is_a_user_error(tmp_path):
    path = tmp_path / "bad_settings.py"
    path.write_text("# Steps.\nTRAIN_STEPS = 2.5\n")
    module = load_module_from(path, "bad_settings")
    with pytest.raises(UserError, match=r"^TRAIN_STEPS in bad_settings\.py cannot be"):
        defined_flags(module)
    path.write_text("# Layers.\nSTYLE_LOSS_LAYERS = ['relu1_1']\n")
    module = load_module_from(path, "bad_settings")
    with pytest.raises(UserError, match=r"STYLE_LOSS_LAYERS \(--style_loss_layers\) must be"):
        defined_flags(module)


def test_config_imports_neither_absl_nor_tensorflow():
    # Settings must be checkable where TensorFlow is missing, and the library never reads flags.
    tree = ast.parse(pathlib.Path(config.__file__).read_text(encoding="utf-8"))
    imported = {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not {name for name in imported if name.split(".")[0] in ("absl", "tensorflow")}


def test_the_tests_own_settings_define_every_setting_of_settings_py():
    """tests/toy_settings.py stands in for the user's settings.py in every test, so that an
    edit of settings.py cannot change what a test runs; it must keep the same settings."""
    from tests import toy_settings

    assert cli_flags.setting_names(toy_settings) == cli_flags.setting_names(settings)
    assert Settings.from_module(toy_settings) == Settings.from_module(settings)
