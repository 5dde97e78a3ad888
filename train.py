"""Train a gradient-routed VAE on MNIST and score it: `python train.py` (see --help).

Labels enter training only through the routing mask: there is no classification loss. The digit
a model predicts is the argmax of its encoder mean. Choices during training use a validation
split (the last 5k of the 60k training images); the 10k test set is scored once, at the end.
Writes to --out: checkpoint.npz (resumable, with its config), metrics.json, and figures.
"""

import argparse
import os
import signal
import sys
import time
from dataclasses import asdict

from gr_numpy import cli
from gr_numpy.cli import OneLineParser, float_in, int_in

PROG = "train.py"

# Presets: the model and training settings each recipe changes (flags given explicitly win).
PRESETS = {
    # Found by measurement (docs/experiments.md): ELU decoder without hidden biases, BCE loss.
    "default": dict(hidden="512,256", dec_act="elu", dec_hidden_bias=False, recon="bce",
                    recon_weight=1.0, kl_weight=0.5, l1_weight=0.0, style=0, style_kl_weight=1.0,
                    style_input="outer", epochs=25),
    # The reference post's recipe: 784-2048-512-10, ReLU everywhere, 0.3 * SSE + its KL-like
    # term mean_k(mu^2 + exp(logvar) - logvar), which is 0.2 * KL + 1 for K = 10, 100 epochs.
    "reference": dict(hidden="2048,512", dec_act="relu", dec_hidden_bias=True, recon="sse",
                      recon_weight=0.3, kl_weight=0.2, l1_weight=0.0, style=0, style_kl_weight=1.0,
                      style_input="outer", epochs=100),
    # The default plus 6 style dims that reach the decoder only through [z_d, vec(z_d outer z_s)]
    # (docs/style.md), their KL weighted 2, and an L1 penalty on the digit code; chosen on the
    # validation split (docs/experiments.md).
    "style": dict(hidden="512,256", dec_act="elu", dec_hidden_bias=False, recon="bce",
                  recon_weight=1.0, kl_weight=0.5, l1_weight=1.0, style=6, style_kl_weight=2.0,
                  style_input="outer", epochs=25),
}


