"""Figures of a trained run: traversals, the confusion matrix, training curves, analogies.

    python -m gr_numpy.tools.figures --checkpoint runs/default [--compare RUN] [--out DIR]

`write_run_figures` is what train.py calls after training; the command line redraws a finished
run's figures from its checkpoint.npz and the metrics.json beside it. Every figure reads the
code through the model's routing: the traversal has one row per routing group (one per digit,
or the halves "0-4" and "5-9"), the confusion matrix has one column per group, and with routing
a group's dims draw its digits; without, the dims mean nothing in particular. With --compare it
also draws routing_vs_plain.png: the same traversal for a routed and an unrouted model side by
side. A model with style dims also gets analogies.png: test images, each redrawn in its own
style as every digit (`Routing.switch`).

Figures are drawn on a `matplotlib.figure.Figure` with the Agg canvas, never through pyplot, so
importing this module changes no global matplotlib state and needs no display.
Glossary: N images, D pixels (784), C code dims (K routed, then S style), G routing groups,
L labels (10 digits), T steps along a traversal.
"""

import json
import sys
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ..data import DataError, load_mnist
from ..checkpoint import CheckpointError, checkpoint_file, load_model
from .cli import METRICS_NAME, OneLineParser, add_checkpoint, add_data_dir, fail, output_dir
from ..files import write_atomically

PROG = "python -m gr_numpy.tools.figures"
TRAVERSAL_STEPS = 8          # T: columns of a traversal, from 0 to the group's high values
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
    """x (N, D) -> (K,): the HIGH_PERCENTILE-th percentile of each routed dim of model.code(x).

    The far end of each traversal. A dim whose percentile is not positive (a dim that is almost
    never on) gets 1.0 instead, so its row still moves away from the all-zero code. Pass codes
    (N, C) = model.code(x) when you have them, to skip encoding x again.
    """
    codes = model.code(x) if codes is None else codes
    routed = codes[:, :model.routing.routed_dims].astype(np.float64)          # (N, K)
    high = np.percentile(routed, HIGH_PERCENTILE, axis=0)               # (K,)
    return np.where(high > 0, high, 1.0)


def traversal(model, high, steps=TRAVERSAL_STEPS):
    """high (K,) -> images (G, T, D): row g decodes t * high on group g's dims, t from 0 to 1,
    every other dim 0 (style dims too: 0 is their prior's mean, the "average hand")."""
    routing, C = model.routing, model.routing.code_dim
    G = len(routing.groups)
    t = np.linspace(0.0, 1.0, steps)[:, None]                     # (T, 1)
    z = np.zeros((G, steps, C))                                   # (G, T, C)
    for g, dims in enumerate(routing.groups):
        z[g][:, dims] = t * high[dims]                            # row g: its dims together
    return model.draw(z.reshape(G * steps, C)).reshape(G, steps, -1)


def group_high(routing, high):
    """high (K,) -> (G,): the mean of each group's high values, the group's score at the far
    end of its traversal row (`Routing.group_scores` of that code)."""
    return np.array([high[dims].mean() for dims in routing.groups])


def style_traversal(model, x, prototypes, steps=TRAVERSAL_STEPS, codes=None):
    """x (N, D), prototypes (L, C) -> images (S, T, D), low (S,), high (S,): row s decodes the
    prototype of digit s mod L with style dim s swept from its LOW_ to its HIGH_PERCENTILE on
    x, the other style dims 0. codes: model.code(x), if already computed."""
    K, S, C = model.routing.routed_dims, model.routing.free_dims, model.routing.code_dim
    L = len(prototypes)
    codes = model.code(x) if codes is None else codes
    style = codes[:, K:].astype(np.float64)                       # (N, S)
    low = np.percentile(style, LOW_PERCENTILE, axis=0)
    high = np.percentile(style, HIGH_PERCENTILE, axis=0)
    z = np.zeros((S, steps, C))                                   # (S, T, C)
    for s in range(S):
        z[s] = prototypes[s % L]                                  # its style dims are 0
        z[s, :, K + s] = np.linspace(low[s], high[s], steps)
    return model.draw(z.reshape(S * steps, C)).reshape(S, steps, -1), low, high


