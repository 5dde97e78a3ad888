"""Adam, written out: running averages of the gradient and its square, bias-corrected.

The optimiser's state is three plain things (m, v, t) so a checkpoint can save and restore it
exactly. The learning rate is passed to every `step`, which is the schedule hook: the training
loop asks a schedule such as `exponential_decay` for the rate of the current epoch.
"""

import numpy as np


class Adam:
    """Adam (Kingma & Ba, 2015) over a dict of parameter arrays, updated in place."""

    def __init__(self, params, beta1=0.9, beta2=0.999, eps=1e-8):
        self.beta1, self.beta2, self.eps = beta1, beta2, eps
        self.m = {k: np.zeros_like(p) for k, p in params.items()}   # mean of gradients
        self.v = {k: np.zeros_like(p) for k, p in params.items()}   # mean of squared gradients
        self.t = 0                                                  # steps taken

    def step(self, params, grads, lr):
        """One update of every parameter: p -= lr * m_hat / (sqrt(v_hat) + eps)."""
        self.t += 1
        b1, b2 = self.beta1, self.beta2
        # Bias corrections: m and v start at zero, so early averages are too small by these factors.
        c1, c2 = 1 - b1 ** self.t, 1 - b2 ** self.t
        for k, p in params.items():
            g = grads[k]
            m, v = self.m[k], self.v[k]
            m *= b1
            m += (1 - b1) * g                      # m = b1 m + (1 - b1) g
            v *= b2
            v += (1 - b2) * (g * g)                # v = b2 v + (1 - b2) g^2
            p -= (lr / c1) * m / (np.sqrt(v / c2) + self.eps)

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


def exponential_decay(lr0, gamma):
    """Schedule: epoch -> lr0 * gamma ** epoch (epochs counted from 0)."""
    return lambda epoch: lr0 * gamma ** epoch
