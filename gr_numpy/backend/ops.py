"""The compute operations the model calls, sent to one of two backends: "numba" or "numpy".

The model code is the same for both: it calls `ops.linear(x, W, b)` and this module passes the
call on to `kernels/` (our Numba kernels, the default) or to `numpy_ops.py` (plain NumPy, the
reference). Pick one with `set_backend`, `using_backend`, or GR_NUMPY_BACKEND=numpy at import.
Numba is imported only when its backend is chosen: the NumPy path runs without it installed.
This module holds no maths of its own. It checks every input (checks.py) before passing it on,
so both backends refuse the same bad input with the same one-line ValueError.

Convention, used everywhere: rows are examples (batch first); W is (D_in, D_out); y = x @ W + b.
Then dW = x.T @ dy (matmul_tn), dx = dy @ W.T (matmul_nt), db = dy.sum(0) (col_sum).
Glossary: N rows (the batch); K and M generic feature sizes (x is (N, K), W is (K, M)).
"""

import contextlib
import importlib
import os

from . import checks

BACKENDS = {"numba": "gr_numpy.backend.kernels", "numpy": "gr_numpy.backend.numpy_ops"}

_backend_name = None
_backend = None  # the module every call below goes to, imported at its first call


def set_backend(name):
    """Send every later call to the named backend: "numba" or "numpy"."""
    global _backend_name, _backend
    if name not in BACKENDS:
        raise ValueError(f"set_backend: unknown backend {name!r}; expected one of "
                         f"{', '.join(map(repr, BACKENDS))} (GR_NUMPY_BACKEND is read at import)")
    _backend_name, _backend = name, None


def _module():
    """The chosen backend's module; importing it (and Numba, for "numba") on first use."""
    global _backend
    if _backend is None:
        _backend = importlib.import_module(BACKENDS[_backend_name])
    return _backend


def get_backend():
    """The name of the backend in use: "numba" or "numpy"."""
    return _backend_name


@contextlib.contextmanager
def using_backend(name):
    """Use the named backend inside a `with` block, then restore the one before."""
    previous = get_backend()
    set_backend(name)
    try:
        yield
    finally:
        set_backend(previous)


def set_threads(n):
    """Run the parallel Numba kernels on n threads (1 <= n <= NUMBA_NUM_THREADS)."""
    import numba

    limit = numba.config.NUMBA_NUM_THREADS
    if not isinstance(n, int) or not 1 <= n <= limit:
        raise ValueError(f"set_threads: got {n!r}; expected an int from 1 to {limit} "
                         "(NUMBA_NUM_THREADS, fixed at start-up)")
    numba.set_num_threads(n)


def get_threads():
    """How many threads the backend computes on: Numba's count, or OpenBLAS's for NumPy."""
    if _backend_name == "numba":
        import numba

        return numba.get_num_threads()
    return int(os.environ.get("OPENBLAS_NUM_THREADS") or os.cpu_count() or 1)


set_backend(os.environ.get("GR_NUMPY_BACKEND", "numba"))


# ---------------------------------------------------------------- the operations

def matmul_nt(a, b):
    """(N, M) @ (K, M).T -> (N, K): the input gradient dy @ W.T."""
    a, b = checks.operands("matmul_nt", a, b, ("a", "b"), (1, 1), "column counts differ",
                           "a (N, M) and b (K, M)")
    return _module().matmul_nt(a, b)


def matmul_tn(a, b):
    """(N, K).T @ (N, M) -> (K, M): the weight gradient x.T @ dy."""
    a, b = checks.operands("matmul_tn", a, b, ("a", "b"), (0, 0), "row counts differ",
                           "a (N, K) and b (N, M)")
    return _module().matmul_tn(a, b)


def col_sum(dy):
    """(N, M) -> (M,): the bias gradient dy.sum(0)."""
    return _module().col_sum(checks.checked("col_sum", "dy", dy))


def relu(x):
    """(N, M) -> (N, M): a new array max(x, 0)."""
    return _module().relu(checks.checked("relu", "x", x))


def relu_backward(dout, x):
    """(N, M), (N, M) -> (N, M): a new array, dout where x > 0, else 0."""
    return _module().relu_backward(*checks.pair("relu_backward", ("dout", "x"), dout, x))


# ---------------------------------------------------------------- fused operations
# One pass over memory where plain NumPy needs several; the NumPy twins show the maths.

def _linear_inputs(fn, x, W, b):
    x, W = checks.operands(fn, x, W, ("x", "W"), (1, 0), "inner dimensions differ",
                           "x (N, K) and W (K, M)")
    return x, W, checks.bias(fn, b, W, "W")


def linear(x, W, b=None):
    """(N, K) @ (K, M) + (M,) -> (N, M): x @ W + b, the bias added as the product is written."""
    return _module().linear(*_linear_inputs("linear", x, W, b))


def linear_relu(x, W, b=None):
    """(N, K), (K, M), (M,) -> (N, M): relu(x @ W + b) (b None: no bias)."""
    return _module().linear_relu(*_linear_inputs("linear_relu", x, W, b))


def linear_elu(x, W, b=None):
    """(N, K), (K, M), (M,) -> (N, M): elu(x @ W + b) (b None: no bias)."""
    return _module().linear_elu(*_linear_inputs("linear_elu", x, W, b))


def elu_backward(dout, out):
    """(N, M), (N, M) -> (N, M): dout * elu'(a), from the ELU's output out (elu' = out + 1 below 0)."""
    return _module().elu_backward(*checks.pair("elu_backward", ("dout", "out"), dout, out))


def bce_with_logits(logits, x):
    """(N, D), (N, D) -> loss, dlogits (N, D): Bernoulli cross-entropy and its gradient."""
    return _module().bce_with_logits(*checks.pair("bce_with_logits", ("logits", "x"), logits, x))


def sse_with_logits(logits, x):
    """(N, D), (N, D) -> loss, dlogits (N, D): squared error of sigmoid(logits), and its gradient."""
    return _module().sse_with_logits(*checks.pair("sse_with_logits", ("logits", "x"), logits, x))


def adam_update(p, g, m, v, lr, beta1, beta2, eps, c1, c2):
    """One Adam step for one parameter, in place on p, m and v."""
    checks.in_place("adam_update", {"p": p, "g": g, "m": m, "v": v})
    return _module().adam_update(p, g, m, v, lr, beta1, beta2, eps, c1, c2)
