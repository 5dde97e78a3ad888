"""Explore a trained model's code in a window: `python demo.py` (see --help).

One slider per code dim, grouped by the model's routing (one per digit, two per digit, or the
halves 0-4 and 5-9; then the style dims, if any), sets the code z and the decoder draws it at
once; it opens on a random test digit's code and reconstruction; draw your own digit with the
mouse, or press 0-9 to redraw the current style as another digit. With --save or --morph it
writes files instead of opening a window (works without a screen); with --html, one web page
that does all this in any browser, to share the model. On the paper's autoencoder (--preset
halves) the window and the page also show both certificates' drawings of the sliders' code;
--morph is for VAEs. The window is built in gr_numpy/tools/demo_app.py (and
demo_certificates.py), the page in gr_numpy/tools/webpage.py; this file only reads the flags,
the checkpoint and the data.
"""

import os
import sys

from gr_numpy.tools import cli
from gr_numpy.tools.cli import OneLineParser, int_in

PROG = "demo.py"


def build_parser():
    p = OneLineParser(
        prog=PROG, description="Explore a trained model's code in a window, or render the "
                               "window and an animation to files.")
    cli.add_checkpoint(p)
    cli.add_data_dir(p, fetch=False)
    p.add_argument("--save", metavar="PNG",
                   help="write the window, showing one random test digit, to this image file "
                        "(.png, .pdf, .svg, ...) and exit (no screen needed)")
    p.add_argument("--morph", metavar="GIF",
                   help="write a GIF of the code sweeping through every digit's typical code, "
                        "0 to 9, and exit")
    p.add_argument("--html", metavar="FILE",
                   help="write the demo as one self-contained web page (weights, 300 test "
                        "digits and the forward pass in plain JavaScript; opens from disk or "
                        "any static host) and exit")
    p.add_argument("--morph-frames", type=int_in(2, 10_000), default=91,
                   help="frames in the --morph animation (default: 91, ten per step from one "
                        "digit to the next)")
    p.add_argument("--seed", type=int_in(0, 2**63 - 1), default=0,
                   help="seeds the choice of random test digits (default: 0)")
    return p


def fail(message):
    """One line on stderr, exit code 2: for anything the user can fix."""
    cli.fail(PROG, message)


def check_outputs(args):
    """Refuse, before any work, an output that cannot be written: a missing or read-only
    folder, an image format matplotlib does not write, a --morph that is not a .gif."""
    from matplotlib.backend_bases import FigureCanvasBase

    if args.save:
        cli.output_file(PROG, "--save", args.save)
        formats = FigureCanvasBase.get_supported_filetypes()
        extension = os.path.splitext(args.save)[1].lower().lstrip(".")
        if extension not in formats:
            fail(f"--save {args.save}: matplotlib cannot write "
                 f"{'.' + extension if extension else 'a file without an extension'}; "
                 f"end the name in one of {', '.join('.' + f for f in sorted(formats))}")
    if args.html:
        cli.output_file(PROG, "--html", args.html)
    if args.morph:
        cli.output_file(PROG, "--morph", args.morph)
        if not args.morph.lower().endswith(".gif"):
            fail(f"--morph {args.morph}: the animation is written as a GIF; end the name in .gif")


def load_test_set(data_dir):
    """-> (images, labels) of the MNIST test set, or (None, None) with a one-line note."""
    from gr_numpy.data import DataError, load_mnist
    from gr_numpy.tools.demo_app import DEFAULT_MAX

    try:
        return load_mnist("test", data_dir, fetch=False)
    except DataError as e:
        print(f"note: no test digits ({e}); sliders span 0..{DEFAULT_MAX:g}", file=sys.stderr)
        return None, None


