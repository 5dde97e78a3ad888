"""The training step and loop, evaluation, and the position that lets a run stop and resume exactly.

The step, whole (`train_step`): forward, backward (routed when labels are given), one Adam step.
The loop (`Trainer`) draws a batch (moved by a random shift of a few pixels if asked:
`random_shift`, label-free, training batches only) and its noise eps, takes a step at the
epoch's learning rate (`schedule_of`) and KL factor (`kl_scale_of`: below 1 only during a KL
warm-up), and ends each epoch with a validation score and a call to `save`. Labels reach the
model only when routing, and only through `VAE.backward`'s routing mask. All randomness comes
from one seeded generator whose state is part of the saved position, so a resumed run continues
to the same numbers as an unbroken one (on the numba backend at any thread count; on the numpy
backend at the same thread count, since OpenBLAS splits its products by thread count). Reading
and writing files is the caller's: `train.py` passes a `save` function and loads checkpoints
(tools/checkpoint.py).
"""

import math
import signal
import sys
import time
from dataclasses import asdict, dataclass

import numpy as np

from .adam import WEIGHT_DECAY_FORMS, Adam, cosine_decay, exponential_decay, linear_warmup
from .autoencoder import Autoencoder, AutoencoderConfig
from .data import to_rows
from .model import VAE, VAEConfig
from .routing import Routing, halves, one_per_digit


@dataclass
class TrainConfig:
    """How to train (the model's shape and loss live in VAEConfig). The defaults are the default
    recipe; `--epochs` is the one field a resumed run may change (it may grow)."""
    epochs: int = 25
    batch_size: int = 128
    lr: float = 1e-3
    lr_schedule: str = "exponential"  # lr of epoch e (from 0): "exponential" lr * lr_decay ** e,
                                      # "cosine" lr * (1 + cos(pi * e / epochs)) / 2 (adam.py)
    lr_decay: float = 0.95        # the exponential schedule's factor per epoch
    warmup: int = 0               # epochs of linear warm-up before the schedule (0: none)
    kl_warmup: int = 0            # epochs over which the KL weights climb to theirs (0: none)
    shift: int = 0                # augmentation: move each training image by up to this many
                                  # pixels in x and y, at random (0: none; never at evaluation)
    seed: int = 0
    routed: bool = True           # pass labels to the backward pass (False: a plain VAE)
    val_size: int = 5000          # the last val_size of the 60k training images
    train_subset: int = 0         # train on only the first n training images (0: all of them)
    weight_decay: float = 0.0     # Adam's weight decay (the paper's autoencoder: 5e-5)
    weight_decay_form: str = "decoupled"  # "decoupled" (AdamW) or "coupled" (L2 in the gradient,
                                          # as PyTorch's Adam, the paper's optimiser) (adam.py)

    def __post_init__(self):
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"TrainConfig: lr_schedule must be one of {sorted(LR_SCHEDULES)}, "
                             f"got {self.lr_schedule!r}")
        if self.weight_decay_form not in WEIGHT_DECAY_FORMS:
            raise ValueError(f"TrainConfig: weight_decay_form must be one of "
                             f"{list(WEIGHT_DECAY_FORMS)}, got {self.weight_decay_form!r}")
        if self.warmup < 0 or self.shift < 0 or self.kl_warmup < 0:
            raise ValueError(f"TrainConfig: warmup, shift and kl_warmup must be >= 0, got "
                             f"{self.warmup}, {self.shift}, {self.kl_warmup}")


LR_SCHEDULES = ("exponential", "cosine")


def schedule_of(tcfg):
    """The learning rate of each epoch, as TrainConfig describes it: epoch (from 0) -> lr."""
    if tcfg.lr_schedule == "cosine":
        schedule = cosine_decay(tcfg.lr, tcfg.epochs)
    else:
        schedule = exponential_decay(tcfg.lr, tcfg.lr_decay)
    return linear_warmup(schedule, tcfg.warmup) if tcfg.warmup else schedule


