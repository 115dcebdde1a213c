"""Colour management: an ICC profile on an input is converted to sRGB, every output says it
is sRGB, and OUTPUT_FORMAT's 16-bit files hold the optimised floats without an 8-bit step.

The Display P3 profile is built here, byte by byte, from the published definition (P3
primaries, D65 white, the sRGB tone curve), because PIL can create only an sRGB profile; the
test first checks it against the same definition worked out in numpy, so the round trip
below is a test of the loader and not of a profile that happens to agree with itself.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import struct
import sys

import cv2
import numpy as np
import pytest
from PIL import Image, ImageCms

from neural_style.errors import UserError
from neural_style.gatys import outputs
from neural_style.media import color_profiles
from neural_style.media.images import load_image, resize_image, save_image
from neural_style.settings.gatys import Settings
from tests import toy_settings
from tests.support import (
    REPO_ROOT,
    StartedEarly,
    is_selected,
    run_train,
    stylize_without_plots,
    tiny_settings,
    tmpfs,
    write_image_pair,
)

# --- Display P3, from its definition ---------------------------------------------------------

P3_PRIMARIES = ((0.680, 0.320), (0.265, 0.690), (0.150, 0.060))
SRGB_PRIMARIES = ((0.640, 0.330), (0.300, 0.600), (0.150, 0.060))
D65 = (0.3127, 0.3290)
D50_XYZ = np.array([0.9642, 1.0, 0.8249])
BRADFORD = np.array(
    [[0.8951, 0.2664, -0.1614], [-0.7502, 1.7135, 0.0367], [0.0389, -0.0685, 1.0296]]
)


def rgb_to_xyz(primaries, white) -> np.ndarray:
    """The linear RGB -> XYZ matrix of a colour space: its primaries scaled so that
    RGB (1, 1, 1) is the white point at Y = 1."""
    columns = np.array([[x / y, 1.0, (1 - x - y) / y] for x, y in primaries]).T
    wx, wy = white
    scale = np.linalg.solve(columns, [wx / wy, 1.0, (1 - wx - wy) / wy])
    return columns * scale


def to_d50(matrix: np.ndarray) -> np.ndarray:
    """The matrix adapted from D65 to ICC's D50 connection space by Bradford."""
    d65 = rgb_to_xyz(P3_PRIMARIES, D65) @ np.ones(3)
    cone_ratio = (BRADFORD @ D50_XYZ) / (BRADFORD @ d65)
    return np.linalg.inv(BRADFORD) @ np.diag(cone_ratio) @ BRADFORD @ matrix


def s15(value: float) -> bytes:
    return struct.pack(">i", round(value * 65536))


def display_p3_profile() -> bytes:
    """An ICC v2 display profile: P3 colorants (D50-adapted), D50 white, the sRGB curve as
    a parametric curve (type 3: the 2.4 power with its linear toe)."""
    colorants = to_d50(rgb_to_xyz(P3_PRIMARIES, D65))
    xyz = [b"XYZ \0\0\0\0" + b"".join(s15(v) for v in column) for column in colorants.T]
    curve = b"para\0\0\0\0" + struct.pack(">HH", 3, 0)
    curve += b"".join(s15(v) for v in (2.4, 1 / 1.055, 0.055 / 1.055, 1 / 12.92, 0.04045))
    name = b"Display P3 (test)"
    desc = b"desc\0\0\0\0" + struct.pack(">I", len(name) + 1) + name + b"\0"
    desc += b"\0" * 12 + b"\0" * 3 + b"\0" * 67  # no Unicode or ScriptCode names
    tags = [
        (b"desc", desc),
        (b"wtpt", b"XYZ \0\0\0\0" + b"".join(s15(v) for v in D50_XYZ)),
        (b"rXYZ", xyz[0]),
        (b"gXYZ", xyz[1]),
        (b"bXYZ", xyz[2]),
        (b"rTRC", curve),
        (b"gTRC", curve),
        (b"bTRC", curve),
        (b"cprt", b"text\0\0\0\0public domain\0"),
    ]
    offset = 128 + 4 + 12 * len(tags)
    table, data = b"", b""
    for signature, body in tags:
        body += b"\0" * (-len(body) % 4)
        table += signature + struct.pack(">II", offset + len(data), len(body))
        data += body
    size = offset + len(data)
    header = struct.pack(">I", size) + b"\0\0\0\0" + struct.pack(">I", 0x02100000)
    header += b"mntrRGB XYZ " + b"\0" * 12 + b"acsp" + b"\0" * 24 + struct.pack(">I", 0)
    header += b"".join(s15(v) for v in D50_XYZ)
    header += b"\0" * (128 - len(header))
    return header + struct.pack(">I", len(tags)) + table + data


