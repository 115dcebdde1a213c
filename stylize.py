"""Apply a trained feed-forward style network to an image, a folder of images or a video;
settings in settings.py (NETWORK_MODEL, STYLIZE_*), flags override.

    python stylize.py                                       # STYLIZE_INPUT with NETWORK_MODEL
    python stylize.py --stylize_input=me.jpg
    python stylize.py --stylize_input=holiday/ --stylize_batch_size=8
    python stylize.py --stylize_input=clip.mp4 --stylize_preserve_colors
    python stylize.py --helpfull                            # every flag and its comment

Outputs go to the STYLIZE_OUTPUT folder under each input's name. A bad setting prints one
`error: ...` line and exits with status 2; Ctrl-C prints `interrupted` and exits with 130.
"""

from absl import flags

import settings
from neural_style import cli_flags
from neural_style.config import NetworkSettings


def stylize_from_flags(flag_values: flags.FlagValues) -> None:
    run_settings = NetworkSettings.from_flag_values(flag_values)
    # Imported only now, so that flag errors and --help never wait for TensorFlow.
    from neural_style.run import start_tensorflow

    print(start_tensorflow()[0], flush=True)
    from neural_style.feedforward.stylize import stylize_input

    stylize_input(run_settings)


if __name__ == "__main__":
    cli_flags.run_command(settings, stylize_from_flags)
