"""Each Numba kernel against its NumPy twin, plus the input checks and the backend switch.

A product is compared with a tolerance relative to |a| @ |b|, the scale its rounding error
grows with: float64 to 1e-12, float32 to 1e-5. The products use fused multiply-adds (the one
fastmath flag they turn on, "contract"); `test_products_use_fused_multiply_add` pins that, and the
tolerance above is what it may change. Elementwise ops do the same roundings as their twins, so
they must match exactly (ReLU, ELU gradient, Adam); the losses call exp and log1p, whose last bit
differs between NumPy and the C library, so they match to a few units in the last place. The small
shapes run again with NUMBA_DISABLE_JIT=1, so the kernels' plain-Python bodies are tested too.
"""

import os
import platform
import re
import subprocess
import sys
from pathlib import Path

import numba
import numpy as np
import pytest

from bench import suite as bench
from gr_numpy.backend import kernels, numpy_ops, ops
from gr_numpy.backend.kernels import products

JIT_ENABLED = not numba.config.DISABLE_JIT
REPO_ROOT = Path(__file__).resolve().parents[1]

# (N, K, M): x is (N, K), W is (K, M), dy is (N, M). None is a multiple of the kernels' blocks.
SMALL_SHAPES = [(1, 1, 1), (1, 5, 7), (3, 1, 7), (3, 5, 1), (3, 5, 7), (17, 33, 9), (19, 37, 41)]
LAYER_SHAPES = [(128, 784, 512), (128, 512, 256), (128, 256, 20), (128, 2048, 512)]
# As plain Python (NUMBA_DISABLE_JIT=1) the layer sizes would take minutes, so they are part of
# the parametrisation only when JIT is on. They are never skipped: they run, or they are absent.
SHAPES = SMALL_SHAPES + (LAYER_SHAPES if JIT_ENABLED else [])
SHAPE_IDS = ["x".join(map(str, s)) for s in SHAPES]

DTYPES = [np.float64, np.float32]
RTOL = {np.float64: 1e-12, np.float32: 1e-5}

# Each product form, as the layer uses it: which of (x, W, dy) it takes.
FORMS = {
    "matmul": lambda x, W, dy: (x, W),      # y = x @ W
    "matmul_nt": lambda x, W, dy: (dy, W),  # dx = dy @ W.T
    "matmul_tn": lambda x, W, dy: (x, dy),  # dW = x.T @ dy
}


def layer_arrays(shape, dtype, seed=0):
    """x (N, K), W (K, M), dy (N, M), drawn from a normal distribution."""
    n, k, m = shape
    rng = np.random.default_rng(seed)
    return tuple(rng.standard_normal(s).astype(dtype) for s in [(n, k), (k, m), (n, m)])


def assert_close(got, want, scale, rtol):
    """Assert |got - want| <= rtol * scale everywhere; on failure show the worst element."""
    assert got.shape == want.shape, f"shape {got.shape}, expected {want.shape}"
    assert got.dtype == want.dtype, f"dtype {got.dtype}, expected {want.dtype}"
    err = np.abs(got.astype(np.float64) - want.astype(np.float64)) / np.maximum(scale, 1e-300)
    worst = tuple(int(i) for i in np.unravel_index(np.argmax(err), err.shape))
    assert err[worst] <= rtol, (f"relative error {err[worst]:.3g} > {rtol:g} at {worst}: "
                                f"got {float(got[worst])!r}, expected {float(want[worst])!r}")


def inputs_unchanged(fn, *args):
    """Call fn(*args) and assert it modified no argument and returns no view of one."""
    before = [a.copy() for a in args]
    out = fn(*args)
    for a, b in zip(args, before):
        np.testing.assert_array_equal(a, b)
        assert not np.shares_memory(out, a)
    return out


# ---------------------------------------------------------------- products

@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
@pytest.mark.parametrize("form", FORMS)
def test_product_matches_numpy_twin(form, shape, dtype):
    a, b = FORMS[form](*layer_arrays(shape, dtype))
    got = inputs_unchanged(getattr(kernels, form), a, b)
    want = getattr(numpy_ops, form)(a, b)
    scale = getattr(numpy_ops, form)(np.abs(a).astype(np.float64), np.abs(b).astype(np.float64))
    assert_close(got, want, scale, RTOL[dtype])


def test_assert_close_catches_a_small_error():
    # Negative control: the float64 tolerance is tight enough to see one wrong term in a sum.
    a, b = layer_arrays((4, 50, 3), np.float64)[:2]
    want, scale = a @ b, np.abs(a) @ np.abs(b)
    almost = want.copy()
    almost[2, 1] += 1e-10 * scale[2, 1]
    with pytest.raises(AssertionError, match=r"at \(2, 1\)"):
        assert_close(almost, want, scale, RTOL[np.float64])


