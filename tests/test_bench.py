"""The benchmark's plumbing (no timings are asserted anywhere: see bench/suite.py)."""

import subprocess
import sys
from pathlib import Path

from bench import suite as bench

REPO_ROOT = Path(__file__).resolve().parents[1]


def fake_spread(median):
    return {"median": median, "q25": median * 0.9, "q75": median * 1.1, "n": 3}


def test_table_renders_every_part_as_markdown():
    results = {
        "machine": {"date": "2026-01-01 00:00 UTC", "cpu": "Some CPU", "logical_cpus": 2,
                    "simd": ["avx2", "fma"], "numpy": "2.0", "numba": "0.60",
                    "openblas_core": "Haswell", "numba_threads": 2, "numba_cpu": "haswell",
                    "isa": "avx2", "tile": [4, 16],
                    "numba_threading_layer": "omp", "load_average_start": 0.1,
                    "load_average_end": 0.2},
        "kernels": [{"model": "default", "layer": "enc0", "N": 128, "K": 784, "M": 512,
                     "form": "matmul", "product": "x @ W", "ratio": 0.95,
                     "gflops": {"numba": fake_spread(150.0), "numpy": fake_spread(158.0)}}],
        "fused": [{"kernel": "adam_update", "speedup": 9.0,
                   "microseconds": {"numba": fake_spread(250.0), "numpy": fake_spread(2250.0)}}],
        "roofline_gflops": 150.0,
        "steps": [{"preset": "default", "batch": 128, "ratio": 0.6, "product_gflop": 0.72,
                   "milliseconds": {"numba": fake_spread(6.0), "numpy": fake_spread(10.0)}}],
        "epochs": [{"preset": "default", "ratio": 0.8,
                    "seconds": {"numba": fake_spread(3.2), "numpy": fake_spread(4.0)},
                    "peak_rss_mb": {"numba": fake_spread(250.0), "numpy": fake_spread(190.0)}}],
        "startup": {"seconds": {"numpy": fake_spread(0.3), "numba_cold": fake_spread(17.0),
                                "numba_warm": fake_spread(0.6)}, "warm_minus_numpy": 0.3},
    }
    text = bench.table(results)
    assert "Some CPU, 2 logical CPUs (avx2, fma)" in text
    assert "| default | enc0 | 128 | 784 x 512 | `x @ W` | 150 [135-165] | 158 [142-174] | 0.95 |" \
        in text
    assert "Numba compiled for haswell: avx2 instructions, a 4 x 16 register tile." in text
    # 0.72 GFLOP at 150 GFLOPS is 4.8 ms of the step's 6 ms: 80% of the roofline.
    assert "| default, batch 128 | 6.00 [5.40-6.60] | 10.00 [9.00-11.00] | 0.60 | 0.720 | 80% |" \
        in text
    assert "| Numba backend, warm cache | 0.60 [0.54-0.66] |" in text
    # The targets, each with what was measured and whether it was met.
    assert ("| Numba product (avx2) >= 0.9x OpenBLAS (Haswell kernel) GFLOPS on every large "
            "layer, all three forms | worst 0.950 (default enc0, `x @ W`, N=128); 0 of 1 below "
            "0.9 | yes |") in text
    assert "| training step (avx2) (default) <= 0.7x the NumPy backend's | 0.60 | yes |" in text
    assert ("| default step >= 75% of the matmul roofline | 80% (0.720 GFLOP at 150 GFLOPS) "
            "| yes |") in text
    assert "| default epoch (55k training + 5k validation) <= 2.5 s | 3.20 s | no |" in text
    assert "| warm-cache start-up adds < 1 s | +0.30 s | yes |" in text
    assert "| peak RSS of a default training run < 600 MB | 250 MB | yes |" in text
    for line in text.splitlines():
        if line.startswith("|"):
            assert line.endswith("|"), line


