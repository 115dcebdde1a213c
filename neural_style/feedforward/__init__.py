"""The feed-forward style network: train once per style, then stylise in one pass.

Johnson et al., "Perceptual Losses for Real-Time Style Transfer" (2016), with instance
normalisation. The loss network is the same VGG-19 (neural_style.vgg) and the same losses
(neural_style.losses) as the optimiser's; it never imports the Gatys run (gatys/).

    model.py       the Keras transformer network; save and load as .keras
    training/      train_network(): python train_network.py
    stylizing/     stylize_input(): python stylize.py

Nothing is imported here, so that importing the package stays cheap.
"""
