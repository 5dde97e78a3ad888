"""Figures of a trained run: latent traversals, the confusion matrix, training curves, analogies.

    python -m gr_numpy.figures --run runs/default [--compare runs/no-routing] [--out DIR]

`write_run_figures` is what train.py calls after training; the command line redraws a finished
run's figures from its checkpoint.npz and metrics.json. With --compare it also draws
routing_vs_plain.png: the same traversal for a routed and an unrouted model side by side. With
routing, latent dim k draws digit k; without, the dims mean nothing in particular. A model with
style dims also gets analogies.png: test images, each redrawn in its own style as every digit.

Figures are drawn on a `matplotlib.figure.Figure` with the Agg canvas, never through pyplot, so
importing this module changes no global matplotlib state and needs no display.
Glossary: N images, D pixels (784), K digit dims (10), S style dims, T steps along a traversal.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .checkpoint import CheckpointError, load_model
from .cli import DEFAULT_RUN, METRICS_NAME, OneLineParser, add_data_dir, checkpoint_in, fail
from .cli import output_dir
from ..codes import typical_levels, with_digit
from ..data import DataError, load_mnist, to_rows
from .files import write_atomically

TRAVERSAL_STEPS = 8          # T: columns of a traversal, from 0 to the dim's high value
HIGH_PERCENTILE = 99         # a dim's "high value" is this percentile of its test codes
LOW_PERCENTILE = 1           # and a style dim's low value this one


# ---------------------------------------------------------------------------- plumbing
def new_figure(figsize):
    """A Figure drawn by the Agg (PNG) canvas: no pyplot, no display, no global backend."""
    fig = Figure(figsize=figsize, dpi=100)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig, path):
    """Write fig as a PNG at path (folders created) -> path as a str."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, lambda f: fig.savefig(f, format="png", dpi=100))
    return str(path)


def _tile(images, side=28):
    """(R, T, D) images -> one (R * side, T * side) picture, row r and column t at their place."""
    R, T, _ = images.shape
    return images.reshape(R, T, side, side).transpose(0, 2, 1, 3).reshape(R * side, T * side)


# ---------------------------------------------------------------------------- traversal
def high_values(model, x, codes=None):
    """x (N, D) -> (K,): the HIGH_PERCENTILE-th percentile of each digit dim of model.code(x).

    The far end of each traversal. A dim whose percentile is not positive (a dim that is almost
    never on) gets 1.0 instead, so its row still moves away from the all-zero code. Pass codes
    (N, K + S) = model.code(x) when you have them, to skip encoding x again.
    """
    codes = model.code(x) if codes is None else codes
    digit = codes[:, :model.config.latent].astype(np.float64)           # (N, K)
    high = np.percentile(digit, HIGH_PERCENTILE, axis=0)                # (K,)
    return np.where(high > 0, high, 1.0)


def traversal(model, high, steps=TRAVERSAL_STEPS):
    """high (K,) -> images (K, T, D): row k decodes z = t * e_k for t = 0 .. high[k], others 0
    (style dims too: 0 is their prior's mean, the "average hand")."""
    K, C = model.config.latent, model.config.code_dim
    z = np.zeros((K, steps, C))                                   # (K, T, K + S)
    for k in range(K):
        z[k, :, k] = np.linspace(0.0, high[k], steps)             # row k: dim k from 0 to high
    return model.decode(z.reshape(K * steps, C)).reshape(K, steps, -1)


def style_traversal(model, x, levels, steps=TRAVERSAL_STEPS, codes=None):
    """x (N, D), levels (K,) -> images (S, T, D), low (S,), high (S,): row s decodes digit
    s mod K at its level with style dim s swept from its LOW_ to its HIGH_PERCENTILE on x,
    the other style dims 0. codes: model.code(x), if already computed."""
    K, S, C = model.config.latent, model.config.style, model.config.code_dim
    codes = model.code(x) if codes is None else codes
    style = codes[:, K:].astype(np.float64)                       # (N, S)
    low = np.percentile(style, LOW_PERCENTILE, axis=0)
    high = np.percentile(style, HIGH_PERCENTILE, axis=0)
    z = np.zeros((S, steps, C))                                   # (S, T, K + S)
    for s in range(S):
        z[s, :, s % K] = levels[s % K]
        z[s, :, K + s] = np.linspace(low[s], high[s], steps)
    return model.decode(z.reshape(S * steps, C)).reshape(S, steps, -1), low, high


