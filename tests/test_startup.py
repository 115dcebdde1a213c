"""Start-up: TensorFlow is imported without the packages it would import only to offer
more (neural_style.runtime.import_tensorflow), and they still import afterwards."""

import subprocess
import sys

import pytest

IMPORT_AND_REPORT = """
import sys
from neural_style.runtime import import_tensorflow
import_tensorflow(without_keras={without_keras})
print(sorted(name for name in ("keras", "matplotlib", "pandas") if name in sys.modules))
import matplotlib.pyplot, pandas, keras
print("imported afterwards")
"""


@pytest.mark.slow
@pytest.mark.parametrize(("without_keras", "loaded"), [(False, "['keras']"), (True, "[]")])
def test_tensorflow_starts_without_plotting_and_data_frames(without_keras, loaded):
    code = IMPORT_AND_REPORT.format(without_keras=without_keras)
    finished = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False
    )
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert finished.stdout.splitlines() == [loaded, "imported afterwards"]