def draw_traversal(ax, images, ends, title, names, low_text="0", xlabel="value (others 0)"):
    """Draw a (R, T, D) traversal on ax: one named row each, its far-end value at the right."""
    R, T, _ = images.shape
    ax.imshow(_tile(images), cmap="gray", vmin=0, vmax=1)
    ax.set_yticks(np.arange(R) * 28 + 14)
    ax.set_yticklabels(names)
    ax.set_xticks([14, (T - 1) * 28 + 14])
    ax.set_xticklabels([low_text, "high"])
    ax.set_xlabel(xlabel)
    for k in range(R):
        ax.text(T * 28 + 4, k * 28 + 14, f"{ends[k]:.1f}", va="center", fontsize=7)
    ax.set_title(title, fontsize=10)


def plot_traversal(model, x, path, prototypes, codes=None):
    """traversal.png: row g decodes group g's dims swept together from 0 up to their high
    values on x. With style dims, a second panel sweeps each style dim (low to high) under one
    digit's prototype, prototypes (L, C). codes: model.code(x), if already computed."""
    routing = model.routing
    codes = model.code(x) if codes is None else codes
    high = high_values(model, x, codes)
    G, S = len(routing.groups), model.routing.free_dims
    fig = new_figure(figsize=(5.2 * (2 if S else 1), 1.2 + 0.52 * max(G, S, 4)))
    ax = fig.add_subplot(1, 2 if S else 1, 1)
    draw_traversal(ax, traversal(model, high), group_high(routing, high),
                   f"Each routing group's dims, 0 to their {HIGH_PERCENTILE}th pct.\n"
                   f"of test codes (right: the group's mean there)",
                   names=[f"group {name}" for name in routing.group_names],
                   xlabel="value of the group's dims (others 0)")
    if S:
        images, low, style_high = style_traversal(model, x, prototypes, codes=codes)
        draw_traversal(fig.add_subplot(1, 2, 2), images, style_high,
                       f"Style dims, {LOW_PERCENTILE}st to {HIGH_PERCENTILE}th pct. of test codes",
                       names=[f"style {s} (on {s % routing.labels})" for s in range(S)],
                       low_text="low", xlabel="value of the style dim (others 0)")
    fig.tight_layout()
    return save_figure(fig, path)


def padded(high, routing):
    """high (K,) -> (C,): the routed dims' high values, then 0 on the style dims."""
    return np.concatenate([high, np.zeros(routing.free_dims)])


# ---------------------------------------------------------------------------- analogies
def analogies(model, x, prototypes):
    """x (R, D), prototypes (L, C) -> images (R, L, D): row r is x[r]'s style decoded as each
    digit, by `Routing.switch`: every group cleared, the digit's group set to its prototype,
    the style dims left as x[r] has them."""
    routing = model.routing
    codes = model.code(x)                                           # (R, C)
    return np.stack([model.draw(routing.switch(codes, label, prototypes))
                     for label in range(routing.labels)], axis=1)


