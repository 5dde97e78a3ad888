"""The variational autoencoder: forward pass, loss, and a backward pass written out by hand.

    x (N, D) -> encoder MLP -> mu, logvar (N, K) -> z = relu(mu + exp(logvar/2) * eps)
             -> decoder MLP -> logits (N, D) -> sigmoid -> reconstruction of x

With S style dims (`VAEConfig.style`, default 0), the heads give K + S means and log-variances;
the K digit dims go through the ReLU as above, the S style dims do not, and the decoder reads
[z_d, vec(z_d outer z_s)] (N, K + K*S), or [z_d, sum(z_d) * z_s] (N, K + S) with
style_input "shared": style reaches it only multiplied by the digit code.

`VAE.loss_and_grads(x, labels, eps)` runs it forwards and backwards. Passing `labels` turns on
gradient routing: in `VAE.backward`, between the decoder's and the encoder's backward passes,
dL/dz is multiplied by the model's routing mask (routing.py): with one dim per digit, each row
keeps only its label's column of the digit dims.
Parameters are one plain dict of named arrays and the gradients come back in a dict with the
same keys. Not here: the optimiser (adam.py), the data (data.py), the training loop (training.py).

Glossary: N batch, D pixels (784), H a hidden width, K routed (digit) dims, S style dims.
"""

from dataclasses import asdict, dataclass

import numpy as np

from .layers import LINEAR_ACTIVATIONS, STYLE_INPUTS, linear_backward, linear_forward
from .layers import relu_backward, relu_forward, sigmoid_forward
from .losses import RECONSTRUCTION_LOSSES, kl_normal, l1_penalty, reparameterize_backward
from .losses import reparameterize_forward
from .routing import one_per_digit


@dataclass
class VAEConfig:
    """Everything that fixes the model's shape and loss. Stored inside every checkpoint.

    The defaults are the default recipe (`python train.py`); presets change some fields.
    """
    input_dim: int = 784            # D
    enc_hidden: tuple = (512, 256)  # encoder hidden widths, input side first
    dec_hidden: tuple = (256, 512)  # decoder hidden widths, latent side first
    latent: int = 10                # K: the routed dims (the routing's groups), one per digit
    enc_act: str = "relu"           # activation of the encoder's hidden layers
    dec_act: str = "elu"            # activation of the decoder's hidden layers
    dec_hidden_bias: bool = False   # no bias: the all-zero code cannot decode to a "free" digit
    relu_z: bool = True             # z = relu(sample): "more of a digit" is positive
    recon: str = "bce"              # "bce" (Bernoulli cross-entropy) or "sse" (sum sq. error)
    recon_weight: float = 1.0       # multiplies the reconstruction loss
    kl_weight: float = 0.5          # multiplies the KL term of the K digit dims
    l1_weight: float = 0.0          # multiplies an L1 penalty on z_d (label-free, not routed)
    style: int = 0                  # S: unrouted style dims after the K digit dims (0: none)
    style_kl_weight: float = 1.0    # multiplies the KL term of the S style dims
    style_input: str = "outer"      # decoder input: "outer" [z_d, vec(z_d outer z_s)] or
                                    # "shared" [z_d, sum(z_d) * z_s] (one style for all digits)
    dtype: str = "float32"

    kind = "vae"                    # not a field: the autoencoder's config says "autoencoder"

    def __post_init__(self):
        self.enc_hidden = tuple(int(h) for h in self.enc_hidden)
        self.dec_hidden = tuple(int(h) for h in self.dec_hidden)
        for name in ("enc_act", "dec_act"):
            if getattr(self, name) not in LINEAR_ACTIVATIONS:
                raise ValueError(f"VAEConfig: {name} must be one of {sorted(LINEAR_ACTIVATIONS)}, "
                                 f"got {getattr(self, name)!r}")
        if self.recon not in RECONSTRUCTION_LOSSES:
            raise ValueError(f"VAEConfig: recon must be one of {sorted(RECONSTRUCTION_LOSSES)}, "
                             f"got {self.recon!r}")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"VAEConfig: dtype must be 'float32' or 'float64', got {self.dtype!r}")
        sizes = (self.input_dim, self.latent) + self.enc_hidden + self.dec_hidden
        if any(s < 1 for s in sizes):
            raise ValueError(f"VAEConfig: every layer size must be >= 1, got {sizes}")
        if self.style_input not in STYLE_INPUTS:
            raise ValueError(f"VAEConfig: style_input must be one of {sorted(STYLE_INPUTS)}, "
                             f"got {self.style_input!r}")
        if self.style < 0 or self.style_kl_weight < 0:
            raise ValueError(f"VAEConfig: style and style_kl_weight must be >= 0, got "
                             f"{self.style}, {self.style_kl_weight}")

    def to_dict(self):
        d = asdict(self)
        d["enc_hidden"], d["dec_hidden"] = list(self.enc_hidden), list(self.dec_hidden)
        return d

    @property
    def code_dim(self):
        """K + S: the width of mu, logvar, eps and of the code z the decoder reads."""
        return self.latent + self.style

    @property
    def decoder_input_dim(self):
        """The decoder's input width: K + K*S for [z_d, vec(z_d outer z_s)], K + S if shared."""
        per_digit = self.latent if self.style_input == "outer" else 1
        return self.latent + per_digit * self.style


