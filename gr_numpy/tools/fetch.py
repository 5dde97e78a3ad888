"""`python -m gr_numpy.data`: fetch MNIST if needed, verify it, print the per-class counts.

The command of data.py, kept here with the other tools so that data.py imports nothing from
this folder.
"""

import numpy as np

from ..data import SPLITS, DataError, ensure_mnist, load_mnist
from .cli import OneLineParser, add_data_dir, fail


def main(argv=None):
    parser = OneLineParser(
        prog="python -m gr_numpy.data",
        description="Fetch MNIST if needed, verify it, and print the per-class counts.")
    add_data_dir(parser)
    args = parser.parse_args(argv)
    try:
        directory = ensure_mnist(args.data_dir)
        counts = {split: np.bincount(load_mnist(split, directory, fetch=False)[1], minlength=10)
                  for split in SPLITS}
    except DataError as e:
        fail("python -m gr_numpy.data", str(e))
    print(f"MNIST is in {directory} (4 files, SHA-256 verified)")
    print("digit " + "".join(f"{d:>6}" for d in range(10)) + "   total")
    for split, c in counts.items():
        print(f"{split:<6}" + "".join(f"{n:>6}" for n in c) + f"{c.sum():>8}")
    return 0
