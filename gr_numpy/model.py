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
same keys. The hidden stacks and what both models share (pixels, batched encode and decode,
input checks) are in mlp.py; `VAE.score` is the read-out the README's accuracy means. Not here:
the optimiser (adam.py), the data (data.py), the training loop (training.py).

Glossary: N batch, D pixels (784), H a hidden width, K routed (digit) dims, S style dims.
"""

from dataclasses import asdict, dataclass, field

import numpy as np

from .layers import LINEAR_ACTIVATIONS, STYLE_INPUTS, linear_backward, linear_forward
from .layers import relu_backward, relu_forward, sigmoid_forward
from .mlp import Model, Stack
from .losses import RECONSTRUCTION_LOSSES, kl_normal, l1_penalty, reparameterize_backward
from .losses import reparameterize_forward
from .routing import one_per_digit


@dataclass
class VAEConfig:
    """Everything that fixes the model's shape and loss. Stored inside every checkpoint.

    The defaults are the default recipe (`python train.py`); presets change some fields. A
    field with a "help" in its metadata is a flag of train.py (its name, or "flag"; a "range"
    or "choices" checks the value there).
    """
    input_dim: int = 784            # D
    enc_hidden: tuple = field(default=(512, 256), metadata={  # input side first
        "flag": "--hidden", "range": (1, 100_000),
        "help": "encoder hidden widths, input side first; the decoder mirrors them"})
    dec_hidden: tuple = field(default=(256, 512), metadata={  # latent side first
        "flag": "--hidden", "mirrors": True})
    latent: int = field(default=10, metadata={"flag": "--routing"})  # K: the routing's routed dims
    enc_act: str = "relu"           # activation of the encoder's hidden layers
    dec_act: str = field(default="elu", metadata={
        "choices": tuple(LINEAR_ACTIVATIONS), "help": "decoder hidden activation"})
    dec_hidden_bias: bool = False   # no bias: the all-zero code cannot decode to a "free" digit
    relu_z: bool = field(default=True, metadata={   # z = relu(sample): "more of a digit" is > 0
        "flag": "--no-relu-z", "help": "ablation: no ReLU on the digit code (z = the sample)"})
    recon: str = "bce"              # "bce" (Bernoulli cross-entropy) or "sse" (sum sq. error)
    recon_weight: float = 1.0       # multiplies the reconstruction loss
    kl_weight: float = field(default=0.5, metadata={
        "range": (0, 1000), "help": "weight of the digit dims' KL term"})
    l1_weight: float = field(default=0.0, metadata={
        "range": (0, 1000), "help": "weight of an L1 penalty on the digit code z_d, label-free "
                                    "and unrouted"})
    style: int = field(default=0, metadata={  # S: unrouted style dims after the K digit dims
        "range": (0, 1000), "help": "style dims S: unrouted, read by the decoder only "
                                    "multiplied by the digit dims"})
    style_kl_weight: float = field(default=1.0, metadata={
        "flag": "--style-kl", "range": (0, 1000), "help": "weight of the style dims' KL term"})
    style_input: str = field(default="outer", metadata={
        "choices": tuple(STYLE_INPUTS),
        "help": "how style reaches the decoder: outer = [z_d, vec(z_d outer z_s)] (a style per "
                "digit), shared = [z_d, sum(z_d) * z_s] (one style for all)"})
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


def stacks(cfg):
    """The VAE's two hidden stacks: the encoder's (D -> enc_hidden) and the decoder's
    (its input -> dec_hidden), the latter without biases unless dec_hidden_bias."""
    return (Stack("enc", (cfg.input_dim,) + cfg.enc_hidden, cfg.enc_act),
            Stack("dec", (cfg.decoder_input_dim,) + cfg.dec_hidden, cfg.dec_act,
                  bias=cfg.dec_hidden_bias))


def layer_shapes(cfg, routing=None):
    """(routing: unused, the code's width is the config's) Name -> shape of every parameter, in forward order: the encoder, the mu and logvar heads
    (H, K + S), the decoder, the output layer (H, D)."""
    encoder, decoder = stacks(cfg)
    shapes, H_enc, H_dec = encoder.shapes(), encoder.widths[-1], decoder.widths[-1]
    for head in ("mu", "logvar"):
        shapes[f"{head}.W"], shapes[f"{head}.b"] = (H_enc, cfg.code_dim), (cfg.code_dim,)
    shapes.update(decoder.shapes())
    shapes["out.W"], shapes["out.b"] = (H_dec, cfg.input_dim), (cfg.input_dim,)
    return shapes


class VAE(Model):
    """An MLP VAE whose forward and backward passes are plain functions of a dict of arrays.

    routing: which code dims each label may train (routing.py); by default one dim per digit
    over the K routed dims, the S style dims free. It is used only when labels are passed.
    """

    kind = "vae"
    logged_losses = ("loss", "recon", "kl")      # the training log's columns
    val_keys = ("acc", "mse")                    # kept in each epoch's history entry
    test_keys = {"acc": "test_acc", "mse": "test_mse"}   # the rest keep their names

    def __init__(self, config=None, params=None, rng=None, routing=None):
        config = config if config is not None else VAEConfig()
        routing = routing if routing is not None else \
            one_per_digit(style=config.style, digits=config.latent)
        self.check_routing(config, routing)
        self.encoder, self.decoder = stacks(config)
        super().__init__(config, routing, params, rng, layer_shapes(config))

    shapes = staticmethod(layer_shapes)        # (config, routing) -> name -> shape

    @staticmethod
    def check_routing(config, routing):
        """Refuse (ValueError) a routing whose routed and free dims are not the config's K, S."""
        if (routing.routed_dims, routing.free_dims) != (config.latent, config.style):
            raise ValueError(f"VAE: routing {routing.name} has {routing.routed_dims} routed and "
                             f"{routing.free_dims} free dims; the config has latent "
                             f"{config.latent} and style {config.style}")

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
        h = self.encoder.forward(p, x, cache.setdefault("enc", []))   # act(h @ W + b), L times
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
        h = z                                                   # S = 0: the decoder reads z
        if cfg.style:
            style_forward, _ = STYLE_INPUTS[cfg.style_input]
            h, cache["style_input"] = style_forward(z[:, :K], z[:, K:])   # (N, K + K*S) or K + S
        h = self.decoder.forward(p, h, cache.setdefault("dec", []))     # no bias by default
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
        dh, grads["out.W"], grads["out.b"] = linear_backward(cache["dlogits"], cache["out"])
        dh = self.decoder.backward(dh, cache["dec"], grads)
        if not cfg.style:
            return dh                                                 # S = 0: dL/dz itself
        _, style_backward = STYLE_INPUTS[cfg.style_input]
        dz_d, dz_s = style_backward(dh, cache["style_input"])         # (N, K), (N, S)
        return np.concatenate([dz_d, dz_s], axis=1)                   # (N, K + S)

    def encoder_backward(self, dz, cache, grads):
        """From dL/dz (N, K + S), routed or not, back through z, the heads and the encoder."""
        dz = dz + cache["dz_l1"]                  # the L1 penalty's gradient, like KL's: unrouted

        dmu_z, dlogvar_z = self.sample_backward(dz, cache)            # through z to the heads
        dmu = dmu_z + cache["dmu_kl"]                                 # two paths meet at mu
        dlogvar = dlogvar_z + cache["dlogvar_kl"]                     # and at logvar

        dh_mu, grads["mu.W"], grads["mu.b"] = linear_backward(dmu, cache["mu"])
        dh_logvar, grads["logvar.W"], grads["logvar.b"] = linear_backward(dlogvar, cache["logvar"])
        dh = dh_mu + dh_logvar                                        # both heads read h
        self.encoder.backward(dh, cache["enc"], grads, need_dx=False)   # its input is the data
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

    def loss_and_grads(self, x, labels=None, eps=None, kl_scale=1.0):
        """x (N, D) floats in [0, 1]; labels (N,) ints or None; eps (N, K + S) noise or None (0);
        kl_scale the KL weights' factor (below 1 only during a KL warm-up).

        Returns (losses, grads): losses has "loss", "recon", "kl", "l1" (mean per image);
        grads has one array per parameter, same keys and shapes. The caller draws eps
        (eps=None means z = relu(mu), the noiseless code). The one checked path into a step:
        training.train_step calls it.
        """
        x, labels, eps = self.check_inputs(x, labels, eps)
        losses, cache = self.forward(x, eps, kl_scale)
        grads = self.backward(cache, labels)
        return {k: float(v) for k, v in losses.items()}, grads

    # ------------------------------------------------------------------ the code
    def _encode(self, x):
        eps = np.zeros((x.shape[0], self.config.code_dim), dtype=x.dtype)
        mu, _, _ = self.encoder_forward(x, eps, {})
        return mu                                    # encode(x) is the encoder's mean mu

    def code_of(self, mu):
        """mu (N, K + S) -> the noiseless code: relu on the K digit dims if relu_z, style as is."""
        if not self.config.relu_z:
            return mu
        K = self.config.latent
        return np.concatenate([np.maximum(mu[:, :K], 0), mu[:, K:]], axis=1)

    def readout_of(self, mu):
        """mu (N, K + S) -> what the routing reads the group off: mu itself."""
        return mu

    def _decode(self, z):
        xhat, _ = sigmoid_forward(self.decoder_forward(z, {}))
        return xhat                                  # pixels in [0, 1]

    # ------------------------------------------------------------------ scores
    def score(self, images, labels, batch_size=1000):
        """Read-out accuracy, per class and as a confusion table, and reconstruction MSE per pixel.

        images (N, 28, 28) uint8, labels (N,). The model's answer for an image is the routing
        group with the largest mean of mu (`Routing.read_group`; style dims never vote); it is
        right when that is the group of the image's label (with one group per digit: the digit
        itself). The reconstruction decodes the noiseless code (relu on the digit part of mu,
        style part as is), exactly what the demo shows.
        """
        routing = self.routing
        labels = routing.check_labels(np.asarray(labels, dtype=np.intp), where="score")
        answers, sq_err = [], 0.0
        for i in range(0, len(images), batch_size):
            x = self.to_input(images[i:i + batch_size])
            mu = self.encode(x)                                         # (n, K + S)
            answers.append(routing.read_group(mu))                      # (n,) a group each
            sq_err += float(((self.decode(self.code_of(mu)) - x) ** 2).sum(dtype=np.float64))
        answers = np.concatenate(answers)
        right = answers == routing.label_group[labels]
        L, G = routing.labels, len(routing.groups)
        confusion = np.zeros((L, G), dtype=np.int64)      # rows: true label; columns: group read
        np.add.at(confusion, (labels, answers), 1)
        per_class = np.bincount(labels[right], minlength=L) / np.maximum(
            np.bincount(labels, minlength=L), 1)
        return {"acc": float(right.mean()),
                "per_class_acc": [round(float(a), 4) for a in per_class],
                "mse": sq_err / (len(images) * images[0].size),
                "confusion": confusion.tolist(), "groups": routing.group_names}

    def report(self, scores):
        """scores -> the lines train.py prints for the test set."""
        return [f"test   | acc {100 * scores['acc']:.2f}% | mse/pixel {scores['mse']:.4f} | per "
                f"class {' '.join(f'{100 * a:.1f}' for a in scores['per_class_acc'])}"]

    def log_line(self, entry):
        """A history entry (the epoch's mean losses, val_* fields, seconds) -> its log line."""
        acc = entry["val_acc"]
        val = f"val acc {100 * acc:.2f}%" if acc is not None else "val acc  n/a"
        return (f"epoch {entry['epoch']:2d} | loss {entry['loss']:8.3f} | recon "
                f"{entry['recon']:8.3f} | kl {entry['kl']:6.3f} | {val} | "
                f"{entry['seconds']:.1f} s")
