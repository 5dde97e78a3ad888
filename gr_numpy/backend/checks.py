"""Input checks for the compute operations: a bad array is one ValueError line, on both backends.

`ops.py` runs every call through these before it reaches the Numba kernels or their NumPy twins,
so the two backends accept and refuse exactly the same inputs: 2-D float32/float64 arrays of
matching shapes and one dtype per call (no silent float32 -> float64 upcast). Each check returns
its array C-contiguous (a copy only for a strided view such as W.T), as the kernels need.
"""

import numpy as np

FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def checked(fn, name, x, ndim=2):
    """Return x as a C-contiguous array after checking it is an ndim-D float32/float64 array."""
    if not isinstance(x, np.ndarray):
        raise ValueError(f"{fn}: {name} must be a NumPy array, got {type(x).__name__}")
    if x.ndim != ndim:
        raise ValueError(f"{fn}: {name} must be {ndim}-D, got shape {x.shape}")
    if x.dtype not in FLOATS:
        raise ValueError(f"{fn}: {name} has dtype {x.dtype}; expected float32 or float64")
    return np.ascontiguousarray(x)


def same_dtype(fn, names, a, b):
    """Raise unless a and b share a dtype (no operation mixes precisions)."""
    if a.dtype != b.dtype:
        raise ValueError(f"{fn}: dtypes differ: {names[0]} is {a.dtype}, {names[1]} is {b.dtype}; "
                         "expected both float32 or both float64")


def same_shape(fn, names, a, b):
    """Raise unless a and b have the same shape."""
    if a.shape != b.shape:
        raise ValueError(f"{fn}: shapes differ: {names[0]} is {a.shape}, {names[1]} is {b.shape}; "
                         "expected the same shape")


def pair(fn, names, a, b):
    """Two 2-D arrays of one shape and dtype (elementwise operations and losses)."""
    a, b = checked(fn, names[0], a), checked(fn, names[1], b)
    same_shape(fn, names, a, b)
    same_dtype(fn, names, a, b)
    return a, b


def operands(fn, a, b, names, axes, problem, expected):
    """The two operands of a product: a.shape[axes[0]] must equal b.shape[axes[1]]."""
    a, b = checked(fn, names[0], a), checked(fn, names[1], b)
    if a.shape[axes[0]] != b.shape[axes[1]]:
        raise ValueError(f"{fn}: {problem}: {names[0]} is {a.shape}, {names[1]} is {b.shape}; "
                         f"expected {expected}")
    same_dtype(fn, names, a, b)
    return a, b


def bias(fn, b, like, name):
    """A bias (M,), one value per column of `like` (named `name`), of its dtype; None passes."""
    if b is None:
        return None
    b = checked(fn, "b", b, ndim=1)
    if b.shape[0] != like.shape[1]:
        raise ValueError(f"{fn}: b has shape {b.shape}, {name} is {like.shape}; expected b of "
                         f"shape ({like.shape[1]},), one value per column of {name}")
    same_dtype(fn, (name, "b"), like, b)
    return b


def in_place(fn, arrays):
    """The arrays Adam updates: alike, C-contiguous, and (all but g) writeable."""
    p = arrays["p"]
    for name, a in arrays.items():
        if not isinstance(a, np.ndarray) or a.dtype not in FLOATS:
            raise ValueError(f"{fn}: {name} must be a float32 or float64 NumPy array")
        if not a.flags.c_contiguous:
            raise ValueError(f"{fn}: {name} must be C-contiguous (it is updated in place)")
        same_shape(fn, ("p", name), p, a)
        same_dtype(fn, ("p", name), p, a)
    for name in ("p", "m", "v"):
        if not arrays[name].flags.writeable:
            raise ValueError(f"{fn}: {name} is read-only; it is updated in place")
