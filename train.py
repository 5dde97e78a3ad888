"""Train a gradient-routed VAE (or the paper's autoencoder) on MNIST and score it (see --help).

Labels enter training only through the routing mask: there is no classification loss. The model
names an image's digit by the routing group whose dims have the largest encoder mean. Choices
during training use a validation split (the last 5k of the 60k training images); the 10k test
set is scored once, at the end. Writes to --out: checkpoint.npz (resumable, with its config and
routing), metrics.json, and figures.

The program reads as: parse the flags, build the recipe (a preset, then the flags given),
train (gr_numpy/training.py), score the test set.
"""

import argparse
import os
import signal
import sys
import time
from dataclasses import asdict, fields

from gr_numpy.tools import cli
from gr_numpy.tools.cli import OneLineParser, UserError, float_in, int_in

PROG = "train.py"
ROUTING_NAMES = ("one-per-digit", "two-per-digit", "halves")   # gr_numpy/routing.py: ROUTINGS
LR_SCHEDULES = ("exponential", "cosine")                       # gr_numpy/training.py
WEIGHT_DECAY_FORMS = ("decoupled", "coupled")                  # gr_numpy/adam.py

# Presets: the config fields each recipe changes from the defaults, which are the default recipe
# (VAEConfig in gr_numpy/model.py, TrainConfig in gr_numpy/training.py). Flags given win.
# model="autoencoder" starts from AutoencoderConfig (gr_numpy/autoencoder.py) instead.
PRESETS = {
    # Found by measurement (docs/experiments.md): ELU decoder without hidden biases, BCE loss,
    # 0.5 x KL, 25 epochs.
    "default": {},
    # 8 style dims that reach the decoder only through [z_d, vec(z_d outer z_s)] (docs/style.md),
    # their KL weighted 1 and the digit dims' 0.25, both KL weights climbing over 5 epochs, an L1
    # penalty on the digit code, and Adam 2e-3 on a cosine schedule after one epoch of warm-up,
    # 27 epochs; chosen on the validation split (docs/experiments.md).
    "style": dict(style=8, style_kl_weight=1.0, kl_weight=0.25, kl_warmup=5, l1_weight=1.0,
                  epochs=27, lr=2e-3, lr_schedule="cosine", warmup=1),
    # The reference post's recipe: 784-2048-512-10, ReLU everywhere, 0.3 * SSE + its KL-like
    # term mean_k(mu^2 + exp(logvar) - logvar), which is 0.2 * KL + 1 for K = 10, 100 epochs.
    "reference": dict(enc_hidden=(2048, 512), dec_hidden=(512, 2048), dec_act="relu",
                      dec_hidden_bias=True, recon="sse", recon_weight=0.3, kl_weight=0.2,
                      epochs=100),
    # The Gradient Routing paper's MNIST experiment (docs/halves.md): a deterministic
    # autoencoder, the code's halves routed from digits 0-4 and 5-9, two certificate decoders;
    # MAE, L1 3e-3 per half, correlation penalty 0.1, Adam 1e-3 with the paper's coupled (L2)
    # weight decay 5e-5, constant lr. Scaled down: 784-512-256-32, batch 64, 16 epochs (10-15 s
    # an epoch with 2 threads on an AVX-512 CPU, about 4 minutes; docs/experiments.md).
    "halves": dict(model="autoencoder", routing="halves", enc_hidden=(512, 256),
                   dec_hidden=(256, 512), batch_size=64, epochs=16, lr_decay=1.0,
                   weight_decay=5e-5, weight_decay_form="coupled"),
    # The paper's sizes: 784-2048-512-32, batch 2048, 200 epochs (hours on 2 cores).
    "halves-paper": dict(model="autoencoder", routing="halves", enc_hidden=(2048, 512),
                         dec_hidden=(512, 2048), batch_size=2048, epochs=200, lr_decay=1.0,
                         weight_decay=5e-5, weight_decay_form="coupled"),
}

