"""OVERWRITE replaces an earlier run's whole set of files under the prefix, in every
OUTPUT_FORMAT, and nothing else (gatys/outputs.py: earlier_outputs, Claims.replace_earlier);
an OUTPUT_IMAGE ending in an image suffix is that prefix in that format (named_format).

The rules are checked on files laid out by hand (no TensorFlow); one real run into an
earlier run's prefix checks them end to end."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
from PIL import Image

from neural_style.errors import UserError
from neural_style.gatys import outputs
from neural_style.gatys.observers.files import EarlierOutputs
from tests.support import FEW_LAYERS, stylize_without_plots, tiny_settings

# An earlier run under the prefix `out` that wrote PNGs, then one that wrote JPEGs and TIFFs
# and a video: every one of these is an output of `out`.
EARLIER = [
    "out-settings.json",
    "out-losses.csv",
    "out-losses.png",
    "out-checkpoint.npz",
    "out.png",
    "out-2.png",
    "out-4.png",
    "out.jpg",
    "out-10.tif",
    "out.mp4",
    "out-video.json",
    "out-frames/frame-00001.png",
    "out-frames/frame-00002.png",
]
# Files beside them that are not outputs of `out`, or not only of it.
OTHERS = [
    "out-50.jpg",  # the final image of the folder run's prefix `out-50` as well...
    "out-50-settings.json",  # ...which has a record of its own
    "out_2.jpg",  # a renamed run's
    "out_2-settings.json",
    "out-a.jpg",  # a folder run's photo `a`
    "out-of-focus.jpg",  # a photo that only looks like one
    "outer.jpg",
    "out-frames/notes.txt",  # the user's, in the frames folder
    "out-7.jpg/keep.txt",  # a folder named like a snapshot
    "elsewhere/out.jpg",  # another folder's
]


def lay_out(folder, names) -> None:
    for name in names:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(name.encode())


def everything(folder) -> dict[str, str]:
    """Every file under `folder` (links as links), by its relative path -> its digest."""
    found = {}
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            relative = os.path.relpath(path, folder)
            if os.path.islink(path):
                found[relative] = "link to " + os.readlink(path)
            else:
                with open(path, "rb") as file:
                    found[relative] = hashlib.sha256(file.read()).hexdigest()
    return found


@pytest.fixture
def earlier(tmp_path, tiny_mat, image_pair):
    """A folder with EARLIER and OTHERS, the settings of an --overwrite run into its
    prefix `out`, and the inputs that run reads (its photo named `out.tif`, there too)."""
    folder = tmp_path / "work"
    folder.mkdir()
    lay_out(folder, EARLIER + OTHERS)
    (folder / "out-8.jpg").symlink_to(folder / "outer.jpg")  # a link is never removed
    photo = folder / "out.tif"
    Image.open(image_pair[0]).save(photo)
    settings = tiny_settings(
        tmp_path,
        tiny_mat,
        (str(photo), image_pair[1]),
        output_image=str(folder / "out"),
        overwrite=True,
    )
    inputs = outputs.input_paths(settings, [str(photo)])
    return folder, settings, inputs


def claimed(settings, inputs) -> outputs.Claims:
    claims = outputs.Claims(settings)
    assert claims.claim(settings.output_image, inputs, []) == settings.output_image
    return claims


def test_overwrite_removes_every_earlier_output_of_the_prefix_and_nothing_else(earlier):
    folder, settings, inputs = earlier
    before = everything(folder)
    claims = claimed(settings, inputs)
    removed = claims.replace_earlier(settings.output_image)
    claims.release()
    assert sorted(os.path.relpath(path, folder) for path in removed) == sorted(EARLIER)
    kept = {name: digest for name, digest in before.items() if name not in EARLIER}
    assert everything(folder) == kept  # the photo out.tif, the link, OTHERS: untouched
    assert "out.tif" in kept and "out-8.jpg" in kept
    assert (folder / "out-frames").is_dir()  # it still holds the user's notes.txt


def test_the_frames_folder_goes_once_its_frames_are_gone(earlier):
    folder, settings, inputs = earlier
    (folder / "out-frames" / "notes.txt").unlink()
    claims = claimed(settings, inputs)
    claims.replace_earlier(settings.output_image)
    claims.release()
    assert not (folder / "out-frames").exists()


def test_the_earlier_files_go_once_and_only_with_overwrite_alone(earlier):
    folder, settings, inputs = earlier
    before = everything(folder)
    assert (
        outputs.Claims(dataclasses.replace(settings, overwrite=False)).replace_earlier(
            settings.output_image
        )
        == []
    )
    claims = claimed(dataclasses.replace(settings, resume=True), inputs)
    assert claims.replace_earlier(settings.output_image) == []
    claims.release()
    assert everything(folder) == before
    claims = claimed(settings, inputs)
    assert claims.replace_earlier(settings.output_image)
    lay_out(folder, ["out-settings.json", "out.png"])  # this run's own, written after
    assert claims.replace_earlier(settings.output_image) == []
    claims.release()
    assert (folder / "out.png").exists()


def test_without_the_prefixs_record_or_log_nothing_is_an_earlier_output(earlier):
    """No run wrote there (each writes both at its first step): `out.png` is the user's."""
    folder, settings, inputs = earlier
    (folder / "out-settings.json").unlink()
    (folder / "out-losses.csv").unlink()
    before = everything(folder)
    claims = claimed(settings, inputs)
    assert claims.replace_earlier(settings.output_image) == []
    claims.release()
    assert everything(folder) == before


