"""Names the whole package shares: VGG-19's layers (as MatConvNet's .mat file spells
them), the real network's conv widths, and the named parts of every loss.

Kept apart from vgg.py and losses.py so that settings, plans, logs and plots can use them
without importing TensorFlow.
"""

# (block, number of convs) for the five blocks of VGG-19's convolutional part.
BLOCKS = ((1, 2), (2, 2), (3, 4), (4, 4), (5, 4))
# Output channels of the convs in each block of the real VGG-19.
REAL_WIDTHS = (64, 128, 256, 512, 512)
# The parts every objective returns (losses.objective_per_image), in the order that
# progress lines, loss logs and plots show them.
LOSS_NAMES = ("content", "style", "tv", "total")
# With a temporal loss too: a video's frames (0 where a frame has none, as the first) and a
# network trained against flicker (NETWORK_TEMPORAL_WEIGHT).
TEMPORAL_LOSS_NAMES = ("content", "style", "tv", "temporal", "total")


def _layer_sequence() -> tuple[str, ...]:
    names = []
    for block, convs in BLOCKS:
        for index in range(1, convs + 1):
            names += [f"conv{block}_{index}", f"relu{block}_{index}"]
        names.append(f"pool{block}")
    return tuple(names)


# Every layer of the feature extractor, in the order the network computes them.
VGG19_LAYERS = _layer_sequence()

# The sixteen convolutions whose weights the .mat file must hold.
CONV_LAYERS = tuple(name for name in VGG19_LAYERS if name.startswith("conv"))
