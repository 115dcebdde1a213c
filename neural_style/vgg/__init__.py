"""VGG-19, the network whose features every loss compares.

    mat.py           MatConvNet's .mat (both published versions), read and checked
    weights_cache.py the sixteen conv layers cached beside the .mat, read in 0.03 s
    weights_file.py  which file a run reads: the real one, or the synthetic stand-in
    synthetic.py     the stand-in: the real file's structure, deterministic random weights
    network.py       VGG19: constant conv and pool layers in TensorFlow, in a precision
    tile_layout.py   where the tiles of a large image lie (the network's receptive field)

Each module's own docstring says more.
"""
