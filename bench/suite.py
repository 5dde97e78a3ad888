"""Benchmarks: our Numba kernels against NumPy (OpenBLAS), measured side by side in one run.

    python -m bench                 # everything, about 8 minutes; table + runs/bench.json
    python -m bench --quick         # fewer shapes and repeats, about 3 minutes
    python -m bench --asm           # also print the micro-kernel's inner loop
    python -m bench --isa avx2      # the code an AVX2 CPU gets (on an AVX-512 one), against
                                    # OpenBLAS's AVX2 (Haswell) kernel; runs/bench-avx2.json

What it measures (float32, as the model trains):
  kernels   GFLOPS of matmul (x @ W), matmul_nt (dy @ W.T) and matmul_tn (x.T @ dy) on the large
            layers of the default and the reference model, batch 128 and 512, against NumPy's
            `@` on the same arrays; and the fused kernels (linear_relu, the BCE loss, Adam)
            against their NumPy twins.
  step      one training step (forward, backward, Adam) of each model with each backend, and
            its share of the matmul roofline: the FLOPs of the step's products at the best
            product rate this run measured, over the step's time.
  epoch     seconds per epoch of `Trainer` on MNIST (55k images, plus validation on 5k), and the
            peak resident memory of that run (each in a fresh process, after a warm-up of three
            steps that loads the compiled kernels, timed apart); when PyTorch is installed, the
            same recipe's epoch in PyTorch (bench/torch_recipe.py: eager, fused Adam,
            torch.compile; each after its own three warm-up steps), in the same rotation, on as
            many threads.
  start-up  seconds from launching Python to the end of the first training step: NumPy backend,
            Numba with a cold compile cache (an empty NUMBA_CACHE_DIR), Numba with a warm one.

Every figure is the median of repeats, shown with its spread (the 25th to 75th percentile).
Timings from the two libraries are taken in separate blocks with a pause between them: each
library's threads keep spinning for a while after a call, and measured back to back they slow
the other one down by up to ten times. A busy machine makes every number noisy, so the load
average is printed at the start and the end; measure when it is well below 1.
"""

import argparse
import ctypes
import datetime
import glob
import json
import os
import platform
import re
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

from gr_numpy.tools.cli import RUNS, OneLineParser, int_in, output_file
from gr_numpy.files import write_atomically
from gr_numpy.tools import records

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # where `-m bench` runs
PAUSE = 0.3   # seconds of idle between the two libraries' measurements (see the docstring)

# (layer, N, K, M): x (N, K) @ W (K, M) for the large layers of each model, per batch size.
LAYERS = {"default": [("enc0", 784, 512), ("enc1", 512, 256), ("dec1", 256, 512),
                      ("out", 512, 784)],
          "reference": [("enc0", 784, 2048), ("enc1", 2048, 512), ("dec1", 512, 2048),
                        ("out", 2048, 784)]}
FORMS = {  # name: (how the layer uses it, operands from (x, W, dy), NumPy's version)
    "matmul": ("x @ W", lambda x, W, dy: (x, W), lambda a, b: a @ b),
    "matmul_nt": ("dy @ W.T", lambda x, W, dy: (dy, W), lambda a, b: a @ b.T),
    "matmul_tn": ("x.T @ dy", lambda x, W, dy: (x, dy), lambda a, b: a.T @ b),
}


# ---------------------------------------------------------------- timing helpers

def per_call(fn, *args, min_seconds=0.05):
    """Seconds per call of fn(*args), averaged over as many calls as fill min_seconds."""
    calls, start = 0, time.perf_counter()
    while True:
        fn(*args)
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return elapsed / calls


def spread(values):
    """median, 25th and 75th percentile of a list of numbers."""
    q25, med, q75 = np.percentile(values, [25, 50, 75])
    return {"median": float(med), "q25": float(q25), "q75": float(q75), "n": len(values)}


def side_by_side(cases, repeats, min_seconds):
    """Seconds per call of each case's two functions, {"numba": [...], "numpy": [...]} per case.

    cases: list of (ours, theirs, args). Each repeat sweeps every case, ours then theirs, with a
    pause before each: a burst of activity elsewhere on the machine then spoils one repeat of
    many cases, not many repeats of one, and the medians shrug it off.
    """
    for ours, theirs, args in cases:
        ours(*args), theirs(*args)                      # compile / warm up
    times = [{"numba": [], "numpy": []} for _ in cases]
    for _ in range(repeats):
        for (ours, theirs, args), case_times in zip(cases, times):
            for name, fn in (("numba", ours), ("numpy", theirs)):
                time.sleep(PAUSE)
                fn(*args)                                # wake this library's threads
                case_times[name].append(per_call(fn, *args, min_seconds=min_seconds))
    return times


