"""The routing inspector: routed gradients reach the encoder only through the label's group."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gr_numpy.model import VAE, VAEConfig
from gr_numpy.routing import Routing
from gr_numpy.tools.inspector import format_table, main, recon_gradient_at_mu, routing_table

ROOT = Path(__file__).resolve().parents[1]
K = 4


def tiny_model(relu_z=True, style=0, routing=None):
    """A float64 VAE: 12 pixels -> 9 -> K=4 (+ S style dims) -> 9 -> 12; by default one dim per
    label (4 labels)."""
    cfg = VAEConfig(input_dim=12, enc_hidden=(9,), dec_hidden=(9,), latent=K, relu_z=relu_z,
                    style=style, dtype="float64")
    return VAE(cfg, rng=np.random.default_rng(0), routing=routing)


def pairs(style=0):
    """Four labels in two groups of two dims, like the halves: labels 0, 1 -> dims 0, 1; labels
    2, 3 -> dims 2, 3."""
    return Routing("pairs", [[0, 1], [2, 3]], [0, 0, 1, 1], K + style, ["0-1", "2-3"])


def tiny_batch(model, N=20):
    """x, labels (every class), and eps large enough that every z is positive (ReLU on z open)."""
    rng = np.random.default_rng(1)
    x = rng.uniform(size=(N, 12))
    labels = np.arange(N) % K
    eps = 3.0 + np.abs(rng.normal(size=(N, model.config.code_dim)))
    _, _, z = model.encoder_forward(x, eps, {})
    assert np.all(z > 0), "the ReLU on z is closed somewhere; the diagonal test would be weak"
    return x, labels, eps


@pytest.mark.parametrize("relu_z", [True, False])
def test_routed_table_is_diagonal_and_plain_table_is_full(relu_z):
    model = tiny_model(relu_z)
    x, labels, eps = tiny_batch(model)
    routed, plain = routing_table(model, x, labels, eps)
    assert routed.shape == plain.shape == (K, K)
    off = ~np.eye(K, dtype=bool)
    np.testing.assert_array_equal(routed[off], 0.0)           # exactly zero, not just small
    assert np.all(np.diagonal(routed) > 0)
    assert np.all(plain[off] > 0)                             # without routing: every dim lit
    # Routing keeps the label's own column as it is: the diagonals are identical.
    np.testing.assert_array_equal(np.diagonal(routed), np.diagonal(plain))


def test_style_columns_are_not_routed():
    """With S style dims: the digit block is still diagonal; the style columns are the same
    routed or not, and lit for every digit."""
    S = 3
    model = tiny_model(style=S)
    x, labels, eps = tiny_batch(model)
    routed, plain = routing_table(model, x, labels, eps)
    assert routed.shape == plain.shape == (K, K + S)
    off = ~np.eye(K, dtype=bool)
    np.testing.assert_array_equal(routed[:, :K][off], 0.0)
    assert np.all(np.diagonal(routed[:, :K]) > 0)
    np.testing.assert_array_equal(routed[:, K:], plain[:, K:])
    assert np.all(routed[:, K:] > 0)
    lines = format_table(routed, np.bincount(labels, minlength=K), "routed", model.routing)
    assert "style 2" in lines[1] and lines[2].count("|") == 2
    assert "100.0%" in lines[-2] and "0 (exactly)" in lines[-2]
    assert lines[-1].startswith("style dims")


@pytest.mark.parametrize("style", [0, 2])
def test_groups_of_several_dims_sum_their_dims_and_only_the_own_group_is_lit(style):
    """Two labels a group: the routed table is zero outside each label's own group, exactly;
    a group's cell is the sum of its dims' gradients; the plain table is lit everywhere."""
    model = tiny_model(style=style, routing=pairs(style))
    x, labels, eps = tiny_batch(model)
    routed, plain = routing_table(model, x, labels, eps)
    assert routed.shape == plain.shape == (4, 2 + style)
    own = np.array([[True, False], [True, False], [False, True], [False, True]])
    np.testing.assert_array_equal(routed[:, :2][~own], 0.0)
    assert np.all(routed[:, :2][own] > 0)
    assert np.all(plain[:, :2] > 0)
    np.testing.assert_array_equal(routed[:, :2][own], plain[:, :2][own])   # own group as it was
    np.testing.assert_array_equal(routed[:, 2:], plain[:, 2:])            # style: not routed

    # A group's cell is the sum over its dims of the per-dim table.
    one_dim_each = tiny_model(style=style)                       # same weights, one dim a label
    _, per_dim = routing_table(one_dim_each, x, labels, eps)
    np.testing.assert_allclose(plain[:, 0], per_dim[:, 0] + per_dim[:, 1], rtol=1e-12)
    np.testing.assert_allclose(plain[:, 1], per_dim[:, 2] + per_dim[:, 3], rtol=1e-12)

    lines = format_table(routed, np.bincount(labels, minlength=4), "routed", model.routing)
    assert "group 0-1" in lines[1] and "group 2-3" in lines[1]
    summary = lines[-2] if style else lines[-1]
    assert "100.0%" in summary and "0 (exactly)" in summary
    plain_summary = format_table(plain, np.bincount(labels, minlength=4), "plain",
                                 model.routing)[-2 if style else -1]
    share = np.sum(plain[:, :2][own]) / np.sum(plain[:, :2])
    assert f"{100 * share:.1f}%" in plain_summary and "0 (exactly)" not in plain_summary


def test_closed_relu_on_z_blocks_the_gradient():
    """With z = relu(sample) and every sample negative, nothing reaches the encoder at all."""
    model = tiny_model(relu_z=True)
    x, labels, eps = tiny_batch(model)
    routed, plain = routing_table(model, x, labels, -eps)     # samples now far below 0
    np.testing.assert_array_equal(routed, 0.0)
    np.testing.assert_array_equal(plain, 0.0)


def test_inspector_gradient_is_what_encoder_backward_uses():
    """Summed over the batch, the per-image gradient at mu is encoder_backward's mu.b gradient
    (with the KL term taken out), routed and plain: the inspector follows the model's code."""
    model = tiny_model()
    x, labels, eps = tiny_batch(model)
    _, cache = model.forward(x, eps)
    cache["dmu_kl"] = np.zeros_like(cache["dmu_kl"])
    cache["dlogvar_kl"] = np.zeros_like(cache["dlogvar_kl"])
    cache["dz_l1"] = np.zeros_like(cache["dz_l1"])
    dz = model.decoder_backward(cache, {})
    for lab in (labels, None):
        routed_dz = dz if lab is None else dz * model.routing.mask(lab)
        grads = model.encoder_backward(routed_dz, cache, {})
        dmu_recon = recon_gradient_at_mu(model, cache, dz, lab)
        np.testing.assert_allclose(dmu_recon.sum(axis=0), grads["mu.b"], rtol=1e-12, atol=1e-15)


