"""The temporal loss of a video frame (Ruder, Dosovitskiy and Brox, "Artistic style
transfer for videos", 2016): the mask-weighted mean squared difference between the image
and the previous result moved to this frame by the optical flow, over the H*W*3 values.

Shapes: images and the warped result [1, H, W, 3] float32 in 0..255; the mask
[1, H, W, 1], 1 where the flow is reliable and 0 where the frame shows something new.
"""

from __future__ import annotations

import tensorflow as tf


def temporal_loss_and_gradient(
    images: tf.Tensor, warped: tf.Tensor, mask: tf.Tensor, weight: float
) -> tuple[tf.Tensor, tf.Tensor]:
    """The temporal loss of `images`, and the gradient of `weight` times it."""
    count = float(warped.shape.num_elements())
    difference = images - warped
    loss = tf.reduce_sum(mask * tf.square(difference)) / count
    return loss, (2.0 * weight / count) * mask * difference
