"""The VAE's loss pieces and the reparameterisation, each with its gradient written out.

Every loss is a sum over an image's pixels (or latent dims), averaged over the N images of the
batch, and returns `(loss, gradient)` together. The reparameterisation is a forward/backward pair
like a layer; its noise `eps` is always passed in by the caller, so everything here can be
checked by finite differences. Shapes: N batch, D pixels (784), K latent dims.
"""

import numpy as np

from .backend import ops


# ------------------------------------------------------------------ reconstruction
# Both losses start from the decoder's logits a and the image x, per pixel, with s = sigmoid(a).
# ops computes the loss and its gradient together in one pass over the (N, D) logits; the NumPy
# twins in numpy_ops.py are these lines written out.
def bce_with_logits(logits, x):
    """Bernoulli cross-entropy between pixels x in [0, 1] and sigmoid(logits), summed over pixels.

    logits (N, D), x (N, D) -> loss (scalar, mean over images), dlogits (N, D).
    Working on logits rather than on sigmoid outputs keeps it finite where sigmoid saturates, and
    its gradient is the famously simple sigmoid(logits) - x:

        loss     = -[x log s + (1 - x) log(1 - s)] = max(a, 0) - a x + log(1 + e^-|a|)
        dloss/da = s - x                                   (each divided by N, the batch mean)
    """
    return ops.bce_with_logits(logits, x)


def sse_with_logits(logits, x):
    """Sum of squared errors between x and sigmoid(logits) (the reference recipe's loss).

    logits (N, D), x (N, D) -> loss (scalar, mean over images), dlogits (N, D):

        loss     = (s - x)^2
        dloss/da = 2 (s - x) * s (1 - s)                   (each divided by N, the batch mean)
    """
    return ops.sse_with_logits(logits, x)


RECONSTRUCTION_LOSSES = {"bce": bce_with_logits, "sse": sse_with_logits}


# ------------------------------------------------------------------ KL to N(0, I)
def kl_normal(mu, logvar):
    """KL( N(mu, exp(logvar)) || N(0, I) ), summed over the K dims, mean over images.

    mu (N, K), logvar (N, K) -> kl (scalar), dmu (N, K), dlogvar (N, K).
    Closed form per dim: 0.5 * (mu^2 + exp(logvar) - 1 - logvar).
    """
    N = mu.shape[0]
    var = np.exp(logvar)
    kl = 0.5 * (mu * mu + var - 1 - logvar).sum() / N
    dmu = mu / N
    dlogvar = 0.5 * (var - 1) / N
    return kl, dmu, dlogvar


# ------------------------------------------------------------------ L1 on the code
def l1_penalty(z):
    """sum |z| over the K dims, mean over images: a label-free push towards sparse codes.

    z (N, K) -> loss (scalar), dz (N, K). With ReLU on z, the dims an image does not use are
    pushed to exactly zero, so the decoder is not fed their noise.
    """
    N = z.shape[0]
    return np.abs(z).sum() / N, np.sign(z) / N


# ------------------------------------------------------------------ reparameterisation
def reparameterize_forward(mu, logvar, eps):
    """z = mu + std * eps with std = exp(logvar / 2)   (logvar is the log VARIANCE).

    mu, logvar, eps (N, K) -> z (N, K). Drawing eps outside keeps this deterministic.
    """
    std = np.exp(0.5 * logvar)
    z = mu + std * eps
    return z, (std, eps)


def reparameterize_backward(dz, cache):
    """dz (N, K) -> dmu (N, K), dlogvar (N, K).

    dz/dmu = 1;  dz/dlogvar = eps * d std/dlogvar = eps * 0.5 * std.
    """
    std, eps = cache
    dmu = dz.copy()
    dlogvar = dz * eps * 0.5 * std
    return dmu, dlogvar
