"""The Numba backend: kernels for a dense layer, its loss and its optimiser, each behind a wrapper.

Each operation is a private jitted body (`_gemm`, `_relu`, ...) and a public wrapper (`matmul`,
`relu`, ...) that lays out its arrays and picks the thread count. The wrappers trust their inputs:
`ops.py` checks every call (checks.py) before it reaches this backend or the NumPy one, so both
refuse the same bad input. `numpy_ops.py` holds the NumPy twin of each kernel;
`tests/test_kernels.py` checks every kernel against its twin.

One idea a file:
  jit.py          the Numba options (set in one place), the one-thread rule for small problems,
                  and the register tile (a stack array LLVM keeps in registers)
  products.py     the three products of a layer, blocked for the cache and the registers (no BLAS
                  call), with the bias and the activation fused into the forward one; the register
                  tile per vector instruction set (`ISA`, `TILE`)
  vecmath.py      exp, expm1 and log1p as plain arithmetic, so that loops calling them vectorise
  elementwise.py  the ReLU/ELU gradients, the bias gradient, the reconstruction losses with
                  their gradients in one pass, and the whole Adam update in one pass
"""

import os

from . import products
from .elementwise import (adam_update, bce_with_logits, col_sum, elu_backward, relu,
                          relu_backward, sse_with_logits)
from .products import ISA, TILE, linear, linear_elu, linear_relu, matmul, matmul_nt, matmul_tn
from .vecmath import exp_nonpositive, expm1_nonpositive, log1p_unit

__all__ = ["ISA", "TILE", "adam_update", "bce_with_logits", "col_sum",
           "compiled_code_on_disk", "elu_backward",
           "exp_nonpositive", "expm1_nonpositive", "linear", "linear_elu", "linear_relu",
           "log1p_unit", "matmul", "matmul_nt", "matmul_tn", "relu", "relu_backward",
           "sse_with_logits"]


def compiled_code_on_disk():
    """True if Numba's on-disk cache already holds the product kernel compiled from its file.

    Asks Numba's cache (an internal of Numba's, so any surprise answers False): then the first
    call will load rather than compile, and `train.py` need not warn about a 20-second pause.
    """
    try:
        index = products._gemm._cache._cache_file._index_path
        return os.path.getmtime(index) >= os.path.getmtime(products.__file__)
    except Exception:
        return False
