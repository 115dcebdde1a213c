"""The live view (neural_style/web): its settings, its rules (token, Origin, Host, no
paths), its event stream and images, and its buttons on real short runs, in process and
as `python train.py --web`. The browser itself is in test_web_browser.py."""

from __future__ import annotations

import errno
import http.client
import io
import json
import logging
import os
import pathlib
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from PIL import Image

from neural_style import web
from neural_style.errors import UserError
from neural_style.gatys import run
from neural_style.settings.web import WebSettings, is_loopback
from neural_style.web import server
from tests import toy_settings
from tests.support import (
    FEW_LAYER_FLAGS,
    FEW_LAYERS,
    REPO_ROOT,
    StartedEarly,
    files_only_observers,
    is_selected,
    photo,
    run_train,
    tiny_settings,
    write_image_pair,
)


def web_settings(**overrides) -> WebSettings:
    values = {"web": True, "web_port": 0, "web_every": 0.05}
    return WebSettings.from_module(toy_settings, **{**values, **overrides})


@pytest.fixture
def live(tmp_path, tiny_mat, image_pair):
    settings = tiny_settings(tmp_path, tiny_mat, image_pair)
    session = web.LiveSession(web_settings(), "photo", _as_dict(settings))
    yield session
    _let_closed_pages_go(session)
    session.server.shutdown()


def _let_closed_pages_go(session, seconds: float = 5.0) -> None:
    """Wait until the server has let go of every page a test closed. A stream's handler
    learns that its page went away only when it next writes, so a message is sent: else
    it waits for news (up to the keepalive, 15 s) and the shutdown for it (5 s)."""
    deadline = time.monotonic() + seconds
    while session.state.pages and time.monotonic() < deadline:
        session.state.note("the test is over")
        time.sleep(0.05)


def _as_dict(settings) -> dict:
    import dataclasses

    return dataclasses.asdict(settings)


def request(
    session, path: str, *, method: str = "GET", token=True, headers=None, address="127.0.0.1"
):
    """(status, headers, body) of one request to the session's server at `address`."""
    port = session.server.port
    connection = http.client.HTTPConnection(address, port, timeout=10)
    if token:
        path += ("&" if "?" in path else "?") + f"token={session.token}"
    connection.request(method, path, headers=headers or {})
    response = connection.getresponse()
    body = response.read()
    connection.close()
    return response.status, dict(response.getheaders()), body


def own_origin(session) -> dict:
    return {"Origin": f"http://127.0.0.1:{session.server.port}"}


class EventStream:
    """The page's event stream, read as the browser reads it."""

    def __init__(self, session):
        self.connection = http.client.HTTPConnection("127.0.0.1", session.server.port, timeout=30)
        self.connection.request("GET", f"/events?token={session.token}")
        self.response = self.connection.getresponse()
        assert self.response.status == 200
        assert self.response.getheader("Content-Type").startswith("text/event-stream")

    def next(self, seconds: float = 60.0) -> tuple[int, str, object]:
        """The next message: (sequence number, type, data); an AssertionError when none
        comes within `seconds` (keepalive comments do not count), so no test hangs."""
        fields: dict[str, str] = {}
        deadline = time.monotonic() + seconds
        while True:
            if time.monotonic() > deadline:
                raise AssertionError(f"no message in {seconds:g} s")
            line = self.response.readline().decode()
            if not line:
                raise EOFError("the stream ended")
            line = line.rstrip("\n")
            if not line:
                if "event" in fields:
                    return int(fields["id"]), fields["event"], json.loads(fields["data"])
                continue
            if line.startswith(":"):
                continue
            name, _, value = line.partition(": ")
            fields[name] = value

    def until(self, predicate, limit: int = 10000) -> list[tuple[int, str, object]]:
        seen = []
        for _ in range(limit):
            seen.append(self.next())
            if predicate(seen[-1]):
                return seen
        raise AssertionError(f"not seen in {limit} messages: {seen[-5:]}")

    def close(self) -> None:
        # The response holds the socket open too: closing both is what ends the connection.
        self.response.close()
        self.connection.close()


