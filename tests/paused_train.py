"""`python train.py FLAGS`, held at one moment of its life until the test says go, so that
a test can send a signal at that exact moment instead of after a guessed delay.

    python tests/paused_train.py import:tensorflow FLAGS     # while TensorFlow is imported
    python tests/paused_train.py first-step FLAGS            # before the first step

At the moment it prints `paused at <POINT>` on stdout and waits for a line on stdin
(closing stdin releases it too); then train.py goes on as it would have. The points:

- `import:<module>`: as `import <module>` begins, wherever it is imported from (the
  signal handlers may or may not be in place yet, as in a real start-up);
- `first-step`: inside the run loop, once the first stage's targets, loss and optimiser
  are made, before it looks for a stop and takes its first step (the moment a stop has
  nothing new to save).

Run by tests/test_never_lose_work.py.
"""

import importlib.abc
import os
import runpy
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)


def pause(point: str) -> None:
    print(f"paused at {point}", flush=True)
    sys.stdin.readline()


class PauseOnImport(importlib.abc.MetaPathFinder):
    """Pauses once, as the import of `module` begins, then lets the import go on."""

    def __init__(self, module: str):
        self.module = module

    def find_spec(self, name, path, target=None):  # importlib's MetaPathFinder protocol
        if name == self.module:
            sys.meta_path.remove(self)
            pause(f"import:{name}")
        return None


def pause_before_the_first_step() -> None:
    """The run loop's last call before it looks for a stop and takes the first step (the
    loop imports no TensorFlow, so start-up is as train.py's own)."""
    from neural_style.gatys import runner

    real = runner._GroupRun._say_phase
    paused = []

    def say_phase(self, *arguments):
        if not paused:
            paused.append(True)
            pause("first-step")
        return real(self, *arguments)

    runner._GroupRun._say_phase = say_phase


if __name__ == "__main__":
    point, arguments = sys.argv[1], sys.argv[2:]
    if point.startswith("import:"):
        sys.meta_path.insert(0, PauseOnImport(point.removeprefix("import:")))
    elif point == "first-step":
        pause_before_the_first_step()
    else:
        sys.exit(f"paused_train.py: unknown point {point!r}")
    script = os.path.join(REPO_ROOT, "train.py")
    sys.argv = [script, *arguments]
    runpy.run_path(script, run_name="__main__")
