"""A Gatys run, as `python train.py` does it, in the order data flows:

    plan.py, video_plan.py   settings -> the plan: photos, stages, groups, resume points
    outputs.py, checkpoint.py, npz.py   the names of every output; checkpoints read safely
    pipeline.py   the networks, targets, losses and optimisers a stage needs
    runner.py     the one run loop; video_runner.py steps a clip through it frame by frame
    events.py     what the loop announces, and the Observer interface
    observers/    what is written and said (files, plots, the terminal, a video)
    run.py        the composition root: stylize(settings) ties the above together

Each module's own docstring says more.
"""