# --- settings ------------------------------------------------------------------------------


def test_the_web_settings_default_to_off_on_this_machine_only():
    defaults = WebSettings.from_module(toy_settings)
    assert defaults.web is False and defaults.web_host == "127.0.0.1" and defaults.loopback
    assert 0 < defaults.web_port <= 65535 and defaults.web_every > 0


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"web_port": 70000}, r"^WEB_PORT \(--web_port\) must be a port from 0 to 65535"),
        ({"web_port": -1}, r"^WEB_PORT \(--web_port\) must be a port"),
        ({"web_every": 0}, r"^WEB_EVERY \(--web_every\) must be a number of seconds > 0"),
        ({"web_every": float("nan")}, r"^WEB_EVERY \(--web_every\) must be"),
        ({"web_every": "often"}, r"^WEB_EVERY \(--web_every\) must be a number"),
        ({"web_host": " "}, r"^WEB_HOST \(--web_host\) must be an address"),
        ({"web": "yes"}, r"^WEB \(--web\) must be True or False"),
    ],
)
def test_bad_web_settings_are_one_line(overrides, message):
    with pytest.raises(UserError, match=message) as caught:
        WebSettings.from_module(toy_settings, **overrides)
    assert "\n" not in str(caught.value)


# --- the rules -----------------------------------------------------------------------------


