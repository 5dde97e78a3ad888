"""Finite-difference gradient checking, for the tests and for readers checking their own layers.

`numerical_gradient(f, x)` perturbs each entry of x by +-h and takes the central difference
(f(x + h) - f(x - h)) / 2h. Use float64: in float32 the rounding error of f swamps the
difference. `rel_error` compares an analytic gradient with it, and `check_gradient` does both and
says where the worst disagreement is. Not a speed tool: it evaluates f twice per entry.
"""

import numpy as np


def numerical_gradient(f, x, h=1e-5):
    """d f / d x by central differences. f() -> float reads x, which is perturbed in place and restored.

    x (any shape, float64) -> grad (same shape).
    """
    if x.dtype != np.float64:
        raise ValueError(f"numerical_gradient: use float64 arrays (got {x.dtype}); "
                         f"float32 rounding hides real errors")
    grad = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"])
    for _ in it:
        i = it.multi_index
        old = x[i]
        try:
            x[i] = old + h
            f_plus = f()
            x[i] = old - h
            f_minus = f()
        finally:
            x[i] = old                       # restored even if f raises
        grad[i] = (f_plus - f_minus) / (2 * h)
    return grad


def numerical_gradient_array(f, x, dout, h=1e-5):
    """Gradient of sum(f() * dout) with respect to x, for layers whose output is an array.

    A random upstream dout (never all ones) makes a mistake in any single entry visible.
    """
    return numerical_gradient(lambda: float(np.sum(f() * dout)), x, h)


def _entrywise_error(analytic, numeric):
    a, n = np.asarray(analytic, np.float64), np.asarray(numeric, np.float64)
    total = np.abs(a) + np.abs(n)
    # Floor: entries a thousand times smaller than the largest are judged against that floor,
    # because a finite difference cannot resolve them to 1e-6 of their own size.
    floor = max(1e-3 * total.max(initial=0.0), 1e-300)
    return np.abs(a - n) / np.maximum(total, floor)


def rel_error(analytic, numeric):
    """Largest entry-wise |a - n| / max(|a| + |n|, floor), floor = 1e-3 * largest |a| + |n|.

    The cs231n relative error, with its floor scaled to the gradient so that entries near zero do
    not divide rounding noise by a tiny number. Below 1e-6 the gradients agree, in float64.
    """
    return float(np.max(_entrywise_error(analytic, numeric), initial=0.0))


def check_gradient(analytic, numeric, tol=1e-6, name="gradient"):
    """Raise AssertionError naming the worst entry (index, both values) if rel_error >= tol.

    Returns the relative error when the check passes.
    """
    if np.shape(analytic) != np.shape(numeric):
        raise AssertionError(f"{name}: analytic shape {np.shape(analytic)} != numeric "
                             f"{np.shape(numeric)}")
    err = rel_error(analytic, numeric)
    if not err < tol:
        a, n = np.asarray(analytic, np.float64), np.asarray(numeric, np.float64)
        worst = np.unravel_index(np.argmax(_entrywise_error(a, n)), a.shape)
        raise AssertionError(f"{name}: rel_error {err:.3e} >= {tol:.0e}; worst at {worst}: "
                             f"analytic {a[worst]:.10g} vs numeric {n[worst]:.10g}")
    return err
