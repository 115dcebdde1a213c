"""Apply a trained feed-forward style network to an image, a folder of images or a video;
settings in settings.py (NETWORK_MODEL, STYLIZE_*), flags override.

    python stylize.py                                       # STYLIZE_INPUT with NETWORK_MODEL
    python stylize.py --stylize_input=me.jpg
    python stylize.py --stylize_input=holiday/ --stylize_batch_size=8
    python stylize.py --stylize_input=clip.mp4 --stylize_preserve_colors
    python stylize.py --stylize_input=holiday/ --cluster=ray   # a folder on a Ray cluster
    python stylize.py --stylize_input=clip.mp4 --cluster=ray   # a clip's frames, too
    python stylize.py --helpfull                            # every flag and its comment

Outputs go to the STYLIZE_OUTPUT folder under each input's name, and never replace an
input: into the input's own folder they are written as `<name>-stylized.<ext>`, and such
files, like STYLIZE_OUTPUT inside an input folder, are never read as inputs (see
neural_style/feedforward/stylizing/outputs.py). An input too large for the free memory is shrunk to
fit, with a note, unless STYLIZE_MAX_SIZE asks for a size, which is then refused in one line.

With --cluster=ray (CLUSTER), a folder's or a video's batches run on the Ray cluster
RAY_ADDRESS names (or a local one), one network loaded per worker; this process still
reads every input and writes every output, a video's frames in order with its audio
(docs/cluster.md). A single image runs here, with a note.

A bad setting prints one `error: ...` line and exits with status 2; a wrong STYLIZE_INPUT,
STYLIZE_OUTPUT or NETWORK_MODEL path does so before TensorFlow starts. Ctrl-C, SIGTERM and
SIGHUP stop the run once the batch in hand is written, keeping every finished output and
no partial video, and exit with 130, 143 and 129.
"""

# First of all, so that a stop signal even while the imports below load is one line.
from neural_style import stopping

stopping.install_early()

from absl import flags  # noqa: E402

from neural_style.feedforward.stylizing.checks import check_paths  # noqa: E402
from neural_style.settings import cli_flags  # noqa: E402
from neural_style.settings.network import NetworkSettings  # noqa: E402


def stylize_from_flags(flag_values: flags.FlagValues) -> None:
    """Stylises STYLIZE_INPUT as the parsed flags say (see the module doc)."""
    run_settings = NetworkSettings.from_flag_values(flag_values)
    # Before TensorFlow, so that a mistyped path is said at once, not after its start-up.
    check_paths(run_settings)
    # Imported only now, so that flag and path errors and --help never wait for TensorFlow.
    from neural_style.runtime import start_tensorflow

    print(start_tensorflow().description, flush=True)
    from neural_style.feedforward.stylizing.run import stylize_input

    stylize_input(run_settings)


if __name__ == "__main__":
    cli_flags.run_command(cli_flags.settings_beside(__file__), stylize_from_flags)