def test_every_page_stream_image_and_action_needs_the_token(live):
    live.state.picture("current", "test", photo(20, 24))
    for method, path in [
        ("GET", "/"),
        ("GET", "/events"),
        ("GET", "/image/current"),
        ("POST", "/stop"),
        ("POST", "/snapshot"),
    ]:
        for query in ("", "?token=", "?token=wrong", f"?token={live.token[:-1]}"):
            status, _, body = request(
                live, path + query, method=method, token=False, headers=own_origin(live)
            )
            assert status == 403, (method, path, query)
            assert b"needs its token" in body
    assert live.controls.stop_requested is None and not live.controls.take_snapshot()
    status, headers, page = request(live, "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert b"EventSource" in page and b"<canvas" in page
    # Self-contained: nothing is fetched from anywhere else, and the browser is told so.
    assert b"http://" not in page and b"https://" not in page and b'src="//' not in page
    assert "default-src 'none'" in headers["Content-Security-Policy"]


def test_an_action_from_another_origin_is_refused(live):
    for headers in ({}, {"Origin": "http://evil.example"}, {"Origin": "null"}):
        for action in ("/stop", "/snapshot"):
            status, _, body = request(live, action, method="POST", headers=headers)
            assert status == 403 and b"own page" in body, (headers, action)
    assert live.controls.stop_requested is None and not live.controls.take_snapshot()
    # A GET cannot act at all, with the token or not.
    assert request(live, "/stop")[0] == 405
    assert live.controls.stop_requested is None
    status, _, _ = request(live, "/snapshot", method="POST", headers=own_origin(live))
    assert status == 200 and live.controls.take_snapshot()
    status, _, _ = request(live, "/stop", method="POST", headers=own_origin(live))
    assert status == 200 and live.controls.stop_requested == signal.SIGINT


def test_a_foreign_host_name_is_refused_on_a_loopback_address(live):
    """A DNS-rebinding page reaches 127.0.0.1 under its own name: refused."""
    port = live.server.port
    headers = {"Host": f"evil.example:{port}", "Origin": f"http://evil.example:{port}"}
    assert request(live, "/", headers={"Host": f"evil.example:{port}"})[0] == 403
    assert request(live, "/stop", method="POST", headers=headers)[0] == 403
    assert live.controls.stop_requested is None
    assert request(live, "/", headers={"Host": f"localhost:{port}"})[0] == 200


def test_only_the_runs_own_images_are_served_and_they_decode(live, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("not for the web")
    live.state.picture("current", "step 3", photo(40, 48, seed=3))
    status, headers, body = request(live, "/image/current")
    assert status == 200 and headers["Content-Type"] == "image/jpeg"
    with Image.open(io.BytesIO(body)) as image:
        assert image.format == "JPEG" and image.size == (48, 40)
        decoded = np.asarray(image.convert("RGB"), np.float32)
    assert np.abs(decoded - photo(40, 48, seed=3)).mean() < 8
    for path in (
        "/image/best",  # not (yet) one of the run's images
        f"/image/{secret}",
        "/image/..%2F..%2Fetc%2Fpasswd",
        "/image/../../etc/passwd",
        "/image/CURRENT",
        f"/{secret}",
        "/etc/passwd",
    ):
        assert request(live, path)[0] == 404, path
    assert secret.read_text() == "not for the web"


@pytest.mark.parametrize(
    ("host", "local"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("127.255.255.254", True),
        ("localhost", True),
        ("LOCALHOST", True),
        ("::1", True),
        ("[::1]", True),
        ("::ffff:127.0.0.3", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.1", False),
        ("128.0.0.1", False),
        ("127.0.0.1.evil.example", False),
        ("localhost.evil.example", False),
        ("evil.example", False),
    ],
)
def test_every_loopback_address_is_this_machine_only(host, local):
    assert is_loopback(host) is local
    assert web_settings(web_host=host).loopback is local


@pytest.mark.parametrize(
    ("header", "name"),
    [
        ("127.0.0.2:8765", "127.0.0.2"),
        ("localhost", "localhost"),
        ("[::1]:8765", "::1"),
        ("[::1", "[::1"),
        ("evil.example:80", "evil.example"),
    ],
)
def test_the_host_header_is_read_without_its_port(header, name):
    assert server.host_name(header) == name


def test_another_loopback_address_keeps_the_host_check_and_warns_of_nothing(
    tmp_path, tiny_mat, image_pair
):
    """--web_host=127.0.0.2 is this machine only: no warning, and a foreign Host (DNS
    rebinding) is refused there as on 127.0.0.1."""
    output = io.StringIO()
    settings = tiny_settings(tmp_path, tiny_mat, image_pair)
    with web.serving(web_settings(web_host="127.0.0.2"), "photo", settings, output) as live:
        port = live.server.port

        def status(host: str, method: str = "GET", path: str = "/") -> int:
            headers = {"Host": f"{host}:{port}", "Origin": f"http://{host}:{port}"}
            return request(live, path, method=method, headers=headers, address="127.0.0.2")[0]

        assert status("evil.example") == 403
        assert status("evil.example", "POST", "/stop") == 403
        assert live.controls.stop_requested is None
        assert status("127.0.0.2") == 200 and status("localhost") == 200
    lines = output.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"live view: http://127.0.0.2:{port}/?token=")


class _RefusedBind(socket.socket):
    """A socket whose bind is refused, as Linux refuses a normal user a port below 1024."""

    def bind(self, address) -> None:
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))


@pytest.mark.parametrize(
    ("port", "why"),
    [
        (80, "port 80 is below 1024, and only a privileged user (root, or a program given "),
        (8765, "this user may not listen on 127.0.0.1 port 8765 (permission denied)"),
    ],
)
def test_permission_denied_on_a_port_is_blamed_on_web_port(monkeypatch, port, why):
    monkeypatch.setattr(server.socket, "socket", _RefusedBind)
    with pytest.raises(UserError) as caught:
        server.bind("127.0.0.1", port)
    message = str(caught.value)
    assert message.startswith(f"WEB_PORT (--web_port): {why}")
    assert "set WEB_PORT in settings.py or pass --web_port=PORT" in message
    assert "WEB_HOST" not in message and "\n" not in message


