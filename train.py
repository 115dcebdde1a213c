"""Stylise CONTENT_IMAGE in the style of STYLE_IMAGE; settings in settings.py, flags override.

Every setting in settings.py is also a flag of the same name in lower case:

    python train.py
    python train.py --content_image=me.jpg --style_image=starry.jpg --beta=1000
    python train.py --style_loss_layers=relu1_1:0.5,relu2_1:0.5 --train_steps=200
    python train.py --helpfull      # every flag, its default and its comment

A bad setting prints one `error: ...` line and exits with status 2; Ctrl-C saves the
current image, prints `interrupted` and exits with status 130.
"""

import sys

from absl import app

import settings
from neural_style import cli_flags
from neural_style.errors import UserError

EXIT_INTERRUPTED = 130  # the shell's convention for a process stopped by SIGINT


def main(argv: list[str]) -> int:
    del argv  # cli_flags.parse_flags has already rejected stray arguments
    try:
        run_settings = cli_flags.settings_from_flags()
        # Imported only now, so that flag errors and --help never wait for TensorFlow.
        from neural_style.run import stylize

        stylize(run_settings)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return UserError.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0


if __name__ == "__main__":
    try:
        cli_flags.define_flags(settings)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(UserError.exit_code)
    app.run(main, flags_parser=cli_flags.parse_flags)
