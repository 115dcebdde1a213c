"""Tests for neural_style.plots: the loss plot is a real PNG, is written atomically, copes
with odd logs, and is skipped quietly without matplotlib."""

import sys

import pytest
from PIL import Image

from neural_style.media.plots import PLOT_NOTE, write_loss_plot

HEADER = "step,content,style,tv,total,seconds\n"


def _write_csv(tmp_path, rows, name="run-losses.csv"):
    path = tmp_path / name
    path.write_text(HEADER + "".join(",".join(map(str, row)) + "\n" for row in rows))
    return str(path)


def _rows(count):
    return [
        (step, 1000.0 / step, 5000.0 / step**2, 0.0, 1000.0 / step + 5000.0 / step**2, 0.1)
        for step in range(1, count + 1)
    ]


def _assert_png(path):
    with Image.open(path) as picture:
        assert picture.format == "PNG"
        assert picture.width > 0 and picture.height > 0
        picture.load()


def _leftovers(tmp_path):
    return sorted(path.name for path in tmp_path.iterdir() if path.name.endswith(".tmp"))


@pytest.fixture
def matplotlib_installed():
    """matplotlib is in the `test` extra: the plot tests run, never skip."""
    import matplotlib  # noqa: F401


def test_writes_a_png(tmp_path, matplotlib_installed):
    csv_path = _write_csv(tmp_path, _rows(20))
    png_path = tmp_path / "run-losses.png"
    assert write_loss_plot(csv_path, str(png_path)) is True
    _assert_png(png_path)
    assert _leftovers(tmp_path) == []


def test_single_row(tmp_path, matplotlib_installed):
    csv_path = _write_csv(tmp_path, _rows(1))
    png_path = tmp_path / "one.png"
    assert write_loss_plot(csv_path, str(png_path))
    _assert_png(png_path)


def test_header_only(tmp_path, matplotlib_installed):
    csv_path = _write_csv(tmp_path, [])
    png_path = tmp_path / "empty.png"
    assert write_loss_plot(csv_path, str(png_path))
    _assert_png(png_path)


def test_nan_inf_negative_and_truncated_rows(tmp_path, matplotlib_installed):
    rows = [
        *_rows(5),
        (6, "nan", 1.0, 0.0, "nan", 0.1),
        (7, "inf", "-inf", -1.0, "inf", 0.1),
        (8, 5.0, 2.0, 0.0, 7.0, 0.1),
        ("9", "3."),  # a line cut short by an interrupted run
    ]
    csv_path = _write_csv(tmp_path, rows)
    png_path = tmp_path / "odd.png"
    assert write_loss_plot(csv_path, str(png_path))
    _assert_png(png_path)


def test_nothing_positive(tmp_path, matplotlib_installed):
    csv_path = _write_csv(tmp_path, [(1, 0.0, 0.0, 0.0, 0.0, 0.1), (2, "nan", 0, 0, "nan", 0)])
    png_path = tmp_path / "flat.png"
    assert write_loss_plot(csv_path, str(png_path))
    _assert_png(png_path)


def test_failed_drawing_leaves_the_old_png(tmp_path, monkeypatch, matplotlib_installed):
    from matplotlib.figure import Figure

    png_path = tmp_path / "run-losses.png"
    Image.new("RGB", (3, 2), "red").save(png_path)
    old_bytes = png_path.read_bytes()

    def broken_savefig(self, *args, **kwargs):
        raise RuntimeError("drawing failed")

    monkeypatch.setattr(Figure, "savefig", broken_savefig)
    with pytest.raises(RuntimeError, match="drawing failed"):
        write_loss_plot(_write_csv(tmp_path, _rows(3)), str(png_path))
    assert png_path.read_bytes() == old_bytes
    assert _leftovers(tmp_path) == []


def test_not_a_losses_log(tmp_path, matplotlib_installed):
    path = tmp_path / "other.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="missing column"):
        write_loss_plot(str(path), str(tmp_path / "x.png"))
    assert not (tmp_path / "x.png").exists()


def test_without_matplotlib_returns_false_and_writes_nothing(tmp_path, monkeypatch):
    # None in sys.modules makes `import matplotlib` raise ImportError, even when it is
    # installed and already imported; its submodules too, in case they are cached.
    for name in [name for name in sys.modules if name.split(".")[0] == "matplotlib"]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    csv_path = _write_csv(tmp_path, _rows(3))
    png_path = tmp_path / "run-losses.png"
    assert write_loss_plot(csv_path, str(png_path)) is False
    assert not png_path.exists()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["run-losses.csv"]


def test_without_matplotlib_the_plot_process_says_how_to_install_it(tmp_path, monkeypatch):
    from neural_style.media.plots import PlotProcess

    # A matplotlib that cannot be imported, first on the child's path.
    blocker = tmp_path / "no_matplotlib" / "matplotlib"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('matplotlib is not installed')\n")
    csv_path = _write_csv(tmp_path, _rows(3))
    png_path = tmp_path / "run-losses.png"
    monkeypatch.setenv("PYTHONPATH", str(blocker.parent))
    note = PlotProcess(csv_path, str(png_path)).wait()
    assert note == PLOT_NOTE
    assert "pip install" in note and ".[plot]" in note
    assert not png_path.exists()


def test_a_plot_process_draws_the_png_outside_this_process(tmp_path, matplotlib_installed):
    from neural_style.media.plots import PlotProcess

    csv_path = _write_csv(tmp_path, _rows(5))
    png_path = tmp_path / "run-losses.png"
    assert PlotProcess(csv_path, str(png_path)).wait() == ""
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_plot_process_that_fails_says_why_in_one_line(tmp_path):
    from neural_style.media.plots import PlotProcess

    path = tmp_path / "other.csv"
    path.write_text("a,b\n1,2\n")
    note = PlotProcess(str(path), str(tmp_path / "x.png")).wait()
    assert note.startswith("note: the loss plot could not be drawn (ValueError: ")
    assert "missing column" in note and "\n" not in note
    assert not (tmp_path / "x.png").exists()


def test_a_png_that_cannot_be_written_is_one_line(tmp_path, matplotlib_installed):
    from neural_style.errors import UserError

    blocker = tmp_path / "plots"
    blocker.write_bytes(b"a file, where the plot's folder should be")
    png_path = str(blocker / "run-losses.png")

    with pytest.raises(UserError) as caught:
        write_loss_plot(_write_csv(tmp_path, _rows(3)), png_path)

    message = str(caught.value)
    assert message.startswith(f"{png_path}: cannot write the file: {blocker} is a file where ")
    assert "set OUTPUT_IMAGE in settings.py" in message and "\n" not in message
    assert blocker.read_bytes() == b"a file, where the plot's folder should be"


def test_a_plot_process_that_cannot_write_says_why_without_a_traceback(
    tmp_path, matplotlib_installed
):
    from neural_style.media.plots import PlotProcess

    blocker = tmp_path / "plots"
    blocker.write_bytes(b"in the way")
    png_path = str(blocker / "run-losses.png")

    note = PlotProcess(_write_csv(tmp_path, _rows(3)), png_path).wait()

    assert note.startswith(f"note: the loss plot could not be drawn ({png_path}: cannot write")
    assert "is a file where a folder should be" in note
    assert "Traceback" not in note and "UserError" not in note and "\n" not in note
