"""The demo as one web page: the weights, some test digits and the forward pass in plain JavaScript.

`python demo.py --html FILE` calls `write_page`. The page needs no library, server or network:
open the file from disk, or put it on any static host. Its script (demo_page.html, beside this
file) runs the same forward pass as `VAE.encode` and `VAE.decode`: a few matrix products, the
ReLU or ELU, the style input, a sigmoid.

It shows the VAE and the paper's autoencoder (`--preset halves`): for the autoencoder the page
also draws what each certificate decoder makes of its half of the code.

The weight matrices are stored as 8-bit integers with one float32 scale per output column,
W[i, j] ~ q[i, j] * scale[j] with q = round(W / scale) and scale[j] = max_i |W[i, j]| / 127;
biases stay float32. That is a quarter of float32's size, and on the default and style models it
moves the test read-out by at most 0.04 points and the MSE by 1e-5 (`page_model` builds the VAE
the page computes, so these can be measured). Everything is base64 inside one JSON block.

Glossary: D pixels (784), C code dims, L labels (10), N embedded test images.
"""

import base64
import json
from pathlib import Path

import numpy as np

from ..checkpoint import build_model
from ..files import write_atomically

TEMPLATE = Path(__file__).with_name("demo_page.html")
DATA_MARK = "/*MODEL-DATA*/"
IMAGES = 300                  # test digits embedded in the page, 30 of each digit


def quantize(W):
    """W (D_in, D_out) -> q int8 (D_in, D_out), scale float32 (D_out,): W ~ q * scale."""
    scale = (np.abs(W).max(axis=0) / 127).astype(np.float32)
    scale = np.where(scale > 0, scale, np.float32(1))                  # an all-zero column
    q = np.clip(np.round(W / scale), -127, 127).astype(np.int8)
    return q, scale


def page_params(params):
    """params -> the page's parameters: every weight matrix as q * scale (float32), biases as
    they are. The VAE built on these (`page_model`) computes what the page computes."""
    out = {}
    for name, p in params.items():
        if p.ndim == 2:
            q, scale = quantize(p)
            out[name] = (q.astype(np.float32) * scale).astype(p.dtype)
        else:
            out[name] = p.copy()
    return out


def page_model(model):
    """The model (VAE or autoencoder) with the page's (quantized) weights."""
    return build_model(model.config, routing=model.routing, params=page_params(model.params))


def code_of(model, x):
    """x (N, D) as the model reads it -> the code its decoder reads: the VAE's noiseless code
    (ReLU on the routed part of mu), the autoencoder's code itself."""
    return model.code(x)


def drawing(model, z):
    """z (N, C) -> the decoder's picture (N, D) in [0, 1]: the autoencoder draws in [-1, 1]."""
    return model.draw(z)


def _b64(array):
    return base64.b64encode(np.ascontiguousarray(array).tobytes()).decode("ascii")


def pick_images(images, labels, per_label, seed=0):
    """-> indices of `per_label` test images of each label, chosen at random with a seed."""
    rng = np.random.default_rng(seed)
    return np.sort(np.concatenate([rng.choice(np.flatnonzero(labels == k), per_label,
                                              replace=False)
                                   for k in np.unique(labels)]))


def page_data(model, images, labels, lo, hi, prototypes, names):
    """Everything the page's script reads, as a JSON-able dict.

    images uint8 (N, 28, 28) and labels (N,): the test digits to embed. lo, hi (C,): slider
    ranges; prototypes (L, C): the typical code of each label; names (C,): a slider label each
    (demo_app.code_stats and slider_names give these, as for the window).
    """
    cfg, routing = model.config, model.routing
    if model.kind == "vae":
        config = {"input_dim": cfg.input_dim, "enc_hidden": list(cfg.enc_hidden),
                  "dec_hidden": list(cfg.dec_hidden), "enc_act": cfg.enc_act,
                  "dec_act": cfg.dec_act, "dec_hidden_bias": cfg.dec_hidden_bias,
                  "relu_z": cfg.relu_z, "latent": cfg.latent, "style": cfg.style,
                  "style_input": cfg.style_input}
    else:                                      # the autoencoder: ReLU everywhere, linear out
        config = {"input_dim": cfg.input_dim, "enc_hidden": list(cfg.enc_hidden),
                  "dec_hidden": list(cfg.dec_hidden), "enc_act": "relu", "dec_act": "relu",
                  "dec_hidden_bias": True, "relu_z": False, "latent": routing.routed_dims,
                  "style": 0, "style_input": "outer"}
    weights = {}
    for name, p in model.params.items():
        if p.ndim == 2:
            q, scale = quantize(p)
            weights[name] = {"shape": list(p.shape), "q": _b64(q), "scale": _b64(scale)}
        else:
            weights[name] = {"shape": list(p.shape), "f32": _b64(p.astype(np.float32))}
    return {
        "kind": model.kind, "config": config,
        "routing": {"name": routing.name, "groups": [g.tolist() for g in routing.groups],
                    "group_names": routing.group_names,
                    "label_group": routing.label_group.tolist(), "code_dim": routing.code_dim},
        "weights": weights,
        "lo": np.round(lo, 4).tolist(), "hi": np.round(hi, 4).tolist(),
        "prototypes": np.round(prototypes, 4).tolist(), "names": list(names),
        "images": _b64(images.astype(np.uint8)), "labels": np.asarray(labels).tolist(),
    }


def write_page(path, model, images, labels, lo, hi, prototypes, names):
    """Write the page to path, atomically -> its size in bytes."""
    data = json.dumps(page_data(model, images, labels, lo, hi, prototypes, names),
                      separators=(",", ":")).replace("</", "<\\/")      # never ends the script
    html = TEMPLATE.read_text(encoding="utf-8").replace(DATA_MARK, data)
    body = html.encode("utf-8")
    write_atomically(path, lambda f: f.write(body))
    return len(body)


def agreement(model, images, labels):
    """The page's weights against the checkpoint's on the embedded images -> (read-out %, MSE
    of the drawing, pixels in [0, 1]) of each: {"checkpoint": (acc, mse), "page": (acc, mse)}."""
    x = model.to_input(images)
    pixels = images.reshape(len(images), -1) / 255.0
    result = {}
    for name, m in (("checkpoint", model), ("page", page_model(model))):
        mu = m.encode(x)
        acc = float(np.mean(m.routing.read_group(m.readout_of(mu)) == m.routing.label_group[labels]))
        mse = float(((drawing(m, code_of(m, x)) - pixels) ** 2).mean())
        result[name] = (100 * acc, mse)
    return result
