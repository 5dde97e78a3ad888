"""The elementwise kernels: bias, ReLU and ELU gradients, the reconstruction losses, Adam.

Each does in one pass over memory what its NumPy twin (numpy_ops.py) does in several. fastmath is
off here: IEEE arithmetic, one rounding per operation, in the same order as the twins, so ReLU,
the ELU gradient and Adam match them bit for bit. Threads own whole rows or chunks of the output.

Glossary: N rows (the batch); M feature size; D pixels (784).
"""

import math

import numpy as np
from numba import prange

from .jit import _SERIAL_ELEMENTS, _jit, _register_tile, _run
from .vecmath import _exp, _log1p

# ---------------------------------------------------------------- the bias gradient
# Serial: at layer sizes it takes microseconds, and starting the thread pool would
# cost about as much as it saves. (The forward pass adds the bias in the product's epilogue.)

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
    return _col_sum(dy)


# ---------------------------------------------------------------- ReLU, ELU and their gradients

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
    return _relu(x)


# The two gradients below run on every hidden layer of the backward pass, on arrays as large as
# (N, 2048): they are parallel over rows (a thread owns whole rows). Inside a parallel loop the
# kernels index arrays directly (dx[i, j]) rather than through row views (dx[i][j]): with no views
# Numba can tell LLVM that the arrays do not overlap, and the loop vectorises better.

@_jit(parallel=True)
def _relu_backward(dout, x):
    """(N, M), (N, M) -> (N, M), a new array; dout is read, never written."""
    n, m = x.shape
    dx = np.empty((n, m), dtype=dout.dtype)
    for i in prange(n):
        for j in range(m):
            dx[i, j] = dout[i, j] if x[i, j] > 0.0 else 0.0
    return dx


def relu_backward(dout, x):
    """(N, M), (N, M) -> (N, M): a new array, dout where the forward input x was > 0, else 0.

    x may also be the ReLU's output: relu(x) > 0 exactly where x > 0.
    """
    return _run(_relu_backward, x.size, _SERIAL_ELEMENTS, dout, x)


@_jit(parallel=True)
def _elu_backward(dout, out, one):
    """(N, M), (N, M) -> (N, M), a new array: dout * (1 if out > 0 else out + 1)."""
    n, m = out.shape
    dx = np.empty((n, m), dtype=dout.dtype)
    for i in prange(n):
        for j in range(m):
            o = out[i, j]
            dx[i, j] = dout[i, j] * (one if o > 0.0 else o + one)
    return dx


def elu_backward(dout, out):
    """(N, M), (N, M) -> (N, M): dout * elu'(x), with elu'(x) = 1 if x > 0 else exp(x) = out + 1.

    out is the ELU's output, so the backward pass needs no exp.
    """
    return _run(_elu_backward, out.size, _SERIAL_ELEMENTS, dout, out, dout.dtype.type(1))


# ---------------------------------------------------------------- reconstruction losses
# Each does in one pass over the (N, D) logits what the NumPy twin does in about eight: sigmoid,
# the loss of every pixel and its gradient, in float64 (with the vectorised exp and log1p above),
# the gradient rounded once to the logits' dtype. Threads own whole rows. A row's loss is summed
# in 16 running sums ("lanes": lane l adds the pixels j = l, l + 16, l + 32, ... in order), which
# the CPU keeps in vector registers, then the lanes and the rows are added in order: a fixed
# order, so the loss does not depend on the thread count. (One running sum would be a chain of
# dependent additions, which cannot be vectorised without letting the compiler reorder it.)
_LANES = 16


@_jit(inline=True)
def _sigmoid_and_e(a):
    """sigmoid(a) = 1 / (1 + e^-a) without overflow, and e = e^-|a| in (0, 1]."""
    e = _exp(-abs(a))
    inverse = 1.0 / (1.0 + e)
    return (inverse if a >= 0.0 else e * inverse), e


@_jit(inline=True)
def _bce_pixel(a, t, inv_n):
    """One pixel's BCE loss max(a, 0) - a t + log(1 + e^-|a|) and its gradient (s - t) / N."""
    s, e = _sigmoid_and_e(a)
    return (a if a > 0.0 else 0.0) - a * t + _log1p(e), (s - t) * inv_n


@_jit(inline=True)
def _sse_pixel(a, t, inv_n):
    """One pixel's squared error (s - t)^2 and its gradient 2 (s - t) / N * s (1 - s)."""
    s, _ = _sigmoid_and_e(a)
    diff = s - t
    return diff * diff, 2.0 * diff * inv_n * s * (1.0 - s)


