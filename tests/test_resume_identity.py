"""A resume knows exactly what it resumes: every file a run reads is recorded by its bytes,
every setting that shapes the result by its value, and a resume whose files or settings
differ is refused in one line before any work, for a photo, a batch and a video alike
(resume_rules.py holds the one table both paths read).

The fast tests plan runs (no TensorFlow) over records written as the run's observers write
them; the slow ones run the real thing.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest

from neural_style.errors import UserError
from neural_style.gatys import checkpoint as checkpoints
from neural_style.gatys import plan as plans
from neural_style.gatys import resume_rules, run
from neural_style.gatys.events import SNAPSHOT, Images
from neural_style.gatys.observers.files import CheckpointWriter
from neural_style.gatys.outputs import Claims, OutputNames
from neural_style.progress import write_settings_record
from neural_style.settings.gatys import Settings
from neural_style.vgg import weights_cache
from neural_style.vgg.mat import read_vgg19_mat
from tests.support import (
    FEW_LAYERS,
    pattern_clip,
    photo,
    save_mat,
    stylize_without_plots,
    tiny_settings,
    tiny_variables,
    write_image,
)

STEPS_TAKEN = 3  # the steps of the first run's checkpoints


def half_mask(path, *, left: bool, size=(40, 48)) -> str:
    mask = np.zeros((*size, 3), np.float32)
    width = size[1] // 2
    if left:
        mask[:, :width] = 255
    else:
        mask[:, width:] = 255
    return write_image(path, mask)


class Work:
    """A folder with every kind of input a run reads, settings naming them, and the
    first run's records written as its observers write them."""

    def __init__(self, tmp_path: Path, tiny_mat: str):
        self.dir = tmp_path
        inputs = tmp_path / "in"
        inputs.mkdir()
        self.weights = str(shutil.copyfile(tiny_mat, inputs / "vgg.mat"))  # ours to replace
        self.photo = write_image(inputs / "me.png", photo(40, 48, seed=1))
        self.style = write_image(inputs / "style.png", photo(48, 48, seed=2))
        self.other_style = write_image(inputs / "other.png", photo(48, 48, seed=3))
        self.init = write_image(inputs / "start.png", photo(40, 48, seed=4))
        self.mask = half_mask(inputs / "mask.png", left=True)
        self.style_mask = half_mask(inputs / "style-mask.png", left=True, size=(48, 48))
        self.content_mask = half_mask(inputs / "content-mask.png", left=True)
        self.folder = inputs / "photos"
        self.folder.mkdir()
        for number in (1, 2):
            write_image(self.folder / f"p{number}.png", photo(40, 48, seed=10 + number))

    def settings(self, **overrides) -> Settings:
        values = {
            "content_image": self.photo,
            "style_image": (self.style, self.other_style),
            "vgg_model_path": self.weights,
            "init": self.init,
            "style_masks": (self.mask, "whole"),
            "style_image_masks": (self.style_mask, "whole"),
            "content_mask": self.content_mask,
            "image_width": 40,
            "train_steps": 5,
            "output_image": str(self.dir / "out" / "result"),
            **FEW_LAYERS,
            **overrides,
        }
        pair = (values["content_image"], values["style_image"][0])
        return tiny_settings(self.dir, values["vgg_model_path"], pair, **values)


def plan(settings: Settings) -> plans.Inputs:
    claims = Claims(settings)
    try:
        return plans.plan_inputs(settings, claims)
    finally:
        claims.release()


def adam_state(size: tuple[int, int]) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    state = {}
    for name, (kind, dtype) in checkpoints.STATE_LAYOUT["adam"].items():
        shape = (*size, 3) if kind == "image" else ()
        state[name] = np.asarray(rng.uniform(1, 200, shape), dtype)
    return state


def first_run(settings: Settings) -> plans.Inputs:
    """The plan of `settings`, and each photo's checkpoint at STEPS_TAKEN as the run's
    CheckpointWriter writes it."""
    inputs = plan(settings)
    writer = CheckpointWriter(settings)
    writer.run_started(plans.plan_run(inputs, on_gpu=False))
    for job in inputs.jobs:
        size = job.stages[-1].size
        image = np.zeros((*size, 3), np.float32)
        stage = len(job.stages) - 1
        event = Images(SNAPSHOT, [job], stage, STEPS_TAKEN, [image], [image], [adam_state(size)])
        writer.images(event)
    return inputs