@pytest.mark.parametrize("form", FORMS)
def test_product_accepts_strided_views(form):
    # A Fortran-order array and a strided slice (like W.T or W[:, ::2]) are not C-contiguous;
    # the wrapper copies them and the result is the same.
    a, b = FORMS[form](*layer_arrays((6, 9, 11), np.float64))
    a_view, b_view = np.asfortranarray(a), np.repeat(b, 2, axis=1)[:, ::2]
    assert not a_view.flags.c_contiguous and not b_view.flags.c_contiguous
    np.testing.assert_array_equal(getattr(kernels, form)(a_view, b_view),
                                  getattr(kernels, form)(a, b))


@pytest.mark.parametrize("form", FORMS)
def test_product_is_bit_identical_across_calls_and_thread_counts(form):
    # Each thread owns whole output tiles and sums each element in a fixed order, so the result
    # does not depend on the run or on the thread count.
    shape = LAYER_SHAPES[0] if JIT_ENABLED else SMALL_SHAPES[-1]
    a, b = FORMS[form](*layer_arrays(shape, np.float32))
    fn = getattr(kernels, form)
    first = fn(a, b)
    np.testing.assert_array_equal(fn(a, b), first)
    threads = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one_thread = fn(a, b)
    finally:
        numba.set_num_threads(threads)
    np.testing.assert_array_equal(one_thread, first)


def test_small_problems_run_on_one_thread_and_restore_the_thread_count(monkeypatch):
    # Starting a parallel loop can cost milliseconds on a busy machine, so small products run on
    # the calling thread; the caller's thread count is restored afterwards, even after an error.
    seen = []
    monkeypatch.setattr(products, "_gemm", lambda *args: seen.append(numba.get_num_threads()))
    threads = numba.get_num_threads()
    small, big = np.ones((4, 4)), np.ones((128, 128))          # 128 flops; 4 million flops
    kernels.matmul(small, small)
    kernels.matmul(big, big)
    assert seen == [1, threads]
    assert numba.get_num_threads() == threads

    def fails(*args):
        raise RuntimeError("inside the kernel")
    monkeypatch.setattr(products, "_gemm", fails)
    with pytest.raises(RuntimeError):
        kernels.matmul(small, small)
    assert numba.get_num_threads() == threads


def test_product_rows_do_not_depend_on_the_batch():
    # Each element is one chain of multiply-adds over k, whichever tile or batch it is in: a row
    # of x @ W is bit-identical whether x has 1, 5 or all of its rows.
    x, W, dy = layer_arrays((37, 45, 41), np.float32)
    for form, (a, b) in [("matmul", (x, W)), ("matmul_nt", (dy, W))]:
        full = getattr(kernels, form)(a, b)
        for i, j in [(0, 1), (5, 10), (36, 37)]:
            np.testing.assert_array_equal(getattr(kernels, form)(a[i:j], b), full[i:j])


@pytest.mark.parametrize("name", ["matmul", "matmul_nt", "linear", "linear_relu", "linear_elu"])
def test_blocked_product_is_bit_identical_to_the_whole(monkeypatch, name):
    # A large x @ W (or dy @ W.T) runs in k blocks and column blocks; each block continues the
    # partial sums the one before stored, so every element is still one chain of multiply-adds
    # over k in order. Blocks of 7 rows of b by one panel, on every product, cut every tile's
    # sum into pieces. (dy @ W.T with many rows is computed as it stands, not as (W @ dy.T).T:
    # the same products, a * b = b * a, in the same order.)
    x, W, dy = layer_arrays((37, 45, 41), np.float32)
    b = np.linspace(-1, 1, 41).astype(np.float32)
    fn = getattr(kernels, name)
    args = {"matmul": (x, W), "matmul_nt": (dy, W)}.get(name, (x, W, b))
    whole = fn(*args)
    blocks = []
    gemm = products._gemm
    monkeypatch.setattr(products, "_gemm", lambda *a: (blocks.append(a[-2:]), gemm(*a))[1])
    monkeypatch.setattr(products, "_KC", 7)
    monkeypatch.setattr(products, "_NC", products._NR)
    monkeypatch.setattr(products, "_BLOCKED_ROWS", 1)
    np.testing.assert_array_equal(fn(*args), whole)
    assert blocks == [(7, products._NR)]                 # the blocked path did run


