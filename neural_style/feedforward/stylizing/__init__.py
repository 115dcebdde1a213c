"""Applying a trained network (python stylize.py) to an image, a folder or a video:

    checks.py, outputs.py, fit.py   paths checked before TensorFlow; where results go
                   (never over an input); what fits in memory
    stylizer.py    the compiled network; video.py: a video in, a video out
    run.py         stylize_input(): the pieces above, tied together

Each module's own docstring says more.
"""
