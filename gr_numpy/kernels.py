"""Numba kernels for a dense layer, its loss and its optimiser, each behind a checked wrapper.

Each operation is a private jitted body (`_gemm`, `_relu`, ...) and a public wrapper (`matmul`,
`relu`, ...) that lays out its arrays and picks the thread count. The wrappers trust their inputs:
`ops.py` checks every call (checks.py) before it reaches this backend or the NumPy one, so both
refuse the same bad input. `numpy_ops.py` holds the NumPy twin of each kernel;
`tests/test_kernels.py` checks every kernel against its twin.

Two kinds of kernel live here:
  * The matrix products, hand-written and blocked for the cache and the registers (no BLAS call),
    with the work that follows a product fused into it: `linear_relu` is relu(x @ W + b) in one
    pass over memory. `python -m bench` measures them against NumPy's `@` (OpenBLAS).
  * Elementwise kernels that do in one pass what NumPy does in several: the ELU/ReLU gradients,
    sigmoid with the reconstruction loss and its gradient, the whole Adam update.

Glossary: N rows (the batch); K and M feature sizes. The letters are generic here; in a layer
y = x @ W + b, x is (N, K), W is (K, M), y and dy are (N, M).

Every parallel loop gives each thread whole tiles or rows of the output to own: no two threads
ever write the same element, and each element is computed by the same operations in the same
order whatever the thread count, so results are bit-identical from run to run and from 1 thread
to many.
"""

import math
import os

import numba
import numpy as np
from numba import prange

from . import checks

# The one place that sets Numba options. cache=True keeps compiled code on disk, so only the first
# run pays for compiling. error_model="numpy": a division by zero gives inf or NaN, as in NumPy,
# instead of raising; it also lets LLVM vectorise loops that divide (a check that may raise is an
# exit from the loop, and loops with exits stay scalar). fastmath stays off for the elementwise
# kernels: IEEE arithmetic, one rounding per operation, in the same order as their NumPy twins.
# The products turn on a single fastmath flag, "contract": it lets LLVM fuse a * b + c into one
# fused multiply-add instruction (FMA), rounded once instead of twice. That doubles the arithmetic
# per instruction and changes results in the last bit; tests/test_kernels.py pins what it changes
# (agreement with NumPy within a stated tolerance, and a product whose exact answer only a fused
# multiply-add gives).
_NUMBA_OPTIONS = {"cache": True, "error_model": "numpy", "fastmath": False}
_PRODUCT_OPTIONS = {**_NUMBA_OPTIONS, "fastmath": {"contract"}}


def _jit(parallel=False, product=False, inline=False):
    """Compile a private kernel with the project's Numba options; parallel turns on prange.

    inline=True is for the small scalar helpers: Numba pastes their body into the caller, where
    LLVM can vectorise it. (A parallel loop calls other functions through pointers otherwise.)
    """
    options = dict(_PRODUCT_OPTIONS if product else _NUMBA_OPTIONS)
    if inline:
        options["inline"] = "always"
    return numba.njit(parallel=parallel, **options)


# ---------------------------------------------------------------- small problems: one thread
# A parallel loop costs a few microseconds to start on an idle machine, and up to a scheduler
# time slice (milliseconds) when another program is using the other cores, because every thread
# must arrive before the loop can end. So the wrappers run small problems on the calling thread
# alone (results do not depend on the thread count, so this changes only the speed).
_SERIAL_FLOPS = 1 << 20      # products of fewer floating-point operations than this
_SERIAL_ELEMENTS = 1 << 15   # elementwise kernels on fewer elements than this


def _run(kernel, work, threshold, *args):
    """kernel(*args), on one thread if work < threshold."""
    threads = numba.get_num_threads()
    if work >= threshold or threads == 1:
        return kernel(*args)
    numba.set_num_threads(1)
    try:
        return kernel(*args)
    finally:
        numba.set_num_threads(threads)


# ---------------------------------------------------------------- a tile that lives in registers
# A fast product keeps a small tile of its output in CPU registers for the whole loop over k.
# LLVM does that to an array only if it can prove that nothing else points into it. Numba puts
# arrays on the heap, behind pointers LLVM cannot see through, so the tile is asked for on the
# stack instead: `_register_tile(rows, cols, like)` returns a (rows, cols) array of like's dtype
# whose memory is an LLVM `alloca` in the calling function. Nothing else can reach it, so LLVM
# promotes the whole tile to registers (`python -m bench --asm` shows the loop).
# rows and cols must be compile-time constants. Without JIT it is an ordinary NumPy array.