def optimizer_of(model, tcfg):
    """The Adam that TrainConfig describes, over the model's parameters."""
    return Adam(model.params, weight_decay=tcfg.weight_decay,
                weight_decay_form=tcfg.weight_decay_form)


def kl_scale_of(tcfg):
    """The factor on the KL weights of each epoch: epoch (from 0) -> (e + 1) / (kl_warmup + 1)
    for the first kl_warmup epochs, then 1; a KL warm-up lets the code carry the image before
    the prior pulls it in."""
    return linear_warmup(lambda epoch: 1.0, tcfg.kl_warmup)


def random_shift(images, max_shift, rng):
    """Label-free augmentation: images (B, H, W) -> (B, H, W), each image moved by its own
    whole-pixel offset (dy, dx), both drawn uniformly from -max_shift..max_shift; pixels moved
    in from outside the frame are 0 and ink moved out of it is lost.

        out[b, i, j] = images[b, i - dy[b], j - dx[b]]   (0 where that is off the image)
    """
    B, H, W = images.shape
    s = max_shift
    padded = np.pad(images, ((0, 0), (s, s), (s, s)))            # (B, H + 2s, W + 2s) zero frame
    dy, dx = rng.integers(-s, s + 1, size=(2, B))                 # (B,) each
    rows = (s - dy)[:, None] + np.arange(H)                       # (B, H) padded row of out row i
    cols = (s - dx)[:, None] + np.arange(W)                       # (B, W)
    return padded[np.arange(B)[:, None, None], rows[:, :, None], cols[:, None, :]]


# The signals that stop a run cleanly (SIGHUP does not exist on Windows).
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP")
                     if hasattr(signal, name))


class TrainingDiverged(RuntimeError):
    """The loss became NaN or inf."""


class ResumeMismatch(ValueError):
    """A resumed run asked for a setting other than the stored one: field, stored, given."""

    def __init__(self, field, stored, given):
        super().__init__(f"{field}: stored {stored!r}, given {given!r}")
        self.field, self.stored, self.given = field, stored, given


def train_step(model, optimizer, x, labels, eps, lr, kl_scale=1.0):
    """One step of training on a batch: x (B, D), labels (B,) or None, eps (B, K + S) or None
    (the autoencoder draws no noise), kl_scale the KL weights' factor (below 1 only during a
    VAE's KL warm-up) -> losses."""
    losses, cache = model.forward(x, eps, kl_scale)   # the loss, what the backward pass needs
    grads = model.backward(cache, labels)        # dL/dparams; labels route dL/dz (model.py)
    optimizer.step(model.params, grads, lr)      # Adam, in place
    return losses


# The two models: a config says which it is (its `kind`), and a checkpoint stores that.
MODELS = {"vae": (VAE, VAEConfig), "autoencoder": (Autoencoder, AutoencoderConfig)}


def build_model(config, rng=None, params=None, routing=None):
    """The model a config describes: a VAE (model.py) or the paper's autoencoder."""
    return MODELS[config.kind][0](config, params=params, rng=rng, routing=routing)


def model_config_of(meta):
    """The model config stored with a run (a checkpoint before autoencoders holds a VAE's)."""
    stored = dict(meta["model"])
    kind = stored.pop("kind", "vae")
    if kind not in MODELS:
        raise ValueError(f"unknown model kind {kind!r}")
    return MODELS[kind][1](**stored)


def input_rows(model, images):
    """uint8 images (N, 28, 28) -> (N, 784) in the model's dtype and pixel range: [0, 1] for the
    VAE (its Bernoulli loss), [-1, 1] for the autoencoder (the paper's)."""
    return model_pixels(model, to_rows(images))


def model_pixels(model, x):
    """x (N, D) floats in [0, 1] (rows of images, or a drawing) -> the same pixels in the model's
    dtype and range, as input_rows."""
    x = np.asarray(x).astype(model.config.dtype, copy=False)
    return 2 * x - 1 if model.kind == "autoencoder" else x