def _fma_example(dtype):
    """A one-row product a @ b whose exact value is `tiny`, but 0 if a * b + c rounds twice.

    With u = 2**-13 (float32) or 2**-27 (float64): (1 + u)**2 = 1 + 2u + u**2, which rounds to
    1 + 2u, so -(1 + 2u) * 1 + (1 + u) * (1 + u) is 0 with a separate multiply and add and u**2
    with a fused multiply-add (one rounding of the exact result).
    """
    u = 2.0 ** (-13 if dtype == np.float32 else -27)
    a = np.array([[-(1 + 2 * u), 1 + u]], dtype=dtype)     # (1, 2)
    b = np.array([[1.0], [1 + u]], dtype=dtype)            # (2, 1)
    return a, b, u * u


def test_fma_example_is_zero_without_fusion():
    # Negative control for test_products_use_fused_multiply_add: rounding the product first loses
    # the answer.
    for dtype in DTYPES:
        a, b, tiny = _fma_example(dtype)
        product = a[0, 1] * b[1, 0]                        # a dtype scalar: rounded to dtype
        assert a[0, 0] * b[0, 0] + product == 0 and tiny > 0


def _host_has(feature):
    """True when the kernels are compiled (JIT on) for an x86-64 CPU with this LLVM feature."""
    from llvmlite import binding
    return (JIT_ENABLED and platform.machine() in ("x86_64", "AMD64")
            and f"+{feature}" in binding.get_host_cpu_features().flatten())


# The next two tests are about the compiled code on x86-64; like the layer shapes above, they are
# defined only where they apply (JIT on, a CPU with FMA / AVX-512), never skipped.
if _host_has("fma"):
    @pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
    def test_products_use_fused_multiply_add(dtype):
        # What fastmath={"contract"} changes: acc + a * b is one FMA, rounded once.
        a, b, tiny = _fma_example(dtype)
        assert kernels.matmul(a, b)[0, 0] == tiny
        assert kernels.matmul_nt(a, np.ascontiguousarray(b.T))[0, 0] == tiny
        assert kernels.matmul_tn(np.ascontiguousarray(a.T), b)[0, 0] == tiny
        assert kernels.linear(a, b, np.zeros(1, dtype))[0, 0] == tiny



# ---------------------------------------------------------------- the register tile of each ISA

def test_vector_isa_is_read_from_the_feature_string():
    assert products.vector_isa("+avx,+avx2,+fma,+avx512f,+avx512bw") == "avx512"
    assert products.vector_isa("+avx,+avx2,+fma,-avx512f,-avx512bw") == "avx2"
    assert products.vector_isa("+sse2,+sse4.2,-avx,-avx2", machine="x86_64") == "sse"
    assert products.vector_isa("+neon,+fp-armv8", machine="aarch64") == "neon"
    assert kernels.ISA == products.vector_isa(products.compile_target()[1])
    assert kernels.TILE == products.TILES[kernels.ISA]


@pytest.mark.parametrize("isa, width, registers, spare", [("avx512", 16, 32, 0), ("avx2", 8, 16, 0),
                                                          ("neon", 4, 32, 0), ("sse", 4, 16, 1)])
def test_each_tile_leaves_room_for_its_loads(isa, width, registers, spare):
    # The rule the tiles were chosen by: the accumulators, all _MR broadcasts of a (LLVM loads
    # them all before the FMAs) and one b vector fit in the vector registers; SSE, with no FMA,
    # also needs a temporary for the product.
    rows, cols = products.TILES[isa]
    assert cols % width == 0
    assert rows * cols // width + rows + 1 + spare <= registers


def test_spill_finder_sees_a_spilled_tile():
    # Negative control for the assembly tests below: lines from the AVX2 build of a 4 x 32 tile
    # (16 accumulators + 4 broadcasts + 1 > 16 registers).
    spilled = """\tvmovups\t%ymm6, 208(%rsp)
\tvbroadcastss\t(%r14,%rsi,4), %ymm0
\tvmovups\t-96(%rcx,%rax), %ymm4
\tvmovups\t496(%rsp), %ymm6
\tvfmadd231ps\t%ymm4, %ymm0, %ymm5"""
    assert bench.spilled_accumulators(spilled) == ["vmovups\t%ymm6, 208(%rsp)",
                                                   "vmovups\t496(%rsp), %ymm6"]


