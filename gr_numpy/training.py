"""The training loop, evaluation, and the bookkeeping that lets a run stop and resume exactly.

One step: draw a batch and its noise eps, `model.loss_and_grads(x, labels, eps)` (labels only
when routing: they enter training nowhere else), one Adam step. Each epoch ends with a
validation accuracy and a checkpoint. All randomness comes from one seeded generator whose state
is saved in the checkpoint, so a resumed run continues to the same numbers as an unbroken one
(on the numba backend at any thread count; on the numpy backend at the same thread count, since
OpenBLAS splits its products by thread count). `train.py` is the command-line front end; this
module has no argparse.
"""

import json
import math
import signal
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .adam import Adam, exponential_decay
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .cli import CHECKPOINT_NAME
from .files import write_atomically
from .data import to_rows
from .model import VAE, VAEConfig


@dataclass
class TrainConfig:
    """How to train (the model's shape and loss live in VAEConfig)."""
    epochs: int = 25
    batch_size: int = 128
    lr: float = 1e-3
    lr_decay: float = 0.95        # lr of epoch e (from 0) is lr * lr_decay ** e
    seed: int = 0
    routing: bool = True
    val_size: int = 5000          # the last val_size of the 60k training images
    train_subset: int = 0         # train on only the first n training images (0: all of them)


# The signals that stop a run cleanly (SIGHUP does not exist on Windows).
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP")
                     if hasattr(signal, name))


class TrainingDiverged(RuntimeError):
    """The loss became NaN or inf."""


