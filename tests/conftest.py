"""Shared pytest fixtures (data only), and the repository's root on sys.path for `bench`."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # bench/ is not installed

from gr_numpy.data import ensure_mnist  # noqa: E402


@pytest.fixture(scope="session")
def mnist_dir():
    """The folder holding the four verified MNIST files ($GR_NUMPY_DATA, else the user cache).

    Fetches them once if they are missing. If that fails, every test using this fixture fails
    with the DataError that says why: it never skips, so missing data cannot pass unnoticed.
    """
    return ensure_mnist()
