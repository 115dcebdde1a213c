"""CLUSTER (--cluster): "" runs a folder in this process, "ray" on a Ray cluster; a bad
value, or "ray" without the cluster extra, is one line naming the setting and the fix,
for train.py's Settings and for stylize.py's NetworkSettings alike. The runs on a cluster
are in tests/test_cluster.py and tests/test_stylize_cluster.py."""

from __future__ import annotations

import subprocess
import sys

import pytest

from neural_style.errors import UserError
from neural_style.settings.gatys import Settings
from neural_style.settings.network import NetworkSettings
from tests import toy_settings
from tests.support import REPO_ROOT

KINDS = pytest.mark.parametrize("kind", [Settings, NetworkSettings])


@KINDS
def test_cluster_defaults_to_this_process(kind):
    assert kind.from_module(toy_settings).cluster == ""


@KINDS
def test_an_unknown_cluster_is_one_line_naming_the_choices(kind):
    with pytest.raises(UserError, match=r'^CLUSTER \(--cluster\) must be "" \(this process\) or'):
        kind.from_module(toy_settings, cluster="slurm")


@KINDS
def test_ray_without_the_extra_says_how_to_install_it(kind, monkeypatch):
    # None in sys.modules is how Python marks a module as not importable.
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(UserError) as raised:
        kind.from_module(toy_settings, cluster="ray")
    assert str(raised.value) == (
        "CLUSTER (--cluster) ray needs the cluster extra, which is not installed: "
        "python -m pip install -e '.[cluster]'"
    )


@pytest.mark.slow
def test_train_py_without_the_extra_is_one_error_line(tmp_path):
    """As a user without Ray meets it: train.py --cluster=ray, one line, exit status 2."""
    hide_ray = tmp_path / "sitecustomize.py"
    hide_ray.write_text("import sys\nsys.modules['ray'] = None\n")
    env_path = f"{tmp_path}:{REPO_ROOT}"
    done = subprocess.run(
        [sys.executable, "train.py", "--cluster=ray", "--content_image=images/content.jpg"],
        cwd=REPO_ROOT,
        env={"PYTHONPATH": env_path, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        "error: CLUSTER (--cluster) ray needs the cluster extra, which is not installed: "
        "python -m pip install -e '.[cluster]'"
    ]