# ---------------------------------------------------------------- the machine

def openblas_core():
    """The kernel OpenBLAS chose for this CPU (e.g. 'SkylakeX'), read from NumPy's own library."""
    pattern = os.path.join(os.path.dirname(np.__file__), "..", "numpy.libs", "*openblas*")
    for path in glob.glob(pattern) + glob.glob(os.path.join(os.path.dirname(np.__file__),
                                                            ".dylibs", "*openblas*")):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for name in ("scipy_openblas_get_corename64_", "scipy_openblas_get_corename",
                     "openblas_get_corename64_", "openblas_get_corename"):
            if hasattr(lib, name):
                fn = getattr(lib, name)
                fn.restype = ctypes.c_char_p
                return fn().decode()
    return "unknown"


def cpu_model():
    """The CPU's model name, as lscpu and /proc/cpuinfo call it."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        match = re.search(r"^Model name:\s*(.+)$", out, flags=re.M)
        if match:
            return match.group(1).strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return records.cpu_model()                     # /proc/cpuinfo's name, as every record has


def machine():
    import numba
    from llvmlite import binding
    from gr_numpy.backend import kernels
    from gr_numpy.backend.kernels.products import compile_target
    features = binding.get_host_cpu_features().flatten()
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu_model(), "logical_cpus": os.cpu_count(),
        "simd": [f for f in ("avx2", "fma", "avx512f") if f"+{f}" in features],
        "python": platform.python_version(), "numpy": np.__version__, "numba": numba.__version__,
        "openblas_core": openblas_core(), "numba_threads": numba.get_num_threads(),
        "numba_cpu": compile_target()[0], "isa": kernels.ISA, "tile": list(kernels.TILE),
        "numba_threading_layer": None,   # filled in once a parallel kernel has run
        "env": {k: os.environ[k] for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE",
                                           "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
                                           "NUMBA_NUM_THREADS", "NUMBA_CPU_NAME")
                if k in os.environ},
        "load_average_start": os.getloadavg()[0],
    }


# ---------------------------------------------------------------- kernels

def bench_kernels(batches, repeats, min_seconds, square):
    """GFLOPS of the three products on every large layer, ours and NumPy's, side by side."""
    from gr_numpy.backend import kernels
    rng = np.random.default_rng(0)
    shapes = [(model, layer, n, k, m) for n in batches for model, layers in LAYERS.items()
              for layer, k, m in layers]
    if square:
        shapes.append(("square", f"{square}^3", square, square, square))
    rows, cases = [], []
    for model, layer, n, k, m in shapes:
        x, W, dy = (rng.standard_normal(s).astype(np.float32) for s in [(n, k), (k, m), (n, m)])
        for form, (meaning, pick, numpy_fn) in FORMS.items():
            rows.append({"model": model, "layer": layer, "N": n, "K": k, "M": m, "form": form,
                         "product": meaning})
            cases.append((getattr(kernels, form), numpy_fn, pick(x, W, dy)))
    print(f"  {len(cases)} products x {repeats} repeats ...", flush=True)
    for row, times in zip(rows, side_by_side(cases, repeats, min_seconds)):
        flops = 2 * row["N"] * row["K"] * row["M"]
        row["gflops"] = {lib: spread([flops / t / 1e9 for t in ts]) for lib, ts in times.items()}
        row["ratio"] = row["gflops"]["numba"]["median"] / row["gflops"]["numpy"]["median"]
        print(f"  {row['model']:9s} {row['layer']:6s} N={row['N']:<4d} {row['K']:4d}x{row['M']:<4d} "
              f"{row['form']:9s} numba {row['gflops']['numba']['median']:6.1f}  numpy "
              f"{row['gflops']['numpy']['median']:6.1f}  ratio {row['ratio']:.2f}", flush=True)
    return rows


