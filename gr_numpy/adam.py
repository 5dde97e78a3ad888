"""Adam, written out: running averages of the gradient and its square, bias-corrected; with
optional weight decay, decoupled (AdamW, Loshchilov & Hutter 2019) or coupled (an L2 term in the
gradient, as PyTorch's `Adam(weight_decay=...)`).

The optimiser's state is three plain things (m, v, t) so a checkpoint can save and restore it
exactly. The learning rate is passed to every `step`, which is the schedule hook: the training
loop asks a schedule (`exponential_decay`, `cosine_decay`, either behind `linear_warmup`) for
the rate of the current epoch.
"""

import math

import numpy as np

from .backend import ops

WEIGHT_DECAY_FORMS = ("decoupled", "coupled")


class Adam:
    """Adam (Kingma & Ba, 2015) over a dict of parameter arrays, updated in place.

    weight_decay wd > 0 shrinks the parameters, in one of two forms (weight_decay_form):

    - "decoupled" (AdamW): every step first shrinks each parameter by lr * wd of itself, apart
      from the gradient, so the decay is not rescaled by Adam's 1 / sqrt(v): a fixed, tiny
      fraction per step (5e-8 of p at lr 1e-3, wd 5e-5).
    - "coupled" (L2, PyTorch's `Adam(weight_decay=wd)`): wd * p joins the gradient before the
      moments, g = g + wd * p, so Adam rescales it like the loss's gradient. Where the loss's
      gradient is small next to wd * p, the step is about lr * sign(p): the parameter moves
      towards 0 by up to lr a step, whatever wd (while wd * |p| is well above eps).
    """

    def __init__(self, params, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0,
                 weight_decay_form="decoupled"):
        if weight_decay_form not in WEIGHT_DECAY_FORMS:
            raise ValueError(f"Adam: weight_decay_form must be one of {WEIGHT_DECAY_FORMS}, got "
                             f"{weight_decay_form!r}")
        self.beta1, self.beta2, self.eps = beta1, beta2, eps
        self.weight_decay, self.weight_decay_form = weight_decay, weight_decay_form
        self.m = {k: np.zeros_like(p) for k, p in params.items()}   # mean of gradients
        self.v = {k: np.zeros_like(p) for k, p in params.items()}   # mean of squared gradients
        self.t = 0                                                  # steps taken

    def step(self, params, grads, lr):
        """One update of every parameter p with its gradient g:

            m = b1 m + (1 - b1) g                  running mean of the gradient
            v = b2 v + (1 - b2) g^2                running mean of its square
            p -= lr * m_hat / (sqrt(v_hat) + eps)  with m_hat = m / c1, v_hat = v / c2

        With weight decay wd: preceded by the decoupled decay p -= lr * wd * p (AdamW), or with
        g + wd * p for g in the first two lines (coupled: L2).

        ops.adam_update does all three in place, in one pass over each parameter (NumPy would
        take about ten); numpy_ops.adam_update is these lines in NumPy.
        """
        self.t += 1
        b1, b2 = self.beta1, self.beta2
        # Bias corrections: m and v start at zero, so early averages are too small by these factors.
        c1, c2 = 1 - b1 ** self.t, 1 - b2 ** self.t
        wd = self.weight_decay
        for k, p in params.items():
            g = grads[k]
            if wd and self.weight_decay_form == "decoupled":
                p *= 1 - lr * wd                        # AdamW: decay apart from the gradient
            elif wd:
                g = g + wd * p                          # L2: decay inside the gradient (a new
                                                        # array: the caller's g stays as it was)
            ops.adam_update(p, g, self.m[k], self.v[k], lr, b1, b2, self.eps, c1, c2)

    def state_dict(self):
        """Flat name -> array dict (for a checkpoint): 'm/<param>', 'v/<param>', 't'."""
        state = {f"m/{k}": a for k, a in self.m.items()}
        state.update({f"v/{k}": a for k, a in self.v.items()})
        state["t"] = np.array(self.t)
        return state

    def load_state_dict(self, state):
        for k in self.m:
            self.m[k][...] = state[f"m/{k}"]
            self.v[k][...] = state[f"v/{k}"]
        self.t = int(state["t"])


# Schedules: functions epoch -> learning rate, epochs counted from 0; the rate holds for a whole
# epoch.
def exponential_decay(lr0, gamma):
    """Schedule: epoch -> lr0 * gamma ** epoch."""
    return lambda epoch: lr0 * gamma ** epoch


def cosine_decay(lr0, epochs):
    """Schedule: half a cosine from lr0 at epoch 0 towards 0 after `epochs` epochs,

        lr(e) = lr0 * (1 + cos(pi * e / epochs)) / 2,

    so the last epoch (e = epochs - 1) still trains, at a small rate."""
    return lambda epoch: lr0 * (1 + math.cos(math.pi * epoch / epochs)) / 2


def linear_warmup(schedule, warmup):
    """Schedule: the first `warmup` epochs climb linearly to schedule(warmup), at
    (e + 1) / (warmup + 1) of it; from epoch `warmup` on, schedule(e) itself."""
    def lr(epoch):
        if epoch < warmup:
            return schedule(warmup) * (epoch + 1) / (warmup + 1)
        return schedule(epoch)
    return lr
