"""Settings -> a run plan, decided once before any step: which photos, at which sizes,
under which output names, resumed from where, and which of them run together.

    inputs = plan_inputs(settings, claims)   # before TensorFlow starts
    plan = plan_run(inputs, on_gpu=device.on_gpu)

Every decision a run takes is taken here, once: the photos are found and decoded (a bad
one in a folder is a failure of that photo; a bad single photo is an error), their stages
planned, their output prefixes chosen and claimed (see outputs.py), their checkpoints read
and checked when resuming, and the photos grouped into batches that fit in memory. The
plan is plain data (no TensorFlow), which tests read without running anything.
"""

from __future__ import annotations

import dataclasses
import glob
import os
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np

from neural_style.errors import UserError, setting_fix
from neural_style.gatys import checkpoint as checkpoints
from neural_style.gatys import outputs, resume_rules
from neural_style.gatys.video_plan import (
    FrameLink,
    VideoPlan,
    check_video_settings,
    is_video,
    plan_video,
)
from neural_style.losses import masks
from neural_style.losses.style import feature_copies, is_tileable
from neural_style.media import images
from neural_style.optimize import memory
from neural_style.runtime import resolve_precision
from neural_style.settings.gatys import INIT_CHOICES, Settings
from neural_style.settings.values import describe
from neural_style.vgg import tile_layout


class Stage(NamedTuple):
    size: tuple[int, int]  # (height, width) of the image in this stage
    steps: int


class Photo(NamedTuple):
    number: int  # 1-based place in the folder or glob (1 for a single photo)
    path: str
    size: tuple[int, int]  # (height, width), upright (EXIF orientation applied)
    digest: str  # sha256 of the file's bytes: the photo's identity for --resume
    # [H, W, 3] float32 RGB 0..255. A single photo is decoded here, so that a bad one
    # fails before TensorFlow starts; a folder's photos are decoded when their batch
    # starts (photo_pixels), so that a large folder is never held in memory at once.
    pixels: np.ndarray | None = None


def photo_pixels(photo: Photo) -> np.ndarray:
    """The photo's pixels, decoded now if the plan did not keep them."""
    if photo.pixels is not None:
        return photo.pixels
    return images.load_image(photo.path, "CONTENT_IMAGE")


class PhotoJob(NamedTuple):
    """One photo's share of a run."""

    photo: Photo
    prefix: str  # every output of the photo is named <prefix>...
    stages: tuple[Stage, ...]
    resumed: checkpoints.Checkpoint | None  # its checkpoint, read and checked once
    final: str = ""  # its final image, when not <prefix>.jpg (a video's frame PNGs)
    output_format: str = "jpg"  # OUTPUT_FORMAT: the format of its snapshots and final image

    @property
    def names(self) -> outputs.OutputNames:
        return outputs.OutputNames(self.prefix)

    @property
    def final_path(self) -> str:
        """`<prefix>.jpg`, or the suffix OUTPUT_FORMAT gives, or the video frame `final` names."""
        return self.final or self.names.image(self.output_format)

    @property
    def total_steps(self) -> int:
        return sum(stage.steps for stage in self.stages)

    def work_left(self, step: int) -> float:
        """The steps after `step`, each counted by its stage's pixels relative to those of
        the stage `step` is in: the seconds per step now times this is the time left, a
        coarse-to-fine run's larger stages included."""
        first, now, left = 0, None, []
        for stage in self.stages:
            last = first + stage.steps
            if now is None and step <= last:
                now = stage
            left.append((stage, max(last - max(step, first), 0)))
            first = last
        now = now or self.stages[-1]
        pixels = now.size[0] * now.size[1]
        return sum(count * stage.size[0] * stage.size[1] / pixels for stage, count in left)

    @property
    def done(self) -> int:
        """Steps already taken (by the run a checkpoint came from)."""
        return self.resumed.step if self.resumed else 0


