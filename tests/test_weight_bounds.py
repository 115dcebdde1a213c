"""Loss weights that float32 cannot carry are refused in one line naming the setting: a
weight, or ALPHA/BETA times a layer's weight, above MAX_WEIGHT (the gradient's square
would overflow and the image stop changing); ALPHA, BETA and TV_WEIGHT further apart than
MAX_WEIGHT_RATIO (the lighter terms vanish from the sum); blend weights whose sum
overflows. The same for the trained network's weights. A real train.py, and a real run
at the largest weights allowed, show what the bounds protect."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from neural_style.errors import UserError
from neural_style.settings import gatys
from neural_style.settings.gatys import MAX_WEIGHT, MAX_WEIGHT_RATIO, Settings
from neural_style.settings.network import NetworkSettings
from tests import toy_settings
from tests.support import REPO_ROOT, one_line_refusal

TWO_STYLES = ("a.jpg", "b.jpg")

REFUSED = [
    ({"tv_weight": 1e30}, "TV_WEIGHT (--tv_weight) must be at most 1e+13"),
    ({"beta": 1e39}, "BETA (--beta) must be at most 1e+13"),
    ({"alpha": 2e13}, "ALPHA (--alpha) must be at most 1e+13"),
    ({"temporal_weight": 1e20}, "TEMPORAL_WEIGHT (--temporal_weight) must be at most 1e+13"),
    (
        {"style_loss_layers": [("relu1_1", 1e39)]},
        "STYLE_LOSS_LAYERS (--style_loss_layers): the weight of relu1_1 must be at most 1e+13",
    ),
    (
        {"content_loss_layers": [("relu4_2", 1e39)], "alpha": 0.0},
        "CONTENT_LOSS_LAYERS (--content_loss_layers): the weight of relu4_2 must be at most",
    ),
    (
        {"beta": 1e7, "style_loss_layers": [("relu1_1", 1e7)], "alpha": 1e3},
        "BETA (--beta) 1e+07 times the weight 1e+07 of relu1_1 in STYLE_LOSS_LAYERS "
        "(--style_loss_layers) is 1e+14, above 1e+13",
    ),
    (
        {"alpha": 1e-9},
        "BETA (--beta) 500 is 5.0e+11 times ALPHA (--alpha) 1e-09: past 1e+11 the lighter term",
    ),
    ({"tv_weight": 1e-10}, "BETA (--beta) 500 is 5.0e+12 times TV_WEIGHT (--tv_weight) 1e-10"),
    (
        {"style_image": TWO_STYLES, "style_blend_weights": [1e308, 1e308]},
        "STYLE_BLEND_WEIGHTS (--style_blend_weights) are relative and their sum overflows",
    ),
]


@pytest.mark.parametrize(("override", "message"), REFUSED)
def test_weights_float32_cannot_carry_are_refused_in_one_line(override, message):
    assert message in one_line_refusal(lambda: Settings.from_module(toy_settings, **override))


ACCEPTED = [
    {"beta": MAX_WEIGHT, "alpha": MAX_WEIGHT / MAX_WEIGHT_RATIO},
    {"alpha": 0.0, "beta": 1e-3, "tv_weight": 0.0},  # a term at 0 is off, not "far apart"
    {"tv_weight": 1e-3},
    {"style_image": TWO_STYLES, "style_blend_weights": [1e307, 3e307]},  # relative
    {"style_image": TWO_STYLES, "style_blend_weights": [1e-300, 1.0]},
    {"style_loss_layers": [("relu1_1", 1e-6), ("relu2_1", 1e6)]},
]


@pytest.mark.parametrize("override", ACCEPTED)
def test_weights_within_the_bounds_are_accepted(override):
    Settings.from_module(toy_settings, **override)


def test_the_bound_keeps_the_square_of_a_plausible_gradient_finite_in_float32():
    largest = np.float32(MAX_WEIGHT) * np.float32(gatys.MAX_TERM_GRADIENT)
    assert np.isfinite(np.square(largest, dtype=np.float32))
    with np.errstate(over="ignore"):
        assert not np.isfinite(np.square(largest * np.float32(10), dtype=np.float32))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"network_tv_weight": 1e30}, "NETWORK_TV_WEIGHT (--network_tv_weight) must be at most"),
        ({"network_style_weight": 1e39}, "NETWORK_STYLE_WEIGHT (--network_style_weight) must"),
        (
            {"network_style_layers": [("relu1_2", 1e39)]},
            "NETWORK_STYLE_LAYERS (--network_style_layers): the weight of relu1_2 must be at",
        ),
        (
            {"network_content_weight": 1e-12},
            "NETWORK_STYLE_WEIGHT (--network_style_weight) 500 is 5.0e+14 times",
        ),
        ({"network_temporal_weight": 1e39}, "NETWORK_TEMPORAL_WEIGHT (--network_temporal_weig"),
    ],
)
def test_the_networks_weights_have_the_same_bounds(override, message):
    with pytest.raises(UserError) as raised:
        NetworkSettings.from_module(toy_settings, **override)
    assert message in str(raised.value)


@pytest.fixture
def no_tensorflow_path(tmp_path) -> str:
    (tmp_path / "tensorflow").mkdir()
    (tmp_path / "tensorflow" / "__init__.py").write_text(
        'raise ImportError("checking settings must not import TensorFlow")\n'
    )
    return str(tmp_path)


def test_train_py_refuses_an_absurd_weight_before_tensorflow_loads(no_tensorflow_path):
    done = subprocess.run(
        [sys.executable, "train.py", "--tv_weight=1e30"],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": no_tensorflow_path},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [
        "error: TV_WEIGHT (--tv_weight) must be at most 1e+13: above it the float32 loss or "
        "its gradient overflows and the image stops changing; got 1e+30"
    ]


def _run_changes_the_image(tmp_path, tiny_mat, image_pair, **weights) -> tuple[float, dict]:
    """How far a 4-step run's result moved from its start (the photo), in grey levels,
    and its last losses."""
    import dataclasses

    from neural_style.media.images import load_image, resize_image
    from tests.support import stylize_without_plots, tiny_settings

    base = tiny_settings(tmp_path, tiny_mat, image_pair, noise=0.0, train_steps=4, overwrite=True)
    result, _ = stylize_without_plots(dataclasses.replace(base, output_format="png", **weights))
    final = load_image(result.output_path, "OUTPUT_IMAGE")
    start = resize_image(load_image(base.content_image, "CONTENT_IMAGE"), final.shape[:2])
    return float(np.abs(final - start).mean()), result.losses


@pytest.mark.slow  # two real runs
def test_at_the_largest_weights_the_image_still_changes_and_past_them_it_freezes(
    tmp_path, tiny_mat, image_pair
):
    largest = {"alpha": MAX_WEIGHT / MAX_WEIGHT_RATIO, "beta": MAX_WEIGHT, "tv_weight": MAX_WEIGHT}
    Settings.from_module(toy_settings, **largest)  # accepted
    moved, losses = _run_changes_the_image(tmp_path, tiny_mat, image_pair, **largest)
    assert moved > 1.0 and np.isfinite(losses["total"])
    # Past the bound (set here around the checks), Adam's squared gradient is infinite and
    # every step is 0: the run ends on its start image.
    frozen, _ = _run_changes_the_image(tmp_path, tiny_mat, image_pair, tv_weight=1e30)
    assert frozen < 0.5
