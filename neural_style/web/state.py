"""What the live view knows of a run, shared between the run's thread and the server's.

The run's thread (the observers in observer.py) only records: it appends a message and
keeps references to images, under a lock held for microseconds. The server's thread
reads: the whole state for a page that connects (`snapshot`), then the messages since
(`since`), and each image, encoded as a JPEG when a page asks for it (`encoded`), once per
version. Nothing here waits for a page, so a slow or closed page never slows the run.

Messages are (sequence number, type, data) with JSON-ready data; types:

    step    {step, total, label, losses{part: value}, seconds, rate}
    image   {name, version, label}              a new picture under `name`
    photos  [{name, path, state}]               a batch's photos: waiting/running/done/failed
    frames  {current, done, total, error}       a video's frames
    note    text                                a line the run said
    status  {status, text}                      starting/running/stopping/finished/stopped/failed
    best_differs  bool                          the best image is worth showing beside

Shapes: images [H, W, 3] float32 RGB in 0..255 (or the path of a JPEG the run wrote).
"""

from __future__ import annotations

import collections
import io
import threading
from typing import Any, NamedTuple

import numpy as np
from PIL import Image

from neural_style.media import colors

BACKLOG = 4000  # messages kept for a page that falls behind; beyond, it gets the state again
MAX_POINTS = 4000  # loss-plot points kept; beyond, every other one is dropped
LARGEST_SIDE = {"photo": 1024, "thumb": 256}  # pixels of the images sent, at most
JPEG_QUALITY = 90


class Picture(NamedTuple):
    version: int
    label: str
    pixels: np.ndarray | None  # float32 [H, W, 3] 0..255
    path: str  # or a JPEG the run wrote (a network's sample)
    content: np.ndarray | None  # for colour preservation, when it applies
    side: int  # largest side sent, pixels


class LossHistory:
    """Every loss part against the step, thinned to at most MAX_POINTS points."""

    def __init__(self) -> None:
        self.steps: list[int] = []
        self.parts: dict[str, list[float]] = {}
        self.stride = 1  # only steps divisible by it are kept

    def add(self, step: int, losses: dict[str, float]) -> None:
        if self.steps and step <= self.steps[-1]:  # a new photo or frame restarts the count
            self.steps.clear()
            self.parts.clear()
            self.stride = 1
        if step % self.stride:
            return
        self.steps.append(step)
        for name, value in losses.items():
            self.parts.setdefault(name, []).append(value)
        if len(self.steps) > MAX_POINTS:
            self.stride *= 2
            keep = [i for i, kept in enumerate(self.steps) if kept % self.stride == 0]
            self.steps = [self.steps[i] for i in keep]
            self.parts = {name: [values[i] for i in keep] for name, values in self.parts.items()}

    def as_dict(self) -> dict[str, Any]:
        return {"steps": list(self.steps), "parts": {k: list(v) for k, v in self.parts.items()}}


class LiveState:
    """The run as the page sees it (see the module doc); every method is thread-safe."""

    def __init__(self, kind: str, settings: dict[str, Any], *, preserve_colors: bool = False):
        self._lock = threading.Lock()
        self._messages: collections.deque = collections.deque(maxlen=BACKLOG)
        self._sequence = 0
        self._history = LossHistory()
        self._pictures: dict[str, Picture] = {}
        self._encoded: dict[str, tuple[int, bytes]] = {}
        self._preserve_colors = preserve_colors
        self._view: dict[str, Any] = {
            "kind": kind,  # photo, batch, video or training
            "settings": {key: _plain(value) for key, value in settings.items()},
            "status": {"status": "starting", "text": "starting"},
            "progress": None,
            "photos": [],
            "frames": None,
            "notes": [],
            "best_differs": False,
        }
        self.pages = 0  # event streams open now (the server's thread counts them)

    @property
    def sequence(self) -> int:
        return self._sequence

    def _publish(self, kind: str, data: Any) -> None:
        self._sequence += 1
        self._messages.append((self._sequence, kind, data))

    def step(self, progress: dict[str, Any]) -> None:
        """A step: the progress bar and a loss-plot point."""
        with self._lock:
            self._view["progress"] = progress
            self._history.add(progress["step"], progress["losses"])
            self._publish("step", progress)

    def picture(
        self,
        name: str,
        label: str,
        pixels: np.ndarray | None = None,
        *,
        path: str = "",
        content: np.ndarray | None = None,
        thumb: bool = False,
    ) -> None:
        """A new image under `name` (kept by reference: the caller hands over a copy)."""
        with self._lock:
            old = self._pictures.get(name)
            version = old.version + 1 if old else 1
            side = LARGEST_SIDE["thumb" if thumb else "photo"]
            self._pictures[name] = Picture(version, label, pixels, path, content, side)
            self._publish("image", {"name": name, "version": version, "label": label})

    def set(self, key: str, value: Any) -> None:
        """Replace one part of the view (photos, frames, status) and tell the pages."""
        with self._lock:
            self._view[key] = value
            self._publish(key, value)

    def note(self, text: str) -> None:
        with self._lock:
            self._view["notes"] = [*self._view["notes"][-49:], text]
            self._publish("note", text)

    def view_step(self) -> int:
        """The last step the run reported (0 before the first)."""
        progress = self._view["progress"]
        return progress["step"] if progress else 0

    def status(self) -> str:
        return self._view["status"]["status"]

    def snapshot(self) -> tuple[int, dict[str, Any]]:
        """Everything a page opened now needs, and the sequence number it is current to."""
        with self._lock:
            images = {
                name: {"version": picture.version, "label": picture.label}
                for name, picture in self._pictures.items()
            }
            view = {**self._view, "history": self._history.as_dict(), "images": images}
            return self._sequence, view

    def since(self, sequence: int) -> list[tuple[int, str, Any]] | None:
        """The messages after `sequence`, or None when some were already dropped."""
        with self._lock:
            if sequence >= self._sequence:
                return []
            if not self._messages or self._messages[0][0] > sequence + 1:
                return None
            return [message for message in self._messages if message[0] > sequence]

    def encoded(self, name: str) -> bytes | None:
        """The image `name` as a JPEG (None if there is no such image); called on the
        server's thread, and encoded once per version however many pages ask."""
        with self._lock:
            picture = self._pictures.get(name)
            cached = self._encoded.get(name)
        if picture is None:
            return None
        if cached and cached[0] == picture.version:
            return cached[1]
        data = _jpeg(picture, self._preserve_colors)
        with self._lock:
            self._encoded[name] = (picture.version, data)
        return data


def _jpeg(picture: Picture, preserve_colors: bool) -> bytes:
    if picture.path:
        with Image.open(picture.path) as opened:
            image = opened.convert("RGB")
    else:
        pixels = picture.pixels
        if preserve_colors and picture.content is not None:
            pixels = colors.preserve_colors(pixels, picture.content)
        image = Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8))
    image.thumbnail((picture.side, picture.side), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def _plain(value: Any) -> Any:
    """A setting's value as JSON can carry it."""
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)