def srgb_to_p3_numpy(rgb: np.ndarray) -> np.ndarray:
    """sRGB 0..255 -> Display P3 0..255 by the colour spaces' definitions, in float64."""

    def decode(v):
        return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)

    def encode(v):
        return np.where(v <= 0.0031308, v * 12.92, 1.055 * v ** (1 / 2.4) - 0.055)

    linear = decode(np.asarray(rgb, np.float64) / 255)
    to_p3 = np.linalg.inv(rgb_to_xyz(P3_PRIMARIES, D65)) @ rgb_to_xyz(SRGB_PRIMARIES, D65)
    return encode(np.clip(linear @ to_p3.T, 0, 1)) * 255


def srgb_to_p3_lcms(rgb: np.ndarray) -> np.ndarray:
    """The same through LittleCMS with the profile above: how the test's P3 file is made."""
    transform = ImageCms.buildTransform(
        ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")),
        ImageCms.ImageCmsProfile(io.BytesIO(display_p3_profile())),
        "RGB",
        "RGB",
        ImageCms.Intent.RELATIVE_COLORIMETRIC,
    )
    return np.asarray(ImageCms.applyTransform(Image.fromarray(rgb), transform))


def small_photo() -> np.ndarray:
    """images/content.jpg at 64x48, as 8-bit sRGB (it has no profile: sRGB by default)."""
    full = load_image(os.path.join(REPO_ROOT, "images", "content.jpg"), "CONTENT_IMAGE")
    return np.rint(resize_image(full, (48, 64))).astype(np.uint8)


def sha(path) -> str:
    with open(path, "rb") as file:
        return hashlib.sha256(file.read()).hexdigest()


# --- on load --------------------------------------------------------------------------------


def test_the_p3_profile_built_here_matches_the_colour_spaces_definitions():
    colours = np.array(
        [[[255, 0, 0], [0, 255, 0], [0, 0, 255], [200, 120, 40], [128, 128, 128], [255] * 3]],
        np.uint8,
    )
    expected = srgb_to_p3_numpy(colours)
    assert np.abs(srgb_to_p3_lcms(colours) - expected).max() <= 1.0
    assert abs(expected[0, 0, 0] - 234) < 1 and abs(expected[0, 0, 1] - 51) < 1  # sRGB red


def test_a_display_p3_photo_loads_as_its_srgb_original(tmp_path):
    original = small_photo()
    srgb_path = str(tmp_path / "srgb.png")
    Image.fromarray(original).save(srgb_path)
    p3_pixels = srgb_to_p3_lcms(original)
    p3_path = str(tmp_path / "p3.png")
    Image.fromarray(p3_pixels).save(p3_path, icc_profile=display_p3_profile())
    before = sha(p3_path)

    loaded = load_image(p3_path, "CONTENT_IMAGE")
    reference = load_image(srgb_path, "CONTENT_IMAGE")
    np.testing.assert_array_equal(reference, original.astype(np.float32))
    assert np.abs(loaded - reference).max() <= 2.0
    # Read as if it were sRGB (what happened before), the P3 file is far off: the test
    # can tell a conversion from none.
    assert np.abs(p3_pixels.astype(float) - original).max() > 10
    assert sha(p3_path) == before  # the input is only read


def test_transparent_pixels_stay_transparent_through_the_conversion(tmp_path):
    original = small_photo()
    alpha = np.full(original.shape[:2], 255, np.uint8)
    alpha[:, :16] = 0
    rgba = np.dstack([srgb_to_p3_lcms(original), alpha])
    path = str(tmp_path / "p3-alpha.png")
    Image.fromarray(rgba, "RGBA").save(path, icc_profile=display_p3_profile())

    loaded = load_image(path, "CONTENT_IMAGE")
    assert np.all(loaded[:, :16] == 255.0)  # over white, as without a profile
    assert np.abs(loaded[:, 16:] - original[:, 16:]).max() <= 2.0


