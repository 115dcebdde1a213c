"""The run's surroundings, chosen once at start-up: TensorFlow's import, the device, the
conv precision, and which VGG-19 weights file is read.

Nothing here imports the modules that use it, and TensorFlow is imported only by
`start_tensorflow`, so the entry points can check flags and inputs before it loads.

    weights = resolve_weights_path(settings.vgg_model_path, stream)
    device = start_tensorflow(without_keras=True)
    precision = resolve_precision(settings.precision, device.on_gpu, settings.optimizer)
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import sys
from typing import NamedTuple, TextIO

from neural_style.errors import UserError
from neural_style.settings.gatys import DEFAULT_VGG_MODEL_PATH

SYNTHETIC_WEIGHTS_NAME = "synthetic-vgg-verydeep-19-v1.mat"
SYNTHETIC_WEIGHTS_PATH = os.path.join("weights", SYNTHETIC_WEIGHTS_NAME)
# Bytes the synthetic stand-in takes on disk: the .mat (575 MB) and its conv cache (80 MB),
# with room for the temporary copy each is written through.
SYNTHETIC_WEIGHTS_BYTES = 700 * 1024**2
# mallopt's parameter number for the mmap threshold, and the threshold a run sets.
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 1 << 20
# CPU flags of a bfloat16 unit; where one is found, PRECISION "auto" means mixed_bfloat16.
BFLOAT16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
REAL_WEIGHTS_URL = "https://www.vlfeat.org/matconvnet/models/imagenet-vgg-verydeep-19.mat"
GET_REAL_WEIGHTS = (
    f"get the real file with `curl -L -o weights/imagenet-vgg-verydeep-19.mat {REAL_WEIGHTS_URL}`"
    " (see weights/README.md)"
)


class Device(NamedTuple):
    description: str  # the line a run prints, e.g. "running on the CPU (...)"
    on_gpu: bool


@contextlib.contextmanager
def native_stderr_silenced():
    """Hide what TensorFlow's C++ side prints while it starts (CUDA probing on machines
    without a GPU, oneDNN notes): it writes to file descriptor 2 directly, before its log
    level is read, and buries the progress lines. Setting TF_CPP_MIN_LOG_LEVEL yourself
    shows it all again."""
    if "TF_CPP_MIN_LOG_LEVEL" in os.environ:
        yield
        return
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


@contextlib.contextmanager
def _keras_held_back():
    """Keep `import tensorflow` from importing Keras, which a Gatys run never uses: TF
    imports Keras's optimisers only to register them, inside a try that lets an import
    fail. That is about 0.5 s of start-up and 60 MB (more where matplotlib is installed,
    which Keras imports too). Keras imports normally afterwards, and tf.keras still works."""
    if "keras" in sys.modules or "tensorflow" in sys.modules:
        yield
        return
    sys.modules["keras"] = None  # an import of keras now fails at once
    try:
        yield
    finally:
        if sys.modules.get("keras", 0) is None:
            del sys.modules["keras"]


def _return_freed_memory_promptly() -> None:
    """Have glibc's malloc serve blocks of 1 MiB and more from their own mappings, which
    go back to the system when freed. By default it raises that threshold as blocks are
    freed, and the activations a step frees then stay in the heap, fragmented: the
    resident memory of a 512x384 run grew by about 110 MB over its first steps (measured,
    benchmarks/speed.py). A no-op where the C library is not glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
    except (OSError, AttributeError):
        pass


def import_tensorflow(*, without_keras: bool = False):
    """Import TensorFlow quietly (`without_keras`: see _keras_held_back) and return it."""
    _return_freed_memory_promptly()
    held_back = _keras_held_back() if without_keras else contextlib.nullcontext()
    with native_stderr_silenced(), held_back:
        import tensorflow as tf

    return tf


def start_tensorflow(*, without_keras: bool = False) -> Device:
    """Import TensorFlow and find its devices: which one the run uses, and a line saying so."""
    tf = import_tensorflow(without_keras=without_keras)
    with native_stderr_silenced():
        gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        return Device(f"running on the GPU ({', '.join(gpu.name for gpu in gpus)})", True)
    return Device("running on the CPU (TensorFlow sees no GPU)", False)


def cpu_has_bfloat16() -> bool:
    """Whether this CPU has bfloat16 arithmetic (Linux: /proc/cpuinfo's flags)."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("flags"):
                    return any(flag in line.split() for flag in BFLOAT16_CPU_FLAGS)
    except OSError:
        pass
    return False


def resolve_precision(precision: str, on_gpu: bool, optimizer: str = "adam") -> str:
    """The PRECISION a run uses. "auto" is mixed_bfloat16 for Adam on a CPU with a
    bfloat16 unit, where its steps are several times faster (the ratio depends on the CPU;
    benchmarks/speed.py measures it) and its final loss was measured within 1% of
    float32's; float32 elsewhere: for L-BFGS, whose line search wants exact losses, and on
    GPUs, where mixed precision has not been measured yet."""
    if precision == "mixed_float16" and not on_gpu:
        raise UserError(
            "PRECISION (--precision) mixed_float16 needs a GPU; use mixed_bfloat16 or float32"
        )
    if precision != "auto":
        return precision
    if optimizer == "adam" and not on_gpu and cpu_has_bfloat16():
        return "mixed_bfloat16"
    return "float32"


def resolve_weights_path(path: str, stream: TextIO) -> str:
    """The .mat file to load: `path`, or the synthetic stand-in when the default is missing
    (written once beside it). A path the user gave is loaded, and reported, as it is."""
    if os.path.exists(path) or os.path.normpath(path) != os.path.normpath(DEFAULT_VGG_MODEL_PATH):
        return path
    print(
        f"note: {path} not found, so a synthetic VGG-19 is used (textures, not art); "
        f"for real results {GET_REAL_WEIGHTS}",
        file=stream,
    )
    synthetic_path = os.path.join(os.path.dirname(path), SYNTHETIC_WEIGHTS_NAME)
    if not os.path.exists(synthetic_path):
        _write_synthetic_weights(synthetic_path, stream)
    return synthetic_path


def _write_synthetic_weights(path: str, stream: TextIO) -> None:
    from neural_style.vgg.synthetic import write_synthetic_vgg19

    folder = os.path.dirname(os.path.abspath(path))
    needed = SYNTHETIC_WEIGHTS_BYTES / 1024**2
    try:
        os.makedirs(folder, exist_ok=True)
        free = shutil.disk_usage(folder).free
    except OSError as error:
        raise UserError(
            f"{folder}: cannot create the folder for the synthetic weights "
            f"({error.strerror or error}); it needs about {needed:.0f} MB there; "
            f"{GET_REAL_WEIGHTS}"
        ) from None
    if free < SYNTHETIC_WEIGHTS_BYTES:
        raise UserError(
            f"{folder}: {free / 1024**2:.0f} MB free, and the synthetic weights need about "
            f"{needed:.0f} MB there; free some space, or {GET_REAL_WEIGHTS}"
        )
    print(
        f"writing the synthetic weights to {path} (once, {needed:.0f} MB)", file=stream, flush=True
    )
    try:
        write_synthetic_vgg19(path)
    except OSError as error:
        raise UserError(
            f"{path}: cannot write the synthetic weights ({error.strerror or error}); they need "
            f"about {needed:.0f} MB in {folder}; free some space, or {GET_REAL_WEIGHTS}"
        ) from None
