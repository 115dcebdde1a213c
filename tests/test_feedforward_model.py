"""The feed-forward transformer network: shapes, normalisation, and .keras round trips."""

import os
import sys

import numpy as np
import pytest

from neural_style.feedforward.model import (
    InstanceNormalization,
    NetworkFileError,
    build_transformer,
    load_network,
)
from neural_style.feedforward.stylizing.run import Stylizer
from tests.support import REPO_ROOT, StartedEarly, is_selected


@pytest.fixture(scope="module")
def tiny_model():
    return build_transformer(width=2, seed=3)


@pytest.mark.parametrize("height_width", [(33, 47), (32, 32), (5, 7), (50, 21)])
def test_any_size_odd_included_keeps_its_size(tiny_model, height_width):
    rng = np.random.default_rng(0)
    photos = rng.uniform(0, 255, (2, *height_width, 3)).astype(np.float32)
    stylised = np.asarray(tiny_model(photos))
    assert stylised.shape == photos.shape
    assert stylised.min() >= 0.0 and stylised.max() <= 255.0


def test_the_layout_follows_the_paper():
    model = build_transformer(width=4, seed=0)
    convs = [layer for layer in model.layers if layer.name.endswith("_conv")]
    assert [conv.kernel_size for conv in convs[:3]] == [(9, 9), (3, 3), (3, 3)]
    assert [conv.strides for conv in convs[:3]] == [(1, 1), (2, 2), (2, 2)]
    assert [conv.filters for conv in convs[:3]] == [4, 8, 16]
    assert len([layer for layer in model.layers if layer.name.endswith("_add")]) == 5
    assert convs[-1].kernel_size == (9, 9) and convs[-1].filters == 3
    norms = [layer for layer in model.layers if isinstance(layer, InstanceNormalization)]
    assert len(norms) == len(convs) - 1  # after every conv but the last
    # The paper's network: width 32 gives about 1.7 million weights.
    assert 1.6e6 < build_transformer(width=32).count_params() < 1.8e6


def test_instance_normalisation_normalises_each_image_and_channel():
    rng = np.random.default_rng(1)
    features = rng.normal(5, 3, (2, 6, 7, 4)).astype(np.float32) * np.arange(1, 5)
    layer = InstanceNormalization()
    normalised = np.asarray(layer(features))
    np.testing.assert_allclose(normalised.mean(axis=(1, 2)), 0, atol=1e-5)
    np.testing.assert_allclose(normalised.std(axis=(1, 2)), 1, atol=1e-3)


def test_saved_network_stylises_bit_identically(tiny_model, tmp_path):
    path = str(tmp_path / "network.keras")
    tiny_model.save(path)
    photo = np.random.default_rng(2).uniform(0, 255, (1, 35, 41, 3)).astype(np.float32)
    in_memory = Stylizer(tiny_model)(photo)
    loaded = Stylizer(load_network(path))(photo)
    assert np.array_equal(in_memory, loaded)


LOAD_WITHOUT_TRAINING_CODE = """
import sys
import keras
import numpy as np
import neural_style.feedforward.model  # registers the custom layers; nothing else needed
model = keras.saving.load_model(sys.argv[1])
np.save(sys.argv[2], np.asarray(model(np.load(sys.argv[3]), training=False)))
assert "neural_style.feedforward.training.run" not in sys.modules
assert "neural_style.vgg.network" not in sys.modules
"""


@pytest.fixture(scope="module", autouse=True)
def loaded_elsewhere(request, tmp_path_factory):
    """The fresh Python of the test below, started before this module's first test so that
    it runs beside the tests before it rather than alone: (it, its folder, the photo)."""
    if not is_selected(request, "test_a_saved_network_loads_without_the_training_code"):
        yield None
        return
    tmp_path = tmp_path_factory.mktemp("loaded_elsewhere")
    path = str(tmp_path / "network.keras")
    request.getfixturevalue("tiny_model").save(path)
    photo = np.random.default_rng(4).uniform(0, 255, (1, 33, 33, 3)).astype(np.float32)
    np.save(tmp_path / "photo.npy", photo)
    started = StartedEarly(
        [
            sys.executable,
            "-c",
            LOAD_WITHOUT_TRAINING_CODE,
            path,
            str(tmp_path / "out.npy"),
            str(tmp_path / "photo.npy"),
        ],
        tmp_path,
        env={**os.environ, "PYTHONPATH": REPO_ROOT, "CUDA_VISIBLE_DEVICES": ""},
    )
    yield started, tmp_path, photo
    started.kill()


