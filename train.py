"""Train a gradient-routed VAE (or the paper's autoencoder) on MNIST and score it (see --help).

Labels enter training only through the routing mask: there is no classification loss. Choices
during training use a validation split (the last 5k of the 60k training images); the 10k test
set is scored once, at the end. Writes to --out: checkpoint.npz (resumable, with its config and
routing), metrics.json, and figures.

The program reads as: parse the flags, build the recipe (a preset, then the flags given),
train (gr_numpy/training.py), score the test set. The recipe's flags are the config fields
whose metadata has a "help" (VAEConfig, AutoencoderConfig, TrainConfig): one table, `FLAGS`,
gives the parser, each flag's preset values in --help and the resume guard's messages.
"""

import math
import os
import shlex
import signal
import sys
import time
from dataclasses import asdict, fields

from gr_numpy.tools import cli

PROG = "train.py"
if __name__ == "__main__":
    cli.set_thread_env(sys.argv[1:], PROG)     # before NumPy's BLAS and Numba start

from gr_numpy.autoencoder import AutoencoderConfig  # noqa: E402 (after the thread count)
from gr_numpy.backend import ops  # noqa: E402
from gr_numpy.checkpoint import MODELS, CHECKPOINT_NAME, CheckpointError  # noqa: E402
from gr_numpy.checkpoint import load_checkpoint, load_model, save_checkpoint  # noqa: E402
from gr_numpy.data import DataError, load_mnist, train_val_split  # noqa: E402
from gr_numpy.files import write_json  # noqa: E402
from gr_numpy.model import VAEConfig  # noqa: E402
from gr_numpy.presets import PRESETS  # noqa: E402
from gr_numpy.routing import ROUTINGS  # noqa: E402
from gr_numpy.tools.cli import OneLineParser, UserError, int_in, shown  # noqa: E402
from gr_numpy.tools.records import commit, cpu_model  # noqa: E402
from gr_numpy.tools.runfolder import claim  # noqa: E402
from gr_numpy.training import ResumeMismatch, Trainer, TrainConfig, TrainingDiverged  # noqa: E402
from gr_numpy.training import warm_up  # noqa: E402

FLAGS = cli.config_flags(VAEConfig, AutoencoderConfig, TrainConfig)   # flag -> [(class, field)]


def build_parser():
    p = OneLineParser(prog=PROG, description=__doc__.splitlines()[0])
    groups = {name: p.add_argument_group(title) for name, title in [
        ("recipe", "recipe (a preset, then the flags given)"), ("run", "run"), ("data", "data"),
        ("evaluation", "evaluation")]}
    g = groups["recipe"]
    g.add_argument("--preset", choices=list(PRESETS), default="default",
                   help="starting recipe (gr_numpy/presets.py): default (10 digit dims), style "
                        "(+ 8 style dims), reference (the reference post's recipe), halves (the "
                        "Gradient Routing paper's autoencoder with certificate decoders, scaled "
                        "down), halves-paper (the same at the paper's sizes) (default: default)")
    g.add_argument("--routing", choices=list(ROUTINGS),
                   help="which code dims each digit trains (gr_numpy/routing.py); the code's "
                        "width follows from it (default: one-per-digit; halves presets: halves)")
    cli.add_config_flags(groups, FLAGS, PRESETS)
    g = groups["run"]
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
    cli.add_data_dir(groups["data"])
    groups["evaluation"].add_argument("--eval-only", action="store_true",
                                      help="only score --checkpoint on the test set, no training")
    cli.add_checkpoint(groups["evaluation"], default=None, help_default="--out")
    return p


