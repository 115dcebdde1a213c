"""The losses and what they compare against.

    gatys.py          content, style and total-variation losses, their weighted sum
    style/            the style losses behind one seam (STYLE_LOSS): gram, w2, sw
    weighted.py       statistics of features weighted over their positions
    masks.py          STYLE_MASKS, STYLE_IMAGE_MASKS, CONTENT_MASK loaded and brought to
                      each layer's grid; guided.py: the losses by region
    temporal.py       a video frame's temporal loss
    targets.py        the content features and style statistics a run pulls towards;
                      tiled_targets.py: the same computed in tiles

Each module's own docstring says more.
"""