def resumed(settings: Settings, **changes) -> Settings:
    values = {field.name: getattr(settings, field.name) for field in fields(Settings)}
    return Settings(**{**values, "resume": True, **changes})


def refusal(settings: Settings) -> str:
    with pytest.raises(UserError) as refused:
        plan(settings)
    message = str(refused.value)
    assert "\n" not in message and "--resume" in message, message
    return message


def digests(folder) -> dict[str, str]:
    return {
        str(path): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(Path(folder).rglob("*"))
        if path.is_file()
    }


@pytest.fixture
def work(tmp_path, tiny_mat) -> Work:
    return Work(tmp_path, tiny_mat)


# --- the table ---------------------------------------------------------------------------------


def test_the_table_rules_every_setting_for_photos_and_videos():
    names = {field.name for field in fields(Settings)}
    assert set(resume_rules.RULES) == names
    kinds = {resume_rules.SAME, resume_rules.FREE, resume_rules.INPUT, resume_rules.AT_LEAST}
    for rule in resume_rules.RULES.values():
        assert {rule.photo, rule.video} <= kinds
    video_settings = ("temporal_weight", "temporal_moving_share", "frame_steps", "frame_init")
    for name in (*video_settings, "flow_preset", "train_steps"):
        assert resume_rules.RULES[name].video == resume_rules.SAME
    assert set(resume_rules.NOUNS) == {
        name for name, rule in resume_rules.RULES.items() if resume_rules.INPUT in rule
    }


# --- a photo, and a batch ----------------------------------------------------------------------


def test_an_unchanged_resume_goes_on_and_the_record_holds_every_input(work):
    settings = work.settings()
    first = first_run(settings)
    kept = checkpoints.load_checkpoint(
        OutputNames(settings.output_image).checkpoint,
        stage_sizes=[stage.size for stage in first.jobs[0].stages],
        optimizer="adam",
    )
    inputs = kept.settings["inputs"]
    assert set(inputs) == {*resume_rules.NOUNS} - {"content_image"}
    style = inputs["style_image"][0]
    assert style["path"] == work.style and style["bytes"] == os.path.getsize(work.style)
    assert style["sha256"] == hashlib.sha256(Path(work.style).read_bytes()).hexdigest()
    assert inputs["style_masks"][1] is None  # "whole" names no file
    assert inputs["vgg_model_path"][0]["sha256"] == checkpoints.photo_digest(work.weights)
    again = plan(resumed(settings, train_steps=8, print_every=3))
    assert again.jobs[0].done == STEPS_TAKEN and again.notes == []


def replace_photo(work: Work) -> tuple[str, str]:
    write_image(work.photo, photo(40, 48, seed=99))
    return work.photo, "the photo"


def replace_style(work: Work) -> tuple[str, str]:
    write_image(work.other_style, photo(48, 48, seed=99))
    return work.other_style, "style image"


def replace_mask(work: Work) -> tuple[str, str]:
    half_mask(work.mask, left=False)
    return work.mask, "STYLE_MASKS"


def replace_style_image_mask(work: Work) -> tuple[str, str]:
    half_mask(work.style_mask, left=False, size=(48, 48))
    return work.style_mask, "STYLE_IMAGE_MASKS"


def replace_content_mask(work: Work) -> tuple[str, str]:
    half_mask(work.content_mask, left=False)
    return work.content_mask, "CONTENT_MASK"


def replace_init(work: Work) -> tuple[str, str]:
    write_image(work.init, photo(40, 48, seed=99))
    return work.init, "INIT"


def replace_weights(work: Work) -> tuple[str, str]:
    save_mat(work.weights, tiny_variables(seed=7))
    return work.weights, "VGG_MODEL_PATH"


REPLACEMENTS = [
    replace_photo,
    replace_style,
    replace_mask,
    replace_style_image_mask,
    replace_content_mask,
    replace_init,
    replace_weights,
]


