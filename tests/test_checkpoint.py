"""Checkpoints: the optimisers' states round-trip through the file, and every damaged,
foreign or crafted file is one clean UserError naming it (never a traceback, never gigabytes
of memory), and is left as it was. Also which changes check_resumable lets a run resume with.
"""

from __future__ import annotations

import hashlib
import io
import os
import resource
import shutil
import struct
import tracemalloc
import warnings
import zipfile
import zlib

import numpy as np
import pytest

from neural_style.errors import UserError
from neural_style.gatys import checkpoint as checkpoints
from neural_style.gatys import resume_rules
from neural_style.settings.gatys import Settings
from tests import toy_settings
from tests.support import FEW_LAYERS, default_loss_weights, photo, write_image

SIZE = (8, 12)  # (height, width) of the checkpoint's stage in the fault tests
STAGES = [(4, 6), SIZE]  # a coarse-to-fine run; the checkpoints are of stage 1
REAL_STAGES = [(16, 20), (32, 40)]  # the round trips' stages, optimised at stage 1


def settings_for(tmp_path, **overrides) -> Settings:
    values = dict(
        content_image=str(tmp_path / "content.png"),
        output_image=str(tmp_path / "out" / "result"),
        image_width=40,
    )
    return Settings.from_module(toy_settings, **{**values, **overrides})


def synthetic_state(optimizer: str, size=SIZE, seed: int = 0) -> dict[str, np.ndarray]:
    """A state of `optimizer`'s layout holding plausible values."""
    rng = np.random.default_rng(seed)
    state = {}
    for name, (kind, dtype) in checkpoints.STATE_LAYOUT[optimizer].items():
        shape = (*size, 3) if kind == "image" else ()
        state[name] = np.asarray(rng.uniform(1, 255, shape), dtype)
    return state


def save(path, optimizer="adam", *, stage=1, step=7, state=None, settings=None, photo_digest=None):
    checkpoints.save_checkpoint(
        str(path),
        checkpoints.Checkpoint(
            stage,
            step,
            synthetic_state(optimizer) if state is None else state,
            {"beta": 500.0} if settings is None else settings,
            "ab" * 32 if photo_digest is None else photo_digest,
        ),
    )
    return str(path)


@pytest.fixture
def good(tmp_path) -> str:
    """A valid adam checkpoint of stage 1 of STAGES."""
    return save(tmp_path / "good-checkpoint.npz")


def members(path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def write_zip(path, contents: dict[str, bytes], compression=zipfile.ZIP_STORED) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a duplicate name is the point of one test
        with zipfile.ZipFile(path, "w", compression) as archive:
            for name, data in contents.items() if isinstance(contents, dict) else contents:
                archive.writestr(name, data)
    return str(path)


def npy(array, **options) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, np.asanyarray(array), **options)
    return buffer.getvalue()


def variant(good: str, name: str = "bad-checkpoint.npz", **replaced) -> str:
    """A copy of the good checkpoint with members replaced (None drops one); member names
    are given with "__" for "/" and without ".npy"."""
    contents = members(good)
    for key, data in replaced.items():
        member = key.replace("__", "/") + ".npy"
        if data is None:
            del contents[member]
        else:
            contents[member] = data if isinstance(data, bytes) else npy(data)
    return write_zip(os.path.join(os.path.dirname(good), name), contents)


def digest(path) -> str:
    with open(path, "rb") as file:
        return hashlib.sha256(file.read()).hexdigest()


def refused(path, *words, stage_sizes=STAGES, optimizer="adam") -> str:
    """Asserts that loading `path` is one clean UserError naming it and `words`, and that
    the file is left byte-identical; returns the message."""
    before = digest(path) if os.path.isfile(path) else None
    with pytest.raises(UserError) as caught:
        checkpoints.load_checkpoint(path, stage_sizes=stage_sizes, optimizer=optimizer)
    message = str(caught.value)
    assert message.startswith(f"{path}: "), message
    assert "\n" not in message and "Traceback" not in message
    assert caught.value.__cause__ is None
    assert caught.value.__context__ is None or caught.value.__suppress_context__
    assert "--resume" in message and "OUTPUT_IMAGE" in message
    for word in words:
        assert word in message, message
    if before is not None:
        assert digest(path) == before
    return message


