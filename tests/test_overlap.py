"""Decoding and saving beside the network (neural_style/feedforward/stylizing/overlap.py):
order, errors in their place, threads that end, and saves that are never lost."""

import threading

import numpy as np
import pytest

from neural_style.feedforward.stylizing.overlap import BackgroundSaver, read_ahead
from neural_style.media import images


def test_read_ahead_keeps_the_order_and_makes_items_in_another_thread():
    makers = []

    def items():
        for number in range(7):
            makers.append(threading.current_thread())
            yield number * number

    assert list(read_ahead(items())) == [number * number for number in range(7)]
    assert threading.current_thread() not in makers


def test_read_ahead_makes_only_depth_items_ahead():
    made = []

    def items():
        for number in range(10):
            made.append(number)
            yield number

    reading = read_ahead(items(), depth=2)
    assert next(reading) == 0
    # The maker fills its two slots and then waits with a third item made: 0, 1, 2, 3.
    while len(made) < 4:
        threading.Event().wait(0.01)  # until the maker has filled its slots
    assert made == [0, 1, 2, 3]
    assert next(reading) == 1
    reading.close()


def test_an_error_making_an_item_is_raised_in_its_place():
    def items():
        yield "first"
        raise ValueError("the second could not be read")

    reading = read_ahead(items())
    assert next(reading) == "first"
    with pytest.raises(ValueError, match="the second could not be read"):
        next(reading)


def test_closing_ends_the_thread():
    def endless():
        number = 0
        while True:
            number += 1
            yield number

    before = threading.active_count()
    reading = read_ahead(endless())
    assert [next(reading) for _ in range(3)] == [1, 2, 3]
    reading.close()
    assert threading.active_count() == before


def test_the_saver_writes_every_image_in_order(tmp_path):
    pictures = [np.full((32, 33, 3), 30.0 * number, np.float32) for number in range(6)]
    paths = [str(tmp_path / f"{number}.png") for number in range(6)]
    written: list[str] = []
    with BackgroundSaver(lambda path, image: images.save_image(path, image), written) as saver:
        for path, picture in zip(paths, pictures, strict=True):
            saver.save(path, picture)
    assert written == paths
    for path, picture in zip(paths, pictures, strict=True):
        assert np.array_equal(images.load_image(path, "x"), picture)


def test_a_block_that_raises_still_keeps_every_save_in_hand(tmp_path):
    written: list[str] = []
    paths = [str(tmp_path / f"{number}.png") for number in range(3)]
    with pytest.raises(KeyboardInterrupt), BackgroundSaver(images.save_image, written) as saver:
        for path in paths:
            saver.save(path, np.zeros((32, 32, 3), np.float32))
        raise KeyboardInterrupt
    assert written == paths
    assert all((tmp_path / f"{number}.png").is_file() for number in range(3))


def test_a_failed_save_is_raised_and_the_others_are_kept(tmp_path):
    def save(path, image):
        if path.endswith("bad.png"):
            raise OSError(f"{path}: no room left")
        images.save_image(path, image)

    written: list[str] = []
    good = str(tmp_path / "good.png")
    with pytest.raises(OSError, match="no room left"), BackgroundSaver(save, written) as saver:
        saver.save(good, np.zeros((32, 32, 3), np.float32))
        saver.save(str(tmp_path / "bad.png"), np.zeros((32, 32, 3), np.float32))
    assert written == [good]
