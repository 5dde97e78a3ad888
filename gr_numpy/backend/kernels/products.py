"""The three products of a dense layer, blocked for the cache and the CPU's registers (no BLAS).

`matmul` (x @ W), `matmul_nt` (dy @ W.T) and `matmul_tn` (x.T @ dy) are one kernel, `_gemm`,
called with transposed views; `linear`, `linear_relu` and `linear_elu` are the forward product
with the bias and the activation applied as each tile is stored. `python -m bench` measures them
against NumPy's `@` (OpenBLAS); numpy_ops.py holds their twins.

The register tile is sized for the vector instructions of the CPU the code is compiled for
(`ISA`, `TILE`, chosen once at import; see "the register tile" below).

Glossary: N rows (the batch); K and M feature sizes. The letters are generic here; in a layer
y = x @ W + b, x is (N, K), W is (K, M), y and dy are (N, M).

Every parallel loop gives each thread whole output tiles to own: no two threads ever write the
same element, and each element is computed by the same operations in the same order whatever the
thread count or the tile, so results are bit-identical from run to run and from 1 thread to many.
"""

import platform

import numba
import numpy as np
from numba import prange

from .jit import _SERIAL_FLOPS, _jit, _register_tile, _run
from .vecmath import _expm1


# ---------------------------------------------------------------- the register tile, per CPU
# The micro-kernel keeps an _MR x _NR tile of the output in vector registers while it runs down
# k: per k, _MR broadcasts of a, _NR / width loads of b, _MR * _NR / width fused multiply-adds
# (width: floats per register). The tile must leave room for the loads: LLVM loads all _MR
# broadcasts of a step before its FMAs, and the b vectors one at a time, so a tile fits if
#     accumulators + _MR + 1 <= vector registers,
# or it spills to the stack inside the loop and runs 3 to 5 times slower. Within that limit more
# accumulators hide more of the FMA's latency (a CPU with 2 FMA units of latency 4-5 needs 8 to 10
# in flight). Every element is the same chain of FMAs over k whatever the tile, so the tile changes
# the speed only, never a result.
TILES = {  # float32 (rows, columns), and why
    # 32 zmm registers of 16 floats: 16 accumulators + 8 broadcasts + 1 = 25. Measured on an
    # Intel AVX-512 CPU (one thread, the twelve products of a default step, each tile against
    # OpenBLAS in the same run, three rounds): 8 x 32 at 0.84-0.96x OpenBLAS; 5, 6, 7 x 32 at
    # 0.78-0.87x; 4 x 32 and 4 x 48 at 0.77-0.83x; 8 x 16 and 12 x 16 at 0.61-0.69x.
    "avx512": (8, 32),
    # 16 ymm registers of 8 floats: 10 accumulators + 5 broadcasts + 1 = 16. Measured on an AVX2
    # CPU against 4 x 16 and 3 x 24 (about 4% and 7% slower) and 6 x 16 and 4 x 24 (BLIS's and
    # OpenBLAS's shapes; 19 and 17 registers, so here they spill and run 3 to 5 times slower).
    "avx2": (5, 16),
    # 128-bit vectors, chosen on paper and not measured: NEON has 32 registers of 4 floats,
    # 16 accumulators + 4 + 1 = 21; SSE has 16 and no FMA (a multiply, then an add from a
    # temporary register), 8 accumulators + 4 + 1 + 1 = 14.
    "neon": (4, 16),
    "sse": (4, 8),
}


def compile_target():
    """(CPU name, feature string) that Numba compiles for: NUMBA_CPU_NAME and NUMBA_CPU_FEATURES
    when set, else the host's, exactly as Numba's code generator (and its cache key) sees them."""
    from llvmlite import binding
    from numba.core.codegen import get_host_cpu_features
    config = numba.config
    name = config.CPU_NAME if config.CPU_NAME is not None else binding.get_host_cpu_name()
    features = config.CPU_FEATURES if config.CPU_FEATURES is not None else get_host_cpu_features()
    return name, features


