"""See gradient routing happen: which routing groups carry each digit's gradient into the encoder.

    python -m gr_numpy.tools.inspector [--checkpoint PATH | --untrained] [--seed 0] [--plot PNG]

Takes one batch of MNIST training images, runs the model forward and the decoder backward to get
dL/dz (N, C), and follows it to the encoder's mu head twice: with routing (dL/dz times the
model's routing mask, as `VAE.backward` does) and without. It prints one table for each: row l
= images of digit l, column g = routing group g (the gradient summed over the group's dims),
then one column per style dim. With routing a digit's gradient lands only in its own group, so
the summary line says 100% exactly; without it every group is lit. The style dims are not
routed, so every digit's gradient reaches them either way. Nothing is trained or changed. It
inspects --checkpoint (a run folder or its checkpoint.npz), else runs/default if it holds a
checkpoint, else (or with --untrained) a freshly initialised default-recipe model, which shows
the same pattern.

The gradient shown is the reconstruction loss's alone: summed over the batch it equals the
gradient of mu's bias only when the KL and L1 terms are left out (they reach every dim, unrouted).

Glossary: N batch, D pixels (784), C code dims (K routed, then S style), G routing groups,
L labels (10 digits). Tables are (L, G + S): row = true digit, column = group, then style dim.
"""

import os
import sys

import numpy as np

from ..data import DataError, load_mnist, to_rows
from ..model import VAE, VAEConfig
from ..checkpoint import CheckpointError, checkpoint_file, load_model
from .cli import DEFAULT_RUN, OneLineParser, add_checkpoint, add_data_dir, fail, int_in
from .cli import output_file
from .figures import new_figure, save_figure

PROG = "python -m gr_numpy.tools.inspector"

CELL_MEANING = """\
cell [l, g] = mean over the batch's images n of digit l of N * sum over group g's dims d of
|dmu_recon[n, d]|, where
  dmu_recon = 1[z > 0] * (mask(labels) * dL/dz)  (routed)  or  1[z > 0] * dL/dz  (plain)
is the reconstruction gradient that enters the encoder through dim d, and N * undoes the batch
mean: the cell is the gradient of an image's own reconstruction loss. A style column is one
dim. '.' = exactly 0."""


def recon_gradient_at_mu(model, cache, dz, labels):
    """dz (N, C) = dL_recon/dz, labels (N,) or None -> dmu_recon (N, C), reaching mu.

    What `VAE.backward` does after the decoder, stopped at mu and without the KL and L1 terms,
    so that each image's gradient can be seen before the encoder's layers sum it over the batch:
    the same routing mask, then the model's own `sample_backward`.
    """
    if labels is not None:
        dz = dz * model.routing.mask(labels, dz.dtype)                # the routing step
    dmu_recon, _ = model.sample_backward(dz, cache)                   # through relu and eps
    return dmu_recon                                                  # (N, C)


def routing_table(model, x, labels, eps):
    """x (N, D), labels (N,), eps (N, C) -> routed, plain: (L, G + S) float64 each.

    Cell [l, g]: the mean over the batch's images of digit l of N * the sum of |dmu_recon| over
    group g's dims, the reconstruction gradient that reaches the encoder through that group
    (see CELL_MEANING); the last S columns are the style dims, one each. Multiplying by N undoes
    the batch mean in the loss, so the numbers do not depend on the batch size. A digit absent
    from the batch gives a row of NaN.
    """
    x, labels, eps = model.check_inputs(x, labels, eps, "routing_table")
    routing, N, K = model.routing, x.shape[0], model.config.latent

    _, cache = model.forward(x, eps)
    dz = model.decoder_backward(cache, {})                            # (N, C) dL_recon/dz
    routed = recon_gradient_at_mu(model, cache, dz, labels)           # (N, C)
    plain = recon_gradient_at_mu(model, cache, dz, None)              # (N, C)

    tables = []
    for g in (routed, plain):
        per_dim = N * np.abs(g.astype(np.float64))                    # (N, C)
        per_group = np.stack([per_dim[:, dims].sum(axis=1) for dims in routing.groups], axis=1)
        per_column = np.concatenate([per_group, per_dim[:, K:]], axis=1)   # (N, G + S)
        table = np.full((routing.labels, per_column.shape[1]), np.nan)
        for label in range(routing.labels):
            if np.any(labels == label):
                table[label] = per_column[labels == label].mean(axis=0)
        tables.append(table)
    return tables[0], tables[1]


