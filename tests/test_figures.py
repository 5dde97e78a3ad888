"""Figures: each one is written as a valid PNG, and the traversal, the style traversal and the
analogies decode the codes they claim, group by group of the model's routing."""

import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gr_numpy.tools import figures
from gr_numpy.checkpoint import save_checkpoint
from gr_numpy.data import to_rows
from gr_numpy.model import VAE, VAEConfig
from gr_numpy.routing import ROUTINGS

ROOT = Path(__file__).resolve().parents[1]
SMALL = VAEConfig(enc_hidden=(8,), dec_hidden=(8,))           # 784 -> 8 -> 10 -> 8 -> 784


def assert_png(path):
    """path holds a PNG with a non-empty image (signature and IHDR width, height > 0)."""
    data = Path(path).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", path
    assert data[12:16] == b"IHDR", path
    width, height = struct.unpack(">II", data[16:24])
    assert width > 0 and height > 0, path


@pytest.fixture
def model():
    return VAE(SMALL, rng=np.random.default_rng(0))


@pytest.fixture
def synthetic():
    rng = np.random.default_rng(1)
    return rng.integers(0, 256, size=(60, 28, 28), dtype=np.uint8), np.arange(60) % 10


def history(epochs=3):
    return [{"epoch": e, "loss": 200.0 - e, "recon": 190.0 - e, "kl": 5.0 + e, "lr": 1e-3,
             "val_acc": 0.5 + 0.1 * e, "val_mse": 0.05, "seconds": 1.0}
            for e in range(1, epochs + 1)]


def test_write_run_figures_writes_three_pngs(model, synthetic, tmp_path):
    images, labels = synthetic
    test = model.score(images, labels)
    paths = figures.write_run_figures(model, images, labels, test, history(), tmp_path / "out")
    assert [Path(p).name for p in paths] == ["traversal.png", "confusion.png", "curves.png"]
    for p in paths:
        assert_png(p)


def test_curves_without_validation_and_with_one_epoch(tmp_path):
    h = history(1)
    h[0]["val_acc"] = None
    assert_png(figures.plot_curves(h, tmp_path / "curves.png"))


def test_traversal_decodes_t_times_each_basis_vector(model, synthetic):
    x = to_rows(synthetic[0])
    high = figures.high_values(model, x)
    assert high.shape == (10,) and np.all(high > 0)
    images = figures.traversal(model, high, steps=5)              # (G, T, D), one dim a group
    assert images.shape == (10, 5, 784)
    for k in (0, 7):                                              # column 0 is the zero code
        np.testing.assert_allclose(images[k, 0], model.decode(np.zeros(10))[0], rtol=1e-6)
        end = np.zeros(10)
        end[k] = high[k]
        np.testing.assert_allclose(images[k, -1], model.decode(end)[0], rtol=1e-5, atol=1e-7)


def routed_model(routing, style=0):
    r = ROUTINGS[routing](style=style)
    cfg = VAEConfig(enc_hidden=(8,), dec_hidden=(8,), latent=r.routed_dims, style=style)
    return VAE(cfg, rng=np.random.default_rng(0), routing=r)


@pytest.mark.parametrize("routing", ["two-per-digit", "halves"])
def test_traversal_sweeps_each_groups_dims_together(synthetic, routing):
    model = routed_model(routing, style=2)
    x = to_rows(synthetic[0])
    high = figures.high_values(model, x)
    K, C = model.config.latent, model.config.code_dim
    assert high.shape == (K,) and np.all(high > 0)
    images = figures.traversal(model, high, steps=5)              # (G, T, D)
    groups = model.routing.groups
    assert images.shape == (len(groups), 5, 784)
    for g in (0, len(groups) - 1):
        for step, t in ((2, 0.5), (4, 1.0)):                      # halfway, and the far end
            z = np.zeros(C)
            z[groups[g]] = t * high[groups[g]]                    # the whole group, style at 0
            np.testing.assert_allclose(images[g, step], model.decode(z)[0], rtol=1e-5,
                                       atol=1e-7)
    np.testing.assert_allclose(figures.group_high(model.routing, high),
                               [high[dims].mean() for dims in groups])


