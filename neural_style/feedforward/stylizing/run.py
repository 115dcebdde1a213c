"""Applying a trained network: an image, a folder of images, or a video, in one pass each.

    python stylize.py --network_model=output/network/network.keras --stylize_input=me.jpg

`stylize_input(settings)` picks by STYLIZE_INPUT: a folder stylises every image below it,
a video file (.mp4, .mov, .avi, .mkv, .webm, .m4v) every frame, anything else is read as
one image. The run is put together from modules with one job each:

    checks.py    the paths checked before TensorFlow starts (also by stylize.py)
    outputs.py   where the results go, decided once, never over an input
    stylizer.py  the network, loaded and compiled once for every size
    fit.py       the sizes and batches that fit in the memory available
    overlap.py   decoding and saving in threads of their own, beside the network
    batches.py   where a folder's or a video's batches run: here, or (ray_batches.py)
                 on a Ray cluster's workers with CLUSTER "ray"
    video.py     a video in, a video out, through ffmpeg

Stopping (Ctrl-C, SIGTERM, SIGHUP) keeps every finished output. A signal is honoured once
the batch in hand is written (neural_style.stopping; raised inside TensorFlow it would come
out as an unrelated error). Images are written atomically; a video never has its final
name before it is whole (video.py).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager, nullcontext
from typing import TYPE_CHECKING, NamedTuple, TextIO

import numpy as np

from neural_style import stopping
from neural_style.errors import UserError
from neural_style.feedforward.stylizing.batches import BatchExecutor, LocalBatches, Results
from neural_style.feedforward.stylizing.checks import check_input_and_output
from neural_style.feedforward.stylizing.fit import DoesNotFit, MemoryFit
from neural_style.feedforward.stylizing.outputs import OutputPlan, left_out_notes, plan_outputs
from neural_style.feedforward.stylizing.overlap import BackgroundSaver, read_ahead
from neural_style.feedforward.stylizing.stylizer import Stylizer, open_stylizer
from neural_style.feedforward.stylizing.video import flow_module, stylize_video
from neural_style.media import images
from neural_style.settings.network import NetworkSettings

if TYPE_CHECKING:  # Ray is imported only for a run on a cluster
    from neural_style.feedforward.stylizing.ray_batches import RayBatches

# Stylizer lives in stylizer.py; it is named here too because callers (the benchmarks, the
# model's tests) import it from this module, the one that applies it.
__all__ = ["StylizeResult", "Stylizer", "stylize_folder", "stylize_input"]


class StylizeResult(NamedTuple):
    outputs: list[str]  # files written
    skipped: dict[str, str]  # inputs of a folder that could not be read, and why
    seconds: float  # wall time


def stylize_input(settings: NetworkSettings, stream: TextIO | None = None) -> StylizeResult:
    """Stylises STYLIZE_INPUT into STYLIZE_OUTPUT, as `python stylize.py` does.

    Raises:
      UserError: one line for anything the user can fix.
      stopping.Stopped: a stop signal, after a line on stderr saying what was kept.
    """
    stream = stream or sys.stdout
    source, output = settings.stylize_input, settings.stylize_output
    check_input_and_output(settings)
    plan = plan_outputs(source, output)
    for note in left_out_notes(plan.left_out, output):
        print(note, file=stream)
    kind = _kind(source)
    if settings.stylize_video_blend and kind == "video":
        flow_module()  # a missing OpenCV is said before the network loads
    outputs: list[str] = []
    # A stop signal raised as an exception in the middle of TensorFlow's C++ code comes
    # out as an unrelated error (a SystemError in its tracing), so it is only recorded
    # here, and honoured between batches, once the batch in hand is written.
    try:
        with stopping.deferred(notice=STOP_NOTICES[kind]):
            stylizer = open_stylizer(settings)
            fit = MemoryFit(settings, stylizer.width, stream)
            stopping.raise_if_requested()
            started = time.perf_counter()
            skipped = _stylize_kind(kind, stylizer, settings, plan, fit, stream, outputs)
            stopping.raise_if_requested()
    except stopping.Stopped:
        print(_kept_line(kind, outputs, output), file=sys.stderr, flush=True)
        raise
    seconds = time.perf_counter() - started
    print(f"wrote {len(outputs)} file(s) to {output} in {seconds:.2f} s", file=stream)
    return StylizeResult(outputs, skipped, seconds)


# What a stop signal says it will do, by the kind of STYLIZE_INPUT (see stopping.deferred).
STOP_NOTICES = {
    "image": "stopping once the image in hand is written",
    "folder": "stopping once the images in hand are written; every finished image is kept",
    "video": "stopping after the frames in hand; the unfinished video is not kept",
}


def _kind(source: str) -> str:
    """ "folder", "video" or "image": how STYLIZE_INPUT is read."""
    if os.path.isdir(source):
        return "folder"
    return "video" if source.lower().endswith(images.VIDEO_SUFFIXES) else "image"


def _stylize_kind(
    kind: str,
    stylizer: Stylizer,
    settings: NetworkSettings,
    plan: OutputPlan,
    fit: MemoryFit,
    stream: TextIO,
    outputs: list[str],
) -> dict[str, str]:
    """Stylises the input as its `kind` asks, adding each file written to `outputs` as it
    is written; returns the folder's skipped files. With CLUSTER ray a folder's or a
    video's batches run on the cluster's workers (ray_batches.py); the driver reads, writes
    and orders as a local run does."""
    source = settings.stylize_input
    on_ray = settings.cluster == "ray" and kind in ("folder", "video")
    with _ray_batches(kind, settings, plan, stream) if on_ray else nullcontext() as executor:
        if kind == "folder":
            return stylize_folder(stylizer, settings, plan, fit, stream, outputs, executor)
        if kind == "video":
            target = plan.targets[source]
            outputs.append(stylize_video(stylizer, settings, target, fit, stream, executor))
            if executor is not None:
                print(executor.tally("frames"), file=stream)
            return {}
    if settings.cluster == "ray":
        print(
            "note: CLUSTER ray runs a folder or a video on the cluster; this image is "
            "stylised in this process",
            file=stream,
        )
    [(_, stylised)] = LocalBatches(stylizer, fit).submit([(source, fit.load(source))])
    _save(plan.targets[source], stylised)
    outputs.append(plan.targets[source])
    return {}


@contextmanager
def _ray_batches(
    kind: str, settings: NetworkSettings, plan: OutputPlan, stream: TextIO
) -> Iterator[RayBatches]:
    """A folder's or a video's executor on the Ray cluster, started (its line said) and
    closed on leaving."""
    from neural_style.feedforward.stylizing.ray_batches import RayBatches

    executor = RayBatches(settings, stream, list(plan.targets) if kind == "folder" else None)
    try:
        print(executor.start(), file=stream, flush=True)
        yield executor
    finally:
        executor.close()


def _kept_line(kind: str, outputs: list[str], output: str) -> str:
    """What a stopped run says it kept."""
    if kind == "video":
        return "stopped: no video was written (an unfinished one is never kept)"
    if not outputs:
        return "stopped before any result was written"
    return f"stopped: kept the {len(outputs)} finished file(s) in {output}"


def stylize_folder(
    stylizer: Stylizer,
    settings: NetworkSettings,
    plan: OutputPlan,
    fit: MemoryFit,
    stream: TextIO,
    outputs: list[str],
    executor: BatchExecutor | None = None,
) -> dict[str, str]:
    """Every input of the plan, in batches of same-sized images that fit in memory, each
    file written added to `outputs`; returns the unreadable files, which are skipped and
    reported, never a crash. `executor` runs the batches (batches.py), by default here;
    its results may come back in any order, each saved under its input's planned name."""
    fit.check_folder(list(plan.targets))
    executor = executor or LocalBatches(stylizer, fit)
    skipped: dict[str, str] = {}
    pending: list[tuple[str, np.ndarray]] = []
    # The next images are decoded, and the last ones saved, while the network works.
    reading = read_ahead((path, _load_or_why(fit, path)) for path in plan.targets)
    with closing(reading) as loaded, BackgroundSaver(_save, outputs) as saver:

        def save(results: Results) -> None:
            for path, result in results:
                saver.save(plan.targets[path], result)

        def flush() -> None:
            save(executor.submit(list(pending)))
            pending.clear()
            if stopping.requested() is not None:
                save(executor.drain())  # the batches in hand are kept, as here
                stopping.raise_if_requested()

        for path, image in loaded:
            stopping.raise_if_requested()
            if isinstance(image, str):
                skipped[path] = image
                print(f"skipped {path}: {image}", file=stream)
                continue
            if pending and (
                pending[0][1].shape != image.shape or len(pending) >= fit.batch(image.shape[:2])
            ):
                flush()
            pending.append((path, image))
        if pending:
            flush()
        save(executor.drain())
    if not outputs:
        raise UserError(
            f"{settings.stylize_input}: none of its {len(plan.targets)} image files could be read"
        )
    return skipped


def _load_or_why(fit: MemoryFit, path: str) -> np.ndarray | str:
    """The image at `path` as it is stylised, or why it cannot be read (a file of a folder
    that is skipped, not the run's end).

    Raises:
      DoesNotFit: a refusal of the run, not of this file.
    """
    try:
        return fit.load(path)
    except DoesNotFit:
        raise
    except UserError as error:
        return str(error).removeprefix(f"{path}: ").split("; ")[0]


def _save(path: str, image: np.ndarray) -> None:
    images.save_image(path, image, setting="STYLIZE_OUTPUT")