# The compiled code of each ISA's tile, built in a fresh interpreter that compiles for that ISA
# (bench.isa_environment: NUMBA_CPU_NAME / NUMBA_CPU_FEATURES, its own NUMBA_CACHE_DIR). An
# x86-64 CPU can compile for both; it runs the code only if it has the instructions, and then
# also checks that the products are bit-identical on 1 and on all threads. Defined only where it
# applies (JIT on, x86-64), never skipped.
ISA_PROBE = """
import json, re, numba, numpy as np
from bench.suite import micro_kernel_asm
from gr_numpy.backend import kernels
result = {"isa": kernels.ISA, "tile": list(kernels.TILE), "loop": micro_kernel_asm()}
if RUN:
    rng = np.random.default_rng(0)
    x, W, dy = (rng.standard_normal(s).astype(np.float32) for s in [(128, 784), (784, 512), (128, 512)])
    def all_forms():
        return [kernels.matmul(x, W), kernels.matmul_nt(dy, W), kernels.matmul_tn(x, dy),
                kernels.linear_elu(x, W, W[0].copy())]
    many = all_forms()
    numba.set_num_threads(1)
    one = all_forms()
    result["same_bits"] = all(np.array_equal(a, b) for a, b in zip(many, one))
    result["threads"] = numba.config.NUMBA_NUM_THREADS
    result["close"] = bool(np.allclose(many[0], x @ W, rtol=1e-4, atol=1e-3))
print(json.dumps(result))
"""

if JIT_ENABLED and platform.machine() in ("x86_64", "AMD64"):
    @pytest.mark.parametrize("isa, register", [("avx2", "ymm"), ("avx512", "zmm")])
    def test_micro_kernel_keeps_its_tile_in_registers_in_subprocess(isa, register, tmp_path):
        # The micro-kernel's loop is packed float32 FMAs on the ISA's registers with no store of
        # a vector register and no reload from the stack: the tile stays in registers.
        runs = _host_has("avx512f" if isa == "avx512" else "avx2")
        result = run_python(["-c", ISA_PROBE.replace("RUN", str(runs))],
                            **bench.isa_environment(isa, str(tmp_path / "numba-cache")))
        assert result.returncode == 0, result.stderr[-3000:]
        probe = __import__("json").loads(result.stdout.strip().splitlines()[-1])
        assert probe["isa"] == isa and tuple(probe["tile"]) == products.TILES[isa]
        rows, cols = products.TILES[isa]
        width = 16 if register == "zmm" else 8
        fmas = re.findall(rf"vfmadd\w+ps\s+%{register}", probe["loop"])
        assert len(fmas) >= rows * cols // width, probe["loop"]
        assert not bench.spilled_accumulators(probe["loop"]), probe["loop"]
        if runs:
            assert probe["close"] and probe["same_bits"], probe

    # The build for this host itself, as train.py gets it. LLVM's tuning for Intel's AVX-512
    # CPUs prefers 256-bit vectors, which ran this tile on ymm registers (half of each FMA unit)
    # until jit.py turned the tuning off; on an AVX-512 host the loop must be zmm FMAs.
    def test_native_build_uses_the_widest_vectors_in_subprocess(tmp_path):
        assert not any(k.startswith("NUMBA_CPU_") for k in os.environ), "unset NUMBA_CPU_*"
        result = run_python(["-c", ISA_PROBE.replace("RUN", "False")],
                            NUMBA_CACHE_DIR=str(tmp_path / "numba-cache"))
        assert result.returncode == 0, result.stderr[-3000:]
        probe = __import__("json").loads(result.stdout.strip().splitlines()[-1])
        register = "zmm" if _host_has("avx512f") else "ymm"
        rows, cols = products.TILES[probe["isa"]]
        width = 16 if register == "zmm" else 8
        fmas = re.findall(rf"vfmadd\w+ps\s+%{register}", probe["loop"])
        assert len(fmas) >= rows * cols // width, probe["loop"]


# ---------------------------------------------------------------- fused forward passes

FUSED = {"linear": "x @ W + b", "linear_relu": "relu(x @ W + b)", "linear_elu": "elu(x @ W + b)"}


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
@pytest.mark.parametrize("name", FUSED)
def test_fused_linear_matches_numpy_twin(name, shape, dtype, bias):
    x, W, _ = layer_arrays(shape, dtype)
    b = layer_arrays(shape, dtype, seed=2)[1][0].copy() if bias else None   # (M,)
    args = (x, W, b) if bias else (x, W)
    got = inputs_unchanged(getattr(kernels, name), *args)
    want = getattr(numpy_ops, name)(x, W, b)
    # relu and elu have slopes <= 1, so the product's error bound carries over.
    scale = np.abs(x).astype(np.float64) @ np.abs(W).astype(np.float64)
    if bias:
        scale = scale + np.abs(b)
    assert_close(got, want, scale, RTOL[dtype])