class Group(NamedTuple):
    """Photos optimised together as one [B, H, W, 3] batch (B = 1: a photo alone)."""

    jobs: tuple[PhotoJob, ...]
    memory_plans: tuple[memory.MemoryPlan, ...]  # one per stage: whole, or in tiles
    link: FrameLink | None = None  # a video frame's: its start and its temporal loss

    @property
    def stages(self) -> tuple[Stage, ...]:
        return self.jobs[0].stages


class Inputs(NamedTuple):
    """What a run reads, checked and named: the first half of a plan, made before
    TensorFlow starts so that a bad input is reported at once."""

    settings: Settings
    styles: list[np.ndarray]  # the style images, decoded once
    is_batch: bool  # CONTENT_IMAGE named a folder or a glob
    paths: list[str]  # the photos found, in order (runnable or not)
    jobs: list[PhotoJob]  # the photos that can run, in order
    failures: list[tuple[str, str]]  # (photo, why it cannot run)
    notes: list[str]  # what the plan decided that the user should know
    video: VideoPlan | None = None  # CONTENT_IMAGE is a video: its frames run in order
    masks: masks.Masks = masks.NO_MASKS  # STYLE_MASKS, STYLE_IMAGE_MASKS, CONTENT_MASK
    # The identities of the files read but the photos (a video's clip included), which
    # the run records for a later resume (resume_rules.input_identities).
    identities: dict | None = None
    # CONTENT_IMAGE named a folder or glob of videos: each clip's own inputs, which run
    # one after another here, or side by side on a cluster (a clip's frames are sequential).
    clips: tuple[Inputs, ...] = ()


class RunPlan(NamedTuple):
    settings: Settings
    precision: str  # the resolved PRECISION of the steps
    styles: list[np.ndarray]
    is_batch: bool
    paths: list[str]
    groups: list[Group]  # what runs, in order
    complete: list[PhotoJob]  # resumed photos with nothing left to do
    failures: list[tuple[str, str]]  # (photo, why it cannot run), in the photos' order
    notes: list[str]
    video: VideoPlan | None = None
    masks: masks.Masks = masks.NO_MASKS
    identities: dict | None = None  # as Inputs.identities
    clips: tuple[RunPlan, ...] = ()  # a folder of clips: each clip's plan (paths: the clips)

    @property
    def photo_count(self) -> int:
        """Photos in the run (a video's frames), for `[n/N]`."""
        return self.video.frames if self.video is not None else len(self.paths)


# --- the photos ------------------------------------------------------------------------------


def content_paths(settings: Settings) -> tuple[list[str], bool]:
    """The inputs CONTENT_IMAGE names, and whether it names a batch (a folder or a glob):
    its photos, or its clips when it holds videos and no photos (is_clip tells them apart).
    A path naming an existing file is that file, even with glob characters in its name.
    This run's own outputs (files in OUTPUT_IMAGE's folder named after its prefix) are
    never read back as inputs."""
    pattern = settings.content_image
    if os.path.isdir(pattern):
        found = [os.path.join(pattern, name) for name in os.listdir(pattern)]
    elif glob.has_magic(pattern) and not os.path.isfile(pattern):
        found = glob.glob(pattern)
    else:
        return [pattern], False
    inputs = [
        path
        for path in found
        if os.path.isfile(path) and not outputs.is_output_of(path, settings.output_image)
    ]
    for suffixes in (images.IMAGE_SUFFIXES, images.VIDEO_SUFFIXES):
        chosen = sorted(path for path in inputs if path.lower().endswith(suffixes))
        if chosen:
            return chosen, True
    raise UserError(
        f"{pattern}: no images ({', '.join(images.IMAGE_SUFFIXES)}) or videos "
        f"({', '.join(images.VIDEO_SUFFIXES)}) found; {setting_fix('CONTENT_IMAGE')} (a file, "
        "a folder or a glob)"
    )


def is_clip(path: str) -> bool:
    """Whether an input CONTENT_IMAGE names is a video (by its suffix)."""
    return path.lower().endswith(images.VIDEO_SUFFIXES)


