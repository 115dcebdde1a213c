"""The plan run in this process: the run loop over its groups, or frame by frame for a
video (see executor.py for the seam it fills)."""

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

        pipeline = build_pipeline(plan, weights)
        del weights  # the networks hold their own copies, in their precisions
        runner = Runner(plan, pipeline, listeners(), controls)
        if plan.video is None:
            return runner.run()
        from neural_style.gatys.video_runner import VideoRun

        return VideoRun(runner).run()

    def close(self) -> None:
        pass
