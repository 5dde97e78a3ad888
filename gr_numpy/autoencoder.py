"""The Gradient Routing paper's MNIST model: a deterministic autoencoder with certificate decoders.

    x (N, D) in [-1, 1] -> encoder MLP -> z (N, C), the code -> decoder MLP -> y (N, D), linear

Cloud et al. (2024, section 4.1) split a 32-dim code in halves and route the reconstruction
gradient of digits 0-4 into the first half, of 5-9 into the second (routing.halves). To see
what each half learned, a *certificate* decoder per half is trained to redraw every image from
that half alone, reading it as a constant: its gradient never reaches the encoder. If routing
localised the digits, the certificate of the 5-9 half cannot draw a 0-4 (Table 2 of the paper).

No sampling and no KL: the code is the encoder's last layer itself, without a bias, as in the
paper. The loss, with the paper's weights (VAE-free, so no labels except through the mask):

    L = recon_weight * MAE(y, x)                          the main decoder, routed
      + l1_weights[g] * sum_dims mean_n |z[:, half g]|    per half, unrouted
      + corr_weight * mean |corr(first half, second half)| unrouted (losses.correlation_penalty)
      + sum_g MAE(certificate_g(z[:, half g]), x)          the certificates: reach no encoder weight

`Autoencoder.backward` reads as the forward pass in reverse; its fenced GRADIENT ROUTING block is
the same line as the VAE's. Not here: the optimiser (adam.py, AdamW), the loop (training.py).

Glossary: N batch, D pixels (784), H a hidden width, C code dims (32), G groups (2 halves).
"""

from dataclasses import asdict, dataclass

import numpy as np

from .layers import linear_backward, linear_forward, linear_relu_backward, linear_relu_forward
from .losses import correlation_penalty, l1_penalty, mae
from .routing import halves


@dataclass
class AutoencoderConfig:
    """Everything that fixes the autoencoder's shape and loss. Stored inside every checkpoint.

    The defaults are the paper's weights (official code, `runs_for_paper_main.py`) on a smaller
    network; `--preset halves-paper` takes the paper's sizes too.
    """
    input_dim: int = 784              # D
    enc_hidden: tuple = (512, 256)    # encoder hidden widths, input side first (paper 2048, 512)
    dec_hidden: tuple = (256, 512)    # decoders' hidden widths, code side first (the mirror)
    code: int = 32                    # C: the code's width (the routing's dims)
    recon_weight: float = 2.0         # the paper sums the MAE of the 0-4 and of the 5-9 images,
                                      # each a mean over its own group: about 2 x the batch MAE
    l1_weights: tuple = (3e-3, 3e-3)  # L1 on each half: sum over dims of the batch-mean |z|
    corr_weight: float = 0.1          # the correlation penalty between the halves
    certificate_weight: float = 1.0   # each certificate's MAE (it trains only the certificate)
    dtype: str = "float32"

    kind = "autoencoder"              # not a field: how a checkpoint tells the models apart

    def __post_init__(self):
        self.enc_hidden = tuple(int(h) for h in self.enc_hidden)
        self.dec_hidden = tuple(int(h) for h in self.dec_hidden)
        self.l1_weights = tuple(float(w) for w in self.l1_weights)
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"AutoencoderConfig: dtype must be 'float32' or 'float64', "
                             f"got {self.dtype!r}")
        sizes = (self.input_dim, self.code) + self.enc_hidden + self.dec_hidden
        if not self.enc_hidden or not self.dec_hidden or any(s < 1 for s in sizes):
            raise ValueError(f"AutoencoderConfig: at least one hidden layer each side, every size "
                             f">= 1, got {sizes}")
        weights = (self.recon_weight, self.corr_weight, self.certificate_weight) + self.l1_weights
        if len(self.l1_weights) != 2 or any(not w >= 0 for w in weights):
            raise ValueError(f"AutoencoderConfig: two l1_weights, every weight >= 0, got "
                             f"{weights}")

    def to_dict(self):
        d = asdict(self)
        for name in ("enc_hidden", "dec_hidden", "l1_weights"):
            d[name] = list(d[name])
        d["kind"] = self.kind
        return d

    @classmethod
    def from_dict(cls, d):
        return cls(**{k: v for k, v in d.items() if k != "kind"})

    @property
    def code_dim(self):
        """C, the width of the code every decoder reads part or all of."""
        return self.code

    @property
    def decoder_input_dim(self):
        return self.code


