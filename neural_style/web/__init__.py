"""The live view: a run watched, stopped or snapshotted from a browser.

    python train.py --web            # prints `live view: http://127.0.0.1:8765/?token=...`
    python train_network.py --web

The page (page.html, self-contained) shows the image as it forms, the content and style
images, the losses, the progress and the settings, and pushes Stop (as Ctrl-C: the best
image and a checkpoint are kept) and Snapshot now. It is one more observer of the run:

    with web.opted_in(flag_values, "photo", settings) as live:   # binds, prints the URL
        stylize(settings, extra_observers=live.observers, controls=live.controls)

state.py holds what the page sees, observer.py fills it from the run's events, server.py
serves it (aiohttp, an optional extra: python -m pip install -e '.[web]').
"""

from __future__ import annotations

import contextlib
import dataclasses
import secrets
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, NamedTuple, TextIO

from neural_style import stopping
from neural_style.errors import UserError, one_line
from neural_style.settings.values import describe
from neural_style.settings.web import WebSettings

if TYPE_CHECKING:
    from neural_style.feedforward.training.session import TrainingObserver
    from neural_style.gatys.events import Observer

INSTALL = "python -m pip install -e '.[web]'"
FLUSH_SECONDS = 3.0  # at the end, how long open pages get to receive the final state


def check_installed() -> None:
    """Raises a one-line UserError when the web extra (aiohttp) is missing."""
    try:
        import aiohttp  # noqa: F401
    except ImportError:
        raise UserError(
            f"{describe('web')} needs the web extra, which is not installed: {INSTALL}"
        ) from None


class LiveSession:
    """A served live view: its state, the run's controls its buttons ask, the server and
    its URL."""

    def __init__(
        self, web: WebSettings, kind: str, settings: dict[str, Any], *, preserve: bool = False
    ):
        check_installed()
        from neural_style.web.observer import Actions
        from neural_style.web.server import LiveServer, bind
        from neural_style.web.state import LiveState

        self.web = web
        listener = bind(web.web_host, web.web_port)
        self.state = LiveState(kind, settings, preserve_colors=preserve)
        self.controls = stopping.Controls()
        self.token = secrets.token_urlsafe(18)
        actions = Actions(self.state, self.controls)
        self.server = LiveServer(self.state, actions, self.token, listener)
        self.server.start()
        self.url = f"http://{_url_host(web.web_host)}:{self.server.port}/?token={self.token}"

    def gatys_view(self) -> Observer:
        """The observer of a Gatys run (gatys/events.Observer)."""
        from neural_style.web.observer import LiveView

        return LiveView(self.state, self.web.web_every)

    def training_view(self, batch_size: int) -> TrainingObserver:
        """The observer of network training (feedforward.training.session.TrainingObserver)."""
        from neural_style.web.observer import LiveTraining

        return LiveTraining(self.state, batch_size)

    def close(self, error: BaseException | None) -> None:
        """Tell the pages how the run ended, give them a moment to get it, and stop."""
        if error is None:
            status = {"status": "finished", "text": "finished"}
        elif isinstance(error, KeyboardInterrupt):
            status = {
                "status": "stopped",
                "text": "stopped: the best image and a checkpoint are saved",
            }
        else:
            status = {"status": "failed", "text": f"failed: {one_line(error)}"}
        self.state.set("status", status)
        self.server.flush(FLUSH_SECONDS)
        self.server.shutdown()


@contextlib.contextmanager
def serving(
    web: WebSettings, kind: str, settings: Any, stream: TextIO | None = None
) -> Iterator[LiveSession]:
    """A live view for the run inside the block: bound and announced on `stream` before
    it, told how the run ended after it (also when it raised). `kind` is "photo" (a
    Gatys run, which says later whether it is a batch or a video) or "training";
    `settings` the run's (Settings or NetworkSettings), shown on the page."""
    stream = stream or sys.stdout
    preserve = getattr(settings, "preserve_colors", "") == "luminance"
    session = LiveSession(web, kind, dataclasses.asdict(settings), preserve=preserve)
    if not session.server.loopback:  # the address bound, however WEB_HOST spelt it
        print(
            f"warning: the live view listens on {web.web_host}, not only this machine: anyone "
            "who can reach it and has the URL can watch and stop the run",
            file=stream,
            flush=True,
        )
    print(f"live view: {session.url}", file=stream, flush=True)
    try:
        yield session
    except BaseException as error:
        session.close(error)
        raise
    session.close(None)


class RunHooks(NamedTuple):
    """What a command hands its run for the live view: the observers to add, and the
    controls its buttons ask (without a live view: none, and controls of the run's own)."""

    observers: list[Any]
    controls: stopping.Controls


@contextlib.contextmanager
def opted_in(flag_values: Any, kind: str, settings: Any) -> Iterator[RunHooks]:
    """The commands' one opt-in: with WEB (--web), a live view served around the block
    (see serving) for a run of `kind`, "photo" or "training"; without it nothing is served
    and nothing more is imported."""
    web = WebSettings.from_flag_values(flag_values)
    if not web.web:
        yield RunHooks([], stopping.Controls())
        return
    with serving(web, kind, settings) as live:
        if kind == "training":
            view = live.training_view(settings.network_batch_size)
        else:
            view = live.gatys_view()
        yield RunHooks([view], live.controls)


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", "::", ""):
        import socket

        return socket.gethostname()
    return f"[{host}]" if ":" in host else host
