"""exp, expm1 and log1p as plain arithmetic, so that the loops calling them vectorise.

Used by the ELU epilogue of the products (products.py) and by the losses (elementwise.py);
`exp_nonpositive`, `expm1_nonpositive` and `log1p_unit` expose them to the tests.
"""

import math

import numba
import numpy as np

from .. import checks
from .jit import _jit

# ---------------------------------------------------------------- exp, expm1, log1p that vectorise
# math.exp and friends are calls into the C library, one number at a time (2 to 10 ns each), and
# a loop that calls them cannot be vectorised. These three are plain arithmetic that LLVM turns
# into 8-wide vector code (about 1 ns a number). They work in float64 whatever the input. On the
# test grid (tests/test_kernels.py) a float32 result is within half a unit in the last place of
# the exact value and a float64 one within 2 units of NumPy's; that is measured on the grid, not
# proven for every input. Each covers only the range this file needs: exp and expm1 of x <= 0
# (sigmoid, ELU), log1p of 0 <= e <= 1 (the BCE loss).
#   exp:   x = n ln2 + r with n an integer and |r| <= ln2 / 2 ("Cody-Waite": ln2 in two parts, so
#          n * _LN2_HI is exact); exp(x) = 2**n (1 + expm1(r)), expm1(r) a Taylor polynomial.
#   log1p: log(1 + e) = 2 atanh(s) = 2 (s + s**3/3 + s**5/5 + ...) with s = e / (2 + e); above
#          sqrt(2) - 1, log(1 + e) = ln2 + log((1 + e) / 2) keeps |s| <= 0.172, so ten terms do.
# (Inside the products, whose "contract" flag applies to the ELU epilogue too, the polynomials
# become fused multiply-adds: one rounding fewer per step, so no less accurate.)
_LN2 = 0.6931471805599453
_LN2_HI, _LN2_LO = 6.93147180369123816490e-01, 1.90821492927058770002e-10
_INV_LN2 = 1.4426950408889634
_EXPM1_TAYLOR = tuple(1.0 / math.factorial(k) for k in range(13, 1, -1))   # 1/13!, ..., 1/2!
_ATANH_SERIES = tuple(1.0 / k for k in range(21, 1, -2))                 # 1/21, 1/19, ..., 1/3
_SQRT2_MINUS_1 = 0.41421356237309503

if numba.config.DISABLE_JIT:
    def _pow2(n):
        return math.ldexp(1.0, int(n))
else:
    from llvmlite import ir as llvm_ir
    from numba.core import types
    from numba.extending import intrinsic

    @intrinsic
    def _pow2(typingctx, n):
        """2.0 ** n for an integral float64 n in [-1022, 1023], built from its bits."""
        def codegen(context, builder, signature, args):
            i64 = llvm_ir.IntType(64)
            exponent = builder.add(builder.fptosi(args[0], i64), i64(1023))
            return builder.bitcast(builder.shl(exponent, i64(52)), llvm_ir.DoubleType())
        return types.float64(types.float64), codegen


@_jit(inline=True)
def _exp_parts(x):
    """x <= 0 -> (2**n, expm1(r)) with x = n ln2 + r, |r| <= ln2 / 2. NaN gives (1, NaN)."""
    x = float(x)                                         # float64, with or without JIT
    x = -708.0 if x < -708.0 else (0.0 if x > 0.0 else x)   # 2**n stays a normal number
    n = math.floor(x * _INV_LN2 + 0.5) if x == x else 0.0
    r = (x - n * _LN2_HI) - n * _LN2_LO
    q = 0.0
    for c in _EXPM1_TAYLOR:
        q = q * r + c                                    # 1/2! + r/3! + ... + r**11/13!
    return _pow2(n), r + r * r * q


@_jit(inline=True)
def _exp(x):
    """exp(x) for x <= 0, in float64; below -708 it is 0."""
    scale, p = _exp_parts(x)
    return 0.0 if x < -708.0 else scale + scale * p    # `x < -708` is False for NaN: it passes


@_jit(inline=True)
def _expm1(x):
    """exp(x) - 1 for x <= 0, in float64, accurate near 0."""
    scale, p = _exp_parts(x)
    return (scale - 1.0) + scale * p


@_jit(inline=True)
def _log1p(e):
    """log(1 + e) for 0 <= e <= 1, in float64, accurate near 0."""
    e = float(e)
    big = e > _SQRT2_MINUS_1
    s = (e - 1.0 if big else e) / (e + 3.0 if big else e + 2.0)
    s2 = s * s
    q = 0.0
    for c in _ATANH_SERIES:
        q = q * s2 + c                                   # 1/3 + s2/5 + ... + s2**9/21
    return (_LN2 if big else 0.0) + (2.0 * s + 2.0 * s * s2 * q)


def exp_nonpositive(x):
    """exp(x) for an array of x <= 0, with the kernels' own vectorised exp (for the tests)."""
    return _map(0, _checked_1d("exp_nonpositive", x))


def expm1_nonpositive(x):
    """exp(x) - 1 for an array of x <= 0, with the kernels' own expm1 (for the tests)."""
    return _map(1, _checked_1d("expm1_nonpositive", x))


def log1p_unit(e):
    """log(1 + e) for an array of 0 <= e <= 1, with the kernels' own log1p (for the tests)."""
    return _map(2, _checked_1d("log1p_unit", e))


def _checked_1d(fn, x):
    return checks.checked(fn, "x", x, ndim=1)


@_jit()
def _map(which, x):
    """out[i] = (_exp, _expm1, _log1p)[which](x[i])."""
    out = np.empty_like(x)
    for i in range(x.shape[0]):
        if which == 0:
            out[i] = _exp(x[i])
        elif which == 1:
            out[i] = _expm1(x[i])
        else:
            out[i] = _log1p(x[i])
    return out