def vector_isa(features, machine=None):
    """The widest vector instruction set in an LLVM feature string ("+avx2,-avx512f,...")."""
    enabled = {f[1:] for f in features.split(",") if f.startswith("+")}
    if "avx512f" in enabled:
        return "avx512"
    if "avx2" in enabled or "avx" in enabled:
        return "avx2"
    machine = (machine or platform.machine()).lower()
    if "neon" in enabled or machine in ("arm64", "aarch64"):
        return "neon"
    return "sse"


ISA = vector_isa(compile_target()[1])
TILE = TILES[ISA]


# ---------------------------------------------------------------- the blocked product
# The three products of a layer are one kernel, out = a @ b, called with transposed views where
# needed (a transposed view is free: it only swaps the strides):
#     matmul(x, W)      x @ W       _gemm(x, W, out)
#     matmul_tn(x, dy)  x.T @ dy    _gemm(x.T, dy, out)
#     matmul_nt(dy, W)  dy @ W.T    _gemm(W, dy.T, out.T): builds out.T = W @ dy.T, so that the
#                                   large W is read along its rows, the way it is stored, and only
#                                   the small dy (N x M) is read across its rows
# How _gemm works, for a (N, K) and b (K, M), one block of b at a time (kc rows by nc columns;
# see "Blocks" below: only a large x @ W has more than one):
#   1. Packing. The block of b is copied into column panels of _NR columns, bpack[jt, k, j] =
#      b[k, _NR jt + j], so that each panel is one contiguous block, read front to back whatever
#      the strides of b were, and padded with zeros past the last column. a is read in place,
#      _MR rows at a time, when its rows are contiguous; otherwise (x.T) its row tiles are first
#      copied into apack[it, r, k] = a[_MR it + r, k].
#   2. The micro-kernel (_tile_product). Output tile (it, jt), _MR x _NR numbers, lives in `acc`,
#      which LLVM keeps in registers (8 x 32 on AVX-512: 16 zmm registers in float32). For each k
#      it reads _MR numbers of a and _NR of b and does _MR x _NR multiply-adds:
#      acc[r, :] += a[_MR it + r, k] * bpack[jt, k, :]. The loop over the _NR columns becomes
#      _NR / width vector FMA instructions per row (two 16-wide ones per row on AVX-512).
#   3. The epilogue writes the tile to out, adding the bias and applying the activation on the
#      way, so relu(x @ W + b) costs no pass over memory beyond the product's own. (Before the
#      last k block it writes the partial sums as they are, and the next block starts from them.)
# Tiles are handed out to threads in one parallel loop, consecutive tiles sharing the operand that
# is larger (it is then read from memory once, the smaller one is re-read from cache). Each output
# element is one chain of FMAs over k = 0, 1, ..., K-1 whatever the tile, the order, the thread
# count or the batch size, so no result depends on any of them.
_MR, _NR = TILE   # rows (the a values broadcast per k) and columns of the register tile

# What the epilogue does to a finished tile v = (a @ b)[tile]:
_PLAIN, _BIAS, _BIAS_RELU, _BIAS_ELU = 0, 1, 2, 3   # v | v + bias | relu(v + bias) | elu(v + bias)


@_jit(product=True)
def _pack_a_tile(a, it, k0, k1, apack):
    """apack[it, r, :k1 - k0] = a[_MR * it + r, k0:k1], for an a whose rows are not contiguous
    (a = x.T). Reads a down its contiguous columns; rows past the end of a are zeros.
    """
    n = a.shape[0]
    i0 = it * _MR
    rows = min(_MR, n - i0)
    for k in range(k0, k1):
        column = a[i0:i0 + rows, k]
        for r in range(rows):
            apack[it, r, k - k0] = column[r]
        for r in range(rows, _MR):
            apack[it, r, k - k0] = 0.0