def build_parser():
    p = OneLineParser(prog=PROG, description=__doc__.splitlines()[0],
                      formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    g = p.add_argument_group("recipe")
    g.add_argument("--preset", choices=sorted(PRESETS), default="default",
                   help="starting recipe; the flags below override its settings")
    g.add_argument("--epochs", type=int_in(1, 100_000),
                   help="passes over the training set (preset: 25 / 100 / 25)")
    g.add_argument("--batch-size", type=int_in(1, 60_000), default=128,
                   help="images per Adam step")
    g.add_argument("--lr", type=float_in(0, 1, lo_open=True), default=1e-3,
                   help="Adam learning rate of the first epoch")
    g.add_argument("--lr-decay", type=float_in(0, 1, lo_open=True), default=0.95,
                   help="the learning rate is multiplied by this after every epoch")
    g.add_argument("--hidden", help="encoder hidden widths, input side first, e.g. 512,256; the "
                                    "decoder mirrors them (preset: 512,256 / 2048,512 / 512,256)")
    g.add_argument("--dec-act", choices=["relu", "elu"], help="decoder hidden activation")
    g.add_argument("--kl-weight", type=float_in(0, 1000),
                   help="weight of the digit dims' KL term (preset: 0.5 / 0.2 / 0.5)")
    g.add_argument("--l1-weight", type=float_in(0, 1000),
                   help="weight of an L1 penalty on the digit code z_d, label-free and unrouted "
                        "(preset: 0 / 0 / 1 for default / reference / style)")
    g.add_argument("--no-routing", action="store_true",
                   help="ablation: a plain VAE, labels unused during training")
    g.add_argument("--latent", type=int_in(1, 10_000), default=10,
                   help="digit latent dims; must be 10 (one per digit) when routing")
    g.add_argument("--style", type=int_in(0, 1000),
                   help="style dims S: unrouted, read by the decoder only multiplied by the digit "
                        "dims (preset: 0 / 0 / 6)")
    g.add_argument("--style-kl", type=float_in(0, 1000),
                   help="weight of the style dims' KL term (preset style: 2)")
    g.add_argument("--style-input", choices=["outer", "shared"],
                   help="how style reaches the decoder: outer = [z_d, vec(z_d outer z_s)] (a "
                        "style per digit), shared = [z_d, sum(z_d) * z_s] (one style for all)")

    g = p.add_argument_group("run")
    g.add_argument("--seed", type=int_in(0, 2**63 - 1), default=0,
                   help="fixes the result (numba backend: at any --threads; numpy: at the same "
                        "--threads)")
    g.add_argument("--threads", type=int_in(0, os.cpu_count() or 1), default=0,
                   help="CPU threads for the kernels (0: all cores)")
    g.add_argument("--backend", choices=["numba", "numpy"], default="numba",
                   help="numba: our jitted kernels; numpy: the plain NumPy reference")
    g.add_argument("--out", help="run folder for checkpoint.npz, metrics.json and figures "
                                 "(default: runs/PRESET)")
    g.add_argument("--resume", action="store_true",
                   help="continue from --out/checkpoint.npz (same flags as the first run)")
    g.add_argument("--overwrite", action="store_true",
                   help="start afresh even if --out holds a checkpoint, replacing that model")
    g.add_argument("--no-figures", action="store_true", help="skip writing PNG figures")

    g = p.add_argument_group("data")
    cli.add_data_dir(g)
    g.add_argument("--val-size", type=int_in(0, 59_999), default=5000,
                   help="validation images held out from the end of the 60k training set")
    g.add_argument("--train-subset", type=int_in(0, 60_000), default=0,
                   help="train on only the first N training images (0: all); for quick tries")

    g = p.add_argument_group("evaluation")
    g.add_argument("--eval-only", action="store_true",
                   help="only score --checkpoint on the test set, no training")
    g.add_argument("--checkpoint", help="checkpoint for --eval-only (default: --out/checkpoint.npz)")
    return p


def fail(message):
    """One line on stderr, exit code 2: for anything the user can fix before work starts."""
    cli.fail(PROG, message)


def resolve(args):
    """Merge the preset with explicit flags and check everything before any work is done."""
    preset = PRESETS[args.preset]
    for key in ("epochs", "hidden", "dec_act", "kl_weight", "l1_weight", "style"):
        if getattr(args, key) is None:
            setattr(args, key, preset[key])
    if args.style_kl is None:
        args.style_kl = preset["style_kl_weight"]
    if args.style_input is None:
        args.style_input = preset["style_input"]
    if args.out is None:
        args.out = os.path.join(cli.RUNS, args.preset)
    try:
        hidden = tuple(int(h) for h in str(args.hidden).split(","))
    except ValueError:
        fail(f"--hidden must be comma-separated positive integers like 512,256, got {args.hidden!r}")
    if not hidden or min(hidden) < 1:
        fail(f"--hidden must be comma-separated positive integers like 512,256, got {args.hidden!r}")
    if max(hidden) > 100_000:
        fail(f"--hidden widths must be at most 100000, got {args.hidden!r}")
    if not args.no_routing and args.latent != 10:
        fail(f"routing needs one latent dim per digit: --latent must be 10, got {args.latent} "
             f"(or pass --no-routing)")
    if args.train_subset > 60_000 - args.val_size:
        fail(f"--train-subset {args.train_subset} is more than the {60_000 - args.val_size} "
             f"training images left after --val-size {args.val_size}")
    if args.data_dir and os.path.exists(args.data_dir) and not os.path.isdir(args.data_dir):
        fail(f"--data-dir {args.data_dir} is a file; give the folder that holds (or will hold) "
             f"the MNIST files")
    if args.resume and args.overwrite:
        fail("--resume continues the run in --out and --overwrite replaces it; pass one")
    check_memory(hidden, args.latent * (1 + args.style), args.batch_size)   # the decoder input
    model = dict(input_dim=784, enc_hidden=hidden, dec_hidden=hidden[::-1], latent=args.latent,
                 enc_act="relu", dec_act=args.dec_act, dec_hidden_bias=preset["dec_hidden_bias"],
                 relu_z=True, recon=preset["recon"], recon_weight=preset["recon_weight"],
                 kl_weight=args.kl_weight, l1_weight=args.l1_weight, style=args.style,
                 style_kl_weight=args.style_kl, style_input=args.style_input)
    train = dict(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                 lr_decay=args.lr_decay, seed=args.seed, routing=not args.no_routing,
                 val_size=args.val_size, train_subset=args.train_subset)
    return model, train


def check_memory(hidden, latent, batch_size):
    """Refuse a model whose training would not fit in the memory this machine has free.

    Counted in float32: parameters, their gradients and Adam's two moments (4 copies); the
    activations, caches and gradients of a batch (or of a 1000-image evaluation batch), about
    six arrays per layer width; the MNIST arrays; and ~400 MB for Python, NumPy and Numba.
    """
    widths = (784,) + hidden + (latent,)
    params = sum(a * b + b for a, b in zip(widths, widths[1:])) * 2 + latent * hidden[-1]
    rows = max(batch_size, 1000)
    need = 4 * (4 * params + 6 * rows * 2 * sum(widths)) + 70_000 * 784 + 400 * 2**20
    have = cli.available_memory()
    if have is not None and need > have:
        fail(f"this model (--hidden {','.join(map(str, hidden))}, --batch-size {batch_size}) "
             f"needs about {need / 2**30:.1f} GiB of memory and {have / 2**30:.1f} GiB is free; "
             f"use smaller --hidden or --batch-size")


def claim_out_dir(out, resume, overwrite):
    """Create --out, lock it for this run, and refuse to replace a model in it by accident.

    Returns the lock, held until the process ends. A second training process on the same
    folder, or a fresh start where a checkpoint already is, stops here with one line.
    """
    from gr_numpy.runfolder import RunFolderBusy, RunLock

    ckpt = cli.checkpoint_in(out)
    if resume and not os.path.isfile(ckpt):
        fail(f"--resume: no checkpoint at {ckpt}; run without --resume to start")
    cli.output_dir(PROG, "--out", out)
    try:
        lock = RunLock(out).acquire()
    except (RunFolderBusy, OSError) as e:
        fail(str(e))
    if os.path.exists(ckpt) and not (resume or overwrite):
        fail(f"{out} already holds a trained model ({ckpt}); continue it with --resume, train "
             f"into a new --out DIR, or replace it with --overwrite")
    if overwrite:
        metrics = os.path.join(out, cli.METRICS_NAME)
        if os.path.exists(metrics):
            os.remove(metrics)          # the old test scores no longer describe the folder's model
    return lock


def set_threads(n):
    """Fix the thread count of BLAS and Numba before they start (numpy-backend results depend on it)."""
    if n:
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                    "NUMBA_NUM_THREADS"):
            os.environ[var] = str(n)


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.eval_only:
        return eval_only(args)
    model_cfg, train_cfg = resolve(args)
    lock = claim_out_dir(args.out, args.resume, args.overwrite)
    try:
        return train(args, model_cfg, train_cfg)
    finally:
        lock.release()