def draw_traversal(ax, images, high, title, names=None, low_text="0"):
    """Draw a (R, T, D) traversal on ax: one row per dim, its high value at the right."""
    R, T, _ = images.shape
    ax.imshow(_tile(images), cmap="gray", vmin=0, vmax=1)
    ax.set_yticks(np.arange(R) * 28 + 14)
    ax.set_yticklabels(names or [f"dim {k}" for k in range(R)])
    ax.set_xticks([14, (T - 1) * 28 + 14])
    ax.set_xticklabels([low_text, "high"])
    ax.set_xlabel("value of the dim (others 0)")
    for k in range(R):
        ax.text(T * 28 + 4, k * 28 + 14, f"{high[k]:.1f}", va="center", fontsize=7)
    ax.set_title(title, fontsize=10)


def plot_traversal(model, x, path, levels=None, codes=None):
    """traversal.png: row k decodes dim k swept from 0 up to its high value on x. With style
    dims, a second panel sweeps each style dim (low to high) under one digit at levels (K,).
    codes: model.code(x), if already computed."""
    codes = model.code(x) if codes is None else codes
    high = high_values(model, x, codes)
    K, S = model.config.latent, model.config.style
    fig = new_figure(figsize=(5.2 * (2 if S else 1), 6.4))
    ax = fig.add_subplot(1, 2 if S else 1, 1)
    draw_traversal(ax, traversal(model, high), high,
                   f"Latent traversal (right column: {HIGH_PERCENTILE}th pct. of test codes)")
    if S:
        levels = high if levels is None else levels
        images, low, style_high = style_traversal(model, x, levels, codes=codes)
        draw_traversal(fig.add_subplot(1, 2, 2), images, style_high,
                       f"Style dims, {LOW_PERCENTILE}st to {HIGH_PERCENTILE}th pct. of test codes",
                       names=[f"style {s} (on {s % K})" for s in range(S)], low_text="low")
    fig.tight_layout()
    return save_figure(fig, path)


# ---------------------------------------------------------------------------- analogies
def analogies(model, x, levels):
    """x (R, D), levels (K,) -> images (R, K, D): row r is x[r]'s style decoded as each digit,
    the digit dims set to levels[d] * one-hot(d) and the style dims left as x[r] has them."""
    K = model.config.latent
    codes = model.code(x)                                           # (R, K + S)
    return np.stack([model.decode(with_digit(codes, d, levels, K)) for d in range(K)], axis=1)


