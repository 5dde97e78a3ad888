"""What the command-line tools share: argparse that fails in one line, with exit code 2.

Used by train.py, demo.py and the `python -m gr_numpy.*` tools. Nothing here imports NumPy, so a
mistyped flag is reported before any heavy import.
"""

import argparse
import sys


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line and exit code 2 (not the whole usage text)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def fail(prog, message):
    """Print `prog: error: message` as one line on stderr and exit with code 2."""
    print(f"{prog}: error: {message}", file=sys.stderr)
    sys.exit(2)