def test_a_digit_missing_from_the_batch_gives_a_nan_row():
    model = tiny_model()
    x, labels, eps = tiny_batch(model)
    labels = np.where(labels == 2, 1, labels)
    routed, plain = routing_table(model, x, labels, eps)
    assert np.all(np.isnan(routed[2])) and np.all(np.isnan(plain[2]))
    assert np.all(np.isfinite(np.delete(routed, 2, axis=0)))


# --------------------------------------------------------------------- the command line
def table_rows(text, title):
    """The 10 data rows printed under the table whose title starts with `title` -> cell lists."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title))
    return [line.split("|")[1].split() for line in lines[start + 2:start + 12]]


def test_cli_untrained_is_the_default_recipe(mnist_dir, capsys, monkeypatch):
    import gr_numpy.tools.inspector as inspector
    built = []
    real_vae = inspector.VAE
    monkeypatch.setattr(inspector, "VAE", lambda *a, **k: built.append(a[0]) or real_vae(*a, **k))
    assert main(["--untrained", "--batch-size", "50", "--data-dir", str(mnist_dir)]) == 0
    assert built == [VAEConfig()]
    assert "one-per-digit" in capsys.readouterr().out


def test_cli_on_an_untrained_model_prints_both_tables(mnist_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)                  # no runs/default here: an untrained model
    plot = tmp_path / "tables.png"
    assert main(["--data-dir", str(mnist_dir), "--plot", str(plot)]) == 0
    out = capsys.readouterr().out
    assert "untrained" in out
    routed = table_rows(out, "WITH routing")
    plain = table_rows(out, "WITHOUT routing")
    for c in range(10):
        assert [cell != "." for cell in routed[c]] == [k == c for k in range(10)], routed[c]
        assert "." not in plain[c]
    assert "own group's share of the gradient into the groups: 100.0% | largest cell outside " \
           "it 0 (exactly)" in out
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_bad_checkpoint_is_one_line_and_exit_2(tmp_path):
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    env = dict(os.environ, PYTHONPATH=path)       # finds gr_numpy without `pip install -e .`
    result = subprocess.run([sys.executable, "-m", "gr_numpy.tools.inspector", "--checkpoint",
                             str(tmp_path / "missing.npz")], capture_output=True, text=True,
                            cwd=tmp_path, env=env, timeout=300)
    assert result.returncode == 2
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "no checkpoint" in result.stderr


def test_cli_folder_without_a_checkpoint_is_one_line_and_exit_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--checkpoint", str(tmp_path)])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "holds no checkpoint.npz" in err


def test_cli_corrupt_checkpoint_is_one_line_and_exit_2(tmp_path, capsys):
    bad = tmp_path / "checkpoint.npz"
    bad.write_bytes(b"not a zip file at all")
    with pytest.raises(SystemExit) as stop:
        main(["--checkpoint", str(bad)])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "not a readable checkpoint" in err


def test_cli_untrained_and_checkpoint_exclude_each_other(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--untrained", "--checkpoint", str(tmp_path / "c.npz")])
    assert stop.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