def evaluate_certificates(model, images, labels, batch_size=1000):
    """The autoencoder's scores: MAE (pixels in [-1, 1]) of the main decoder and of each
    certificate, per digit and per routing group; and each certificate's MSE as the paper's
    Table 2 has it (per-digit means, averaged with equal weight over a group's digits: the
    official code squares the error). Labels are used only to group the scores.

    Returns {"mae": main decoder over all images, "per_digit": {"decoder", "first", "second":
    (10,) lists}, "certificates": {"first": {"0-4": ..., "5-9": ...}, "second": {...}},
    "ratios": {"first": MAE on the other group / on its own, "second": ...},
    "certificates_mse": like "certificates", "mse_ratios": like "ratios"}.
    """
    routing = model.routing
    names = ["first", "second"]
    decoders = ["decoder"] + names
    sums = {d: np.zeros(routing.labels) for d in decoders}             # absolute errors
    squares = {d: np.zeros(routing.labels) for d in names}             # squared errors
    for i in range(0, len(images), batch_size):
        x = input_rows(model, images[i:i + batch_size])               # (n, D) in [-1, 1]
        y = labels[i:i + batch_size]
        z = model.encode(x)
        for d, cert in zip(decoders, (None, 0, 1)):
            diff = model.decode(z, certificate=cert) - x
            err = np.abs(diff).mean(axis=1, dtype=np.float64)
            sums[d] += np.bincount(y, weights=err, minlength=routing.labels)
            if cert is not None:
                sq = np.square(diff).mean(axis=1, dtype=np.float64)
                squares[d] += np.bincount(y, weights=sq, minlength=routing.labels)
    counts = np.maximum(np.bincount(labels, minlength=routing.labels), 1)

    def over(d, group):
        digits = routing.labels_of(group)
        return float(sums[d][digits].sum() / counts[digits].sum())

    def over_digits(d, group):
        digits = routing.labels_of(group)
        return float(np.mean(squares[d][digits] / counts[digits]))

    def other_over_own(table):
        own = {n: table[n][routing.group_names[g]] for g, n in enumerate(names)}
        other = {n: table[n][routing.group_names[1 - g]] for g, n in enumerate(names)}
        return {n: other[n] / own[n] for n in names}
    table = {n: {routing.group_names[g]: over(n, g) for g in range(2)} for n in names}
    mse = {n: {routing.group_names[g]: over_digits(n, g) for g in range(2)} for n in names}
    return {"mae": float(sums["decoder"].sum() / counts.sum()),
            "per_digit": {d: [float(v) for v in sums[d] / counts] for d in decoders},
            "certificates": table, "ratios": other_over_own(table),
            "certificates_mse": mse, "mse_ratios": other_over_own(mse)}


def evaluate(model, images, labels, batch_size=1000):
    """Read-out accuracy, per class and as a confusion table, and reconstruction MSE per pixel.

    images (N, 28, 28) uint8, labels (N,). The model's answer for an image is the routing group
    with the largest mean of mu (`Routing.read_group`; style dims never vote); it is right when
    that is the group of the image's label (with one group per digit: the digit itself). The
    reconstruction decodes the noiseless code (relu on the digit part of mu, style part as is),
    exactly what the demo shows.
    """
    routing = model.routing
    answers, sq_err = [], 0.0
    for i in range(0, len(images), batch_size):
        x = to_rows(images[i:i + batch_size])
        mu = model.encode(x)                                        # (n, K + S)
        answers.append(routing.read_group(mu))                      # (n,) a group each
        sq_err += float(((model.decode(model.code_of_mean(mu)) - x) ** 2).sum(dtype=np.float64))
    answers = np.concatenate(answers)
    labels = routing.check_labels(np.asarray(labels, dtype=np.intp), where="evaluate")
    right = answers == routing.label_group[labels]
    L, G = routing.labels, len(routing.groups)
    confusion = np.zeros((L, G), dtype=np.int64)          # rows: true label; columns: group read
    np.add.at(confusion, (labels, answers), 1)
    per_class = np.bincount(labels[right], minlength=L) / np.maximum(np.bincount(labels, minlength=L), 1)
    return {"acc": float(right.mean()),
            "per_class_acc": [round(float(a), 4) for a in per_class],
            "mse": sq_err / (len(images) * images[0].size),
            "confusion": confusion.tolist(), "groups": routing.group_names}