# Flags only a VAE has, refused with an autoencoder preset (it has no KL, style, ...).
VAE_ONLY = {"dec_act": "--dec-act", "kl_weight": "--kl-weight", "l1_weight": "--l1-weight",
            "style": "--style", "style_kl_weight": "--style-kl", "style_input": "--style-input",
            "relu_z": "--no-relu-z", "kl_warmup": "--kl-warmup"}

# The flag that sets each config field (for the message when a resume contradicts its run).
FLAG_OF = {"epochs": "--epochs", "batch_size": "--batch-size", "lr": "--lr",
           "lr_decay": "--lr-decay", "lr_schedule": "--lr-schedule", "warmup": "--warmup",
           "kl_warmup": "--kl-warmup", "shift": "--shift", "seed": "--seed",
           "routed": "--no-routing", "val_size": "--val-size", "train_subset": "--train-subset",
           "enc_hidden": "--hidden", "dec_hidden": "--hidden", "dec_act": "--dec-act",
           "kl_weight": "--kl-weight", "l1_weight": "--l1-weight", "style": "--style",
           "style_kl_weight": "--style-kl", "style_input": "--style-input",
           "relu_z": "--no-relu-z", "latent": "--routing", "routing": "--routing",
           "weight_decay": "--weight-decay", "weight_decay_form": "--weight-decay-form"}