def plot_analogies(model, x, prototypes, path):
    """analogies.png: each row a test image, then its style decoded as each digit 0..L-1."""
    images = analogies(model, x, prototypes)                        # (R, L, D)
    R, L, _ = images.shape
    grid = np.concatenate([x[:, None, :], images], axis=1)          # (R, 1 + L, D)
    fig = new_figure(figsize=(0.55 * (L + 1) + 0.6, 0.55 * R + 1.0))
    ax = fig.add_subplot()
    ax.imshow(_tile(grid), cmap="gray", vmin=0, vmax=1)
    ax.axvline(28 - 0.5, color="tab:orange", linewidth=2)
    ax.set_xticks(np.arange(L + 1) * 28 + 14)
    ax.set_xticklabels(["test"] + [str(d) for d in range(L)], fontsize=8)
    ax.set_yticks([])
    ax.set_title("Same style, other digit: a test image, then its style dims decoded\n"
                 "with each digit's typical code (no label loss anywhere)", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def analogy_rows(labels, per_digit=1, digits=10):
    """labels (N,) -> indices of the first `per_digit` images of each digit 0..9, digit order."""
    labels = np.asarray(labels)
    return np.concatenate([np.flatnonzero(labels == d)[:per_digit] for d in range(digits)])


# ---------------------------------------------------------------------------- confusion
def plot_confusion(confusion, acc, path, groups):
    """confusion.png: confusion (L, G) counts, rows = true digit 0..9, columns = the routing
    group read off mu (named by groups, G names)."""
    confusion = np.asarray(confusion)
    R, C = confusion.shape
    fig = new_figure(figsize=(max(4.6, 1.8 + 0.48 * C), 5.6))
    ax = fig.add_subplot()
    image = ax.imshow(confusion, cmap="Blues", aspect="auto")
    top = confusion.max() if confusion.size else 0
    for r in range(R):
        for c in range(C):
            ax.text(c, r, str(confusion[r, c]), ha="center", va="center", fontsize=7,
                    color="white" if confusion[r, c] > 0.5 * top else "black")
    ax.set_xticks(range(C))
    ax.set_xticklabels(groups)
    ax.set_yticks(range(R))
    ax.set_xlabel("group read: the largest mean of mu over its dims")
    ax.set_ylabel("true digit")
    ax.set_title(f"Test confusion matrix\n(accuracy {100 * acc:.2f}%)", fontsize=10)
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
    axes[2].set_title("validation accuracy (group read off mu), %", fontsize=10)
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, path)


def write_run_figures(model, test_images, test_labels, scores, history, out_dir, title=None,
                      compare=None):
    """A run's figures in out_dir -> their paths: for a model with certificates,
    certificates.png and certificates_mae.png (certificates.py); for a VAE, traversal.png,
    confusion.png, curves.png (and analogies.png with style dims).

    test_images uint8 (N, 28, 28) with test_labels (N,); scores as the model's `score` returns
    them (a VAE's needs "confusion" and "acc"; "groups" names the columns, else the routing's
    group names); history: one dict per epoch. title names the run; compare = (title, model,
    scores) of a second run, drawn beside (certificates) or in routing_vs_plain.png. The labels
    pick one analogy row per digit and, as in the demo, each digit's prototype
    (`Routing.prototypes`: its median code over the images of that digit).
    """
    out_dir, routing = Path(out_dir), model.routing
    if model.certificates:
        from .certificates import write_certificate_figures
        return write_certificate_figures(model, test_images, test_labels, scores, out_dir,
                                         title or out_dir.resolve().name, compare)
    x = model.to_input(test_images)                               # (N, D)
    codes = model.code(x)                                         # (N, C), encoded once
    high = high_values(model, x, codes)
    prototypes = routing.prototypes(codes, test_labels, fallback=padded(high, routing))
    groups = scores.get("groups", routing.group_names)
    paths = [plot_traversal(model, x, out_dir / "traversal.png", prototypes, codes),
             plot_confusion(scores["confusion"], scores["acc"], out_dir / "confusion.png",
                            groups),
             plot_curves(history, out_dir / "curves.png")]
    if model.routing.free_dims:
        rows = analogy_rows(test_labels, digits=routing.labels)
        paths.append(plot_analogies(model, x[rows], prototypes, out_dir / "analogies.png"))
    if compare is not None:
        runs = [(title, model, scores["acc"]), (compare[0], compare[1], compare[2]["acc"])]
        paths.append(plot_routing_vs_plain(runs, x, out_dir / "routing_vs_plain.png"))
    return paths


# ---------------------------------------------------------------------------- comparison
def plot_routing_vs_plain(runs, x, path):
    """routing_vs_plain.png: for each (name, model, test_acc) in runs, a strip on top (each
    routing group's dims at their high values: with routing, group g draws its digits) and the
    traversal of each group below."""
    rows = max(len(model.routing.groups) for _, model, _ in runs)
    fig = new_figure(figsize=(5.2 * len(runs), 2.2 + 0.58 * max(rows, 4)))
    grid = fig.add_gridspec(2, len(runs), height_ratios=[1.1, max(rows, 4)])
    for i, (name, model, acc) in enumerate(runs):
        routing = model.routing
        high = high_values(model, x)
        images = traversal(model, high)                            # (G, T, D)
        G = images.shape[0]
        strip = fig.add_subplot(grid[0, i])
        strip.imshow(_tile(images[None, :, -1]), cmap="gray", vmin=0, vmax=1)
        strip.set_xticks(np.arange(G) * 28 + 14)
        strip.set_xticklabels(routing.group_names, fontsize=7)
        strip.set_yticks([])
        strip.set_title(f"{name}: test accuracy {100 * acc:.2f}%\n"
                        f"each group's dims at their high values", fontsize=10)
        draw_traversal(fig.add_subplot(grid[1, i]), images, group_high(routing, high),
                       "traversal of each group",
                       names=[f"group {name}" for name in routing.group_names],
                       xlabel="value of the group's dims (others 0)")
    fig.tight_layout()
    return save_figure(fig, path)


