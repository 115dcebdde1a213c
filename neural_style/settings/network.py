"""The typed settings of the feed-forward network: training it (train_network.py) and
applying it (stylize.py), with the checks that turn a bad value into one clear line.

Built like neural_style.config.Settings: from a settings module, from flags, or directly
and passed through `validate_network`. No TensorFlow here.
"""

import math
import types
import typing
from dataclasses import dataclass
from typing import Any

from neural_style.errors import UserError
from neural_style.settings.gatys import (
    POOLING_CHOICES,
    PRECISION_CHOICES,
    check_cluster,
    check_layers,
    check_loss_weights,
    check_minimums,
    check_weight_scales,
)
from neural_style.settings.values import (
    LayerWeights,
    checked_types,
    describe,
    flag_field_values,
    module_values,
)


@dataclass(frozen=True)
class NetworkSettings:
    """Training a feed-forward style network (train_network.py) and applying it
    (stylize.py). The fields mirror settings.py's NETWORK_* and STYLIZE_* constants in lower
    case; `vgg_model_path` and `pooling` are the optimiser's settings, shared."""

    network_dataset: str  # folder of training photos, searched recursively
    network_style_image: str  # path of the artwork the network learns
    network_style_size: int  # pixels, the style image's longer side for its Grams; 0 = own
    network_output_dir: str  # folder for the network, checkpoints, samples and logs
    network_image_size: int  # pixels, side of the square training crops
    network_batch_size: int  # images per step, over all replicas together
    network_steps: int  # training steps (used when network_epochs is 0)
    network_epochs: int  # passes over the dataset; 0 = use network_steps
    network_learning_rate: float  # Adam's step size
    network_width: int  # channels of the network's first conv (32 in the paper)
    network_content_layers: LayerWeights  # (layer, unitless weight) pairs
    network_style_layers: LayerWeights  # (layer, unitless weight) pairs
    network_content_weight: float  # unitless weight of the content loss
    network_style_weight: float  # unitless weight of the style loss
    network_tv_weight: float  # unitless weight of the total-variation loss; 0 = off
    network_checkpoint_every: int  # steps between checkpoints; 0 = only at the end
    network_sample_every: int  # steps between samples; 0 = only at the end
    network_sample_image: str  # path of the photo stylised for the samples
    network_print_every: int  # steps between progress lines
    network_resume: bool  # continue from the output folder's latest checkpoint
    network_temporal_weight: float  # weight of the temporal loss, on pixels in 0..255; 0 = off
    network_overwrite: bool  # let a new run replace an earlier run's files in the folder
    network_seed: int  # seed for the initial weights and the data order
    network_model: str  # path of the trained .keras network that stylize.py applies
    network_precision: str  # the network's arithmetic: "auto", "float32", "mixed_bfloat16"...
    stylize_input: str  # an image, a folder of images, or a video
    stylize_output: str  # folder the stylised files are written to
    stylize_batch_size: int  # images or frames per forward pass
    stylize_max_size: int  # pixels, longer side inputs are shrunk to; 0 = own size
    stylize_preserve_colors: bool  # keep the input's colours, restyle only its luminance
    stylize_video_blend: float  # 0..1, share of the flow-warped previous output; 0 = off
    vgg_model_path: str  # path of the MatConvNet VGG-19 .mat file (the loss network)
    pooling: str  # "max" or "avg", in the loss network
    cluster: str  # "" = in this process; "ray" = on a Ray cluster (a folder; Ray Train)

    @classmethod
    def from_module(cls, module: types.ModuleType, **overrides: Any) -> "NetworkSettings":
        """Like `Settings.from_module`: each field's UPPER_CASE constant from `module`,
        then `overrides` (lower-case field names), validated."""
        return validate_network(cls(**module_values(cls, module, overrides)))

    @classmethod
    def from_flag_values(cls, flag_values: Any) -> "NetworkSettings":
        """From parsed absl flags, as Settings.from_flag_values."""
        return validate_network(cls(**flag_field_values(cls, flag_values)))


def validate_network(settings: NetworkSettings) -> NetworkSettings:
    """Checks every field of a NetworkSettings; returns a copy with floats and tuples.

    Raises:
      UserError: one line naming the first bad setting, as `NAME (--name)`, and the fix.
    """
    checked = checked_types(settings)
    for name, hint in typing.get_type_hints(NetworkSettings).items():
        if hint is str and name != "cluster" and not getattr(checked, name).strip():
            raise UserError(f"{describe(name)} must be a file or folder path, got an empty string")
    minimums = {
        "network_style_size": (0, " (0 = the style image's own size)"),
        "network_image_size": (32, " (VGG-19 pools five times)"),
        "network_batch_size": (1, ""),
        "network_steps": (1, ""),
        "network_epochs": (0, " (0 = use NETWORK_STEPS)"),
        "network_width": (1, ""),
        "network_checkpoint_every": (0, " (0 = only at the end)"),
        "network_sample_every": (0, " (0 = only at the end)"),
        "network_print_every": (1, ""),
        "network_seed": (0, ""),
        "stylize_batch_size": (1, ""),
        "stylize_max_size": (0, " (0 = each input's own size)"),
    }
    check_minimums(checked, minimums)
    blend = checked.stylize_video_blend
    if not 0.0 <= blend <= 1.0:  # NaN fails both comparisons
        raise UserError(
            f"{describe('stylize_video_blend')} must be between 0 (off) and 1 (all the "
            f"previous frame where the flow is reliable), got {blend}"
        )
    rate = checked.network_learning_rate
    if not (math.isfinite(rate) and rate > 0):
        raise UserError(
            f"{describe('network_learning_rate')} must be a finite number > 0, got {rate}"
        )
    check_layers("network_content_layers", checked.network_content_layers)
    check_layers("network_style_layers", checked.network_style_layers)
    _check_loss_weights(checked)
    if checked.network_precision not in PRECISION_CHOICES:
        raise UserError(
            f"{describe('network_precision')} must be one of {', '.join(PRECISION_CHOICES)}; "
            f"got {checked.network_precision!r}"
        )
    if checked.pooling not in POOLING_CHOICES:
        raise UserError(f"{describe('pooling')} must be one of max, avg; got {checked.pooling!r}")
    check_cluster(checked.cluster)
    if not checked.network_model.endswith(".keras"):
        raise UserError(
            f"{describe('network_model')} must be a .keras file, got {checked.network_model!r}"
        )
    return checked


def _check_loss_weights(settings: NetworkSettings) -> None:
    """Each weight finite and >= 0, and of a size that the float32 loss can carry."""
    check_loss_weights(
        settings,
        (
            "network_content_weight",
            "network_style_weight",
            "network_tv_weight",
            "network_temporal_weight",
        ),
    )
    check_weight_scales(
        settings,
        (
            ("network_content_weight", "network_content_layers"),
            ("network_style_weight", "network_style_layers"),
            ("network_tv_weight", ""),
        ),
        ("network_temporal_weight",),
    )