def build_parser():
    p = OneLineParser(prog=PROG, description=__doc__.splitlines()[0])
    g = p.add_argument_group("recipe (a preset, then the flags given; see --preset)")
    g.add_argument("--preset", choices=sorted(PRESETS), default="default",
                   help="starting recipe: default (10 digit dims), style (+ 8 style dims), "
                        "reference (the reference post's recipe), halves (the Gradient Routing "
                        "paper's autoencoder with certificate decoders, scaled down), "
                        "halves-paper (the same at the paper's sizes) (default: default)")
    g.add_argument("--routing", choices=ROUTING_NAMES,
                   help="which code dims each digit trains; the code's width follows from it: "
                        "one-per-digit (10 dims), two-per-digit (20), halves (0-4 train dims "
                        "0-15, 5-9 dims 16-31) (default: one-per-digit)")
    g.add_argument("--no-routing", action="store_true",
                   help="ablation: a plain VAE, labels unused during training (the --routing "
                        "layout is still how the code is read)")
    g.add_argument("--epochs", type=int_in(1, 100_000),
                   help="passes over the training set (default 25; style 27; reference 100); "
                        "may grow when resuming, to extend a run")
    g.add_argument("--batch-size", type=int_in(1, 60_000), help="images per Adam step (128)")
    g.add_argument("--lr", type=float_in(0, 1, lo_open=True),
                   help="Adam learning rate of the schedule at epoch 0 (after --warmup, if any) "
                        "(1e-3; style 2e-3)")
    g.add_argument("--lr-schedule", choices=LR_SCHEDULES,
                   help="learning rate of epoch e (from 0): exponential, lr * lr_decay^e; "
                        "cosine, lr * (1 + cos(pi e / epochs)) / 2 (a cosine run extended with "
                        "--resume follows the new length from there on) (exponential; style "
                        "cosine)")
    g.add_argument("--lr-decay", type=float_in(0, 1, lo_open=True),
                   help="the exponential schedule multiplies the learning rate by this after "
                        "every epoch (0.95)")
    g.add_argument("--weight-decay", type=float_in(0, 1),
                   help="Adam's weight decay wd, in the form --weight-decay-form says (0; "
                        "halves presets 5e-5)")
    g.add_argument("--weight-decay-form", choices=WEIGHT_DECAY_FORMS,
                   help="how Adam applies the weight decay: decoupled, p -= lr * wd * p apart "
                        "from the gradient (AdamW); coupled, wd * p added to the gradient before "
                        "Adam's moments (L2, as the paper's torch.optim.Adam) (decoupled)")
    g.add_argument("--warmup", type=int_in(0, 1000),
                   help="epochs of linear learning-rate warm-up before the schedule (0; style 1)")
    g.add_argument("--kl-warmup", type=int_in(0, 1000),
                   help="epochs over which both KL weights climb linearly to their values, at "
                        "(e + 1) / (N + 1) of them in epoch e (0; style 5)")
    g.add_argument("--shift", type=int_in(0, 13),
                   help="augmentation: move each training image by a random -N..N pixels in x "
                        "and y, a new draw every time it is seen; label-free, seeded, never "
                        "applied to validation or test images (0: off)")
    g.add_argument("--hidden", help="encoder hidden widths, input side first; the decoder "
                                    "mirrors them (512,256; reference 2048,512)")
    g.add_argument("--dec-act", choices=["relu", "elu"],
                   help="decoder hidden activation (elu; reference relu)")
    g.add_argument("--kl-weight", type=float_in(0, 1000),
                   help="weight of the digit dims' KL term (0.5; style 0.25; reference 0.2)")
    g.add_argument("--l1-weight", type=float_in(0, 1000),
                   help="weight of an L1 penalty on the digit code z_d, label-free and unrouted "
                        "(0; style 1)")
    g.add_argument("--no-relu-z", action="store_true",
                   help="ablation: no ReLU on the digit code (z = the sample itself)")
    g.add_argument("--style", type=int_in(0, 1000),
                   help="style dims S: unrouted, read by the decoder only multiplied by the digit "
                        "dims (0; style 8)")
    g.add_argument("--style-kl", type=float_in(0, 1000),
                   help="weight of the style dims' KL term (1)")
    g.add_argument("--style-input", choices=["outer", "shared"],
                   help="how style reaches the decoder: outer = [z_d, vec(z_d outer z_s)] (a "
                        "style per digit), shared = [z_d, sum(z_d) * z_s] (one style for all)")

    g = p.add_argument_group("run")
    g.add_argument("--seed", type=int_in(0, 2**63 - 1),
                   help="fixes the result (numba backend: at any --threads; numpy: at the same "
                        "--threads) (0)")
    g.add_argument("--threads", type=int_in(0, os.cpu_count() or 1), default=0,
                   help="CPU threads for the kernels (default 0: all cores)")
    g.add_argument("--backend", choices=["numba", "numpy"], default="numba",
                   help="numba: our jitted kernels; numpy: the plain NumPy reference "
                        "(default: numba)")
    g.add_argument("--out", help="run folder for checkpoint.npz, metrics.json and figures "
                                 "(default: runs/PRESET)")
    g.add_argument("--resume", action="store_true",
                   help="continue the run in --out, with the same flags (--epochs may grow)")
    g.add_argument("--overwrite", action="store_true",
                   help="start afresh even if --out holds a checkpoint, replacing that model")
    g.add_argument("--no-figures", action="store_true", help="skip writing PNG figures")

    g = p.add_argument_group("data")
    cli.add_data_dir(g)
    g.add_argument("--val-size", type=int_in(0, 59_999),
                   help="validation images held out from the end of the 60k training set (5000)")
    g.add_argument("--train-subset", type=int_in(0, 60_000),
                   help="train on only the first N training images (0: all); for quick tries")

    g = p.add_argument_group("evaluation")
    g.add_argument("--eval-only", action="store_true",
                   help="only score --checkpoint on the test set, no training")
    cli.add_checkpoint(g, default=None, help_default="--out")
    return p