def bench_fused(repeats, min_seconds):
    """The fused kernels against their NumPy twins, microseconds per call."""
    from gr_numpy.backend import kernels, numpy_ops
    from gr_numpy.model import layer_shapes
    rng = np.random.default_rng(1)
    x = rng.standard_normal((128, 784)).astype(np.float32)
    W = (rng.standard_normal((784, 512)) * 0.05).astype(np.float32)
    b = rng.standard_normal(512).astype(np.float32)
    logits = rng.standard_normal((128, 784)).astype(np.float32)
    pixels = rng.uniform(size=(128, 784)).astype(np.float32)
    cases = [("linear_relu 128x784 @ 784x512", "linear_relu", (x, W, b)),
             ("bce_with_logits 128x784", "bce_with_logits", (logits, pixels))]
    for preset in ("default", "reference"):
        cfg = model_config(preset)
        size = sum(int(np.prod(s)) for s in layer_shapes(cfg).values())
        p, g = rng.standard_normal(size).astype(np.float32), rng.standard_normal(size).astype(np.float32)
        m, v = np.zeros_like(p), np.zeros_like(p)
        cases.append((f"adam_update, all {size / 1e6:.2f}M params ({preset})", "adam_update",
                      (p, g, m, v, 1e-3, 0.9, 0.999, 1e-8, 0.1, 0.001)))
    rows = []
    all_times = side_by_side([(getattr(kernels, name), getattr(numpy_ops, name), args)
                              for _, name, args in cases], repeats, min_seconds)
    for (label, name, args), times in zip(cases, all_times):
        us = {lib: spread([t * 1e6 for t in ts]) for lib, ts in times.items()}
        rows.append({"kernel": label, "microseconds": us,
                     "speedup": us["numpy"]["median"] / us["numba"]["median"]})
        print(f"  {label:45s} numba {us['numba']['median']:8.1f} us  numpy "
              f"{us['numpy']['median']:8.1f} us  x{rows[-1]['speedup']:.1f}", flush=True)
    return rows


# ---------------------------------------------------------------- training steps

def model_config(preset):
    """The model of a train.py preset: default 784-512-256-10 with an ELU decoder and BCE;
    reference 784-2048-512-10, ReLU everywhere, biases everywhere, SSE."""
    from gr_numpy.model import VAEConfig
    if preset == "default":
        return VAEConfig()
    return VAEConfig(enc_hidden=(2048, 512), dec_hidden=(512, 2048), dec_act="relu",
                     dec_hidden_bias=True, recon="sse", recon_weight=0.3, kl_weight=0.2)


PRODUCTS = ("matmul", "matmul_nt", "matmul_tn", "linear", "linear_relu", "linear_elu")


def step_product_flops(preset, batch):
    """Floating-point operations of the products in one training step, as the model calls them:
    one step on the NumPy backend with each product wrapped to count 2 N K M."""
    from gr_numpy.backend import numpy_ops, ops
    from gr_numpy.model import VAE
    counted, depth = [0], [0]
    originals = {name: getattr(numpy_ops, name) for name in PRODUCTS}

    def counting(name, fn):
        def wrapper(a, b, *rest):
            # a @ b, a @ b.T or a.T @ b: the inner and outer sizes from the two shapes
            n, k = a.shape[::-1] if name == "matmul_tn" else a.shape
            m = b.shape[0] if name == "matmul_nt" else b.shape[1]
            counted[0] += 2 * n * k * m if depth[0] == 0 else 0   # linear_relu calls linear
            depth[0] += 1
            try:
                return fn(a, b, *rest)
            finally:
                depth[0] -= 1
        return wrapper

    rng = np.random.default_rng(2)
    model = VAE(model_config(preset), rng=np.random.default_rng(0))
    try:
        for name, fn in originals.items():
            setattr(numpy_ops, name, counting(name, fn))
        with ops.using_backend("numpy"):
            model.loss_and_grads(rng.uniform(size=(batch, 784)).astype(np.float32),
                                 rng.integers(0, 10, batch),
                                 rng.standard_normal((batch, 10)).astype(np.float32))
    finally:
        for name, fn in originals.items():
            setattr(numpy_ops, name, fn)
    return counted[0]


def bench_steps(presets, batch, repeats, steps_per_repeat):
    """Milliseconds per training step (loss_and_grads + Adam) for each backend and preset."""
    from gr_numpy.backend import ops
    from gr_numpy.adam import Adam
    from gr_numpy.model import VAE
    rows = []
    for preset in presets:
        rng = np.random.default_rng(2)
        x = rng.uniform(size=(batch, 784)).astype(np.float32)
        labels = rng.integers(0, 10, batch)
        eps = rng.standard_normal((batch, 10)).astype(np.float32)
        setups = {}
        for backend in ("numba", "numpy"):
            model = VAE(model_config(preset), rng=np.random.default_rng(0))
            setups[backend] = (model, Adam(model.params))

        def run(backend, steps):
            model, opt = setups[backend]
            with ops.using_backend(backend):
                start = time.perf_counter()
                for _ in range(steps):
                    _, grads = model.loss_and_grads(x, labels, eps)
                    opt.step(model.params, grads, 1e-3)
                return (time.perf_counter() - start) / steps

        times = {"numba": [], "numpy": []}
        for backend in times:
            run(backend, 20)                             # compile, warm up, settle
        for _ in range(repeats):
            for backend in times:
                time.sleep(PAUSE)
                run(backend, 2)
                times[backend].append(run(backend, steps_per_repeat))
        ms = {lib: spread([t * 1e3 for t in ts]) for lib, ts in times.items()}
        rows.append({"preset": preset, "batch": batch, "milliseconds": ms,
                     "ratio": ms["numba"]["median"] / ms["numpy"]["median"],
                     "product_gflop": step_product_flops(preset, batch) / 1e9})
        print(f"  {preset:9s} batch {batch}: numba {ms['numba']['median']:6.2f} ms  numpy "
              f"{ms['numpy']['median']:6.2f} ms  ratio {rows[-1]['ratio']:.2f}", flush=True)
    return rows


