"""Reading and editing codes: a typical value per digit dim, and "same style, other digit".

A code is what the decoder reads, (N, K + S): the K digit dims (relu'd, one per digit when the
model was trained with routing), then the S style dims. The demo and the figures use these two
helpers, so a key press in the demo and a column of analogies.png make the same code.

Glossary: N codes, K digit dims (10), S style dims.
"""

import numpy as np


def typical_levels(codes, digits, K, fallback):
    """codes (N, K + S), digits (N,) ints, fallback (K,) -> (K,): a typical "on" value per dim.

    levels[k] is the median of dim k over the codes whose digit is k (with routing, dim k is
    the one that carries digit k); where that median is not above 0 (or no code is a k),
    fallback[k] is used instead.
    """
    codes, digits = np.asarray(codes), np.asarray(digits)
    levels = np.array(fallback, dtype=np.float64)
    for k in range(K):
        mine = codes[digits == k, k]
        if mine.size and np.median(mine) > 0:
            levels[k] = np.median(mine)
    return levels


def with_digit(codes, digit, levels, K):
    """codes (N, K + S), digit d, levels (K,) -> (N, K + S): the same style dims, and digit
    dims that are all 0 except dim d at levels[d]. A "3" redrawn as a d in its own hand."""
    codes = np.array(codes, dtype=np.float64, ndmin=2)                 # a copy, (N, K + S)
    codes[:, :K] = 0.0
    codes[:, digit] = levels[digit]
    return codes