# ---------------------------------------------------------------------------- the recipe
def recipe(args):
    """The preset's fields, then the flags given -> (routing, model config, TrainConfig); the
    model config is a VAEConfig, or an AutoencoderConfig for the halves presets."""
    from gr_numpy.routing import ROUTINGS
    from gr_numpy.training import MODELS, TrainConfig

    chosen = dict(PRESETS[args.preset])
    kind = chosen.pop("model", "vae")
    given = {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
             "lr_decay": args.lr_decay, "lr_schedule": args.lr_schedule,
             "warmup": args.warmup, "kl_warmup": args.kl_warmup, "shift": args.shift,
             "seed": args.seed, "val_size": args.val_size, "train_subset": args.train_subset,
             "weight_decay": args.weight_decay, "weight_decay_form": args.weight_decay_form,
             "dec_act": args.dec_act,
             "kl_weight": args.kl_weight, "l1_weight": args.l1_weight, "style": args.style,
             "style_kl_weight": args.style_kl, "style_input": args.style_input,
             "routing": args.routing}
    chosen.update({k: v for k, v in given.items() if v is not None})
    if args.hidden is not None:
        hidden = parse_hidden(args.hidden)
        chosen["enc_hidden"], chosen["dec_hidden"] = hidden, hidden[::-1]
    if args.no_routing:
        chosen["routed"] = False
    if args.no_relu_z:
        chosen["relu_z"] = False
    routing = ROUTINGS[chosen.pop("routing", "one-per-digit")](style=chosen.get("style", 0))
    if kind == "autoencoder":
        refused = [flag for field, flag in VAE_ONLY.items() if field in chosen]
        if refused:
            raise UserError(f"{refused[0]} is a VAE's; --preset {args.preset} trains the paper's "
                            f"autoencoder, which has no such setting")
        if routing.name != "halves":
            raise UserError(f"--preset {args.preset} needs --routing halves (two groups, one "
                            f"certificate each), got --routing {routing.name}")
        chosen["code"] = routing.code_dim
    else:
        chosen["latent"] = routing.routed_dims
    config_class = MODELS[kind][1]
    model = {f.name: chosen.pop(f.name) for f in fields(config_class) if f.name in chosen}
    train = {f.name: chosen.pop(f.name) for f in fields(TrainConfig) if f.name in chosen}
    assert not chosen, f"preset fields that are no config's: {chosen}"
    return routing, config_class(**model), TrainConfig(**train)


def parse_hidden(text):
    try:
        hidden = tuple(int(h) for h in str(text).split(","))
    except ValueError:
        hidden = ()
    if not hidden or min(hidden) < 1:
        raise UserError(f"--hidden must be comma-separated positive integers like 512,256, "
                        f"got {text!r}")
    if max(hidden) > 100_000:
        raise UserError(f"--hidden widths must be at most 100000, got {text!r}")
    return hidden


def check_run(args, model, train):
    """Everything that can be checked before any work: paths, sizes, memory."""
    if train.train_subset > 60_000 - train.val_size:
        raise UserError(f"--train-subset {train.train_subset} is more than the "
                        f"{60_000 - train.val_size} training images left after --val-size "
                        f"{train.val_size}")
    if args.data_dir and os.path.exists(args.data_dir) and not os.path.isdir(args.data_dir):
        raise UserError(f"--data-dir {args.data_dir} is a file; give the folder that holds (or "
                        f"will hold) the MNIST files")
    if args.resume and args.overwrite:
        raise UserError("--resume continues the run in --out and --overwrite replaces it; pass one")
    check_memory(model, train.batch_size)


