"""The plain NumPy reference for every compute kernel: a few readable lines per operation.

This is the twin each Numba kernel in `kernels/` is tested against, and the `numpy` backend
of `ops.py`. It is written to be obviously right, not fast, and it checks nothing beyond what
NumPy itself checks; the input checks live in checks.py, run by ops.py before either backend.

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


def col_sum(dy):
    """(N, M) -> (M,): the bias gradient dy.sum(0)."""
    return dy.sum(axis=0)


def relu(x):
    """(N, M) -> (N, M): a new array max(x, 0); a NaN passes through so it shows in the loss."""
    return np.maximum(x, 0)


def relu_backward(dout, x):
    """(N, M), (N, M) -> (N, M): a new array, dout where the forward input x was > 0, else 0.

    x may also be the ReLU's output: relu(x) > 0 exactly where x > 0.

    `np.where` rather than `dout * (x > 0)`: a unit that was off passes exactly 0, even if its
    upstream gradient is inf or NaN.
    """
    return np.where(x > 0, dout, 0)


# ---------------------------------------------------------------- fused layer forward passes

def linear(x, W, b=None):
    """(N, K) @ (K, M) + (M,) -> (N, M): x @ W + b (b None: no bias)."""
    y = x @ W
    return y if b is None else y + b


def linear_relu(x, W, b=None):
    """(N, K), (K, M), (M,) -> (N, M): relu(x @ W + b)."""
    return relu(linear(x, W, b))


def elu(a):
    """(N, M) -> (N, M): a if a > 0 else exp(a) - 1 (layers.elu_forward uses this one too)."""
    return np.where(a > 0, a, np.expm1(np.minimum(a, 0)))


def linear_elu(x, W, b=None):
    """(N, K), (K, M), (M,) -> (N, M): elu(x @ W + b)."""
    return elu(linear(x, W, b))


def elu_backward(dout, out):
    """(N, M), (N, M) -> (N, M): dout * elu'(a), elu'(a) = 1 if a > 0 else exp(a) = out + 1."""
    return dout * np.where(out > 0, 1, out + 1)


# ---------------------------------------------------------------- reconstruction losses

def sigmoid(a):
    """1 / (1 + exp(-a)) without overflow: e = exp(-|a|) is in (0, 1] (layers.py uses it too)."""
    e = np.exp(-np.abs(a))
    return np.where(a >= 0, 1 / (1 + e), e / (1 + e))


def bce_with_logits(logits, x):
    """(N, D), (N, D) -> loss, dlogits (N, D): Bernoulli cross-entropy, summed over pixels.

    -[x log s + (1 - x) log(1 - s)] with s = sigmoid(a) equals max(a, 0) - a x + log(1 + e^-|a|);
    the gradient is (s - x). Both are averaged over the N images.
    """
    N = logits.shape[0]
    per_pixel = np.maximum(logits, 0) - logits * x + np.log1p(np.exp(-np.abs(logits)))
    dlogits = (sigmoid(logits) - x) / N
    return per_pixel.sum() / N, dlogits


def sse_with_logits(logits, x):
    """(N, D), (N, D) -> loss, dlogits (N, D): sum of (sigmoid(a) - x)^2, mean over images.

    d loss / d a = 2 (s - x) / N * s (1 - s), the chain rule through s = sigmoid(a).
    """
    N = logits.shape[0]
    s = sigmoid(logits)
    diff = s - x
    dlogits = 2 * diff / N * s * (1 - s)
    return (diff * diff).sum() / N, dlogits


# ---------------------------------------------------------------- Adam

def adam_update(p, g, m, v, lr, beta1, beta2, eps, c1, c2):
    """One Adam step for one parameter, in place on p, m and v (c1, c2: bias corrections)."""
    m *= beta1
    m += (1 - beta1) * g                          # m = b1 m + (1 - b1) g
    v *= beta2
    v += (1 - beta2) * (g * g)                    # v = b2 v + (1 - b2) g^2
    p -= (lr / c1) * m / (np.sqrt(v / c2) + eps)  # p -= lr m_hat / (sqrt(v_hat) + eps)