def test_fused_relu_and_elu_edge_values():
    # An identity W makes the fused output the activation of x + b itself.
    x = np.array([[-1.0, -0.0, 0.0, 2.0, np.nan, -np.inf, np.inf, -50.0]])
    eye, b = np.eye(8), np.zeros(8)
    with np.errstate(invalid="ignore"):      # inf * 0 inside the product is NaN; fine here
        got_relu = kernels.linear_relu(x[:, :4], eye[:4, :4], b[:4])
        got_elu = kernels.linear_elu(x[:, [0, 3, 7]], eye[:3, :3], b[:3])
    np.testing.assert_array_equal(got_relu, [[0, 0, 0, 2]])
    np.testing.assert_allclose(got_elu, [[np.expm1(-1.0), 2.0, -1.0]], rtol=1e-15)


# ---------------------------------------------------------------- bias, ReLU

@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_elementwise_and_col_sum_match_numpy_twin(shape, dtype):
    _, W, dy = layer_arrays(shape, dtype)
    z = layer_arrays(shape, dtype, seed=1)[2]  # (N, M), a pre-activation
    # max(z, 0) and the ReLU mask do no rounding: they must match exactly.
    pairs = [(inputs_unchanged(kernels.relu, z), numpy_ops.relu(z)),
             (inputs_unchanged(kernels.relu_backward, dy, z), numpy_ops.relu_backward(dy, z))]
    for got, want in pairs:
        assert got.dtype == dtype
        np.testing.assert_array_equal(got, want)
    # A sum of N numbers, whose order may differ from NumPy's: a tolerance.
    assert_close(inputs_unchanged(kernels.col_sum, dy), numpy_ops.col_sum(dy),
                 np.abs(dy).astype(np.float64).sum(0), RTOL[dtype])


def test_relu_edge_values():
    x = np.array([[-1.0, -0.0, 0.0, 2.0, np.nan, -np.inf, np.inf]])
    dout = np.array([[1.0, 2.0, 3.0, 4.0, 5.0, np.nan, np.inf]])
    np.testing.assert_array_equal(kernels.relu(x), numpy_ops.relu(x))
    np.testing.assert_array_equal(kernels.relu(x), [[0, 0, 0, 2, np.nan, 0, np.inf]])
    # Off units (x <= 0, or NaN) pass exactly 0, whatever arrives from above.
    np.testing.assert_array_equal(kernels.relu_backward(dout, x), [[0, 0, 0, 4, 0, 0, np.inf]])
    np.testing.assert_array_equal(numpy_ops.relu_backward(dout, x), [[0, 0, 0, 4, 0, 0, np.inf]])


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_elu_backward_matches_numpy_twin(shape, dtype):
    _, _, dy = layer_arrays(shape, dtype)
    out = numpy_ops.linear_elu(*layer_arrays(shape, dtype, seed=1)[:2])   # an ELU output (N, M)
    # dout * (1 or out + 1): the same two roundings as the twin, so exactly equal.
    np.testing.assert_array_equal(inputs_unchanged(kernels.elu_backward, dy, out),
                                  numpy_ops.elu_backward(dy, out))


# ---------------------------------------------------------------- exp, expm1, log1p

def ulps(got, want):
    """Largest |got - want| in units in the last place of got's dtype, at want."""
    want = np.asarray(want, dtype=np.float64)
    unit = np.spacing(np.abs(want).astype(got.dtype)).astype(np.float64)
    return float(np.max(np.abs(got.astype(np.float64) - want) / unit, initial=0.0))


NONPOSITIVE = np.concatenate([-np.logspace(-12, np.log10(708), 3001), [0.0, -0.0, -708.0]])
UNIT = np.concatenate([np.logspace(-300, 0, 3001), [0.0, np.sqrt(2) - 1, np.nextafter(np.sqrt(2) - 1, 1)]])


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("name, numpy_fn, grid", [("exp_nonpositive", np.exp, NONPOSITIVE),
                                                   ("expm1_nonpositive", np.expm1, NONPOSITIVE),
                                                   ("log1p_unit", np.log1p, UNIT)])
def test_vectorised_math_matches_numpy(name, numpy_fn, grid, dtype):
    # The kernels' own exp, expm1 and log1p (plain arithmetic, so loops that use them vectorise):
    # within 2 units in the last place of NumPy's in float64, and within half a unit of the exact
    # value in float32 (they compute in float64), at every point of these grids. Grids cover the
    # ranges the kernels use, log-spaced.
    x = grid.astype(dtype)
    x = x[(x != 0) | (grid == 0)]                      # float32 flushes the tiny ones to 0
    got = inputs_unchanged(getattr(kernels, name), x)
    assert got.dtype == dtype
    assert ulps(got, numpy_fn(x.astype(np.float64))) <= (2.0 if dtype == np.float64 else 0.5)


