"""The optimiser and a whole run at toy scale: loss goes down, files appear on cadence,
Ctrl-C and a diverging loss keep a good image, the default weights fall back."""

from __future__ import annotations

import csv
import dataclasses
import functools
import io
import json
import os
import sys

import numpy as np
import pytest

from neural_style.errors import UserError
from neural_style.gatys import run
from neural_style.gatys.pipeline import initial_image, loss_weights
from neural_style.media.images import load_image, resize_image
from neural_style.optimize.loss_functions import LossFunction
from neural_style.settings.gatys import Settings
from neural_style.vgg import synthetic, weights_file
from neural_style.vgg.weights_file import DEFAULT_VGG_MODEL_PATH
from tests import toy_settings as user_settings
from tests.single_image import AdamOptimizer, compute_targets
from tests.support import (
    FEW_LAYERS,
    TINY_OPTIONS,
    files_only_observers,
    photo,
    stop_after,
    stylize_without_plots,
    tiny_settings,
)


def test_a_short_run_lowers_the_total_loss(tiny_net):
    weights = loss_weights(Settings.from_module(user_settings))
    content, style = photo(32, 40, seed=1), photo(32, 40, seed=7)[:, ::-1]
    targets = compute_targets(tiny_net, content, [style], [1.0], weights)
    loss = LossFunction(tiny_net, targets, weights)
    optimizer = AdamOptimizer(loss, initial_image(content, 0.5, 0), learning_rate=5.0)
    totals = [result.losses["total"] for result in optimizer.steps(20)]
    assert totals[-1] < 0.5 * totals[0]
    image = optimizer.current_image()
    assert image.shape == (32, 40, 3) and image.min() >= 0 and image.max() <= 255


def test_initial_image_blends_noise_and_is_seeded():
    content = photo(32, 32)
    np.testing.assert_array_equal(initial_image(content, 0.0, 1), content)
    noisy = initial_image(content, 0.5, 1)
    np.testing.assert_array_equal(noisy, initial_image(content, 0.5, 1))
    assert not np.array_equal(noisy, initial_image(content, 0.5, 2))
    assert 0 < np.abs(noisy - content).mean() < 128


def test_a_diverging_step_restores_the_best_image_and_halves_the_rate(tiny_net):
    weights = loss_weights(Settings.from_module(user_settings))
    content = photo(32, 32)
    targets = compute_targets(tiny_net, content, [content[::-1]], [1.0], weights)
    optimizer = AdamOptimizer(LossFunction(tiny_net, targets, weights), content, learning_rate=5.0)
    results = list(optimizer.steps(3))
    assert not any(result.note for result in results)
    best_loss = min(result.losses["total"] for result in results)
    best = optimizer.best()
    optimizer.image.assign(np.full((1, 32, 32, 3), np.nan, np.float32))
    (result,) = optimizer.steps(1, first=4)
    assert not result.finite and result.step == 4
    assert "diverged" in result.note and "learning rate 2.5" in result.note
    assert optimizer.rate == 2.5
    np.testing.assert_array_equal(optimizer.current_image(), best)
    state = optimizer.state()
    assert int(state["iterations"]) == 0  # Adam's moments restart
    assert not np.any(state["first_moment"]) and not np.any(state["second_moment"])
    assert float(state["best_loss"]) == pytest.approx(best_loss)
    (result,) = optimizer.steps(1, first=5)
    assert result.finite and not result.note