def plot_analogies(model, x, levels, path):
    """analogies.png: each row a test image, then its style decoded as each digit 0..K-1."""
    images = analogies(model, x, levels)                            # (R, K, D)
    R, K, _ = images.shape
    grid = np.concatenate([x[:, None, :], images], axis=1)          # (R, 1 + K, D)
    fig = new_figure(figsize=(0.55 * (K + 1) + 0.6, 0.55 * R + 1.0))
    ax = fig.add_subplot()
    ax.imshow(_tile(grid), cmap="gray", vmin=0, vmax=1)
    ax.axvline(28 - 0.5, color="tab:orange", linewidth=2)
    ax.set_xticks(np.arange(K + 1) * 28 + 14)
    ax.set_xticklabels(["test"] + [str(d) for d in range(K)], fontsize=8)
    ax.set_yticks([])
    ax.set_title("Same style, other digit: a test image, then its style dims\n"
                 "decoded with each digit dim on (no label loss anywhere)", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def analogy_rows(labels, per_digit=1):
    """labels (N,) -> indices of the first `per_digit` images of each digit 0..9, digit order."""
    labels = np.asarray(labels)
    return np.concatenate([np.flatnonzero(labels == d)[:per_digit] for d in range(10)])


# ---------------------------------------------------------------------------- confusion
def plot_confusion(confusion, acc, path):
    """confusion.png: confusion (10, K) counts, rows = true digit 0..9, columns = argmax of mu."""
    confusion = np.asarray(confusion)
    R, C = confusion.shape
    fig = new_figure(figsize=(6.4, 5.6))
    ax = fig.add_subplot()
    image = ax.imshow(confusion, cmap="Blues")
    top = confusion.max() if confusion.size else 0
    for r in range(R):
        for c in range(C):
            ax.text(c, r, str(confusion[r, c]), ha="center", va="center", fontsize=7,
                    color="white" if confusion[r, c] > 0.5 * top else "black")
    ax.set_xticks(range(C))
    ax.set_yticks(range(R))
    ax.set_xlabel("predicted: argmax of the encoder mean mu")
    ax.set_ylabel("true digit")
    ax.set_title(f"Test confusion matrix (accuracy {100 * acc:.2f}%)", fontsize=10)
    fig.colorbar(image, ax=ax, shrink=0.8, label="images")
    fig.tight_layout()
    return save_figure(fig, path)


# ---------------------------------------------------------------------------- curves
def plot_curves(history, path):
    """curves.png: training loss, recon and KL per epoch, and the validation accuracy."""
    epochs = [h["epoch"] for h in history]
    fig = new_figure(figsize=(12, 3.6))
    axes = fig.subplots(1, 3)
    axes[0].plot(epochs, [h["loss"] for h in history], "o-", label="loss (recon + KL, weighted)")
    axes[0].plot(epochs, [h["recon"] for h in history], "s--", label="recon")
    axes[0].set_title("training loss per image", fontsize=10)
    axes[0].legend(fontsize=8)
    axes[1].plot(epochs, [h["kl"] for h in history], "o-", color="tab:green")
    axes[1].set_title("KL per image", fontsize=10)
    val = [(h["epoch"], h["val_acc"]) for h in history if h.get("val_acc") is not None]
    if val:
        axes[2].plot([e for e, _ in val], [100 * a for _, a in val], "o-", color="tab:red")
    else:
        axes[2].text(0.5, 0.5, "no validation split", ha="center", transform=axes[2].transAxes)
    axes[2].set_title("validation accuracy (argmax of mu), %", fontsize=10)
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, path)


def write_run_figures(model, test_images, test_labels, test_metrics, history, out_dir):
    """Write traversal.png, confusion.png, curves.png (and analogies.png with style dims) into
    out_dir -> their paths.

    test_images uint8 (N, 28, 28) with test_labels (N,); test_metrics as `training.evaluate`
    returns it (needs "confusion" and "acc"); history: one dict per epoch (epoch, loss, recon,
    kl, val_acc). The labels pick one analogy row per digit and, as in the demo, each digit
    dim's typical value (its median over the images of that digit).
    """
    out_dir = Path(out_dir)
    x = to_rows(test_images)                                      # (N, D)
    K = model.config.latent
    codes = model.code(x)                                         # (N, K + S), encoded once
    levels = typical_levels(codes, test_labels, K, fallback=high_values(model, x, codes))
    paths = [plot_traversal(model, x, out_dir / "traversal.png", levels, codes),
             plot_confusion(test_metrics["confusion"], test_metrics["acc"],
                            out_dir / "confusion.png"),
             plot_curves(history, out_dir / "curves.png")]
    if model.config.style:
        rows = analogy_rows(test_labels)
        paths.append(plot_analogies(model, x[rows], levels, out_dir / "analogies.png"))
    return paths


