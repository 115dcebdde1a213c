"""The run's surroundings, chosen once at start-up: TensorFlow's import, the device and
the conv precision.

Nothing here imports the modules that use it, and TensorFlow is imported only by
`start_tensorflow`, so the entry points can check flags and inputs before it loads.

    device = start_tensorflow(without_keras=True)
    precision = resolve_precision(settings.precision, device.on_gpu, settings.optimizer)
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import sys
from typing import NamedTuple

from neural_style.errors import UserError

# mallopt's parameter number for the mmap threshold, and the threshold a run sets.
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 1 << 20
# CPU flags of a bfloat16 unit; where one is found, PRECISION "auto" means mixed_bfloat16.
BFLOAT16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
# The address space TensorFlow maps as it starts, its thread pools' stacks aside: under
# `ulimit -v` it crashed at 1.6 GiB and started at 1.8 GiB on 2 cores (TensorFlow 2.21),
# and a run's plan needs more; below this a run is refused before TensorFlow loads.
TENSORFLOW_START_BYTES = 2 << 30


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


# Packages `import tensorflow` imports only to offer more, each inside a try that lets the
# import fail: Keras, which a Gatys run never uses (TF imports its optimisers to register
# them), and matplotlib and pandas, which Keras imports for its plotting and data-frame
# helpers that no command here uses. Held back, they cost nothing: about 0.5 s for Keras,
# and 0.8 s for matplotlib and pandas (measured with python -X importtime, TF 2.21 and
# Keras 3.15 on the AMD EPYC). They import normally afterwards.
KERAS = ("keras",)
KERAS_EXTRAS = ("matplotlib", "pandas")


@contextlib.contextmanager
def _held_back(names: tuple[str, ...]):
    """Makes an import of any of `names` fail at once inside the block, unless it is
    imported already; afterwards they import as usual."""
    holding = [name for name in names if name not in sys.modules]
    if "tensorflow" in sys.modules:
        holding = []  # too late to make a difference
    for name in holding:
        sys.modules[name] = None
    try:
        yield
    finally:
        for name in holding:
            if sys.modules.get(name, 0) is None:
                del sys.modules[name]


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
    """Import TensorFlow quietly, without the packages it would import only to offer more
    (Keras too with `without_keras`: see KERAS and KERAS_EXTRAS), and return it.

    Raises:
      UserError: the address-space limit (`ulimit -v`) is too small for TensorFlow to
        start, which it would answer with a crash rather than an error.
    """
    check_address_space()
    _return_freed_memory_promptly()
    held_back = KERAS + KERAS_EXTRAS if without_keras else KERAS_EXTRAS
    try:
        with native_stderr_silenced(), _held_back(held_back):
            import tensorflow as tf
    except ImportError:
        # A TensorFlow or Keras that needs one of them after all: import them too.
        with native_stderr_silenced():
            import tensorflow as tf

    return tf


def tensorflow_start_bytes() -> int:
    """The address space TensorFlow needs to start here: TENSORFLOW_START_BYTES, and a
    stack for each thread of its two pools (a thread per logical CPU each)."""
    stack = resource.getrlimit(resource.RLIMIT_STACK)[0]
    if stack == resource.RLIM_INFINITY or stack <= 0:
        stack = 8 << 20
    return TENSORFLOW_START_BYTES + 2 * (os.cpu_count() or 1) * stack


def check_address_space(limit: int | None = None) -> None:
    """Refuse, in one line, an address-space limit (RLIMIT_AS; `limit` bytes, else this
    process's soft limit) below what TensorFlow needs to start."""
    if limit is None:
        limit = resource.getrlimit(resource.RLIMIT_AS)[0]
    need = tensorflow_start_bytes()
    if limit == resource.RLIM_INFINITY or limit >= need:
        return
    raise UserError(
        f"the address-space limit (ulimit -v) of {limit / 2**30:.1f} GiB is below the "
        f"{need / 2**30:.1f} GiB TensorFlow needs to start on this machine; raise it "
        f"(ulimit -v unlimited, or at least ulimit -v {need // 1024}) and run again"
    )


def start_tensorflow(*, without_keras: bool = False, threads: int = 0) -> Device:
    """Import TensorFlow and find its devices: which one the run uses, and a line saying so.
    `threads` above 0 sizes both of TensorFlow's thread pools (the ops', and the one that
    runs ops side by side): a cluster task given that many CPUs uses no more of them."""
    tf = import_tensorflow(without_keras=without_keras)
    # Before the first op, which fixes the pools (a process that ran ops keeps its pools).
    if threads > 0 and tf.config.threading.get_intra_op_parallelism_threads() != threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
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


def resolve_network_precision(precision: str, on_gpu: bool) -> str:
    """The NETWORK_PRECISION stylize.py uses. "auto" is mixed_bfloat16 on a CPU with a
    bfloat16 unit (about 1.5x faster per photo on an AMD EPYC with AVX512-BF16, 0.3 grey
    levels from float32; benchmarks/feedforward.py measures both), mixed_float16 on a GPU
    (as TensorFlow's guide advises for inference there; not measured here), float32
    otherwise."""
    if precision == "mixed_float16" and not on_gpu:
        raise UserError(
            "NETWORK_PRECISION (--network_precision) mixed_float16 needs a GPU; use "
            "mixed_bfloat16 or float32"
        )
    if precision != "auto":
        return precision
    if on_gpu:
        return "mixed_float16"
    return "mixed_bfloat16" if cpu_has_bfloat16() else "float32"


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
