"""The paper's experiment through the command line: `--preset halves`, its table, its figures,
and every tool on its checkpoint (each shows it, or refuses in one line with exit code 2).

Two tiny autoencoders are trained once by train.py, one routed and one with --no-routing.
"""

import json
import subprocess
import sys

import pytest

from test_tools import ROOT, assert_image, env, run

TINY = ["--preset", "halves", "--hidden", "16", "--epochs", "1", "--train-subset", "500",
        "--val-size", "100", "--threads", "1"]


def refused(*args, cwd):
    """Run a tool that must refuse: exit code 2, one line on stderr, no traceback."""
    result = subprocess.run([sys.executable, *map(str, args)], cwd=cwd, env=env(),
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 2, f"{args}\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, \
        result.stderr
    return result.stderr


@pytest.fixture(scope="module")
def halves_runs(tmp_path_factory, mnist_dir):
    root = tmp_path_factory.mktemp("halves")
    folders = {}
    for name, flags in {"routed": [], "control": ["--no-routing"]}.items():
        out = root / name
        result = run(ROOT / "train.py", *TINY, *flags, "--data-dir", mnist_dir, "--out", out,
                     cwd=root)
        assert "first half (0-4)" in result.stdout and "other / own" in result.stdout
        assert "the paper's Table 2" in result.stdout
        folders[name] = out
    return root, folders


def test_metrics_hold_the_certificate_table(halves_runs):
    _, runs = halves_runs
    for name, out in runs.items():
        metrics = json.loads((out / "metrics.json").read_text())
        assert set(metrics["certificates"]) == {"first", "second"}
        for half in ("first", "second"):
            assert set(metrics["certificates"][half]) == {"0-4", "5-9"}
            assert all(0 < v < 2 for v in metrics["certificates"][half].values())
            assert set(metrics["certificates_mse"][half]) == {"0-4", "5-9"}
            assert all(0 < v < 4 for v in metrics["certificates_mse"][half].values())
            assert metrics["mse_ratios"][half] > 0
        assert 0 < metrics["test_mae"] < 2
        assert metrics["routed"] == (name == "routed")
        for figure in ("certificates.png", "certificates_mae.png"):
            assert_image(out / figure, "PNG")


@pytest.mark.parametrize("given", ["folder", "file"])
def test_tools_on_a_halves_checkpoint(halves_runs, mnist_dir, given, tmp_path):
    root, runs = halves_runs
    ckpt = runs["routed"] if given == "folder" else runs["routed"] / "checkpoint.npz"
    result = run(ROOT / "train.py", "--eval-only", "--checkpoint", ckpt, "--data-dir", mnist_dir,
                 "--threads", "1", cwd=root)
    assert "second half (5-9)" in result.stdout
    run("-m", "gr_numpy.tools.figures", "--checkpoint", ckpt, "--compare", runs["control"],
        "--out", tmp_path, "--data-dir", mnist_dir, cwd=root)
    for figure in ("certificates.png", "certificates_mae.png"):
        assert_image(tmp_path / figure, "PNG")
    run(ROOT / "demo.py", "--checkpoint", ckpt, "--save", tmp_path / "d.png", "--data-dir",
        mnist_dir, cwd=root)
    assert_image(tmp_path / "d.png", "PNG", size=(1200, 700))
    message = refused(ROOT / "demo.py", "--checkpoint", ckpt, "--morph", tmp_path / "d.gif",
                      "--data-dir", mnist_dir, cwd=root)
    assert "autoencoder" in message and "--morph shows VAEs only" in message
    run(ROOT / "demo.py", "--checkpoint", ckpt, "--html", tmp_path / "d.html", "--data-dir",
        mnist_dir, cwd=root)
    assert "certificate" in (tmp_path / "d.html").read_text()
    assert not (tmp_path / "d.gif").exists()
    message = refused("-m", "gr_numpy.tools.inspector", "--checkpoint", ckpt, "--data-dir",
                      mnist_dir, cwd=root)
    assert "autoencoder" in message and "inspector" in message


def test_figures_refuse_to_compare_an_autoencoder_with_a_vae(halves_runs, mnist_dir, tmp_path):
    root, runs = halves_runs
    vae = tmp_path / "vae"
    run(ROOT / "train.py", "--hidden", "16", "--epochs", "1", "--train-subset", "300",
        "--val-size", "100", "--threads", "1", "--no-figures", "--data-dir", mnist_dir,
        "--out", vae, cwd=root)
    message = refused("-m", "gr_numpy.tools.figures", "--checkpoint", runs["routed"],
                      "--compare", vae, "--out", tmp_path, "--data-dir", mnist_dir, cwd=root)
    assert "one kind" in message


def test_a_vae_flag_with_the_halves_preset_is_one_line(tmp_path):
    message = refused(ROOT / "train.py", "--preset", "halves", "--kl-weight", "1",
                      "--out", tmp_path / "x", cwd=tmp_path)
    assert "--kl-weight" in message
    message = refused(ROOT / "train.py", "--preset", "halves", "--routing", "one-per-digit",
                      "--out", tmp_path / "x", cwd=tmp_path)
    assert "--routing halves" in message


def test_resuming_a_halves_run_as_a_vae_is_refused(halves_runs, mnist_dir):
    root, runs = halves_runs
    message = refused(ROOT / "train.py", "--hidden", "16", "--epochs", "2", "--train-subset",
                      "500", "--val-size", "100", "--threads", "1", "--routing", "halves",
                      "--data-dir", mnist_dir, "--out", runs["routed"], "--resume", cwd=root)
    assert "--preset" in message


def test_a_halves_run_resumes_bit_identically(halves_runs, mnist_dir, tmp_path):
    """Two epochs at once, and one epoch then --resume --epochs 2: the same parameters."""
    import numpy as np
    root, _ = halves_runs
    flags = [*TINY[:4], "--train-subset", "300", "--val-size", "100", "--threads", "1",
             "--no-figures", "--data-dir", mnist_dir]
    run(ROOT / "train.py", *flags, "--epochs", "2", "--out", tmp_path / "once", cwd=root)
    run(ROOT / "train.py", *flags, "--epochs", "1", "--out", tmp_path / "twice", cwd=root)
    run(ROOT / "train.py", *flags, "--epochs", "2", "--out", tmp_path / "twice", "--resume",
        cwd=root)
    with np.load(tmp_path / "once" / "checkpoint.npz") as a, \
            np.load(tmp_path / "twice" / "checkpoint.npz") as b:
        for key in a.files:
            if key.startswith("param/"):
                np.testing.assert_array_equal(a[key], b[key], err_msg=key)
