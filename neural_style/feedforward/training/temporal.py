"""Training the network for steady video without a video: synthetic motion (issue 12's (a)).

Each training crop is moved by a small random affine warp (a rotation about its centre, a
scale and a shift of a few pixels), whose flow is known exactly. A network whose output
does not flicker commutes with that motion: its output on the moved crop equals its output
on the crop, moved. The temporal loss is the squared difference of the two,

    temporal = mean over reliable pixels and channels of (net(warp(x)) - warp(net(x)))^2

in the network's 0..255 units: the same units as the total-variation loss (a mean squared
difference of neighbouring pixels), so NETWORK_TEMPORAL_WEIGHT compares with
NETWORK_TV_WEIGHT directly; divided by 255^2 it is the warping error (Lai et al. 2018,
media.flow.warping_error) of the synthetic motion. A pixel is reliable when the
point it is sampled from lies inside the crop: what moves in from outside has no match.

Everything is TensorFlow and runs inside the distributed replica step. The warp is
tf.raw_ops.ImageProjectiveTransformV3 (bilinear), whose gradient reaches both the images
and, through them, the network.

Shapes and conventions (those of media/flow.py):
    images      [B, H, W, C] float32
    transforms  [B, 8] float32, ImageProjectiveTransformV3's: the output pixel (x, y) is
                sampled from the input at ((a0 x + a1 y + a2) / k, (b0 x + b1 y + b2) / k),
                k = c0 x + c1 y + 1 (here c0 = c1 = 0: affine)
    flow        [B, H, W, 2] (dx, dy) in pixels: warp(image)(x) = image(x + flow(x)), as
                media.flow.warp samples it
    mask        [B, H, W, 1] float32 in {0, 1}
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import tensorflow as tf

if TYPE_CHECKING:
    import keras

# The synthetic motion: at most this rotation, scale change and shift per training crop.
# A few pixels, like consecutive frames of a video at the sizes the network is used at.
MAX_ROTATION_DEGREES = 1.0
MAX_SCALE_CHANGE = 0.02
MAX_SHIFT_PIXELS = 4.0


def random_transforms(count: int, height: int, width: int, seed: tf.Tensor) -> tf.Tensor:
    """[count, 8] random small affine transforms about the image's centre, reproducible
    from `seed` (an int32 or int64 [2] tensor, as tf.random.stateless_uniform takes)."""
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=4)
    angle = tf.random.stateless_uniform([count], seeds[0], -1.0, 1.0)
    angle *= MAX_ROTATION_DEGREES * math.pi / 180.0
    scale = 1.0 + MAX_SCALE_CHANGE * tf.random.stateless_uniform([count], seeds[1], -1.0, 1.0)
    shift_x = MAX_SHIFT_PIXELS * tf.random.stateless_uniform([count], seeds[2], -1.0, 1.0)
    shift_y = MAX_SHIFT_PIXELS * tf.random.stateless_uniform([count], seeds[3], -1.0, 1.0)
    return affine_transforms(angle, scale, shift_x, shift_y, height=height, width=width)


def affine_transforms(
    angle: tf.Tensor,
    scale: tf.Tensor,
    shift_x: tf.Tensor,
    shift_y: tf.Tensor,
    *,
    height: int,
    width: int,
) -> tf.Tensor:
    """[B, 8] transforms that sample each output pixel x from the input at
    centre + scale * R(angle) (x - centre) + shift: rotation in radians, shifts in pixels,
    each argument [B]. A pure shift (angle 0, scale 1) has the flow (shift_x, shift_y)."""
    centre_x = (tf.cast(width, tf.float32) - 1.0) / 2.0
    centre_y = (tf.cast(height, tf.float32) - 1.0) / 2.0
    cos, sin = scale * tf.cos(angle), scale * tf.sin(angle)
    offset_x = centre_x + shift_x - cos * centre_x + sin * centre_y
    offset_y = centre_y + shift_y - sin * centre_x - cos * centre_y
    zeros = tf.zeros_like(angle)
    return tf.stack([cos, -sin, offset_x, sin, cos, offset_y, zeros, zeros], axis=1)


def warp_images(images: tf.Tensor, transforms: tf.Tensor) -> tf.Tensor:
    """`images` [B, H, W, C] moved by `transforms` [B, 8], bilinear; the nearest edge pixel
    stands in outside the image, so the network never sees an artificial black border."""
    height, width = tf.shape(images)[1], tf.shape(images)[2]
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images,
        transforms=transforms,
        output_shape=tf.stack([height, width]),
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="NEAREST",
    )


def transform_flow(transforms: tf.Tensor, height: int, width: int) -> tf.Tensor:
    """The exact flow [B, H, W, 2] of `transforms`: warp_images(image)(x) samples image at
    x + flow(x), as media.flow.warp(image, flow) does."""
    grid_y, grid_x = tf.meshgrid(
        tf.range(height, dtype=tf.float32), tf.range(width, dtype=tf.float32), indexing="ij"
    )
    a = transforms[:, :, tf.newaxis, tf.newaxis]  # [B, 8, 1, 1], broadcast over the grid
    source_x = a[:, 0] * grid_x + a[:, 1] * grid_y + a[:, 2]
    source_y = a[:, 3] * grid_x + a[:, 4] * grid_y + a[:, 5]
    return tf.stack([source_x - grid_x, source_y - grid_y], axis=-1)


def inside_mask(transforms: tf.Tensor, height: int, width: int) -> tf.Tensor:
    """[B, H, W, 1]: 1 where the pixel is sampled from inside the image (all four bilinear
    neighbours real pixels), 0 where it moved in from outside and has no match."""
    flow = transform_flow(transforms, height, width)
    grid_y, grid_x = tf.meshgrid(
        tf.range(height, dtype=tf.float32), tf.range(width, dtype=tf.float32), indexing="ij"
    )
    source_x, source_y = grid_x + flow[..., 0], grid_y + flow[..., 1]
    inside = (
        (source_x >= 0.0)
        & (source_x <= tf.cast(width - 1, tf.float32))
        & (source_y >= 0.0)
        & (source_y <= tf.cast(height - 1, tf.float32))
    )
    return tf.cast(inside, tf.float32)[..., tf.newaxis]


def temporal_loss_per_image(
    stylised_of_moved: tf.Tensor, moved_stylised: tf.Tensor, mask: tf.Tensor
) -> tf.Tensor:
    """[B]: each image's mean, over its reliable pixels and their channels, of the squared
    difference between the network's output on the moved crop and its moved output, in
    0..255 units. An image without a reliable pixel counts 0."""
    squared = mask * tf.square(stylised_of_moved - moved_stylised)
    channels = tf.cast(tf.shape(stylised_of_moved)[-1], tf.float32)
    count = tf.reduce_sum(mask, axis=[1, 2, 3]) * channels
    return tf.math.divide_no_nan(tf.reduce_sum(squared, axis=[1, 2, 3]), count)


def synthetic_motion_loss(
    model: keras.Model, photos: tf.Tensor, transforms: tf.Tensor
) -> tuple[tf.Tensor, tf.Tensor]:
    """The network's output on `photos` [B, S, S, 3] and the temporal loss of each photo
    [B], from one forward pass over the photos and their moved copies together (instance
    normalisation keeps the images of a batch independent)."""
    size_h, size_w = photos.shape[1], photos.shape[2]
    if size_h is None or size_w is None:
        size_h, size_w = tf.shape(photos)[1], tf.shape(photos)[2]
    count = tf.shape(photos)[0]
    moved = warp_images(photos, transforms)
    both = model(tf.concat([photos, moved], axis=0), training=True)
    stylised, stylised_of_moved = both[:count], both[count:]
    moved_stylised = warp_images(stylised, transforms)
    mask = inside_mask(transforms, size_h, size_w)
    return stylised, temporal_loss_per_image(stylised_of_moved, moved_stylised, mask)