def plan_stages(settings: Settings, content_hw: tuple[int, int]) -> tuple[Stage, ...]:
    """One stage at the output size, or one per COARSE_TO_FINE width with its steps."""
    final = images.output_size(content_hw, settings.image_width, settings.image_height)
    if not settings.coarse_to_fine:
        return (Stage(final, settings.train_steps),)
    steps = settings.coarse_to_fine_steps or (settings.train_steps,) * len(settings.coarse_to_fine)
    return tuple(
        Stage((max(round(final[0] * width / final[1]), images.MIN_SIDE), width), count)
        for width, count in zip(settings.coarse_to_fine, steps, strict=True)
    )


def _read_photo(number: int, path: str, *, decode: bool) -> Photo:
    """The photo's size and identity; its pixels too when `decode`."""
    if decode:
        pixels = images.load_image(path, "CONTENT_IMAGE")
        size = pixels.shape[:2]
    else:
        pixels, size = None, images.probe_size(path, "CONTENT_IMAGE")
    return Photo(number, path, size, checkpoints.photo_digest(path), pixels)


def _resume_point(
    settings: Settings, job: PhotoJob, identities: dict | None, notes: list[str]
) -> checkpoints.Checkpoint:
    """The photo's checkpoint, read and checked against this run and the identities of its
    files (a UserError if it cannot be resumed); a note, once, if its files cannot be."""
    path = job.names.checkpoint
    loaded = checkpoints.load_checkpoint(
        path, stage_sizes=[stage.size for stage in job.stages], optimizer=settings.optimizer
    )
    note = checkpoints.check_resumable(
        loaded, settings, path, job.photo.digest, photo_path=job.photo.path, inputs=identities
    )
    if note and note not in notes:
        notes.append(note)
    return loaded


def plan_job(
    settings: Settings,
    photo: Photo,
    prefix: str,
    notes: list[str],
    run_masks: masks.Masks = masks.NO_MASKS,
    identities: dict | None = None,
) -> PhotoJob:
    """A photo's stages and resume point. With RESUME, a photo without a checkpoint (a run
    stopped before its first step, or a photo of a folder the run had not reached) starts
    afresh, with a note saying so; a checkpoint is checked against this run's settings and
    the `identities` of its files. The output masks must be of the photo's shape (in a
    batch, every photo's: the same masks guide them all)."""
    masks.check_output_masks(settings, run_masks, photo.size, f"the photo {photo.path}")
    stages = plan_stages(settings, photo.size)
    job = PhotoJob(photo, prefix, stages, None, output_format=settings.output_format)
    images.check_encodable(job.final_path, job.stages[-1].size, "IMAGE_WIDTH")
    if not settings.resume:
        return job
    path = job.names.checkpoint
    if not os.path.lexists(path):
        notes.append(f"note: {path} not found: nothing to resume, so {photo.path} starts afresh")
        return job
    return job._replace(resumed=_resume_point(settings, job, identities, notes))


# --- batches ---------------------------------------------------------------------------------


class Memory(NamedTuple):
    """How steps are fitted in memory: by the estimate on a CPU, by TILE_SIZE on a GPU."""

    settings: Settings
    precision: str  # the precision whose step needs the most memory
    on_gpu: bool
    layers: tuple[str, ...]
    content_layers: tuple[str, ...]

    def plan(self, size: tuple[int, int], batch: int = 1) -> memory.MemoryPlan:
        """Whole or in tiles (one image only); a UserError naming the largest size that fits
        when not even tiles do, or when the style loss is not computed in tiles."""
        if self.on_gpu:
            tile_size = self.settings.tile_size
            grid = tile_layout.grid_for_core(size, tile_size) if tile_size else (1, 1)
            planned = memory.MemoryPlan(0, 0, grid)
        else:
            planned = memory.plan_step(
                size,
                self.precision,
                tile_size=self.settings.tile_size,
                layers=self.layers,
                content_layers=self.content_layers,
                batch=batch,
                regions=max(len(self.settings.style_masks), 1),
                copies=feature_copies(self.settings.style_loss),
            )
        if planned.tiled and not is_tileable(self.settings.style_loss):
            raise UserError(_untileable(self.settings, size))
        return planned

    def fits_whole(self, size: tuple[int, int], batch: int) -> bool:
        try:
            return not self.plan(size, batch).tiled
        except UserError:
            return False


