"""The settings of each command: typed, frozen, checked in one place, before anything heavy
loads (no TensorFlow here).

    values.py     the machinery all three share: value types, settings.py and flag
                  reading, type checks, the words of a setting in a message
    gatys.py      Settings: a Gatys run (train.py)
    network.py    NetworkSettings: training and applying the network (train_network.py,
                  stylize.py)
    web.py        WebSettings: the live view (WEB_*)
    cli_flags.py  absl flags generated from settings.py, and the life of a command (one
                  error line, exit statuses, stop signals)
"""