# ---------------------------------------------------------------------------- comparison
def plot_routing_vs_plain(runs, x, path):
    """routing_vs_plain.png: for each (name, model, test_acc) in runs, a one-hot strip on top
    (dim k alone at its high value: with routing it draws digit k) and the traversal below."""
    fig = new_figure(figsize=(5.2 * len(runs), 8.0))
    grid = fig.add_gridspec(2, len(runs), height_ratios=[1.1, 10])
    for i, (name, model, acc) in enumerate(runs):
        high = high_values(model, x)
        images = traversal(model, high)                            # (K, S, D)
        K = images.shape[0]
        strip = fig.add_subplot(grid[0, i])
        strip.imshow(_tile(images[None, :, -1]), cmap="gray", vmin=0, vmax=1)
        strip.set_xticks(np.arange(K) * 28 + 14)
        strip.set_xticklabels([str(k) for k in range(K)], fontsize=7)
        strip.set_yticks([])
        strip.set_title(f"{name}: test accuracy {100 * acc:.2f}%\n"
                        f"decode(high * one-hot(k)), k = 0..{K - 1}", fontsize=10)
        draw_traversal(fig.add_subplot(grid[1, i]), images, high, "traversal of each dim")
    fig.tight_layout()
    return save_figure(fig, path)


# ---------------------------------------------------------------------------- command line
def build_parser():
    p = OneLineParser(prog="python -m gr_numpy.figures", description=__doc__.splitlines()[0],
                      formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--run", default=DEFAULT_RUN,
                   help="run folder holding checkpoint.npz and metrics.json (from train.py)")
    p.add_argument("--compare", metavar="RUN",
                   help="a second run folder, trained with --no-routing: also draw "
                        "routing_vs_plain.png")
    p.add_argument("--out", help="folder for the PNGs (default: the --run folder)")
    add_data_dir(p)
    return p


def load_run(run_dir):
    """A run folder -> (model, metrics dict). Raises CheckpointError or ValueError (one line)."""
    model = load_model(checkpoint_in(run_dir))
    metrics_path = Path(run_dir) / METRICS_NAME
    try:
        metrics = json.loads(metrics_path.read_text())
    except FileNotFoundError:
        raise ValueError(f"no {metrics_path}: the run has not finished; finish it with "
                         f"train.py's --resume") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{metrics_path} is not valid JSON ({e})") from None
    missing = {"test_acc", "confusion", "history"} - set(metrics)
    if missing:
        raise ValueError(f"{metrics_path} lacks {', '.join(sorted(missing))}; was it written by "
                         f"train.py?")
    return model, metrics


def run_title(run_dir, metrics):
    """'default (routed)' or 'no-routing (plain VAE)': the folder's name and its routing flag."""
    routed = metrics.get("train", {}).get("routing")
    kind = {True: "routed", False: "plain VAE", None: "routing unknown"}[routed]
    return f"{Path(run_dir).name} ({kind})"


def main(argv=None):
    args = build_parser().parse_args(argv)
    prog = "python -m gr_numpy.figures"
    if not Path(args.run).is_dir():
        fail(prog, f"--run {args.run} is not a run folder; train one with `python train.py`")
    output_dir(prog, "--out", args.out or args.run)

    try:
        model, metrics = load_run(args.run)
        other = load_run(args.compare) if args.compare else None
        test_images, test_labels = load_mnist("test", args.data_dir)
    except (CheckpointError, DataError, ValueError) as e:
        fail(prog, str(e))
    out = Path(args.out or args.run)
    try:
        test = {"confusion": metrics["confusion"], "acc": metrics["test_acc"]}
        paths = write_run_figures(model, test_images, test_labels, test, metrics["history"], out)
        if other is not None:
            runs = [(run_title(args.run, metrics), model, metrics["test_acc"]),
                    (run_title(args.compare, other[1]), other[0], other[1]["test_acc"])]
            paths.append(plot_routing_vs_plain(runs, to_rows(test_images),
                                               out / "routing_vs_plain.png"))
    except OSError as e:
        fail(prog, f"cannot write figures to {out}: {e.strerror or e}")
    for path in paths:
        print(f"figure | {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
