"""The observers that write a run's files for each photo:

- ImageWriter: snapshots `<prefix>-<step>.jpg` and final images `<prefix>.jpg` (or .png,
  .tif: OUTPUT_FORMAT);
- CheckpointWriter: `<prefix>-checkpoint.npz` beside every snapshot and final image;
- RunRecords: `<prefix>-settings.json` (the settings and the identities of the files read,
  as the checkpoint records them) and the losses log `<prefix>-losses.csv`;
- EarlierOutputs: with OVERWRITE, an earlier run's files under a prefix removed just
  before this run first writes there.

Every file is written atomically or line by line; a file that cannot be written is one
UserError naming it.
"""

from __future__ import annotations

import os
from typing import TextIO

from neural_style import files
from neural_style.gatys import checkpoint as checkpoints
from neural_style.gatys import events, outputs, resume_rules
from neural_style.gatys.events import Images, Observer, Step
from neural_style.gatys.plan import Group, RunPlan
from neural_style.media.colors import as_written
from neural_style.media.images import save_image
from neural_style.progress import LossLog, write_settings_record
from neural_style.settings.gatys import Settings


class ImageWriter(Observer):
    """Snapshots and final images, in OUTPUT_FORMAT (the format each job carries); a 16-bit
    format gets the optimised floats, never an 8-bit copy of them."""

    def __init__(self, settings: Settings):
        self.settings = settings

    def images(self, event: Images) -> None:
        for job, image, content in zip(event.jobs, event.images, event.contents, strict=True):
            step = event.step if event.kind == events.SNAPSHOT else None
            path = job.names.snapshot(step, job.output_format)
            bits = outputs.image_bits(job.output_format)
            save_image(path, as_written(image, content, self.settings.preserve_colors), bits=bits)


class CheckpointWriter(Observer):
    """`<prefix>-checkpoint.npz` with each snapshot and final image: the state after
    exactly the step it names."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.record = resume_rules.run_record(settings, None)

    def run_started(self, plan: RunPlan) -> None:
        self.record = resume_rules.run_record(self.settings, plan.identities)

    def images(self, event: Images) -> None:
        if event.kind == events.GAVE_UP:
            return
        for job, state in zip(event.jobs, event.states, strict=True):
            path = job.names.checkpoint
            checkpoint = checkpoints.Checkpoint(
                event.stage, event.step, state, self.record, job.photo.digest
            )
            try:
                checkpoints.save_checkpoint(path, checkpoint)
            except OSError as error:
                raise files.output_error(path, error, "OUTPUT_IMAGE") from None


class RunRecords(Observer):
    """Each photo's settings record and losses log, first written at its first step: a run
    stopped before it leaves an earlier run's record and log as they were."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.record = resume_rules.run_record(settings, None)
        self.logs: dict[str, LossLog] = {}

    def run_started(self, plan: RunPlan) -> None:
        self.record = resume_rules.run_record(self.settings, plan.identities)

    def step(self, event: Step) -> None:
        for job, losses, on in zip(event.group.jobs, event.losses, event.active, strict=True):
            if not on:
                continue
            path = job.names.losses
            try:
                if job.prefix not in self.logs:
                    write_settings_record(job.names.record, self.record)
                    keep = job.done if job.resumed else None
                    self.logs[job.prefix] = LossLog(path, keep_until=keep)
                self.logs[job.prefix].write(event.step, losses, event.seconds)
            except OSError as error:
                raise files.output_error(path, error, "OUTPUT_IMAGE") from None

    def group_finished(self, group: Group) -> None:
        self.run_finished(None)

    def run_finished(self, plan: RunPlan | None) -> None:
        for log in self.logs.values():
            log.close()
        self.logs.clear()


class EarlierOutputs(Observer):
    """With OVERWRITE, each prefix's earlier outputs, in every format, removed at the
    prefix's first step, before any file of this run is written there, and said in a note
    (see outputs.Claims.replace_earlier). A run stopped before its first step keeps them.
    Attach it before every writer."""

    SHOWN = 3  # file names a note lists

    def __init__(self, claims: outputs.Claims, stream: TextIO):
        self.claims = claims
        self.stream = stream

    def step(self, event: Step) -> None:
        for job, on in zip(event.group.jobs, event.active, strict=True):
            removed = self.claims.replace_earlier(job.prefix) if on else []
            if removed:
                shown = ", ".join(os.path.basename(path) for path in removed[: self.SHOWN])
                more = ", ..." if len(removed) > self.SHOWN else ""
                print(
                    f"note: --overwrite: removed the {len(removed)} file(s) an earlier run "
                    f"wrote under {job.prefix} ({shown}{more})",
                    file=self.stream,
                    flush=True,
                )
