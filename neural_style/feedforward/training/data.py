"""Training photos as a tf.data pipeline: shuffled, decoded, cropped, batched, prefetched.

    paths = images.list_images("images/photos", "NETWORK_DATASET")   # .jpg/.jpeg/.png below
    skipped = SkippedFiles(len(paths))
    batches = photo_batches(paths, image_size=256, batch_size=4, seed=0, skipped=skipped)
    # batches yields float32 [4, 256, 256, 3] RGB 0..255, forever (it repeats)

Each photo is decoded by media.images.load_image (any mode PIL reads, EXIF
orientation applied), a random square of its shorter side is cut out and resized to
`image_size`, all on parallel tf.data workers. A file that cannot be decoded, or whose
shorter side is below `min_side(image_size)` (upscaling it would teach the network blur),
is skipped and recorded in `skipped`, never a crash. When every file has been skipped the
dataset ends (its iterator is exhausted) rather than searching forever; nothing is raised
on tf.data's threads, whose errors TensorFlow would print as tracebacks.
"""

from __future__ import annotations

import threading

import numpy as np
import tensorflow as tf

from neural_style.errors import UserError
from neural_style.media import images


def min_side(image_size: int) -> int:
    """Photos whose shorter side is below this are skipped: half the crop size, at least
    images.MIN_SIDE."""
    return max(images.MIN_SIDE, image_size // 2)


class SkippedFiles:
    """The files the pipeline skipped and why; safe to update from tf.data's threads.

    A file is counted once however many epochs skip it.
    """

    def __init__(self, total: int):
        self.total = total  # files the pipeline was given
        self._reasons: dict[str, str] = {}
        self._lock = threading.Lock()

    def add(self, path: str, reason: str) -> None:
        with self._lock:
            self._reasons.setdefault(path, reason)

    @property
    def count(self) -> int:
        with self._lock:
            return len(self._reasons)

    @property
    def every_file_skipped(self) -> bool:
        """Whether no file is left to train on."""
        return self.count >= self.total

    def reasons(self) -> dict[str, str]:
        """{path: why it was skipped}, in the order they were met."""
        with self._lock:
            return dict(self._reasons)

    def summary(self) -> str:
        """ "2 of 10 files skipped (first: a.jpg: not an image file PIL can read)", or ""."""
        reasons = self.reasons()
        if not reasons:
            return ""
        path, reason = next(iter(reasons.items()))
        return f"{len(reasons)} of {self.total} files skipped (first: {path}: {reason})"


def random_square_crop(image: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """A random square of the image's shorter side, resized to `size` x `size`.

    [H, W, 3] float32 0..255 -> [size, size, 3] float32 0..255.
    """
    height, width = image.shape[:2]
    side = min(height, width)
    top = int(rng.integers(0, height - side + 1))
    left = int(rng.integers(0, width - side + 1))
    return images.resize_image(image[top : top + side, left : left + side], (size, size))


def load_training_photo(
    path: str, image_size: int, seed: int, skipped: SkippedFiles
) -> tuple[np.ndarray, bool]:
    """(the cropped photo, True), or (zeros, False) after recording why it was skipped."""
    try:
        image = images.load_image(path, "NETWORK_DATASET")
    except UserError as error:
        # load_image says "<path>: <problem>; <fix>"; the problem is what the record needs.
        reason = str(error).removeprefix(f"{path}: ").split("; ")[0]
        return _skip(path, reason, image_size, skipped)
    height, width = image.shape[:2]
    smallest = min_side(image_size)
    if min(height, width) < smallest:
        reason = f"image is {width}x{height} pixels, below {smallest} on its shorter side"
        return _skip(path, reason, image_size, skipped)
    return random_square_crop(image, image_size, np.random.default_rng(seed)), True


def _skip(path: str, reason: str, image_size: int, skipped: SkippedFiles):
    skipped.add(path, reason)
    return np.zeros((image_size, image_size, 3), np.float32), False


def _files_left(image: tf.Tensor, ok: tf.Tensor, exhausted: tf.Tensor) -> tf.Tensor:
    return tf.logical_not(exhausted)


def _is_usable(image: tf.Tensor, ok: tf.Tensor, exhausted: tf.Tensor) -> tf.Tensor:
    return ok


def _image_only(image: tf.Tensor, ok: tf.Tensor, exhausted: tf.Tensor) -> tf.Tensor:
    return image


def photo_batches(
    paths: list[str],
    *,
    image_size: int,
    batch_size: int,
    seed: int,
    skipped: SkippedFiles,
) -> tf.data.Dataset:
    """An endless dataset of [batch_size, image_size, image_size, 3] float32 batches.

    The order is reshuffled every pass over `paths`, and each photo gets a fresh random
    crop, all reproducible from `seed`. For several input pipelines (multi-worker
    training), give each its own share of `paths` and its own `skipped`. Once every file
    of `paths` has been skipped the dataset ends.
    """

    def load(path: tf.Tensor, random_bits: tf.Tensor):
        def load_numpy(path_bytes, bits):
            image, ok = load_training_photo(
                path_bytes.numpy().decode("utf-8"), image_size, int(bits.numpy()), skipped
            )
            return image, ok, skipped.every_file_skipped

        image, ok, exhausted = tf.py_function(
            load_numpy, [path, random_bits], [tf.float32, tf.bool, tf.bool]
        )
        image.set_shape([image_size, image_size, 3])
        ok.set_shape([])
        exhausted.set_shape([])
        return image, ok, exhausted

    order = tf.data.Dataset.from_tensor_slices(paths)
    order = order.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True).repeat()
    crops = tf.data.Dataset.random(seed=seed)  # one crop seed per photo drawn
    dataset = tf.data.Dataset.zip(order, crops)
    dataset = dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE)
    # Ending the dataset, rather than raising, keeps tf.data's threads from printing a
    # traceback per photo still in flight; the caller finds out why from `skipped`.
    dataset = dataset.take_while(_files_left).filter(_is_usable).map(_image_only)
    dataset = dataset.batch(batch_size, drop_remainder=True)
    return dataset.prefetch(tf.data.AUTOTUNE)