def train(args, model_cfg, train_cfg):
    """Load the data, train (or resume), score the test set once, write metrics and figures."""
    if hasattr(signal, "SIGXFSZ"):
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # over a file-size limit: an OSError, not a kill
    set_threads(args.threads)
    t_start = time.perf_counter()

    # Heavy imports after the checks: a typo in a flag costs nothing.
    from gr_numpy import ops
    from gr_numpy.checkpoint import CheckpointError
    from gr_numpy.data import DataError, load_mnist, train_val_split
    from gr_numpy.model import VAEConfig
    from gr_numpy.training import Trainer, TrainConfig, TrainingDiverged, evaluate, warm_up
    from gr_numpy.training import write_metrics

    ops.set_backend(args.backend)
    model_cfg, train_cfg = VAEConfig(**model_cfg), TrainConfig(**train_cfg)
    print(f"config | backend {args.backend} | threads {ops.get_threads()} | "
          f"out {args.out}", flush=True)
    print(f"model  | {model_cfg.to_dict()}", flush=True)
    print(f"train  | {asdict(train_cfg)}", flush=True)

    try:
        images, labels = load_mnist("train", args.data_dir)
        test_images, test_labels = load_mnist("test", args.data_dir)
    except DataError as e:
        fail(str(e))
    if train_cfg.val_size:
        tr_x, tr_y, va_x, va_y = train_val_split(images, labels, train_cfg.val_size)
    else:
        tr_x, tr_y, va_x, va_y = images, labels, images[:0], labels[:0]
    if train_cfg.train_subset:
        tr_x, tr_y = tr_x[:train_cfg.train_subset], tr_y[:train_cfg.train_subset]
    print(f"data   | {len(tr_x)} train, {len(va_x)} validation, {len(test_images)} test "
          f"images | {time.perf_counter() - t_start:.1f} s", flush=True)

    if args.backend == "numba":
        from gr_numpy.kernels import compiled_code_on_disk
        cold = not compiled_code_on_disk()
        if cold:
            print("compile| compiling the kernels, once: about 20 s", flush=True)
        t_compile = time.perf_counter()
        warm_up(model_cfg.dtype)
        if cold:
            print(f"compile| done in {time.perf_counter() - t_compile:.1f} s; later runs load the "
                  f"compiled code from disk", flush=True)

    trainer = Trainer(model_cfg, train_cfg, tr_x, tr_y, va_x, va_y, args.out)
    if args.resume:
        try:
            trainer.restore(trainer.checkpoint_path)
        except (CheckpointError, ValueError) as e:
            fail(str(e))
        print(f"resume | from epoch {trainer.epoch + 1}, step {trainer.step + 1} of "
              f"{trainer.checkpoint_path}", flush=True)
    try:
        finished = trainer.run()
    except TrainingDiverged as e:
        print(f"{PROG}: stopped: {e}", file=sys.stderr)
        return 1
    except OSError as e:                  # the disk filled up, a file-size limit, a lost folder
        print(f"{PROG}: stopped: cannot write {e.filename or trainer.checkpoint_path}: "
              f"{e.strerror or e}; the previous checkpoint (if any) is intact; free some space "
              f"and continue with --resume", file=sys.stderr)
        return 1
    if not finished:
        name = signal.Signals(trainer.stop_signal).name
        print(f"\ninterrupted by {name}: saved epoch {trainer.epoch + 1}, step {trainer.step} to "
              f"{trainer.checkpoint_path}; continue with the same flags plus --resume", flush=True)
        return 128 + trainer.stop_signal

    test = evaluate(trainer.model, test_images, test_labels)
    metrics = {"test_acc": test["acc"], "test_mse": test["mse"],
               "per_class_acc": test["per_class_acc"], "confusion": test["confusion"],
               "wall_seconds": time.perf_counter() - t_start, "history": trainer.history,
               "model": model_cfg.to_dict(), "train": asdict(train_cfg), "backend": args.backend,
               "threads": ops.get_threads()}
    print(f"test   | acc {100 * test['acc']:.2f}% | mse/pixel {test['mse']:.4f} | per class "
          f"{' '.join(f'{100 * a:.1f}' for a in test['per_class_acc'])}", flush=True)
    try:
        write_metrics(os.path.join(args.out, cli.METRICS_NAME), metrics)
        if not args.no_figures:
            write_figures(trainer, test_images, test_labels, test, args.out)
    except OSError as e:
        print(f"{PROG}: cannot write {e.filename or args.out}: {e.strerror or e}; the trained "
              f"model is saved in {trainer.checkpoint_path} (score it with --eval-only)",
              file=sys.stderr)
        return 1
    print(f"done   | {metrics['wall_seconds']:.1f} s wall | {args.out}", flush=True)
    return 0


def write_figures(trainer, images, labels, test, out):
    """Figures beside the checkpoint, if the figures module is available."""
    try:
        from gr_numpy import figures
    except ImportError:
        return
    for path in figures.write_run_figures(trainer.model, images, labels, test,
                                          trainer.history, out):
        print(f"figure | {path}", flush=True)


def eval_only(args):
    """Score a checkpoint on the test set: accuracy, per-class accuracy, reconstruction MSE."""
    set_threads(args.threads)
    from gr_numpy import ops
    from gr_numpy.checkpoint import CheckpointError, load_model
    from gr_numpy.data import DataError, load_mnist
    from gr_numpy.training import evaluate

    ops.set_backend(args.backend)
    out = args.out or os.path.join(cli.RUNS, args.preset)
    path = args.checkpoint or cli.checkpoint_in(out)
    try:
        model = load_model(path)
        images, labels = load_mnist("test", args.data_dir)
    except (CheckpointError, DataError) as e:
        fail(str(e))
    test = evaluate(model, images, labels)
    print(f"test   | acc {100 * test['acc']:.2f}% | mse/pixel {test['mse']:.4f} | per class "
          f"{' '.join(f'{100 * a:.1f}' for a in test['per_class_acc'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