# ---------------------------------------------------------------- fresh processes

def child(args):
    """Run in a fresh process by the parent; print one JSON line with what was measured."""
    t_start = float(os.environ["GR_NUMPY_BENCH_T0"])          # the parent's clock at launch
    from gr_numpy.backend import ops
    from gr_numpy.adam import Adam
    from gr_numpy.model import VAE
    if not args.backend.startswith("torch-"):
        ops.set_backend(args.backend)
    result = {}
    if args.child == "startup":
        model = VAE(model_config(args.preset), rng=np.random.default_rng(0))
        opt = Adam(model.params)
        rng = np.random.default_rng(3)
        x = rng.uniform(size=(128, 784)).astype(np.float32)
        _, grads = model.loss_and_grads(x, rng.integers(0, 10, 128),
                                        rng.standard_normal((128, model.config.code_dim))
                                        .astype(np.float32))
        opt.step(model.params, grads, 1e-3)
        result["seconds"] = time.time() - t_start
    elif args.backend.startswith("torch-"):                    # the same epoch in PyTorch
        from bench.torch_recipe import run_epoch
        import numba
        result.update(run_epoch(args.backend[len("torch-"):], args.preset,
                                threads=numba.config.NUMBA_NUM_THREADS))
    else:                                                      # one epoch of Trainer on MNIST
        from gr_numpy.data import load_mnist, train_val_split
        from gr_numpy.training import TrainConfig, Trainer
        images, labels = load_mnist("train")
        tr_x, tr_y, va_x, va_y = train_val_split(images, labels, 5000)
        def trainer(n_train, n_val):                       # one epoch on the first images
            return Trainer(model_config(args.preset), TrainConfig(epochs=1), tr_x[:n_train],
                           tr_y[:n_train], va_x[:n_val], va_y[:n_val], log=lambda line: None)
        t0 = time.perf_counter()
        trainer(3 * 128, 1000).run()      # warm-up: loads every compiled kernel the epoch calls
        result["warmup_seconds"] = time.perf_counter() - t0
        epoch = trainer(len(tr_x), len(va_x))
        epoch.run()
        result["seconds"] = epoch.history[0]["seconds"]
    result["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(result))


def peak_rss_mb():
    """This process's peak resident memory. On Linux, VmHWM: getrusage's maxrss would also count
    the parent's memory, which Linux carries over into a child started with fork and exec."""
    try:
        with open("/proc/self/status") as f:
            match = re.search(r"^VmHWM:\s+(\d+) kB", f.read(), flags=re.M)
        if match:
            return int(match.group(1)) / 1024
    except OSError:
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss       # kB on Linux, bytes on macOS
    return rss / (1024 * 1024 if sys.platform == "darwin" else 1024)


def in_fresh_process(kind, backend, preset, env=None):
    """Run `child` in a new Python; return its JSON result."""
    full_env = {**os.environ, **(env or {}), "GR_NUMPY_BENCH_T0": repr(time.time())}
    proc = subprocess.run([sys.executable, "-m", "bench", "--child", kind,
                           "--backend", backend, "--preset", preset], cwd=REPO_ROOT,
                          capture_output=True, text=True, env=full_env, timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError(f"bench child {kind}/{backend}/{preset} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bench_epochs(presets, repeats):
    """Each repeat runs every library once, in turn (numba, numpy, then PyTorch's variants when
    it is installed), each in a fresh process: a slow spell of the machine hits all of them."""
    from bench.torch_recipe import VARIANTS, torch_available

    libraries = ["numba", "numpy"] + ([f"torch-{v}" for v in VARIANTS] if torch_available() else [])
    if not torch_available():
        print("  PyTorch: not installed (pip install torch to time the same recipe in it)",
              flush=True)
    rows = []
    for preset in presets:
        results = {lib: [] for lib in libraries}
        for _ in range(repeats):
            for lib in results:
                results[lib].append(in_fresh_process("epoch", lib, preset))
        seconds = {lib: spread([r["seconds"] for r in rs]) for lib, rs in results.items()}
        rss = {lib: spread([r["peak_rss_mb"] for r in rs]) for lib, rs in results.items()}
        row = {"preset": preset, "seconds": seconds, "peak_rss_mb": rss,
               "ratio": seconds["numba"]["median"] / seconds["numpy"]["median"]}
        torch_libs = [lib for lib in seconds if lib.startswith("torch-")]
        if torch_libs:
            best = min(torch_libs, key=lambda lib: seconds[lib]["median"])
            row["torch_best"] = best
            row["torch_ratio"] = seconds["numba"]["median"] / seconds[best]["median"]
        row["warmup_seconds"] = {lib: spread([r["warmup_seconds"] for r in rs])
                                 for lib, rs in results.items()}
        rows.append(row)
        print(f"  {preset:9s} epoch: " + "  ".join(f"{lib} {seconds[lib]['median']:6.2f} s"
                                                  for lib in seconds)
              + f" | peak RSS numba {rss['numba']['median']:.0f} MB", flush=True)
    return rows


def bench_startup(repeats):
    """Launch to end of first step: NumPy backend; Numba cold cache; Numba warm cache."""
    runs = {"numpy": [], "numba_cold": [], "numba_warm": []}
    for _ in range(repeats):
        runs["numpy"].append(in_fresh_process("startup", "numpy", "default")["seconds"])
        with tempfile.TemporaryDirectory() as cache:
            env = {"NUMBA_CACHE_DIR": cache}
            runs["numba_cold"].append(in_fresh_process("startup", "numba", "default", env)["seconds"])
            runs["numba_warm"].append(in_fresh_process("startup", "numba", "default", env)["seconds"])
    seconds = {k: spread(v) for k, v in runs.items()}
    result = {"seconds": seconds,
              "warm_minus_numpy": seconds["numba_warm"]["median"] - seconds["numpy"]["median"],
              "compile_seconds": seconds["numba_cold"]["median"] - seconds["numba_warm"]["median"]}
    print(f"  start-up: numpy {seconds['numpy']['median']:.2f} s, numba cold "
          f"{seconds['numba_cold']['median']:.2f} s, warm {seconds['numba_warm']['median']:.2f} s",
          flush=True)
    return result


# ---------------------------------------------------------------- the micro-kernel's code

def micro_kernel_asm():
    """The innermost loop of the product kernel, as machine code (x86: look for vfmadd...ps).

    Compiled for float32 and not run, so it also works for a CPU this one can only compile for.
    """
    import numba
    from numba import types
    from gr_numpy.backend.kernels import products
    gemm = numba.njit(parallel=True, fastmath={"contract"})(products._gemm.py_func)  # uncached
    matrix = types.Array(types.float32, 2, "C")
    signature = (matrix, matrix, matrix, types.Array(types.float32, 1, "C"),   # a, b, out, bias
                 types.int64, types.int64, types.int64)                        # epilogue, kc, nc
    gemm.compile(signature)
    asm = gemm.inspect_asm(signature)
    blocks = re.split(r"^(\.LBB\w+):", asm, flags=re.M)
    loops = []                                   # the blocks that end by jumping to themselves
    for label, body in zip(blocks[1::2], blocks[2::2]):
        back = re.search(rf"^\s+j\w+\s+{re.escape(label)}\s*$", body, flags=re.M)
        if back:
            loops.append((label, body[:back.end()]))
    label, body = max(loops, key=lambda lb: len(re.findall(r"vfmadd\w+ps", lb[1])),
                      default=("", ""))               # the float32 FMA loop: the micro-kernel
    return f"{label}:\n" + "\n".join(line for line in body.splitlines() if line.strip())


def spilled_accumulators(loop):
    """The lines of an x86 loop that store a vector register to memory or reload one from the
    stack: what a tile that does not fit in the registers costs (a register-only loop has none)."""
    store = r"vmov\w+\s+%[xyz]mm\d+,\s*[^%\s]*\("
    reload = r"vmov\w+\s+[^%\s]*\(%rsp\),\s*%[xyz]mm\d+"
    return [line.strip() for line in loop.splitlines() if re.search(f"{store}|{reload}", line)]


# ---------------------------------------------------------------- compiling for another CPU
# Numba compiles for NUMBA_CPU_NAME with the features in NUMBA_CPU_FEATURES when they are set, so
# an AVX-512 CPU can build and run the AVX2 code a laptop would get: the host's own feature string
# with every AVX-512 feature (and what needs it) turned off. OPENBLAS_CORETYPE=Haswell makes
# OpenBLAS run its AVX2 kernel too, and a separate NUMBA_CACHE_DIR keeps the two builds apart.
# The AVX-512 build can be compiled (not run) on an AVX2 CPU the same way, to read its code.
# (LLVM's name for an AVX-512 CPU is an AMD Zen 4: for Intel's, LLVM prefers 256-bit vectors.)
ISA_CPU = {"avx2": ("haswell", "Haswell"), "avx512": ("znver4", "SkylakeX")}
AVX512_FEATURES = ("avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl")


def isa_features(isa, host_features):
    """host_features ("+avx2,-avx512f,...") with the vector features of `isa` on or off."""
    out = []
    for feature in host_features.split(","):
        name = feature[1:]
        if isa == "avx2" and name.startswith(("avx512", "avx10", "amx")):
            feature = "-" + name
        elif isa == "avx512" and name in AVX512_FEATURES:
            feature = "+" + name
        out.append(feature)
    return ",".join(out)


def isa_environment(isa, cache_dir):
    """Environment variables that make Numba compile for `isa` and OpenBLAS run its kernel."""
    from numba.core.codegen import get_host_cpu_features
    cpu, openblas = ISA_CPU[isa]
    return {"NUMBA_CPU_NAME": cpu, "NUMBA_CPU_FEATURES": isa_features(isa, get_host_cpu_features()),
            "NUMBA_CACHE_DIR": cache_dir, "OPENBLAS_CORETYPE": openblas}


# ---------------------------------------------------------------- the report

def table(results):
    """The results as the Markdown table the README shows."""
    lines = []
    m = results["machine"]
    lines.append(f"Measured {m['date']} on {m['cpu']}, {m['logical_cpus']} logical CPUs "
                 f"({', '.join(m['simd'])}); NumPy {m['numpy']} with OpenBLAS "
                 f"({m['openblas_core']} kernel), Numba {m['numba']} "
                 f"({m['numba_threads']} threads, {m['numba_threading_layer']}); load average "
                 f"{m['load_average_start']:.2f} at the start, {m['load_average_end']:.2f} at the end.")
    if "isa" in m:
        lines.append(f"Numba compiled for {m['numba_cpu']}: {m['isa']} instructions, a "
                     f"{m['tile'][0]} x {m['tile'][1]} register tile.")
    lines.append("Median of repeats, [25th-75th percentile] in brackets.")
    if "kernels" in results:
        lines += ["", "| model | layer | N | K x M | product | Numba GFLOPS | NumPy GFLOPS | ratio |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in results["kernels"]:
            g = r["gflops"]
            lines.append(f"| {r['model']} | {r['layer']} | {r['N']} | {r['K']} x {r['M']} | "
                         f"`{r['product']}` | {fmt(g['numba'], 0)} | {fmt(g['numpy'], 0)} | "
                         f"{r['ratio']:.2f} |")
    if "fused" in results:
        lines += ["", "| fused kernel | Numba us | NumPy us | speed-up |", "|---|---|---|---|"]
        for r in results["fused"]:
            us = r["microseconds"]
            lines.append(f"| `{r['kernel']}` | {fmt(us['numba'], 0)} | {fmt(us['numpy'], 0)} | "
                         f"{r['speedup']:.1f}x |")
    if "steps" in results:
        roof = results.get("roofline_gflops")
        lines += ["", "| training step | Numba ms | NumPy ms | Numba / NumPy | products GFLOP | "
                  "Numba at % of roofline |", "|---|---|---|---|---|---|"]
        for r in results["steps"]:
            ms = r["milliseconds"]
            share = f"{100 * roofline_fraction(r, roof):.0f}%" if roof else "n/a"
            lines.append(f"| {r['preset']}, batch {r['batch']} | {fmt(ms['numba'], 2)} | "
                         f"{fmt(ms['numpy'], 2)} | {r['ratio']:.2f} | {r['product_gflop']:.3f} | "
                         f"{share} |")
        if roof:
            lines.append(f"\nRoofline: the step's product FLOPs at {roof:.0f} GFLOPS, the best "
                         f"product rate measured in this run (either library).")
    if "epochs" in results:
        lines += ["", "| one epoch (55k images + 5k validation) | Numba s | NumPy s | "
                  "peak RSS Numba MB | peak RSS NumPy MB |", "|---|---|---|---|---|"]
        for r in results["epochs"]:
            s, rss = r["seconds"], r["peak_rss_mb"]
            lines.append(f"| {r['preset']} | {fmt(s['numba'], 1)} | {fmt(s['numpy'], 1)} | "
                         f"{fmt(rss['numba'], 0)} | {fmt(rss['numpy'], 0)} |")
        torch_rows = [r for r in results["epochs"] if "torch_best" in r]
        if torch_rows:
            lines += ["", "| same recipe, one epoch | gr-numpy s | PyTorch eager s | fused Adam s "
                      "| torch.compile + fused s | gr-numpy / best PyTorch |",
                      "|---|---|---|---|---|---|"]
            for r in torch_rows:
                s = r["seconds"]
                lines.append(f"| {r['preset']} | {fmt(s['numba'], 2)} | {fmt(s['torch-eager'], 2)} "
                             f"| {fmt(s['torch-fused'], 2)} | {fmt(s['torch-compile'], 2)} | "
                             f"{r['torch_ratio']:.2f} |")
            warm = torch_rows[0]["warmup_seconds"]
            lines.append("\nNot counted above, the warm-up before each timed epoch (three steps; "
                         "gr-numpy's loads its compiled kernels, torch.compile's compiles): "
                         + ", ".join(f"{lib} {fmt(warm[lib], 2)} s" for lib in warm) + ".")
    if "startup" in results:
        s = results["startup"]["seconds"]
        lines += ["", "| start-up (launch to end of first step, default model) | seconds |",
                  "|---|---|",
                  f"| NumPy backend | {fmt(s['numpy'], 2)} |",
                  f"| Numba backend, cold cache (compiles every kernel) | {fmt(s['numba_cold'], 2)} |",
                  f"| Numba backend, warm cache | {fmt(s['numba_warm'], 2)} |"]
    rows = targets(results)
    if rows:
        lines += ["", "| target | measured | met |", "|---|---|---|"]
        lines += [f"| {t} | {m} | {'yes' if ok else 'no'} |" for t, m, ok in rows]
    return "\n".join(lines)


def roofline_gflops(kernel_rows):
    """The best product rate of a run: the highest median GFLOPS of either library."""
    rates = [r["gflops"][lib]["median"] for r in kernel_rows for lib in ("numba", "numpy")]
    return max(rates) if rates else None


def roofline_fraction(step, roof):
    """The step's product FLOPs at the roofline rate, over the step's measured time."""
    return step["product_gflop"] / roof / (step["milliseconds"]["numba"]["median"] / 1e3)


def targets(results):
    """The speed targets next to what this run measured: (target, measured, met) rows."""
    rows = []
    m = results["machine"]
    isa = f" ({m['isa']})" if "isa" in m else ""
    layers = [r for r in results.get("kernels", []) if r["model"] in LAYERS]
    if layers:
        worst = min(layers, key=lambda r: r["ratio"])
        below = [r for r in layers if r["ratio"] < 0.9]
        rows.append((f"Numba product{isa} >= 0.9x OpenBLAS ({m['openblas_core']} kernel) GFLOPS "
                     "on every large layer, all three forms",
                     f"worst {worst['ratio']:.3f} ({worst['model']} {worst['layer']}, "
                     f"`{worst['product']}`, N={worst['N']}); {len(below)} of {len(layers)} "
                     f"below 0.9", not below))
    for r in results.get("steps", []):
        rows.append((f"training step{isa} ({r['preset']}) <= 0.7x the NumPy backend's",
                     f"{r['ratio']:.2f}", r["ratio"] <= 0.7))
    roof = results.get("roofline_gflops")
    for r in results.get("steps", []):
        if roof and r["preset"] == "default":
            share = roofline_fraction(r, roof)
            rows.append(("default step >= 75% of the matmul roofline", f"{100 * share:.0f}% "
                         f"({r['product_gflop']:.3f} GFLOP at {roof:.0f} GFLOPS)", share >= 0.75))
    if "startup" in results:
        extra = results["startup"]["warm_minus_numpy"]
        rows.append(("warm-cache start-up adds < 1 s", f"{extra:+.2f} s", extra < 1.0))
    for r in results.get("epochs", []):
        if r["preset"] == "default" and "torch_ratio" in r:
            rows.append(("default epoch <= 0.5x PyTorch's best configuration, same threads",
                         f"{r['torch_ratio']:.2f}x ({r['torch_best']})", r["torch_ratio"] <= 0.5))
        if r["preset"] == "default":
            seconds = r["seconds"]["numba"]["median"]
            rows.append(("default epoch (55k training + 5k validation) <= 2.5 s",
                         f"{seconds:.2f} s", seconds <= 2.5))
            rss = r["peak_rss_mb"]["numba"]["median"]
            rows.append(("peak RSS of a default training run < 600 MB", f"{rss:.0f} MB",
                         rss < 600))
    return rows


def fmt(s, digits):
    return f"{s['median']:.{digits}f} [{s['q25']:.{digits}f}-{s['q75']:.{digits}f}]"


def build_parser():
    p = OneLineParser(prog="python -m bench", description=__doc__.splitlines()[0],
                      formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="batch 128 only, fewer repeats, no square product, one epoch run each")
    p.add_argument("--only", nargs="+", choices=["kernels", "fused", "steps", "epochs", "startup"],
                   help="run only these parts (default: all)")
    p.add_argument("--repeats", type=int_in(1, 1000),
                   help="repeats per figure (default: 7, quick: 3)")
    p.add_argument("--isa", choices=["native", "avx2"], default="native",
                   help="native: compile for this CPU; avx2: compile for an AVX2 CPU without "
                        "AVX-512 (NUMBA_CPU_NAME=haswell) and run OpenBLAS's Haswell kernel, in a "
                        "fresh process with its own Numba cache (runs/numba-cache-avx2)")
    p.add_argument("--json", help="where to write the results (default: runs/bench.json, "
                                  "runs/bench-avx2.json with --isa avx2)")
    p.add_argument("--asm", action="store_true", help="print the micro-kernel's inner loop")
    p.add_argument("--child", choices=["startup", "epoch"], help=argparse.SUPPRESS)
    p.add_argument("--backend", default="numba", help=argparse.SUPPRESS)   # or torch-VARIANT
    p.add_argument("--preset", default="default", help=argparse.SUPPRESS)
    return p


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    if args.child:
        return child(args)
    if args.isa != "native" and os.environ.get("GR_NUMPY_BENCH_ISA") != args.isa:
        cache = os.path.join(REPO_ROOT, RUNS, f"numba-cache-{args.isa}")
        env = {**os.environ, **isa_environment(args.isa, cache), "GR_NUMPY_BENCH_ISA": args.isa}
        print(f"compiling for {args.isa}: NUMBA_CPU_NAME={env['NUMBA_CPU_NAME']}, "
              f"OPENBLAS_CORETYPE={env['OPENBLAS_CORETYPE']}, NUMBA_CACHE_DIR={cache}", flush=True)
        argv = sys.argv[1:] if argv is None else argv
        return subprocess.run([sys.executable, "-m", "bench", *argv], cwd=REPO_ROOT,
                              env=env).returncode
    args.json = args.json or os.path.join(RUNS, "bench.json" if args.isa == "native"
                                          else f"bench-{args.isa}.json")
    if os.path.dirname(args.json) == RUNS:
        os.makedirs(RUNS, exist_ok=True)
    output_file("python -m bench", "--json", args.json)      # before minutes of measuring
    import numba
    parts = args.only or ["kernels", "fused", "steps", "epochs", "startup"]
    repeats = args.repeats or (3 if args.quick else 7)
    results = {"machine": machine()}
    print(f"load average {results['machine']['load_average_start']:.2f} | OpenBLAS "
          f"{results['machine']['openblas_core']} | Numba threads "
          f"{results['machine']['numba_threads']}", flush=True)
    if args.asm:
        print(micro_kernel_asm())
    if "kernels" in parts:
        print("kernels (GFLOPS):", flush=True)
        results["kernels"] = bench_kernels([128] if args.quick else [128, 512], repeats, 0.05,
                                           square=None if args.quick else 2048)
        results["roofline_gflops"] = roofline_gflops(results["kernels"])
    if "fused" in parts:
        print("fused kernels:", flush=True)
        results["fused"] = bench_fused(repeats, 0.05)
    if "steps" in parts:
        print("training steps:", flush=True)
        results["steps"] = bench_steps(["default", "reference"], 128, repeats, 20)
    if "epochs" in parts:
        print("epochs (fresh processes):", flush=True)
        results["epochs"] = bench_epochs(["default", "reference"], 1 if args.quick else 3)
    if "startup" in parts:
        print("start-up (fresh processes):", flush=True)
        results["startup"] = bench_startup(2 if args.quick else 3)
    results["machine"]["numba_threading_layer"] = safe_threading_layer(numba)
    results["machine"]["load_average_end"] = os.getloadavg()[0]
    text = json.dumps(results, indent=1).encode()
    try:
        write_atomically(args.json, lambda f: f.write(text))
    except OSError as e:
        print(f"python -m bench: error: cannot write --json {args.json}: {e.strerror or e}",
              file=sys.stderr)
        print(table(results))
        return 1
    print()
    print(table(results))
    print(f"\nwrote {args.json}")
    return 0


def safe_threading_layer(numba):
    try:
        return numba.threading_layer()
    except ValueError:       # no parallel kernel has run in this process
        return "not started"