@pytest.mark.parametrize("replace", REPLACEMENTS)
def test_an_input_replaced_at_its_path_is_refused_naming_it(work, replace):
    settings = work.settings()
    first_run(settings)
    path, named = replace(work)
    kept = digests(work.dir / "out")
    message = refusal(resumed(settings))
    assert path in message and named in message and "replaced or edited" in message, message
    assert digests(work.dir / "out") == kept


@pytest.mark.parametrize("replace", REPLACEMENTS[1:])
def test_in_a_batch_a_shared_input_replaced_refuses_the_whole_run(work, replace):
    """Not each photo's failure, with the photos no checkpoint names starting afresh with
    the new file beside the finished ones: the whole run is refused."""
    settings = work.settings(content_image=str(work.folder))
    first = first_run(settings)
    assert len(first.jobs) == 2
    os.remove(first.jobs[1].names.checkpoint)  # a photo the stopped batch never reached
    path, named = replace(work)
    message = refusal(resumed(settings))
    assert path in message and named in message and first.jobs[0].names.checkpoint in message


def test_in_a_batch_a_photo_replaced_is_that_photos_failure(work):
    settings = work.settings(content_image=str(work.folder))
    first = first_run(settings)
    write_image(work.folder / "p2.png", photo(40, 48, seed=99))
    again = plan(resumed(settings))
    assert [job.photo.path for job in again.jobs] == [first.jobs[0].photo.path]
    [(failed, why)] = again.failures
    assert failed.endswith("p2.png") and "not the one" in why


def test_the_same_bytes_under_other_paths_resume(work, tmp_path):
    settings = work.settings()
    first_run(settings)
    moved = tmp_path / "moved"
    moved.mkdir()
    copies = {
        name: str(shutil.copyfile(path, moved / os.path.basename(path)))
        for name, path in (
            ("style", work.style),
            ("init", work.init),
            ("mask", work.mask),
            ("weights", work.weights),
        )
    }
    again = plan(
        resumed(
            settings,
            style_image=(copies["style"], work.other_style),
            init=copies["init"],
            style_masks=(copies["mask"], "whole"),
            vgg_model_path=copies["weights"],
        )
    )
    assert again.jobs[0].done == STEPS_TAKEN


@pytest.mark.parametrize(
    "changes, named",
    [
        ({"init": "content"}, "INIT (--init)"),
        ({"style_masks": ("whole", "whole")}, "STYLE_MASKS (--style_masks)"),
        ({"content_mask": ""}, "CONTENT_MASK (--content_mask)"),
        ({"beta": 1000.0}, "BETA (--beta)"),
    ],
)
def test_a_keyword_for_a_file_or_a_changed_setting_is_refused_by_name(work, changes, named):
    settings = work.settings()
    first_run(settings)
    message = refusal(resumed(settings, **changes))
    assert f"cannot resume with changed {named}" in message


def test_train_steps_may_grow_but_not_below_the_steps_taken(work):
    settings = work.settings()
    first_run(settings)
    assert plan(resumed(settings, train_steps=STEPS_TAKEN)).jobs[0].done == STEPS_TAKEN
    message = refusal(resumed(settings, train_steps=STEPS_TAKEN - 1))
    assert f"TRAIN_STEPS (--train_steps) {STEPS_TAKEN - 1} is fewer than the {STEPS_TAKEN}" in (
        message
    )


def test_train_steps_of_coarse_to_fine_stages_may_not_change(work):
    settings = work.settings(coarse_to_fine=(32, 48), image_width=48)
    first_run(settings)
    message = refusal(resumed(settings, train_steps=6))
    assert "cannot resume with changed TRAIN_STEPS" in message
    fixed = work.settings(
        coarse_to_fine=(32, 48),
        image_width=48,
        coarse_to_fine_steps=(2, 3),
        output_image=str(work.dir / "fixed" / "result"),
    )
    first_run(fixed)
    assert plan(resumed(fixed, train_steps=9)).jobs[0].done == STEPS_TAKEN  # unused then


