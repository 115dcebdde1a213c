"""Ending a run on request (Ctrl-C, `kill`, `docker stop`, a closed terminal) without
losing its work.

SIGINT, SIGTERM and SIGHUP all ask a run to stop. Outside a loop they end it at once, as
`Stopped` (a KeyboardInterrupt), which is safe while nothing is worth saving yet. Inside
`deferred()`, the block where an optimiser or a trainer holds work, a signal only records
the request: the loop finishes the step it is in, so that the saved step and the saved
optimiser state agree, saves, and raises `Stopped` itself (`raise_if_requested`). Further
signals while it saves change nothing, so a second Ctrl-C cannot cut the save short.

The exit status is the shell's: 128 + the signal's number (130, 143, 129).

    with stopping.deferred():
        for result in optimizer.steps(n):
            ...
            if stopping.requested():
                save(); stopping.raise_if_requested()
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator

# The signals that ask a run to stop; SIGHUP is missing on Windows.
STOP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)


class Stopped(KeyboardInterrupt):
    """The run was asked to stop by `signal_number`; the process exits with `exit_code`."""

    def __init__(self, signal_number: int = signal.SIGINT):
        super().__init__(signal_name(signal_number))
        self.signal_number = signal_number
        self.exit_code = 128 + signal_number


def signal_name(signal_number: int) -> str:
    try:
        return signal.Signals(signal_number).name
    except ValueError:
        return f"signal {signal_number}"


class _State:
    requested: int | None = None  # the first stop signal received, if any
    snapshot: bool = False  # a snapshot was asked for (a live view's button)
    deferring: int = 0  # how many deferred() blocks are open
    installed: bool = False
    # Until a command can catch Stopped (install_early), a signal ends the process at once.
    exit_at_once: bool = False
    stderr: int | None = None  # a copy of file descriptor 2 as the command started


_state = _State()
_snapshot_lock = threading.Lock()  # a click from another thread is never lost between steps


def _on_signal(signal_number: int, frame) -> None:
    del frame
    if _state.requested is None:
        _state.requested = signal_number
        if _state.deferring:
            print(
                f"\n{signal_name(signal_number)}: stopping after this step, then saving",
                file=sys.stderr,
                flush=True,
            )
    if _state.exit_at_once and not _state.deferring:
        # A command outside its loop: nothing is half-written (files are atomic), and an
        # exception raised here could be turned into a traceback by the code it lands in.
        _say_on_the_terminal(stopped_line(signal_number))
        os._exit(128 + signal_number)
    if not _state.deferring:
        raise Stopped(signal_number)


def _say_on_the_terminal(line: str) -> None:
    """`line` on the stderr the command started with: TensorFlow's start-up points file
    descriptor 2 at /dev/null for a while (runtime.native_stderr_silenced)."""
    descriptor = _state.stderr if _state.stderr is not None else 2
    with contextlib.suppress(OSError):
        sys.stderr.flush()
        os.write(descriptor, f"{line}\n".encode())


def stopped_line(signal_number: int) -> str:
    """What a command says when a signal ends it: `interrupted`, or `interrupted (SIGTERM)`."""
    named = "" if signal_number == signal.SIGINT else f" ({signal_name(signal_number)})"
    return f"interrupted{named}"


def install_early() -> None:
    """For an entry point's first line, before its imports: a stop signal ends the process
    at once with one line, until `install` takes over."""
    install(exit_at_once=True)


def install(*, exit_at_once: bool = False) -> None:
    """Route every stop signal through this module (from the main thread; elsewhere, where
    Python cannot set handlers, it does nothing and Ctrl-C stays Python's own)."""
    _state.exit_at_once = exit_at_once
    if exit_at_once and _state.stderr is None:
        with contextlib.suppress(OSError):
            _state.stderr = os.dup(2)
    if _state.installed or threading.current_thread() is not threading.main_thread():
        return
    for number in STOP_SIGNALS:
        signal.signal(number, _on_signal)
    _state.installed = True


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Inside this block a stop signal only records the request (see the module doc)."""
    install()
    _state.deferring += 1
    try:
        yield
    finally:
        _state.deferring -= 1


def requested() -> int | None:
    """The stop signal received so far, or None."""
    return _state.requested


def raise_if_requested() -> None:
    """Raise Stopped if a stop was asked for."""
    if _state.requested is not None:
        raise Stopped(_state.requested)


def request(signal_number: int = signal.SIGINT) -> None:
    """Ask for a stop as a signal would (a button in a live view, a test)."""
    _state.requested = signal_number if _state.requested is None else _state.requested


def request_snapshot() -> None:
    """Ask the loop for a snapshot after the step in progress (a live view's button): the
    files SNAPSHOT_EVERY would write, or a network's sample."""
    with _snapshot_lock:
        _state.snapshot = True


def take_snapshot_request() -> bool:
    """True once after request_snapshot (the loop takes it, so one click is one snapshot)."""
    if not _state.snapshot:  # the common case, without the lock
        return False
    with _snapshot_lock:
        asked, _state.snapshot = _state.snapshot, False
    return asked


def reset() -> None:
    """Forget the requests (a new run in the same process, e.g. in tests)."""
    _state.requested = None
    _state.snapshot = False