def test_a_dim_never_positive_gets_high_value_one(model, synthetic):
    x = to_rows(synthetic[0])
    model.params["mu.b"][3] = -1e3                                # dim 3 is always switched off
    high = figures.high_values(model, x)
    assert high[3] == 1.0 and np.all(high > 0)


STYLE = VAEConfig(enc_hidden=(8,), dec_hidden=(8,), style=3)   # 10 digit dims + 3 style dims


def test_write_run_figures_of_halves_names_the_groups(synthetic, tmp_path):
    """A routing of two groups: a (10, 2) confusion matrix, and all four figures."""
    model = routed_model("halves", style=2)
    images, labels = synthetic
    test = model.score(images, labels)
    assert np.shape(test["confusion"]) == (10, 2) and test["groups"] == ["0-4", "5-9"]
    paths = figures.write_run_figures(model, images, labels, test, history(), tmp_path)
    assert [Path(p).name for p in paths] == ["traversal.png", "confusion.png", "curves.png",
                                             "analogies.png"]
    for p in paths:
        assert_png(p)


def test_style_run_also_writes_analogies(synthetic, tmp_path):
    model = VAE(STYLE, rng=np.random.default_rng(0))
    images, labels = synthetic
    test = model.score(images, labels)
    paths = figures.write_run_figures(model, images, labels, test, history(), tmp_path)
    assert [Path(p).name for p in paths] == ["traversal.png", "confusion.png", "curves.png",
                                             "analogies.png"]
    for p in paths:
        assert_png(p)


def test_analogies_keep_each_images_style_and_switch_the_digit(synthetic):
    model = VAE(STYLE, rng=np.random.default_rng(0))
    x = to_rows(synthetic[0][:4])
    levels = np.linspace(1.0, 2.0, 10)
    prototypes = np.concatenate([np.diag(levels), np.zeros((10, 3))], axis=1)   # (L, K + S)
    images = figures.analogies(model, x, prototypes)               # (R, L, D)
    assert images.shape == (4, 10, 784)
    code = model.code(x)                                           # (R, K + S)
    for r, d in [(0, 0), (3, 7)]:
        z = np.zeros(13)
        z[d] = levels[d]
        z[10:] = code[r, 10:]                                      # its own style
        np.testing.assert_allclose(images[r, d], model.decode(z)[0], rtol=1e-5, atol=1e-7)


def test_analogies_of_halves_set_the_digits_half_to_its_prototype(synthetic):
    model = routed_model("halves", style=2)                        # C = 32 + 2
    x = to_rows(synthetic[0][:3])
    prototypes = model.routing.prototypes(model.code(to_rows(synthetic[0])), synthetic[1],
                                          fallback=np.ones(34))
    images = figures.analogies(model, x, prototypes)               # (R, L, D)
    assert images.shape == (3, 10, 784)
    code = model.code(x)
    for r, d, half in [(0, 2, slice(0, 16)), (2, 6, slice(16, 32))]:
        z = np.zeros(34)
        z[half] = prototypes[d, half]                              # digit d's half, the other 0
        z[32:] = code[r, 32:]                                      # its own style
        np.testing.assert_allclose(images[r, d], model.decode(z)[0], rtol=1e-5, atol=1e-7)


def test_traversal_of_a_style_model_holds_style_at_zero(synthetic):
    model = VAE(STYLE, rng=np.random.default_rng(0))
    x = to_rows(synthetic[0])
    high = figures.high_values(model, x)
    assert high.shape == (10,)
    images = figures.traversal(model, high, steps=3)
    end = np.zeros(13)
    end[4] = high[4]
    np.testing.assert_allclose(images[4, -1], model.decode(end)[0], rtol=1e-5, atol=1e-7)
    prototypes = np.concatenate([np.eye(10), np.zeros((10, 3))], axis=1)
    rows, low, top = figures.style_traversal(model, x, prototypes, steps=3)
    assert rows.shape == (3, 3, 784) and np.all(low <= top)
    z = np.zeros(13)
    z[2], z[10 + 2] = 1.0, top[2]                # row 2: digit 2's prototype, style dim 2 high
    np.testing.assert_allclose(rows[2, -1], model.decode(z)[0], rtol=1e-5, atol=1e-7)


