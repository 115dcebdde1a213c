"""neural-style: paint a photo in the style of an artwork (Gatys et al.) with TensorFlow 2.

Data flows one way through the package:
settings (config) -> images -> network (vgg) -> losses -> optimiser (optimize)
-> snapshots (reporting).
`neural_style.run.stylize(settings)` ties them together; `train.py` is its command line.
"""

__version__ = "0.1.0"