def layer_shapes(cfg):
    """Name -> shape of every parameter, in forward order. None-bias layers are simply absent."""
    shapes = {}
    sizes = (cfg.input_dim,) + cfg.enc_hidden
    for i in range(len(cfg.enc_hidden)):
        shapes[f"enc{i}.W"], shapes[f"enc{i}.b"] = (sizes[i], sizes[i + 1]), (sizes[i + 1],)
    for head in ("mu", "logvar"):
        shapes[f"{head}.W"], shapes[f"{head}.b"] = (sizes[-1], cfg.code_dim), (cfg.code_dim,)
    sizes = (cfg.decoder_input_dim,) + cfg.dec_hidden
    for i in range(len(cfg.dec_hidden)):
        shapes[f"dec{i}.W"] = (sizes[i], sizes[i + 1])
        if cfg.dec_hidden_bias:
            shapes[f"dec{i}.b"] = (sizes[i + 1],)
    shapes["out.W"], shapes["out.b"] = (sizes[-1], cfg.input_dim), (cfg.input_dim,)
    return shapes


def init_params(cfg, rng):
    """Uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and biases, as PyTorch's Linear does."""
    params, shapes = {}, layer_shapes(cfg)
    for name, shape in shapes.items():
        fan_in = shapes[name[:-2] + ".W"][0]     # a bias shares its weight's fan-in
        bound = 1.0 / np.sqrt(fan_in)
        params[name] = rng.uniform(-bound, bound, size=shape).astype(cfg.dtype)
    return params