def _untileable(settings: Settings, size: tuple[int, int]) -> str:
    why = (
        f"TILE_SIZE {settings.tile_size} asks for tiles"
        if settings.tile_size
        else f"it is too large for one step in {memory.memory_budget().source}"
    )
    return (
        f"{describe('style_loss')} {settings.style_loss} is not computed in tiles, and a "
        f"{size[1]}x{size[0]} image would need them ({why}); use a smaller IMAGE_WIDTH "
        f"(--image_width){', TILE_SIZE 0' if settings.tile_size else ''}, or STYLE_LOSS "
        "gram or w2"
    )


def _memory(settings: Settings, precision: str, on_gpu: bool) -> Memory:
    content = tuple(name for name, _ in settings.content_loss_layers)
    style = tuple(name for name, _ in settings.style_loss_layers)
    # A mixed run's float32 finish, if any, needs the most memory.
    finish = precision != "float32" and settings.float32_finish > 0
    return Memory(
        settings,
        "float32" if finish else precision,
        on_gpu,
        tuple(sorted(set(content + style))),
        content,
    )


def unbatched_reason(settings: Settings) -> str:
    """Why the photos of this run go one at a time although BATCH_SIZE asks for more."""
    if settings.batch_size > 1 and settings.optimizer == "lbfgs":
        return (
            f"note: BATCH_SIZE {settings.batch_size} is for Adam; L-BFGS on a sum of losses is "
            "not the same run as on each photo's, so the photos are stylised one at a time"
        )
    return ""


def _batch_key(job: PhotoJob) -> tuple:
    """Photos batch together when their stage sizes and resume points are equal."""
    point = (job.resumed.stage, job.resumed.step) if job.resumed else None
    return (tuple(stage.size for stage in job.stages), point)


def group_jobs(jobs: Sequence[PhotoJob], limit_of: Callable[[tuple], int]) -> list[list[PhotoJob]]:
    """Jobs with equal keys, in order, in batches of up to `limit_of(key)` (1: alone). The
    groups come in the order of their first photos."""
    groups: list[list[PhotoJob]] = []
    filling: dict[tuple, list[PhotoJob]] = {}
    for job in jobs:
        key = _batch_key(job)
        batch = filling.get(key)
        if batch is None or len(batch) >= limit_of(key):
            batch = filling[key] = []
            groups.append(batch)
        batch.append(job)
    return groups


def batch_limits(settings: Settings, fit: Memory, notes: list[str]) -> Callable[[tuple], int]:
    """limit_of(key) for group_jobs: BATCH_SIZE, or less where that does not fit in one
    piece, said once per size in a note."""
    wanted, limits = settings.batch_size, {}
    if wanted > 1 and unbatched_reason(settings):
        notes.append(unbatched_reason(settings))
        wanted = 1

    def limit_of(key: tuple) -> int:
        if key not in limits:
            sizes = key[0]
            limits[key] = next(
                (
                    batch
                    for batch in range(wanted, 1, -1)
                    if all(fit.fits_whole(size, batch) for size in sizes)
                ),
                1,
            )
            if limits[key] < wanted:
                height, width = sizes[-1]
                notes.append(
                    _cut_by_tile_size(settings, fit, sizes)
                    or f"note: {wanted} photos at {width}x{height} do not fit in memory together, "
                    f"so they are stylised {limits[key]} at a time"
                )
        return limits[key]

    return limit_of