@_jit(product=True)
def _pack_b_panel(b, jt, jt0, k0, k1, bpack):
    """bpack[jt - jt0, k - k0, j] = b[k, _NR * jt + j] for k0 <= k < k1; columns past the end
    of b are zeros."""
    m = b.shape[1]
    j0 = jt * _NR
    cols = min(_NR, m - j0)
    p = jt - jt0
    if b.strides[1] <= b.strides[0]:                     # rows of b are contiguous
        for k in range(k0, k1):
            row = b[k, j0:j0 + cols]
            for j in range(cols):
                bpack[p, k - k0, j] = row[j]
    else:                                                # columns contiguous (b = dy.T)
        for j in range(cols):
            column = b[k0:k1, j0 + j]
            for k in range(k1 - k0):
                bpack[p, k, j] = column[k]
    for k in range(k1 - k0):
        for j in range(cols, _NR):
            bpack[p, k, j] = 0.0


@_jit(product=True, inline=True)
def _tile_product(rows, first, last, bpack, jt, kdim, acc):
    """The micro-kernel: acc[r, :] += sum over k < kdim of
    rows[min(first + r, last), k] * bpack[jt, k, :].

    acc is the (_MR, _NR) register tile. The loop over r is innermost in the source so that LLVM
    unrolls it and vectorises the loop over j; per k the registers hold the tile, the _NR / width
    vectors of b and the _MR broadcasts of a. Each element is one chain of FMAs, k = 0, 1, ...
    """
    for k in range(kdim):
        for j in range(_NR):
            bkj = bpack[jt, k, j]
            for r in range(_MR):
                acc[r, j] += rows[min(first + r, last), k] * bkj


