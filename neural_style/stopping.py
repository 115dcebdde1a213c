"""Ending a run on request (Ctrl-C, `kill`, `docker stop`, a closed terminal) without
losing its work.

SIGINT, SIGTERM and SIGHUP all ask a run to stop. Outside a loop they end it at once, as
`Stopped` (a KeyboardInterrupt), which is safe while nothing is worth saving yet. Inside
`deferred()`, the block where an optimiser or a trainer holds work, a signal only records
the request in the block's `Controls`: the loop finishes the step it is in, so that the
saved step and the saved optimiser state agree, saves, and raises `Stopped` itself
(`Controls.raise_if_stopped`). Further signals while it saves change nothing, so a second
Ctrl-C cannot cut the save short. A live view's Stop and Snapshot buttons ask the same
Controls.

The exit status is the shell's: 128 + the signal's number (130, 143, 129).

    with stopping.deferred(controls):
        for result in optimizer.steps(n):
            ...
            if controls.stop_requested:
                save(); controls.raise_if_stopped()
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from typing import TextIO, TypeVar

T = TypeVar("T")

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


class Controls:
    """What asks one run to stop, or to take a snapshot now: the stop signals (while the run
    defers them, see `deferred`) and a live view's buttons. The run's loop is handed its
    Controls and looks at them between steps; anyone may ask, from any thread."""

    def __init__(self) -> None:
        self._stop: int | None = None
        self._snapshot = False
        self._lock = threading.Lock()  # a click from another thread is never lost

    def request_stop(self, signal_number: int = signal.SIGINT) -> bool:
        """Ask the run to stop after the step in progress, as `signal_number` would; the
        first request is the one kept. True if this was the first."""
        with self._lock:
            first = self._stop is None
            if first:
                self._stop = signal_number
        return first

    @property
    def stop_requested(self) -> int | None:
        """The signal whose stop was asked for (SIGINT for a button), or None."""
        return self._stop

    def raise_if_stopped(self) -> None:
        """Raise Stopped if a stop was asked for."""
        if self._stop is not None:
            raise Stopped(self._stop)

    def request_snapshot(self) -> None:
        """Ask for a snapshot after the step in progress: the files SNAPSHOT_EVERY would
        write, or a network's sample."""
        with self._lock:
            self._snapshot = True

    def take_snapshot(self) -> bool:
        """True once after request_snapshot (the loop takes it: one click, one snapshot)."""
        if not self._snapshot:  # the common case, without the lock
            return False
        with self._lock:
            asked, self._snapshot = self._snapshot, False
        return asked


# What a signal inside a deferred() block says it will do, unless the block says otherwise.
SAVING_NOTICE = "stopping after this step, then saving"


class _State:
    active: list[Controls]  # the Controls of the deferred() blocks open, outermost first
    notices: list[str]  # what each of those blocks says a stop will do (see `deferred`)
    installed: bool = False
    # Until a command can catch Stopped (install_early), a signal ends the process at once.
    exit_at_once: bool = False
    stderr: int | None = None  # a copy of file descriptor 2 as the command started
    # While `interruptible` waits: what for, and what a stop keeps (said as it exits).
    waiting: tuple[str, str] | None = None

    def __init__(self) -> None:
        self.active = []
        self.notices = []


_state = _State()


def _on_signal(signal_number: int, frame: object) -> None:
    del frame
    if _state.active:
        if request(signal_number):
            notice = f"\n{signal_name(signal_number)}: {_state.notices[-1]}"
            if _state.stderr is not None:  # a command: also while fd 2 is silenced
                _say_on_the_terminal(notice)
            else:
                print(notice, file=sys.stderr, flush=True)
        return
    if _state.exit_at_once:
        # A command outside its loop: nothing is half-written (files are atomic), and an
        # exception raised here could be turned into a traceback by the code it lands in.
        _say_on_the_terminal(_exit_line(signal_number))
        os._exit(128 + signal_number)
    raise Stopped(signal_number)