def test_a_run_writes_snapshots_on_cadence_and_its_records(tmp_path, tiny_mat, image_pair, capsys):
    settings = tiny_settings(tmp_path, tiny_mat, image_pair, **FEW_LAYERS)
    result = run.stylize(settings)
    out = tmp_path / "out"
    assert sorted(os.listdir(out)) == [
        "result-2.jpg",
        "result-4.jpg",
        "result-checkpoint.npz",
        "result-losses.csv",
        "result-losses.png",
        "result-settings.json",
        "result.jpg",
    ]
    assert result.output_path == str(out / "result.jpg") and result.steps == 5
    final = load_image(result.output_path, "OUTPUT_IMAGE")
    assert final.shape == (33, 40, 3)  # 40 wide, the content's 40x48 aspect ratio kept
    with open(out / "result-losses.csv") as file:
        rows = list(csv.DictReader(file))
    assert [int(row["step"]) for row in rows] == [1, 2, 3, 4, 5]
    assert float(rows[-1]["total"]) == pytest.approx(result.losses["total"])
    assert json.loads((out / "result-settings.json").read_text())["train_steps"] == 5
    printed = capsys.readouterr().out
    assert "step 5/5" in printed and "s/step" in printed and "ETA" in printed
    assert "running on the" in printed


def test_snapshot_every_zero_writes_only_the_final_image(tmp_path, tiny_mat, image_pair):
    stylize_without_plots(
        tiny_settings(tmp_path, tiny_mat, image_pair, snapshot_every=0, train_steps=3, **FEW_LAYERS)
    )
    assert not [
        name
        for name in os.listdir(tmp_path / "out")
        if name.startswith("result-") and name.endswith(".jpg")
    ]
    assert os.path.exists(tmp_path / "out" / "result.jpg")


def test_ctrl_c_saves_the_current_image(tmp_path, tiny_mat, image_pair):
    settings = tiny_settings(tmp_path, tiny_mat, image_pair, train_steps=50, **FEW_LAYERS)
    printed = io.StringIO()
    with pytest.raises(KeyboardInterrupt):
        observers = [*files_only_observers(settings, printed), stop_after(3)]
        run.stylize(settings, printed, observers=observers)
    assert os.path.exists(tmp_path / "out" / "result.jpg")
    assert "interrupted at step 3" in printed.getvalue()
    assert not [name for name in os.listdir(tmp_path / "out") if name.endswith(".tmp")]


def test_a_loss_that_never_recovers_stops_with_the_best_image(tmp_path, tiny_mat, image_pair):
    settings = tiny_settings(
        tmp_path, tiny_mat, image_pair, noise=0.0, train_steps=10, **FEW_LAYERS
    )
    # Weights this large are refused by the settings' checks (test_weight_bounds.py); set
    # here past them, they make the loss infinite at every step, as a numerical accident would.
    settings = dataclasses.replace(settings, alpha=1e38, beta=1e38)
    with pytest.raises(UserError, match=r"the loss became inf at step 8 and kept diverging"):
        stylize_without_plots(settings)
    saved = load_image(str(tmp_path / "out" / "result.jpg"), "OUTPUT_IMAGE")
    content = load_image(settings.content_image, "CONTENT_IMAGE")
    content = resize_image(content, saved.shape[:2])
    assert np.abs(saved - content).mean() < 3  # the untouched start image, JPEG-compressed


def test_the_default_weights_fall_back_to_a_synthetic_file(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    small = functools.partial(synthetic.write_synthetic_vgg19, **TINY_OPTIONS)
    monkeypatch.setattr(synthetic, "write_synthetic_vgg19", small)
    path = weights_file.resolve_weights_path(DEFAULT_VGG_MODEL_PATH, sys.stdout)
    assert path == weights_file.SYNTHETIC_WEIGHTS_PATH and os.path.exists(path)
    printed = capsys.readouterr().out
    assert "synthetic VGG-19" in printed and "get the real file" in printed
    assert "writing the synthetic weights" in printed
    # Once written it is reused, and a path the user chose never falls back.
    assert weights_file.resolve_weights_path(DEFAULT_VGG_MODEL_PATH, sys.stdout) == path
    assert "writing" not in capsys.readouterr().out
    assert weights_file.resolve_weights_path("weights/mine.mat", sys.stdout) == ("weights/mine.mat")