def check_memory(model, batch_size):
    """Refuse a model whose training would not fit in the memory this machine has free.

    Counted in float32: parameters, their gradients and Adam's two moments (4 copies); the
    activations, caches and gradients of a batch (or of a 1000-image evaluation batch), about
    six arrays per layer width; the MNIST arrays; and ~400 MB for Python, NumPy and Numba.
    """
    hidden = model.enc_hidden
    widths = (784,) + hidden + (model.decoder_input_dim,)
    decoders = 4 if model.kind == "autoencoder" else 2       # encoder + decoder (+ certificates)
    params = (sum(a * b + b for a, b in zip(widths, widths[1:])) * decoders
              + model.code_dim * hidden[-1])
    rows = max(batch_size, 1000)
    need = 4 * (4 * params + 6 * rows * 2 * sum(widths)) + 70_000 * 784 + 400 * 2**20
    have = cli.available_memory()
    if have is not None and need > have:
        raise UserError(f"this model (--hidden {','.join(map(str, hidden))}, --batch-size "
                        f"{batch_size}) needs about {need / 2**30:.1f} GiB of memory and "
                        f"{have / 2**30:.1f} GiB is free; use smaller --hidden or --batch-size")


def claim_out_dir(out, resume, overwrite):
    """Create --out, lock it for this run, and refuse to replace a model in it by accident.

    Returns the lock, held until the process ends. A second training process on the same
    folder, or a fresh start where a checkpoint already is, stops here with one line.
    """
    from gr_numpy.tools.runfolder import RunFolderBusy, RunLock

    ckpt = cli.checkpoint_in(out)
    if resume and not os.path.isfile(ckpt):
        raise UserError(f"--resume: no checkpoint at {ckpt}; run without --resume to start")
    cli.output_dir(PROG, "--out", out)
    try:
        lock = RunLock(out).acquire()
    except (RunFolderBusy, OSError) as e:
        raise UserError(str(e)) from None
    if os.path.exists(ckpt) and not (resume or overwrite):
        raise UserError(f"{out} already holds a trained model ({ckpt}); continue it with "
                        f"--resume, train into a new --out DIR, or replace it with --overwrite")
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


# ---------------------------------------------------------------------------- the program
def main(argv=None):
    args = build_parser().parse_args(argv)
    set_threads(args.threads)       # before anything imports Numba or NumPy's BLAS
    from gr_numpy.data import DataError
    from gr_numpy.tools.checkpoint import CheckpointError

    try:                            # the one place an error the user can fix becomes one line
        return eval_only(args) if args.eval_only else train(args)
    except (UserError, CheckpointError, DataError) as e:
        cli.fail(PROG, str(e))


def train(args):
    """Build the recipe, check it, and train in --out while holding its lock."""
    routing, model_cfg, train_cfg = recipe(args)
    args.out = args.out or os.path.join(cli.RUNS, args.preset)
    check_run(args, model_cfg, train_cfg)
    lock = claim_out_dir(args.out, args.resume, args.overwrite)
    try:
        return train_in_folder(args, routing, model_cfg, train_cfg)
    finally:
        lock.release()


