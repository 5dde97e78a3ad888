"""See gradient routing happen: which latent dims carry each digit's gradient into the encoder.

    python -m gr_numpy.inspector [--checkpoint PATH | --untrained] [--seed 0] [--plot PNG]

Takes one batch of MNIST training images, runs the model forward and the decoder backward to get
dL/dz (N, K + S), and follows it to the encoder's mu head twice: with routing (dL/dz masked by
`routing.route_gradient`, as `VAE.backward` does) and without. It prints one table for each:
row c = images of digit c, column k = latent dim k, cell = how much reconstruction gradient
those images send into the encoder through dim k. With routing only the diagonal is non-zero;
without it every cell is lit. A model with S style dims gets S more columns, shown apart: the
style dims are not routed, so every digit's gradient reaches them either way. Nothing is
trained or changed. It inspects --checkpoint, else
runs/default/checkpoint.npz if present, else (or with --untrained) a freshly initialised model,
which shows the same pattern.

Glossary: N batch, D pixels (784), K digit dims (= classes, 10), S style dims. Tables are
(K, K + S): row = true digit, column = latent dim (the K digit dims, then the S style dims).
"""

import argparse
import os
import sys

import numpy as np

from .checkpoint import CheckpointError, load_model
from .cli import DEFAULT_CHECKPOINT, OneLineParser, add_data_dir, fail, int_in, output_file
from ..data import DataError, load_mnist, to_rows
from .figures import new_figure, save_figure
from ..model import VAE, VAEConfig
from ..routing import route_gradient

CELL_MEANING = """\
cell [c, k] = mean over the batch's images n of digit c of N * |dmu_recon[n, k]|, where
  dmu_recon = 1[z > 0] * route_gradient(dL/dz, labels)  (routed)  or  1[z > 0] * dL/dz  (plain)
is the reconstruction gradient that enters the encoder through latent dim k, and N * undoes the
batch mean: the cell is the gradient of an image's own reconstruction loss. '.' = exactly 0."""


def recon_gradient_at_mu(model, cache, dz, labels):
    """dz (N, K + S) = dL_recon/dz, labels (N,) or None -> dmu_recon (N, K + S), reaching mu.

    What `VAE.backward` does after the decoder, stopped at mu and without the KL and L1 terms,
    so that each image's gradient can be seen before the encoder's layers sum it over the batch:
    the same `route_gradient`, then the model's own `sample_backward`.
    """
    if labels is not None:
        dz = route_gradient(dz, labels, model.config.style)           # the routing step
    dmu_recon, _ = model.sample_backward(dz, cache)                   # through relu and eps
    return dmu_recon                                                  # (N, K + S)


def routing_table(model, x, labels, eps):
    """x (N, D), labels (N,), eps (N, K + S) -> routed, plain: (K, K + S) float64 each.

    Cell [c, k]: the mean over the batch's images of digit c of N * |dmu_recon[n, k]|, the
    reconstruction gradient that reaches the encoder through latent dim k (see CELL_MEANING).
    Multiplying by N undoes the batch mean in the loss, so the numbers do not depend on the batch
    size. A digit absent from the batch gives a row of NaN. Label c is routed to dim c.
    """
    x = model._check_x(x, "routing_table")
    eps = model._check_eps(eps, x.shape[0], "routing_table")
    labels = model._check_labels(labels, x.shape[0], "routing_table")
    N, K, C = x.shape[0], model.config.latent, model.config.code_dim

    _, cache = model.forward(x, eps)
    dz = model.decoder_backward(cache, {})                            # (N, K + S) dL_recon/dz
    routed = recon_gradient_at_mu(model, cache, dz, labels)           # (N, K + S)
    plain = recon_gradient_at_mu(model, cache, dz, None)              # (N, K + S)

    tables = []
    for g in (routed, plain):
        per_image = N * np.abs(g.astype(np.float64))                  # (N, K + S)
        table = np.full((K, C), np.nan)
        for c in range(K):
            if np.any(labels == c):
                table[c] = per_image[labels == c].mean(axis=0)
        tables.append(table)
    return tables[0], tables[1]


def format_table(table, counts, title):
    """A (K, K + S) table -> lines of text: one row per digit, '.' for an exact 0, '-' for no
    images; the S style columns come after a second bar. The diagonal is over the digit dims."""
    C, width = table.shape                                            # C = K digit rows
    S = width - C
    finite = table[np.isfinite(table)]
    decimals = 3 if finite.size == 0 or finite.max() < 10 else 1

    def cells(values):
        return "".join(f"{'-' if np.isnan(v) else '.' if v == 0 else f'{v:.{decimals}f}':>8}"
                       for v in values)

    header = "digit  images |" + "".join(f"{f'dim {k}':>8}" for k in range(C))
    header += (" |" + "".join(f"{f'style {s}':>8}" for s in range(S))) if S else ""
    lines = [title, header]
    for c in range(C):
        row = f"{c:5d}  {counts[c]:6d} |" + cells(table[c, :C])
        lines.append(row + (" |" + cells(table[c, C:]) if S else ""))
    digits = table[:, :C]
    total = np.nansum(digits)
    diag = np.nansum(np.diagonal(digits))
    off_max = np.nanmax(np.where(np.eye(C, dtype=bool), np.nan, digits)) if C > 1 else 0.0
    off_text = "0 (exactly)" if off_max == 0 else f"{off_max:.{decimals}f}"
    lines.append(f"digit dims: diagonal share {100 * diag / total:.1f}% | largest off-diagonal "
                 f"cell {off_text}" if total > 0 else "the digit dims' table is all zero")
    if S:
        lines.append(f"style dims (not routed): mean cell {np.nanmean(table[:, C:]):.{decimals}f}")
    return lines


