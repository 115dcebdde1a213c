"""The seam between a run's plan and where its steps happen: an executor runs the plan's
groups with the run loop (runner.py) and tells the observers everything.

    executor = LocalExecutor()          # local_executor.py: in this process
    executor = RayExecutor(stream)      # ray_executor.py: each group a task on a Ray cluster
    device = executor.start()           # before the plan: the plan fits batches to it
    outcomes = executor.run(plan, weights, listeners, controls)
    executor.close()

The composition root (run.py) picks the executor, once, from CLUSTER; both run the same
plan with the same Runner, and both make the same files, because the same observers hear
the same events (a cluster's tasks relay theirs to this process, which writes them).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from neural_style import stopping
    from neural_style.gatys.events import Observers, RunResult
    from neural_style.gatys.plan import RunPlan
    from neural_style.runtime import Device
    from neural_style.vgg.mat import VGGWeights

# A new set of the run's observers for a plan, each call: the run's, a clip's of a folder
# of clips, and one per group running at the same time on a cluster, so that each group's
# losses log and progress line stay its own.
Listeners = Callable[["RunPlan"], "Observers"]


class Executor(Protocol):
    def start(self) -> Device:
        """Make ready where the steps happen (TensorFlow here, or the cluster's connection)
        and say which devices the plan fits its batches to."""
        ...

    def run(
        self,
        plan: RunPlan,
        weights: VGGWeights,
        listeners: Listeners,
        controls: stopping.Controls | None,
    ) -> dict[str, RunResult | str]:
        """Every group of `plan`; each photo's result or why it failed, by its path. A
        stop asked of `controls` (or by a signal) saves every photo's work, then raises
        stopping.Stopped."""
        ...

    def close(self) -> None:
        """Let go of what `start` took (a cluster's connection); safe to call twice."""
        ...