if numba.config.DISABLE_JIT:
    def _register_tile(rows, cols, like):
        return np.empty((rows, cols), dtype=like.dtype)
else:
    from numba.core import cgutils, types
    from numba.core.errors import TypingError
    from numba.extending import intrinsic
    from numba.np.arrayobj import make_array, populate_array

    @intrinsic
    def _register_tile(typingctx, rows, cols, like):
        if not (isinstance(rows, types.IntegerLiteral) and isinstance(cols, types.IntegerLiteral)):
            raise TypingError("_register_tile: rows and cols must be compile-time constants")
        n_rows, n_cols = rows.literal_value, cols.literal_value
        tile_type = types.Array(like.dtype, 2, "C")

        def codegen(context, builder, signature, args):
            element = context.get_data_type(like.dtype)
            itemsize = context.get_abi_sizeof(element)
            intp = context.get_value_type(types.intp)
            tile = make_array(tile_type)(context, builder)
            populate_array(tile, data=cgutils.alloca_once(builder, element, size=n_rows * n_cols),
                           shape=[intp(n_rows), intp(n_cols)],
                           strides=[intp(n_cols * itemsize), intp(itemsize)],
                           itemsize=intp(itemsize), meminfo=None)
            return tile._getvalue()

        return tile_type(rows, cols, like), codegen


# ---------------------------------------------------------------- exp, expm1, log1p that vectorise
# math.exp and friends are calls into the C library, one number at a time (2 to 10 ns each), and
# a loop that calls them cannot be vectorised. These three are plain arithmetic that LLVM turns
# into 8-wide vector code (about 1 ns a number). They work in float64 whatever the input. On the
# test grid (tests/test_kernels.py) a float32 result is within half a unit in the last place of
# the exact value and a float64 one within 2 units of NumPy's; that is measured on the grid, not
# proven for every input. Each covers only the range this file needs: exp and expm1 of x <= 0 (sigmoid, ELU), log1p of 0 <= e <= 1 (the BCE loss).
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


# ---------------------------------------------------------------- the blocked product
# The three products of a layer are one kernel, out = a @ b, called with transposed views where
# needed (a transposed view is free: it only swaps the strides):
#     matmul(x, W)      x @ W       _gemm(x, W, out)
#     matmul_tn(x, dy)  x.T @ dy    _gemm(x.T, dy, out)
#     matmul_nt(dy, W)  dy @ W.T    _gemm(W, dy.T, out.T): builds out.T = W @ dy.T, so that the
#                                   large W is read along its rows, the way it is stored, and only
#                                   the small dy (N x M) is read across its rows
# How _gemm works, for a (N, K) and b (K, M):
#   1. Packing. b is copied into column panels of _NR = 32 columns, bpack[jt, k, j] =
#      b[k, 32 jt + j], so that each panel is one contiguous block, read front to back whatever
#      the strides of b were, and padded with zeros past the last column. a is read in place,
#      four rows at a time, when its rows are contiguous; otherwise (x.T) its row tiles are first
#      copied into apack[it, r, k] = a[4 it + r, k].
#   2. The micro-kernel. Output tile (it, jt), 4 x 32 numbers, lives in `acc`, which LLVM keeps
#      in registers (8 AVX-512 registers in float32). For each k it reads 4 numbers of a and 32 of
#      b and does 4 x 32 multiply-adds: acc[r, :] += a[4 it + r, k] * bpack[jt, k, :]. The loop
#      over the 32 columns becomes two 16-wide vector FMA instructions per row.
#   3. The epilogue writes the tile to out, adding the bias and applying the activation on the
#      way, so relu(x @ W + b) costs no pass over memory beyond the product's own.
# Tiles are handed out to threads in one parallel loop, consecutive tiles sharing the operand that
# is larger (it is then read from memory once, the smaller one is re-read from cache). Each output
# element is one chain of FMAs over k = 0, 1, ..., K-1 whatever the tile, the order, the thread
# count or the batch size, so no result depends on any of them.
_MR = 4   # rows of a register tile: the a values broadcast per k
_NR = 32  # columns of a register tile: two 16-float vector registers per row in float32

# What the epilogue does to a finished tile v = (a @ b)[tile]:
_PLAIN, _BIAS, _BIAS_RELU, _BIAS_ELU = 0, 1, 2, 3   # v | v + bias | relu(v + bias) | elu(v + bias)


@_jit(product=True)
def _pack_a_tile(a, it, apack):
    """apack[it, r, :] = a[_MR * it + r, :], for an a whose rows are not contiguous (a = x.T).

    Reads a down its contiguous columns; rows past the end of a are zeros.
    """
    n, kdim = a.shape
    i0 = it * _MR
    rows = min(_MR, n - i0)
    for k in range(kdim):
        column = a[i0:i0 + rows, k]
        for r in range(rows):
            apack[it, r, k] = column[r]
        for r in range(rows, _MR):
            apack[it, r, k] = 0.0