def _cut_by_tile_size(settings: Settings, fit: Memory, sizes: Sequence[tuple[int, int]]) -> str:
    """The note for photos that TILE_SIZE cuts into tiles, which go alone; "" if it cuts none."""
    try:
        tiled = [size for size in sizes if fit.plan(size).tiled]
    except UserError:
        return ""
    if not (settings.tile_size and tiled):
        return ""
    height, width = tiled[-1]
    return (
        f"note: TILE_SIZE {settings.tile_size} cuts {width}x{height} photos into tiles, and "
        f"photos in tiles are stylised one at a time, not BATCH_SIZE {settings.batch_size} "
        "together; TILE_SIZE 0 (--tile_size=0) tiles only what memory needs"
    )


# --- the plan --------------------------------------------------------------------------------


def plan_inputs(settings: Settings, claims: outputs.Claims) -> Inputs:
    """What the run reads, read and checked in one pass down: the photos (or the video)
    CONTENT_IMAGE names, the styles and their masks, the inputs no output may replace,
    then each photo's job with its output prefix claimed in `claims` until the run
    releases it (or the video's plan)."""
    video = is_video(settings.content_image)
    paths, is_batch = ([settings.content_image], False) if video else content_paths(settings)
    if is_batch and is_clip(paths[0]):
        check_video_settings(settings)  # the run's settings: refused once, not clip by clip
    styles = [images.load_image(path, "STYLE_IMAGE") for path in settings.style_image]
    run_masks = masks.load_masks(settings, styles)
    if settings.init not in INIT_CHOICES:  # read when a photo starts: found bad now
        images.probe_size(settings.init, "INIT")
    identities = resume_rules.input_identities(settings)
    reads = outputs.input_paths(settings, paths)
    notes: list[str] = []
    if video:
        planned = _plan_clip(settings, styles, (claims, reads, identities), notes, run_masks)
        return planned._replace(notes=notes)
    if is_batch and is_clip(paths[0]):
        wanted = outputs.batch_prefixes(settings.output_image, paths)
        clips, failures = [], []
        for path in paths:
            clip_settings = dataclasses.replace(settings, content_image=path)
            naming = (claims, reads, identities)
            try:
                clips.append(_plan_clip(clip_settings, styles, naming, notes, run_masks, wanted))
            except resume_rules.ResumeRefused:
                raise  # the whole run's settings or shared files, not this clip
            except UserError as error:
                failures.append((path, str(error)))
        planned = Inputs(settings, styles, True, paths, [], failures, notes, masks=run_masks)
        return planned._replace(identities=identities, clips=tuple(clips))
    jobs, failures = _plan_photos(
        settings, paths, is_batch, (claims, reads, identities), notes, run_masks
    )
    planned = Inputs(settings, styles, is_batch, paths, jobs, failures, notes, masks=run_masks)
    return planned._replace(identities=identities)


def _plan_clip(
    settings: Settings,
    styles: list[np.ndarray],
    naming: tuple[outputs.Claims, dict[str, str], dict],
    notes: list[str],
    run_masks: masks.Masks,
    wanted: dict[str, str] | None = None,
) -> Inputs:
    """The inputs of the video CONTENT_IMAGE names, its output prefix claimed (OUTPUT_IMAGE,
    or the clip's in `wanted` in a folder of clips); `naming` as for _plan_photos. Its
    notes go to `notes`, the run's."""
    claims, reads, identities = naming
    path = settings.content_image
    prefix = claims.claim((wanted or {}).get(path, settings.output_image), reads, notes)
    video_plan = plan_video(settings, prefix, identities, notes)
    masks.check_output_masks(settings, run_masks, video_plan.info.size, f"the video {path}")
    found = video_plan.identities
    return Inputs(settings, styles, False, [path], [], [], [], video_plan, run_masks, found)


