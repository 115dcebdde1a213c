"""Decoding, stylising and encoding at the same time: the next inputs are read in one
thread and the finished outputs saved in another while the network works, so that a folder
or a clip goes at the network's pace, not at the sum of the three.

    read_ahead(items)     the items of an iterable, made by a thread of their own ahead of use
    BackgroundSaver       saves images in a thread of its own, in order, a few at a time

TensorFlow, image decoding (Pillow) and ffmpeg's pipes all let other Python threads run
while they work. Stop signals are still honoured by the main thread alone (stopping.py): a
thread here never sees one; an error in one is raised in the main thread, where the item
or save that failed would have been.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

import numpy as np

Item = TypeVar("Item")

# Items made ahead of use: enough to hide one decode behind one forward pass, few enough
# that the images waiting are a small part of the memory a batch takes in the network.
READ_AHEAD = 2
# Saves that may wait behind the one in hand before `save` waits for them.
SAVES_WAITING = 4


def read_ahead(items: Iterable[Item], depth: int = READ_AHEAD) -> Iterator[Item]:
    """The items of `items`, in order, made by another thread up to `depth` ahead. An
    exception raised making one is raised here in its place. Closing this iterator (a
    break, an exception, a stop) ends the thread once the item it is making is made."""
    slots: queue.Queue = queue.Queue(maxsize=depth)
    closed = threading.Event()

    def offer(entry: tuple) -> bool:
        while not closed.is_set():
            try:
                slots.put(entry, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def make() -> None:
        try:
            for item in items:
                if not offer(("item", item)):
                    return
        except BaseException as error:  # raised in the reader's thread, where it belongs
            offer(("error", error))
            return
        offer(("end", None))

    maker = threading.Thread(target=make, name="read-ahead", daemon=True)
    maker.start()
    try:
        while True:
            kind, value = slots.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        closed.set()
        maker.join()


class BackgroundSaver:
    """Saves images with `save(path, image)` in a thread of its own, in the order given,
    and adds each path to `written` once its file is whole. Leaving the block waits for
    every save in hand, even when the block ends with an exception (a stop keeps every
    finished image); the first save that failed is raised then, or at the next `save`."""

    def __init__(
        self,
        save: Callable[[str, np.ndarray], None],
        written: list[str],
        waiting: int = SAVES_WAITING,
    ):
        self._save = save
        self._written = written
        self._room = threading.BoundedSemaphore(waiting + 1)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="saver")
        self._pending: list[Future] = []

    def __enter__(self) -> BackgroundSaver:
        return self

    def __exit__(self, kind, error, traceback) -> None:
        self._pool.shutdown(wait=True)
        if kind is None:
            self._raise_failure()

    def save(self, path: str, image: np.ndarray) -> None:
        """Queues `image` to be saved at `path`; waits while the queue is full."""
        self._raise_failure()
        self._room.acquire()
        try:
            future = self._pool.submit(self._save_one, path, image)
        except BaseException:
            self._room.release()
            raise
        self._pending.append(future)

    def _save_one(self, path: str, image: np.ndarray) -> None:
        try:
            self._save(path, image)
            self._written.append(path)
        finally:
            self._room.release()

    def _raise_failure(self) -> None:
        still = []
        for future in self._pending:
            if not future.done():
                still.append(future)
            elif future.exception() is not None:
                raise future.exception()
        self._pending = still