@pytest.mark.parametrize(
    "name, mode, profile",
    [
        ("garbage.png", "RGB", b"this is not an ICC profile"),
        ("garbage.jpg", "RGB", b"\0" * 200),
        ("grey-with-rgb-profile.png", "L", None),  # a real profile of the wrong kind
    ],
)
def test_a_broken_profile_warns_once_and_the_pixels_are_read_as_they_are(
    tmp_path, capsys, name, mode, profile
):
    pixels = small_photo() if mode == "RGB" else small_photo()[..., 1]
    path = str(tmp_path / name)
    Image.fromarray(pixels, mode).save(
        path, icc_profile=profile or display_p3_profile(), quality=100
    )
    with Image.open(path) as image:
        plain = np.asarray(image.convert("RGB"), np.float32)
    before = sha(path)

    first = load_image(path, "CONTENT_IMAGE")
    err = capsys.readouterr().err
    np.testing.assert_array_equal(first, plain)
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"warning: {path}: its ICC colour profile")
    assert "read as sRGB" in lines[0]
    np.testing.assert_array_equal(load_image(path, "CONTENT_IMAGE"), plain)
    assert capsys.readouterr().err == ""  # once per file
    assert sha(path) == before


# --- on save --------------------------------------------------------------------------------


def embedded_profile(path) -> bytes | None:
    with Image.open(path) as image:
        return image.info.get("icc_profile")


def is_srgb(profile: bytes | None) -> bool:
    """The profile is sRGB, by what it says it is and by what it does: converting every
    colour of a 16-level cube from it to a freshly built sRGB changes none of them."""
    if profile is None:
        return False
    embedded = ImageCms.ImageCmsProfile(io.BytesIO(profile))
    if "sRGB" not in ImageCms.getProfileDescription(embedded):
        return False
    levels = np.linspace(0, 255, 16).astype(np.uint8)
    cube = np.stack(np.meshgrid(levels, levels, levels), axis=-1).reshape(64, 64, 3)
    fresh = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
    transform = ImageCms.buildTransform(
        embedded, fresh, "RGB", "RGB", ImageCms.Intent.RELATIVE_COLORIMETRIC
    )
    converted = np.asarray(ImageCms.applyTransform(Image.fromarray(cube), transform))
    return bool(np.array_equal(converted, cube)) and profile == color_profiles.srgb_profile()


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".tif", ".webp"])
def test_every_8_bit_output_embeds_the_srgb_profile(tmp_path, suffix):
    path = str(tmp_path / f"out{suffix}")
    save_image(path, small_photo().astype(np.float32))
    assert is_srgb(embedded_profile(path))


def gradient() -> np.ndarray:
    """A smooth float image: each channel a ramp across 0..255 finer than 8 bits."""
    y, x = np.mgrid[0:48, 0:64].astype(np.float32)
    ramp = (x + 64 * y) / (64 * 48 - 1) * 255
    return np.stack([ramp, 255 - ramp, (ramp * 0.5 + 60)], axis=-1).astype(np.float32)


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_a_16_bit_output_holds_the_floats_rounded_once(tmp_path, suffix):
    image = gradient()
    path = str(tmp_path / f"deep{suffix}")
    save_image(path, image, bits=16)
    # OpenCV's decoders (libpng, libtiff) read the file: an independent check of the format.
    written = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    assert written is not None and written.dtype == np.uint16 and written.shape == (48, 64, 3)
    rgb = written[..., ::-1].astype(np.int64)
    assert np.abs(rgb - np.rint(image.astype(np.float64) * 257)).max() <= 1
    assert len(np.unique(rgb[..., 0])) > 256
    assert is_srgb(embedded_profile(path))  # the iCCP chunk / TIFF tag 34675

    eight = str(tmp_path / f"eight{suffix}")
    save_image(eight, image)
    assert len(np.unique(np.asarray(Image.open(eight))[..., 0])) <= 256


