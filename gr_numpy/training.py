"""The training step and loop, and the position that lets a run stop and resume exactly.

The step (`train_step`): the model's loss and gradients (routed when labels are given), then one
Adam step. The loop (`Trainer`) draws a batch (moved by a random shift of a few pixels if asked:
`random_shift`, label-free, training batches only) and its noise eps, takes a step at the
epoch's learning rate (`schedule_of`) and KL factor (`kl_scale_of`: below 1 only during a KL
warm-up), and ends each epoch with the model's score on the validation split, its log line and
a call to `save`. Labels reach the model only when routing, and only through the routing mask
in the model's backward pass. All randomness comes from one seeded generator whose state is
part of the saved position, so a resumed run continues to the same numbers as an unbroken one
(on the numba backend at any thread count; on the numpy backend at the same thread count,
since OpenBLAS splits its products by thread count). Reading and writing files is the caller's:
`train.py` passes a `save` function and loads checkpoints (checkpoint.py).
"""

import math
import signal
import sys
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from .adam import WEIGHT_DECAY_FORMS, Adam, cosine_decay, exponential_decay, linear_warmup
from .checkpoint import build_model, model_config_of, routing_of
from .model import VAE, VAEConfig


LR_SCHEDULES = ("exponential", "cosine")


@dataclass
class TrainConfig:
    """How to train (the model's shape and loss live in its config). The defaults are the
    default recipe; `--epochs` is the one field a resumed run may change (it may grow). A field
    with a "help" in its metadata is a flag of train.py, as in VAEConfig."""
    epochs: int = field(default=25, metadata={
        "range": (1, 100_000), "help": "passes over the training set; may grow when resuming, "
                                       "to extend a run"})
    batch_size: int = field(default=128, metadata={
        "range": (1, 60_000), "help": "images per Adam step"})
    lr: float = field(default=1e-3, metadata={
        "range": (0, 1), "lo_open": True,
        "help": "Adam's learning rate: the schedule's rate at epoch 0 (a --warmup climbs to the "
                "schedule's rate at its end)"})
    lr_schedule: str = field(default="exponential", metadata={
        "choices": LR_SCHEDULES,
        "help": "learning rate of epoch e (from 0): exponential, lr * lr_decay^e; cosine, lr * "
                "(1 + cos(pi e / epochs)) / 2 (a cosine run extended with --resume follows the "
                "new length from there on)"})
    lr_decay: float = field(default=0.95, metadata={
        "range": (0, 1), "lo_open": True,
        "help": "the exponential schedule multiplies the learning rate by this after every "
                "epoch"})
    warmup: int = field(default=0, metadata={
        "range": (0, 1000), "help": "epochs of linear learning-rate warm-up before the "
                                    "schedule (0: none)"})
    kl_warmup: int = field(default=0, metadata={
        "range": (0, 1000), "help": "epochs over which both KL weights climb linearly to their "
                                    "values, at (e + 1) / (N + 1) of them in epoch e (0: none)"})
    shift: int = field(default=0, metadata={
        "range": (0, 13), "help": "augmentation: move each training image by a random -N..N "
                                  "pixels in x and y, a new draw every time it is seen; "
                                  "label-free, seeded, never applied to validation or test "
                                  "images (0: off)"})
    seed: int = field(default=0, metadata={
        "range": (0, 2**63 - 1), "group": "run",
        "help": "fixes the result (numba backend: at any --threads; numpy: at the same "
                "--threads)"})
    routed: bool = field(default=True, metadata={   # pass labels to the backward pass
        "flag": "--no-routing",
        "help": "ablation: train without routing, labels unused (the routing still says how "
                "the code is read)"})
    val_size: int = field(default=5000, metadata={
        "range": (0, 59_999), "group": "data",
        "help": "validation images held out from the end of the 60k training set"})
    train_subset: int = field(default=0, metadata={
        "range": (0, 60_000), "group": "data",
        "help": "train on only the first N training images (0: all); for quick tries"})
    weight_decay: float = field(default=0.0, metadata={
        "range": (0, 1), "help": "Adam's weight decay wd, in the form --weight-decay-form says"})
    weight_decay_form: str = field(default="decoupled", metadata={
        "choices": WEIGHT_DECAY_FORMS,
        "help": "how Adam applies the weight decay: decoupled, p -= lr * wd * p apart from the "
                "gradient (AdamW); coupled, wd * p added to the gradient before Adam's moments "
                "(L2, as the paper's torch.optim.Adam)"})

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


def train_step(model, optimizer, x, labels, eps, lr, **loss_options):
    """One step of training on a batch: x (B, D) in the model's pixel range, labels (B,) or
    None, eps (B, noise_dim) or None (the autoencoder draws no noise) -> losses.
    loss_options reach the model's loss: kl_scale, a VAE's KL warm-up factor."""
    losses, grads = model.loss_and_grads(x, labels, eps, **loss_options)  # labels route dL/dz
    optimizer.step(model.params, grads, lr)                               # Adam, in place
    return losses


