"""The plan run on a Ray cluster (CLUSTER "ray"): each group of the plan is a Ray task
that runs it with the run loop (runner.py), as executor.py's seam asks.

    RAY_ADDRESS=head:6379 python train.py --content_image=photos/ --cluster=ray
    python train.py --content_image=photos/ --cluster=ray    # a local cluster, started now

Only this process, the driver, reads inputs and writes outputs: a task is handed the
photos' pixels, the plan's settings and styles, and the VGG weights (through Ray's object
store), and relays its events back (ray_relay.py), where the run's standard observers
write the same files a local run writes, a set of them for each group that runs. So the
workers need no shared file system, only this package and its dependencies installed.

A task asks for a GPU where the cluster has them, else for the smallest node's CPUs (at
most MAX_CPUS_PER_TASK of neural_style/ray_cluster.py, which connects and sizes), with
TensorFlow's thread pools that size; as many run at once as the cluster had room for when
the run began.

A folder of clips is spread over the cluster a clip to a task (a clip's frames follow each
other, each from the last): the task is handed the clip's bytes, decodes them into a
file of its own, and relays each frame's events as a group's, so the driver writes the
frames, the clip and its records.

A lost worker or node costs at most one snapshot interval: the task's photos are planned
again from the checkpoints the driver wrote (as --resume plans them) and run elsewhere;
a clip goes on from its first frame without a PNG.
A photo that fails for its own reasons fails alone, as in a local run; a UserError in a
task ends the run, as it would locally. A stop (Ctrl-C, SIGTERM) is passed to every task,
which saves its photos' work through the driver, as a local run does.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import tempfile
from typing import TYPE_CHECKING, Any, NamedTuple

from neural_style import runtime, stopping
from neural_style.errors import UserError
from neural_style.gatys.events import Observers, RunResult
from neural_style.gatys.executor import Listeners
from neural_style.gatys.plan import Group, RunPlan, group_jobs, photo_pixels, plan_job
from neural_style.gatys.ray_relay import (
    Mailbox,
    Relay,
    answer,
    photo_label,
    replay,
    without_pixels,
)
from neural_style.gatys.video_plan import plan_video
from neural_style.ray_cluster import RayCluster

if TYPE_CHECKING:
    from neural_style.vgg.mat import VGGWeights

# Tries of a group whose worker or node is lost, before its photos fail.
MAX_ATTEMPTS = 3
# How long the driver waits for a task to end before it takes the relayed events again.
POLL_SECONDS = 0.1


class RayExecutor(RayCluster):
    """Runs the plan's groups as Ray tasks and replays their events here; connects and
    sizes as RayCluster (neural_style/ray_cluster.py) does."""

    def run(
        self,
        plan: RunPlan,
        weights: VGGWeights,
        listeners: Listeners,
        controls: stopping.Controls | None,
    ) -> dict[str, RunResult | str]:
        dispatch = _Dispatch(self, plan, weights, listeners, controls or stopping.Controls())
        del weights
        return dispatch.run()


@dataclasses.dataclass
class _Attempt:
    """One try of a group on the cluster."""

    number: int
    # The driver's: the photos without their pixels; a clip's: its frame now (relayed).
    group: Group | None
    tries: int  # this one included
    plan: RunPlan  # the run's, or the clip's this attempt stylises
    label: str  # before its progress lines: `[3/6] `
    ref: Any = None  # the task's result
    lane: Observers | None = None  # the group's observers, from its first event on
    failed: set[int] = dataclasses.field(default_factory=set)  # places of photos that failed
    over: bool = False  # its task has ended: a late event of it is not replayed


class _Dispatch:
    """One run's groups through the cluster: submitted while there is room, their events
    replayed as they come, lost ones planned again from their checkpoints."""

    def __init__(
        self,
        executor: RayExecutor,
        plan: RunPlan,
        weights: VGGWeights,
        listeners: Listeners,
        controls: stopping.Controls,
    ):
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        self.ray = ray
        self.executor = executor
        self.plan = plan
        self.listeners = listeners
        self.controls = controls
        here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
        # On the driver's node, so that a lost node loses no posted event.
        self.mailbox = ray.remote(Mailbox).options(num_cpus=0, scheduling_strategy=here).remote()
        shared = plan._replace(groups=[], complete=[], failures=[], notes=[], clips=())
        self.shared = ray.put(shared)  # the settings, styles and masks, once
        self.weights = ray.put(weights)
        resources = {"num_gpus": 1} if executor.gpus else {"num_cpus": executor.cpus_per_task}
        # Ray retries no task itself: a retry starts from the last checkpoint, not afresh.
        # SPREAD: each task to a node other than the last one's, while one has room.
        options = {"max_retries": 0, "scheduling_strategy": "SPREAD", **resources}
        self.task = ray.remote(run_group_task).options(**options)
        self.clip_task = ray.remote(run_clip_task).options(**options)
        self.attempts: dict[int, _Attempt] = {}
        self.running: dict[Any, _Attempt] = {}
        count = plan.photo_count
        self.pending = collections.deque(
            _Attempt(0, group, 1, plan, photo_label(group, count)) for group in plan.groups
        )
        self.pending.extend(
            _Attempt(0, None, 1, clip, f"[{plan.paths.index(clip.paths[0]) + 1}/{count}] ")
            for clip in plan.clips
        )
        self.outcomes: dict[str, RunResult | str] = {}
        self.error: Exception | None = None  # an output the driver could not write
        self.replayed = 0  # events replayed so far
        self.stopping = False

    def run(self) -> dict[str, RunResult | str]:
        """Every group, with the run's envelope as Runner.running gives it: run_started,
        stops deferred, run_finished however it ends, then the stop asked, if any."""
        whole = self.listeners(self.plan)
        whole.run_started(self.plan)
        with stopping.deferred(self.controls):
            try:
                self._loop(whole)
            finally:
                for attempt in self.attempts.values():
                    self._close_lane(attempt)
                whole.run_finished(self.plan)
        if self.error is not None:  # it asked the tasks to stop: it is what ended the run
            raise self.error
        self.controls.raise_if_stopped()
        return self.outcomes

    def _loop(self, whole: Observers) -> None:
        while self.pending or self.running:
            # No more tasks than slots: the others wait here, where a stop leaves them
            # unstarted and a lost group is put first.
            while self.pending and len(self.running) < self.executor.slots:
                self._submit(self.pending.popleft(), whole)
            if not self.running:
                continue
            ended, _ = self.ray.wait(list(self.running), num_returns=1, timeout=POLL_SECONDS)
            self._deliver()
            self._heed_stop()
            for ref in ended:
                self._deliver()  # everything the task posted is in the mailbox by now
                self._ended(self.running.pop(ref), whole)

    def _submit(self, attempt: _Attempt, whole: Observers) -> None:
        """The group's task, its photos' pixels read here; a photo that cannot be read
        fails alone. A clip's task, with the clip's bytes."""
        threads = 0 if self.executor.gpus else self.executor.cpus_per_task
        if attempt.plan.video is not None:
            path = attempt.plan.paths[0]
            try:
                with open(path, "rb") as file:
                    clip = self.ray.put(file.read())
            except OSError as error:
                self.outcomes[path] = f"{path}: cannot read the video ({error.strerror})"
                return
            self._number(attempt)
            attempt.ref = self.clip_task.remote(
                self.shared, attempt.plan, clip, self.weights, self._post_office(attempt), threads
            )
            self.running[attempt.ref] = attempt
            return
        jobs = []
        for job in attempt.group.jobs:
            try:
                jobs.append(job._replace(photo=job.photo._replace(pixels=photo_pixels(job.photo))))
            except UserError as error:
                self.outcomes[job.photo.path] = str(error)
                whole.photo_failed(job, str(error))
        if not jobs:
            return
        attempt.group = without_pixels(attempt.group._replace(jobs=tuple(jobs)))
        self._number(attempt)
        group = attempt.group._replace(jobs=tuple(jobs))
        attempt.ref = self.task.remote(
            self.shared, group, self.weights, self._post_office(attempt), threads
        )
        self.running[attempt.ref] = attempt

    def _number(self, attempt: _Attempt) -> None:
        """The attempt's number, by which its task's events come back."""
        attempt.number = len(self.attempts) + 1
        self.attempts[attempt.number] = attempt

    def _post_office(self, attempt: _Attempt) -> _PostOffice:
        return _PostOffice(self.mailbox, attempt.number, attempt.label)

    def _deliver(self) -> None:
        """Replay what the tasks posted since the last time, each into its group's lane,
        then tell the mailbox (the tasks waiting on their images go on)."""
        taken = self.ray.get(self.mailbox.take.remote())
        for number, kind, payload in taken:
            self._replay(number, kind, payload)
        if taken:
            self.replayed += len(taken)
            self.mailbox.replayed.remote(self.replayed)

    def _replay(self, number: int, kind: str, payload: Any) -> None:
        attempt = self.attempts[number]
        if attempt.over:
            return
        if attempt.lane is None:
            attempt.lane = self.listeners(attempt.plan)
            attempt.lane.run_started(_for_a_group(attempt.plan))
        clip = attempt.plan.video is not None
        if kind == "group_started" and clip:
            attempt.group = payload.group  # the clip's frame now
        if kind == "photo_failed" and not clip:  # a clip's failure is its task's outcome
            place, why = payload
            attempt.failed.add(place)
            self.outcomes[attempt.group.jobs[place].photo.path] = why
        try:
            replay(attempt.lane, attempt.group, attempt.label, kind, payload)
        except (UserError, OSError) as error:  # an output the driver could not write
            if self.error is None:
                self.error = error
                self.controls.request_stop()
        if kind == "group_finished" and not clip:  # a clip's lane hears all its frames
            self._close_lane(attempt)

    def _heed_stop(self) -> None:
        """A stop asked here goes to every task; groups not yet submitted stay so."""
        asked = self.controls.stop_requested
        if asked is not None and not self.stopping:
            self.stopping = True
            self.mailbox.stop.remote(asked)
            self.pending.clear()

    def _ended(self, attempt: _Attempt, whole: Observers) -> None:
        ray = self.ray
        try:
            self.outcomes.update(ray.get(attempt.ref))
        except ray.exceptions.RayTaskError as error:  # raised by the task's own code
            cause = getattr(error, "cause", None)
            if isinstance(cause, UserError):
                raise UserError(str(cause)) from None
            raise
        except ray.exceptions.RayError as error:  # the worker or its node was lost
            self._lost(attempt, error, whole)
        finally:
            attempt.over = True
            self._close_lane(attempt)

    def _lost(self, attempt: _Attempt, error: Exception, whole: Observers) -> None:
        """The group's photos (the clip) again, from their last checkpoints (its finished
        frames), unless a stop was asked (their checkpoints are kept) or they were lost
        MAX_ATTEMPTS times (they fail)."""
        label = attempt.label.strip()
        # Ray's first sentence says what was lost; the rest is how to look into it.
        why = str(error).split(". ")[0].strip() or type(error).__name__
        if self.stopping:
            whole.note(f"{label}: its worker was lost while stopping ({why})")
            return
        failure = f"its worker was lost {attempt.tries} times on the cluster ({why})"
        if attempt.plan.video is not None:
            if attempt.tries >= MAX_ATTEMPTS:
                self.outcomes[attempt.plan.paths[0]] = failure
                return
            whole.note(
                f"{label}: its worker was lost ({why}); it goes on elsewhere from its first "
                "frame not yet finished"
            )
            clip = self._replanned_clip(attempt, whole)
            if clip is not None:
                self.pending.appendleft(_Attempt(0, None, attempt.tries + 1, clip, attempt.label))
            return
        if attempt.tries >= MAX_ATTEMPTS:
            for job in attempt.group.jobs:
                self.outcomes[job.photo.path] = failure
                whole.photo_failed(job, failure)
            return
        whole.note(
            f"{label}: its worker was lost ({why}); it goes on elsewhere from its last checkpoint"
        )
        for group in self._replanned(attempt, whole):
            label = photo_label(group, self.plan.photo_count)
            self.pending.appendleft(_Attempt(0, group, attempt.tries + 1, self.plan, label))

    def _replanned(self, attempt: _Attempt, whole: Observers) -> list[Group]:
        """The lost group's photos that had not failed, planned again as --resume plans
        them, from the checkpoints this process wrote; those already finished are done."""
        settings = dataclasses.replace(self.plan.settings, resume=True)
        notes: list[str] = []
        jobs = []
        for place, job in enumerate(attempt.group.jobs):
            if place in attempt.failed:
                continue
            try:
                job = plan_job(
                    settings, job.photo, job.prefix, notes, self.plan.masks, self.plan.identities
                )
            except UserError as error:
                self.outcomes[job.photo.path] = str(error)
                whole.photo_failed(job, str(error))
                continue
            if job.done >= job.total_steps:
                self.outcomes[job.photo.path] = RunResult(job.final_path, job.done, {})
            else:
                jobs.append(job)
        for note in notes:
            whole.note(note)
        batches = group_jobs(jobs, lambda key: len(jobs))
        return [Group(tuple(batch), attempt.group.memory_plans) for batch in batches]

    def _replanned_clip(self, attempt: _Attempt, whole: Observers) -> RunPlan | None:
        """The lost clip planned again as --resume plans it, from the frames this process
        wrote; None if it cannot be (it fails)."""
        clip = attempt.plan
        settings = dataclasses.replace(clip.settings, resume=True)
        notes: list[str] = []
        try:
            video = plan_video(settings, clip.video.prefix, self.plan.identities, notes)
        except UserError as error:
            self.outcomes[clip.paths[0]] = str(error)
            return None
        for note in notes:
            whole.note(note)
        return clip._replace(video=video)

    def _close_lane(self, attempt: _Attempt) -> None:
        if attempt.lane is not None:
            lane, attempt.lane = attempt.lane, None
            lane.run_finished(_for_a_group(attempt.plan))


def _for_a_group(plan: RunPlan) -> RunPlan:
    """The plan as a group's own observers hear it start and finish: what the whole run
    says once (its notes, the photos already complete) is said by the run's observers."""
    return plan._replace(groups=[], notes=[], complete=[], failures=[])


