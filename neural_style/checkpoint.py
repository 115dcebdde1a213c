"""Checkpoints: `<OUTPUT_IMAGE>-checkpoint.npz`, written beside every snapshot.

A checkpoint holds the optimiser's whole state (the image, the best image, Adam's moments
or L-BFGS's bookkeeping), the stage and step reached, and the settings of the run, so that
`--resume` continues an interrupted run exactly where it stopped.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
from typing import NamedTuple

import numpy as np

from neural_style.config import Settings, describe
from neural_style.errors import UserError
from neural_style.files import atomic_write

# Settings a resumed run may change: how long it runs, what it prints and how many photos
# it optimises together, nothing that shapes the image.
RESUMABLE_CHANGES = frozenset(
    {
        "train_steps",
        "snapshot_every",
        "print_every",
        "resume",
        "overwrite",
        "tile_size",
        "batch_size",
    }
)


class Checkpoint(NamedTuple):
    stage: int  # index of the coarse-to-fine stage (0 without coarse-to-fine)
    step: int  # steps taken over all stages
    optimizer_state: dict[str, np.ndarray]
    settings: dict  # the settings of the run, as JSON-friendly values


def checkpoint_path(prefix: str) -> str:
    return f"{prefix}-checkpoint.npz"


def settings_record(settings: Settings) -> dict:
    """The settings as JSON-friendly values (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(settings)))


def save_checkpoint(path: str, checkpoint: Checkpoint) -> None:
    arrays = {
        f"state/{name}": np.asarray(value) for name, value in checkpoint.optimizer_state.items()
    }
    arrays["stage"] = np.int64(checkpoint.stage)
    arrays["step"] = np.int64(checkpoint.step)
    arrays["settings"] = np.array(json.dumps(checkpoint.settings))

    def write(stream):
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        stream.write(buffer.getvalue())

    atomic_write(path, write)


def load_checkpoint(path: str) -> Checkpoint:
    fix = "run without --resume (RESUME = False) to start afresh"
    if not os.path.exists(path):
        raise UserError(f"{path}: no checkpoint to resume from; {fix}")
    try:
        with np.load(path, allow_pickle=False) as data:
            state = {
                key.split("/", 1)[1]: data[key] for key in data.files if key.startswith("state/")
            }
            return Checkpoint(
                int(data["stage"]), int(data["step"]), state, json.loads(str(data["settings"]))
            )
    except (OSError, ValueError, KeyError) as error:
        reason = " ".join(str(error).split())
        raise UserError(f"{path}: not a readable checkpoint ({reason}); {fix}") from None


def check_resumable(checkpoint: Checkpoint, settings: Settings, path: str) -> None:
    """Refuse to resume with changed settings that shape the image, naming them."""
    now = settings_record(settings)
    changed = sorted(
        name
        for name, value in now.items()
        if name not in RESUMABLE_CHANGES and checkpoint.settings.get(name) != value
    )
    if changed:
        listed = ", ".join(describe(name) for name in changed)
        raise UserError(
            f"{path}: cannot resume with changed {listed}; set them back as the checkpoint "
            "has them, or start afresh without --resume"
        )