class Trainer:
    """Holds a model, its optimiser, the data and the training position; runs them.

    save(trainer) is called at the end of every epoch and when a stop signal ends the run;
    `state()` gives what it should store and `load_state` takes it back.
    """

    def __init__(self, model_config, train_config, train_images, train_labels, val_images,
                 val_labels, routing=None, save=None, log=print):
        self.mcfg, self.tcfg = model_config, train_config
        self.rng = np.random.default_rng(train_config.seed)
        self.model = build_model(model_config, routing=routing, rng=self.rng)
        self.routing = self.model.routing
        if train_config.kl_warmup and "kl" not in self.model.logged_losses:
            raise ValueError(f"Trainer: kl_warmup is a VAE's: it warms up a KL term, and the "
                             f"{self.model.kind} has none")
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
        for name, value in self.mcfg.to_dict().items():
            if stored_model[name] != value:
                raise ResumeMismatch(f"model.{name}", stored_model[name], value)
        if stored_routing != self.routing:                    # same name, other groups
            raise ResumeMismatch("routing", stored_routing.to_dict(), self.routing.to_dict())
        stored_train = TrainConfig(**meta.get("train", {}))
        for name, value in asdict(self.tcfg).items():
            stored = getattr(stored_train, name)
            if name == "epochs" and value >= meta["epoch"]:
                continue                                      # extending (or ending) a run
            if stored != value:
                raise ResumeMismatch(f"train.{name}", stored, value)
        self.model = build_model(self.mcfg, routing=self.routing, params=params)
        self.opt = optimizer_of(self.model, self.tcfg)
        self.opt.load_state_dict(adam_state)
        self.rng.bit_generator.state = meta["rng"]
        self.epoch, self.step = meta["epoch"], meta["step"]
        self.totals = meta["totals"]
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
        options = {"kl_scale": self.kl_scale(self.epoch)} if tcfg.kl_warmup else {}
        n = len(self.train_images)
        steps = math.ceil(n / tcfg.batch_size)
        if self.perm is None:                               # a new epoch: a new shuffle
            self.perm = self.rng.permutation(n)
        lr = self.schedule(self.epoch)
        t0, start_step = time.perf_counter(), self.step
        show_progress = sys.stdout.isatty()
        while self.step < steps:
            idx = self.perm[self.step * tcfg.batch_size:(self.step + 1) * tcfg.batch_size]
            images = self.train_images[idx]                                 # (B, 28, 28)
            if tcfg.shift:                            # augmentation: training batches only
                images = random_shift(images, tcfg.shift, self.rng)
            x = self.model.to_input(images)                                  # (B, 784)
            labels = self.train_labels[idx].astype(np.intp) if tcfg.routed else None
            eps = None
            if C:
                eps = self.rng.standard_normal((len(idx), C), dtype=np.float32)  # (B, K + S)
                eps = eps.astype(x.dtype, copy=False)
            losses = train_step(self.model, self.opt, x, labels, eps, lr, **options)
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
        scores = self.model.score(self.val_images, self.val_labels) if len(self.val_images) \
            else None
        entry = {"epoch": self.epoch + 1, **means, "lr": lr, **self.model.val_fields(scores),
                 "seconds": time.perf_counter() - t0}
        self.log(self.model.log_line(entry))
        self.history.append(entry)
        self.epoch, self.step, self.perm = self.epoch + 1, 0, None
        self.totals = new_totals(self.model)
        self.save(self)
        return True


def new_totals(model=None):
    """The running sums of an epoch: each logged loss times images, and the images seen.
    (No model: the VAE's, loss, recon and kl.)"""
    keys = model.logged_losses if model is not None else VAE.logged_losses
    return {**{k: 0.0 for k in keys}, "images": 0}


def warm_up(dtype="float32", log=print):
    """Compile (or load from the on-disk cache) every kernel a training run uses, on a toy model.

    One step of a VAE with 3 and 2 hidden units: the kernels are compiled per array type, not
    per size, so this is all the compiling a run needs. It touches no real parameter and draws
    from no run's random generator. A first compile takes a while, and log says so.
    """
    from .backend.kernels import compiled_code_on_disk

    cold, t0 = not compiled_code_on_disk(), time.perf_counter()
    if cold:
        log("compile| compiling the kernels, once: about 20 s")
    cfg = VAEConfig(input_dim=5, enc_hidden=(3, 2), dec_hidden=(2, 3), latent=2, dtype=dtype)
    model = VAE(cfg, rng=np.random.default_rng(0))
    x = np.full((2, 5), 0.5, dtype=dtype)
    train_step(model, Adam(model.params), x, np.array([0, 1]), np.zeros((2, 2), dtype), 1e-3)
    model.decode(model.code(x))
    if cold:
        log(f"compile| done in {time.perf_counter() - t0:.1f} s; later runs load the compiled "
            f"code from disk")
