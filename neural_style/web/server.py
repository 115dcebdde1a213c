"""The live view's HTTP server: aiohttp on its own thread and event loop.

    GET  /?token=T              the page (page.html)
    GET  /events?token=T        Server-Sent Events: the whole state, then each change
    GET  /image/NAME?token=T&v=N  one of the run's current images as a JPEG (NAME is a key
                                of the state, never a path; N, its version, a whole number:
                                anything else is a 400)
    POST /stop?token=T          stop as Ctrl-C does (the best image and checkpoint are kept)
    POST /snapshot?token=T      a snapshot after the step in progress

Every request needs the run's token (else 403). A POST must also come from the page
itself: its Origin is this server's own address (else 403), so another site open in the
same browser cannot press the buttons. Bound to a loopback address (any of 127.0.0.0/8,
::1), the server also refuses any Host but a loopback name or address, which defeats DNS
rebinding.

The socket is bound by `bind` on the caller's thread, before the run starts, so that a
busy port is one line before anything else happens.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hmac
import importlib.resources
import json
import math
import socket
import threading
import time
from typing import Any

from aiohttp import web

from neural_style.errors import UserError, setting_fix
from neural_style.settings.values import describe
from neural_style.settings.web import is_loopback
from neural_style.web.observer import Actions
from neural_style.web.state import LiveState

TICK = 0.1  # seconds between two looks at the state for news to push
KEEPALIVE = 15.0  # seconds of silence after which a stream sends a comment line
NAME_PATTERN = r"[a-z0-9-]{1,40}"
VERSION_DIGITS = 18  # an image's version in a URL (`v`): at most this many decimal digits
PRIVILEGED_PORTS = 1024  # ports below this need privileges to listen on (on POSIX systems)
HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    # The page fetches nothing from anywhere else, and may not be made to.
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
        "img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    ),
}


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on `host`:`port` (0 = any free port).

    Raises:
      UserError: the port is in use, or the address cannot be listened on.
    """
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as error:
        raise UserError(
            f"{describe('web_host')}: cannot listen on {host!r} ({error.strerror}); "
            f"{setting_fix('WEB_HOST', 'ADDRESS')}, e.g. 127.0.0.1"
        ) from None
    family, kind, protocol, _, address = found[0]
    listener = socket.socket(family, kind, protocol)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(address)
        listener.listen(64)
    except OSError as error:
        listener.close()
        if error.errno == errno.EADDRINUSE:
            raise UserError(
                f"{describe('web_port')}: port {port} on {host} is in use (another run's "
                f"live view?); {setting_fix('WEB_PORT', 'PORT')}, or 0 for any free port"
            ) from None
        if error.errno in (errno.EACCES, errno.EPERM):
            raise UserError(_not_permitted(host, port)) from None
        raise UserError(
            f"{describe('web_host')}: cannot listen on {host} port {port} "
            f"({error.strerror}); {setting_fix('WEB_HOST', 'ADDRESS')}, e.g. 127.0.0.1"
        ) from None
    return listener


def _not_permitted(host: str, port: int) -> str:
    """Why listening on `port` was refused, and the fix: the port, not the address."""
    if 0 < port < PRIVILEGED_PORTS:
        why = (
            f"port {port} is below {PRIVILEGED_PORTS}, and only a privileged user (root, or "
            "a program given CAP_NET_BIND_SERVICE) may listen on such a port"
        )
    else:
        why = f"this user may not listen on {host} port {port} (permission denied)"
    return (
        f"{describe('web_port')}: {why}; {setting_fix('WEB_PORT', 'PORT')} with a port from "
        f"{PRIVILEGED_PORTS} up, e.g. 8765, or 0 for any free port"
    )


