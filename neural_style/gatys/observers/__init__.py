"""The observers of a Gatys run: what it shows and leaves behind. The run loop announces
events (events.py); these decide what to write or say. Only the composition root
(gatys/run.py) chooses and imports them.

    files.py     snapshots, final images, checkpoints, settings records, losses logs
    plots.py     the loss plots
    terminal.py  progress lines, notes, what was saved
    video.py     a video's frames, its losses log and report, the clip itself
"""