def test_an_earlier_output_that_cannot_go_is_one_line(earlier, monkeypatch):
    folder, settings, inputs = earlier
    claims = claimed(settings, inputs)
    real_remove = os.remove

    def remove(path):
        if path.endswith("out-4.png"):
            raise PermissionError(13, "Permission denied", path)
        real_remove(path)

    monkeypatch.setattr(outputs.os, "remove", remove)
    with pytest.raises(UserError) as caught:
        claims.replace_earlier(settings.output_image)
    claims.release()
    message = str(caught.value)
    assert "\n" not in message and message.startswith(str(folder / "out-4.png"))
    assert "--overwrite" in message and "OUTPUT_IMAGE (--output_image)" in message


@pytest.mark.parametrize(
    ("output_image", "output_format", "prefix", "written", "note"),
    [
        ("res.jpg", "jpg", "res", "jpg", ""),
        ("res.png", "png16", "res", "png16", ""),
        ("res.tif", "tiff16", "res", "tiff16", ""),
        ("res.png", "jpg", "res", "png", "in OUTPUT_FORMAT png, not OUTPUT_FORMAT jpg"),
        ("res.JPEG", "png", "res", "jpg", "the result is res.jpg"),
        ("res.tiff", "tiff16", "res", "tiff16", "the result is res.tif"),
        ("res", "png", "res", "png", ""),  # a prefix without an image suffix is kept
        ("res.v2", "jpg", "res.v2", "jpg", ""),
        ("my.photos/res", "jpg", "my.photos/res", "jpg", ""),
        ("out/.png", "jpg", "out/.png", "jpg", ""),  # a hidden name, not a suffix
    ],
)
def test_an_image_suffix_on_output_image_names_the_format(
    tmp_path, tiny_mat, image_pair, output_image, output_format, prefix, written, note
):
    settings = tiny_settings(
        tmp_path, tiny_mat, image_pair, output_image=output_image, output_format=output_format
    )
    named, said = outputs.named_format(settings)
    assert (named.output_image, named.output_format) == (prefix, written)
    assert (note in said) if note else said == ""
    if said:
        assert said.startswith(f"note: OUTPUT_IMAGE {output_image} is read as the prefix")
        assert "\n" not in said


def test_a_refused_overwrite_run_loses_nothing(earlier):
    """Refused at its checks (a JPEG too large to encode): nothing under the prefix goes."""
    from neural_style.gatys import run

    folder, settings, _ = earlier
    before = everything(folder)
    wide = dataclasses.replace(settings, output_format="jpg", image_width=70000)
    with pytest.raises(UserError, match="at most 65500 pixels"):
        run.stylize(wide, io.StringIO())
    assert everything(folder) == before


def test_an_overwrite_run_into_res_png_leaves_only_its_own_png_set(tmp_path, tiny_mat, image_pair):
    """The trial's cases in one real run: an earlier JPEG run's set under `res` (with a
    snapshot the new run does not reach), then `--output_image=res.png --overwrite`.
    Before, that run wrote `res.png.jpg` and the like beside the JPEGs; now it writes the
    PNG set under `res`, and the JPEG set is gone."""
    folder = tmp_path / "out"
    folder.mkdir()
    earlier = ["res.jpg", "res-1.jpg", "res-9.jpg", "res-losses.csv", "res-settings.json"]
    lay_out(folder, [*earlier, "res-checkpoint.npz", "res-losses.png"])
    inputs_before = [Path(path).read_bytes() for path in image_pair]
    settings = tiny_settings(
        tmp_path,
        tiny_mat,
        image_pair,
        output_image=str(folder / "res.png"),
        overwrite=True,
        train_steps=1,
        snapshot_every=1,
        **FEW_LAYERS,
    )
    result, printed = stylize_without_plots(settings)
    assert result.output_path == str(folder / "res.png")
    assert f"note: OUTPUT_IMAGE {folder / 'res.png'} is read as the prefix" in printed
    assert "in OUTPUT_FORMAT png, not OUTPUT_FORMAT jpg" in printed
    assert "note: --overwrite: removed the 7 file(s) an earlier run wrote under" in printed
    assert set(os.listdir(folder)) == {
        "res.png",
        "res-1.png",
        "res-checkpoint.npz",
        "res-losses.csv",
        "res-settings.json",
    }
    with Image.open(folder / "res.png") as image:
        assert image.format == "PNG"
    with open(folder / "res-losses.csv") as log:
        assert len(log.read().splitlines()) == 1 + 1  # the header and this run's one step
    assert [Path(path).read_bytes() for path in image_pair] == inputs_before


def test_the_observer_removes_at_each_prefixs_first_step_only_for_going_photos(earlier):
    """EarlierOutputs acts on a step's going photos, once each, and says what went."""
    folder, settings, inputs = earlier
    claims = claimed(settings, inputs)
    stream = io.StringIO()
    observer = EarlierOutputs(claims, stream)
    job = SimpleNamespace(prefix=settings.output_image)
    observer.step(SimpleNamespace(group=SimpleNamespace(jobs=[job]), active=[False]))
    assert stream.getvalue() == "" and (folder / "out.png").exists()
    observer.step(SimpleNamespace(group=SimpleNamespace(jobs=[job]), active=[True]))
    observer.step(SimpleNamespace(group=SimpleNamespace(jobs=[job]), active=[True]))
    claims.release()
    lines = stream.getvalue().splitlines()
    assert lines == [
        f"note: --overwrite: removed the {len(EARLIER)} file(s) an earlier run wrote under "
        f"{settings.output_image} (out-10.tif, out-2.png, out-4.png, ...)"
    ]
    assert not (folder / "out.png").exists()
