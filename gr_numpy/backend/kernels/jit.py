"""How every kernel is compiled and run: the Numba options, the thread rule, and the register tile.

The one place that sets Numba options (`_jit`, and full-width vectors on AVX-512), the rule that runs small problems on the calling
thread (`_run`), and `_register_tile`, the stack array LLVM can keep in registers. The kernels in
products.py, vecmath.py and elementwise.py all go through these.
"""

import numba
import numpy as np

# cache=True keeps compiled code on disk, so only the first run pays for compiling. (Numba keys
# each cached kernel on its signature, its bytecode and the CPU it is compiled for: the LLVM target,
# the CPU name and its feature string, which NUMBA_CPU_NAME / NUMBA_CPU_FEATURES override. Code
# compiled for one CPU is never loaded for another, and products.py picks its register tile from
# exactly that CPU name and feature string, so a cached product always has the tile of its CPU.)
# error_model="numpy": a division by zero gives inf or NaN, as in NumPy, instead of raising; it
# also lets LLVM vectorise loops that divide (a check that may raise is an exit from the loop, and
# loops with exits stay scalar). fastmath stays off for the elementwise kernels: IEEE arithmetic,
# one rounding per operation, in the same order as their NumPy twins. The products turn on a
# single fastmath flag, "contract": it lets LLVM fuse a * b + c into one fused multiply-add
# instruction (FMA), rounded once instead of twice. That doubles the arithmetic per instruction and
# changes results in the last bit; tests/test_kernels.py pins what it changes (agreement with NumPy
# within a stated tolerance, and a product whose exact answer only a fused multiply-add gives).
# Full-width vectors on AVX-512. LLVM's tuning for Intel's AVX-512 CPUs (Skylake-X to Emerald
# Rapids) says "prefer-256-bit": its vectorisers then build 8-float ymm vectors, and the products'
# register tile runs on half of each FMA unit. The products are nothing but FMAs, so the tuning is
# turned off here, once, before anything is compiled: a feature string of "-prefer-256-bit" after
# the host's own features (an AMD AVX-512 CPU has no such tuning; the flag changes nothing there).
# It is part of the feature string, so it is part of the cache key too. NUMBA_CPU_FEATURES, when
# set, is left as it is (`python -m bench --isa avx2` compiles for an AVX2 CPU that way).
if numba.config.CPU_FEATURES is None:
    from numba.core.codegen import get_host_cpu_features
    _features = get_host_cpu_features()
    if "+avx512f" in _features.split(","):
        numba.config.CPU_FEATURES = _features + ",-prefer-256-bit"

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
