"""What both models are built from: a stack of hidden layers, its parameters, and the interface.

A stack is L hidden layers h = act(h @ W + b), named prefix0, prefix1, ...; each model adds its
own linear layers around its stacks (the VAE's mu and logvar heads and its output layer, the
autoencoder's code layer and its decoders' outputs). Parameters live in one plain dict of named
arrays owned by the model, and every layer's gradient comes back under the same name.

`Model` is what the VAE (model.py) and the paper's autoencoder (autoencoder.py) both are to the
training loop and the tools: the pixel range it reads, its loss and gradients, its code, its
drawings and its scores. Only checkpoint.MODELS, where a checkpoint's `kind` picks the class,
knows which one it holds.

Glossary: N batch, D pixels (784), H a hidden width, C code dims.
"""

from dataclasses import dataclass

import numpy as np

from .data import to_rows
from .layers import LINEAR_ACTIVATIONS


@dataclass(frozen=True)
class Stack:
    """Hidden layers h = act(h @ W + b) of the given widths (input side first), names prefix{i}."""
    prefix: str            # "enc", "dec", "cert0.dec"
    widths: tuple          # (d_in, H_1, ..., H_L): L layers
    act: str = "relu"      # a key of layers.LINEAR_ACTIVATIONS
    bias: bool = True

    def shapes(self):
        """Name -> shape of each layer's W (H_i, H_i+1) and b (H_i+1,), in forward order."""
        shapes, w = {}, self.widths
        for i in range(len(w) - 1):
            shapes[f"{self.prefix}{i}.W"] = (w[i], w[i + 1])
            if self.bias:
                shapes[f"{self.prefix}{i}.b"] = (w[i + 1],)
        return shapes

    def forward(self, params, h, cache):
        """h (N, H_0) -> (N, H_L); appends each layer's cache to the list `cache`."""
        hidden_forward, _ = LINEAR_ACTIVATIONS[self.act]
        for i in range(len(self.widths) - 1):
            h, layer = hidden_forward(h, params[f"{self.prefix}{i}.W"],
                                      params.get(f"{self.prefix}{i}.b"))
            cache.append(layer)
        return h

    def backward(self, dh, cache, grads, need_dx=True):
        """dL/dh (N, H_L) -> dL/dinput (N, H_0), or None if not need_dx (the input is the data,
        or is read as a constant); fills grads with each layer's dW and db."""
        _, hidden_backward = LINEAR_ACTIVATIONS[self.act]
        for i in reversed(range(len(self.widths) - 1)):
            dh, grads[f"{self.prefix}{i}.W"], db = hidden_backward(dh, cache[i],
                                                                   need_dx=need_dx or i > 0)
            if db is not None:
                grads[f"{self.prefix}{i}.b"] = db
        return dh


def init_params(shapes, rng, dtype):
    """Uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and biases, as PyTorch's Linear does,
    drawn in the order of `shapes` (so a seed fixes every parameter)."""
    params = {}
    for name, shape in shapes.items():
        fan_in = shapes[name[:-2] + ".W"][0]     # a bias shares its weight's fan-in
        bound = 1.0 / np.sqrt(fan_in)
        params[name] = rng.uniform(-bound, bound, size=shape).astype(dtype)
    return params


def check_params(params, shapes, dtype, who):
    """Refuse, in one line, parameters whose names, shapes or dtype differ from the config's."""
    if set(shapes) != set(params):
        raise ValueError(f"{who}: parameter names {sorted(params)} do not match the config's "
                         f"{sorted(shapes)}")
    for name, shape in shapes.items():
        if params[name].shape != shape or params[name].dtype != dtype:
            raise ValueError(f"{who}: parameter {name} is {params[name].dtype} "
                             f"{params[name].shape}, config expects {dtype} {shape}")


