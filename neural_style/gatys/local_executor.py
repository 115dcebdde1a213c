"""The plan run in this process: the run loop over its groups, or frame by frame for a
video, or clip by clip for a folder of clips (see executor.py for the seam it fills)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from neural_style import runtime, stopping
from neural_style.gatys.executor import Listeners

if TYPE_CHECKING:
    from neural_style.gatys.events import RunResult
    from neural_style.gatys.plan import RunPlan
    from neural_style.vgg.mat import VGGWeights


class LocalExecutor:
    """Runs the plan here, on this machine's CPU or GPU."""

    def start(self) -> runtime.Device:
        return runtime.start_tensorflow(without_keras=True)

    def run(
        self,
        plan: RunPlan,
        weights: VGGWeights,
        listeners: Listeners,
        controls: stopping.Controls | None,
    ) -> dict[str, RunResult | str]:
        from neural_style.gatys.pipeline import build_pipeline
        from neural_style.gatys.runner import Runner
        from neural_style.gatys.video_runner import VideoRun, stylize_clip

        pipeline = build_pipeline(plan, weights)
        del weights  # the networks hold their own copies, in their precisions
        controls = controls if controls is not None else stopping.Controls()
        if plan.clips:
            outcomes: dict[str, RunResult | str] = {}
            with Runner(plan, pipeline, listeners(plan), controls).running():
                for clip in plan.clips:  # one after another, each with observers of its own
                    outcomes.update(stylize_clip(clip, pipeline, listeners(clip), controls))
            return outcomes
        runner = Runner(plan, pipeline, listeners(plan), controls)
        if plan.video is None:
            return runner.run()
        return VideoRun(runner).run()

    def close(self) -> None:
        pass