def test_vectorised_math_edge_values():
    x = np.array([np.nan, -np.inf, -1000.0, -0.0])
    np.testing.assert_array_equal(kernels.exp_nonpositive(x), [np.nan, 0, 0, 1])
    np.testing.assert_array_equal(kernels.expm1_nonpositive(x), [np.nan, -1, -1, 0])
    np.testing.assert_array_equal(kernels.log1p_unit(np.array([np.nan, 0.0, 1.0])),
                                  [np.nan, 0, np.log(2)])


# ---------------------------------------------------------------- reconstruction losses

LOSS_SHAPES = [(1, 1), (3, 7), (17, 33), (128, 784)] if JIT_ENABLED else [(1, 1), (3, 7), (5, 9)]
LOSS_RTOL = {np.float64: 1e-13, np.float32: 1e-6}


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("shape", LOSS_SHAPES, ids=["x".join(map(str, s)) for s in LOSS_SHAPES])
@pytest.mark.parametrize("name", ["bce_with_logits", "sse_with_logits"])
def test_loss_matches_numpy_twin(name, shape, dtype):
    rng = np.random.default_rng(4)
    logits = (rng.standard_normal(shape) * 4).astype(dtype)
    x = rng.uniform(size=shape).astype(dtype)
    inputs_unchanged(lambda *a: getattr(kernels, name)(*a)[1], logits, x)   # dlogits is new
    loss, dlogits = getattr(kernels, name)(logits, x)
    want_loss, want_dlogits = getattr(numpy_ops, name)(logits, x)
    assert loss == pytest.approx(float(want_loss), rel=LOSS_RTOL[dtype])
    # Each gradient entry is at most 2 / N in size; exp's last bit may differ from NumPy's.
    assert_close(dlogits, want_dlogits, np.full(shape, 1.0 / shape[0]), LOSS_RTOL[dtype])


@pytest.mark.parametrize("name", ["bce_with_logits", "sse_with_logits"])
def test_loss_is_finite_for_saturated_logits(name):
    logits = np.array([[-1000.0, -30.0, 0.0, 30.0, 1000.0]])
    x = np.array([[0.0, 1.0, 0.5, 0.0, 1.0]])
    loss, dlogits = getattr(kernels, name)(logits, x)
    want_loss, want_dlogits = getattr(numpy_ops, name)(logits, x)
    assert np.isfinite(loss) and np.isfinite(dlogits).all()
    assert loss == pytest.approx(float(want_loss), rel=1e-13)
    np.testing.assert_allclose(dlogits, want_dlogits, rtol=1e-13, atol=1e-300)


def test_loss_does_not_depend_on_the_thread_count():
    rng = np.random.default_rng(6)
    logits = rng.standard_normal((64, 300)).astype(np.float32)
    x = rng.uniform(size=(64, 300)).astype(np.float32)
    first = kernels.bce_with_logits(logits, x)
    threads = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one_thread = kernels.bce_with_logits(logits, x)
    finally:
        numba.set_num_threads(threads)
    assert one_thread[0] == first[0]
    np.testing.assert_array_equal(one_thread[1], first[1])


# ---------------------------------------------------------------- Adam

ADAM_SHAPES = [(1,), (7,), (5, 3), (3 * 4096 + 5,)] if JIT_ENABLED else [(1,), (7,), (5, 3)]


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("shape", ADAM_SHAPES, ids=["x".join(map(str, s)) for s in ADAM_SHAPES])
def test_adam_update_matches_numpy_twin_exactly(shape, dtype):
    rng = np.random.default_rng(5)
    p, g = rng.standard_normal(shape).astype(dtype), rng.standard_normal(shape).astype(dtype)
    m = (0.1 * rng.standard_normal(shape)).astype(dtype)
    v = (0.01 * rng.uniform(size=shape)).astype(dtype)
    hyper = (1e-3, 0.9, 0.999, 1e-8, 1 - 0.9 ** 3, 1 - 0.999 ** 3)   # lr, b1, b2, eps, c1, c2
    ours, twin = [a.copy() for a in (p, g, m, v)], [a.copy() for a in (p, g, m, v)]
    assert kernels.adam_update(*ours, *hyper) is None                 # in place
    numpy_ops.adam_update(*twin, *hyper)
    # The same operations in the same order with the scalars in the arrays' precision: the same
    # roundings, so the same bits. g is read only.
    for name, got, want in zip("pgmv", ours, twin):
        np.testing.assert_array_equal(got, want, err_msg=name)
    np.testing.assert_array_equal(ours[1], g)
    assert not np.array_equal(ours[0], p)                              # not vacuous