def test_a_malformed_image_version_is_400_without_a_traceback(live, caplog):
    """`v` is the image's version, which the page sends as a whole number; anything else,
    even what str.isdigit() takes ("²") or int() cannot read (5000 digits), is a 400."""
    live.state.picture("current", "step 3", photo(20, 24))
    with caplog.at_level(logging.WARNING):
        for bad in ("abc", "%C2%B2", "9" * 5000, "", "-1", "1.5", "%20"):
            status, headers, body = request(live, f"/image/current?v={bad}")
            assert status == 400, bad
            assert body.startswith(b"bad request: v must be the image's version"), body
            assert headers["X-Content-Type-Options"] == "nosniff"
        assert request(live, "/image/current?v=3")[0] == 200
        assert request(live, "/image/current")[0] == 200
    assert [record.getMessage() for record in caplog.records] == []


# --- the event stream ----------------------------------------------------------------------


def progress(step: int) -> dict:
    losses = {"content": 10.0 / step, "style": 100.0 / step, "tv": 1.0, "total": 111.0 / step}
    return {"step": step, "total": 50, "label": "", "losses": losses, "seconds": 0.1,
            "eta": 1.0, "rate": 0.0}  # fmt: skip


def test_events_arrive_in_order_and_a_late_page_catches_up_at_once(live):
    for step in range(1, 6):
        live.state.step(progress(step))
    live.state.picture("current", "step 5", photo(20, 20))
    live.state.note("a note before the page opened")
    stream = EventStream(live)
    try:
        sequence, kind, view = stream.next()
        assert kind == "state"  # everything so far, in one message
        assert view["history"]["steps"] == [1, 2, 3, 4, 5]
        assert view["history"]["parts"]["style"] == [100.0 / s for s in range(1, 6)]
        assert view["progress"]["step"] == 5 and view["images"]["current"]["version"] == 1
        assert view["notes"] == ["a note before the page opened"]
        assert view["settings"]["train_steps"] == 5
        for step in range(6, 31):
            live.state.step(progress(step))
        live.state.step({**progress(31), "losses": {**progress(31)["losses"], "total": math_nan()}})
        live.state.set("status", {"status": "finished", "text": "finished"})
        seen = stream.until(lambda message: message[1] == "status")
    finally:
        stream.close()
    numbers = [number for number, _, _ in seen]
    assert numbers == list(range(sequence + 1, sequence + 1 + len(seen)))
    steps = [data["step"] for _, kind, data in seen if kind == "step"]
    assert steps == list(range(6, 32))
    assert seen[-2][2]["losses"]["total"] is None  # a NaN loss still travels, as null


def math_nan() -> float:
    return float("nan")


def test_a_page_that_falls_behind_gets_the_whole_state_again(live):
    stream = EventStream(live)
    released = threading.Event()
    try:
        stream.next()
        from neural_style.web import state as state_module

        # Hold the server's loop while more than its backlog happens, so that it must
        # fall behind, as a page on a slow link would.
        held = threading.Event()

        def hold() -> None:
            held.set()
            released.wait(30)

        live.server._loop.call_soon_threadsafe(hold)
        assert held.wait(30)
        for step in range(1, state_module.BACKLOG + 50):
            live.state.step(progress(step))
        released.set()
        seen = stream.until(lambda message: message[1] == "state")
        assert seen[-1][2]["progress"]["step"] == state_module.BACKLOG + 49
        assert all(kind != "step" for _, kind, _ in seen)  # the state, not the backlog
    finally:
        released.set()
        stream.close()


# --- the buttons on real runs --------------------------------------------------------------


def observers_of(settings, live, output) -> list:
    """What `train.py --web` attaches (run.standard_observers, then the live view) but the
    loss plots, which no test here looks at: a matplotlib child process per snapshot, about
    a second each."""
    return [*files_only_observers(settings, output), live.gatys_view()]


def press(session, action: str) -> None:
    status, _, body = request(session, f"/{action}", method="POST", headers=own_origin(session))
    assert status == 200, body