def test_a_16_bit_output_reads_back_as_an_input(tmp_path):
    path = str(tmp_path / "deep.tif")
    save_image(path, gradient(), bits=16)
    # PIL reads 48-bit files at 8 bits a channel (the high byte): within a level.
    assert np.abs(load_image(path, "INIT") - gradient()).max() < 1.0


# --- OUTPUT_FORMAT --------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["jpeg2000", 3, "JPG", ""])
def test_a_bad_output_format_is_one_line(value):
    with pytest.raises(UserError) as error:
        Settings.from_module(toy_settings, output_format=value)
    message = str(error.value)
    assert "\n" not in message and "OUTPUT_FORMAT (--output_format)" in message


def test_a_bad_output_format_flag_is_one_line_from_train_py(tmp_path):
    result = run_train("--output_format=jpeg2000", cwd=str(tmp_path))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: OUTPUT_FORMAT (--output_format)")
    assert "jpg, png, png16, tiff16" in lines[0]
    assert os.listdir(tmp_path) == []


def output_names(folder) -> list[str]:
    return sorted(name for name in os.listdir(folder) if not name.startswith("."))


def image_names(folder, suffix: str) -> list[str]:
    """The snapshots and final images (not the losses plot, a PNG too)."""
    return [n for n in output_names(folder) if n.endswith(suffix) and "-losses" not in n]


@pytest.mark.slow
@pytest.mark.parametrize("output_format, suffix", [("png", ".png"), ("tiff16", ".tif")])
def test_a_run_writes_its_format_with_the_profile_and_resumes(
    tmp_path, tiny_mat, image_pair, output_format, suffix
):
    settings = tiny_settings(
        tmp_path, tiny_mat, image_pair, output_format=output_format, train_steps=3
    )  # snapshot_every=2
    result, _ = stylize_without_plots(settings)
    out = tmp_path / "out"
    assert image_names(out, suffix) == [f"result-2{suffix}", f"result{suffix}"]
    assert result.output_path == str(out / f"result{suffix}")
    for name in image_names(out, suffix):
        assert is_srgb(embedded_profile(out / name))
    snapshot = sha(out / f"result-2{suffix}")

    resumed, _ = stylize_without_plots(dataclasses.replace(settings, resume=True, train_steps=5))
    assert resumed.steps == 5 and resumed.output_path == str(out / f"result{suffix}")
    assert image_names(out, suffix) == [f"result-2{suffix}", f"result-4{suffix}", f"result{suffix}"]
    assert sha(out / f"result-2{suffix}") == snapshot  # the earlier snapshot is kept
    assert not [name for name in output_names(out) if name.startswith("result_2")]