def not_ours(path, *words, **options) -> str:
    return refused(path, "not a checkpoint of this run (", *words, **options)


# --- the optimisers' states -----------------------------------------------------------------


def optimizer_after_steps(net, optimizer: str, size=REAL_STAGES[1], kind="single"):
    """A real optimiser of the tiny net on a size[0] x size[1] photo, two steps in."""
    from neural_style.optimize.adam import BatchAdamOptimizer
    from neural_style.optimize.lbfgs import LbfgsOptimizer
    from neural_style.optimize.loss_functions import BatchLossFunction, LossFunction
    from tests.single_image import AdamOptimizer, compute_targets

    # The first two blocks' layers: what is checked is the state, and each optimiser here
    # traces its own loss.
    weights = default_loss_weights()._replace(
        content_layers=FEW_LAYERS["content_loss_layers"],
        style_layers=FEW_LAYERS["style_loss_layers"],
    )
    content = photo(*size, seed=1)
    targets = compute_targets(net, content, [photo(*size, seed=9)[::-1]], [1.0], weights)
    if optimizer == "lbfgs":
        built = LbfgsOptimizer(LossFunction(net, targets, weights), content)
    elif kind == "batch":
        loss = BatchLossFunction(net, targets, weights)
        built = BatchAdamOptimizer(loss, content[None], learning_rate=5.0)
    else:
        built = AdamOptimizer(LossFunction(net, targets, weights), content, learning_rate=5.0)
    assert len(list(built.steps(2))) == 2
    return built


def layout_of(state: dict) -> dict[str, tuple[tuple[int, ...], str]]:
    return {name: (np.shape(value), np.asarray(value).dtype.name) for name, value in state.items()}


def expected_layout(optimizer: str, size) -> dict[str, tuple[tuple[int, ...], str]]:
    return {
        name: ((*size, 3) if kind == "image" else (), dtype)
        for name, (kind, dtype) in checkpoints.STATE_LAYOUT[optimizer].items()
    }


def test_state_layout_is_what_the_optimisers_hold(tiny_net):
    size = (16, 24)
    batch = optimizer_after_steps(tiny_net, "adam", size, kind="batch")
    assert len(batch.states()) == 1
    assert layout_of(batch.states()[0]) == expected_layout("adam", size)
    single = optimizer_after_steps(tiny_net, "adam", size)
    assert layout_of(single.state()) == expected_layout("adam", size)
    lbfgs = optimizer_after_steps(tiny_net, "lbfgs", size)
    assert layout_of(lbfgs.state()) == expected_layout("lbfgs", size)


@pytest.mark.parametrize("optimizer", ["adam", "lbfgs"])
def test_a_real_state_round_trips_and_restores(tmp_path, tiny_net, optimizer):
    settings = resume_rules.settings_record(settings_for(tmp_path, optimizer=optimizer))
    content = write_image(tmp_path / "content.png", photo(40, 50))
    source = optimizer_after_steps(tiny_net, optimizer)
    state = {name: np.array(value) for name, value in source.state().items()}
    saved = checkpoints.Checkpoint(1, 9, state, settings, checkpoints.photo_digest(content))
    path = str(tmp_path / "out" / "result-checkpoint.npz")
    checkpoints.save_checkpoint(path, saved)
    before = digest(path)

    loaded = checkpoints.load_checkpoint(path, stage_sizes=REAL_STAGES, optimizer=optimizer)
    assert digest(path) == before
    assert (loaded.stage, loaded.step, loaded.settings) == (1, 9, settings)
    with open(content, "rb") as file:
        assert loaded.photo == hashlib.sha256(file.read()).hexdigest()
    assert layout_of(loaded.optimizer_state) == layout_of(state)
    for name, value in state.items():
        np.testing.assert_array_equal(loaded.optimizer_state[name], value)
    # Gone on a step, the optimiser given the loaded state is back exactly where it was.
    assert len(list(source.steps(1, first=3))) == 1
    assert not np.array_equal(source.state()["image"], state["image"])
    source.restore(loaded.optimizer_state)
    for name, value in source.state().items():
        np.testing.assert_array_equal(value, state[name])


