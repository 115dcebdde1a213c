"""neural-style: paint a photo in the style of an artwork (Gatys et al.) with TensorFlow 2.

The folders are layers, listed in the order data flows; a module imports only its own
layer and those above it in this list (tests/test_structure.py holds the rule):

    errors, names, files, stopping, runtime, progress   the ground floor, used by all
    settings/    the typed settings of each command, read from settings.py and flags
    media/       images, colour, video files, optical flow, plots (no TensorFlow)
    vgg/         VGG-19: the .mat reader, the network, the weights file, tile geometry
    losses/      the losses of Gatys et al., the style losses (gram, w2, sw), masks, targets
    optimize/    Adam and L-BFGS over a batch of images, the tiled loss, the memory plan
    gatys/       a Gatys run: plan -> pipeline -> the run loop -> observers (run.py)
    feedforward/ the trained network of Johnson et al.: training/ and stylizing/
    web/         the live view in the browser

`neural_style.gatys.run.stylize(settings)` is what `python train.py` does.
"""

__version__ = "0.1.0"