# ---------------------------------------------------------------------------- the recipe
def recipe(args):
    """The preset's fields, then the flags given -> (model class, routing, model config,
    TrainConfig)."""
    chosen = dict(PRESETS[args.preset])
    model_class, config_class = MODELS[chosen.pop("model", "vae")]
    own = {f.name for f in fields(config_class)}
    for flag, setters in FLAGS.items():
        given = getattr(args, setters[0][1].name, None)
        if given is None or given is False:
            continue                                          # not given (or set by --routing)
        mine = [f for config, f in setters if config in (config_class, TrainConfig)]
        if not mine:
            raise UserError(f"{flag} is a setting of the {setters[0][0].__name__}; --preset "
                            f"{args.preset} builds a {config_class.__name__}, which has none")
        for f in mine:
            chosen[f.name] = (not f.default if f.type is bool else
                              given[::-1] if f.metadata.get("mirrors") else given)
    routing = ROUTINGS[args.routing or chosen.pop("routing", "one-per-digit")](
        style=chosen.get("style", 0))
    chosen.pop("routing", None)
    chosen["latent" if "latent" in own else "code"] = routing.routed_dims
    try:
        model = config_class(**{k: chosen.pop(k) for k in own & set(chosen)})
        model_class.check_routing(model, routing)
        return model_class, routing, model, TrainConfig(**chosen)
    except ValueError as e:
        raise UserError(f"--preset {args.preset}: {e}") from None


def check_run(args, model_class, model, routing, train):
    """Everything that can be checked before any work: sizes, paths, memory.

    The memory, counted in float32: parameters, gradients and Adam's two moments (4 copies);
    the activations, caches and gradients of a batch (or of a 1000-image evaluation batch),
    about six arrays per layer width; the MNIST arrays; ~400 MB for Python, NumPy and Numba.
    """
    if train.train_subset > 60_000 - train.val_size:
        raise UserError(f"--train-subset {train.train_subset} is more than the "
                        f"{60_000 - train.val_size} training images left after --val-size "
                        f"{train.val_size}")
    if args.data_dir and os.path.exists(args.data_dir) and not os.path.isdir(args.data_dir):
        raise UserError(f"--data-dir {args.data_dir} is a file; give the folder that holds (or "
                        f"will hold) the MNIST files")
    if args.resume and args.overwrite:
        raise UserError("--resume continues the run in --out and --overwrite replaces it; pass one")
    params = sum(math.prod(s) for s in model_class.shapes(model, routing).values())
    widths = (784,) + model.enc_hidden + model.dec_hidden + (routing.code_dim,)
    rows = max(train.batch_size, 1000)
    need = 4 * (4 * params + 6 * rows * 2 * sum(widths)) + 70_000 * 784 + 400 * 2**20
    have = cli.available_memory()
    if have is not None and need > have:
        raise UserError(f"this model (--hidden {shown(model.enc_hidden)}, --batch-size "
                        f"{train.batch_size}) needs about {need / 2**30:.1f} GiB of memory and "
                        f"{have / 2**30:.1f} GiB is free; use smaller --hidden or --batch-size")


def contradiction(e):
    """A ResumeMismatch as the flags say it: '--lr 0.001, this command gives --lr 0.002'."""
    name = e.field.split(".")[-1]
    flag = "--routing" if name == "routing" else next(
        (flag for flag, setters in FLAGS.items() if any(f.name == name for _, f in setters)), None)
    if flag is None:
        return f"another --preset ({name} {e.stored}, now {e.given})"
    if isinstance(e.stored, bool):                  # an ablation flag: given, or not
        return f"{'no ' if e.stored else ''}{flag}, this command {'passes' if e.stored else 'omits'} it"
    return f"{flag} {shown(e.stored)}, this command gives {flag} {shown(e.given)}"


# ---------------------------------------------------------------------------- the program
def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.command = shlex.join(["python", PROG] + argv)           # kept in metrics.json
    try:                            # the one place an error the user can fix becomes one line
        return evaluate_checkpoint(args) if args.eval_only else train(args)
    except (UserError, CheckpointError, DataError) as e:
        cli.fail(PROG, str(e))


