"""Shared pytest fixtures (data only)."""

import pytest

from gr_numpy.data import ensure_mnist


@pytest.fixture(scope="session")
def mnist_dir():
    """The folder holding the four verified MNIST files ($GR_NUMPY_DATA, else the user cache).

    Fetches them once if they are missing. If that fails, every test using this fixture fails
    with the DataError that says why: it never skips, so missing data cannot pass unnoticed.
    """
    return ensure_mnist()