class Trainer:
    """Holds a model, its optimiser, the data and the training position; runs them.

    save(trainer) is called at the end of every epoch and when a stop signal ends the run;
    `state()` gives what it should store and `load_state` takes it back.
    """

    def __init__(self, model_config, train_config, train_images, train_labels, val_images,
                 val_labels, routing=None, save=None, log=print):
        if model_config.kind == "autoencoder" and train_config.kl_warmup:
            raise ValueError("Trainer: kl_warmup is a VAE's; the autoencoder has no KL term")
        self.mcfg, self.tcfg = model_config, train_config
        self.routing = routing if routing is not None else default_routing(model_config)
        self.rng = np.random.default_rng(train_config.seed)
        self.model = build_model(model_config, rng=self.rng, routing=self.routing)
        self.opt = optimizer_of(self.model, train_config)
        self.schedule = schedule_of(train_config)
        self.kl_scale = kl_scale_of(train_config)
        self.train_images, self.train_labels = train_images, train_labels
        self.val_images, self.val_labels = val_images, val_labels
        self.save = (lambda trainer: None) if save is None else save
        self.log = log
        self.epoch, self.step, self.perm = 0, 0, None    # position: next step of this epoch
        self.totals = new_totals(self.model)              # this epoch's losses so far
        self.history = []
        self.stop_signal = None                           # set by SIGINT, SIGTERM or SIGHUP

    # ------------------------------------------------------------------ the saved position
    def state(self):
        """-> params, meta (JSON-able), Adam's state, arrays: everything a resume needs."""
        meta = {"model": self.mcfg.to_dict(), "routing": self.routing.to_dict(),
                "train": asdict(self.tcfg), "epoch": self.epoch, "step": self.step,
                "totals": self.totals, "history": self.history,
                "rng": self.rng.bit_generator.state}
        arrays = {"perm": self.perm if self.perm is not None else np.zeros(0, np.int64)}
        return self.model.params, meta, self.opt.state_dict(), arrays

    def load_state(self, params, meta, adam_state, arrays):
        """Continue from what `state()` gave. Raises ResumeMismatch if a setting differs
        (the epochs may grow), ValueError if meta holds no training position."""
        missing = {"model", "rng", "epoch", "step", "history"} - set(meta)
        if missing or "perm" not in arrays:
            raise ValueError(f"it holds a model but not a training position (missing "
                             f"{sorted(missing) or ['perm']})")
        stored_routing = routing_of(meta)
        if stored_routing.name != self.routing.name:
            raise ResumeMismatch("routing", stored_routing.name, self.routing.name)
        stored_config = model_config_of(meta)                 # fields an older run lacks: defaults
        if stored_config.kind != self.mcfg.kind:
            raise ResumeMismatch("model.kind", stored_config.kind, self.mcfg.kind)
        stored_model = stored_config.to_dict()
        for field, value in self.mcfg.to_dict().items():
            if stored_model[field] != value:
                raise ResumeMismatch(f"model.{field}", stored_model[field], value)
        if stored_routing != self.routing:                    # same name, other groups
            raise ResumeMismatch("routing", stored_routing.to_dict(), self.routing.to_dict())
        stored_train = train_config_of(meta)
        for field, value in asdict(self.tcfg).items():
            stored = getattr(stored_train, field)
            if field == "epochs" and value >= meta["epoch"]:
                continue                                      # extending (or ending) a run
            if stored != value:
                raise ResumeMismatch(f"train.{field}", stored, value)
        self.model = build_model(self.mcfg, params=params, routing=self.routing)
        self.opt = optimizer_of(self.model, self.tcfg)
        self.opt.load_state_dict(adam_state)
        self.rng.bit_generator.state = meta["rng"]
        self.epoch, self.step = meta["epoch"], meta["step"]
        totals = meta.get("totals", meta.get("sums"))         # "sums": [loss, recon, kl, images]
        self.totals = dict(zip(new_totals(self.model), totals)) if isinstance(totals, list) \
            else totals
        self.history = meta["history"]
        self.perm = arrays["perm"] if arrays["perm"].size else None

    # ------------------------------------------------------------------ the loop
    def run(self):
        """Train until tcfg.epochs are done or a stop signal; returns True if all were done.

        Ctrl-C (SIGINT), SIGTERM (a job scheduler, `timeout`, `kill`) and SIGHUP (a closed
        terminal) all stop the same way: the current step finishes, the position is saved, and
        `stop_signal` says which one came.
        """
        previous = {s: signal.signal(s, self._request_stop) for s in STOP_SIGNALS}
        try:
            while self.epoch < self.tcfg.epochs:
                if not self._run_epoch():
                    self.save(self)
                    return False
            return True
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

    def _request_stop(self, signum, frame):
        self.stop_signal = signum     # finish the current step, save, stop: nothing half-done

    def _run_epoch(self):
        tcfg, C = self.tcfg, self.model.noise_dim           # C = K + S; 0: no noise
        n = len(self.train_images)
        steps = math.ceil(n / tcfg.batch_size)
        if self.perm is None:                               # a new epoch: a new shuffle
            self.perm = self.rng.permutation(n)
        lr, kl_scale = self.schedule(self.epoch), self.kl_scale(self.epoch)
        t0, start_step = time.perf_counter(), self.step
        show_progress = sys.stdout.isatty()
        while self.step < steps:
            idx = self.perm[self.step * tcfg.batch_size:(self.step + 1) * tcfg.batch_size]
            images = self.train_images[idx]                                 # (B, 28, 28)
            if tcfg.shift:                            # augmentation: training batches only
                images = random_shift(images, tcfg.shift, self.rng)
            x = input_rows(self.model, images)                               # (B, 784)
            labels = self.train_labels[idx].astype(np.intp) if tcfg.routed else None
            eps = None
            if C:
                eps = self.rng.standard_normal((len(idx), C), dtype=np.float32)  # (B, K + S)
                eps = eps.astype(x.dtype, copy=False)
            losses = train_step(self.model, self.opt, x, labels, eps, lr, kl_scale)
            if not math.isfinite(losses["loss"]):
                raise TrainingDiverged(f"loss became {losses['loss']} at epoch {self.epoch + 1}, "
                                       f"step {self.step + 1}")
            for key in self.model.logged_losses:
                self.totals[key] += float(losses[key]) * len(idx)
            self.totals["images"] += len(idx)
            self.step += 1
            if show_progress and (self.step % 20 == 0 or self.step in (start_step + 1, steps)):
                done = self.step - start_step
                rate = done / max(time.perf_counter() - t0, 1e-9)
                print(f"\r  epoch {self.epoch + 1}: {self.step}/{steps} batches | "
                      f"{rate:.0f} batch/s | ETA {(steps - self.step) / rate:.0f} s   ",
                      end="", flush=True)
            if self.stop_signal is not None:
                if show_progress:
                    print()
                return False
        if show_progress:
            print("\r" + " " * 70 + "\r", end="", flush=True)

        means = {k: self.totals[k] / self.totals["images"] for k in self.model.logged_losses}
        entry = {"epoch": self.epoch + 1, **means, "lr": lr}
        if self.model.kind == "autoencoder":
            entry.update(self._validate_autoencoder(means, t0))
        else:
            entry.update(self._validate_vae(means, t0))
        self.history.append(entry)
        self.epoch, self.step, self.perm = self.epoch + 1, 0, None
        self.totals = new_totals(self.model)
        self.save(self)
        return True


    def _validate_vae(self, means, t0):
        """Score the validation split, log the epoch's line; -> the history entry's val fields."""
        val = evaluate(self.model, self.val_images, self.val_labels) if len(self.val_images) else None
        fields = {"val_acc": val["acc"] if val else None, "val_mse": val["mse"] if val else None,
                  "seconds": time.perf_counter() - t0}
        val_text = f"val acc {100 * fields['val_acc']:.2f}%" if val else "val acc  n/a"
        self.log(f"epoch {self.epoch + 1:2d} | loss {means['loss']:8.3f} | recon "
                 f"{means['recon']:8.3f} | kl {means['kl']:6.3f} | {val_text} | "
                 f"{fields['seconds']:.1f} s")
        return fields

    def _validate_autoencoder(self, m, t0):
        """The same for the autoencoder: the main MAE and each certificate's other / own ratio."""
        val = (evaluate_certificates(self.model, self.val_images, self.val_labels)
               if len(self.val_images) else None)
        fields = {"val_mae": val["mae"] if val else None,
                  "val_ratios": val["ratios"] if val else None,
                  "seconds": time.perf_counter() - t0}
        val_text = (f"val mae {val['mae']:.4f} | certificates other/own "
                    f"{val['ratios']['first']:.2f}x {val['ratios']['second']:.2f}x"
                    if val else "val n/a")
        self.log(f"epoch {self.epoch + 1:2d} | loss {m['loss']:.4f} | mae {m['recon']:.4f} | "
                 f"cert {m['cert']:.4f} | l1 {m['l1']:.4f} | corr {m['corr']:.4f} | {val_text} | "
                 f"{fields['seconds']:.1f} s")
        return fields


