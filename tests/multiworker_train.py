"""`python train_network.py FLAGS`, as one worker of a cluster (TF_CONFIG), that also
logs every dataset file its input pipeline opens: one path a line, appended to the file
named by the environment variable READ_LOG.

Run by tests/test_feedforward_multiworker.py, which checks that the workers' shares of
the photos are disjoint and cover the dataset:

    READ_LOG=/tmp/reads-0.txt TF_CONFIG='{...}' python tests/multiworker_train.py FLAGS
"""

import os
import runpy
import sys
import threading

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

from neural_style.feedforward.training import data  # noqa: E402

_load_training_photo = data.load_training_photo
_log_lock = threading.Lock()  # tf.data opens photos on several threads


def _logged_load(path: str, *args, **kwargs):
    with _log_lock, open(os.environ["READ_LOG"], "a", encoding="utf-8") as log:
        log.write(path + "\n")
    return _load_training_photo(path, *args, **kwargs)


if __name__ == "__main__":
    # photo_batches looks the function up in its module at every photo, so this is used.
    data.load_training_photo = _logged_load
    script = os.path.join(REPO_ROOT, "train_network.py")
    sys.argv = [script, *sys.argv[1:]]
    runpy.run_path(script, run_name="__main__")
