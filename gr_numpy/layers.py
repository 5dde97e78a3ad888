"""Layers as forward/backward pairs: Linear, ReLU, ELU, Linear + activation, style inputs; Sigmoid.

Each `*_forward` returns `(out, cache)`; the matching `*_backward(dout, cache)` returns the
gradient with respect to each input, as new arrays (the incoming `dout` is never modified).
The heavy lifting (matmul, bias, activations) goes through `ops`, so the same code runs on the
Numba kernels or on plain NumPy. This file holds no parameters and no state: the model owns those.

Shapes: N batch rows, D_in / D_out layer widths, K digit dims, S style dims. Convention: W is
(D_in, D_out), y = x @ W + b, so dx = dy @ W.T, dW = x.T @ dy, db = dy.sum(0).
"""

import numpy as np

from .backend import ops
from .backend.numpy_ops import sigmoid     # the one definition, in NumPy


# ---------------------------------------------------------------------------- Linear
def linear_forward(x, W, b=None):
    """y = x @ W + b.   x (N, D_in), W (D_in, D_out), b (D_out,) or None -> y (N, D_out)."""
    y = ops.linear(x, W, b)         # the bias is added as the product is written
    return y, (x, W, b)


def linear_backward(dy, cache, need_dx=True):
    """dy (N, D_out) -> dx (N, D_in), dW (D_in, D_out), db (D_out,) or None.

    need_dx=False skips the input gradient (dx is None): the first layer's, whose input is the
    data, is a product nothing reads.
    """
    x, W, b = cache
    dx = ops.matmul_nt(dy, W) if need_dx else None   # dy @ W.T    (N, D_in)
    dW = ops.matmul_tn(x, dy)       # x.T @ dy    (D_in, D_out)
    db = ops.col_sum(dy) if b is not None else None
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
# out = elu(x) = x if x > 0 else exp(x) - 1: smooth below zero, so a unit is never completely
# dead; the decoder reconstructs better with it. Its forward pass is fused into the product
# (linear_elu_forward below); its backward needs only the output.
def elu_backward(dout, cache):
    """d elu/dx = 1 if x > 0 else exp(x) = out + 1.   dout (N, D), cache out -> dx (N, D)."""
    out = cache
    return ops.elu_backward(dout, out)


# ---------------------------------------------------------------------------- Sigmoid
def sigmoid_forward(x):
    """out = 1 / (1 + exp(-x)), computed without overflow.   x (N, D) -> out (N, D)."""
    out = sigmoid(x)
    return out, out

# (No sigmoid_backward: the loss works on the logits, bce_with_logits in losses.py, whose
# gradient s - x already goes through the sigmoid.)


# ---------------------------------------------------------------------------- Linear + activation
# A hidden layer is h = act(x @ W + b). Its forward pass is one kernel (ops.linear_relu,
# ops.linear_elu): the activation is applied as the product is written, so the pre-activation
# x @ W + b never goes to memory. Its backward pass is the two pairs above, in reverse: the
# activation's backward (from its output h, which is all it needs), then the linear's.
def linear_relu_forward(x, W, b=None):
    """h = relu(x @ W + b).   x (N, D_in), W (D_in, D_out), b (D_out,) or None -> h (N, D_out)."""
    h = ops.linear_relu(x, W, b)
    return h, ((x, W, b), h)


def linear_relu_backward(dh, cache, need_dx=True):
    """dh (N, D_out) -> dx (N, D_in) (None if not need_dx), dW (D_in, D_out), db (D_out,) or None."""
    linear_cache, h = cache
    da = relu_backward(dh, h)       # relu'(a) = 1[a > 0] = 1[h > 0]     (N, D_out)
    return linear_backward(da, linear_cache, need_dx)


def linear_elu_forward(x, W, b=None):
    """h = elu(x @ W + b).   x (N, D_in), W (D_in, D_out), b (D_out,) or None -> h (N, D_out)."""
    h = ops.linear_elu(x, W, b)
    return h, ((x, W, b), h)


def linear_elu_backward(dh, cache, need_dx=True):
    """dh (N, D_out) -> dx (N, D_in) (None if not need_dx), dW (D_in, D_out), db (D_out,) or None."""
    linear_cache, h = cache
    da = elu_backward(dh, h)        # elu'(a) = 1 if a > 0 else h + 1     (N, D_out)
    return linear_backward(da, linear_cache, need_dx)


# Hidden layers by activation name, so a model config can say "relu" or "elu": (forward,
# backward) of the fused pair.
LINEAR_ACTIVATIONS = {
    "relu": (linear_relu_forward, linear_relu_backward),
    "elu": (linear_elu_forward, linear_elu_backward),
}


# ---------------------------------------------------------------------------- Style product
# The decoder's input layer when the code has S style dims besides the K digit dims: the style
# reaches the decoder only multiplied by the digit code, so where the digit code is all zero the
# style has nothing to act on.
def style_product_forward(z_d, z_s):
    """u = [z_d, vec(z_d outer z_s)].   z_d (N, K), z_s (N, S) -> u (N, K + K*S).

    Column K + k*S + s of u is z_d[n, k] * z_s[n, s]: style s as it applies to digit dim k.
    """
    N, K = z_d.shape
    S = z_s.shape[1]
    product = (z_d[:, :, None] * z_s[:, None, :]).reshape(N, K * S)    # (N, K*S)
    u = np.concatenate([z_d, product], axis=1)                          # (N, K + K*S)
    return u, (z_d, z_s)


def style_product_backward(du, cache):
    """du (N, K + K*S) -> dz_d (N, K), dz_s (N, S), new arrays."""
    z_d, z_s = cache
    N, K = z_d.shape
    S = z_s.shape[1]
    dz_d_direct = du[:, :K]                                  # u[:, :K] = z_d
    dproduct = du[:, K:].reshape(N, K, S)                    # product[n, k, s] = z_d[n,k] z_s[n,s]
    dz_d_product = (dproduct * z_s[:, None, :]).sum(axis=2)  # (N, K)
    dz_d = dz_d_direct + dz_d_product                        # z_d feeds both parts of u
    dz_s = (dproduct * z_d[:, :, None]).sum(axis=1)          # (N, S)
    return dz_d, dz_s


def style_shared_forward(z_d, z_s):
    """u = [z_d, m * z_s] with m = sum_k z_d[:, k].   z_d (N, K), z_s (N, S) -> u (N, K + S).

    The outer product above with one set of style columns for every digit: style s enters the
    decoder the same way whichever digit dim is on, scaled by how much digit there is (m = 0
    when the digit code is all zero).
    """
    m = z_d.sum(axis=1, keepdims=True)                       # (N, 1)
    u = np.concatenate([z_d, m * z_s], axis=1)               # (N, K + S)
    return u, (z_d, z_s, m)


def style_shared_backward(du, cache):
    """du (N, K + S) -> dz_d (N, K), dz_s (N, S), new arrays."""
    z_d, z_s, m = cache
    K = z_d.shape[1]
    dz_d_direct = du[:, :K]                                  # u[:, :K] = z_d
    dm = (du[:, K:] * z_s).sum(axis=1, keepdims=True)        # u[:, K:] = m * z_s     (N, 1)
    dz_d = dz_d_direct + dm                                  # dm/dz_d[:, k] = 1 for every k
    dz_s = du[:, K:] * m                                     # (N, S)
    return dz_d, dz_s


# The decoder's input layer for a code with style dims, by VAEConfig.style_input.
STYLE_INPUTS = {
    "outer": (style_product_forward, style_product_backward),
    "shared": (style_shared_forward, style_shared_backward),
}