@pytest.fixture(scope="module", autouse=True)
def png16_run(request, tiny_mat, tmp_path_factory):
    """The train.py run of the test below, started before this module's first test so that
    it runs beside the tests before it rather than alone: (it, its folder)."""
    if not is_selected(request, "test_train_py_writes_png16_snapshots_and_resumes"):
        yield None
        return
    folder = tmp_path_factory.mktemp("png16")
    content, style = write_image_pair(folder)
    command = [
        sys.executable,
        os.path.join(REPO_ROOT, "train.py"),
        f"--content_image={content}",
        f"--style_image={style}",
        f"--output_image={folder / 'out' / 'deep'}",
        f"--vgg_model_path={tiny_mat}",
        "--image_width=40",
        "--snapshot_every=1",
        "--precision=float32",
        "--output_format=png16",
        "--train_steps=2",
    ]
    started = StartedEarly(command, folder, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    yield started, folder
    started.kill()


@pytest.mark.slow
def test_train_py_writes_png16_snapshots_and_resumes(png16_run):
    started, folder = png16_run
    first = started.finish(timeout=120)
    assert first.returncode == 0, first.stderr
    out = folder / "out"
    assert image_names(out, ".png") == ["deep-1.png", "deep-2.png", "deep.png"]
    # The resume in this process, with the settings train.py recorded (the CLI's
    # --resume runs in test_never_lose_work.py): no second TensorFlow start-up.
    with open(out / "deep-settings.json", encoding="utf-8") as file:
        recorded = json.load(file)
    recorded.pop("inputs")  # the identities of the files read, beside the settings
    resumed = Settings.from_module(toy_settings, **{**recorded, "train_steps": 3, "resume": True})
    _, printed = stylize_without_plots(resumed)
    assert "resuming from" in printed
    assert image_names(out, ".png") == ["deep-1.png", "deep-2.png", "deep-3.png", "deep.png"]
    for name in ("deep-1.png", "deep-2.png", "deep.png"):
        written = cv2.imread(str(out / name), cv2.IMREAD_UNCHANGED)
        assert written.dtype == np.uint16
        # Not an 8-bit image scaled up: most values fall between multiples of 257.
        assert np.count_nonzero(written % 257) > written.size // 2
        assert is_srgb(embedded_profile(out / name))


@pytest.mark.slow
def test_a_folder_run_in_png_never_reads_its_outputs_back(tmp_path, tiny_mat, image_pair):
    content, style = image_pair
    photos = tmp_path / "photos"
    photos.mkdir()
    os.replace(content, photos / "a.jpg")
    settings = tiny_settings(
        tmp_path,
        tiny_mat,
        (str(photos), style),
        output_image=str(photos / "out"),
        output_format="png16",
        train_steps=1,
        snapshot_every=0,
    )
    stylize_without_plots(settings)
    assert os.path.exists(photos / "out-a.png")
    assert outputs.is_output_of(str(photos / "out-a.png"), str(photos / "out"))
    again, _ = stylize_without_plots(settings)  # a second run: out-a.png is not a photo
    assert [os.path.basename(r.output_path) for r in again.results] == ["out-a_2.png"]


def test_stylize_outputs_keep_their_format_and_carry_the_profile(tmp_path):
    from neural_style.feedforward.model import build_transformer
    from neural_style.feedforward.stylizing.run import stylize_input
    from neural_style.settings.network import NetworkSettings

    network = str(tmp_path / "network.keras")
    build_transformer(width=2, seed=5).save(network)
    source = tmp_path / "in"
    source.mkdir()
    Image.fromarray(small_photo()).save(source / "a.jpg")
    Image.fromarray(srgb_to_p3_lcms(small_photo())).save(
        source / "b.png", icc_profile=display_p3_profile()
    )
    values = {"network_model": network, "stylize_input": str(source)}
    settings = NetworkSettings.from_module(
        toy_settings, **values, stylize_output=str(tmp_path / "out")
    )
    result = stylize_input(settings)
    assert sorted(os.path.basename(path) for path in result.outputs) == ["a.jpg", "b.png"]
    for path in result.outputs:
        assert is_srgb(embedded_profile(path))
    assert color_profiles.srgb_profile() == embedded_profile(result.outputs[0])


def test_a_tiff_too_large_for_32_bit_offsets_is_refused_before_the_run(tmp_path):
    from neural_style.media.images import check_encodable

    with pytest.raises(UserError) as error:
        check_encodable(str(tmp_path / "huge.tif"), (30000, 30000), "IMAGE_WIDTH")
    message = str(error.value)
    assert "\n" not in message and "30000x30000" in message and "IMAGE_WIDTH" in message
    check_encodable(str(tmp_path / "fine.tif"), (4000, 6000), "IMAGE_WIDTH")
    assert os.listdir(tmp_path) == []


@pytest.mark.root
@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_a_16_bit_output_on_a_full_disk_is_one_line_and_keeps_the_earlier_file(tmp_path, suffix):
    rng = np.random.default_rng(0)
    noise = rng.uniform(0, 255, (300, 300, 3)).astype(np.float32)  # ~540 kB at 16 bits
    with tmpfs(tmp_path / "small", "200k") as folder:
        path = str(folder / f"out{suffix}")
        save_image(path, gradient())  # an earlier, 8-bit result that fits
        before = sha(path)
        with pytest.raises(UserError) as error:
            save_image(path, noise, bits=16)
        message = str(error.value)
        assert "\n" not in message and message.startswith(f"{path}: ")
        assert "disk is full" in message
        assert sha(path) == before
        assert sorted(os.listdir(folder)) == [f"out{suffix}"]  # no temporary file left