def test_adam_update_refuses_arrays_it_cannot_update_in_place():
    p = np.zeros((4, 6))
    ok = np.zeros((4, 6))
    hyper = (1e-3, 0.9, 0.999, 1e-8, 0.1, 0.001)
    with pytest.raises(ValueError, match="adam_update: p must be C-contiguous"):
        ops.adam_update(p.T, ok.T.copy(), ok.T.copy(), ok.T.copy(), *hyper)
    frozen = ok.copy()
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match="adam_update: m is read-only"):
        ops.adam_update(p, ok, frozen, ok.copy(), *hyper)
    with pytest.raises(ValueError, match="adam_update: shapes differ: p is \\(4, 6\\), g is \\(6,\\)"):
        ops.adam_update(p, np.zeros(6), ok.copy(), ok.copy(), *hyper)
    with pytest.raises(ValueError, match="adam_update: dtypes differ: p is float64, v is float32"):
        ops.adam_update(p, ok, ok.copy(), ok.astype(np.float32), *hyper)


# ---------------------------------------------------------------- bad input

f32 = np.ones((3, 4), np.float32)
f64 = np.ones((3, 4), np.float64)
BAD_CALLS = [
    ("linear", (np.ones(4, np.float32), f32.T), r"linear: x must be 2-D, got shape \(4,\)"),
    ("linear", (f32, f32), r"linear: inner dimensions differ: x is \(3, 4\), W is \(3, 4\)"),
    ("linear", (f32, f64.T), r"linear: dtypes differ: x is float32, W is float64"),
    ("linear", (f32.astype(np.int64), f32.T), r"linear: x has dtype int64; expected float32"),
    ("linear", (f32.astype(np.float16), f32.T), r"linear: x has dtype float16"),
    ("linear", (f32.tolist(), f32.T), r"linear: x must be a NumPy array, got list"),
    ("matmul_nt", (f32, f32.T), r"matmul_nt: column counts differ: a is \(3, 4\), b is \(4, 3\)"),
    ("matmul_nt", (f32, f64), r"matmul_nt: dtypes differ"),
    ("matmul_tn", (f32, f32.T), r"matmul_tn: row counts differ: a is \(3, 4\), b is \(4, 3\)"),
    ("matmul_tn", (f32[None], f32), r"matmul_tn: a must be 2-D, got shape \(1, 3, 4\)"),
    ("linear", (f32, f32.T, np.ones(4, np.float32)), r"linear: b has shape \(4,\), W is \(4, 3\)"),
    ("linear", (f32, f32.T, f32), r"linear: b must be 1-D"),
    ("col_sum", (np.ones(4),), r"col_sum: dy must be 2-D"),
    ("col_sum", (f32.astype(np.int32),), r"col_sum: dy has dtype int32"),
    ("relu", (np.ones((2, 3, 4)),), r"relu: x must be 2-D"),
    ("relu_backward", (f32, f32.T), r"relu_backward: shapes differ: dout is \(3, 4\), x is \(4, 3\)"),
    ("relu_backward", (f32, f64), r"relu_backward: dtypes differ: dout is float32, x is float64"),
    ("linear_relu", (f32, f32), r"linear_relu: inner dimensions differ: x is \(3, 4\), W is \(3, 4\)"),
    ("linear_elu", (f32, f32.T, np.ones(4, np.float32)), r"linear_elu: b has shape \(4,\), W is \(4, 3\)"),
    ("linear", (f32, f32.T, np.ones(3)), r"linear: dtypes differ: W is float32, b is float64"),
    ("elu_backward", (f32, f32.T), r"elu_backward: shapes differ: dout is \(3, 4\), out is \(4, 3\)"),
    ("bce_with_logits", (f32, f64), r"bce_with_logits: dtypes differ: logits is float32"),
    ("sse_with_logits", (f32, f32[:2]), r"sse_with_logits: shapes differ"),
    ("adam_update", (f32, f32, f32, f32.tolist(), 1e-3, 0.9, 0.999, 1e-8, 0.1, 0.01),
     r"adam_update: v must be a float32 or float64 NumPy array"),
]