def decoder_shapes(prefix, d_in, hidden, d_out):
    """Name -> shape of a decoder MLP d_in -> hidden... -> d_out, every layer with a bias."""
    shapes, sizes = {}, (d_in,) + tuple(hidden)
    for i in range(len(hidden)):
        shapes[f"{prefix}dec{i}.W"], shapes[f"{prefix}dec{i}.b"] = (sizes[i], sizes[i + 1]), \
            (sizes[i + 1],)
    shapes[f"{prefix}out.W"], shapes[f"{prefix}out.b"] = (sizes[-1], d_out), (d_out,)
    return shapes


def layer_shapes(cfg, routing):
    """Name -> shape of every parameter: encoder, code (no bias), decoder, certificate g."""
    shapes, sizes = {}, (cfg.input_dim,) + cfg.enc_hidden
    for i in range(len(cfg.enc_hidden)):
        shapes[f"enc{i}.W"], shapes[f"enc{i}.b"] = (sizes[i], sizes[i + 1]), (sizes[i + 1],)
    shapes["code.W"] = (sizes[-1], cfg.code)                      # bias-free, as in the paper
    shapes.update(decoder_shapes("", cfg.code, cfg.dec_hidden, cfg.input_dim))
    for g, dims in enumerate(routing.groups):
        shapes.update(decoder_shapes(f"cert{g}.", len(dims), cfg.dec_hidden, cfg.input_dim))
    return shapes


def init_params(cfg, routing, rng):
    """Uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and biases, as PyTorch's Linear does."""
    params, shapes = {}, layer_shapes(cfg, routing)
    for name, shape in shapes.items():
        bound = 1.0 / np.sqrt(shapes[name[:-2] + ".W"][0])        # a bias shares its weight's fan-in
        params[name] = rng.uniform(-bound, bound, size=shape).astype(cfg.dtype)
    return params