def _exit_line(signal_number: int) -> str:
    """The line a signal ends the command with; while `interruptible` waits, it says for
    what, and what is kept."""
    if _state.waiting is None:
        return stopped_line(signal_number)
    waiting_for, kept = _state.waiting
    return f"{stopped_line(signal_number)} while waiting for {waiting_for}; {kept}"


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
def deferred(controls: Controls | None = None, notice: str | None = None) -> Iterator[Controls]:
    """Inside this block a stop signal only asks `controls` (new ones if None) to stop, and
    with them every block it is nested in; see the module doc. The signal is acknowledged
    on stderr as `SIGTERM: <notice>`, which says what the stop will keep: by default the
    enclosing block's notice, else SAVING_NOTICE."""
    install()
    controls = controls if controls is not None else Controls()
    if notice is None:
        notice = _state.notices[-1] if _state.notices else SAVING_NOTICE
    _state.active.append(controls)
    _state.notices.append(notice)
    try:
        yield controls
    finally:
        index = _state.active.index(controls)
        del _state.active[index], _state.notices[index]


def request(signal_number: int = signal.SIGINT) -> bool:
    """Ask every run in progress (each open deferred() block) to stop, as a signal does;
    True if the innermost had not been asked yet. Outside a run it does nothing."""
    firsts = [controls.request_stop(signal_number) for controls in _state.active]
    return bool(firsts) and firsts[-1]


def requested() -> int | None:
    """The stop asked of the innermost run in progress, or None."""
    return _state.active[-1].stop_requested if _state.active else None


def raise_if_requested() -> None:
    """Raise Stopped if the innermost run in progress was asked to stop (for code that
    learns of a stop indirectly, as a child process that died of the same signal)."""
    if _state.active:
        _state.active[-1].raise_if_stopped()


def interruptible(
    work: Callable[[], T], *, waiting_for: str, kept: str, stream: TextIO | None = None
) -> T:
    """`work()`, a call into native code that may wait long (for another machine, say),
    made such that a stop signal ends the command while it waits, with
    `interrupted (SIGTERM) while waiting for <waiting_for>; <kept>` (or raises Stopped
    when the command cannot exit at once, see `install`). With `stream`, `waiting for
    <waiting_for>` is said there once a signal would be heard so.

    Python runs its signal handlers in the main thread, between its own steps, which a
    wait inside C++ never reaches; and native code may take a signal's handler for itself
    (TensorFlow's coordination service takes SIGTERM, and then never ends the process).
    So `work` runs in a thread with the stop signals blocked, as are the threads it starts,
    while the main thread takes the signals itself (sigtimedwait); once `work` returns,
    the handlers Python knows of are put back. Where Python cannot do this (Windows, or not in
    the main thread), `work()` is simply called."""
    if not hasattr(signal, "sigtimedwait") or (
        threading.current_thread() is not threading.main_thread()
    ):
        return work()
    outcome: dict[str, object] = {}
    finished = threading.Event()

    def run() -> None:
        try:
            outcome["value"] = work()
        except BaseException as error:  # handed to the main thread
            outcome["error"] = error
        finally:
            finished.set()

    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    _state.waiting = (waiting_for, kept)
    try:
        threading.Thread(target=run, name="interruptible", daemon=True).start()
        if stream is not None:
            stream.write(f"waiting for {waiting_for}\n")  # one write: a whole line
            stream.flush()
        while not finished.is_set():
            heard = signal.sigtimedwait(STOP_SIGNALS, _POLL_SECONDS)
            if heard is not None:
                _stop_while_waiting(heard.si_signo)
            # A thread started before this call may still take a signal: with Python's
            # handler, which the main thread runs after sigtimedwait, not native code's.
            _reinstall()
    finally:
        _reinstall()
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
        _state.waiting = None
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["value"]  # type: ignore[return-value]


# How often `interruptible` looks whether its work has finished, seconds.
_POLL_SECONDS = 0.05


def _stop_while_waiting(signal_number: int) -> None:
    """Ends the command (or raises Stopped) for a signal heard by `interruptible`."""
    if _state.exit_at_once:
        _say_on_the_terminal(_exit_line(signal_number))
        os._exit(128 + signal_number)
    print(_exit_line(signal_number), file=sys.stderr, flush=True)
    raise Stopped(signal_number)


def _reinstall() -> None:
    """The stop signals' handlers as Python believes them to be (this module's, once
    installed), where native code may have replaced them behind Python's back."""
    for number in STOP_SIGNALS:
        handler = signal.getsignal(number)
        if handler is not None:  # None: a handler that Python did not install
            signal.signal(number, handler)
