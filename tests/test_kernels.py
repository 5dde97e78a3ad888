"""Each Numba kernel against its NumPy twin, plus the input checks and the backend switch.

A product is compared with a tolerance relative to |a| @ |b|, the scale its rounding error
grows with: float64 to 1e-12, float32 to 1e-5. Elementwise ops do one rounding (or none), so
they must match the twin exactly. The small shapes run again with NUMBA_DISABLE_JIT=1, so the
kernels' plain-Python bodies are tested too.
"""

import os
import subprocess
import sys
from pathlib import Path

import numba
import numpy as np
import pytest

from gr_numpy import kernels, numpy_ops, ops

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
    # Each thread owns whole output rows and sums each element in a fixed order, so the result
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


# ---------------------------------------------------------------- bias, ReLU

@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_elementwise_and_col_sum_match_numpy_twin(shape, dtype):
    _, W, dy = layer_arrays(shape, dtype)
    z = layer_arrays(shape, dtype, seed=1)[2]  # (N, M), a pre-activation
    b = W[0].copy()                            # (M,), a bias
    # z + b, max(z, 0) and the ReLU mask do at most one rounding each: they must match exactly.
    pairs = [(inputs_unchanged(kernels.add_bias, z, b), numpy_ops.add_bias(z, b)),
             (inputs_unchanged(kernels.relu, z), numpy_ops.relu(z)),
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


# ---------------------------------------------------------------- bad input

f32 = np.ones((3, 4), np.float32)
f64 = np.ones((3, 4), np.float64)
BAD_CALLS = [
    ("matmul", (np.ones(4, np.float32), f32.T), r"matmul: a must be 2-D, got shape \(4,\)"),
    ("matmul", (f32, f32), r"matmul: inner dimensions differ: a is \(3, 4\), b is \(3, 4\)"),
    ("matmul", (f32, f64.T), r"matmul: dtypes differ: a is float32, b is float64"),
    ("matmul", (f32.astype(np.int64), f32.T), r"matmul: a has dtype int64; expected float32"),
    ("matmul", (f32.astype(np.float16), f32.T), r"matmul: a has dtype float16"),
    ("matmul", (f32.tolist(), f32.T), r"matmul: a must be a NumPy array, got list"),
    ("matmul_nt", (f32, f32.T), r"matmul_nt: column counts differ: a is \(3, 4\), b is \(4, 3\)"),
    ("matmul_nt", (f32, f64), r"matmul_nt: dtypes differ"),
    ("matmul_tn", (f32, f32.T), r"matmul_tn: row counts differ: a is \(3, 4\), b is \(4, 3\)"),
    ("matmul_tn", (f32[None], f32), r"matmul_tn: a must be 2-D, got shape \(1, 3, 4\)"),
    ("add_bias", (f32, np.ones(3, np.float32)), r"add_bias: b has shape \(3,\), y is \(3, 4\)"),
    ("add_bias", (f32, f32), r"add_bias: b must be 1-D"),
    ("add_bias", (f32, np.ones(4)), r"add_bias: dtypes differ: y is float32, b is float64"),
    ("col_sum", (np.ones(4),), r"col_sum: dy must be 2-D"),
    ("col_sum", (f32.astype(np.int32),), r"col_sum: dy has dtype int32"),
    ("relu", (np.ones((2, 3, 4)),), r"relu: x must be 2-D"),
    ("relu_backward", (f32, f32.T), r"relu_backward: shapes differ: dout is \(3, 4\), x is \(4, 3\)"),
    ("relu_backward", (f32, f64), r"relu_backward: dtypes differ: dout is float32, x is float64"),
]


@pytest.mark.parametrize("name, args, message", BAD_CALLS, ids=[m[:40] for _, _, m in BAD_CALLS])
def test_bad_input_raises_one_line_value_error(name, args, message):
    with pytest.raises(ValueError, match=message) as info:
        getattr(kernels, name)(*args)
    assert "\n" not in str(info.value)


# ---------------------------------------------------------------- the backend switch

def test_ops_dispatches_to_the_selected_backend(monkeypatch):
    x, W, _ = layer_arrays((5, 7, 3), np.float64)
    with ops.using_backend("numpy"):
        assert ops.get_backend() == "numpy"
        np.testing.assert_array_equal(ops.matmul(x, W), x @ W)
        monkeypatch.setattr(numpy_ops, "relu", lambda x: "numpy twin")
        assert ops.relu(x) == "numpy twin"
    with ops.using_backend("numba"):
        assert ops.get_backend() == "numba"
        np.testing.assert_array_equal(ops.matmul(x, W), kernels.matmul(x, W))
        monkeypatch.setattr(kernels, "relu", lambda x: "numba kernel")
        assert ops.relu(x) == "numba kernel"
        with pytest.raises(ValueError, match="matmul: dtypes differ"):
            ops.matmul(x, W.astype(np.float32))  # checked by the kernel wrapper


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
    code = "from gr_numpy import ops; print(ops.get_backend())"
    result = run_python(["-c", code], GR_NUMPY_BACKEND="numpy")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "numpy"
    result = run_python(["-c", code], GR_NUMPY_BACKEND="bogus")
    assert result.returncode != 0
    assert "ValueError: set_backend: unknown backend 'bogus'" in result.stderr