class Model:
    """The interface both models implement; the methods written here are the same for both.

    A subclass sets `kind` (its name in checkpoint.MODELS), `logged_losses` (the training log's
    columns), `noise_dim` (the width of the noise eps it draws per image: 0 for none),
    `certificates` (how many certificate decoders it has), `pixels` (the range of the pixels
    it reads and draws), `val_keys` (the scores a history entry keeps) and `test_keys` (how
    metrics.json names its scores); and writes `loss_and_grads`, `_encode`, `code_of`,
    `readout_of`, `_decode`, `score`, `report` and `log_line`.
    """

    pixels = (0.0, 1.0)
    certificates = 0
    test_keys = {}

    def __init__(self, config, routing, params, rng, shapes):
        self.config, self.routing = config, routing
        if params is None:
            params = init_params(shapes, rng if rng is not None else np.random.default_rng(0),
                                 config.dtype)
        check_params(params, shapes, config.dtype, type(self).__name__)
        self.params = params

    # ------------------------------------------------------------------ pixels
    def to_input(self, images):
        """uint8 images (N, 28, 28), or rows of floats in [0, 1] (N, D) -> (N, D) rows in the
        model's dtype and pixel range: [0, 1] for the VAE, [-1, 1] for the autoencoder."""
        x = np.asarray(images)
        x = to_rows(x) if x.dtype == np.uint8 else x
        x = x.astype(self.config.dtype, copy=False)
        lo, hi = self.pixels
        return x if (lo, hi) == (0.0, 1.0) else lo + (hi - lo) * x

    def to_image(self, y):
        """y (N, D) pixels in the model's range (a decoder's output) -> (N, D) in [0, 1]."""
        lo, hi = self.pixels
        y = np.asarray(y)
        return y if (lo, hi) == (0.0, 1.0) else np.clip((y - lo) / (hi - lo), 0.0, 1.0)

    # ------------------------------------------------------------------ the code
    def encode(self, x, batch_size=1000):
        """x (N, D) in the model's pixel range -> what the encoder gives (N, C), in batches."""
        x = self._check_x(x, "encode")
        return np.concatenate([self._encode(x[i:i + batch_size])
                               for i in range(0, len(x), batch_size)]
                              or [np.zeros((0, self.routing.code_dim), self.config.dtype)])

    def code(self, x, batch_size=1000):
        """x (N, D) -> (N, C): the noiseless code the decoder reads."""
        return self.code_of(self.encode(x, batch_size))

    def decode(self, z, batch_size=1000):
        """z (N, C) codes as the decoder reads them -> (N, D), pixels in the model's range."""
        z = np.asarray(z)
        C = self.routing.code_dim
        if z.ndim == 1:
            z = z[None, :]
        if z.ndim != 2 or z.shape[1] != C or not np.issubdtype(z.dtype, np.number):
            raise ValueError(f"decode: z must be numbers of shape (N, {C}), "
                             f"got {z.dtype} {z.shape}")
        z = z.astype(self.config.dtype)
        return np.concatenate([self._decode(z[i:i + batch_size])
                               for i in range(0, len(z), batch_size)])

    def draw(self, z):
        """z (N, C) -> the decoder's pictures (N, D), pixels in [0, 1]."""
        return self.to_image(self.decode(z))

    # ------------------------------------------------------------------ scores
    def val_fields(self, scores):
        """scores (or None: no validation split) -> the history entry's val_* fields."""
        return {f"val_{k}": (scores[k] if scores else None) for k in self.val_keys}

    def test_metrics(self, scores):
        """scores -> their names in metrics.json."""
        return {self.test_keys.get(k, k): v for k, v in scores.items()}

    # ------------------------------------------------------------------ input checks
    def _check_x(self, x, where):
        x = np.asarray(x)
        D = self.config.input_dim
        lo, hi = self.pixels
        if x.ndim != 2 or x.shape[1] != D or not np.issubdtype(x.dtype, np.floating):
            raise ValueError(f"{where}: x must be floats in [{lo:g}, {hi:g}] of shape (N, {D}) "
                             f"(flattened images), got {x.dtype} {x.shape}; convert uint8 "
                             f"images with model.to_input")
        if not np.isfinite(x).all():
            raise ValueError(f"{where}: x contains NaN or inf")
        return np.ascontiguousarray(x, dtype=self.config.dtype)

    def _check_eps(self, eps, N, where):
        C = self.noise_dim
        if eps is None:
            return np.zeros((N, C), dtype=self.config.dtype)
        eps = np.asarray(eps)
        if eps.shape != (N, C) or not np.issubdtype(eps.dtype, np.floating):
            raise ValueError(f"{where}: eps must be floats of shape ({N}, {C}), "
                             f"got {eps.dtype} {eps.shape}")
        return np.ascontiguousarray(eps, dtype=self.config.dtype)

    def check_inputs(self, x, labels, eps, where="loss_and_grads"):
        """The one validated path into a training step: x, labels (or None), eps -> checked."""
        x = self._check_x(x, where)
        eps = self._check_eps(eps, x.shape[0], where)
        if labels is not None:
            labels = self.routing.check_labels(labels, x.shape[0], where)
        return x, labels, eps
