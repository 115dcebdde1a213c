"""The loss plot of each photo, `<prefix>-losses.png`, drawn from its losses log in a child
process (media/plots.py) while the run goes on."""

from __future__ import annotations

from typing import TextIO

from neural_style.gatys import events
from neural_style.gatys.events import Images, Observer
from neural_style.gatys.plan import RunPlan
from neural_style.media import plots


class LossPlots(Observer):
    """`<prefix>-losses.png` with each snapshot (drawn while the run goes on) and at the
    end (waited for); says once why plots are missing, when they are."""

    def __init__(self, stream: TextIO):
        self.stream = stream
        self._drawing: plots.PlotProcess | None = None
        self._said: set[str] = set()

    def images(self, event: Images) -> None:
        if event.kind not in (events.SNAPSHOT, events.FINISHED):
            return
        for job in event.jobs:
            self._finish()
            self._drawing = plots.PlotProcess(job.names.losses, job.names.plot)
            if event.kind == events.FINISHED:
                self._finish()

    def run_finished(self, plan: RunPlan) -> None:
        self._finish()  # however the run ends, its last plot is finished, not cut off

    def _finish(self) -> None:
        if self._drawing is None:
            return
        note, self._drawing = self._drawing.wait(), None
        if note and note not in self._said:
            print(note, file=self.stream)
            self._said.add(note)
