"""The checks of a stylise run that need no TensorFlow: STYLIZE_INPUT, STYLIZE_OUTPUT and
NETWORK_MODEL as they stand on disk.

stylize.py runs `check_paths` before it starts TensorFlow, so that a wrong path is one line
at once rather than after seconds of start-up; the library runs the same checks again, as
it is also called without the entry. Nothing here, nor anything it imports, may import
TensorFlow.
"""

from __future__ import annotations

import os

from neural_style.errors import UserError, setting_fix
from neural_style.settings.network import NetworkSettings

# How to get a usable NETWORK_MODEL, the end of every message about it.
NETWORK_FIX = "train one with python train_network.py, or set NETWORK_MODEL (--network_model)"


def check_paths(settings: NetworkSettings) -> None:
    """Every check of this module, in the order the library meets them.

    Raises:
      UserError: as `check_input_and_output` and `check_network_file`.
    """
    check_input_and_output(settings)
    check_network_file(settings.network_model)


def check_input_and_output(settings: NetworkSettings) -> None:
    """STYLIZE_INPUT exists, and STYLIZE_OUTPUT is a folder or not there yet.

    Raises:
      UserError: either is not so.
    """
    source, output = settings.stylize_input, settings.stylize_output
    if not os.path.exists(source):
        raise UserError(
            f"{source}: no such file or folder; {setting_fix('STYLIZE_INPUT')} "
            "(an image, a folder of images or a video)"
        )
    if os.path.exists(output) and not os.path.isdir(output):
        raise UserError(f"{output}: is a file, not a folder; {setting_fix('STYLIZE_OUTPUT')}")


def check_network_file(path: str) -> None:
    """NETWORK_MODEL is a file (its contents are for model.load_network to judge). Worded as
    load_network words the same problems, so a message does not depend on who found it.

    Raises:
      UserError: it is missing, a folder, or not a regular file (a pipe, which would
        block the read for ever, or a device).
    """
    if os.path.isdir(path):
        raise UserError(f"{path}: is a folder, not a .keras file; {NETWORK_FIX}")
    if not os.path.exists(path):
        raise UserError(f"{path}: no such network file; {NETWORK_FIX}")
    if not os.path.isfile(path):
        raise UserError(f"{path}: not a regular file (a pipe or a device); {NETWORK_FIX}")
