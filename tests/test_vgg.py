"""The .mat loader (both file versions, any field order, bad files) and the TF network."""

from __future__ import annotations

import os
import socket

import h5py
import numpy as np
import pytest
import tensorflow as tf

from neural_style.errors import UserError
from neural_style.names import CONV_LAYERS, VGG19_LAYERS
from neural_style.vgg.mat import read_vgg19_mat
from neural_style.vgg.network import VGG19
from neural_style.vgg.synthetic import NEW_FIELDS, OLD_FIELDS, REAL_MEAN_PIXEL, calibrated_convs
from tests.support import TINY_WIDTHS, photo, save_mat, set_conv_weights, tiny_variables


def numpy_vgg(convs: dict, mean_pixel: np.ndarray, image: np.ndarray, pooling: str) -> dict:
    """An independent forward pass: explicit windows and einsum, no TensorFlow."""
    outputs = {}
    x = image.astype(np.float64) - mean_pixel
    for name in VGG19_LAYERS:
        if name.startswith("conv"):
            kernel, bias = (np.asarray(part, np.float64) for part in convs[name])
            padded = np.pad(x, ((1, 1), (1, 1), (0, 0)))
            windows = np.lib.stride_tricks.sliding_window_view(padded, (3, 3), axis=(0, 1))
            # windows: [H, W, in, 3 (dy), 3 (dx)]; kernel: [dy, dx, in, out]
            x = np.einsum("hwiyx,yxio->hwo", windows, kernel) + bias.reshape(-1)
        elif name.startswith("relu"):
            x = np.maximum(x, 0)
        else:
            h, w, c = x.shape
            blocks = x[: h // 2 * 2, : w // 2 * 2].reshape(h // 2, 2, w // 2, 2, c)
            x = blocks.max(axis=(1, 3)) if pooling == "max" else blocks.mean(axis=(1, 3))
        outputs[name] = x
    return outputs


# --- reading both versions ------------------------------------------------------------


@pytest.mark.parametrize("version", ["old", "new"])
def test_both_file_versions_load_with_their_weights_and_mean(tmp_path, version):
    path = save_mat(tmp_path / f"{version}.mat", tiny_variables(version, seed=3))
    weights = read_vgg19_mat(path)
    expected = calibrated_convs(TINY_WIDTHS, seed=3)
    assert list(weights.convs) == list(CONV_LAYERS)
    for name in CONV_LAYERS:
        np.testing.assert_array_equal(weights.convs[name].kernel, expected[name][0])
        np.testing.assert_array_equal(weights.convs[name].bias, expected[name][1])
        assert weights.convs[name].kernel.dtype == np.float32
    # The old file's 224x224 mean image varies spatially; only its spatial average is right.
    np.testing.assert_allclose(weights.mean_pixel, REAL_MEAN_PIXEL, rtol=1e-5)
    assert weights.mean_pixel.shape == (3,)


def test_files_have_the_published_structure(tmp_path):
    import scipy.io

    old = scipy.io.loadmat(save_mat(tmp_path / "old.mat", tiny_variables("old")))
    new = scipy.io.loadmat(save_mat(tmp_path / "new.mat", tiny_variables("new")))
    assert {"layers", "classes", "normalization"} <= set(old)
    assert "meta" not in old
    assert {"layers", "meta"} <= set(new)
    assert old["layers"].shape == new["layers"].shape == (1, 43)
    assert old["layers"][0, 0].dtype.names == OLD_FIELDS["conv"]
    assert new["layers"][0, 0].dtype.names == NEW_FIELDS["conv"]
    assert old["normalization"][0, 0]["averageImage"].shape == (224, 224, 3)
    assert new["meta"][0, 0]["normalization"][0, 0]["averageImage"].shape == (1, 1, 3)
    kernel, bias = new["layers"][0, 0]["weights"][0, 0][0]
    assert kernel.dtype == np.float32 and kernel.shape == (3, 3, 3, TINY_WIDTHS[0])
    assert bias.shape == (TINY_WIDTHS[0], 1)
    assert old["layers"][0, 0]["weights"][0, 0][0, 1].shape == (1, TINY_WIDTHS[0])


def _reordered(fields: dict, drop: str | None = None) -> dict:
    return {
        kind: tuple(name for name in reversed(order) if name != drop)
        for kind, order in fields.items()
    }


@pytest.mark.parametrize(
    "version, field_orders",
    [
        ("old", _reordered(OLD_FIELDS)),
        ("new", _reordered(NEW_FIELDS)),
        ("new", _reordered(NEW_FIELDS, drop="dilate")),
    ],
    ids=["old-reversed", "new-reversed", "new-without-dilate"],
)
def test_struct_fields_are_read_by_name(tmp_path, version, field_orders):
    plain = read_vgg19_mat(save_mat(tmp_path / "plain.mat", tiny_variables(version)))
    variables = tiny_variables(version, field_orders=field_orders)
    shuffled = read_vgg19_mat(save_mat(tmp_path / "shuffled.mat", variables))
    for name in CONV_LAYERS:
        np.testing.assert_array_equal(shuffled.convs[name].kernel, plain.convs[name].kernel)
    np.testing.assert_array_equal(shuffled.mean_pixel, plain.mean_pixel)


# --- the network -------------------------------------------------------------------------


def test_kernel_orientation_is_height_width_in_out(tmp_path):
    """An asymmetric filter picking the pixel one row above must move a dot down one row."""
    variables = tiny_variables("new")
    kernel = np.zeros((3, 3, 3, TINY_WIDTHS[0]), np.float32)
    kernel[0, 1, 0, 0] = 1.0  # [dy=0 (row above), dx=1 (same column), red in, channel 0 out]
    set_conv_weights(variables, "conv1_1", kernel, np.zeros((TINY_WIDTHS[0], 1), np.float32))
    net = VGG19.from_mat(save_mat(tmp_path / "dot.mat", variables))
    image = np.tile(net.mean_pixel, (1, 32, 32, 1)).astype(np.float32)
    image[0, 10, 20, 0] += 100.0  # a red dot at row 10, column 20
    response = net(image, ["conv1_1"])["conv1_1"].numpy()[0, :, :, 0]
    assert np.unravel_index(np.argmax(response), response.shape) == (11, 20)
    assert response[11, 20] == pytest.approx(100.0)
    # A spatially transposed kernel would have moved it one column right instead.
    assert response[10, 21] == 0.0


@pytest.mark.parametrize("pooling", ["max", "avg"])
def test_activations_match_an_independent_numpy_forward_pass(tmp_path, pooling):
    path = save_mat(tmp_path / "net.mat", tiny_variables("old", seed=5))
    net = VGG19.from_mat(path, pooling=pooling)
    weights = read_vgg19_mat(path)
    image = photo(36, 44, seed=2)
    layers = ["conv1_1", "relu2_2", "pool3", "relu4_2", "conv5_1", "relu5_4"]
    got = net(image[None], layers)
    convs = {name: (conv.kernel, conv.bias) for name, conv in weights.convs.items()}
    expected = numpy_vgg(convs, weights.mean_pixel.astype(np.float64), image, pooling)
    assert set(got) == set(layers)
    for name in layers:
        want = expected[name]
        assert got[name].shape == (1, *want.shape)
        scale = np.abs(want).max()
        np.testing.assert_allclose(got[name].numpy()[0], want, atol=1e-5 * scale, rtol=1e-4)


def test_network_computes_only_up_to_the_deepest_requested_layer(tiny_net, monkeypatch):
    calls = []
    real_conv2d = tf.nn.conv2d
    monkeypatch.setattr(tf.nn, "conv2d", lambda *a, **k: calls.append(1) or real_conv2d(*a, **k))
    tiny_net(photo(32, 32)[None], ["relu2_1"])
    assert len(calls) == 3  # conv1_1, conv1_2, conv2_1


def test_mean_pixel_is_subtracted_by_the_network(tiny_net):
    mean_image = np.tile(tiny_net.mean_pixel, (1, 32, 32, 1)).astype(np.float32)
    conv = tiny_net(mean_image, ["conv1_1"])["conv1_1"].numpy()
    bias = tiny_net._biases["conv1_1"].numpy()
    np.testing.assert_allclose(conv[0, 5, 5], bias, atol=1e-4)
    assert isinstance(tiny_net.mean_pixel, np.ndarray) and tiny_net.mean_pixel.shape == (3,)


def test_unknown_layer_is_rejected(tiny_net):
    with pytest.raises(ValueError, match="relu9_9"):
        tiny_net(photo(32, 32)[None], ["relu9_9"])


# --- bad files ---------------------------------------------------------------------------


def _write(path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


def _truncated(tmp_path, tiny_mat):
    with open(tiny_mat, "rb") as file:
        data = file.read()
    (tmp_path / "cut.mat").write_bytes(data[: len(data) // 2])
    return str(tmp_path / "cut.mat")


def _hdf5(tmp_path, _):
    path = tmp_path / "v73.mat"
    with h5py.File(path, "w") as file:
        file["layers"] = np.zeros(3)
    return str(path)


def _variables_without(names):
    def make(tmp_path, _):
        variables = tiny_variables("new")
        keep = [
            layer for layer in variables["layers"].flat if str(layer["name"][0, 0]) not in names
        ]
        cell = np.empty((1, len(keep)), dtype=object)
        cell[0, :] = keep
        variables["layers"] = cell
        return save_mat(tmp_path / "vgg16.mat", variables)

    return make


def _wrong_channels(tmp_path, _):
    variables = tiny_variables("new")
    kernel = np.ones((3, 3, 5, TINY_WIDTHS[1]), np.float32)  # conv2_1 expects 4 inputs
    set_conv_weights(variables, "conv2_1", kernel, np.ones((TINY_WIDTHS[1], 1), np.float32))
    return save_mat(tmp_path / "channels.mat", variables)


def _five_by_five(tmp_path, _):
    variables = tiny_variables("new")
    kernel = np.ones((5, 5, 3, TINY_WIDTHS[0]), np.float32)
    set_conv_weights(variables, "conv1_1", kernel, np.ones((TINY_WIDTHS[0], 1), np.float32))
    return save_mat(tmp_path / "five.mat", variables)


def _not_a_network(tmp_path, _):
    return save_mat(tmp_path / "other.mat", {"x": np.ones((2, 2))})


def _no_mean(tmp_path, _):
    variables = tiny_variables("new")
    del variables["meta"]
    return save_mat(tmp_path / "nomean.mat", variables)


BAD_FILES = {
    "missing": (lambda tmp_path, _: str(tmp_path / "nope.mat"), "no such file"),
    "empty": (lambda tmp_path, _: _write(tmp_path / "e.mat", b""), "empty"),
    "text": (
        lambda tmp_path, _: _write(tmp_path / "t.mat", b"hello " * 50),
        "not a readable MATLAB",
    ),
    "truncated": (_truncated, "not a readable MATLAB"),
    "hdf5-v7.3": (_hdf5, "not a readable MATLAB"),
    "vgg16": (_variables_without({"conv3_4", "conv4_4", "conv5_4"}), "missing VGG-19 layers"),
    "channels": (_wrong_channels, "conv2_1"),
    "5x5": (_five_by_five, "conv1_1"),
    "other variables": (_not_a_network, "not a MatConvNet network"),
    "no mean": (_no_mean, "mean pixel"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_weights_files_give_one_clear_line(tmp_path, tiny_mat, case):
    make, words = BAD_FILES[case]
    path = make(tmp_path, tiny_mat)
    with pytest.raises(UserError) as caught:
        read_vgg19_mat(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    assert words in message
    assert "get the real file" in message
    assert "\n" not in message


# --- files that are there but cannot be read: no new download would help ------------------


def _fifo(tmp_path):
    path = tmp_path / "pipe.mat"
    os.mkfifo(path)
    return str(path)


def _socket(tmp_path):
    path = tmp_path / "socket.mat"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.close()  # the socket file stays behind, as a stale one does
    return str(path)


UNREADABLE = {
    "directory": (lambda tmp_path: str(tmp_path), "is a directory, not a .mat file"),
    "named pipe": (_fifo, "is a named pipe, not a .mat file"),
    "socket": (_socket, "is a socket, not a .mat file"),
}


@pytest.mark.parametrize("case", list(UNREADABLE))
def test_a_path_that_is_no_file_names_the_setting_not_a_download(tmp_path, case):
    make, words = UNREADABLE[case]
    path = make(tmp_path)
    with pytest.raises(UserError) as caught:
        read_vgg19_mat(path)  # a pipe would block here for ever if it were opened
    message = str(caught.value)
    assert message.startswith(f"{path}: {words}; ")
    assert "set VGG_MODEL_PATH in settings.py or pass --vgg_model_path=PATH" in message
    assert "get the real file" not in message and "curl" not in message
    assert "\n" not in message


def test_a_folder_on_the_way_that_is_a_file_is_not_a_download_problem(tmp_path, tiny_mat):
    blocker = tmp_path / "weights"
    blocker.write_bytes(b"a file, not the folder")
    path = str(blocker / "imagenet-vgg-verydeep-19.mat")
    with pytest.raises(UserError) as caught:
        read_vgg19_mat(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: cannot read it (Not a directory); ")
    assert "get the real file" not in message and "\n" not in message
    assert blocker.read_bytes() == b"a file, not the folder"
