"""The feed-forward style network: train once per style, then stylise in one pass.

Johnson et al., "Perceptual Losses for Real-Time Style Transfer" (2016), with instance
normalisation. The loss network is the same VGG-19 (neural_style.vgg) and the same loss
functions (neural_style.losses) as the optimiser's.

    model.py     the Keras transformer network; save and load as .keras
    data.py      the tf.data pipeline over a folder of photos, skipping bad files
    training.py  the distributed training loop, checkpoints, samples and progress
    stylize.py   apply a trained network to an image, a folder or a video

`python train_network.py` trains and `python stylize.py` applies (see docs/feedforward.md).
Nothing is imported here, so that importing the package stays cheap.
"""
