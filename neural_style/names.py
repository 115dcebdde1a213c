"""The names of VGG-19's layers, as MatConvNet's .mat file spells them.

Kept apart from vgg.py so that settings can be checked without importing TensorFlow.
"""

# (block, number of convs) for the five blocks of VGG-19's convolutional part.
BLOCKS = ((1, 2), (2, 2), (3, 4), (4, 4), (5, 4))


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