def own_group(routing):
    """-> (L, G) bools: True at [l, g] when g is digit l's own group."""
    return np.arange(len(routing.groups))[None, :] == routing.label_group[:, None]


def format_table(table, counts, title, routing):
    """A (L, G + S) table -> lines of text: one row per digit, '.' for an exact 0, '-' for no
    images; the S style columns come after a second bar. Then the share of the gradient into
    the groups that lands in each digit's own group."""
    G = len(routing.groups)
    S = table.shape[1] - G
    finite = table[np.isfinite(table)]
    decimals = 3 if finite.size == 0 or finite.max() < 10 else 1
    width = max(8, 1 + max(len(f"group {name}") for name in routing.group_names))

    def cells(values, w):
        return "".join(f"{'-' if np.isnan(v) else '.' if v == 0 else f'{v:.{decimals}f}':>{w}}"
                       for v in values)

    header = "digit  images |" + "".join(f"{f'group {name}':>{width}}"
                                         for name in routing.group_names)
    header += (" |" + "".join(f"{f'style {s}':>8}" for s in range(S))) if S else ""
    lines = [title, header]
    for label in range(routing.labels):
        row = f"{label:5d}  {counts[label]:6d} |" + cells(table[label, :G], width)
        lines.append(row + (" |" + cells(table[label, G:], 8) if S else ""))
    groups = table[:, :G]
    own = own_group(routing)
    total = np.nansum(groups)
    off = groups[~own]
    off_max = np.nanmax(off) if off.size and np.isfinite(off).any() else 0.0
    off_text = "0 (exactly)" if off_max == 0 else f"{off_max:.{decimals}f}"
    lines.append(f"own group's share of the gradient into the groups: "
                 f"{100 * np.nansum(groups[own]) / total:.1f}% | largest cell outside it "
                 f"{off_text}" if total > 0 else "the groups' table is all zero")
    if S:
        lines.append(f"style dims (not routed): mean cell {np.nanmean(table[:, G:]):.{decimals}f}")
    return lines


def plot_tables(routed, plain, path, routing, subtitle=""):
    """Both tables as heatmaps side by side, on one colour scale, written to a PNG at path."""
    vmax = np.nanmax([np.nanmax(routed), np.nanmax(plain)])
    L, width = routed.shape
    G = len(routing.groups)
    fig = new_figure(figsize=(max(8.0, 2.0 + 1.0 * width), 4.9))
    axes = fig.subplots(1, 2)
    fig.subplots_adjust(top=0.8, left=0.06, right=0.86, wspace=0.25)
    for ax, table, title in zip(axes, (routed, plain),
                                ("with routing: mask(labels) * dL/dz", "without routing: dL/dz")):
        image = ax.imshow(table, cmap="magma", vmin=0, vmax=vmax, aspect="auto")
        for label in range(L):
            for k in range(width):
                v = table[label, k]
                if np.isfinite(v) and v > 0:
                    ax.text(k, label, f"{v:.2g}", ha="center", va="center", fontsize=7,
                            color="black" if v > 0.6 * vmax else "white")
        if width > G:                                             # the style dims, set apart
            ax.axvline(G - 0.5, color="cyan", linewidth=2)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("routing group" + (" (after the line: style dims)" if width > G else ""))
        ax.set_ylabel("true digit")
        ax.set_xticks(range(width))
        ax.set_xticklabels(list(routing.group_names) + [f"s{s}" for s in range(width - G)])
        ax.set_yticks(range(L))
    fig.colorbar(image, ax=axes, shrink=0.8,
                 label="mean |gradient into the encoder| per image")
    fig.suptitle("Reconstruction gradient reaching the encoder, by digit and routing group"
                 + (f"\n{subtitle}" if subtitle else ""), fontsize=11)
    return save_figure(fig, path)