@_jit(product=True)
def _pack_b_panel(b, jt, bpack):
    """bpack[jt, k, j] = b[k, _NR * jt + j]; columns past the end of b are zeros."""
    kdim, m = b.shape
    j0 = jt * _NR
    cols = min(_NR, m - j0)
    if b.strides[1] <= b.strides[0]:                     # rows of b are contiguous
        for k in range(kdim):
            row = b[k, j0:j0 + cols]
            for j in range(cols):
                bpack[jt, k, j] = row[j]
    else:                                                # columns contiguous (b = dy.T)
        for j in range(cols):
            column = b[:, j0 + j]
            for k in range(kdim):
                bpack[jt, k, j] = column[k]
    for k in range(kdim):
        for j in range(cols, _NR):
            bpack[jt, k, j] = 0.0


@_jit(parallel=True, product=True)
def _gemm(a, b, out, bias, epilogue):
    """out[...] = epilogue(a @ b): a (N, K), b (K, M), out (N, M), bias (M,) (empty if unused).

    a, b and out may be transposed views; every thread owns whole output tiles.
    """
    n, kdim = a.shape
    m = b.shape[1]
    n_it = (n + _MR - 1) // _MR                          # row tiles
    n_jt = (m + _NR - 1) // _NR                          # column panels
    rows_contiguous = a.strides[1] <= a.strides[0]
    apack = np.empty((0 if rows_contiguous else n_it, _MR, kdim), dtype=a.dtype)
    bpack = np.empty((n_jt, kdim, _NR), dtype=a.dtype)
    if not rows_contiguous:
        for it in prange(n_it):
            _pack_a_tile(a, it, apack)
    for jt in prange(n_jt):
        _pack_b_panel(b, jt, bpack)

    a_major = n_it * _MR >= n_jt * _NR                   # a is the larger operand: stream it once
    for t in prange(n_it * n_jt):
        if a_major:
            it, jt = t // n_jt, t % n_jt
        else:
            it, jt = t % n_it, t // n_it
        i0 = it * _MR
        if rows_contiguous:                              # the tile's 4 rows of a, read in place
            last = n - 1                                 # (past the end: repeat the last row)
            row0, row1 = a[i0], a[min(i0 + 1, last)]
            row2, row3 = a[min(i0 + 2, last)], a[min(i0 + 3, last)]
        else:
            row0, row1, row2, row3 = apack[it, 0], apack[it, 1], apack[it, 2], apack[it, 3]
        acc = _register_tile(_MR, _NR, a)
        acc[:] = 0.0
        for k in range(kdim):                            # the micro-kernel
            a0, a1, a2, a3 = row0[k], row1[k], row2[k], row3[k]
            for j in range(_NR):
                bkj = bpack[jt, k, j]
                acc[0, j] += a0 * bkj
                acc[1, j] += a1 * bkj
                acc[2, j] += a2 * bkj
                acc[3, j] += a3 * bkj

        j0 = jt * _NR                                    # the epilogue
        rows, cols = min(_MR, n - i0), min(_NR, m - j0)
        if out.strides[1] > out.strides[0]:              # a transposed out (only ever _PLAIN):
            for j in range(cols):                        # write it down its contiguous columns
                column = out[i0:i0 + rows, j0 + j]
                for r in range(rows):
                    column[r] = acc[r, j]
        elif epilogue == _PLAIN:
            for r in range(rows):
                row = out[i0 + r, j0:j0 + cols]
                for j in range(cols):
                    row[j] = acc[r, j]
        else:
            b_row = bias[j0:j0 + cols]
            for r in range(rows):
                row = out[i0 + r, j0:j0 + cols]
                for j in range(cols):
                    v = acc[r, j] + b_row[j]
                    if epilogue == _BIAS_RELU:
                        row[j] = 0.0 if v < 0.0 else v   # `v < 0` is False for NaN: it passes
                    elif epilogue == _BIAS_ELU:
                        row[j] = v if v > 0.0 else _expm1(v)
                    else:
                        row[j] = v


def _no_bias(a):
    return np.empty(0, dtype=a.dtype)


def _flops(a, b):
    """Floating-point operations of a @ b."""
    return 2 * a.shape[0] * a.shape[1] * b.shape[1]