def open_window_figure():
    """A pyplot figure that can be shown on screen, or exit 2 with a hint to use --save."""
    import matplotlib.pyplot as plt

    from gr_numpy.tools.demo_app import FIGSIZE

    hint = "use --save demo.png to render the window to a file instead"
    try:
        fig = plt.figure(figsize=FIGSIZE)
    except Exception as e:        # a GUI toolkit that cannot reach a display fails here
        first_line = str(e).split("\n")[0]
        fail(f"cannot open a window ({type(e).__name__}: {first_line}); {hint}")
    # Without a screen matplotlib falls back to a backend that only draws to files (Agg).
    # Its canvas needs no GUI framework, which is how we tell.
    if fig.canvas.required_interactive_framework is None:
        fail(f"no display: matplotlib's backend {plt.get_backend()!r} cannot open a window; {hint}")
    return fig


def write_html(path, model, images, labels, seed):
    """Write the web page and say what it holds: its size, and its weights' read-out and MSE
    on the embedded digits against the checkpoint's (they are stored in 8 bits)."""
    from gr_numpy.tools.demo_app import code_stats, slider_names
    from gr_numpy.tools.webpage import IMAGES, agreement, pick_images, write_page

    lo, hi, prototypes = code_stats(model, images, labels)     # as the window has them
    chosen = pick_images(images, labels, IMAGES // 10, seed)
    size = write_page(path, model, images[chosen], labels[chosen], lo, hi, prototypes,
                      slider_names(model.routing))
    scores = agreement(model, images[chosen], labels[chosen])
    (acc, mse), (page_acc, page_mse) = scores["checkpoint"], scores["page"]
    read_out = (f"read-out {page_acc:.2f}% (checkpoint {acc:.2f}%), " if not model.certificates
                else "")                                 # the autoencoder names no digit
    print(f"wrote {path} ({size / 1e6:.2f} MB, {len(chosen)} test digits) | on those digits: "
          f"{read_out}MSE {page_mse:.5f} ({mse:.5f})")


def main(argv=None):
    args = build_parser().parse_args(argv)
    check_outputs(args)                         # the cheap checks first: a mistake costs nothing
    interactive = not (args.save or args.morph or args.html)
    import matplotlib
    if not interactive:
        matplotlib.use("Agg")     # files only: never touch the screen, even if there is one

    import numpy as np

    from gr_numpy.backend import ops
    from gr_numpy.checkpoint import CheckpointError, load_model

    # One image at a time gains nothing from the Numba kernels; NumPy starts without compiling.
    ops.set_backend("numpy")
    try:
        model = load_model(args.checkpoint)                     # a run folder or its .npz
    except CheckpointError as e:
        fail(str(e))
    if model.certificates and args.morph:
        fail(f"{args.checkpoint} holds the paper's autoencoder (--preset halves): --morph shows "
             f"VAEs only; --save PNG renders its window with both certificates, --html its page")
    fig = open_window_figure() if interactive else None

    from gr_numpy.tools.demo_app import Demo, write_morph
    from gr_numpy.tools.demo_certificates import CertificateDemo

    if args.html:
        from gr_numpy.data import DataError, load_mnist
        try:
            images, labels = load_mnist("test", args.data_dir, fetch=False)
        except DataError as e:
            fail(f"--html embeds test digits, and {e}")
        try:
            write_html(args.html, model, images, labels, args.seed)
        except OSError as e:
            fail(f"cannot write {e.filename or args.html}: {e.strerror or e}")
        if not (args.save or args.morph):
            return 0
    images, labels = load_test_set(args.data_dir)
    window = CertificateDemo if model.certificates else Demo
    demo = window(model, images, labels, rng=np.random.default_rng(args.seed), fig=fig)

    try:
        if args.save:
            demo.save(args.save)                # the window as it opens: a random test digit
            print(f"wrote {args.save}")
        if args.morph:
            write_morph(model, demo.prototypes, args.morph, frames=args.morph_frames)
            print(f"wrote {args.morph}")
    except OSError as e:
        fail(f"cannot write {e.filename or 'the output file'}: {e.strerror or e}")
    if interactive:
        import matplotlib.pyplot as plt
        plt.show()
    return 0


if __name__ == "__main__":
    sys.exit(main())
