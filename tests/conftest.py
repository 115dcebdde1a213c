"""Shared fixtures: tiny VGG-19 .mat files in the real layout, and small images (built by
tests/support.py, which tests import directly)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.support import photo, save_mat, tiny_variables, write_image


@pytest.fixture(scope="session")
def tiny_mat(tmp_path_factory) -> str:
    """A new-format VGG-19 file with a few channels per layer."""
    return save_mat(tmp_path_factory.mktemp("weights") / "tiny.mat", tiny_variables("new"))


@pytest.fixture(scope="session")
def tiny_net(tiny_mat):
    from neural_style.vgg.network import VGG19

    return VGG19.from_mat(tiny_mat)


@pytest.fixture
def image_pair(tmp_path) -> tuple[str, str]:
    """(content, style) JPEG paths of small images."""
    content = write_image(tmp_path / "content.jpg", photo(40, 48, seed=1))
    stripes = np.zeros((48, 48, 3), np.float32)
    stripes[:, ::4] = (250, 60, 20)
    stripes[::6, :] = (20, 80, 240)
    style = write_image(tmp_path / "style.png", stripes)
    return content, style


@pytest.fixture(scope="module")
def network(tmp_path_factory) -> str:
    """A small untrained transformer saved as .keras, for stylize.py's tests."""
    from neural_style.feedforward.model import build_transformer

    path = str(tmp_path_factory.mktemp("network") / "network.keras")
    build_transformer(width=2, seed=5).save(path)
    return path
