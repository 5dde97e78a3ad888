"""Numba kernels for the products, bias and ReLU of a dense layer, behind checked wrappers.

Each operation is a private jitted body (`_matmul`, ...) that trusts its inputs, and a public
wrapper (`matmul`, ...) that checks them and raises a one-line ValueError. `numpy_ops.py`
holds the NumPy twin of each one; `tests/test_kernels.py` checks every kernel against its twin.
These kernels aim to be clear and correct on a CPU, not to match BLAS.

Glossary: N rows (the batch); K and M feature sizes. The letters are generic here; in a layer
y = x @ W + b, x is (N, K), W is (K, M), y and dy are (N, M).

Every parallel loop gives each thread whole rows of the output to own: no two threads ever
write the same element, and each element is summed in the same order whatever the thread count,
so results are bit-identical from run to run and from 1 thread to many.
"""

import numba
import numpy as np
from numba import prange

# The one place that sets Numba options. cache=True keeps compiled code on disk, so only the
# first run pays for compiling; fastmath=False keeps IEEE arithmetic, so results match NumPy
# closely and never depend on how the compiler reorders a sum.
_NUMBA_OPTIONS = {"cache": True, "fastmath": False}


def _jit(parallel=False):
    """Compile a private kernel with the project's Numba options; parallel turns on prange."""
    return numba.njit(parallel=parallel, **_NUMBA_OPTIONS)


# ---------------------------------------------------------------- checks shared by the wrappers

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def _checked(fn, name, x, ndim=2):
    """Return x as a C-contiguous array after checking it is an ndim-D float32/float64 array."""
    if not isinstance(x, np.ndarray):
        raise ValueError(f"{fn}: {name} must be a NumPy array, got {type(x).__name__}")
    if x.ndim != ndim:
        raise ValueError(f"{fn}: {name} must be {ndim}-D, got shape {x.shape}")
    if x.dtype not in _FLOATS:
        raise ValueError(f"{fn}: {name} has dtype {x.dtype}; expected float32 or float64")
    return np.ascontiguousarray(x)  # a copy only if x is a strided view, e.g. W.T


def _same_dtype(fn, names, a, b):
    """Raise unless a and b share a dtype (the kernels never mix precisions)."""
    if a.dtype != b.dtype:
        raise ValueError(f"{fn}: dtypes differ: {names[0]} is {a.dtype}, {names[1]} is {b.dtype}; "
                         "expected both float32 or both float64")


# ---------------------------------------------------------------- matmul: x @ W

@_jit(parallel=True)
def _matmul(a, b):
    """(N, K) @ (K, M) -> (N, M); thread owns output row i; i-k-j order, inner loop contiguous."""
    n, kdim = a.shape
    m = b.shape[1]
    out = np.zeros((n, m), dtype=a.dtype)
    for i in prange(n):
        for k in range(kdim):
            aik = a[i, k]
            for j in range(m):               # out[i, :] += a[i, k] * b[k, :]
                out[i, j] += aik * b[k, j]
    return out


def matmul(a, b):
    """(N, K) @ (K, M) -> (N, M): the forward product x @ W."""
    a, b = _checked("matmul", "a", a), _checked("matmul", "b", b)
    if a.shape[1] != b.shape[0]:
        raise ValueError(f"matmul: inner dimensions differ: a is {a.shape}, b is {b.shape}; "
                         "expected a (N, K) and b (K, M)")
    _same_dtype("matmul", ("a", "b"), a, b)
    return _matmul(a, b)


# ---------------------------------------------------------------- matmul_nt: dy @ W.T

# out[i, k] = sum_j a[i, j] * b[k, j] reads both inputs along rows, so the inner loop would be a
# dot product; without fastmath the compiler may not reorder that sum and runs it one element
# at a time. Instead, each thread copies a slab of _NT_COLS columns of b, transposed, into a
# small buffer of its own, and adds a[i, j] * (that row of the slab) into out[i, :], which is
# contiguous and vectorises. Each out[i, k] is still summed in plain order j = 0, 1, ..., M-1.
# The whole transpose of b is never built; _NT_ROWS output rows share each slab.
_NT_ROWS = 16  # output rows per thread task
_NT_COLS = 32  # columns of b per transposed slab: the buffer is (_NT_COLS, K)


@_jit(parallel=True)
def _matmul_nt(a, b):
    """(N, M) @ (K, M).T -> (N, K); thread owns a block of _NT_ROWS output rows."""
    n, m = a.shape
    kdim = b.shape[0]
    out = np.zeros((n, kdim), dtype=a.dtype)
    n_blocks = (n + _NT_ROWS - 1) // _NT_ROWS
    for block in prange(n_blocks):
        i0 = block * _NT_ROWS
        i1 = min(i0 + _NT_ROWS, n)
        # Allocated inside the prange body, so no two threads share it (Numba allocates it once
        # per thread and reuses it, which is safe: every row is written before it is read).
        slab = np.empty((_NT_COLS, kdim), dtype=a.dtype)
        for j0 in range(0, m, _NT_COLS):
            j1 = min(j0 + _NT_COLS, m)
            for k in range(kdim):            # slab[j - j0, :] = b[:, j]
                for j in range(j0, j1):
                    slab[j - j0, k] = b[k, j]
            for i in range(i0, i1):
                for j in range(j0, j1):
                    aij = a[i, j]
                    for k in range(kdim):    # out[i, :] += a[i, j] * b[:, j]
                        out[i, k] += aij * slab[j - j0, k]
    return out


