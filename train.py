"""Stylise CONTENT_IMAGE in the style of STYLE_IMAGE; settings in settings.py, flags override.

Every setting in settings.py is also a flag of the same name in lower case:

    python train.py
    python train.py --content_image=me.jpg --style_image=starry.jpg --beta=1000
    python train.py --style_loss_layers=relu1_1:0.5,relu2_1:0.5 --train_steps=200
    python train.py --helpfull      # every flag, its default and its comment

A bad setting prints one `error: ...` line and exits with status 2; Ctrl-C saves the
current image, prints `interrupted` and exits with status 130.

    python train.py --web           # and watch it at the URL it prints (the live view)
"""

# First of all, so that a stop signal even while the imports below load is one line.
from neural_style import stopping

stopping.install_early()

from absl import flags  # noqa: E402

from neural_style import web  # noqa: E402
from neural_style.settings import cli_flags  # noqa: E402
from neural_style.settings.gatys import Settings  # noqa: E402


def stylize_from_flags(flag_values: flags.FlagValues) -> None:
    run_settings = Settings.from_flag_values(flag_values)
    # With --web the live view binds its port first: a busy port is one line.
    with web.opted_in(flag_values, "photo", run_settings) as live:
        # Imported only now, so that flag errors and --help never wait for TensorFlow.
        from neural_style.gatys.run import stylize

        stylize(run_settings, extra_observers=live.observers, controls=live.controls)


if __name__ == "__main__":
    cli_flags.run_command(cli_flags.settings_beside(__file__), stylize_from_flags)