class VAE:
    """An MLP VAE whose forward and backward passes are plain functions of a dict of arrays.

    routing: which code dims each label may train (routing.py); by default one dim per digit
    over the K routed dims, the S style dims free. It is used only when labels are passed.
    """

    kind = "vae"
    logged_losses = ("loss", "recon", "kl")      # the training log's columns

    def __init__(self, config=None, params=None, rng=None, routing=None):
        self.config = config if config is not None else VAEConfig()
        self.routing = routing if routing is not None else \
            one_per_digit(style=self.config.style, digits=self.config.latent)
        if params is None:
            params = init_params(self.config, rng if rng is not None else np.random.default_rng(0))
        self.params = params
        self._check_params()
        self._check_routing()

    @property
    def noise_dim(self):
        """The width of the noise eps the caller draws per image: K + S."""
        return self.config.code_dim

    # ------------------------------------------------------------------ forward
    def forward(self, x, eps, kl_scale=1.0):
        """x (N, D), eps (N, K + S) -> losses dict, cache for `backward`. kl_scale multiplies
        both KL weights (a KL warm-up's factor for this epoch; 1: the weights as configured)."""
        cfg, K = self.config, self.config.latent
        kl_weight, style_kl_weight = kl_scale * cfg.kl_weight, kl_scale * cfg.style_kl_weight
        cache = {}
        mu, logvar, z = self.encoder_forward(x, eps, cache)             # (N, K + S) each
        logits = self.decoder_forward(z, cache)                         # (N, D)

        recon, dlogits = RECONSTRUCTION_LOSSES[cfg.recon](logits, x)
        kl_d, dmu_kl_d, dlogvar_kl_d = kl_normal(mu[:, :K], logvar[:, :K])   # the digit dims
        kl_s, dmu_kl_s, dlogvar_kl_s = kl_normal(mu[:, K:], logvar[:, K:])   # style: 0 if S = 0
        l1, dz_l1 = l1_penalty(z[:, :K])                              # the digit code only
        no_style = np.zeros((x.shape[0], cfg.style), dtype=z.dtype)   # (N, S)
        cache["dlogits"] = cfg.recon_weight * dlogits                 # dL/dlogits
        cache["dmu_kl"] = np.concatenate([kl_weight * dmu_kl_d,       # dL/dmu through the KL
                                          style_kl_weight * dmu_kl_s], axis=1)
        cache["dlogvar_kl"] = np.concatenate([kl_weight * dlogvar_kl_d,       # and dL/dlogvar
                                              style_kl_weight * dlogvar_kl_s], axis=1)
        cache["dz_l1"] = np.concatenate([cfg.l1_weight * dz_l1, no_style], axis=1)  # dL/dz, L1
        loss = (cfg.recon_weight * recon + kl_weight * kl_d + style_kl_weight * kl_s
                + cfg.l1_weight * l1)
        losses = {"loss": loss, "recon": recon, "kl": kl_d + kl_s, "l1": l1}
        return losses, cache

    def encoder_forward(self, x, eps, cache):
        """x (N, D), eps (N, K + S) -> mu, logvar, z (N, K + S) each; fills cache for backward.

        z = [relu(sample[:, :K]), sample[:, K:]]: the ReLU acts on the digit dims only.
        """
        cfg, p, K = self.config, self.params, self.config.latent
        hidden_forward, _ = LINEAR_ACTIVATIONS[cfg.enc_act]
        cache["enc"] = []
        h = x
        for i in range(len(cfg.enc_hidden)):
            h, layer = hidden_forward(h, p[f"enc{i}.W"], p[f"enc{i}.b"])   # act(h @ W + b)
            cache["enc"].append(layer)
        mu, cache["mu"] = linear_forward(h, p["mu.W"], p["mu.b"])
        logvar, cache["logvar"] = linear_forward(h, p["logvar.W"], p["logvar.b"])
        sample, cache["reparam"] = reparameterize_forward(mu, logvar, eps)   # (N, K + S)
        z_d, z_s = sample[:, :K], sample[:, K:]                               # (N, K), (N, S)
        if cfg.relu_z:
            z_d, cache["relu_z"] = relu_forward(z_d)
        z = np.concatenate([z_d, z_s], axis=1)                                # (N, K + S)
        return mu, logvar, z

    def decoder_forward(self, z, cache):
        """z (N, K + S) -> logits (N, D) of the pixels; records what backward needs in cache."""
        cfg, p, K = self.config, self.params, self.config.latent
        hidden_forward, _ = LINEAR_ACTIVATIONS[cfg.dec_act]
        cache["dec"] = []
        h = z                                                   # S = 0: the decoder reads z
        if cfg.style:
            style_forward, _ = STYLE_INPUTS[cfg.style_input]
            h, cache["style_input"] = style_forward(z[:, :K], z[:, K:])   # (N, K + K*S) or K + S
        for i in range(len(cfg.dec_hidden)):
            h, layer = hidden_forward(h, p[f"dec{i}.W"], p.get(f"dec{i}.b"))  # no bias by default
            cache["dec"].append(layer)
        logits, cache["out"] = linear_forward(h, p["out.W"], p["out.b"])
        return logits

    # ------------------------------------------------------------------ backward
    def backward(self, cache, labels=None):
        """The forward pass in reverse. labels (N,) turns routing on; None is a plain VAE."""
        grads = {}
        dz = self.decoder_backward(cache, grads)                      # (N, K + S) dL_recon/dz

        # ---------------------------------------------------------------- GRADIENT ROUTING
        # The only change from a plain VAE. Keep, in row n of dL_recon/dz, only the columns
        # that label n may train: with one dim per digit, the label's own column of the digit
        # dims (and the style columns, which every image trains). So the reconstruction error
        # of a "3" reaches the encoder only through dim 3. The KL and L1 gradients (added in
        # encoder_backward) are not routed: they are a prior on every dim, not a signal about
        # which dim should describe this image.
        if labels is not None:
            dz = dz * self.routing.mask(labels, dz.dtype)             # (N, K + S)
        # ----------------------------------------------------------------------------------

        self.encoder_backward(dz, cache, grads)
        return grads

    def decoder_backward(self, cache, grads):
        """From dL/dlogits back to dL/dz (N, K + S); fills the decoder's entries of grads."""
        cfg = self.config
        _, hidden_backward = LINEAR_ACTIVATIONS[cfg.dec_act]
        dh, grads["out.W"], grads["out.b"] = linear_backward(cache["dlogits"], cache["out"])
        for i in reversed(range(len(cfg.dec_hidden))):
            dh, grads[f"dec{i}.W"], db = hidden_backward(dh, cache["dec"][i])
            if db is not None:
                grads[f"dec{i}.b"] = db
        if not cfg.style:
            return dh                                                 # S = 0: dL/dz itself
        _, style_backward = STYLE_INPUTS[cfg.style_input]
        dz_d, dz_s = style_backward(dh, cache["style_input"])         # (N, K), (N, S)
        return np.concatenate([dz_d, dz_s], axis=1)                   # (N, K + S)

    def encoder_backward(self, dz, cache, grads):
        """From dL/dz (N, K + S), routed or not, back through z, the heads and the encoder."""
        cfg = self.config
        dz = dz + cache["dz_l1"]                  # the L1 penalty's gradient, like KL's: unrouted

        dmu_z, dlogvar_z = self.sample_backward(dz, cache)            # through z to the heads
        dmu = dmu_z + cache["dmu_kl"]                                 # two paths meet at mu
        dlogvar = dlogvar_z + cache["dlogvar_kl"]                     # and at logvar

        dh_mu, grads["mu.W"], grads["mu.b"] = linear_backward(dmu, cache["mu"])
        dh_logvar, grads["logvar.W"], grads["logvar.b"] = linear_backward(dlogvar, cache["logvar"])
        dh = dh_mu + dh_logvar                                        # both heads read h

        _, hidden_backward = LINEAR_ACTIVATIONS[cfg.enc_act]
        for i in reversed(range(len(cfg.enc_hidden))):     # layer 0's input is the data: no dx
            dh, grads[f"enc{i}.W"], grads[f"enc{i}.b"] = hidden_backward(dh, cache["enc"][i],
                                                                         need_dx=i > 0)
        return grads

    def sample_backward(self, dz, cache):
        """dL/dz (N, K + S) -> dL/dmu, dL/dlogvar (N, K + S) through z = relu(mu + std * eps).

        The ReLU is on the K digit dims only; the style dims' gradient reaches the sample as is.
        """
        K = self.config.latent
        dz_d, dz_s = dz[:, :K], dz[:, K:]                             # (N, K), (N, S)
        if self.config.relu_z:
            dz_d = relu_backward(dz_d, cache["relu_z"])
        dsample = np.concatenate([dz_d, dz_s], axis=1)                # (N, K + S)
        return reparameterize_backward(dsample, cache["reparam"])

    def loss_and_grads(self, x, labels=None, eps=None):
        """x (N, D) floats in [0, 1]; labels (N,) ints or None; eps (N, K + S) noise or None (0).

        Returns (losses, grads): losses has "loss", "recon", "kl", "l1" (mean per image);
        grads has one array per parameter, same keys and shapes. The caller draws eps
        (eps=None means z = relu(mu), the noiseless code).
        """
        x = self._check_x(x, "loss_and_grads")
        if eps is None:
            eps = np.zeros((x.shape[0], self.config.code_dim), dtype=x.dtype)
        eps = self._check_eps(eps, x.shape[0], "loss_and_grads")
        if labels is not None:
            labels = self._check_labels(labels, x.shape[0], "loss_and_grads")
        losses, cache = self.forward(x, eps)
        grads = self.backward(cache, labels)
        return {k: float(v) for k, v in losses.items()}, grads

    # ------------------------------------------------------------------ inference
    def encode(self, x, batch_size=1000):
        """x (N, D) -> mu (N, K + S), the encoder's mean; routing.read_group(mu) names its group."""
        x = self._check_x(x, "encode")
        return np.concatenate([self._encode(x[i:i + batch_size])
                               for i in range(0, len(x), batch_size)] or [self._empty()])

    def code(self, x, batch_size=1000):
        """x (N, D) -> the noiseless code the decoder reads (N, K + S): mu, digit dims ReLU'd."""
        mu = self.encode(x, batch_size)
        return self.code_of_mean(mu)

    def code_of_mean(self, mu):
        """mu (N, K + S) -> the noiseless code: relu on the K digit dims if relu_z, style as is."""
        if not self.config.relu_z:
            return mu
        K = self.config.latent
        return np.concatenate([np.maximum(mu[:, :K], 0), mu[:, K:]], axis=1)

    def decode(self, z, batch_size=1000):
        """z (N, K + S) codes -> images (N, D) in [0, 1]. Pass codes as the decoder reads them."""
        z = np.asarray(z)
        C = self.config.code_dim
        if z.ndim == 1:
            z = z[None, :]
        if z.ndim != 2 or z.shape[1] != C or not np.issubdtype(z.dtype, np.number):
            raise ValueError(f"decode: z must be numbers of shape (N, {C}), "
                             f"got {z.dtype} {z.shape}")
        z = z.astype(self.config.dtype)
        return np.concatenate([self._decode(z[i:i + batch_size])
                               for i in range(0, len(z), batch_size)])

    def _encode(self, x):
        eps = np.zeros((x.shape[0], self.config.code_dim), dtype=x.dtype)
        mu, _, _ = self.encoder_forward(x, eps, {})
        return mu

    def _decode(self, z):
        xhat, _ = sigmoid_forward(self.decoder_forward(z, {}))
        return xhat

    def _empty(self):
        return np.zeros((0, self.config.code_dim), dtype=self.config.dtype)

    # ------------------------------------------------------------------ input checks
    def _check_params(self):
        shapes = layer_shapes(self.config)
        if set(shapes) != set(self.params):
            raise ValueError(f"VAE: parameter names {sorted(self.params)} do not match the config's "
                             f"{sorted(shapes)}")
        for name, shape in shapes.items():
            if self.params[name].shape != shape or self.params[name].dtype != self.config.dtype:
                raise ValueError(f"VAE: parameter {name} is {self.params[name].dtype} "
                                 f"{self.params[name].shape}, config expects {self.config.dtype} {shape}")

    def _check_x(self, x, where):
        x = np.asarray(x)
        D = self.config.input_dim
        if x.ndim != 2 or x.shape[1] != D:
            raise ValueError(f"{where}: x must have shape (N, {D}) (flattened images), got {x.shape}")
        if not np.issubdtype(x.dtype, np.floating):
            raise ValueError(f"{where}: x must be floats in [0, 1], got dtype {x.dtype}; "
                             f"convert uint8 images with gr_numpy.data.to_rows")
        if not np.isfinite(x).all():
            raise ValueError(f"{where}: x contains NaN or inf")
        return np.ascontiguousarray(x, dtype=self.config.dtype)

    def _check_eps(self, eps, N, where):
        eps = np.asarray(eps)
        C = self.config.code_dim
        if eps.shape != (N, C) or not np.issubdtype(eps.dtype, np.floating):
            raise ValueError(f"{where}: eps must be floats of shape ({N}, {C}) (K + S), "
                             f"got {eps.dtype} {eps.shape}")
        return np.ascontiguousarray(eps, dtype=self.config.dtype)

    def _check_labels(self, labels, N, where):
        return self.routing.check_labels(labels, N, where)

    def _check_routing(self):
        cfg, r = self.config, self.routing
        if (r.routed_dims, r.free_dims) != (cfg.latent, cfg.style):
            raise ValueError(f"VAE: routing {r.name} has {r.routed_dims} routed and {r.free_dims} "
                             f"free dims; the config has latent {cfg.latent} and style {cfg.style}")