def reached(step: int):
    """A condition on the messages seen: the run has reported `step`."""

    def condition(seen: list) -> bool:
        for _, kind, data in reversed(seen):
            if kind == "step":
                return data["step"] >= step
            if kind == "state" and data["progress"]:
                return data["progress"]["step"] >= step
        return False

    return condition


def heard(kind: str, text: str):
    """A condition on the messages seen: a `kind` message whose data mentions `text`."""
    return lambda seen: any(k == kind and text in json.dumps(data) for _, k, data in seen)


def load_images(session, message) -> None:
    """GET each image that `message` announces, as the page's <img> elements do: the run's
    end waits (up to web.FLUSH_SECONDS) until the open pages have the latest images."""
    _, kind, data = message
    if kind == "image":
        versions = {data["name"]: data["version"]}
    elif kind == "state":
        versions = {name: image["version"] for name, image in data["images"].items()}
    else:
        return
    for name, version in versions.items():
        request(session, f"/image/{name}?v={version}")


def watch_and_press(session, plan: list, seen: list) -> threading.Thread:
    """A page in a thread: it reads the stream into `seen`, loads the images it is told
    of, and presses each action of `plan`, [(condition(seen), action)], once its
    condition holds, in order."""

    def page() -> None:
        stream = EventStream(session)
        try:
            pending = list(plan)
            while True:
                seen.append(stream.next())
                load_images(session, seen[-1])
                while pending and pending[0][0](seen):
                    press(session, pending.pop(0)[1])
                kind, data = seen[-1][1:]
                if kind == "status" and data["status"] in ("finished", "stopped", "failed"):
                    return
        except (EOFError, OSError):
            return
        finally:
            stream.close()  # as a closed tab does

    thread = threading.Thread(target=page, daemon=True)
    thread.start()
    return thread


@pytest.mark.slow
def test_snapshot_and_stop_from_the_page_end_a_real_run_as_ctrl_c_does(
    tmp_path, tiny_mat, image_pair
):
    content_bytes = [pathlib.Path(path).read_bytes() for path in image_pair]
    settings = tiny_settings(
        tmp_path,
        tiny_mat,
        image_pair,
        train_steps=5000,
        snapshot_every=0,
        print_every=1000,
        **FEW_LAYERS,
    )
    seen: list = []
    output = io.StringIO()
    serving = web.serving(web_settings(), "photo", settings, output)
    with pytest.raises(KeyboardInterrupt), serving as live:
        plan = [(reached(3), "snapshot"), (heard("note", "snapshot at step"), "stop")]
        page = watch_and_press(live, plan, seen)
        run.stylize(
            settings, output, observers=observers_of(settings, live, output), controls=live.controls
        )
    page.join(20)
    assert not page.is_alive()
    out = tmp_path / "out"
    files = sorted(os.listdir(out))
    snapshots = [name for name in files if name[len("result-") :].split(".")[0].isdigit()]
    assert len(snapshots) == 1 and "result.jpg" in files and "result-checkpoint.npz" in files
    snapshot_step = int(snapshots[0][len("result-") : -len(".jpg")])
    from tests.support import saved_checkpoint

    stopped_at = saved_checkpoint(str(out / "result-checkpoint.npz")).step
    assert 3 <= snapshot_step < stopped_at < 5000
    text = output.getvalue()
    assert text.startswith("live view: http://127.0.0.1:")
    assert f"interrupted at step {stopped_at}: saved {out / 'result.jpg'}" in text
    with Image.open(out / "result.jpg") as final:
        assert final.size[0] == 40
    # The page heard every step in order, the images, and how the run ended.
    steps = [data["step"] for _, kind, data in seen if kind == "step"]
    assert steps == sorted(steps) and steps[-1] == stopped_at
    numbers = [number for number, _, _ in seen]
    assert numbers == sorted(numbers)
    assert any(kind == "image" and data["name"] == "current" for _, kind, data in seen)
    assert seen[-1][1] == "status" and seen[-1][2]["status"] == "stopped"
    assert [pathlib.Path(path).read_bytes() for path in image_pair] == content_bytes