def test_other_encodings_of_the_same_arrays_load_the_same(good):
    expected = checkpoints.load_checkpoint(good, stage_sizes=STAGES, optimizer="adam")
    contents = members(good)
    image = expected.optimizer_state["image"]
    contents["state/image.npy"] = npy(np.asfortranarray(image))
    contents["state/best_image.npy"] = npy(expected.optimizer_state["best_image"].astype(">f4"))
    contents["step.npy"] = npy(np.array(7, ">i8"))
    folder = os.path.dirname(good)
    for compression in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        path = write_zip(os.path.join(folder, f"{compression}.npz"), contents, compression)
        loaded = checkpoints.load_checkpoint(path, stage_sizes=STAGES, optimizer="adam")
        assert loaded[:2] == expected[:2] and loaded[3:] == expected[3:]
        for name, value in expected.optimizer_state.items():
            assert loaded.optimizer_state[name].dtype == value.dtype
            np.testing.assert_array_equal(loaded.optimizer_state[name], value)


def test_an_older_checkpoint_without_a_photo_loads(good):
    path = variant(good, photo=None)
    loaded = checkpoints.load_checkpoint(path, stage_sizes=STAGES, optimizer="adam")
    assert loaded.photo == "" and loaded.step == 7


def test_a_best_loss_of_infinity_loads(good):
    """Before the first step (or after a change of loss) the best loss is +inf."""
    path = variant(good, state__best_loss=np.float32(np.inf))
    loaded = checkpoints.load_checkpoint(path, stage_sizes=STAGES, optimizer="adam")
    assert loaded.optimizer_state["best_loss"] == np.inf


# --- files that are not checkpoints ---------------------------------------------------------


def test_a_missing_file_says_there_is_nothing_to_resume(tmp_path):
    refused(str(tmp_path / "none-checkpoint.npz"), "no checkpoint to resume from")