def test_analogy_rows_take_the_first_image_of_each_digit():
    labels = np.array([3, 1, 0, 1, 2, 9, 4, 5, 6, 7, 8, 0])
    np.testing.assert_array_equal(figures.analogy_rows(labels), [2, 1, 4, 0, 6, 7, 8, 9, 10, 5])


def test_importing_figures_leaves_pyplot_alone():
    code = "import sys, gr_numpy.tools.figures; print('matplotlib.pyplot' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=ROOT, timeout=120)
    assert result.stdout.strip() == "False", result.stderr


# --------------------------------------------------------------------- the command line
def make_run(folder, routed, seed, routing="one-per-digit"):
    """A run folder like train.py leaves: checkpoint.npz and metrics.json, for a tiny model."""
    folder.mkdir()
    r = ROUTINGS[routing]()
    cfg = VAEConfig(enc_hidden=(8,), dec_hidden=(8,), latent=r.routed_dims)
    model = VAE(cfg, rng=np.random.default_rng(seed), routing=r)
    save_checkpoint(folder / "checkpoint.npz", model.params,
                    {"model": cfg.to_dict(), "routing": r.to_dict()})
    confusion = np.ones((10, len(r.groups)), dtype=int)
    confusion[np.arange(10), r.label_group] += 3
    metrics = {"test_acc": 0.75, "test_mse": 0.05, "per_class_acc": [0.75] * 10,
               "confusion": confusion.tolist(), "groups": r.group_names, "history": history(2),
               "train": {"routed": routed}}
    (folder / "metrics.json").write_text(json.dumps(metrics))
    return folder


@pytest.mark.parametrize("given", ["folder", "file"])
def test_cli_redraws_a_run_and_the_comparison(mnist_dir, tmp_path, capsys, given):
    routed = make_run(tmp_path / "routed", True, seed=0, routing="halves")
    plain = make_run(tmp_path / "plain", False, seed=1)
    if given == "file":
        routed, plain = routed / "checkpoint.npz", plain / "checkpoint.npz"
    out = tmp_path / "figs"
    assert figures.main(["--checkpoint", str(routed), "--compare", str(plain), "--out",
                         str(out), "--data-dir", str(mnist_dir)]) == 0
    names = ["traversal.png", "confusion.png", "curves.png", "routing_vs_plain.png"]
    for name in names:
        assert_png(out / name)
    assert capsys.readouterr().out.count("figure | ") == 4


def test_cli_writes_into_the_checkpoints_folder_by_default(mnist_dir, tmp_path):
    run = make_run(tmp_path / "run", True, seed=0, routing="two-per-digit")
    assert figures.main(["--checkpoint", str(run / "checkpoint.npz"),
                         "--data-dir", str(mnist_dir)]) == 0
    for name in ["traversal.png", "confusion.png", "curves.png"]:
        assert_png(run / name)


def test_run_title_names_the_folder_the_routing_and_whether_it_was_applied(tmp_path):
    routing = ROUTINGS["halves"]()
    (tmp_path / "b").mkdir()                                       # a run folder
    assert figures.run_title(tmp_path / "a" / "checkpoint.npz", {"train": {"routed": True}},
                             routing) == "a (halves, routed)"
    assert figures.run_title(tmp_path / "b", {"train": {"routing": False}},   # an older run
                             routing) == "b (halves, not routed)"


@pytest.mark.parametrize("remove, message", [("metrics.json", "has not finished"),
                                             ("checkpoint.npz", "holds no checkpoint.npz")])
def test_cli_incomplete_run_is_one_line_and_exit_2(tmp_path, capsys, remove, message):
    run = make_run(tmp_path / "run", True, seed=0)
    (run / remove).unlink()
    with pytest.raises(SystemExit) as stop:
        figures.main(["--checkpoint", str(run)])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and message in err
