"""A cluster task's events, relayed to the driver (the process that ran train.py) and
replayed there into the run's observers, so that only the driver writes files.

    worker:  Runner(plan, pipeline, Observers([Relay(mailbox, attempt, controls)]))
    driver:  for attempt, kind, payload in ray.get(mailbox.take.remote()):
                 replay(lane, group, photo_count, kind, payload)

The mailbox is a Ray actor on the driver's node (Mailbox, made one by ray_executor.py), so
that losing a worker's node loses none of what it had posted. A post waits for the mailbox
to take it, and images (snapshots, final images) wait until the driver has written them:
a snapshot's checkpoint is on the driver's disk before the task steps on, so a lost node
costs at most the steps since its last snapshot, and the driver is never more than a
snapshot interval behind its tasks. The answer to every post is the driver's stop
request, if any, which the task's run loop then heeds as it would a signal (it saves,
and ends).

Events go without the photos' pixels: the group is named by the attempt that runs it, and
the photos of an Images event by their places in the group. A clip's task makes its
frames' groups itself, so its relay carries each group (without pixels) as it starts.
"""

from __future__ import annotations

import asyncio
from typing import Any

from neural_style import stopping
from neural_style.gatys.events import FrameDone, GroupStarted, Images, Observer, Observers, Step
from neural_style.gatys.plan import Group, PhotoJob

# What a relayed event is: (attempt number, kind, payload); the kinds are Observer methods.
Posted = tuple[int, str, Any]


class Mailbox:
    """The driver's inbox of relayed events, and its stop request (a signal number). A
    Ray actor of async methods: a post that asks to wait returns only once the driver has
    replayed it (`replayed`), so a task's snapshot is written before the task steps on."""

    def __init__(self) -> None:
        self.posted: list[Posted] = []
        self.received = 0  # events posted so far
        self.replayed_count = 0  # of them, those the driver has replayed
        self.stop_signal: int | None = None
        self._progress: asyncio.Condition | None = None  # made in the actor's event loop

    async def post(self, attempt: int, kind: str, payload: Any, wait: bool = False) -> int | None:
        self.posted.append((attempt, kind, payload))
        self.received += 1
        if wait:
            number = self.received
            progress = self._condition()
            async with progress:
                await progress.wait_for(lambda: self.replayed_count >= number)
        return self.stop_signal

    def take(self) -> list[Posted]:
        taken, self.posted = self.posted, []
        return taken

    async def replayed(self, count: int) -> None:
        """The driver has replayed the first `count` events posted."""
        progress = self._condition()
        async with progress:
            self.replayed_count = max(self.replayed_count, count)
            progress.notify_all()

    def _condition(self) -> asyncio.Condition:
        if self._progress is None:
            self._progress = asyncio.Condition()
        return self._progress

    def stop(self, signal_number: int) -> None:
        if self.stop_signal is None:
            self.stop_signal = signal_number

    def stop_requested(self) -> int | None:
        return self.stop_signal


class Relay(Observer):
    """A task's only observer: posts each event of its group to the mailbox (an actor
    handle), and passes a stop the driver asks for on to the task's `controls`."""

    def __init__(
        self, mailbox: Any, attempt: int, controls: stopping.Controls, *, carries_groups: bool
    ):
        self.mailbox = mailbox
        self.attempt = attempt
        self.controls = controls
        self.carries_groups = carries_groups  # a clip's frames: groups the driver has not
        self.group: Group | None = None

    def _post(self, kind: str, payload: Any, *, wait: bool = False) -> None:
        stop = answer(self.mailbox.post.remote(self.attempt, kind, payload, wait))
        if stop is not None:
            self.controls.request_stop(stop)

    def group_started(self, event: GroupStarted) -> None:
        self.group = event.group
        carried = without_pixels(event.group) if self.carries_groups else None
        self._post("group_started", event._replace(group=carried))

    def note(self, text: str) -> None:
        self._post("note", text)

    def step(self, event: Step) -> None:
        self._post("step", event._replace(group=None))

    def photo_failed(self, job: PhotoJob, why: str) -> None:
        self._post("photo_failed", (self._place(job), why))

    def images(self, event: Images) -> None:
        places = [self._place(job) for job in event.jobs]
        self._post("images", event._replace(jobs=places), wait=True)

    def group_finished(self, group: Group) -> None:
        self._post("group_finished", None)

    def frame_done(self, event: FrameDone) -> None:
        self._post("frame_done", event)

    def video_done(self, frames: int) -> None:
        self._post("video_done", frames)

    def _place(self, job: PhotoJob) -> int:
        return [member.photo.path for member in self.group.jobs].index(job.photo.path)


def answer(reply: Any) -> Any:
    """The value of an actor call's reply (an ObjectRef), waited for in a task without
    lending the task's CPUs out, as `ray.get` would: Ray would start another task on them,
    and the two would share one node's CPUs while another node idles."""
    return reply.future().result()


def without_pixels(group: Group) -> Group:
    """The group as the driver's observers need it: its photos without their pixels, and
    without a video frame's start and target."""
    jobs = tuple(job._replace(photo=job.photo._replace(pixels=None)) for job in group.jobs)
    return group._replace(jobs=jobs, link=None)


def photo_label(group: Group, photo_count: int) -> str:
    """`[3/6] ` for a photo, `[3,4/6] ` for a batch: which photos a progress line is of,
    when several groups run at once."""
    numbers = ",".join(str(job.photo.number) for job in group.jobs)
    return f"[{numbers}/{photo_count}] "


def replay(lane: Observers, group: Group, label: str, kind: str, payload: Any) -> None:
    """A relayed event told to `lane`, the observers of `group` on the driver, with the
    driver's own group and jobs put back in, and `label` (photo_label's, or a clip's)
    before each progress line."""
    if kind == "group_started":
        lane.group_started(payload._replace(group=group))
    elif kind == "note":
        lane.note(payload)
    elif kind == "step":
        lane.step(payload._replace(group=group, label=label + payload.label))
    elif kind == "photo_failed":
        place, why = payload
        lane.photo_failed(group.jobs[place], why)
    elif kind == "images":
        lane.images(payload._replace(jobs=[group.jobs[place] for place in payload.jobs]))
    elif kind == "group_finished":
        lane.group_finished(group)
    elif kind == "frame_done":
        lane.frame_done(payload)
    elif kind == "video_done":
        lane.video_done(payload)
    else:
        raise ValueError(f"unknown relayed event {kind!r}")