def matmul_nt(a, b):
    """(N, M) @ (K, M).T -> (N, K): the input gradient dy @ W.T, without transposing W."""
    a, b = _checked("matmul_nt", "a", a), _checked("matmul_nt", "b", b)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"matmul_nt: column counts differ: a is {a.shape}, b is {b.shape}; "
                         "expected a (N, M) and b (K, M)")
    _same_dtype("matmul_nt", ("a", "b"), a, b)
    return _matmul_nt(a, b)


# ---------------------------------------------------------------- matmul_tn: x.T @ dy

@_jit(parallel=True)
def _matmul_tn(a, b):
    """(N, K).T @ (N, M) -> (K, M); thread owns output row k and sums over the batch n inside.

    Looping over n in prange instead would have every thread add into all of out: a data race.
    """
    n, kdim = a.shape
    m = b.shape[1]
    out = np.zeros((kdim, m), dtype=a.dtype)
    for k in prange(kdim):
        for r in range(n):
            ark = a[r, k]
            for j in range(m):               # out[k, :] += a[r, k] * b[r, :]
                out[k, j] += ark * b[r, j]
    return out


def matmul_tn(a, b):
    """(N, K).T @ (N, M) -> (K, M): the weight gradient x.T @ dy, without transposing x."""
    a, b = _checked("matmul_tn", "a", a), _checked("matmul_tn", "b", b)
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"matmul_tn: row counts differ: a is {a.shape}, b is {b.shape}; "
                         "expected a (N, K) and b (N, M)")
    _same_dtype("matmul_tn", ("a", "b"), a, b)
    return _matmul_tn(a, b)


# ---------------------------------------------------------------- bias and its gradient
# These and the ReLU kernels are serial: at layer sizes they take microseconds, and starting
# the thread pool would cost about as much as it saves.

@_jit()
def _add_bias(y, b):
    """(N, M) + (M,) -> (N, M), a new array."""
    n, m = y.shape
    out = np.empty((n, m), dtype=y.dtype)
    for i in range(n):
        for j in range(m):
            out[i, j] = y[i, j] + b[j]
    return out


def add_bias(y, b):
    """(N, M) + (M,) -> (N, M): a new array; b is added to every row."""
    y, b = _checked("add_bias", "y", y), _checked("add_bias", "b", b, ndim=1)
    if b.shape[0] != y.shape[1]:
        raise ValueError(f"add_bias: b has shape {b.shape}, y is {y.shape}; "
                         f"expected b of shape ({y.shape[1]},), one value per column of y")
    _same_dtype("add_bias", ("y", "b"), y, b)
    return _add_bias(y, b)


@_jit()
def _col_sum(dy):
    """(N, M) -> (M,); adds whole rows in order n = 0, 1, ..., so the inner loop is contiguous."""
    n, m = dy.shape
    out = np.zeros(m, dtype=dy.dtype)
    for i in range(n):
        for j in range(m):
            out[j] += dy[i, j]
    return out


def col_sum(dy):
    """(N, M) -> (M,): the bias gradient dy.sum(0)."""
    return _col_sum(_checked("col_sum", "dy", dy))


# ---------------------------------------------------------------- ReLU and its gradient

@_jit()
def _relu(x):
    """(N, M) -> (N, M), a new array; `v < 0` is False for NaN, so a NaN passes through."""
    n, m = x.shape
    out = np.empty((n, m), dtype=x.dtype)
    for i in range(n):
        for j in range(m):
            v = x[i, j]
            out[i, j] = 0.0 if v < 0.0 else v
    return out


def relu(x):
    """(N, M) -> (N, M): a new array max(x, 0)."""
    return _relu(_checked("relu", "x", x))


@_jit()
def _relu_backward(dout, x):
    """(N, M), (N, M) -> (N, M), a new array; dout is read, never written."""
    n, m = x.shape
    dx = np.empty((n, m), dtype=dout.dtype)
    for i in range(n):
        for j in range(m):
            dx[i, j] = dout[i, j] if x[i, j] > 0.0 else 0.0
    return dx


def relu_backward(dout, x):
    """(N, M), (N, M) -> (N, M): a new array, dout where the forward input x was > 0, else 0."""
    dout = _checked("relu_backward", "dout", dout)
    x = _checked("relu_backward", "x", x)
    if dout.shape != x.shape:
        raise ValueError(f"relu_backward: shapes differ: dout is {dout.shape}, x is {x.shape}; "
                         "expected the same shape")
    _same_dtype("relu_backward", ("dout", "x"), dout, x)
    return _relu_backward(dout, x)