def train(args):
    """Build the recipe, check it, and train in --out while holding its lock."""
    model_class, routing, model_cfg, train_cfg = recipe(args)
    args.out = args.out or os.path.join(cli.RUNS, args.preset)
    check_run(args, model_class, model_cfg, routing, train_cfg)
    lock = claim(PROG, args.out, args.resume, args.overwrite, CHECKPOINT_NAME)
    try:
        return train_in_folder(args, routing, model_cfg, train_cfg)
    finally:
        lock.release()


def train_in_folder(args, routing, model_cfg, train_cfg):
    """Load the data, train (or resume), score the test set once, write metrics and figures."""
    if hasattr(signal, "SIGXFSZ"):
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # over a file-size limit: an OSError, not a kill
    t_start = time.perf_counter()
    ops.set_backend(args.backend)
    print(f"config | backend {args.backend} | threads {ops.get_threads()} | out {args.out}\n"
          f"model  | {model_cfg.to_dict()}\n"
          f"routing| {routing}{'' if train_cfg.routed else ' (not applied: --no-routing)'}\n"
          f"train  | {asdict(train_cfg)}", flush=True)
    images, labels = load_mnist("train", args.data_dir)
    test_images, test_labels = load_mnist("test", args.data_dir)
    tr_x, tr_y, va_x, va_y = train_val_split(images, labels, train_cfg.val_size)
    if train_cfg.train_subset:
        tr_x, tr_y = tr_x[:train_cfg.train_subset], tr_y[:train_cfg.train_subset]
    print(f"data   | {len(tr_x)} train, {len(va_x)} validation, {len(test_images)} test "
          f"images | {time.perf_counter() - t_start:.1f} s", flush=True)
    if args.backend == "numba":
        warm_up(model_cfg.dtype, log=lambda line: print(line, flush=True))

    checkpoint = os.path.join(args.out, CHECKPOINT_NAME)
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
    return score_and_write(args, trainer, test_images, test_labels, t_start)


def score_and_write(args, trainer, test_images, test_labels, t_start):
    """Score the test set once, print it, write metrics.json and the run's figures."""
    model, routed = trainer.model, trainer.tcfg.routed
    scores = model.score(test_images, test_labels)
    metrics = {**model.test_metrics(scores), "routed": routed,
               "wall_seconds": time.perf_counter() - t_start, "history": trainer.history,
               "model": trainer.mcfg.to_dict(), "routing": model.routing.to_dict(),
               "train": asdict(trainer.tcfg), "backend": args.backend,
               "threads": ops.get_threads(), "command": args.command, "commit": commit(),
               "cpu": cpu_model(), "date": time.strftime("%Y-%m-%d")}
    print("\n".join(model.report(scores)), flush=True)
    try:
        write_json(os.path.join(args.out, cli.METRICS_NAME), metrics)
        if not args.no_figures:
            from gr_numpy.tools.figures import write_run_figures   # matplotlib: only here
            title = (f"{os.path.basename(os.path.abspath(args.out))} ({model.routing.name}, "
                     f"{'routed' if routed else 'not routed'})")
            for path in write_run_figures(model, test_images, test_labels, scores,
                                          trainer.history, args.out, title):
                print(f"figure | {path}", flush=True)
    except OSError as e:
        print(f"{PROG}: cannot write {e.filename or args.out}: {e.strerror or e}; the trained "
              f"model is saved in {args.out} (score it with --eval-only)", file=sys.stderr)
        return 1
    print(f"done   | {metrics['wall_seconds']:.1f} s wall | {args.out}", flush=True)
    return 0


def evaluate_checkpoint(args):
    """Score a checkpoint on the test set and print what train.py prints at the end of a run."""
    ops.set_backend(args.backend)
    model = load_model(args.checkpoint or args.out or os.path.join(cli.RUNS, args.preset))
    images, labels = load_mnist("test", args.data_dir)
    print("\n".join(model.report(model.score(images, labels))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