@pytest.mark.parametrize("keep", ["10 bytes", "half", "all but 100 bytes"])
def test_a_truncated_file(good, keep):
    with open(good, "rb") as file:
        data = file.read()
    length = {"10 bytes": 10, "half": len(data) // 2, "all but 100 bytes": len(data) - 100}[keep]
    path = os.path.join(os.path.dirname(good), "cut-checkpoint.npz")
    with open(path, "wb") as file:
        file.write(data[:length])
    not_ours(path, "not a zip archive")


@pytest.mark.parametrize(
    "content", [b"", b"STYLE = 'van gogh'\n" * 20, os.urandom(3000)], ids=["empty", "text", "noise"]
)
def test_an_empty_text_or_random_file(tmp_path, content):
    path = tmp_path / "x-checkpoint.npz"
    path.write_bytes(content)
    not_ours(str(path), "not a zip archive")


def test_a_folder_in_its_place(tmp_path):
    path = tmp_path / "x-checkpoint.npz"
    path.mkdir()
    not_ours(str(path), "folder")


def test_a_zip_of_something_else(tmp_path):
    path = write_zip(tmp_path / "x-checkpoint.npz", {"README.txt": b"holiday photos"})
    not_ours(path, "unexpected README.txt; missing settings.npy, stage.npy")


def test_a_single_npy_file(tmp_path):
    path = str(tmp_path / "x-checkpoint.npz")
    with open(path, "wb") as file:
        np.save(file, synthetic_state("adam")["image"])
    not_ours(path, "not a zip archive")


def test_another_optimisers_checkpoint(good, tmp_path):
    lbfgs = save(tmp_path / "lbfgs-checkpoint.npz", "lbfgs")
    not_ours(lbfgs, "lbfgs's state, and this run uses adam")
    not_ours(good, "adam's state, and this run uses lbfgs", optimizer="lbfgs")


def test_a_missing_state_member(good):
    not_ours(variant(good, state__first_moment=None), "missing state/first_moment.npy")


@pytest.mark.parametrize("name", ["notes.npy", "state/extra.npy", "state/image.npy/x"])
def test_an_unexpected_member(good, name):
    contents = {**members(good), name: npy(np.float32(1))}
    not_ours(
        write_zip(os.path.join(os.path.dirname(good), "x.npz"), contents), f"unexpected {name}"
    )


def test_a_member_twice(good):
    contents = list(members(good).items())
    contents.append(("step.npy", npy(np.int64(10**6))))
    not_ours(write_zip(os.path.join(os.path.dirname(good), "x.npz"), contents), "step.npy twice")


# --- members of the wrong kind --------------------------------------------------------------


def test_a_wrong_dtype(good):
    image = synthetic_state("adam")["image"].astype(np.float64)
    not_ours(variant(good, state__image=image), "state/image.npy holds float64", "not float32")
    not_ours(variant(good, step=np.float64(7)), "step.npy holds float64", "not int64")
    not_ours(variant(good, state__best_loss=np.float64(1)), "best_loss.npy holds float64")


def test_a_wrong_image_shape(good):
    image = synthetic_state("adam", size=(9, 12))["image"]
    not_ours(variant(good, state__image=image), "state/image.npy has shape (9, 12, 3)", "8x12")
    flat = synthetic_state("adam")["image"].reshape(-1)
    not_ours(variant(good, state__first_moment=flat), "first_moment.npy has shape (288,)")
    not_ours(variant(good, state__best_loss=np.zeros(1, np.float32)), "shape (1,), not ()")


def test_images_of_another_stage(good):
    """A checkpoint of stage 0 whose images have stage 1's size, or a run whose stages
    differ from the checkpoint's."""
    not_ours(variant(good, stage=np.int64(0)), "stage 0 of this run is 4x6")
    not_ours(good, "stage 1 of this run is 8x13", stage_sizes=[(4, 6), (8, 13)])


@pytest.mark.parametrize("stage", [-1, len(STAGES), 2**62])
def test_a_stage_out_of_range(good, stage):
    not_ours(variant(good, stage=np.int64(stage)), f"stage {stage} is out of range")


def test_a_negative_step(good):
    not_ours(variant(good, step=np.int64(-1)), "step -1 is negative")


def test_a_header_declaring_a_huge_shape(good):
    """120 GB declared in a member of a few hundred bytes: refused from its header."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f4", "fortran_order": False, "shape": (100000, 100000, 3)}
    )
    crafted = header.getvalue() + bytes(1152)
    message = not_ours(variant(good, state__image=crafted), "declares 120000000000 bytes")
    assert "holds 1152" in message
    garbage = header.getvalue()[:10] + b"{'descr': '<f4', 'shape': (" + b"9," * 2000 + b")}"
    not_ours(variant(good, state__image=garbage), "state/image.npy has no valid .npy header")


class LeavesATrace:
    """Unpickling it would create a folder: proof that nothing was unpickled."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def test_a_pickled_object_array_is_never_unpickled(good, tmp_path):
    marker = str(tmp_path / "unpickled")
    objects = np.empty((*SIZE, 3), dtype=object)
    objects[0, 0, 0] = LeavesATrace(marker)
    not_ours(variant(good, state__image=npy(objects, allow_pickle=True)), "object")
    settings = np.array(LeavesATrace(marker), dtype=object)
    not_ours(variant(good, settings=npy(settings, allow_pickle=True)), "settings.npy is not a text")
    assert not os.path.exists(marker)


@pytest.mark.parametrize(
    "replaced, words",
    [
        ({"state__image": "nan"}, "state/image.npy holds NaN or infinite"),
        ({"state__second_moment": "inf"}, "second_moment.npy holds NaN or infinite"),
        ({"state__best_loss": np.float32(np.nan)}, "best_loss.npy holds NaN"),
        ({"state__best_loss": np.float32(-np.inf)}, "best_loss.npy holds NaN or infinite"),
        ({"state__learning_rate": np.float32(0)}, "learning_rate.npy is not positive"),
        ({"state__iterations": np.int64(-3)}, "iterations.npy is negative"),
        ({"state__evaluations": np.int64(-1)}, "evaluations.npy is negative"),
        ({"state__second_moment": "negative"}, "second_moment.npy holds negative"),
    ],
    ids=lambda value: str(value)[:40],
)
def test_values_the_optimiser_never_holds(good, replaced, words):
    state = synthetic_state("adam")
    for key, value in list(replaced.items()):
        if isinstance(value, str):
            image = state[key.split("__")[1]].copy()
            image[3, 4, 1] = {"nan": np.nan, "inf": np.inf, "negative": -1.0}[value]
            replaced[key] = image
    not_ours(variant(good, **replaced), words)


@pytest.mark.parametrize(
    "text, words",
    [
        ("[1, 2]", "settings are a JSON list, not an object"),
        ('"beta"', "a JSON str, not an object"),
        ('{"beta": ', "settings are not valid JSON"),
        ("[" * 200_000, "settings are not valid JSON"),
        ("{" + " " * checkpoints.MAX_SETTINGS_CHARACTERS + "}", "characters, over 1000000"),
    ],
    ids=["list", "string", "broken", "deeply nested", "too long"],
)
def test_settings_that_are_not_a_json_object(good, text, words):
    not_ours(variant(good, settings=np.array(text)), words)


def test_settings_or_photo_of_another_type(good):
    not_ours(variant(good, settings=np.float32(1)), "settings.npy is not a text")
    not_ours(variant(good, photo=np.array("holiday.jpg")), "photo is not a sha256")


# --- zip bombs --------------------------------------------------------------------------------

BOMB_SHAPE = (12500, 13333, 3)  # float32: 2.0 GB of zeros that deflate to about 2 MB


def _deflated_zeros(header: bytes, total: int, chunk: int = 1 << 24) -> list[bytes]:
    """Raw deflate segments of `header` and then zeros, `total` bytes in all. Each segment
    ends in a full flush, so that it stands alone and one compressed chunk of zeros can be
    repeated instead of compressing 2 GB."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = compressor.compress(header + bytes(chunk - len(header)))
    segments = [first + compressor.flush(zlib.Z_FULL_FLUSH)]
    zeros = compressor.compress(bytes(chunk)) + compressor.flush(zlib.Z_FULL_FLUSH)
    whole, rest = divmod(total - chunk, chunk)
    segments += [zeros] * whole
    segments.append(compressor.compress(bytes(rest)) + compressor.flush())
    return segments


def _zeros_crc(header: bytes, total: int, chunk: int = 1 << 24) -> int:
    crc = zlib.crc32(header + bytes(chunk - len(header)))
    block, (whole, rest) = bytes(chunk), divmod(total - chunk, chunk)
    for _ in range(whole):
        crc = zlib.crc32(block, crc)
    return zlib.crc32(bytes(rest), crc)


def _write_raw_zip(path, entries) -> str:
    """A zip whose members are (name, method, crc, declared size, data segments), as a
    hostile writer makes it: the declared size need not be the size."""
    central = []
    with open(path, "wb") as file:
        for name, method, crc, size, segments in entries:
            offset, encoded = file.tell(), name.encode()
            compressed = sum(len(segment) for segment in segments)
            fields = (method, 0, 0x21, crc, compressed, size, len(encoded), 0)
            file.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, *fields) + encoded)
            for segment in segments:
                file.write(segment)
            central.append(
                struct.pack(
                    "<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, *fields, 0, 0, 0, 0, offset
                )
                + encoded
            )
        start = file.tell()
        file.write(b"".join(central))
        count, length = len(central), file.tell() - start
        file.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, count, count, length, start, 0))
    return str(path)


@pytest.fixture(scope="module")
def bombs(tmp_path_factory) -> dict[str, str]:
    """Two checkpoints whose state/image.npy inflates to 2 GB of zeros from ~2 MB: one
    declaring the size and a header to match (a real bomb for numpy.load), one declaring
    the small size a real image has (what a reader that trusts the declared size sees)."""
    folder = tmp_path_factory.mktemp("bombs")
    others = [(name, data) for name, data in members(save(folder / "good.npz")).items()]
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f4", "fortran_order": False, "shape": BOMB_SHAPE}
    )
    header = header.getvalue()
    total = len(header) + int(np.prod(BOMB_SHAPE)) * 4
    segments, crc = _deflated_zeros(header, total), _zeros_crc(header, total)
    small = npy(synthetic_state("adam")["image"])
    paths = {}
    for kind, declared in (("honest", total), ("lying", len(small))):
        entries = [
            (name, zipfile.ZIP_STORED, zlib.crc32(data), len(data), [data])
            for name, data in others
            if name != "state/image.npy"
        ]
        entries.append(("state/image.npy", zipfile.ZIP_DEFLATED, crc, declared, segments))
        paths[kind] = _write_raw_zip(folder / f"{kind}-checkpoint.npz", entries)
    assert 1.5e6 < os.path.getsize(paths["honest"]) < 3e6
    with zipfile.ZipFile(paths["honest"]) as archive:
        assert archive.getinfo("state/image.npy").file_size == total > 1.9e9
    return paths


@pytest.mark.parametrize("kind", ["honest", "lying"])
def test_a_zip_bomb_is_refused_without_inflating_it(bombs, kind):
    """Refused from its headers: the memory it takes stays far below the 2 GB it claims
    (what inflating it would take, however fast the machine)."""
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kB on Linux
    tracemalloc.start()
    try:
        message = not_ours(bombs[kind], "state/image.npy")
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before
    assert peak < 20e6, peak
    assert grown < 100_000, grown
    if kind == "honest":
        assert "inflates to 1999950128 bytes, more than the 5248" in message
    else:
        assert "CRC" in message


# --- any damage at all ------------------------------------------------------------------------


def test_any_flipped_byte_is_refused_or_changes_nothing(good):
    """Each of many one-byte corruptions is either a clean error or (in bytes the loader
    does not depend on, such as a timestamp) a load of exactly the saved checkpoint."""
    expected = checkpoints.load_checkpoint(good, stage_sizes=STAGES, optimizer="adam")
    with open(good, "rb") as file:
        data = file.read()
    rng = np.random.default_rng(5)
    # Random bytes anywhere, and every byte of the directory at the end.
    positions = {*rng.integers(0, len(data), 150).tolist(), *range(len(data) - 250, len(data))}
    path = os.path.join(os.path.dirname(good), "flipped-checkpoint.npz")
    outcomes = {"refused": 0, "same": 0}
    for position in sorted(positions):
        for flip in (0x01, int(rng.integers(2, 256))):
            damaged = bytearray(data)
            damaged[position] ^= flip
            with open(path, "wb") as file:
                file.write(damaged)
            try:
                loaded = checkpoints.load_checkpoint(path, stage_sizes=STAGES, optimizer="adam")
            except UserError as error:
                assert str(error).startswith(f"{path}: ") and "\n" not in str(error)
                outcomes["refused"] += 1
                continue
            assert loaded[:2] == expected[:2] and loaded[3:] == expected[3:], position
            for name, value in expected.optimizer_state.items():
                np.testing.assert_array_equal(loaded.optimizer_state[name], value)
            outcomes["same"] += 1
    assert outcomes["refused"] > len(positions)  # most damage is caught, not ignored


# --- check_resumable --------------------------------------------------------------------------


@pytest.fixture
def made(tmp_path):
    """(settings, checkpoint path, loaded checkpoint) of a run on tmp_path/content.png."""
    write_image(tmp_path / "content.png", photo(30, 40, seed=2))
    settings = settings_for(tmp_path)
    path = save(
        tmp_path / "out" / "result-checkpoint.npz",
        settings=resume_rules.settings_record(settings),
        photo_digest=checkpoints.photo_digest(settings.content_image),
    )
    return settings, path, checkpoints.load_checkpoint(path, stage_sizes=STAGES, optimizer="adam")


def test_the_same_photo_by_another_path_resumes(tmp_path, made):
    settings, path, loaded = made
    moved = tmp_path / "elsewhere" / "renamed.png"
    moved.parent.mkdir()
    shutil.copyfile(settings.content_image, moved)
    os.remove(settings.content_image)
    now = settings_for(tmp_path, content_image=str(moved))
    checkpoints.check_resumable(loaded, now, path, checkpoints.photo_digest(str(moved)))


def test_a_replaced_photo_is_refused(tmp_path, made):
    settings, path, loaded = made
    write_image(settings.content_image, photo(30, 40, seed=3))  # same path, other bytes
    before = digest(path)
    with pytest.raises(UserError) as caught:
        checkpoints.check_resumable(
            loaded, settings, path, checkpoints.photo_digest(settings.content_image)
        )
    message = str(caught.value)
    assert message.startswith(f"{path}: the photo {settings.content_image} is not the one")
    assert "replaced or edited" in message and "--resume" in message and "\n" not in message
    assert digest(path) == before
    with pytest.raises(UserError, match=r"the photo folder/b\.png is not"):
        checkpoints.check_resumable(loaded, settings, path, "cd" * 32, photo_path="folder/b.png")


def test_an_old_checkpoint_resumes_any_photo(tmp_path, made):
    settings, path, loaded = made
    checkpoints.check_resumable(loaded._replace(photo=""), settings, path, "cd" * 32)


def test_a_checkpoint_from_before_style_loss_resumes_as_gram_only(tmp_path, made):
    settings, path, loaded = made
    older = {name: value for name, value in loaded.settings.items() if name != "style_loss"}
    digest_now = checkpoints.photo_digest(settings.content_image)
    checkpoints.check_resumable(loaded._replace(settings=older), settings, path, digest_now)
    w2 = settings_for(tmp_path, style_loss="w2")
    with pytest.raises(UserError, match=r"cannot resume with changed STYLE_LOSS \(--style_loss\)"):
        checkpoints.check_resumable(loaded._replace(settings=older), w2, path, digest_now)


def test_a_moved_output_folder_resumes(tmp_path, made):
    settings, path, loaded = made
    now = settings_for(tmp_path, output_image=str(tmp_path / "moved" / "result"))
    digest_now = checkpoints.photo_digest(settings.content_image)
    checkpoints.check_resumable(loaded, now, path, digest_now)
    assert resume_rules.RULES["output_image"].photo == resume_rules.FREE


def test_a_changed_beta_is_refused_by_name(tmp_path, made):
    settings, path, loaded = made
    now = settings_for(tmp_path, beta=settings.beta * 2)
    with pytest.raises(UserError) as caught:
        checkpoints.check_resumable(
            loaded, now, path, checkpoints.photo_digest(settings.content_image)
        )
    message = str(caught.value)
    assert message.startswith(f"{path}: cannot resume with changed BETA (--beta)")
    assert "ALPHA" not in message and "\n" not in message


def test_photo_digest_reads_the_bytes_and_names_an_unreadable_photo(tmp_path):
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(3 * (1 << 20) + 5))  # more than one chunk
    assert checkpoints.photo_digest(str(big)) == hashlib.sha256(big.read_bytes()).hexdigest()
    with pytest.raises(UserError, match=r"nothing\.png: cannot read the photo"):
        checkpoints.photo_digest(str(tmp_path / "nothing.png"))