@pytest.mark.parametrize("backend", ["numba", "numpy"])
@pytest.mark.parametrize("name, args, message", BAD_CALLS, ids=[m[:40] for _, _, m in BAD_CALLS])
def test_both_backends_refuse_bad_input_with_one_line(backend, name, args, message):
    """The same bad input, the same one-line error, whichever backend ops sends the call to."""
    with ops.using_backend(backend):
        with pytest.raises(ValueError, match=message) as info:
            getattr(ops, name)(*args)
    assert "\n" not in str(info.value)


# ---------------------------------------------------------------- the backend switch

def test_ops_dispatches_to_the_selected_backend(monkeypatch):
    x, W, _ = layer_arrays((5, 7, 3), np.float64)
    with ops.using_backend("numpy"):
        assert ops.get_backend() == "numpy"
        np.testing.assert_array_equal(ops.linear(x, W), x @ W)
        monkeypatch.setattr(numpy_ops, "relu", lambda x: "numpy twin")
        assert ops.relu(x) == "numpy twin"
    with ops.using_backend("numba"):
        assert ops.get_backend() == "numba"
        np.testing.assert_array_equal(ops.linear(x, W), kernels.linear(x, W))
        monkeypatch.setattr(kernels, "relu", lambda x: "numba kernel")
        assert ops.relu(x) == "numba kernel"
        with pytest.raises(ValueError, match="linear: dtypes differ"):
            ops.linear(x, W.astype(np.float32))  # checked in ops, before either backend


def test_using_backend_restores_the_previous_one_after_an_error():
    before = ops.get_backend()
    with pytest.raises(RuntimeError):
        with ops.using_backend("numpy" if before == "numba" else "numba"):
            raise RuntimeError
    assert ops.get_backend() == before


def test_unknown_backend_raises_one_line_value_error():
    before = ops.get_backend()
    with pytest.raises(ValueError, match=r"set_backend: unknown backend 'bogus'") as info:
        ops.set_backend("bogus")
    assert "\n" not in str(info.value)
    assert ops.get_backend() == before


def test_set_threads_checks_its_range():
    before = ops.get_threads()
    for bad in (0, numba.config.NUMBA_NUM_THREADS + 1, 1.5):
        with pytest.raises(ValueError, match="set_threads: got"):
            ops.set_threads(bad)
    try:
        ops.set_threads(1)
        assert ops.get_threads() == 1
    finally:
        ops.set_threads(before)


# ---------------------------------------------------------------- in a fresh interpreter
# Test names with "subprocess" are the ones the NUMBA_DISABLE_JIT run leaves out.

def run_python(args, **env):
    """Run the current Python from the repository root with extra environment variables."""
    full_env = {**os.environ, **env}
    full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT),
                                                           os.environ.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, *args], cwd=REPO_ROOT, env=full_env,
                          capture_output=True, text=True, timeout=600)


def test_small_shapes_pass_without_jit_in_subprocess():
    result = run_python(["-m", "pytest", "-q", "-p", "no:cacheprovider", __file__,
                         "-k", "not subprocess"], NUMBA_DISABLE_JIT="1")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "passed" in result.stdout


def test_backend_env_var_is_read_at_import_in_subprocess():
    code = "from gr_numpy.backend import ops; print(ops.get_backend())"
    result = run_python(["-c", code], GR_NUMPY_BACKEND="numpy")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "numpy"
    result = run_python(["-c", code], GR_NUMPY_BACKEND="bogus")
    assert result.returncode != 0
    assert "ValueError: set_backend: unknown backend 'bogus'" in result.stderr


def test_the_numpy_path_trains_without_numba_installed_in_subprocess():
    """A reader can step through the maths with nothing compiled: with Numba made unimportable,
    the numpy backend runs a routed training step and a decode."""
    code = ("import sys; sys.modules['numba'] = None\n"      # `import numba` now fails
            "import numpy as np\n"
            "from gr_numpy.adam import Adam\n"
            "from gr_numpy.model import VAE, VAEConfig\n"
            "from gr_numpy.training import train_step\n"
            "model = VAE(VAEConfig(input_dim=6, enc_hidden=(5,), dec_hidden=(5,), latent=3))\n"
            "x = np.full((2, 6), 0.5, np.float32)\n"
            "losses = train_step(model, Adam(model.params), x, np.array([0, 2]),\n"
            "                    np.zeros((2, 3), np.float32), 1e-3)\n"
            "print(float(losses['loss']) > 0, model.decode(model.code(x)).shape)\n"
            "from gr_numpy.backend import ops; ops.set_backend('numba'); ops.relu(x)\n")
    result = run_python(["-c", code], GR_NUMPY_BACKEND="numpy")
    assert result.stdout.strip() == "True (2, 6)", result.stderr
    assert "No module named 'numba'" in result.stderr or "import of numba halted" in result.stderr
