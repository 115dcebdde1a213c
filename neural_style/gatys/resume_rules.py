"""What a resume may change: one table that both resume paths read (a photo's or a batch's
checkpoint, checkpoint.check_resumable; a video's settings record, video_plan.py), and the
identities of the files a run reads.

A resume continues finished work (a checkpoint's steps, a video's finished frames), so it
must go on as the run that made it: every setting that shapes the result as it was, every
file read with the same bytes. Each setting is one of

    SAME      it shapes finished work: a resume keeps it
    FREE      it cannot change finished work: where outputs go and how they are written,
              what is printed, OVERWRITE and RESUME themselves, and for a photo the video
              settings it does not use
    INPUT     it names files: the paths may change, their bytes may not (their identities
              are compared); a keyword in their place ("whole", "" or INIT's "content")
              must stay as it was
    AT_LEAST  it may grow, never below what is finished: a photo's TRAIN_STEPS against its
              checkpoint's steps (check_resumable), a video's VIDEO_MAX_FRAMES against its
              finished frames (video_plan.plan_video)

for a photo run and for a video run: a video's later frames are shaped by the video
settings, so a video resume keeps them, and its TRAIN_STEPS (the first frame's steps).

An input's identity is {"path", "bytes", "sha256"}; a clip's adds what the probe saw
("frames", "fps", "size" [height, width]). A run's record (the checkpoint's settings,
`<OUTPUT_IMAGE>-settings.json`) holds them under "inputs", one list per setting, in the
setting's order, None for a keyword. A record written before identities were kept has no
"inputs": its files are compared by path, as they were then, and a note says so.

The weights file (about 510 MB) is digested once: its sha256 is kept in the conv cache
beside it (vgg/weights_cache.py) for as long as the file's size, modification time and
first and last MiB are those the cache was made from.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import NamedTuple

from neural_style.errors import UserError, one_line, setting_fix
from neural_style.files import sha256_of
from neural_style.losses.masks import WHOLE
from neural_style.media import video_io
from neural_style.settings.gatys import INIT_CHOICES, Settings
from neural_style.settings.values import describe
from neural_style.vgg import weights_cache, weights_file

SAME, FREE, INPUT, AT_LEAST = "same", "free", "input", "at least"

RESUME_FIX = (
    "run without --resume (RESUME = False) to start afresh, or set OUTPUT_IMAGE to another prefix"
)
INPUTS_KEY = "inputs"  # where a record keeps the identities of its files


class ResumeRefused(UserError):
    """A resume refused for the whole run: a setting or a file that every photo shares
    changed. In a batch no photo goes on, nor starts afresh with the change beside the
    finished ones (a photo replaced is that photo's failure alone)."""


class Rule(NamedTuple):
    photo: str  # how a photo's (or a batch's) resume treats the setting
    video: str  # how a video's does


_SAME, _FREE, _INPUT = Rule(SAME, SAME), Rule(FREE, FREE), Rule(INPUT, INPUT)
_VIDEO_ONLY = Rule(FREE, SAME)  # a photo's run does not use it; a video's later frames do

RULES: dict[str, Rule] = {
    # A photo is known by its own digest, checked per photo by check_resumable.
    "content_image": Rule(FREE, INPUT),
    "batch_size": _FREE,  # which photos are optimised together, not how
    "style_image": _INPUT,
    "output_image": _FREE,
    "output_format": _FREE,  # how the images are written, not what they are
    "vgg_model_path": _INPUT,
    "image_width": _SAME,
    "image_height": _SAME,
    "content_loss_layers": _SAME,
    "style_loss_layers": _SAME,
    "style_loss": _SAME,
    "alpha": _SAME,
    "beta": _SAME,
    "tv_weight": _SAME,
    "init": _INPUT,  # a video's first frame, and its later ones with FRAME_INIT content
    "noise": _SAME,
    "optimizer": _SAME,
    "learning_rate": _SAME,
    "beta1": _SAME,
    "beta2": _SAME,
    "epsilon": _SAME,
    "style_blend_weights": _SAME,
    "style_scale": _SAME,
    "style_masks": _INPUT,
    "style_image_masks": _INPUT,
    "content_mask": _INPUT,
    "preserve_colors": _SAME,  # a video's next frame starts from the written one
    "coarse_to_fine": _SAME,
    "coarse_to_fine_steps": _SAME,
    # A photo's last stage may go on longer; a video's first frame is finished or not.
    "train_steps": Rule(AT_LEAST, SAME),
    "snapshot_every": _FREE,
    "print_every": _FREE,
    "pooling": _SAME,
    "precision": _SAME,
    "float32_finish": _SAME,
    "tile_size": _FREE,
    "seed": _SAME,
    "resume": _FREE,
    "overwrite": _FREE,
    "temporal_weight": _VIDEO_ONLY,
    "temporal_moving_share": _VIDEO_ONLY,
    "temporal_frames": _VIDEO_ONLY,
    "frame_steps": _VIDEO_ONLY,
    "frame_init": _VIDEO_ONLY,
    "video_max_frames": Rule(FREE, AT_LEAST),
    "flow_preset": _VIDEO_ONLY,
    "cluster": _FREE,  # where the steps run, not what they compute
}

# Settings that shape the result but came after records were first written, with the value
# every run had before: an older record, which lacks them, was made with these.
SETTINGS_BEFORE_THEY_EXISTED = {
    "style_loss": "gram",
    "style_masks": [],
    "style_image_masks": [],
    "content_mask": "",
    "temporal_moving_share": 1.0,
}

# The words an INPUT setting takes in place of a path: they name no file.
KEYWORDS = {
    "init": frozenset(INIT_CHOICES),
    "style_masks": frozenset({WHOLE}),
    "style_image_masks": frozenset({WHOLE}),
    "content_mask": frozenset({""}),
}

# How a message names each INPUT setting's files.
NOUNS = {
    "content_image": "clip",
    "style_image": "style image",
    "vgg_model_path": "weights file",
    "init": "INIT image",
    "style_masks": "style mask",
    "style_image_masks": "style image mask",
    "content_mask": "content mask",
}

UNVERIFIED_NOTE = (
    "note: resuming from a record written before runs kept their input files' identities: "
    "the style images, masks, INIT image, weights (and a video's clip) are checked by path "
    "only, not by their bytes"
)


def rule_of(name: str, settings: Settings, *, video: bool) -> str:
    """How a resume of this run treats setting `name` (SAME, FREE, INPUT or AT_LEAST)."""
    rule = RULES[name].video if video else RULES[name].photo
    if name == "train_steps" and not video and settings.coarse_to_fine:
        # Each stage takes TRAIN_STEPS unless COARSE_TO_FINE_STEPS says: a change would move
        # the stages under the checkpoint's step; with COARSE_TO_FINE_STEPS it is unused.
        return FREE if settings.coarse_to_fine_steps else SAME
    return rule


def settings_record(settings: Settings) -> dict:
    """The settings as JSON-friendly values (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(settings)))


def run_record(settings: Settings, inputs: dict | None) -> dict:
    """What a run records for a later resume: its settings and, under INPUTS_KEY, the
    identities of the files it reads (see input_identities), when known."""
    record = settings_record(settings)
    if inputs is not None:
        record[INPUTS_KEY] = inputs
    return record


# --- identities --------------------------------------------------------------------------------


def file_identity(path: str, setting: str) -> dict:
    """{"path", "bytes", "sha256"} of the file at `path`, which `setting` names.

    Raises:
      UserError: the file cannot be read; the message names it and the setting.
    """
    try:
        size = os.path.getsize(path)
        digest = sha256_of(path)
    except OSError as error:
        reason = error.strerror or one_line(error)
        raise UserError(f"{path}: cannot read it ({reason}); {setting_fix(setting)}") from None
    return {"path": path, "bytes": size, "sha256": digest}


def weights_identity(path: str) -> dict | None:
    """The identity of the weights file a run with VGG_MODEL_PATH `path` reads (the
    synthetic stand-in's for the missing default), or None while that file does not exist
    (the run then writes the stand-in, or says the path is wrong). Its digest comes from
    the conv cache when the cache was made from this very file, else from its bytes."""
    path = weights_file.weights_to_read(path)
    if not os.path.isfile(path):
        return None
    digest = weights_cache.cached_digest(path)
    if digest is None:
        return file_identity(path, "vgg_model_path")
    return {"path": path, "bytes": os.path.getsize(path), "sha256": digest}


def clip_identity(info: video_io.VideoInfo) -> dict:
    """A clip's identity: its bytes, and its stream as probed."""
    identity = file_identity(info.path, "content_image")
    identity.update(frames=info.frames, fps=info.fps, size=list(info.size))
    return identity


def input_identities(settings: Settings) -> dict:
    """The identities of the files the run reads but its photos or clip: one list per
    INPUT setting, in the setting's order, None for a keyword."""

    def identities(name: str) -> list[dict | None]:
        keywords = KEYWORDS.get(name, frozenset())
        return [
            None if entry in keywords else file_identity(entry, name)
            for entry in _entries(getattr(settings, name))
        ]

    names = ("style_image", "init", "style_masks", "style_image_masks", "content_mask")
    found = {name: identities(name) for name in names}
    found["vgg_model_path"] = [weights_identity(settings.vgg_model_path)]
    return found


# --- the check ---------------------------------------------------------------------------------


def check_record(record: dict, settings: Settings, inputs: dict, path: str, *, video: bool) -> str:
    """Refuses to resume the work `record` (read from `path`) describes with settings that
    changed it or with input files that are not the same bytes (`inputs` are this run's
    identities, see input_identities; a video's with its clip's), in one line naming the
    first such setting or file. Returns UNVERIFIED_NOTE when the record predates input
    identities, else "".

    Raises:
      ResumeRefused: a SAME setting changed, or an INPUT's file or keyword did.
    """
    kept = record.get(INPUTS_KEY)
    verified = isinstance(kept, dict)
    now = settings_record(settings)
    changed, replaced = [], ""
    for name, value in now.items():
        rule = rule_of(name, settings, video=video)
        if rule == INPUT and not verified:
            # As such records were checked: files by path, a clip not at all.
            rule = FREE if name == "content_image" else SAME
        before = record.get(name, SETTINGS_BEFORE_THEY_EXISTED.get(name))
        if rule == SAME and before != value:
            changed.append(name)
        elif rule == INPUT:
            outcome = _compare_input(name, before, value, kept.get(name), inputs.get(name))
            if outcome is True:
                changed.append(name)
            elif outcome and not replaced:
                replaced = outcome
    what = "this video" if video else "this checkpoint"
    if changed:
        listed = ", ".join(describe(name) for name in changed)
        source = "its settings record" if video else "the checkpoint"
        raise ResumeRefused(
            f"{path}: cannot resume with changed {listed}; set them back as {source} has "
            f"them, or {RESUME_FIX}"
        )
    if replaced:
        raise ResumeRefused(
            f"{path}: the {replaced} is not the one {what} was made from (it was replaced or "
            f"edited); put the original back, or {RESUME_FIX}"
        )
    return "" if verified else UNVERIFIED_NOTE


def _entries(value: object) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _compare_input(
    name: str, before: object, now: object, kept: object, found: object
) -> bool | str:
    """True when the setting changed (other keywords, or another count of files); the
    replaced file as "<noun> <path>, named by SETTING," when one's bytes differ; else ""."""
    before_entries, now_entries = _entries(before), _entries(now)
    if len(before_entries) != len(now_entries):
        return True
    kept_ids, found_ids = _entries(kept), _entries(found)
    keywords = KEYWORDS.get(name, frozenset())
    for index, (old, new) in enumerate(zip(before_entries, now_entries, strict=True)):
        if not isinstance(old, str):
            return True  # not a path nor a keyword: a record this run cannot have written
        if old in keywords or new in keywords:
            if old != new:
                return True
            continue
        old_id = kept_ids[index] if index < len(kept_ids) else None
        new_id = found_ids[index] if index < len(found_ids) else None
        if not isinstance(old_id, dict) or not isinstance(new_id, dict):
            continue  # not known when the record was made (weights written later)
        if (old_id.get("bytes"), old_id.get("sha256")) != (new_id["bytes"], new_id["sha256"]):
            return f"{NOUNS[name]} {new}, named by {describe(name)},"
    return ""