def _plan_photos(
    settings: Settings,
    paths: list[str],
    is_batch: bool,
    naming: tuple[outputs.Claims, dict[str, str], dict],
    notes: list[str],
    run_masks: masks.Masks,
) -> tuple[list[PhotoJob], list[tuple[str, str]]]:
    """Each photo's job, or why it cannot run (in a batch; a single photo raises).
    `naming` is the run's claims, the inputs its outputs must not replace and their
    identities."""
    claims, reads, identities = naming
    wanted = outputs.batch_prefixes(settings.output_image, paths) if is_batch else {}
    jobs, failures = [], []
    for number, path in enumerate(paths, 1):
        try:
            photo = _read_photo(number, path, decode=not is_batch)
            prefix = claims.claim(wanted.get(path, settings.output_image), reads, notes)
            jobs.append(plan_job(settings, photo, prefix, notes, run_masks, identities))
        except resume_rules.ResumeRefused:
            raise  # the whole run's settings or shared files, not this photo
        except UserError as error:
            if not is_batch:
                raise
            failures.append((path, str(error)))
    return jobs, failures


def plan_run(inputs: Inputs, *, on_gpu: bool) -> RunPlan:
    """The whole run, decided (see the module doc): `inputs` grouped into batches that fit
    in memory on this device."""
    settings, is_batch = inputs.settings, inputs.is_batch
    if inputs.clips:
        return _plan_clips(inputs, on_gpu=on_gpu)
    precision = resolve_precision(settings.precision, on_gpu, settings.optimizer)
    fit = _memory(settings, precision, on_gpu)
    notes, failures = list(inputs.notes), list(inputs.failures)
    complete = [job for job in inputs.jobs if job.done >= job.total_steps]
    runnable = [job for job in inputs.jobs if job.done < job.total_steps]
    groups = []
    for batch in group_jobs(runnable, batch_limits(settings, fit, notes)):
        try:
            plans = tuple(fit.plan(stage.size, len(batch)) for stage in batch[0].stages)
        except UserError as error:  # too large even in tiles: that photo cannot run
            if not is_batch:
                raise
            failures += [(job.photo.path, str(error)) for job in batch]
            continue
        groups.append(Group(tuple(batch), plans))
    failures.sort(key=lambda failure: inputs.paths.index(failure[0]))
    if inputs.video is not None:
        _check_whole_frames(fit, inputs.video.size)
    return RunPlan(
        settings,
        precision,
        inputs.styles,
        is_batch,
        inputs.paths,
        groups,
        complete,
        failures,
        notes,
        inputs.video,
        inputs.masks,
        inputs.identities,
    )


def _plan_clips(inputs: Inputs, *, on_gpu: bool) -> RunPlan:
    """A folder of clips: each clip's plan; one too large for memory fails alone."""
    clips, failures = [], list(inputs.failures)
    for clip in inputs.clips:
        try:
            clips.append(plan_run(clip, on_gpu=on_gpu))
        except UserError as error:
            failures.append((clip.paths[0], str(error)))
    failures.sort(key=lambda failure: inputs.paths.index(failure[0]))
    precision = resolve_precision(inputs.settings.precision, on_gpu, inputs.settings.optimizer)
    return RunPlan(
        inputs.settings,
        precision,
        inputs.styles,
        True,
        inputs.paths,
        [],
        [],
        failures,
        list(inputs.notes),
        masks=inputs.masks,
        identities=inputs.identities,
        clips=tuple(clips),
    )


def _check_whole_frames(fit: Memory, size: tuple[int, int]) -> None:
    """Video frames are stepped whole: the temporal loss is not computed in tiles."""
    tiled = fit.plan(size).tiled
    if tiled and fit.settings.tile_size:
        raise UserError(
            f"{describe('tile_size')} {fit.settings.tile_size} would cut these "
            f"{size[1]}x{size[0]} video frames into tiles, but a video's frames are stepped "
            "whole (its temporal loss is not computed in tiles); set TILE_SIZE 0 "
            "(--tile_size=0) for a video"
        )
    if tiled:
        raise UserError(
            f"IMAGE_WIDTH (--image_width): {size[1]}x{size[0]} video frames do not fit in memory "
            "in one piece (a video's temporal loss is not computed in tiles); use a smaller width"
        )