_BCE, _SSE = 0, 1   # which loss _loss_with_logits computes


@_jit(inline=True)
def _pixel(kind, a, t, inv_n):
    """One pixel's loss and gradient, by kind: _bce_pixel or _sse_pixel."""
    if kind == _SSE:
        return _sse_pixel(a, t, inv_n)
    return _bce_pixel(a, t, inv_n)


@_jit(parallel=True)
def _loss_with_logits(logits, x, kind):
    """(N, D), (N, D) -> loss (float64), dlogits (N, D): the mean loss of `kind`, its gradient.

    kind is the same for every pixel, so LLVM takes the branch in _pixel out of the loop and
    vectorises one loop per loss.
    """
    n, d = logits.shape
    dlogits = np.empty((n, d), dtype=logits.dtype)
    row_loss = np.empty(n, dtype=np.float64)
    inv_n = 1.0 / max(n, 1)                              # the batch mean
    for i in prange(n):
        full = d - d % _LANES                            # pixels in whole blocks of 16 (computed
        lanes = _register_tile(1, _LANES, row_loss)      # here, LLVM vectorises the loop better)
        lanes[:] = 0.0
        for j0 in range(0, full, _LANES):
            for lane in range(_LANES):
                loss, grad = _pixel(kind, logits[i, j0 + lane], x[i, j0 + lane], inv_n)
                lanes[0, lane] += loss
                dlogits[i, j0 + lane] = grad
        for j in range(full, d):
            loss, grad = _pixel(kind, logits[i, j], x[i, j], inv_n)
            lanes[0, j - full] += loss
            dlogits[i, j] = grad
        row_loss[i] = _sum_lanes(lanes)
    return _sum_rows(row_loss), dlogits


@_jit(inline=True)
def _sum_lanes(lanes):
    total = 0.0
    for lane in range(_LANES):
        total += lanes[0, lane]
    return total


@_jit()
def _sum_rows(row_loss):
    """The mean over images: rows added in order, divided by N."""
    total = 0.0
    for i in range(row_loss.shape[0]):
        total += row_loss[i]
    return total / max(row_loss.shape[0], 1)


def bce_with_logits(logits, x):
    """(N, D), (N, D) -> loss (float), dlogits (N, D): Bernoulli cross-entropy, mean over images."""
    return _run(_loss_with_logits, logits.size, _SERIAL_ELEMENTS, logits, x, _BCE)


def sse_with_logits(logits, x):
    """(N, D), (N, D) -> loss (float), dlogits (N, D): sum of squared errors of sigmoid(logits)."""
    return _run(_loss_with_logits, logits.size, _SERIAL_ELEMENTS, logits, x, _SSE)


# ---------------------------------------------------------------- Adam

_ADAM_CHUNK = 4096  # elements per parallel task


@_jit(parallel=True)
def _adam_update(p, g, m, v, lr_c1, beta1, one_minus_beta1, beta2, one_minus_beta2, c2, eps):
    """One Adam step on flat arrays, in place, each element read once and written once."""
    size = p.shape[0]
    for chunk in prange((size + _ADAM_CHUNK - 1) // _ADAM_CHUNK):
        lo = chunk * _ADAM_CHUNK
        hi = min(lo + _ADAM_CHUNK, size)
        # Views of the chunk, indexed from 0: Numba can then see that no index is negative and
        # drops its wrap-around check, which is what lets LLVM vectorise the loop (8x faster than
        # indexing p[lo + i] directly).
        pc, gc, mc, vc = p[lo:hi], g[lo:hi], m[lo:hi], v[lo:hi]
        for i in range(hi - lo):
            gi = gc[i]
            mi = beta1 * mc[i] + one_minus_beta1 * gi
            vi = beta2 * vc[i] + one_minus_beta2 * (gi * gi)
            mc[i] = mi
            vc[i] = vi
            pc[i] -= lr_c1 * mi / (math.sqrt(vi / c2) + eps)


def adam_update(p, g, m, v, lr, beta1, beta2, eps, c1, c2):
    """Update p, m, v in place: m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
    p -= (lr / c1) m / (sqrt(v / c2) + eps). Any shape; all four arrays alike and C-contiguous."""
    f = p.dtype.type   # the scalars in the arrays' precision, as NumPy rounds them
    _run(_adam_update, p.size, _SERIAL_ELEMENTS, p.reshape(-1), g.reshape(-1), m.reshape(-1),
         v.reshape(-1), f(lr / c1), f(beta1), f(1 - beta1), f(beta2), f(1 - beta2), f(c2), f(eps))