# ---------------------------------------------------------------------------- command line
def build_parser():
    p = OneLineParser(prog=PROG, description=__doc__.splitlines()[0])
    add_checkpoint(p, default=None, help_default=f"{DEFAULT_RUN} if it holds a checkpoint, "
                                                 f"else a freshly initialised model")
    p.add_argument("--untrained", action="store_true",
                   help="ignore any checkpoint: inspect a freshly initialised default-recipe model")
    add_data_dir(p)
    p.add_argument("--batch-size", type=int_in(1, 60_000), default=1000,
                   help="training images in the batch (default: 1000, which holds every digit)")
    p.add_argument("--seed", type=int_in(0, 2**63 - 1), default=0,
                   help="picks the batch, the noise eps and the fresh model's initial weights "
                        "(default: 0)")
    p.add_argument("--plot", metavar="PNG", help="also draw both tables as heatmaps into PNG")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.plot:
        output_file(PROG, "--plot", args.plot)
    if args.untrained and args.checkpoint:
        fail(PROG, "--untrained and --checkpoint exclude each other; pass one")

    if args.untrained or (args.checkpoint is None
                          and not os.path.isfile(checkpoint_file(DEFAULT_RUN))):
        model = VAE(VAEConfig(), rng=np.random.default_rng(args.seed))    # the default recipe
        source = f"untrained (freshly initialised default-recipe VAE, seed {args.seed})"
        if not args.untrained:
            print(f"note  | no --checkpoint and no checkpoint in {DEFAULT_RUN}: inspecting an "
                  f"untrained model (train one with `python train.py`)")
    else:
        source = args.checkpoint or DEFAULT_RUN
        try:
            model = load_model(source, kinds=("vae",), tool="the inspector")
        except CheckpointError as e:
            fail(PROG, str(e))
    cfg, routing = model.config, model.routing
    if cfg.input_dim != 784 or routing.labels != 10:
        fail(PROG, f"the model reads {cfg.input_dim} pixels and routes {routing.labels} labels; "
                   f"the inspector needs MNIST (784 pixels, 10 digits)")

    try:
        images, labels = load_mnist("train", args.data_dir)
    except DataError as e:
        fail(PROG, str(e))
    rng = np.random.default_rng(args.seed)
    idx = np.sort(rng.choice(len(images), size=min(args.batch_size, len(images)), replace=False))
    x = to_rows(images[idx])                                          # (N, 784)
    y = labels[idx].astype(np.intp)                                   # (N,)
    eps = rng.standard_normal((len(idx), cfg.code_dim), dtype=np.float32)   # (N, C)

    routed, plain = routing_table(model, x, y, eps)
    counts = np.bincount(y, minlength=routing.labels)
    print(f"model | {source} | routing {routing.name}: groups {', '.join(routing.group_names)} "
          f"({routing.routed_dims} dims), {routing.free_dims} style dims")
    print(f"batch | {len(idx)} MNIST training images (seed {args.seed}), noise eps ~ N(0, 1)")
    print(CELL_MEANING)
    print()
    for line in format_table(routed, counts, "WITH routing: mask(labels) * dL/dz, as in "
                                             "VAE.backward", routing):
        print(line)
    print()
    for line in format_table(plain, counts, "WITHOUT routing: dL/dz as it is (a plain VAE)",
                             routing):
        print(line)
    if args.plot:
        try:
            path = plot_tables(routed, plain, args.plot, routing, subtitle=f"model: {source}")
        except OSError as e:
            fail(PROG, f"cannot write --plot {args.plot}: {e.strerror or e}")
        print(f"\nplot  | {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
