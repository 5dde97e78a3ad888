"""Gradient routing: which latent dims may carry an image's reconstruction gradient to the encoder.

This is the one idea that separates this model from a plain VAE. In backprop, the decoder hands
back dL_recon/dz of shape (N, K), or (N, K + S) with S style dims. Before it flows on into the
encoder, `route_gradient` multiplies it by a mask whose row n says which latent dims image n may
train. With the one-hot mask below, the reconstruction error of a "3" can shape the encoder only
through dim 3, so dim 3 comes to mean "three". Only the reconstruction gradient is routed, and
only on the digit dims: the KL (and the optional L1) gradient of a "3" still reaches every dim,
and every image trains the style dims (see docs/style.md). The forward pass is untouched, and the
decoder still learns from all of z.
Change only `route_mask` to try another routing.
"""

import numpy as np


def check_labels(labels, K, N=None, where="route_mask"):
    """labels -> the same labels as an integer array (N,) in 0..K-1, or a one-line ValueError."""
    labels = np.asarray(labels)
    shape = f"({N},)" if N is not None else "(N,)"
    if labels.ndim != 1 or (N is not None and labels.shape[0] != N) \
            or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{where}: labels must be integers of shape {shape}, "
                         f"got {labels.dtype} {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= K):
        raise ValueError(f"{where}: labels must lie in 0..{K - 1} (one latent dim per class), "
                         f"got values from {labels.min()} to {labels.max()}")
    return labels


def route_mask(labels, K, style=0, dtype=np.float64):
    """One-hot over the K digit dims, ones over the S style dims.   labels (N,) -> mask (N, K + S).

    mask[n, k] = 1 if k == labels[n] else 0 for k < K; the S = `style` dims after them are not
    routed (every image trains them), so mask[n, K:] = 1. Other routings (several dims per class,
    a class routed to no dim) are a different mask here.
    """
    labels = check_labels(labels, K)
    mask = np.ones((labels.shape[0], K + style), dtype=dtype)
    mask[:, :K] = 0.0
    mask[np.arange(labels.shape[0]), labels] = 1.0
    return mask


def route_gradient(dz, labels, style=0):
    """dL_recon/dz (N, K + S), labels (N,) -> a new (N, K + S) array: dz * route_mask(labels).

    Of the K digit columns only column labels[n] of row n is kept; the S = `style` columns pass.
    The whole of gradient routing in backprop. `VAE.backward` calls it between the decoder's
    backward pass and the encoder's; the inspector calls it to show what it does.
    """
    return dz * route_mask(labels, dz.shape[1] - style, style, dtype=dz.dtype)