def test_a_checkpoint_from_before_input_identities_resumes_with_a_note(work):
    settings = work.settings()
    first = first_run(settings)
    path = first.jobs[0].names.checkpoint
    job = first.jobs[0]
    kept = checkpoints.load_checkpoint(
        path, stage_sizes=[stage.size for stage in job.stages], optimizer="adam"
    )
    older = {name: value for name, value in kept.settings.items() if name != "inputs"}
    checkpoints.save_checkpoint(path, kept._replace(settings=older))
    again = plan(resumed(settings))
    assert again.jobs[0].done == STEPS_TAKEN
    assert again.notes == [resume_rules.UNVERIFIED_NOTE]
    moved = str(shutil.copyfile(work.style, work.dir / "elsewhere.png"))
    message = refusal(resumed(settings, style_image=(moved, work.other_style)))
    assert "changed STYLE_IMAGE" in message  # by path, as such checkpoints always were


def test_a_missing_init_image_is_one_line_before_any_work(work):
    os.remove(work.init)
    with pytest.raises(UserError) as refused:
        plan(work.settings())
    message = str(refused.value)
    assert "\n" not in message and work.init in message and "--init" in message, message
    assert not (work.dir / "out").exists()


# --- the weights' digest -----------------------------------------------------------------------


def test_the_weights_digest_is_kept_in_the_conv_cache(work, monkeypatch):
    assert weights_cache.cached_digest(work.weights) is None
    read_vgg19_mat(work.weights, stream=io.StringIO())  # writes the cache
    expected = hashlib.sha256(Path(work.weights).read_bytes()).hexdigest()
    assert weights_cache.cached_digest(work.weights) == expected

    def unread(*args, **kwargs):
        raise AssertionError("the weights were hashed again")

    monkeypatch.setattr(resume_rules, "sha256_of", unread)
    identity = resume_rules.weights_identity(work.weights)
    assert identity["sha256"] == expected and identity["bytes"] == os.path.getsize(work.weights)
    monkeypatch.undo()
    stat = os.stat(work.weights)
    save_mat(work.weights, tiny_variables(seed=7))
    os.utime(work.weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert weights_cache.cached_digest(work.weights) is None  # the cache is of the old file
    assert resume_rules.weights_identity(work.weights)["sha256"] != expected


# --- a video -----------------------------------------------------------------------------------

FINISHED = 3  # frames the first video run finished


def video_work(work: Work, **overrides) -> Settings:
    clip = pattern_clip(work.dir / "in" / "clip.mp4", frames=5, size="48x36")
    values = {
        "content_image": clip,
        "style_masks": (),
        "style_image_masks": (),
        "content_mask": "",
        "init": "content",
        "train_steps": 4,
        "frame_steps": 2,
        "temporal_weight": 50.0,
        "flow_preset": "ultrafast",
        "frame_init": "warped",
        "snapshot_every": 0,
        "image_width": 48,
        **overrides,
    }
    return work.settings(**values)


def first_video(settings: Settings) -> plans.Inputs:
    """The plan of `settings`, its record as VideoReport writes it, and FINISHED frames."""
    inputs = plan(settings)
    video = inputs.video
    write_settings_record(video.names.record, resume_rules.run_record(settings, inputs.identities))
    os.makedirs(video.names.frames)
    for index in range(FINISHED):
        write_image(video.names.frame(index), photo(*video.size, seed=index))
    return inputs


def test_an_unchanged_video_resume_goes_on_after_its_finished_frames(work):
    settings = video_work(work)
    first = first_video(settings)
    record = json.loads(Path(first.video.names.record).read_text())
    clip = record["inputs"]["content_image"][0]
    assert clip["frames"] == 5 and clip["size"] == [36, 48] and clip["bytes"] > 0
    again = plan(resumed(settings, video_max_frames=FINISHED + 1, batch_size=1))
    assert again.video.first == FINISHED and again.notes == []


@pytest.mark.parametrize("replace", [replace_style, replace_weights], ids=["style", "weights"])
def test_a_video_resume_refuses_a_replaced_input(work, replace):
    settings = video_work(work)
    first_video(settings)
    path, named = replace(work)
    message = refusal(resumed(settings))
    assert path in message and named in message and "this video" in message


def test_a_video_resume_refuses_another_clip_at_the_same_path(work):
    settings = video_work(work)
    first_video(settings)
    pattern_clip(settings.content_image, frames=2, size="48x36")  # shorter, same path
    kept = digests(work.dir / "out")
    message = refusal(resumed(settings))
    assert f"the clip {settings.content_image}, named by CONTENT_IMAGE" in message
    assert digests(work.dir / "out") == kept


@pytest.mark.parametrize(
    "name, value",
    [
        ("temporal_weight", 10.0),
        ("frame_steps", 3),
        ("frame_init", "content"),
        ("flow_preset", "fast"),
        ("temporal_moving_share", 0.0),
        ("train_steps", 6),
    ],
)
def test_a_video_resume_refuses_each_changed_video_setting(work, name, value):
    settings = video_work(work)
    first_video(settings)
    message = refusal(resumed(settings, **{name: value}))
    assert f"cannot resume with changed {name.upper()} (--{name})" in message


def test_a_video_resume_refuses_fewer_frames_than_are_finished(work):
    settings = video_work(work)
    first = first_video(settings)
    message = refusal(resumed(settings, video_max_frames=FINISHED - 1))
    assert first.video.names.frames in message and "VIDEO_MAX_FRAMES" in message
    assert f"at least {FINISHED}" in message
    assert plan(resumed(settings, video_max_frames=FINISHED)).video.first == FINISHED


@pytest.mark.parametrize("damage", ["missing", "damaged"])
def test_finished_frames_without_their_record_are_refused(work, damage):
    settings = video_work(work)
    first = first_video(settings)
    path = Path(first.video.names.record)
    if damage == "missing":
        path.unlink()
    else:
        path.write_text('{"image_width": ')
    kept = digests(work.dir / "out")
    message = refusal(resumed(settings))
    assert message.startswith(f"{path}: the record of the {FINISHED} finished frame(s) is")
    assert "start afresh" in message
    assert digests(work.dir / "out") == kept


def test_a_video_record_from_before_identities_resumes_with_a_note(work):
    settings = video_work(work)
    first = first_video(settings)
    path = first.video.names.record
    record = json.loads(Path(path).read_text())
    del record["inputs"]
    write_settings_record(path, record)
    again = plan(resumed(settings))
    assert again.video.first == FINISHED and again.notes == [resume_rules.UNVERIFIED_NOTE]
    message = refusal(resumed(settings, temporal_weight=1.0))
    assert "changed TEMPORAL_WEIGHT" in message


# --- real runs ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_real_run_records_its_inputs_and_a_replaced_style_is_refused(work):
    settings = work.settings(train_steps=2, snapshot_every=1)
    stylize_without_plots(settings)
    record = json.loads(Path(OutputNames(settings.output_image).record).read_text())
    assert record["inputs"]["style_image"][1]["path"] == work.other_style
    assert record["inputs"]["init"][0]["path"] == work.init
    replace_style(work)
    kept = digests(work.dir / "out")
    with pytest.raises(UserError) as refused:
        stylize_without_plots(resumed(settings, train_steps=4))
    assert work.other_style in str(refused.value) and "STYLE_IMAGE" in str(refused.value)
    assert digests(work.dir / "out") == kept


@pytest.mark.slow
def test_a_clip_shorter_than_the_finished_frames_never_remakes_the_video(work):
    """A record from before identities cannot tell the clip was replaced: the frames read
    then can, and the video and its frames are kept as they were."""
    settings = video_work(work, video_max_frames=3, train_steps=2, frame_steps=1)
    run.stylize(settings, io.StringIO())
    names = OutputNames(settings.output_image)
    record = json.loads(Path(names.record).read_text())
    del record["inputs"]
    write_settings_record(names.record, record)
    pattern_clip(settings.content_image, frames=2, size="48x36")
    kept = digests(work.dir / "out")
    with pytest.raises(UserError) as refused:
        run.stylize(resumed(settings, video_max_frames=0), io.StringIO())
    message = str(refused.value)
    assert "\n" not in message and "2 frames, fewer than the 3 finished" in message
    assert names.frames in message and "--resume" in message
    assert digests(work.dir / "out") == kept