def train_in_folder(args, routing, model_cfg, train_cfg):
    """Load the data, train (or resume), score the test set once, write metrics and figures."""
    if hasattr(signal, "SIGXFSZ"):
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # over a file-size limit: an OSError, not a kill
    t_start = time.perf_counter()

    from gr_numpy.backend import ops
    from gr_numpy.data import load_mnist, train_val_split
    from gr_numpy.tools.checkpoint import load_checkpoint, save_checkpoint
    from gr_numpy.tools.files import write_json
    from gr_numpy.training import ResumeMismatch, Trainer, TrainingDiverged, evaluate, warm_up

    ops.set_backend(args.backend)
    print(f"config | backend {args.backend} | threads {ops.get_threads()} | out {args.out}",
          flush=True)
    print(f"model  | {model_cfg.to_dict()}", flush=True)
    print(f"routing| {routing}{'' if train_cfg.routed else ' (not applied: --no-routing)'}",
          flush=True)
    print(f"train  | {asdict(train_cfg)}", flush=True)

    images, labels = load_mnist("train", args.data_dir)
    test_images, test_labels = load_mnist("test", args.data_dir)
    if train_cfg.val_size:
        tr_x, tr_y, va_x, va_y = train_val_split(images, labels, train_cfg.val_size)
    else:
        tr_x, tr_y, va_x, va_y = images, labels, images[:0], labels[:0]
    if train_cfg.train_subset:
        tr_x, tr_y = tr_x[:train_cfg.train_subset], tr_y[:train_cfg.train_subset]
    print(f"data   | {len(tr_x)} train, {len(va_x)} validation, {len(test_images)} test "
          f"images | {time.perf_counter() - t_start:.1f} s", flush=True)

    if args.backend == "numba":
        from gr_numpy.backend.kernels import compiled_code_on_disk
        cold = not compiled_code_on_disk()
        if cold:
            print("compile| compiling the kernels, once: about 20 s", flush=True)
        t_compile = time.perf_counter()
        warm_up(model_cfg.dtype)
        if cold:
            print(f"compile| done in {time.perf_counter() - t_compile:.1f} s; later runs load the "
                  f"compiled code from disk", flush=True)

    checkpoint = cli.checkpoint_in(args.out)
    trainer = Trainer(model_cfg, train_cfg, tr_x, tr_y, va_x, va_y, routing=routing,
                      save=lambda t: save_checkpoint(checkpoint, *t.state()))
    if args.resume:
        try:
            trainer.load_state(*load_checkpoint(checkpoint))
        except ResumeMismatch as e:
            raise UserError(f"--resume: {args.out} was trained with {contradiction(e)}; resume "
                            f"with the flags of the first run (--epochs may grow), or train "
                            f"into a new --out") from None
        except (ValueError, TypeError) as e:
            raise UserError(f"--resume: {checkpoint} cannot be resumed ({e}); use a new --out") \
                from None
        print(f"resume | from epoch {trainer.epoch + 1}, step {trainer.step + 1} of "
              f"{checkpoint}", flush=True)
    try:
        finished = trainer.run()
    except TrainingDiverged as e:
        kept = (f"the last good checkpoint is kept at {checkpoint}" if os.path.isfile(checkpoint)
                else "no checkpoint was written yet")
        print(f"{PROG}: stopped: {e}; {kept}; try a smaller --lr", file=sys.stderr)
        return 1
    except OSError as e:                  # the disk filled up, a file-size limit, a lost folder
        print(f"{PROG}: stopped: cannot write {e.filename or checkpoint}: {e.strerror or e}; the "
              f"previous checkpoint (if any) is intact; free some space and continue with "
              f"--resume", file=sys.stderr)
        return 1
    if not finished:
        name = signal.Signals(trainer.stop_signal).name
        print(f"\ninterrupted by {name}: saved epoch {trainer.epoch + 1}, step {trainer.step} to "
              f"{checkpoint}; continue with the same flags plus --resume", flush=True)
        return 128 + trainer.stop_signal

    if model_cfg.kind == "autoencoder":
        return finish_autoencoder(args, trainer, routing, model_cfg, train_cfg, test_images,
                                  test_labels, t_start)
    test = evaluate(trainer.model, test_images, test_labels)
    metrics = {"test_acc": test["acc"], "test_mse": test["mse"],
               "per_class_acc": test["per_class_acc"], "confusion": test["confusion"],
               "groups": test["groups"], "wall_seconds": time.perf_counter() - t_start,
               "history": trainer.history, "model": model_cfg.to_dict(),
               "routing": routing.to_dict(), "train": asdict(train_cfg),
               "backend": args.backend, "threads": ops.get_threads()}
    print_test(test)
    try:
        write_json(os.path.join(args.out, cli.METRICS_NAME), metrics)
        if not args.no_figures:
            from gr_numpy.tools import figures
            for path in figures.write_run_figures(trainer.model, test_images, test_labels, test,
                                                  trainer.history, args.out):
                print(f"figure | {path}", flush=True)
    except OSError as e:
        print(f"{PROG}: cannot write {e.filename or args.out}: {e.strerror or e}; the trained "
              f"model is saved in {checkpoint} (score it with --eval-only)", file=sys.stderr)
        return 1
    print(f"done   | {metrics['wall_seconds']:.1f} s wall | {args.out}", flush=True)
    return 0