class Autoencoder:
    """The paper's split autoencoder; forward and backward passes are plain functions of a dict.

    routing: which code dims each label may train; two groups (the halves), no free dims. It
    routes only when labels are passed; the certificates read its groups' dims.
    """

    kind = "autoencoder"
    noise_dim = 0                        # draws no noise: train_step passes eps=None
    logged_losses = ("loss", "recon", "l1", "corr", "cert")

    def __init__(self, config=None, params=None, rng=None, routing=None):
        self.config = config if config is not None else AutoencoderConfig()
        self.routing = routing if routing is not None else halves(half=self.config.code // 2)
        self._check_routing()
        if params is None:
            params = init_params(self.config, self.routing,
                                 rng if rng is not None else np.random.default_rng(0))
        self.params = params
        self._check_params()

    # ------------------------------------------------------------------ forward
    def forward(self, x, eps=None, kl_scale=1.0):
        """x (N, D) in [-1, 1] -> losses dict, cache for `backward`. eps must be None (no noise)
        and kl_scale 1 (no KL): the VAE's arguments, so that one train_step serves both."""
        if eps is not None:
            raise ValueError("Autoencoder.forward: eps must be None, the autoencoder draws no noise")
        if kl_scale != 1:
            raise ValueError("Autoencoder.forward: kl_scale must be 1, the autoencoder has no KL")
        cfg, groups = self.config, self.routing.groups
        cache = {}
        z = self.encoder_forward(x, cache)                               # (N, C)
        y = self.decoder_forward(z, cache, "")                          # (N, D)
        recon, dy = mae(y, x)
        cache["dy"] = cfg.recon_weight * dy                             # dL/dy

        cert, cache["dy_cert"] = 0.0, []
        for g, dims in enumerate(groups):          # certificate g reads its half, a constant
            y_g = self.decoder_forward(z[:, dims], cache, f"cert{g}.")   # (N, D)
            cert_g, dy_g = mae(y_g, x)
            cert += cert_g
            cache["dy_cert"].append(cfg.certificate_weight * dy_g)

        dz_reg = np.zeros_like(z)                  # dL/dz of the unrouted penalties   (N, C)
        l1 = 0.0
        for weight, dims in zip(cfg.l1_weights, groups):
            l1_g, dz_l1 = l1_penalty(z[:, dims])    # sum over dims of the batch-mean |z|
            l1 += weight * l1_g
            dz_reg[:, dims] += weight * dz_l1
        corr, dz_first, dz_second = correlation_penalty(z[:, groups[0]], z[:, groups[1]])
        dz_reg[:, groups[0]] += cfg.corr_weight * dz_first
        dz_reg[:, groups[1]] += cfg.corr_weight * dz_second
        cache["dz_reg"] = dz_reg

        loss = (cfg.recon_weight * recon + l1 + cfg.corr_weight * corr
                + cfg.certificate_weight * cert)
        losses = {"loss": loss, "recon": recon, "l1": l1, "corr": corr, "cert": cert}
        return losses, cache

    def encoder_forward(self, x, cache):
        """x (N, D) -> z (N, C): ReLU hidden layers, then a linear, bias-free code layer."""
        p = self.params
        cache["enc"] = []
        h = x
        for i in range(len(self.config.enc_hidden)):
            h, layer = linear_relu_forward(h, p[f"enc{i}.W"], p[f"enc{i}.b"])   # relu(h @ W + b)
            cache["enc"].append(layer)
        z, cache["code"] = linear_forward(h, p["code.W"])                        # h @ W
        return z

    def decoder_forward(self, z, cache, prefix):
        """z (N, C) or a half (N, C / 2) -> y (N, D): the main decoder (prefix "") or
        certificate g (prefix "cert{g}."); ReLU hidden layers, a linear output."""
        p = self.params
        cache[prefix + "dec"] = []
        h = z
        for i in range(len(self.config.dec_hidden)):
            h, layer = linear_relu_forward(h, p[f"{prefix}dec{i}.W"], p[f"{prefix}dec{i}.b"])
            cache[prefix + "dec"].append(layer)
        y, cache[prefix + "out"] = linear_forward(h, p[f"{prefix}out.W"], p[f"{prefix}out.b"])
        return y

    # ------------------------------------------------------------------ backward
    def backward(self, cache, labels=None):
        """The forward pass in reverse. labels (N,) turns routing on; None is a plain autoencoder."""
        grads = {}
        dz = self.decoder_backward(cache["dy"], cache, "", grads)         # (N, C) dL_recon/dz
        for g in range(len(self.routing.groups)):  # the certificates: weight gradients only
            self.decoder_backward(cache["dy_cert"][g], cache, f"cert{g}.", grads, need_dx=False)

        # ---------------------------------------------------------------- GRADIENT ROUTING
        # The same line as in VAE.backward: keep, in row n of dL_recon/dz, only the columns
        # label n may train (for the halves: a 0-4 keeps dims 0-15, a 5-9 dims 16-31), as if
        # the other half were a constant in this image's reconstruction.
        if labels is not None:
            dz = dz * self.routing.mask(labels, dz.dtype)                 # (N, C)
        # ----------------------------------------------------------------------------------

        # The certificates read the code as a constant (PyTorch: z.detach()): routing with an
        # all-zero mask, every image, every dim. Their dL/dz would be multiplied by 0 here, so
        # decoder_backward above does not compute it (need_dx=False): nothing of it is added.

        dz = dz + cache["dz_reg"]                  # L1 and correlation: unrouted, like the KL
        self.encoder_backward(dz, cache, grads)
        return grads

    def decoder_backward(self, dy, cache, prefix, grads, need_dx=True):
        """dL/dy (N, D) -> dL/d(input) (N, C or C / 2), or None if not need_dx; fills that
        decoder's entries of grads."""
        dh, grads[prefix + "out.W"], grads[prefix + "out.b"] = linear_backward(dy,
                                                                             cache[prefix + "out"])
        for i in reversed(range(len(self.config.dec_hidden))):
            dh, grads[f"{prefix}dec{i}.W"], grads[f"{prefix}dec{i}.b"] = linear_relu_backward(
                dh, cache[prefix + "dec"][i], need_dx=need_dx or i > 0)
        return dh

    def encoder_backward(self, dz, cache, grads):
        """dL/dz (N, C), routed or not, back through the code layer and the encoder."""
        dh, grads["code.W"], _ = linear_backward(dz, cache["code"])
        for i in reversed(range(len(self.config.enc_hidden))):   # layer 0's input is the data
            dh, grads[f"enc{i}.W"], grads[f"enc{i}.b"] = linear_relu_backward(
                dh, cache["enc"][i], need_dx=i > 0)
        return grads

    def loss_and_grads(self, x, labels=None):
        """x (N, D) floats in [-1, 1]; labels (N,) ints or None -> (losses, grads).

        losses: "loss", "recon" (main MAE), "l1", "corr", "cert" (sum of the certificates'
        MAEs); grads: one array per parameter, same keys and shapes.
        """
        x = self._check_x(x, "loss_and_grads")
        if labels is not None:
            labels = self.routing.check_labels(labels, x.shape[0], "loss_and_grads")
        losses, cache = self.forward(x)
        return {k: float(v) for k, v in losses.items()}, self.backward(cache, labels)

    # ------------------------------------------------------------------ inference
    def encode(self, x, batch_size=1000):
        """x (N, D) in [-1, 1] -> z (N, C), the code."""
        x = self._check_x(x, "encode")
        return np.concatenate([self.encoder_forward(x[i:i + batch_size], {})
                               for i in range(0, len(x), batch_size)])

    def code(self, x, batch_size=1000):
        """x (N, D) in [-1, 1] -> z (N, C), the code the decoders read: the encoder's output
        itself (no sampling). The VAE's `code` is its noiseless code; the tools call either."""
        return self.encode(x, batch_size)

    def decode(self, z, certificate=None, batch_size=1000):
        """z (N, C) -> y (N, D), pixels in [-1, 1] (not clipped). certificate=g: certificate g's
        drawing from its half of z (the rest of z is not read)."""
        z = np.asarray(z, dtype=self.config.dtype)
        prefix = "" if certificate is None else f"cert{certificate}."
        if certificate is not None:
            z = z[:, self.routing.groups[certificate]]
        return np.concatenate([self.decoder_forward(z[i:i + batch_size], {}, prefix)
                               for i in range(0, len(z), batch_size)])

    # ------------------------------------------------------------------ input checks
    def _check_params(self):
        shapes = layer_shapes(self.config, self.routing)
        if set(shapes) != set(self.params):
            raise ValueError(f"Autoencoder: parameter names {sorted(self.params)} do not match "
                             f"the config's {sorted(shapes)}")
        for name, shape in shapes.items():
            if self.params[name].shape != shape or self.params[name].dtype != self.config.dtype:
                raise ValueError(f"Autoencoder: parameter {name} is {self.params[name].dtype} "
                                 f"{self.params[name].shape}, config expects "
                                 f"{self.config.dtype} {shape}")

    def _check_x(self, x, where):
        x = np.asarray(x)
        D = self.config.input_dim
        if x.ndim != 2 or x.shape[1] != D or not np.issubdtype(x.dtype, np.floating):
            raise ValueError(f"{where}: x must be floats in [-1, 1] of shape (N, {D}), got "
                             f"{x.dtype} {x.shape}")
        if not np.isfinite(x).all():
            raise ValueError(f"{where}: x contains NaN or inf")
        return np.ascontiguousarray(x, dtype=self.config.dtype)

    def _check_routing(self):
        r = self.routing
        if len(r.groups) != 2 or r.free_dims or r.code_dim != self.config.code:
            raise ValueError(f"Autoencoder: needs a routing of two groups and no free dims over "
                             f"its {self.config.code} code dims (the halves), got {r}")