class LiveServer:
    """Serves `state` on `listener` from a daemon thread until `shutdown`."""

    def __init__(self, state: LiveState, actions: Actions, token: str, listener: socket.socket):
        self.state = state
        self.actions = actions
        self.token = token
        self.listener = listener
        self.port = listener.getsockname()[1]
        self.loopback = is_loopback(listener.getsockname()[0])
        self.page = importlib.resources.files(__package__).joinpath("page.html").read_bytes()
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._ticker: asyncio.Task | None = None
        self._wake = asyncio.Event()
        self._sent: dict[int, int] = {}  # stream id -> last sequence number sent
        self._served: dict[str, int] = {}  # image name -> last version served
        self._thread = threading.Thread(target=self._serve, name="live-view", daemon=True)

    def start(self) -> None:
        started = threading.Event()
        self._thread.start()
        self._loop.call_soon_threadsafe(started.set)
        started.wait(10)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._setup())
        self._loop.run_forever()

    async def _setup(self) -> None:
        app = web.Application(middlewares=[self._guard])
        app.router.add_get("/", self._page)
        app.router.add_get("/events", self._events)
        app.router.add_get("/image/{name:" + NAME_PATTERN + "}", self._image)
        app.router.add_post("/stop", self._stop)
        app.router.add_post("/snapshot", self._snapshot)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        await web.SockSite(self._runner, self.listener).start()
        self._ticker = self._loop.create_task(self._tick())

    # --- the rules every request passes ---

    @web.middleware
    async def _guard(self, request: web.Request, handler) -> web.StreamResponse:
        refusal = self.refusal(request)
        if refusal:
            response: web.StreamResponse = web.Response(status=403, text=f"forbidden: {refusal}")
        else:
            response = await handler(request)
        if not response.prepared:
            response.headers.update(HEADERS)
        return response

    def refusal(self, request: web.Request) -> str:
        """Why `request` is refused, or "" when it may go on."""
        given = request.query.get("token", "")
        if not hmac.compare_digest(given.encode(), self.token.encode()):
            return "this live view needs its token; open the URL the run printed"
        host = host_name(request.host or "")
        if self.loopback and not is_loopback(host):
            return f"this live view answers only to a loopback address, not {host!r}"
        if request.method == "POST" and request.headers.get("Origin") != self.origin(request):
            return "an action must come from the live view's own page"
        return ""

    @staticmethod
    def origin(request: web.Request) -> str:
        return f"http://{request.host}"

    # --- the handlers ---

    async def _page(self, request: web.Request) -> web.Response:
        return web.Response(body=self.page, content_type="text/html", charset="utf-8")

    async def _image(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        data = await self._loop.run_in_executor(None, self.state.encoded, name)
        if data is None:
            raise web.HTTPNotFound(text="no such image in this run")
        asked = request.query.get("v", "0")
        # ASCII digits only: str.isdigit() also takes "²", which int() refuses.
        if not (asked.isascii() and asked.isdigit() and len(asked) <= VERSION_DIGITS):
            return web.Response(
                status=400,
                text=f"bad request: v must be the image's version, a whole number of at most "
                f"{VERSION_DIGITS} digits, e.g. v=3",
            )
        version = int(asked)
        self._served[name] = max(self._served.get(name, 0), version)
        return web.Response(body=data, content_type="image/jpeg")

    async def _stop(self, request: web.Request) -> web.Response:
        self.actions.stop()
        return web.json_response({"ok": True})

    async def _snapshot(self, request: web.Request) -> web.Response:
        self.actions.snapshot()
        return web.json_response({"ok": True})

    async def _events(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={**HEADERS, "Content-Type": "text/event-stream"})
        await response.prepare(request)
        stream = id(response)
        self.state.pages += 1
        try:
            await response.write(b"retry: 1000\n\n")
            sequence = await self._send_state(response)
            self._sent[stream] = sequence
            while True:
                sequence = await self._send_news(response, sequence)
                self._sent[stream] = sequence
        except (ConnectionError, asyncio.CancelledError, RuntimeError):
            pass  # the page went away, or the server stops
        finally:
            self.state.pages -= 1
            self._sent.pop(stream, None)
        return response

    async def _send_state(self, response: web.StreamResponse) -> int:
        sequence, view = self.state.snapshot()
        await response.write(_message(sequence, "state", view))
        return sequence

    async def _send_news(self, response: web.StreamResponse, sequence: int) -> int:
        wake = self._wake
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), KEEPALIVE)
        news = self.state.since(sequence)
        if news is None:  # fell behind the backlog: start again from the whole state
            return await self._send_state(response)
        if not news:
            await response.write(b": keepalive\n\n")
            return sequence
        await response.write(b"".join(_message(*item) for item in news))
        return news[-1][0]

    async def _tick(self) -> None:
        last = -1
        while True:
            await asyncio.sleep(TICK)
            if self.state.sequence != last:
                last = self.state.sequence
                wake, self._wake = self._wake, asyncio.Event()
                wake.set()

    # --- the end ---

    def flush(self, timeout: float) -> None:
        """Wait (at most `timeout` seconds) until every open page has had the last
        message and the latest version of each image it was told of."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            _, view = self.state.snapshot()
            behind = any(sent < self.state.sequence for sent in list(self._sent.values()))
            unseen = any(
                self._served.get(name, 0) < image["version"]
                for name, image in view["images"].items()
                if name in ("current", "best", "frame")
            )
            if not self._sent or not (behind or unseen):
                return
            time.sleep(0.05)

    async def _close(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        if self._runner is not None:
            await self._runner.cleanup()

    def shutdown(self) -> None:
        """Stop serving and close the socket (the thread ends)."""
        if not self._thread.is_alive():
            return
        closing = asyncio.run_coroutine_threadsafe(self._close(), self._loop)
        with contextlib.suppress(Exception):
            closing.result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self.listener.close()


def host_name(header: str) -> str:
    """The name or address of a Host header, without its port: `[::1]:80` -> `::1`."""
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def _message(sequence: int, kind: str, data: Any) -> bytes:
    text = json.dumps(_json_ready(data), allow_nan=False)
    return f"id: {sequence}\nevent: {kind}\ndata: {text}\n\n".encode()


def _json_ready(value: Any) -> Any:
    """`value` with NaN and infinities (a diverging loss) as null, which JSON can carry."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(item) for item in value]
    return value
