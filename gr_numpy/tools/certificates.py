"""The paper's experiment shown: certificates.png and the MAE bars (the table: Autoencoder.report).

A certificate decoder redraws every image from one half of the autoencoder's code. Its MAE on
the digits routed to the *other* half, over its MAE on its own half's digits, says how much of
those digits the half holds: near 1 it holds both groups, well above 1 it holds only its own
(Cloud et al. 2024, Table 2). Scores come from `Autoencoder.score`.
"""

from pathlib import Path

import numpy as np


ORDER = ("first", "second")                # the certificates, by the half they read


def _examples(routing, labels, per_digit=2):
    """The indices of the first per_digit test images of each label, label by label."""
    return np.concatenate([np.flatnonzero(labels == d)[:per_digit]
                           for d in range(routing.labels)])


def plot_certificates(ax_grid, model, images, labels, title):
    """Rows: test digits, the main reconstruction, certificate first, certificate second."""
    idx = _examples(model.routing, labels)
    x = model.to_input(images[idx])
    z = model.encode(x)
    rows = [("input", x), ("decoder", model.decode(z))]
    groups = model.routing.group_names
    rows += [(f"{name} half\n({groups[g]})", model.decode_certificate(z, g))
             for g, name in enumerate(ORDER)]
    for r, (name, pictures) in enumerate(rows):
        for c in range(len(idx)):
            ax = ax_grid[r, c]
            ax.imshow(pictures[c].reshape(28, 28), cmap="gray", vmin=-1, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
    ax_grid[0, len(idx) // 2].set_title(title, fontsize=9)


def plot_mae_bars(ax, routing, scores, title):
    """Bars of MAE per digit: the main decoder and each certificate; a line between the groups."""
    width = 0.27
    digits = np.arange(routing.labels)
    for i, (name, label) in enumerate((("decoder", "decoder"), ("first", "certificate, first half"),
                                       ("second", "certificate, second half"))):
        ax.bar(digits + (i - 1) * width, scores["per_digit"][name], width, label=label)
    for label in range(1, routing.labels):             # where one routing group ends
        if routing.label_group[label] != routing.label_group[label - 1]:
            ax.axvline(label - 0.5, color="black", ls=":")
    ax.set_xticks(digits)
    ax.set_xlabel("digit")
    ax.set_ylabel("test MAE (pixels in [-1, 1])")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)


def write_certificate_figures(model, images, labels, scores, out, title="this run", control=None):
    """certificates.png and certificates_mae.png in out; control = (title, model, scores) of a
    second run (say --no-routing) drawn beside. -> the paths written."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [(title, model, scores)] + ([control] if control is not None else [])
    out = Path(out)
    n = len(_examples(model.routing, labels))
    fig, axes = plt.subplots(4 * len(runs) + len(runs) - 1, n, figsize=(n * 0.55, 2.4 * len(runs)),
                             squeeze=False)
    for k, (name, m, _) in enumerate(runs):
        plot_certificates(axes[5 * k:5 * k + 4], m, images, labels, name)
    for ax in axes[4::5].ravel():                                        # gaps between runs
        ax.axis("off")
    fig.subplots_adjust(left=0.12, right=0.99, top=0.95, bottom=0.01, wspace=0.05, hspace=0.05)
    paths = [out / "certificates.png"]
    fig.savefig(paths[0], dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(1, len(runs), figsize=(6 * len(runs), 3.4), squeeze=False)
    for ax, (name, m, s) in zip(axes[0], runs):
        plot_mae_bars(ax, m.routing, s, name)
    top = max(max(max(v) for v in s["per_digit"].values()) for _, _, s in runs)
    for ax in axes[0]:
        ax.set_ylim(0, top * 1.1)
    fig.tight_layout()
    paths.append(out / "certificates_mae.png")
    fig.savefig(paths[1], dpi=110)
    plt.close(fig)
    return paths