def test_a_stop_pressed_while_the_run_starts_is_not_forgotten(tmp_path, tiny_mat, image_pair):
    settings = tiny_settings(tmp_path, tiny_mat, image_pair, train_steps=5000, **FEW_LAYERS)
    output = io.StringIO()
    serving = web.serving(web_settings(), "photo", settings, output)
    with pytest.raises(KeyboardInterrupt), serving as live:
        press(live, "stop")  # before the run has started
        run.stylize(
            settings, output, observers=observers_of(settings, live, output), controls=live.controls
        )
    assert "interrupted before the first step: nothing new to save" in output.getvalue()
    assert not os.path.exists(tmp_path / "out" / "result.jpg")


def test_a_finished_run_tells_the_page_and_keeps_its_final_image(tmp_path, tiny_mat, image_pair):
    settings = tiny_settings(tmp_path, tiny_mat, image_pair, train_steps=4, **FEW_LAYERS)
    output = io.StringIO()
    with web.serving(web_settings(), "photo", settings, output) as live:
        run.stylize(
            settings, output, observers=observers_of(settings, live, output), controls=live.controls
        )
        state = live.state
    _, view = state.snapshot()
    assert view["status"]["status"] == "finished"
    assert view["progress"]["step"] == 4 and view["history"]["steps"] == [1, 2, 3, 4]
    assert view["images"]["current"]["label"] == "final at step 4"
    final = np.asarray(Image.open(io.BytesIO(state.encoded("current"))), np.float32)
    with Image.open(tmp_path / "out" / "result.jpg") as written:
        assert np.abs(final - np.asarray(written, np.float32)).mean() < 6
    assert {"style-0", "content"} <= set(view["images"])


def test_a_batch_shows_each_photo_with_its_state(tmp_path, tiny_mat, image_pair):
    from tests.support import write_image

    folder = tmp_path / "photos"
    folder.mkdir()
    for index in range(3):
        write_image(folder / f"p{index}.jpg", photo(32, 40, seed=index))
    (folder / "p3.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    settings = tiny_settings(
        tmp_path,
        tiny_mat,
        image_pair,
        content_image=str(folder),
        train_steps=2,
        batch_size=2,
        **FEW_LAYERS,
    )
    output = io.StringIO()
    with web.serving(web_settings(), "photo", settings, output) as live:
        run.stylize(
            settings, output, observers=observers_of(settings, live, output), controls=live.controls
        )
        state = live.state
    _, view = state.snapshot()
    assert view["kind"] == "batch"
    assert [photo_["state"] for photo_ in view["photos"]] == ["done", "done", "done", "failed"]
    for index in range(1, 4):
        with Image.open(io.BytesIO(state.encoded(f"photo-{index}"))) as thumb:
            assert thumb.size == (40, 32)
    assert state.encoded("photo-4") is None


