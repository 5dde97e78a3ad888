"""Layers as forward/backward pairs: Linear, ReLU, ELU, Sigmoid.

Each `*_forward` returns `(out, cache)`; the matching `*_backward(dout, cache)` returns the
gradient with respect to each input, as new arrays (the incoming `dout` is never modified).
The heavy lifting (matmul, bias, ReLU) goes through `ops`, so the same code runs on the Numba
kernels or on plain NumPy. This file holds no parameters and no state: the model owns those.

Shapes: N batch rows, D_in / D_out layer widths. Convention: W is (D_in, D_out), y = x @ W + b,
so dx = dy @ W.T, dW = x.T @ dy, db = dy.sum(0).
"""

import numpy as np

from . import ops


# ---------------------------------------------------------------------------- Linear
def linear_forward(x, W, b=None):
    """y = x @ W + b.   x (N, D_in), W (D_in, D_out), b (D_out,) or None -> y (N, D_out)."""
    y = ops.matmul(x, W)
    if b is not None:
        y = ops.add_bias(y, b)
    return y, (x, W, b is not None)


def linear_backward(dy, cache):
    """dy (N, D_out) -> dx (N, D_in), dW (D_in, D_out), db (D_out,) or None."""
    x, W, has_bias = cache
    dx = ops.matmul_nt(dy, W)       # dy @ W.T    (N, D_in)
    dW = ops.matmul_tn(x, dy)       # x.T @ dy    (D_in, D_out)
    db = ops.col_sum(dy) if has_bias else None
    return dx, dW, db


# ---------------------------------------------------------------------------- ReLU
def relu_forward(x):
    """out = max(x, 0).   x (N, D) -> out (N, D)."""
    return ops.relu(x), x


def relu_backward(dout, cache):
    """dx = dout where x > 0, else 0.   dout (N, D) -> dx (N, D), a new array."""
    x = cache
    return ops.relu_backward(dout, x)


# ---------------------------------------------------------------------------- ELU
def elu_forward(x):
    """out = x if x > 0 else exp(x) - 1.   x (N, D) -> out (N, D).

    Smooth below zero, so a unit is never completely dead; the decoder reconstructs better with it.
    """
    out = np.where(x > 0, x, np.expm1(np.minimum(x, 0)))
    return out, out


def elu_backward(dout, cache):
    """d elu/dx = 1 if x > 0 else exp(x) = out + 1.   dout (N, D) -> dx (N, D)."""
    out = cache
    return dout * np.where(out > 0, 1, out + 1)


# ---------------------------------------------------------------------------- Sigmoid
def sigmoid_forward(x):
    """out = 1 / (1 + exp(-x)), computed without overflow.   x (N, D) -> out (N, D)."""
    e = np.exp(-np.abs(x))                       # in (0, 1]: never overflows
    out = np.where(x >= 0, 1 / (1 + e), e / (1 + e))
    return out, out


def sigmoid_backward(dout, cache):
    """d sigmoid/dx = out * (1 - out).   dout (N, D) -> dx (N, D)."""
    out = cache
    return dout * out * (1 - out)


# Activations by name, so a model config can say "relu" or "elu" per block of layers.
ACTIVATIONS = {
    "relu": (relu_forward, relu_backward),
    "elu": (elu_forward, elu_backward),
}