def finish_autoencoder(args, trainer, routing, model_cfg, train_cfg, test_images, test_labels,
                       t_start):
    """Score the test set once: the certificate table, printed and in metrics.json; figures."""
    from gr_numpy.backend import ops
    from gr_numpy.tools.certificates import certificate_lines, write_certificate_figures
    from gr_numpy.tools.files import write_json
    from gr_numpy.training import evaluate_certificates

    test = evaluate_certificates(trainer.model, test_images, test_labels)
    metrics = {"test_mae": test["mae"], "certificates": test["certificates"],
               "ratios": test["ratios"], "per_digit_mae": test["per_digit"],
               "certificates_mse": test["certificates_mse"], "mse_ratios": test["mse_ratios"],
               "routed": train_cfg.routed, "wall_seconds": time.perf_counter() - t_start,
               "history": trainer.history, "model": model_cfg.to_dict(),
               "routing": routing.to_dict(), "train": asdict(train_cfg),
               "backend": args.backend, "threads": ops.get_threads()}
    for line in certificate_lines(test):
        print(line, flush=True)
    try:
        write_json(os.path.join(args.out, cli.METRICS_NAME), metrics)
        if not args.no_figures:
            title = f"{os.path.basename(os.path.abspath(args.out))} (halves, " \
                    f"{'routed' if train_cfg.routed else 'not routed'})"
            for path in write_certificate_figures(trainer.model, test_images, test_labels, test,
                                                  args.out, title):
                print(f"figure | {path}", flush=True)
    except OSError as e:
        print(f"{PROG}: cannot write {e.filename or args.out}: {e.strerror or e}; the trained "
              f"model is saved in {cli.checkpoint_in(args.out)} (score it with --eval-only)",
              file=sys.stderr)
        return 1
    print(f"done   | {metrics['wall_seconds']:.1f} s wall | {args.out}", flush=True)
    return 0


def contradiction(e):
    """A ResumeMismatch as the flags say it: '--lr 0.001, this command gives --lr 0.002'."""
    field = e.field.split(".")[-1]
    flag = FLAG_OF.get(field, "--preset")
    if field in ("routed", "relu_z"):              # on unless the flag is given
        return f"{'no ' if e.stored else ''}{flag}, this command {'passes' if e.stored else 'omits'} it"
    if field == "dec_hidden_bias" or flag == "--preset":
        return f"another --preset ({field} {e.stored}, now {e.given})"

    def shown(value):
        return ",".join(map(str, value)) if isinstance(value, (list, tuple)) else value
    return f"{flag} {shown(e.stored)}, this command gives {flag} {shown(e.given)}"


def print_test(test):
    print(f"test   | acc {100 * test['acc']:.2f}% | mse/pixel {test['mse']:.4f} | per class "
          f"{' '.join(f'{100 * a:.1f}' for a in test['per_class_acc'])}", flush=True)


def eval_only(args):
    """Score a checkpoint on the test set: accuracy, per-class accuracy, reconstruction MSE; for
    the paper's autoencoder, the certificate table."""
    from gr_numpy.backend import ops
    from gr_numpy.data import load_mnist
    from gr_numpy.tools.certificates import certificate_lines
    from gr_numpy.tools.checkpoint import load_model
    from gr_numpy.training import evaluate, evaluate_certificates

    ops.set_backend(args.backend)
    model = load_model(args.checkpoint or args.out or os.path.join(cli.RUNS, args.preset))
    images, labels = load_mnist("test", args.data_dir)
    if model.kind == "autoencoder":
        for line in certificate_lines(evaluate_certificates(model, images, labels)):
            print(line)
    else:
        print_test(evaluate(model, images, labels))
    return 0


if __name__ == "__main__":
    sys.exit(main())
