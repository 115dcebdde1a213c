"""`stylize(settings)`: a style-transfer run as `python train.py` does it.

    settings -> plan (plan.py) -> networks (vgg/) -> pipeline (pipeline.py)
             -> the run loop (runner.py; video_runner.py frame by frame) -> observers (observers/)

CONTENT_IMAGE may name one photo, or a folder or glob of photos, which are stylised with
one network and one set of style targets, BATCH_SIZE at a time where they fit together.
This is the composition root of a Gatys run: the one place its observers are chosen and
its executor picked. Nothing in the package imports it.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple, TextIO

from neural_style import runtime, stopping
from neural_style.errors import UserError
from neural_style.gatys import outputs
from neural_style.gatys.events import Observer, Observers, RunResult
from neural_style.gatys.plan import RunPlan, plan_inputs, plan_run
from neural_style.settings.gatys import Settings
from neural_style.vgg import weights_file
from neural_style.vgg.mat import VGGWeights, read_vgg19_mat

if TYPE_CHECKING:
    from neural_style.gatys.pipeline import Pipeline


class BatchResult(NamedTuple):
    results: list[RunResult]  # one per photo stylised (or already complete)
    failures: list[tuple[str, str]]  # (photo, why it failed)


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
    try:
        inputs = plan_inputs(settings, claims)  # a bad input fails before anything heavy
        weights = read_vgg19_mat(
            weights_file.resolve_weights_path(settings.vgg_model_path, stream), stream=stream
        )
        device = runtime.start_tensorflow(without_keras=True)
        print(device.description, file=stream, flush=True)
        plan = plan_run(inputs, on_gpu=device.on_gpu)
        pipeline = _pipeline(settings, plan, weights)
        del weights  # the networks hold their own copies, in their precisions
        if observers is None:
            observers = standard_observers(settings, stream, video=plan.video is not None)
        from neural_style.gatys.observers.files import EarlierOutputs

        # The earlier files OVERWRITE replaces go first, at each prefix's first step.
        replacing = EarlierOutputs(claims, stream)
        hearing = Observers([replacing, *observers, *extra_observers])
        outcomes = _execute(plan, pipeline, hearing, controls)
    finally:
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


def _execute(
    plan: RunPlan,
    pipeline: Pipeline,
    observers: Observers,
    controls: stopping.Controls | None,
) -> dict[str, RunResult | str]:
    """The plan run by its executor: the run loop over its groups, or frame by frame for a
    video; each photo's (or frame's) result or why it failed."""
    from neural_style.gatys.runner import Runner

    runner = Runner(plan, pipeline, observers, controls)
    if plan.video is None:
        return runner.run()
    from neural_style.gatys.video_runner import VideoRun

    return VideoRun(runner).run()


def _pipeline(settings: Settings, plan: RunPlan, weights: VGGWeights) -> Pipeline:
    from neural_style.gatys.pipeline import Pipeline
    from neural_style.vgg.network import VGG19

    net = VGG19(weights, pooling=settings.pooling, precision=plan.precision)
    exact_net = None
    if plan.precision != "float32" and settings.float32_finish > 0:
        exact_net = VGG19(weights, pooling=settings.pooling)
    return Pipeline(settings, net, plan.styles, exact_net=exact_net, style_masks=plan.masks)


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
    print(f"stylised {len(results)} of {plan.photo_count} photos", file=stream)
    for photo, why in failures:
        print(f"  failed: {photo}: {why}", file=stream)
    if not results:
        raise UserError(
            f"{plan.settings.content_image}: none of the {plan.photo_count} photos could be "
            "stylised (see above)"
        )
    return BatchResult([result for _, result in results], failures)
