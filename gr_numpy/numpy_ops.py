"""The plain NumPy reference for every compute kernel: one readable line per operation.

This is the twin each Numba kernel in `kernels.py` is tested against, and the `numpy` backend
of `ops.py`. It is written to be obviously right, not fast, and it checks nothing beyond what
NumPy itself checks; the input checks live in the public wrappers of `kernels.py`.

Glossary: N rows (the batch); K and M feature sizes. The letters are generic here; in a layer
y = x @ W + b, x is (N, K), W is (K, M), y and dy are (N, M).
"""

import numpy as np


def matmul(a, b):
    """(N, K) @ (K, M) -> (N, M): the forward product x @ W."""
    return a @ b


def matmul_nt(a, b):
    """(N, M) @ (K, M).T -> (N, K): the input gradient dy @ W.T."""
    return a @ b.T


def matmul_tn(a, b):
    """(N, K).T @ (N, M) -> (K, M): the weight gradient x.T @ dy."""
    return a.T @ b


def add_bias(y, b):
    """(N, M) + (M,) -> (N, M): a new array; b is broadcast down the rows."""
    return y + b


def col_sum(dy):
    """(N, M) -> (M,): the bias gradient dy.sum(0)."""
    return dy.sum(axis=0)


def relu(x):
    """(N, M) -> (N, M): a new array max(x, 0); a NaN passes through so it shows in the loss."""
    return np.maximum(x, 0)


def relu_backward(dout, x):
    """(N, M), (N, M) -> (N, M): a new array, dout where the forward input x was > 0, else 0.

    `np.where` rather than `dout * (x > 0)`: a unit that was off passes exactly 0, even if its
    upstream gradient is inf or NaN.
    """
    return np.where(x > 0, dout, 0)
