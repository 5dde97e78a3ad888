"""The models' loss pieces and the reparameterisation, each with its gradient written out.

Every VAE loss is a sum over an image's pixels (or latent dims), averaged over the N images of
the batch; the autoencoder's MAE is a mean over pixels too, as the Gradient Routing paper's is.
Each returns `(loss, gradient)` together. The reparameterisation is a forward/backward pair
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


# ------------------------------------------------------------------ the autoencoder's losses
def mae(y, x):
    """Mean absolute error over every pixel of every image (the paper's reconstruction loss).

    y (N, D) the reconstruction, x (N, D) the image -> loss (scalar), dy (N, D):

        loss  = mean |y - x|           over the N * D entries
        dy    = sign(y - x) / (N D)
    """
    diff = y - x
    return float(np.abs(diff).mean(dtype=np.float64)), np.sign(diff) / diff.size


def correlation_penalty(a, b, eps=1e-8):
    """Mean |correlation| between every column of a and every column of b, over the batch.

    a (N, P), b (N, Q) two halves of a code -> loss (scalar), da (N, P), db (N, Q).
    The penalty pushes the two halves to carry unrelated information. As in the paper's code,
    each column is standardised with its sample standard deviation (N - 1 in the variance) and
    the product divided by N, so a column against itself would score (N - 1) / N, not 1.

    Forward, for the columns z_j of z = [a, b] (N, P + Q):

        c_j = z_j - mean(z_j)                     centre
        s_j = sqrt(sum_n c_nj^2 / (N - 1)) + eps  spread (eps keeps u_j finite: 0 on a constant column)
        u_j = c_j / s_j                           standardise                     u (N, P + Q)
        R   = u_a.T @ u_b / N                     correlations                    R (P, Q)
        loss = sum |R| / (P Q)

    Backward, each line the derivative of the forward line beside it:

        dR   = sign(R) / (P Q)                    loss = sum |R| / (P Q)
        du_a = u_b @ dR.T / N,  du_b = u_a @ dR / N      R[p, q] = sum_n u_a[n, p] u_b[n, q] / N
        ds_j = -sum_n du_nj c_nj / s_j^2          u_j = c_j / s_j  (s_j is shared by the column)
        dc_j = du_j / s_j + ds_j c_j / ((N - 1) sigma_j)   with sigma_j = s_j - eps: both
                                                  paths into c_j, d sigma_j/dc_nj = c_nj / ((N-1) sigma_j)

    The eps does not reach that last derivative: on a constant column (sigma_j = 0, c_j = 0) it
    is 0 / 0, and the square root has no derivative at 0. There the spread path is taken as 0,
    its value on every other side of the kink along c_j = 0, so the gradient stays finite.
        dz_j = dc_j - mean(dc_j)                  c_j = z_j - mean(z_j)

    With eps = 0 the last three lines fold into one:
    dz_j = (du_j - mean(du_j) - u_j * sum_n(du_nj u_nj) / (N - 1)) / sigma_j : the gradient
    of a standardised column cannot move its mean or its scale. docs/halves.md writes it out.
    """
    N, P = a.shape
    z = np.concatenate([a, b], axis=1)                          # (N, P + Q)
    c = z - z.mean(axis=0)                                      # (N, P + Q)
    sigma = np.sqrt((c * c).sum(axis=0) / (N - 1))              # (P + Q,)
    s = sigma + eps
    u = c / s                                                   # (N, P + Q)
    u_a, u_b = u[:, :P], u[:, P:]
    R = u_a.T @ u_b / N                                         # (P, Q)
    loss = float(np.abs(R).mean())

    dR = np.sign(R) / R.size                                    # (P, Q)
    du = np.concatenate([u_b @ dR.T / N, u_a @ dR / N], axis=1)  # (N, P + Q)
    ds = -(du * c).sum(axis=0) / (s * s)                        # (P + Q,)
    dc_direct = du / s                                          # through u = c / s
    dsigma_dc = np.divide(c, (N - 1) * sigma, out=np.zeros_like(c), where=sigma > 0)
    dc_spread = ds * dsigma_dc                                  # through s = sigma(c) + eps
    dc = dc_direct + dc_spread                                  # two paths meet at c
    dz = dc - dc.mean(axis=0)                                   # (N, P + Q)
    return loss, dz[:, :P], dz[:, P:]


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
