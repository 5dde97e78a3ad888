"""Adam, written out: running averages of the gradient and its square, bias-corrected; with
optional decoupled weight decay (AdamW, Loshchilov & Hutter 2019).

The optimiser's state is three plain things (m, v, t) so a checkpoint can save and restore it
exactly. The learning rate is passed to every `step`, which is the schedule hook: the training
loop asks a schedule (`exponential_decay`, `cosine_decay`, either behind `linear_warmup`) for
the rate of the current epoch.
"""

import math

import numpy as np

from .backend import ops


class Adam:
    """Adam (Kingma & Ba, 2015) over a dict of parameter arrays, updated in place.

    weight_decay wd > 0 makes it AdamW: every step first shrinks each parameter by lr * wd of
    itself, apart from the gradient, so the decay is not rescaled by Adam's 1 / sqrt(v).
    """

    def __init__(self, params, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0):
        self.beta1, self.beta2, self.eps = beta1, beta2, eps
        self.weight_decay = weight_decay
        self.m = {k: np.zeros_like(p) for k, p in params.items()}   # mean of gradients
        self.v = {k: np.zeros_like(p) for k, p in params.items()}   # mean of squared gradients
        self.t = 0                                                  # steps taken

    def step(self, params, grads, lr):
        """One update of every parameter p with its gradient g:

            m = b1 m + (1 - b1) g                  running mean of the gradient
            v = b2 v + (1 - b2) g^2                running mean of its square
            p -= lr * m_hat / (sqrt(v_hat) + eps)  with m_hat = m / c1, v_hat = v / c2

        preceded, with weight decay wd, by the decoupled decay p -= lr * wd * p (AdamW).

        ops.adam_update does all three in place, in one pass over each parameter (NumPy would
        take about ten); numpy_ops.adam_update is these lines in NumPy.
        """
        self.t += 1
        b1, b2 = self.beta1, self.beta2
        # Bias corrections: m and v start at zero, so early averages are too small by these factors.
        c1, c2 = 1 - b1 ** self.t, 1 - b2 ** self.t
        for k, p in params.items():
            if self.weight_decay:
                p *= 1 - lr * self.weight_decay         # AdamW: decay apart from the gradient
            ops.adam_update(p, grads[k], self.m[k], self.v[k], lr, b1, b2, self.eps, c1, c2)

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