def evaluate(model, images, labels, batch_size=1000):
    """Argmax accuracy of the encoder mean, per class, and reconstruction MSE per pixel.

    images (N, 28, 28) uint8, labels (N,). The digit is the argmax of mu over the K digit dims
    (style dims never vote). The reconstruction decodes the noiseless code (relu on the digit
    part of mu, style part as is), exactly what the demo shows.
    """
    predicted, sq_err = [], 0.0
    K = model.config.latent
    for i in range(0, len(images), batch_size):
        x = to_rows(images[i:i + batch_size])
        mu = model.encode(x)                                        # (n, K + S)
        code = model.code_of_mean(mu)                               # = model.code(x)
        predicted.append(np.argmax(mu[:, :K], axis=1))              # = model.predict(x)
        sq_err += float(((model.decode(code) - x) ** 2).sum(dtype=np.float64))
    predicted = np.concatenate(predicted)
    labels = np.asarray(labels, dtype=np.intp)
    # rows: true digit 0..9; columns: latent dim with the largest mean (K of them)
    confusion = np.zeros((10, model.config.latent), dtype=np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    correct = np.bincount(labels[predicted == labels], minlength=10)
    per_class = correct / np.maximum(np.bincount(labels, minlength=10), 1)
    return {"acc": float((predicted == labels).mean()),
            "per_class_acc": [round(float(a), 4) for a in per_class],
            "mse": sq_err / (len(images) * images[0].size),
            "confusion": confusion.tolist()}


class Trainer:
    """Holds a model, its optimiser, the data and the training position; runs and saves them."""

    def __init__(self, model_config, train_config, train_images, train_labels, val_images,
                 val_labels, out_dir, log=print):
        self.mcfg, self.tcfg = model_config, train_config
        self.rng = np.random.default_rng(train_config.seed)
        self.model = VAE(model_config, rng=self.rng)
        self.opt = Adam(self.model.params)
        self.schedule = exponential_decay(train_config.lr, train_config.lr_decay)
        self.train_images, self.train_labels = train_images, train_labels
        self.val_images, self.val_labels = val_images, val_labels
        self.out_dir = Path(out_dir)
        self.log = log
        self.epoch, self.step, self.perm = 0, 0, None    # position: next step of this epoch
        self.sums = np.zeros(4)                           # running loss, recon, kl, images
        self.history = []
        self.stop_signal = None                           # set by SIGINT, SIGTERM or SIGHUP

    # ------------------------------------------------------------------ checkpoints
    @property
    def checkpoint_path(self):
        return self.out_dir / CHECKPOINT_NAME

    def save(self):
        meta = {"model": self.mcfg.to_dict(), "train": asdict(self.tcfg),
                "epoch": self.epoch, "step": self.step, "sums": self.sums.tolist(),
                "history": self.history, "rng": self.rng.bit_generator.state}
        self.out_dir.mkdir(parents=True, exist_ok=True)
        arrays = {"perm": self.perm if self.perm is not None else np.zeros(0, np.int64)}
        save_checkpoint(self.checkpoint_path, self.model.params, meta,
                        self.opt.state_dict(), arrays)

    def restore(self, path):
        """Continue from a checkpoint written by `save` (same model config required)."""
        params, meta, adam_state, arrays = load_checkpoint(path)
        missing = {"model", "rng", "epoch", "step", "sums", "history"} - set(meta)
        if missing or "perm" not in arrays:
            raise CheckpointError(f"{path} holds a model but not a training position (missing "
                                  f"{sorted(missing) or ['perm']}); it cannot be resumed — use a "
                                  f"new --out")
        try:
            stored = VAEConfig(**meta["model"]).to_dict()    # fields an older run lacks: defaults
        except TypeError as e:
            raise CheckpointError(f"{path}: its model does not match this gr-numpy ({e})") from None
        if stored != self.mcfg.to_dict():
            raise ValueError(f"{path} was trained with a different model ({meta['model']}); "
                             f"resume with the same flags, or use a new --out")
        self.model = VAE(self.mcfg, params=params)
        self.opt = Adam(self.model.params)
        self.opt.load_state_dict(adam_state)
        self.rng.bit_generator.state = meta["rng"]
        self.epoch, self.step = meta["epoch"], meta["step"]
        self.sums = np.array(meta["sums"])
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
                    self.save()
                    return False
            return True
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

    def _request_stop(self, signum, frame):
        self.stop_signal = signum     # finish the current step, save, stop: nothing half-done

    def _run_epoch(self):
        tcfg, C = self.tcfg, self.mcfg.code_dim                 # C = K + S
        n = len(self.train_images)
        steps = math.ceil(n / tcfg.batch_size)
        if self.perm is None:                               # a new epoch: a new shuffle
            self.perm = self.rng.permutation(n)
        lr = self.schedule(self.epoch)
        t0, start_step = time.perf_counter(), self.step
        show_progress = sys.stdout.isatty()
        while self.step < steps:
            idx = self.perm[self.step * tcfg.batch_size:(self.step + 1) * tcfg.batch_size]
            x = to_rows(self.train_images[idx])                              # (B, 784)
            labels = self.train_labels[idx].astype(np.intp) if tcfg.routing else None
            eps = self.rng.standard_normal((len(idx), C), dtype=np.float32)  # (B, K + S)
            losses, grads = self.model.loss_and_grads(x, labels=labels, eps=eps)
            if not math.isfinite(losses["loss"]):
                kept = (f"the last good checkpoint is kept at {self.checkpoint_path}"
                        if self.checkpoint_path.is_file() else "no checkpoint was written yet")
                raise TrainingDiverged(
                    f"loss became {losses['loss']} at epoch {self.epoch + 1}, step "
                    f"{self.step + 1}; {kept}; try a smaller --lr")
            self.opt.step(self.model.params, grads, lr)
            self.sums += [losses["loss"] * len(idx), losses["recon"] * len(idx),
                          losses["kl"] * len(idx), len(idx)]
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

        loss, recon, kl = self.sums[:3] / self.sums[3]
        val = evaluate(self.model, self.val_images, self.val_labels) if len(self.val_images) else None
        entry = {"epoch": self.epoch + 1, "loss": loss, "recon": recon, "kl": kl, "lr": lr,
                 "val_acc": val["acc"] if val else None, "val_mse": val["mse"] if val else None,
                 "seconds": time.perf_counter() - t0}
        self.history.append(entry)
        val_text = f"val acc {100 * entry['val_acc']:.2f}%" if val else "val acc  n/a"
        self.log(f"epoch {entry['epoch']:2d} | loss {loss:8.3f} | recon {recon:8.3f} | "
                 f"kl {kl:6.3f} | {val_text} | {entry['seconds']:.1f} s")
        self.epoch, self.step, self.perm = self.epoch + 1, 0, None
        self.sums = np.zeros(4)
        self.save()
        return True


def write_metrics(path, metrics):
    """Write a JSON file atomically (temporary name, then rename)."""
    text = (json.dumps(metrics, indent=2) + "\n").encode()
    write_atomically(path, lambda f: f.write(text))


def warm_up(dtype="float32"):
    """Compile (or load from the on-disk cache) every kernel a training run uses, on a toy model.

    One forward, backward and Adam step of a VAE with 3 and 2 hidden units: the kernels are
    compiled per array type, not per size, so this is all the compiling a run needs. It touches
    no real parameter and draws from no run's random generator.
    """
    cfg = VAEConfig(input_dim=5, enc_hidden=(3, 2), dec_hidden=(2, 3), latent=2, dtype=dtype)
    model = VAE(cfg, rng=np.random.default_rng(0))
    x = np.full((2, 5), 0.5, dtype=dtype)
    _, grads = model.loss_and_grads(x, labels=np.array([0, 1]), eps=np.zeros((2, 2), dtype))
    Adam(model.params).step(model.params, grads, 1e-3)
    model.decode(model.code(x))