def matmul(a, b):
    """(N, K) @ (K, M) -> (N, M): the forward product x @ W."""
    out = np.empty((a.shape[0], b.shape[1]), dtype=a.dtype)
    _run(_gemm, _flops(a, b), _SERIAL_FLOPS, a, b, out, _no_bias(a), _PLAIN)
    return out


def matmul_nt(a, b):
    """(N, M) @ (K, M).T -> (N, K): the input gradient dy @ W.T, without copying W."""
    out = np.empty((a.shape[0], b.shape[0]), dtype=a.dtype)
    _run(_gemm, _flops(b, a.T), _SERIAL_FLOPS, b, a.T, out.T, _no_bias(a), _PLAIN)  # W @ dy.T
    return out


def matmul_tn(a, b):
    """(N, K).T @ (N, M) -> (K, M): the weight gradient x.T @ dy, without copying x."""
    out = np.empty((a.shape[1], b.shape[1]), dtype=a.dtype)
    _run(_gemm, _flops(a.T, b), _SERIAL_FLOPS, a.T, b, out, _no_bias(a), _PLAIN)
    return out


def _linear(x, W, b, epilogue):
    """The fused forward product epilogue(x @ W + b); b None means no bias."""
    if b is None:
        b = np.zeros(W.shape[1], dtype=W.dtype)
    out = np.empty((x.shape[0], W.shape[1]), dtype=x.dtype)
    _run(_gemm, _flops(x, W), _SERIAL_FLOPS, x, W, out, b, epilogue)
    return out


def linear(x, W, b=None):
    """(N, K) @ (K, M) + (M,) -> (N, M): x @ W + b, the bias added as the product is stored."""
    return _linear(x, W, b, _BIAS)


def linear_relu(x, W, b=None):
    """(N, K), (K, M), (M,) -> (N, M): relu(x @ W + b) in one pass; b None means no bias."""
    return _linear(x, W, b, _BIAS_RELU)


def linear_elu(x, W, b=None):
    """(N, K), (K, M), (M,) -> (N, M): elu(x @ W + b) in one pass; b None means no bias."""
    return _linear(x, W, b, _BIAS_ELU)


# ---------------------------------------------------------------- bias and its gradient
# These are serial: at layer sizes they take microseconds, and starting the thread pool would
# cost about as much as it saves. (The model adds its biases in the product's epilogue.)

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


@_jit(parallel=True)
def _bce_with_logits(logits, x):
    """(N, D), (N, D) -> loss (float64), dlogits (N, D): mean BCE and its gradient."""
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
                loss, grad = _bce_pixel(logits[i, j0 + lane], x[i, j0 + lane], inv_n)
                lanes[0, lane] += loss
                dlogits[i, j0 + lane] = grad
        for j in range(full, d):
            loss, grad = _bce_pixel(logits[i, j], x[i, j], inv_n)
            lanes[0, j - full] += loss
            dlogits[i, j] = grad
        row_loss[i] = _sum_lanes(lanes)
    return _sum_rows(row_loss), dlogits


@_jit(parallel=True)
def _sse_with_logits(logits, x):
    """(N, D), (N, D) -> loss (float64), dlogits (N, D): mean squared error and its gradient."""
    n, d = logits.shape
    dlogits = np.empty((n, d), dtype=logits.dtype)
    row_loss = np.empty(n, dtype=np.float64)
    inv_n = 1.0 / max(n, 1)
    for i in prange(n):
        full = d - d % _LANES
        lanes = _register_tile(1, _LANES, row_loss)
        lanes[:] = 0.0
        for j0 in range(0, full, _LANES):
            for lane in range(_LANES):
                loss, grad = _sse_pixel(logits[i, j0 + lane], x[i, j0 + lane], inv_n)
                lanes[0, lane] += loss
                dlogits[i, j0 + lane] = grad
        for j in range(full, d):
            loss, grad = _sse_pixel(logits[i, j], x[i, j], inv_n)
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
    return _run(_bce_with_logits, logits.size, _SERIAL_ELEMENTS, logits, x)


def sse_with_logits(logits, x):
    """(N, D), (N, D) -> loss (float), dlogits (N, D): sum of squared errors of sigmoid(logits)."""
    return _run(_sse_with_logits, logits.size, _SERIAL_ELEMENTS, logits, x)


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


def compiled_code_on_disk():
    """True if Numba's on-disk cache already holds the product kernel compiled from this file.

    Asks Numba's cache (an internal of Numba's, so any surprise answers False): then the first
    call will load rather than compile, and `train.py` need not warn about a 20-second pause.
    """
    try:
        index = _gemm._cache._cache_file._index_path
        return os.path.getmtime(index) >= os.path.getmtime(__file__)
    except Exception:
        return False
