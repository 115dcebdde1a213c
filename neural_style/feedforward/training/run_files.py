"""The names of a training run's files in NETWORK_OUTPUT_DIR, the settings record it
writes beside the network and the checkpoints, and how a failed write is worded.

The record is the settings as JSON values plus the style image's sha256; a resumed run
must keep that hash and SHAPING_SETTINGS, which shape the network.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from collections.abc import Iterator

from neural_style import files
from neural_style.settings.network import NetworkSettings

MODEL_NAME = "network.keras"
LOG_NAME = "losses.csv"
SKIPPED_NAME = "skipped-files.txt"
CHECKPOINTS_NAME = "checkpoints"
CHECKPOINT_STATE_NAME = "checkpoint"  # in checkpoints/: TensorFlow's record of the latest
RECORD_NAME = "training-settings.json"  # in checkpoints/: what they were trained towards
LOCK_NAME = ".lock"
OUTPUT_SETTING = "NETWORK_OUTPUT_DIR"
STYLE_HASH = "style_image_sha256"  # the record's key for the style image file's sha256
# What shapes the network besides the style image's bytes: a resumed run must keep these.
SHAPING_SETTINGS = (
    "network_style_size",
    "network_image_size",
    "network_width",
    "network_content_layers",
    "network_style_layers",
    "network_content_weight",
    "network_style_weight",
    "network_tv_weight",
    "network_temporal_weight",
    "pooling",
)


def settings_record(settings: NetworkSettings, style_sha256: str) -> dict:
    """The settings as JSON values, with the style image's sha256: what a run records."""
    record = json.loads(json.dumps(dataclasses.asdict(settings)))
    return {**record, STYLE_HASH: style_sha256}


def settings_path(model_path: str) -> str:
    """`network.keras` -> `network-settings.json`."""
    return f"{os.path.splitext(model_path)[0]}-settings.json"


@contextlib.contextmanager
def output_errors(path: str) -> Iterator[None]:
    """Turns an OSError of the block into one UserError naming `path`, its cause and
    NETWORK_OUTPUT_DIR as the fix."""
    try:
        yield
    except OSError as error:
        raise files.output_error(path, error, OUTPUT_SETTING) from None