class _PostOffice(NamedTuple):
    """Where a task posts its events: the driver's mailbox, under its attempt's number, with
    the label of its photos (or clip) for its first note."""

    mailbox: Any
    attempt: int
    label: str


def _start_task(post: _PostOffice, threads: int, carries_groups: bool) -> Relay | None:
    """A task's start: TensorFlow with `threads`, and its relay, which has said where the
    task runs; None if the driver asked to stop before it began."""
    import ray

    if answer(post.mailbox.stop_requested.remote()) is not None:
        return None
    runtime.start_tensorflow(without_keras=True, threads=threads)
    relay = Relay(post.mailbox, post.attempt, stopping.Controls(), carries_groups=carries_groups)
    node = ray.get_runtime_context().get_node_id()
    relay.note(
        f"{post.label}on node {ray.util.get_node_ip_address()} ({node[:8]}), process {os.getpid()}"
    )
    return relay


def run_group_task(
    shared: RunPlan, group: Group, weights: VGGWeights, post: _PostOffice, threads: int
) -> dict[str, RunResult | str]:
    """A Ray task: one group through the run loop, on a worker; its events go to the
    mailbox, and it returns each photo's result or why it failed (none if the driver
    asked to stop before it began)."""
    relay = _start_task(post, threads, carries_groups=False)
    if relay is None:
        return {}
    from neural_style.gatys.pipeline import build_pipeline
    from neural_style.gatys.runner import Runner

    plan = shared._replace(groups=[group])
    runner = Runner(plan, build_pipeline(plan, weights), Observers([relay]), relay.controls)
    del weights
    try:
        with runner.running():
            runner.run_group(group)
    except stopping.Stopped:
        pass  # its work is saved: the relay carried its images and checkpoints
    return runner.outcomes


def run_clip_task(
    shared: RunPlan,
    clip: RunPlan,
    clip_bytes: bytes,
    weights: VGGWeights,
    post: _PostOffice,
    threads: int,
) -> dict[str, RunResult | str]:
    """A Ray task: one clip of a folder of clips, frame by frame, on a worker, from its
    bytes; its events go to the mailbox, and it returns the clip's result or why it
    failed (none if it was stopped)."""
    relay = _start_task(post, threads, carries_groups=True)
    if relay is None:
        return {}
    from neural_style.gatys.pipeline import build_pipeline
    from neural_style.gatys.video_runner import stylize_clip
    from neural_style.media import flow

    flow.use_threads(threads)
    pipeline = build_pipeline(shared, weights)
    del weights
    with tempfile.TemporaryDirectory(prefix="neural-style-clip-") as folder:
        source = os.path.join(folder, "clip" + os.path.splitext(clip.paths[0])[1])
        with open(source, "wb") as file:
            file.write(clip_bytes)
        del clip_bytes
        try:
            return stylize_clip(clip, pipeline, Observers([relay]), relay.controls, source)
        except stopping.Stopped:
            return {}  # its finished frames are saved: the relay carried them