@pytest.mark.slow
def test_network_training_reports_steps_samples_and_stops(tmp_path, tiny_mat):
    from neural_style.feedforward.training.run import train_network
    from neural_style.settings.network import NetworkSettings
    from tests.support import write_image

    dataset = tmp_path / "photos"
    dataset.mkdir()
    for index in range(4):
        write_image(dataset / f"photo{index}.jpg", photo(40, 56, seed=index))
    style = write_image(tmp_path / "style.png", photo(48, 48, seed=9)[::-1])
    settings = NetworkSettings.from_module(
        toy_settings,
        network_dataset=str(dataset),
        network_style_image=style,
        network_style_size=48,
        network_sample_image=str(dataset / "photo0.jpg"),
        network_output_dir=str(tmp_path / "run"),
        network_image_size=32,
        network_batch_size=2,
        network_steps=5000,
        network_width=2,
        network_checkpoint_every=1000,
        network_sample_every=1000,
        network_print_every=1000,
        # What the page shows of a run, not what it trains: no temporal loss (a second
        # pass per step) and style layers of the first two blocks, for a quicker trace.
        network_temporal_weight=0.0,
        network_style_layers=(("relu1_2", 0.5), ("relu2_2", 0.5)),
        vgg_model_path=tiny_mat,
    )
    seen: list = []
    output = io.StringIO()
    serving = web.serving(web_settings(), "training", settings, output)
    with pytest.raises(KeyboardInterrupt), serving as live:
        plan = [(reached(3), "snapshot"), (heard("image", "sample at step"), "stop")]
        page = watch_and_press(live, plan, seen)
        observer = live.training_view(settings.network_batch_size)
        train_network(settings, stream=output, observers=[observer], controls=live.controls)
    page.join(20)
    run_folder = tmp_path / "run"
    samples = sorted(name for name in os.listdir(run_folder) if name.startswith("sample-"))
    assert len(samples) == 1 and (run_folder / "network.keras").exists()
    steps = [data for _, kind, data in seen if kind == "step"]
    assert [data["step"] for data in steps] == sorted(data["step"] for data in steps)
    assert steps[-1]["rate"] > 0 and steps[-1]["total"] == 5000
    images = [data for _, kind, data in seen if kind == "image" and data["name"] == "current"]
    assert images and samples[0] in images[-1]["label"]
    assert seen[-1][2]["status"] == "stopped"


# --- as a command --------------------------------------------------------------------------


def command_arguments(tmp_path, tiny_mat, image_pair, *extra: str) -> list[str]:
    content, style = image_pair
    return [
        f"--content_image={content}",
        f"--style_image={style}",
        f"--vgg_model_path={tiny_mat}",
        f"--output_image={tmp_path / 'out' / 'result'}",
        "--image_width=40",
        "--train_steps=2",
        "--precision=float32",
        *FEW_LAYER_FLAGS,  # a quicker trace of the same run
        *extra,
    ]


def test_a_busy_port_is_one_line_before_anything_starts(tmp_path, tiny_mat, image_pair):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = run_train(
            *command_arguments(tmp_path, tiny_mat, image_pair, "--web", f"--web_port={port}")
        )
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [
        f"error: WEB_PORT (--web_port): port {port} on 127.0.0.1 is in use (another run's live "
        "view?); set WEB_PORT in settings.py or pass --web_port=PORT, or 0 for any free port"
    ]
    assert result.stdout == ""  # nothing started: no TensorFlow, no live view line
    assert not (tmp_path / "out").exists()


def without_aiohttp(arguments: list[str]) -> list[str]:
    """`python train.py ARGUMENTS` in a Python where aiohttp cannot be imported, as it
    cannot without the web extra."""
    code = (
        "import runpy, sys; sys.modules['aiohttp'] = None; "
        f"sys.argv = ['train.py', *{arguments!r}]; "
        "runpy.run_path('train.py', run_name='__main__')"
    )
    return [sys.executable, "-c", code]


@pytest.fixture(scope="module", autouse=True)
def whole_runs(request, tiny_mat, tmp_path_factory) -> dict:
    """The whole `python train.py` runs of two tests below, started before this module's
    first test so that they run beside the tests above instead of alone: with --web on
    port 0, and without --web where aiohttp is missing. Test name -> (it, its folder)."""
    commands = {
        "test_web_port_0_serves_on_a_free_port_and_the_run_finishes": lambda arguments: [
            sys.executable, os.path.join(REPO_ROOT, "train.py"), *arguments, "--web",
            "--web_port=0",
        ],
        "test_without_the_web_extra_web_is_a_one_line_note": without_aiohttp,
    }  # fmt: skip
    started = {}
    for name, command in commands.items():
        if is_selected(request, name):
            folder = tmp_path_factory.mktemp("whole_run")
            arguments = command_arguments(folder, tiny_mat, write_image_pair(folder))
            env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
            started[name] = StartedEarly(command(arguments), folder, env=env), folder
    yield started
    for process, _ in started.values():
        process.kill()