# ---------------------------------------------------------------------------- command line
def build_parser():
    p = OneLineParser(prog=PROG, description=__doc__.splitlines()[0])
    add_checkpoint(p)
    p.add_argument("--compare", metavar="PATH",
                   help="a second run, folder or checkpoint.npz, e.g. one trained with "
                        "--no-routing: also draw routing_vs_plain.png")
    p.add_argument("--out", help="folder for the PNGs (default: the --checkpoint's folder)")
    add_data_dir(p)
    return p


# The scores each kind of figure reads from metrics.json (by the model's names for them).
RUN_SCORES = ("acc", "confusion")
CERTIFICATE_SCORES = ("mae", "per_digit", "certificates", "ratios")


def load_run(path):
    """A run folder or its checkpoint.npz -> (model, scores, metrics), the scores its figures
    need from the metrics.json beside the checkpoint. Raises CheckpointError or ValueError."""
    model = load_model(path)
    metrics_path = checkpoint_file(path).parent / METRICS_NAME
    try:
        metrics = json.loads(metrics_path.read_text())
    except FileNotFoundError:
        raise ValueError(f"no {metrics_path}: the run has not finished; finish it with "
                         f"train.py's --resume") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{metrics_path} is not valid JSON ({e})") from None
    names = {k: model.test_keys.get(k, k) for k in
             (CERTIFICATE_SCORES if model.certificates else RUN_SCORES)}
    missing = set(names.values()) - set(metrics) | ({"history"} - set(metrics))
    if missing:
        raise ValueError(f"{metrics_path} lacks {', '.join(sorted(missing))}; was it written by "
                         f"train.py?")
    scores = {k: metrics[name] for k, name in names.items()}
    if "groups" in metrics:
        scores["groups"] = metrics["groups"]
    return model, scores, metrics


def run_title(path, metrics, routing):
    """'default (one-per-digit, routed)' or 'no-routing (halves, not routed)': the run folder's
    name, its routing, and whether training applied it."""
    train = metrics.get("train", {})
    routed = train.get("routed", train.get("routing"))        # older runs called it "routing"
    kind = {True: "routed", False: "not routed"}.get(routed, "routing unknown")
    return f"{checkpoint_file(path).parent.resolve().name} ({routing.name}, {kind})"


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        model, scores, metrics = load_run(args.checkpoint)
        other = load_run(args.compare) if args.compare else None
    except (CheckpointError, ValueError) as e:
        fail(PROG, str(e))
    if other is not None and type(other[0]) is not type(model):
        fail(PROG, f"--checkpoint holds a {type(model).__name__} and --compare {args.compare} a "
                   f"{type(other[0]).__name__}; compare runs of one kind")
    out = Path(args.out) if args.out else checkpoint_file(args.checkpoint).parent
    output_dir(PROG, "--out", str(out))
    try:
        test_images, test_labels = load_mnist("test", args.data_dir)
    except DataError as e:
        fail(PROG, str(e))
    compare = None if other is None else (run_title(args.compare, other[2], other[0].routing),
                                          other[0], other[1])
    try:
        paths = write_run_figures(model, test_images, test_labels, scores, metrics["history"],
                                  out, run_title(args.checkpoint, metrics, model.routing),
                                  compare)
    except OSError as e:
        fail(PROG, f"cannot write figures to {out}: {e.strerror or e}")
    for path in paths:
        print(f"figure | {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