def test_step_product_flops_counts_every_product_of_a_step():
    # Default model, batch 128: forward 784-512-256-(10+10) and 10-256-512-784; backward a weight
    # gradient per layer and an input gradient per layer but the first (its input is the data).
    sizes = [(784, 512), (512, 256), (256, 10), (256, 10), (10, 256), (256, 512), (512, 784)]
    per_layer = [2 * 128 * k * m for k, m in sizes]
    assert bench.step_product_flops("default", 128) == 3 * sum(per_layer) - per_layer[0]


def test_isa_features_turn_avx512_off_or_on():
    host = "+avx,+avx2,+fma,+avx512f,-avx512bw,+avx512vl,-amx-tile,+sse4.2"
    assert bench.isa_features("avx2", host) == \
        "+avx,+avx2,+fma,-avx512f,-avx512bw,-avx512vl,-amx-tile,+sse4.2"
    assert bench.isa_features("avx512", "+avx2,-avx512f,-avx512bw,-avx512bf16") == \
        "+avx2,+avx512f,+avx512bw,-avx512bf16"
    env = bench.isa_environment("avx2", "cache-here")
    assert env["NUMBA_CPU_NAME"] == "haswell" and env["OPENBLAS_CORETYPE"] == "Haswell"
    assert env["NUMBA_CACHE_DIR"] == "cache-here" and "+avx512f" not in env["NUMBA_CPU_FEATURES"]


def test_spread_is_median_and_quartiles():
    s = bench.spread([1.0, 2.0, 3.0, 4.0, 100.0])
    assert (s["median"], s["q25"], s["q75"], s["n"]) == (3.0, 2.0, 4.0, 5)


def test_help_and_a_bad_flag_in_subprocess():
    run = lambda *args: subprocess.run([sys.executable, "-m", "bench", *args],
                                       cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    result = run("--help")
    assert result.returncode == 0 and "--quick" in result.stdout
    assert "--isa" in result.stdout
    result = run("--only", "nonsense")
    assert result.returncode == 2 and result.stderr.count("\n") == 1


def test_table_sets_pytorch_beside_gr_numpy_when_it_was_timed():
    seconds = {"numba": fake_spread(1.6), "numpy": fake_spread(2.4),
               "torch-eager": fake_spread(3.3), "torch-fused": fake_spread(3.1),
               "torch-compile": fake_spread(2.8)}
    results = {"machine": {"date": "2026-01-01 00:00 UTC", "cpu": "Some CPU", "logical_cpus": 2,
                           "simd": ["avx512f"], "numpy": "2.0", "numba": "0.60",
                           "openblas_core": "SkylakeX", "numba_threads": 2,
                           "numba_threading_layer": "omp", "load_average_start": 0.1,
                           "load_average_end": 0.2},
               "epochs": [{"preset": "default", "ratio": 0.67, "seconds": seconds,
                           "peak_rss_mb": {lib: fake_spread(250.0) for lib in seconds},
                           "torch_best": "torch-compile", "torch_ratio": 1.6 / 2.8,
                           "warmup_seconds": {"numba": fake_spread(0.5),
                                              "torch-compile": fake_spread(20.0)}}]}
    text = bench.table(results)
    assert ("| default | 1.60 [1.44-1.76] | 3.30 [2.97-3.63] | 3.10 [2.79-3.41] | "
            "2.80 [2.52-3.08] | 0.57 |") in text
    assert ("Not counted above, the warm-up before each timed epoch (three steps; gr-numpy's "
            "loads its compiled kernels, torch.compile's compiles): numba 0.50 [0.45-0.55] s, "
            "torch-compile 20.00 [18.00-22.00] s.") in text
    assert ("| default epoch <= 0.5x PyTorch's best configuration, same threads | 0.57x "
            "(torch-compile) | no |") in text


def test_the_pytorch_recipe_module_imports_without_pytorch():
    """bench/torch_recipe.py is importable (and says whether PyTorch is there) either way."""
    from bench import torch_recipe
    assert torch_recipe.VARIANTS == ("eager", "fused", "compile")
    assert torch_recipe.torch_available() in (True, False)
