"""Gradient routing: which latent dims may carry an image's reconstruction gradient to the encoder.

This is the one idea that separates this model from a plain VAE. In backprop, the decoder hands
back dL/dz of shape (N, K). Before it flows on into the encoder, we multiply it by a mask whose
row n says which latent dims image n may train. With the one-hot mask below, a "3" can shape the
encoder only through dim 3, so dim 3 comes to mean "three". The forward pass is untouched, and the
decoder still learns from all of z. Change only `route_mask` to try another routing.
"""

import numpy as np


def route_mask(labels, K, dtype=np.float64):
    """One-hot rows: mask[n, k] = 1 if k == labels[n] else 0.   labels (N,) -> mask (N, K).

    Other routings (several dims per class, a class routed to no dim) are a different mask here.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"route_mask: labels must be 1-D (N,), got shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"route_mask: labels must be integers, got dtype {labels.dtype}")
    if labels.size and (labels.min() < 0 or labels.max() >= K):
        raise ValueError(f"route_mask: labels must lie in 0..{K - 1} (one latent dim per class), "
                         f"got values from {labels.min()} to {labels.max()}")
    mask = np.zeros((labels.shape[0], K), dtype=dtype)
    mask[np.arange(labels.shape[0]), labels] = 1.0
    return mask