@pytest.mark.slow
def test_web_port_0_serves_on_a_free_port_and_the_run_finishes(whole_runs):
    process, folder = whole_runs["test_web_port_0_serves_on_a_free_port_and_the_run_finishes"]
    result = process.finish(timeout=120)
    assert result.returncode == 0, result.stderr
    first = result.stdout.splitlines()[0]
    assert first.startswith("live view: http://127.0.0.1:") and "/?token=" in first
    port = int(re.match(r"live view: http://127\.0\.0\.1:(\d+)/\?token=\S{20,}$", first)[1])
    assert 0 < port <= 65535
    assert (folder / "out" / "result.jpg").exists()
    assert "Traceback" not in result.stderr


def test_another_host_is_announced_with_one_warning(tmp_path, tiny_mat, image_pair):
    output = io.StringIO()
    settings = tiny_settings(tmp_path, tiny_mat, image_pair)
    with web.serving(web_settings(web_host="0.0.0.0"), "photo", settings, output):
        pass
    lines = output.getvalue().splitlines()
    assert lines[0].startswith("warning: the live view listens on 0.0.0.0, not only this")
    assert lines[1].startswith("live view: http://") and len(lines) == 2


@pytest.mark.slow
def test_without_the_web_extra_web_is_a_one_line_note(tmp_path, tiny_mat, image_pair, whole_runs):
    arguments = command_arguments(tmp_path, tiny_mat, image_pair, "--web")
    result = subprocess.run(
        without_aiohttp(arguments),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "error: WEB (--web) needs the web extra, which is not installed: "
        "python -m pip install -e '.[web]'"
    ]
    assert not (tmp_path / "out").exists()
    # The same command without --web does not need it (its run started with the module's).
    process, folder = whole_runs["test_without_the_web_extra_web_is_a_one_line_note"]
    result = process.finish(timeout=120)
    assert result.returncode == 0, result.stderr
    assert (folder / "out" / "result.jpg").exists()


def test_the_page_ships_with_the_package():
    import importlib.resources

    page = importlib.resources.files("neural_style.web").joinpath("page.html")
    assert page.is_file() and b"EventSource" in page.read_bytes()
    with open(os.path.join(REPO_ROOT, "setup.cfg"), encoding="utf-8") as file:
        assert "neural_style.web = page.html" in file.read()


def test_the_loop_copies_images_only_for_observers_that_want_them():
    from types import SimpleNamespace

    from neural_style.gatys.events import Observer, Observers
    from neural_style.gatys.runner import offer_preview

    class Optimizer:
        copies = 0

        def current_image(self, position):
            Optimizer.copies += 1
            return np.full((4, 4, 3), position, np.float32)

        def best(self, position):
            return np.zeros((4, 4, 3), np.float32)

    class Wanting(Observer):
        def __init__(self):
            self.pictures = None

        def wants_preview(self):
            return True

        def preview(self, pictures):
            self.pictures = pictures

    members = [SimpleNamespace(failure=why, content=None) for why in ("", "unreadable")]
    for _ in range(1000):
        offer_preview(Observers([Observer(), Observer()]), Optimizer(), members)
    assert Optimizer.copies == 0
    wanting = Wanting()
    offer_preview(Observers([Observer(), wanting]), Optimizer(), members)
    assert Optimizer.copies == 1 and len(wanting.pictures) == 1  # the failed photo is left out
    assert float(wanting.pictures[0].current.max()) == 0.0


def test_the_loss_plot_keeps_at_most_its_points_and_restarts_with_a_new_photo():
    from neural_style.web.state import MAX_POINTS, LossHistory

    history = LossHistory()
    for step in range(1, 3 * MAX_POINTS):
        history.add(step, {"total": 1.0 / step})
    assert len(history.steps) <= MAX_POINTS and history.steps == sorted(history.steps)
    assert history.steps[-1] > 2 * MAX_POINTS and history.stride > 1
    history.add(1, {"total": 5.0})  # the next photo of a batch, or a video's next frame
    assert history.steps == [1] and history.parts == {"total": [5.0]}
