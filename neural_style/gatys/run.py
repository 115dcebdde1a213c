"""`stylize(settings)`: a style-transfer run as `python train.py` does it.

    settings -> plan (plan.py) -> an executor (executor.py: here, or on a Ray cluster)
             -> networks (vgg/) -> pipeline (pipeline.py)
             -> the run loop (runner.py; video_runner.py frame by frame) -> observers (observers/)

CONTENT_IMAGE may name one photo, or a folder or glob of photos, which are stylised with
one network and one set of style targets, BATCH_SIZE at a time where they fit together;
or a video, or a folder or glob of videos, each clip frame by frame. With CLUSTER "ray",
each batch (each clip) is a task on a Ray cluster, whose events come back to this
process; the same observers write the same files here.
This is the composition root of a Gatys run: the one place its observers are chosen and
its executor picked. Nothing in the package imports it.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple, TextIO

from neural_style import stopping
from neural_style.errors import UserError
from neural_style.gatys import outputs
from neural_style.gatys.events import Observer, Observers, RunResult
from neural_style.gatys.local_executor import LocalExecutor
from neural_style.gatys.plan import RunPlan, is_clip, plan_inputs, plan_run
from neural_style.gatys.video_plan import is_video
from neural_style.settings.gatys import Settings
from neural_style.vgg import weights_file
from neural_style.vgg.mat import read_vgg19_mat

if TYPE_CHECKING:
    from neural_style.gatys.executor import Executor


class BatchResult(NamedTuple):
    results: list[RunResult]  # one per photo (clip) stylised, or already complete
    failures: list[tuple[str, str]]  # (photo or clip, why it failed)


def stylize(
    settings: Settings,
    stream: TextIO | None = None,
    *,
    observers: Sequence[Observer] | None = None,
    extra_observers: Sequence[Observer] = (),
    controls: stopping.Controls | None = None,
) -> RunResult | BatchResult:
    """Stylise CONTENT_IMAGE (one photo, or every photo of a folder or glob, or a video).
    `observers` replace the standard ones (standard_observers) when given;
    `extra_observers` hear the run after them (a live view); `controls` are what asks the
    run to stop or snapshot besides the signals (a live view's buttons)."""
    stream = stream or sys.stdout
    settings, named = outputs.named_format(settings)
    if named:
        print(named, file=stream, flush=True)
    claims = outputs.Claims(settings)
    executor = _executor(settings, stream)
    try:
        inputs = plan_inputs(settings, claims)  # a bad input fails before anything heavy
        # In a list that the executor empties: the networks hold their own copies.
        weights = [
            read_vgg19_mat(
                weights_file.resolve_weights_path(settings.vgg_model_path, stream), stream=stream
            )
        ]
        device = executor.start()
        print(device.description, file=stream, flush=True)
        plan = plan_run(inputs, on_gpu=device.on_gpu)
        from neural_style.gatys.observers.files import EarlierOutputs

        # The earlier files OVERWRITE replaces go first, at each prefix's first step.
        replacing = EarlierOutputs(claims, stream)

        def listeners(heard: RunPlan) -> Observers:
            """The observers of `heard`: the run's plan, or a clip's of a folder of clips."""
            chosen = observers
            if chosen is None:
                video = heard.video is not None
                chosen = standard_observers(heard.settings, stream, video=video)
            return Observers([replacing, *chosen, *extra_observers])

        outcomes = executor.run(plan, weights.pop(), listeners, controls)
    finally:
        executor.close()
        claims.release()
    return _result(plan, outcomes, stream)


def standard_observers(
    settings: Settings, stream: TextIO, *, video: bool = False
) -> list[Observer]:
    """What `python train.py` attaches, in the order they must hear the events: the files
    first, then what reports them."""
    from neural_style.gatys.observers.terminal import TerminalReport

    if video:
        from neural_style.gatys.observers.video import FrameWriter, VideoReport

        return [
            FrameWriter(settings),
            VideoReport(settings, stream),
            TerminalReport(settings, stream),
        ]
    from neural_style.gatys.observers.files import CheckpointWriter, ImageWriter, RunRecords
    from neural_style.gatys.observers.plots import LossPlots

    return [
        ImageWriter(settings),
        CheckpointWriter(settings),
        RunRecords(settings),
        LossPlots(stream),
        TerminalReport(settings, stream),
    ]


def _executor(settings: Settings, stream: TextIO) -> Executor:
    """Where the plan runs: in this process, or with CLUSTER "ray" as tasks on a Ray
    cluster (whose module, and Ray, are imported only then). A video's frames follow each
    other, so a single video runs in this process whatever CLUSTER says; a folder of clips
    is spread over the cluster, a clip to a task."""
    if settings.cluster == "ray" and not is_video(settings.content_image):
        from neural_style.gatys.ray_executor import RayExecutor

        return RayExecutor(stream)
    if settings.cluster == "ray":
        print(
            "note: CLUSTER ray: a video's frames are stylised one after another, each from "
            "the last; it runs in this process",
            file=stream,
            flush=True,
        )
    return LocalExecutor()


def _result(plan: RunPlan, outcomes: dict, stream: TextIO) -> RunResult | BatchResult:
    """What stylize returns: the photo's result, or every photo's in a batch, with a
    summary line; a photo that failed alone is the run's error."""
    if plan.video is not None:
        return RunResult(plan.video.names.video, len(outcomes), {})
    done = {job.photo.path: RunResult(job.final_path, job.done, {}) for job in plan.complete}
    done.update(
        {path: outcome for path, outcome in outcomes.items() if isinstance(outcome, RunResult)}
    )
    failed = dict(plan.failures)
    failed.update({path: why for path, why in outcomes.items() if isinstance(why, str)})
    if not plan.is_batch:
        if failed:
            raise UserError(next(iter(failed.values())))
        return next(iter(done.values()))
    order = {path: number for number, path in enumerate(plan.paths)}
    results = sorted(done.items(), key=lambda item: order[item[0]])
    failures = sorted(failed.items(), key=lambda item: order[item[0]])
    kind = "clips" if is_clip(plan.paths[0]) else "photos"
    print(f"stylised {len(results)} of {plan.photo_count} {kind}", file=stream)
    for photo, why in failures:
        print(f"  failed: {photo}: {why}", file=stream)
    if not results:
        raise UserError(
            f"{plan.settings.content_image}: none of the {plan.photo_count} {kind} could be "
            "stylised (see above)"
        )
    return BatchResult([result for _, result in results], failures)
