"""What the command-line tools share: one-line errors, the --data-dir flag, the run-folder names.

Used by train.py, demo.py, `python -m bench` and the `python -m gr_numpy.*` tools. Nothing here
imports NumPy, so a mistyped flag is reported before any heavy import.
"""

import argparse
import os
import sys

RUNS = "runs"                                         # every run folder lives under this one
DEFAULT_RUN = os.path.join(RUNS, "default")           # where `python train.py` writes
CHECKPOINT_NAME = "checkpoint.npz"                    # the model, inside a run folder
METRICS_NAME = "metrics.json"                         # the test scores, inside a run folder
DEFAULT_CHECKPOINT = os.path.join(DEFAULT_RUN, CHECKPOINT_NAME)


def checkpoint_in(run_dir):
    """The checkpoint's path inside a run folder."""
    return os.path.join(run_dir, CHECKPOINT_NAME)


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line and exit code 2 (not the whole usage text)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def fail(prog, message):
    """Print `prog: error: message` as one line on stderr and exit with code 2."""
    print(f"{prog}: error: {message}", file=sys.stderr)
    sys.exit(2)


def add_data_dir(parser, fetch=True):
    """The --data-dir flag, said the same way by every tool; fetch: whether a missing set is fetched."""
    then = "fetched if missing" if fetch else "never downloads"
    parser.add_argument("--data-dir", help="MNIST folder (default: $GR_NUMPY_DATA, else "
                                           f"~/.cache/gr_numpy/mnist; {then})")