@_jit(parallel=True, product=True)
def _gemm(a, b, out, bias, epilogue, kc, nc):
    """out[...] = epilogue(a @ b): a (N, K), b (K, M), out (N, M), bias (M,) (empty if unused).

    a, b and out may be transposed views; every thread owns whole output tiles. Blocks: kc rows
    of b by nc columns at a time (nc a multiple of _NR).
    """
    n, kdim = a.shape
    m = b.shape[1]
    n_it = (n + _MR - 1) // _MR                          # row tiles
    n_jt = (m + _NR - 1) // _NR                          # column panels
    kc = max(min(kc, kdim), 1)                           # rows of b per k block
    n_kb = max((kdim + kc - 1) // kc, 1)                 # k blocks (one, if K is 0)
    jc = max(nc // _NR, 1)                               # panels per column block
    rows_contiguous = a.strides[1] <= a.strides[0]
    apack = np.empty((0 if rows_contiguous else n_it, _MR, kc), dtype=a.dtype)
    bpack = np.empty((min(jc, n_jt), kc, _NR), dtype=a.dtype)
    for jt0 in range(0, n_jt, jc):                       # column blocks of b and out
        jt1 = min(jt0 + jc, n_jt)
        for kb in range(n_kb):                           # k blocks, one after the other
            k0, k1 = kb * kc, min((kb + 1) * kc, kdim)
            if not rows_contiguous:
                for it in prange(n_it):
                    _pack_a_tile(a, it, k0, k1, apack)
            for jt in prange(jt0, jt1):
                _pack_b_panel(b, jt, jt0, k0, k1, bpack)
            nb = jt1 - jt0
            a_major = n_it * _MR >= nb * _NR
            for t in prange(n_it * nb):
                if a_major:
                    it, p = t // nb, t % nb
                else:
                    it, p = t % n_it, t // n_it
                jt = jt0 + p
                i0, j0 = it * _MR, jt * _NR
                rows, cols = min(_MR, n - i0), min(_NR, m - j0)
                acc = _register_tile(_MR, _NR, a)
                acc[:] = 0.0
                if k0 > 0:                               # continue the sums of the blocks before
                    for r in range(rows):
                        for j in range(cols):
                            acc[r, j] = out[i0 + r, j0 + j]
                if rows_contiguous:                      # the tile's _MR rows of a, read in place
                    _tile_product(a[:, k0:k1], i0, n - 1, bpack, p, k1 - k0, acc)
                else:
                    _tile_product(apack[it], 0, _MR - 1, bpack, p, k1 - k0, acc)

                # the epilogue, after the last k block; before it, the partial sums as they are
                finish = epilogue if k1 == kdim else _PLAIN
                if out.strides[1] > out.strides[0]:      # a transposed out (only ever _PLAIN):
                    for j in range(cols):                # write it down its contiguous columns
                        column = out[i0:i0 + rows, j0 + j]
                        for r in range(rows):
                            column[r] = acc[r, j]
                elif finish == _PLAIN:
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
                            if finish == _BIAS_RELU:
                                row[j] = 0.0 if v < 0.0 else v   # `v < 0` is False for NaN
                            elif finish == _BIAS_ELU:
                                row[j] = v if v > 0.0 else _expm1(v)
                            else:
                                row[j] = v


def _no_bias(a):
    return np.empty(0, dtype=a.dtype)


def _flops(a, b):
    """Floating-point operations of a @ b."""
    return 2 * a.shape[0] * a.shape[1] * b.shape[1]


# Blocks. An unblocked product reads a whole K x _NR panel of b for every tile: past the L1
# cache once K is large (2048 x 32 floats is 256 KB). For a product with many rows it pays to run
# K in blocks of _KC and the columns in blocks of _NC: the panel slice a tile reads is then
# _KC x _NR (64 KB at most) and the block of b in use _KC x _NC (1 MB, in L2). Each element stays
# one chain of FMAs in order over k: a block continues the partial sums the block before stored.
# Measured on an Intel AVX-512 CPU, one thread, the paper's layers at batch 2048: x @ W 30-70%
# faster blocked, and dy @ W.T too when computed as it stands (not as (W @ dy.T).T, whose
# transposed out makes the partial sums slow to store and reload); x.T @ dy gained on some
# shapes and lost on others, so it is never blocked. At batch 128 blocking lost up to 13%.
# So blocks are used for a product whose a has contiguous rows, whose out is not transposed,
# and which has at least _BLOCKED_ROWS rows.
_KC, _NC, _BLOCKED_ROWS = 512, 512, 512
_WHOLE = 1 << 62   # a block larger than any matrix: no blocking


def _product(a, b, out, bias, epilogue):
    """out[...] = epilogue(a @ b) by _gemm, in blocks where they pay (on one thread if small)."""
    forward = a.strides[1] <= a.strides[0] and out.strides[1] <= out.strides[0]
    kc, nc = (_KC, _NC) if forward and a.shape[0] >= _BLOCKED_ROWS else (_WHOLE, _WHOLE)
    _run(_gemm, _flops(a, b), _SERIAL_FLOPS, a, b, out, bias, epilogue, kc, nc)


def matmul(a, b):
    """(N, K) @ (K, M) -> (N, M): the forward product x @ W."""
    out = np.empty((a.shape[0], b.shape[1]), dtype=a.dtype)
    _product(a, b, out, _no_bias(a), _PLAIN)
    return out


def matmul_nt(a, b):
    """(N, M) @ (K, M).T -> (N, K): the input gradient dy @ W.T, without copying W."""
    out = np.empty((a.shape[0], b.shape[0]), dtype=a.dtype)
    if a.shape[0] >= _BLOCKED_ROWS:      # many rows: dy @ W.T as it stands, in blocks (below)
        _product(a, b.T, out, _no_bias(a), _PLAIN)
    else:
        _product(b, a.T, out.T, _no_bias(a), _PLAIN)                   # out.T = W @ dy.T
    return out


def matmul_tn(a, b):
    """(N, K).T @ (N, M) -> (K, M): the weight gradient x.T @ dy, without copying x."""
    out = np.empty((a.shape[1], b.shape[1]), dtype=a.dtype)
    _product(a.T, b, out, _no_bias(a), _PLAIN)
    return out


def _linear(x, W, b, epilogue):
    """The fused forward product epilogue(x @ W + b); b None means no bias."""
    if b is None:
        b = np.zeros(W.shape[1], dtype=W.dtype)
    out = np.empty((x.shape[0], W.shape[1]), dtype=x.dtype)
    _product(x, W, out, b, epilogue)
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