def new_totals(model=None):
    """The running sums of an epoch: each logged loss times images, and the images seen.
    (No model: the VAE's, loss, recon and kl.)"""
    keys = model.logged_losses if model is not None else VAE.logged_losses
    return {**{k: 0.0 for k in keys}, "images": 0}


def default_routing(config):
    """The routing a model config implies when none is given: one dim per digit for a VAE (its
    style dims free), the halves of the code for the autoencoder."""
    if config.kind == "autoencoder":
        return halves(half=config.code // 2)
    return one_per_digit(style=config.style, digits=config.latent)


def routing_of(meta):
    """The routing stored with a model; checkpoints from before routings were stored hold one
    dim per digit (and their style dims free)."""
    if "routing" in meta:
        return Routing.from_dict(meta["routing"])
    model = meta.get("model", {})
    if model.get("latent", 10) != 10:
        raise ValueError(f"it was written before routings were stored, with {model['latent']} "
                         f"latent dims, which name no digit; train it again")
    return one_per_digit(style=model.get("style", 0))


def train_config_of(meta):
    """The TrainConfig stored with a run (older runs called `routed` `routing`). A field added
    after a run was saved takes its default: a run without weight_decay_form decayed decoupled,
    the only form there was."""
    stored = dict(meta.get("train", {}))
    if "routing" in stored:
        stored["routed"] = stored.pop("routing")
    return TrainConfig(**stored)


def warm_up(dtype="float32"):
    """Compile (or load from the on-disk cache) every kernel a training run uses, on a toy model.

    One forward, backward and Adam step of a VAE with 3 and 2 hidden units: the kernels are
    compiled per array type, not per size, so this is all the compiling a run needs. It touches
    no real parameter and draws from no run's random generator.
    """
    cfg = VAEConfig(input_dim=5, enc_hidden=(3, 2), dec_hidden=(2, 3), latent=2, dtype=dtype)
    model = VAE(cfg, rng=np.random.default_rng(0))
    x = np.full((2, 5), 0.5, dtype=dtype)
    train_step(model, Adam(model.params), x, np.array([0, 1]), np.zeros((2, 2), dtype), 1e-3)
    model.decode(model.code(x))
