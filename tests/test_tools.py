"""Every tool on real checkpoints, as a user runs it.

Tiny models are trained once through train.py's command line, one per routing (one dim per
digit, two per digit, the halves), one with style dims and one without routing. Then the demo,
the figures, the inspector and `train.py --eval-only` run on each in a fresh process, given the
run folder and given its checkpoint.npz: each must exit 0 and write images of the kind asked for.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--hidden", "16", "--epochs", "1", "--train-subset", "500", "--val-size", "100",
        "--threads", "1"]
RUNS = {"one-per-digit": ["--routing", "one-per-digit"],
        "two-per-digit": ["--routing", "two-per-digit"],
        "halves": ["--routing", "halves"],
        "style": ["--preset", "style"],                   # one dim per digit and 8 style dims
        "no-routing": ["--no-routing"]}
DIGITS = [str(k) for k in range(10)]
GROUPS = {"one-per-digit": DIGITS, "two-per-digit": DIGITS, "halves": ["0-4", "5-9"],
          "style": DIGITS, "no-routing": DIGITS}               # the routing groups' names
FIGURES = ["traversal.png", "confusion.png", "curves.png"]
MORPH_FRAMES = 6


def env():
    """The repository importable, one thread everywhere, no window, no download."""
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    threads = {v: "1" for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                                "NUMBA_NUM_THREADS")}
    return dict(os.environ, PYTHONPATH=path, MPLBACKEND="Agg", GR_NUMPY_NO_DOWNLOAD="1",
                **threads)


def run(*args, cwd):
    result = subprocess.run([sys.executable, *map(str, args)], cwd=cwd, env=env(),
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{' '.join(map(str, args))}\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stderr, result.stderr
    return result


def assert_image(path, kind, size=None):
    """path holds an image Pillow reads as `kind` ("PNG", "GIF"), of `size` (w, h) if given;
    -> its frame count."""
    with Image.open(path) as image:
        assert image.format == kind, path
        assert image.width > 0 and image.height > 0, path
        if size is not None:
            assert image.size == size, path
        return getattr(image, "n_frames", 1)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, mnist_dir):
    """name -> run folder of a tiny model trained by `python train.py`, with its figures."""
    root = tmp_path_factory.mktemp("runs")
    folders = {}
    for name, flags in RUNS.items():
        out = root / name
        run(ROOT / "train.py", *flags, *TINY, "--data-dir", mnist_dir, "--out", out, cwd=root)
        for figure in FIGURES + (["analogies.png"] if name == "style" else []):
            assert_image(out / figure, "PNG")                  # train.py drew them too
        folders[name] = out
    return folders


def checkpoint(runs, name, given):
    """The run folder, or the checkpoint file in it."""
    return runs[name] if given == "folder" else runs[name] / "checkpoint.npz"


GIVEN = ["folder", "file"]


@pytest.mark.parametrize("given", GIVEN)
@pytest.mark.parametrize("name", RUNS)
def test_demo_saves_the_window_and_the_morph(runs, name, given, tmp_path, mnist_dir):
    png, gif = tmp_path / "demo.png", tmp_path / "morph.gif"
    result = run(ROOT / "demo.py", "--checkpoint", checkpoint(runs, name, given),
                 "--data-dir", mnist_dir, "--save", png, "--morph", gif,
                 "--morph-frames", MORPH_FRAMES, cwd=tmp_path)
    assert result.stdout.splitlines() == [f"wrote {png}", f"wrote {gif}"]
    assert_image(png, "PNG", size=(1200, 700))
    # The GIF writer merges identical frames (two digits that share a group may share a
    # prototype in so tiny a model), so some frames, not always all, are kept.
    assert 1 < assert_image(gif, "GIF") <= MORPH_FRAMES


@pytest.mark.parametrize("given", GIVEN)
@pytest.mark.parametrize("name", RUNS)
def test_figures_redraws_the_run(runs, name, given, tmp_path, mnist_dir):
    out = tmp_path / "figures"
    result = run("-m", "gr_numpy.tools.figures", "--checkpoint", checkpoint(runs, name, given),
                 "--data-dir", mnist_dir, "--out", out, cwd=tmp_path)
    expected = FIGURES + (["analogies.png"] if name == "style" else [])
    assert result.stdout.splitlines() == [f"figure | {out / f}" for f in expected]
    for figure in expected:
        assert_image(out / figure, "PNG")


def test_figures_compares_a_routed_and_a_plain_run(runs, tmp_path, mnist_dir):
    out = tmp_path / "figures"
    run("-m", "gr_numpy.tools.figures", "--checkpoint", runs["halves"],
        "--compare", runs["no-routing"] / "checkpoint.npz", "--data-dir", mnist_dir,
        "--out", out, cwd=tmp_path)
    assert_image(out / "routing_vs_plain.png", "PNG")


@pytest.mark.parametrize("given", GIVEN)
@pytest.mark.parametrize("name", RUNS)
def test_inspector_shows_each_digit_in_its_own_group(runs, name, given, tmp_path, mnist_dir):
    plot = tmp_path / "tables.png"
    result = run("-m", "gr_numpy.tools.inspector", "--checkpoint", checkpoint(runs, name, given),
                 "--batch-size", 200, "--data-dir", mnist_dir, "--plot", plot, cwd=tmp_path)
    lines = result.stdout.splitlines()
    routed = lines.index("WITH routing: mask(labels) * dL/dz, as in VAE.backward")
    header = lines[routed + 1]
    assert re.findall(r"group (\S+)", header) == GROUPS[name]
    assert ("style 5" in header) == (name == "style")
    assert lines[routed + 12] == ("own group's share of the gradient into the groups: 100.0% | "
                                  "largest cell outside it 0 (exactly)")
    assert_image(plot, "PNG")


@pytest.mark.parametrize("given", GIVEN)
@pytest.mark.parametrize("name", RUNS)
def test_eval_only_scores_the_checkpoint_as_training_did(runs, name, given, tmp_path, mnist_dir):
    result = run(ROOT / "train.py", "--eval-only", "--checkpoint", checkpoint(runs, name, given),
                 "--threads", 1, "--data-dir", mnist_dir, cwd=tmp_path)
    metrics = json.loads((runs[name] / "metrics.json").read_text())
    assert result.stdout.startswith(f"test   | acc {100 * metrics['test_acc']:.2f}% |")