@pytest.mark.slow
def test_a_saved_network_loads_without_the_training_code(tiny_model, loaded_elsewhere):
    started, tmp_path, photo = loaded_elsewhere
    result = started.finish(timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    expected = np.asarray(tiny_model(photo, training=False))
    assert np.array_equal(np.load(tmp_path / "out.npy"), expected)


# --- Files that are not a network: each reported as what it is -------------------------


def _damaged(kind: str, good: bytes, path) -> None:
    """Makes `path` a .keras file of `kind`, from the bytes of a good one."""
    import zipfile

    import keras

    if kind == "truncated":
        path.write_bytes(good[: len(good) // 2])
    elif kind == "text":
        path.write_text("model: my-style\nweights: see the other file\n")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "folder":
        path.mkdir()
    elif kind == "other zip":
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("notes.txt", "not a network")
    elif kind == "lambda layer":
        photos = keras.Input((None, None, 3))
        keras.Model(photos, keras.layers.Lambda(lambda x: 255.0 - x)(photos)).save(path)
    elif kind == "classifier":
        features = keras.Input((10,))
        keras.Model(features, keras.layers.Dense(2)(features)).save(path)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("kind", "said"),
    [
        ("truncated", "a truncated or damaged zip archive: the file was cut short"),
        ("text", "not a zip archive: the file is not a .keras network"),
        ("empty", "the file is empty"),
        ("folder", "is a folder, not a .keras file"),
        ("other zip", "a zip archive without config.json: not a .keras network"),
        # Keras's safe mode: a file that would run Python code when loaded is refused.
        ("lambda layer", "not a network this tool can load (Requested the deserialization"),
        ("classifier", "not an image-to-image network: it maps [(None, 10)] to [(None, 2)]"),
    ],
)
def test_a_file_that_is_not_a_network_is_reported_as_what_it_is(tiny_model, tmp_path, kind, said):
    good = tmp_path / "good.keras"
    tiny_model.save(str(good))
    path = tmp_path / "network.keras"
    _damaged(kind, good.read_bytes(), path)
    before = path.read_bytes() if path.is_file() else None
    with pytest.raises(NetworkFileError) as raised:
        load_network(str(path))
    message = str(raised.value)
    assert message.startswith(said), message
    assert "File not found" not in message and "\n" not in message and len(message) < 260
    assert (path.read_bytes() if path.is_file() else None) == before  # only read
    assert load_network(str(good)).count_params() == tiny_model.count_params()


# --- Networks this tool could not have made: refused before any photo -------------------


def _foreign(kind: str):
    """A Keras model, saved by someone else, that loads and maps [B, H, W, 3] to [B, H, W, 3]
    on paper, but not as this tool's network does."""
    import keras

    if kind == "fixed size":
        photos = keras.Input((256, 256, 3))
        return keras.Model(photos, keras.layers.Conv2D(3, 3, padding="same")(photos))
    photos = keras.Input((None, None, 3))
    if kind == "half size":
        return keras.Model(photos, keras.layers.Conv2D(3, 3, strides=2, padding="same")(photos))
    if kind == "fails on odd sizes":
        half = keras.layers.MaxPooling2D(2)(photos)
        return keras.Model(photos, keras.layers.Add()([keras.layers.UpSampling2D(2)(half), photos]))
    if kind == "output -1..1":
        return keras.Model(photos, keras.layers.Activation("tanh")(photos / 127.5 - 1.0))
    if kind == "output 0..1":
        return keras.Model(photos, keras.layers.Activation("sigmoid")(photos / 127.5 - 1.0))
    raise ValueError(kind)


@pytest.mark.parametrize(
    ("kind", "said"),
    [
        (
            "fixed size",
            "takes only 256x256 images (its input is fixed at (None, 256, 256, 3)), while a "
            "network of train_network.py takes any size",
        ),
        ("half size", "returns (1, 7, 6, 3) for a [1, 13, 11, 3] image, not the same size"),
        ("fails on odd sizes", "fails on a 11x13 image ("),
        ("output -1..1", "its output is not pixels in 0..255 (a photo gave values from -"),
        ("output 0..1", "its output is not pixels in 0..255 (a photo gave values from 0."),
    ],
)
def test_a_network_this_tool_could_not_have_made_is_refused(tmp_path, kind, said):
    path = tmp_path / "theirs.keras"
    _foreign(kind).save(str(path))
    with pytest.raises(NetworkFileError) as raised:
        load_network(str(path))
    message = str(raised.value)
    assert message.startswith(said), message
    assert "\n" not in message and len(message) < 300


def test_the_probe_accepts_every_network_of_this_tool(tmp_path):
    # The checks above must never refuse a network train_network.py makes, at any width.
    for width in (1, 4):
        path = tmp_path / f"width{width}.keras"
        build_transformer(width=width, seed=width).save(str(path))
        assert load_network(str(path)).count_params() > 0


def _in_a_thread_without_root_permissions(function):
    """Runs `function` in a thread whose effective capabilities lack CAP_DAC_OVERRIDE and
    CAP_DAC_READ_SEARCH, so file modes bind although the tests run as root. Capabilities
    are per thread on Linux, so the rest of the process keeps them. Returns what
    `function` returned or raised."""
    import ctypes
    import threading

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Sets(ctypes.Structure):
        _fields_ = [(name, ctypes.c_uint32) for name in ("effective", "permitted", "inherit")]

    outcome = {}

    def run():
        try:
            if os.geteuid() == 0:
                libc = ctypes.CDLL(None, use_errno=True)
                header, sets = Header(0x20080522, 0), (Sets * 2)()  # _LINUX_CAPABILITY_VERSION_3
                dac_override, dac_read_search = 1, 2
                if libc.capget(ctypes.byref(header), sets) != 0:
                    raise OSError(ctypes.get_errno(), "capget failed")
                sets[0].effective &= ~((1 << dac_override) | (1 << dac_read_search))
                if libc.capset(ctypes.byref(header), sets) != 0:
                    raise OSError(ctypes.get_errno(), "capset failed")
            outcome["value"] = function()
        except BaseException as error:  # handed to the test's thread
            outcome["error"] = error

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    return outcome


def test_an_unreadable_network_file_is_reported_as_permission_denied(tiny_model, tmp_path):
    path = tmp_path / "network.keras"
    tiny_model.save(str(path))
    saved = path.read_bytes()
    path.chmod(0)
    outcome = _in_a_thread_without_root_permissions(lambda: load_network(str(path)))
    error = outcome.get("error")
    if isinstance(error, OSError):
        pytest.fail(f"could not drop root's power over file permissions: {error}")
    assert isinstance(error, NetworkFileError), outcome
    assert str(error) == "permission denied"
    path.chmod(0o644)
    assert path.read_bytes() == saved


def test_a_network_stylises_in_bfloat16_near_float32_and_stays_float32(tmp_path):
    from neural_style.feedforward.model import with_precision
    from neural_style.media.images import load_image, resize_image

    model = build_transformer(width=4, seed=7)
    saved = [weight.copy() for weight in model.get_weights()]
    photos = np.stack(
        [
            resize_image(load_image(os.path.join(REPO_ROOT, "images", name), "X"), (48, 64))
            for name in ("content.jpg", "style.jpg")
        ]
    )
    exact = Stylizer(model)(photos)
    rounded = Stylizer(model, precision="mixed_bfloat16")(photos)
    assert rounded.dtype == np.float32 and rounded.shape == exact.shape
    assert 0.0 < np.abs(rounded - exact).mean() <= 2.0  # bfloat16 indeed, off by rounding
    assert rounded.min() >= 0.0 and rounded.max() <= 255.0
    for weight, before in zip(model.get_weights(), saved, strict=True):
        np.testing.assert_array_equal(weight, before)  # the network itself is untouched
    copy = with_precision(model, "mixed_bfloat16")
    kinds = {layer.name: layer.compute_dtype for layer in copy.layers}
    assert kinds["in_conv"] == kinds["residual1_a_pad"] == kinds["up1_resize"] == "bfloat16"
    assert kinds["in_norm"] == kinds["residual1_add"] == kinds["to_pixels"] == "float32"
    assert all(weight.dtype == np.float32 for weight in copy.get_weights())
    assert with_precision(model, "float32") is model