def plot_tables(routed, plain, path, subtitle=""):
    """Both tables as heatmaps side by side, on one colour scale, written to a PNG at path."""
    vmax = np.nanmax([np.nanmax(routed), np.nanmax(plain)])
    fig = new_figure(figsize=(12 + 1.2 * (routed.shape[1] - routed.shape[0]), 4.9))  # S wider
    axes = fig.subplots(1, 2)
    for ax, table, title in zip(axes, (routed, plain),
                                ("with routing: route_gradient(dL/dz, labels)",
                                 "without routing: dL/dz")):
        image = ax.imshow(table, cmap="magma", vmin=0, vmax=vmax)
        C, width = table.shape
        for c in range(C):
            for k in range(width):
                v = table[c, k]
                if np.isfinite(v) and v > 0:
                    ax.text(k, c, f"{v:.2g}", ha="center", va="center", fontsize=7,
                            color="black" if v > 0.6 * vmax else "white")
        if width > C:                                             # the style dims, set apart
            ax.axvline(C - 0.5, color="cyan", linewidth=2)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("latent dim k" + (" (after the line: style dims)" if width > C else ""))
        ax.set_ylabel("true digit c")
        ax.set_xticks(range(width))
        ax.set_xticklabels([str(k) for k in range(C)] + [f"s{s}" for s in range(width - C)])
        ax.set_yticks(range(C))
    fig.colorbar(image, ax=axes, shrink=0.8,
                 label="mean |gradient into the encoder through dim k| per image")
    fig.suptitle("Reconstruction gradient reaching the encoder, by digit and latent dim"
                 + (f"\n{subtitle}" if subtitle else ""), fontsize=11)
    return save_figure(fig, path)


# ---------------------------------------------------------------------------- command line
def build_parser():
    p = OneLineParser(prog="python -m gr_numpy.inspector", description=__doc__.splitlines()[0],
                      formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--checkpoint",
                   help=f"model to inspect (default: {DEFAULT_CHECKPOINT} if it exists, else a "
                        f"freshly initialised default-config model)")
    p.add_argument("--untrained", action="store_true",
                   help="ignore any checkpoint: inspect a freshly initialised default-config model")
    add_data_dir(p)
    p.add_argument("--batch-size", type=int_in(1, 60_000), default=1000,
                   help="training images in the batch (1000 holds every digit)")
    p.add_argument("--seed", type=int_in(0, 2**63 - 1), default=0,
                   help="picks the batch, the noise eps and the fresh model's initial weights")
    p.add_argument("--plot", metavar="PNG", help="also draw both tables as heatmaps into PNG")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    prog = "python -m gr_numpy.inspector"
    if args.plot:
        output_file(prog, "--plot", args.plot)
    if args.untrained and args.checkpoint:
        fail(prog, "--untrained and --checkpoint exclude each other; pass one")

    if args.untrained or (args.checkpoint is None and not os.path.isfile(DEFAULT_CHECKPOINT)):
        model = VAE(VAEConfig(), rng=np.random.default_rng(args.seed))
        source = f"untrained (freshly initialised default-config VAE, seed {args.seed})"
        if not args.untrained:
            print(f"note  | no --checkpoint and no {DEFAULT_CHECKPOINT}: inspecting an untrained "
                  f"model (train one with `python train.py`)")
    else:
        path = args.checkpoint or DEFAULT_CHECKPOINT
        try:
            model = load_model(path)
        except CheckpointError as e:
            fail(prog, str(e))
        source = path
    cfg = model.config
    if cfg.input_dim != 784 or cfg.latent != 10:
        fail(prog, f"the model has input_dim {cfg.input_dim} and latent {cfg.latent}; the "
                    f"inspector needs MNIST (784) and one latent dim per digit (10)")

    try:
        images, labels = load_mnist("train", args.data_dir)
    except DataError as e:
        fail(prog, str(e))
    rng = np.random.default_rng(args.seed)
    idx = np.sort(rng.choice(len(images), size=min(args.batch_size, len(images)), replace=False))
    x = to_rows(images[idx])                                          # (N, 784)
    y = labels[idx].astype(np.intp)                                   # (N,)
    eps = rng.standard_normal((len(idx), cfg.code_dim), dtype=np.float32)   # (N, K + S)

    routed, plain = routing_table(model, x, y, eps)
    counts = np.bincount(y, minlength=cfg.latent)
    print(f"model | {source}")
    print(f"batch | {len(idx)} MNIST training images (seed {args.seed}), noise eps ~ N(0, 1)")
    print(CELL_MEANING)
    print()
    for line in format_table(routed, counts, "WITH routing: route_gradient(dL/dz, labels), as in "
                                             "VAE.backward"):
        print(line)
    print()
    for line in format_table(plain, counts, "WITHOUT routing: dL/dz as it is (a plain VAE)"):
        print(line)
    if args.plot:
        try:
            path = plot_tables(routed, plain, args.plot, subtitle=f"model: {source}")
        except OSError as e:
            fail(prog, f"cannot write --plot {args.plot}: {e.strerror or e}")
        print(f"\nplot  | {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
