"""Optimising the image's pixels: what the run loop steps.

    protocols.py       ImageLoss and Optimizer, the interfaces the loop knows
    loss_functions.py  the loss and gradient of whole images (a batch, one, a video frame)
    tiling.py          the same loss and gradient computed in tiles, exactly
    adam.py            Adam over a batch, each image as if alone, with divergence recovery
    lbfgs.py           scipy's L-BFGS-B on one image
    memory.py          the memory a step needs, and the tiles that make it fit

Each module's own docstring says more.
"""
