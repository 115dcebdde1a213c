"""Shared fixtures: tiny VGG-19 .mat files in the real layout, and small images (built by
tests/support.py, which tests import directly); and the test tiers.

The tiers: a plain `python -m pytest` runs the fast tier, which any user can run (no root,
no browser, a few minutes on a laptop). Tests marked `slow` (long runs, subprocesses),
`root` (they mount small file systems to fill a disk or make it read-only) or `browser`
(Chromium) join it with `--full`, as CI runs them: `python -m pytest --full -n 2`. An
explicit `-m EXPRESSION` chooses by marks instead.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.support import photo, save_mat, tiny_variables, write_image

# The marks of the tests that the fast tier leaves out.
OUTSIDE_THE_FAST_TIER = ("slow", "root", "browser")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--full",
        action="store_true",
        help="run every tier: the slow, root and browser tests too (as CI does)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--full") or config.option.markexpr:
        return
    left_out = [item for item in items if _outside_the_fast_tier(item)]
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = [item for item in items if not _outside_the_fast_tier(item)]
        config.stash[_LEFT_OUT] = len(left_out)


def _outside_the_fast_tier(item: pytest.Item) -> bool:
    return any(item.get_closest_marker(name) for name in OUTSIDE_THE_FAST_TIER)


_LEFT_OUT = pytest.StashKey[int]()


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    left_out = config.stash.get(_LEFT_OUT, 0)
    if left_out:
        terminalreporter.write_line(
            f"fast tier: {left_out} slow, root and browser tests were left out; "
            "python -m pytest --full -n 2 --dist loadfile runs every tier (docs/testing.md)"
        )


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
