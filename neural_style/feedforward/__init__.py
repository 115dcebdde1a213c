"""The feed-forward style network: train once per style, then stylise in one pass.

Johnson et al., "Perceptual Losses for Real-Time Style Transfer" (2016), with instance
normalisation. The loss network is the same VGG-19 (neural_style.vgg) and the same loss
functions (neural_style.losses) as the optimiser's.

    config.py      NetworkSettings: training and applying the network, and their checks
    model.py       the Keras transformer network; save and load as .keras
    data.py        the tf.data pipeline over a folder of photos, skipping bad files
    training.py    train_network(): the pieces below, in the order data flows
      run_inputs.py, run_files.py, run_folder.py   what a run reads, the names of its
                   files, its output folder (lock, earlier runs, resume checks)
      loss.py, trainer.py   the perceptual loss; the strategy and the distributed step
      session.py, saving.py, writers.py   the loop; checkpoints and the network; logs
    stylize.py     stylize_input(): an image, a folder or a video
      checks.py, outputs.py, fit.py   paths checked before TensorFlow; result names
                   (never an input); what fits in memory
      stylizer.py, video.py   the compiled network; a video in, a video out

`python train_network.py` trains and `python stylize.py` applies (see README.md).
Nothing is imported here, so that importing the package stays cheap.
"""
