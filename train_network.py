"""Train a feed-forward style network on a folder of photos; settings in settings.py
(NETWORK_*), flags override.

Every setting in settings.py is also a flag of the same name in lower case:

    python train_network.py
    python train_network.py --network_dataset=coco/train2014 --network_style_image=wave.jpg
    python train_network.py --network_resume          # continue from the latest checkpoint
    python train_network.py --network_overwrite       # replace the earlier run in the folder
    python train_network.py --helpfull                # every flag, its default and comment
    python train_network.py --cluster=ray             # workers started by Ray Train

The network, its settings, checkpoints, samples and losses go to NETWORK_OUTPUT_DIR; apply
the network with `python stylize.py`. It trains on every visible GPU (MirroredStrategy),
or on a cluster when TF_CONFIG describes one (see docs/network.md); a malformed TF_CONFIG
is one line before TensorFlow starts. While a worker waits for the cluster's other tasks,
Ctrl-C and SIGTERM end it at once (nothing is written yet). With --cluster=ray (CLUSTER),
Ray Train starts those workers on the Ray cluster RAY_ADDRESS names (or a local one), one
per GPU or per node, and sets their TF_CONFIG; the nodes must see the same files at the
same paths (docs/cluster.md).

A bad setting prints one `error: ...` line and exits with status 2. Ctrl-C, SIGTERM and
SIGHUP (`kill`, `docker stop`, a closed terminal) end the step in progress, save the
network and a checkpoint, print `interrupted at step N: ...` and exit with status 130, 143
or 129. A run never replaces an earlier run in NETWORK_OUTPUT_DIR unless --network_resume
or --network_overwrite says so, and two runs never share that folder.

    python train_network.py --web   # and watch it at the URL it prints (the live view)
"""

# First of all, so that a stop signal even while the imports below load is one line.
from neural_style import stopping

stopping.install_early()

from absl import flags, logging  # noqa: E402

from neural_style import web  # noqa: E402
from neural_style.feedforward.training.cluster import read_cluster  # noqa: E402
from neural_style.settings import cli_flags  # noqa: E402
from neural_style.settings.network import NetworkSettings  # noqa: E402


def train_from_flags(flag_values: flags.FlagValues) -> None:
    run_settings = NetworkSettings.from_flag_values(flag_values)
    read_cluster()  # a mistake in TF_CONFIG is one line before TensorFlow starts
    # With --web the live view binds its port before TensorFlow starts: a busy port is one line.
    with web.opted_in(flag_values, "training", run_settings) as live:
        # Imported only now, so that flag errors and --help never wait for TensorFlow.
        from neural_style.runtime import import_tensorflow

        import_tensorflow()  # with its start-up noise hidden
        logging.set_verbosity(logging.WARNING)  # tf.distribute's INFO lines bury the progress
        from neural_style.feedforward.training.run import train_network

        train_network(run_settings, observers=live.observers, controls=live.controls)


if __name__ == "__main__":
    cli_flags.run_command(cli_flags.settings_beside(__file__), train_from_flags)
