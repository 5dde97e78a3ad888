"""Train a gradient-routed VAE on MNIST and score it: `python train.py` (see --help).

Labels enter training only through the routing mask: there is no classification loss. The digit
a model predicts is the argmax of its encoder mean. Choices during training use a validation
split (the last 5k of the 60k training images); the 10k test set is scored once, at the end.
Writes to --out: checkpoint.npz (resumable, with its config), metrics.json, and figures.
"""

import argparse
import os
import sys
import time
from dataclasses import asdict

from gr_numpy import cli
from gr_numpy.cli import OneLineParser

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
    p = OneLineParser(prog="train.py", description=__doc__.splitlines()[0],
                      formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    g = p.add_argument_group("recipe")
    g.add_argument("--preset", choices=sorted(PRESETS), default="default",
                   help="starting recipe; the flags below override its settings")
    g.add_argument("--epochs", type=int, help="passes over the training set (preset: 25 / 100 / 25)")
    g.add_argument("--batch-size", type=int, default=128, help="images per Adam step")
    g.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate of the first epoch")
    g.add_argument("--lr-decay", type=float, default=0.95,
                   help="the learning rate is multiplied by this after every epoch")
    g.add_argument("--hidden", help="encoder hidden widths, input side first, e.g. 512,256; the "
                                    "decoder mirrors them (preset: 512,256 / 2048,512 / 512,256)")
    g.add_argument("--dec-act", choices=["relu", "elu"], help="decoder hidden activation")
    g.add_argument("--kl-weight", type=float, help="weight of the digit dims' KL term "
                                                        "(preset: 0.5 / 0.2 / 0.5)")
    g.add_argument("--l1-weight", type=float,
                   help="weight of an L1 penalty on the digit code z_d, label-free and unrouted "
                        "(preset: 0 / 0 / 1 for default / reference / style)")
    g.add_argument("--no-routing", action="store_true",
                   help="ablation: a plain VAE, labels unused during training")
    g.add_argument("--latent", type=int, default=10,
                   help="digit latent dims; must be 10 (one per digit) when routing")
    g.add_argument("--style", type=int,
                   help="style dims S: unrouted, read by the decoder only multiplied by the digit "
                        "dims (preset: 0 / 0 / 6)")
    g.add_argument("--style-kl", type=float,
                   help="weight of the style dims' KL term (preset style: 2)")
    g.add_argument("--style-input", choices=["outer", "shared"],
                   help="how style reaches the decoder: outer = [z_d, vec(z_d outer z_s)] (a "
                        "style per digit), shared = [z_d, sum(z_d) * z_s] (one style for all)")

    g = p.add_argument_group("run")
    g.add_argument("--seed", type=int, default=0, help="fixes the result at a given --threads")
    g.add_argument("--threads", type=int, default=0,
                   help="CPU threads for the kernels (0: all cores)")
    g.add_argument("--backend", choices=["numba", "numpy"], default="numba",
                   help="numba: our jitted kernels; numpy: the plain NumPy reference")
    g.add_argument("--out", help="run folder for checkpoint.npz, metrics.json and figures "
                                 "(default: runs/PRESET)")
    g.add_argument("--resume", action="store_true",
                   help="continue from --out/checkpoint.npz (same flags as the first run)")
    g.add_argument("--no-figures", action="store_true", help="skip writing PNG figures")

    g = p.add_argument_group("data")
    g.add_argument("--data-dir", help="MNIST folder (default: $GR_NUMPY_DATA, else "
                                      "~/.cache/gr_numpy/mnist; fetched if missing)")
    g.add_argument("--val-size", type=int, default=5000,
                   help="validation images held out from the end of the 60k training set")
    g.add_argument("--train-subset", type=int, default=0,
                   help="train on only the first N training images (0: all); for quick tries")

    g = p.add_argument_group("evaluation")
    g.add_argument("--eval-only", action="store_true",
                   help="only score --checkpoint on the test set, no training")
    g.add_argument("--checkpoint", help="checkpoint for --eval-only (default: --out/checkpoint.npz)")
    return p


def fail(message):
    """One line on stderr, exit code 2: for anything the user can fix before work starts."""
    cli.fail("train.py", message)


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
        args.out = os.path.join("runs", args.preset)
    try:
        hidden = tuple(int(h) for h in str(args.hidden).split(","))
    except ValueError:
        fail(f"--hidden must be comma-separated positive integers like 512,256, got {args.hidden!r}")
    if not hidden or min(hidden) < 1:
        fail(f"--hidden must be comma-separated positive integers like 512,256, got {args.hidden!r}")
    for name in ("epochs", "batch_size"):
        if getattr(args, name) < 1:
            fail(f"--{name.replace('_', '-')} must be a positive integer, got {getattr(args, name)}")
    if not args.lr > 0:
        fail(f"--lr must be positive, got {args.lr}")
    if not 0 < args.lr_decay <= 1:
        fail(f"--lr-decay must be in (0, 1], got {args.lr_decay}")
    if args.kl_weight < 0 or args.l1_weight < 0:
        fail(f"--kl-weight and --l1-weight must be >= 0, got {args.kl_weight}, {args.l1_weight}")
    if args.style < 0:
        fail(f"--style must be an integer >= 0, got {args.style}")
    if not args.style_kl >= 0:
        fail(f"--style-kl must be >= 0, got {args.style_kl}")
    if args.latent < 1:
        fail(f"--latent must be a positive integer, got {args.latent}")
    if not args.no_routing and args.latent != 10:
        fail(f"routing needs one latent dim per digit: --latent must be 10, got {args.latent} "
             f"(or pass --no-routing)")
    if args.threads < 0:
        fail(f"--threads must be >= 0, got {args.threads}")
    if not 0 <= args.val_size < 60000 or args.train_subset < 0:
        fail("--val-size must be in 0..59999 and --train-subset >= 0")
    model = dict(input_dim=784, enc_hidden=hidden, dec_hidden=hidden[::-1], latent=args.latent,
                 enc_act="relu", dec_act=args.dec_act, dec_hidden_bias=preset["dec_hidden_bias"],
                 relu_z=True, recon=preset["recon"], recon_weight=preset["recon_weight"],
                 kl_weight=args.kl_weight, l1_weight=args.l1_weight, style=args.style,
                 style_kl_weight=args.style_kl, style_input=args.style_input)
    train = dict(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                 lr_decay=args.lr_decay, seed=args.seed, routing=not args.no_routing,
                 val_size=args.val_size, train_subset=args.train_subset)
    return model, train


def check_out_dir(out, resume):
    """Create --out and prove it is writable, or fail with one line."""
    try:
        os.makedirs(out, exist_ok=True)
        probe = os.path.join(out, ".write-test")
        with open(probe, "w") as f:
            f.write("ok")
        os.remove(probe)
    except OSError as e:
        fail(f"cannot write to --out {out}: {e.strerror}; choose another folder")
    ckpt = os.path.join(out, "checkpoint.npz")
    if resume and not os.path.isfile(ckpt):
        fail(f"--resume: no checkpoint at {ckpt}; run without --resume to start")


def set_threads(n):
    """Fix the thread count of BLAS and Numba before they start (results depend on it)."""
    if n:
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                    "NUMBA_NUM_THREADS"):
            os.environ[var] = str(n)


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.eval_only:
        return eval_only(args)
    model_cfg, train_cfg = resolve(args)
    check_out_dir(args.out, args.resume)
    set_threads(args.threads)
    t_start = time.perf_counter()

    # Heavy imports after the checks: a typo in a flag costs nothing.
    import numpy as np
    from gr_numpy import ops
    from gr_numpy.checkpoint import CheckpointError
    from gr_numpy.data import DataError, load_mnist, train_val_split
    from gr_numpy.model import VAEConfig
    from gr_numpy.training import Trainer, TrainConfig, TrainingDiverged, evaluate, write_metrics

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
        print(f"train.py: stopped: {e}", file=sys.stderr)
        return 1
    if not finished:
        print(f"\ninterrupted: saved epoch {trainer.epoch + 1}, step {trainer.step} to "
              f"{trainer.checkpoint_path}; continue with the same flags plus --resume", flush=True)
        return 130

    test = evaluate(trainer.model, test_images, test_labels)
    metrics = {"test_acc": test["acc"], "test_mse": test["mse"],
               "per_class_acc": test["per_class_acc"], "confusion": test["confusion"],
               "wall_seconds": time.perf_counter() - t_start, "history": trainer.history,
               "model": model_cfg.to_dict(), "train": asdict(train_cfg), "backend": args.backend,
               "threads": ops.get_threads()}
    write_metrics(os.path.join(args.out, "metrics.json"), metrics)
    print(f"test   | acc {100 * test['acc']:.2f}% | mse/pixel {test['mse']:.4f} | per class "
          f"{' '.join(f'{100 * a:.1f}' for a in test['per_class_acc'])}", flush=True)
    if not args.no_figures:
        write_figures(trainer, test_images, test_labels, test, args.out)
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
    out = args.out or os.path.join("runs", args.preset)
    path = args.checkpoint or os.path.join(out, "checkpoint.npz")
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
