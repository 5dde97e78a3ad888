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
the same line as the VAE's. The hidden stacks and what both models share are in mlp.py;
`Autoencoder.score` is the certificate table. Not here: the optimiser (adam.py, with the
paper's coupled weight decay in the halves presets), the loop (training.py).

Glossary: N batch, D pixels (784), H a hidden width, C code dims (32), G groups (2 halves).
"""

from dataclasses import asdict, dataclass, field

import numpy as np

from .layers import linear_backward, linear_forward
from .losses import correlation_penalty, l1_penalty, mae
from .mlp import Model, Stack
from .routing import halves


@dataclass
class AutoencoderConfig:
    """Everything that fixes the autoencoder's shape and loss. Stored inside every checkpoint.

    The defaults are the paper's weights (official code, `runs_for_paper_main.py`) on a smaller
    network; `--preset halves-paper` takes the paper's sizes too.
    """
    input_dim: int = 784              # D
    enc_hidden: tuple = field(default=(512, 256), metadata={   # input side first (paper 2048, 512)
        "flag": "--hidden", "range": (1, 100_000),
        "help": "encoder hidden widths, input side first; the decoders mirror them"})
    dec_hidden: tuple = field(default=(256, 512), metadata={  # code side first
        "flag": "--hidden", "mirrors": True})
    code: int = field(default=32, metadata={"flag": "--routing"})   # C: the routing's dims
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


def stacks(cfg, routing):
    """The autoencoder's hidden stacks: the encoder's, the main decoder's (from the whole
    code), and certificate g's (from group g's dims), ReLU everywhere, every layer biased."""
    decoders = {"": cfg.code}
    decoders.update({f"cert{g}.": len(dims) for g, dims in enumerate(routing.groups)})
    return (Stack("enc", (cfg.input_dim,) + cfg.enc_hidden),
            {prefix: Stack(prefix + "dec", (d_in,) + cfg.dec_hidden)
             for prefix, d_in in decoders.items()})


def layer_shapes(cfg, routing):
    """Name -> shape of every parameter: encoder, code (no bias), decoder, certificate g."""
    encoder, decoders = stacks(cfg, routing)
    shapes = encoder.shapes()
    shapes["code.W"] = (encoder.widths[-1], cfg.code)              # bias-free, as in the paper
    for prefix, decoder in decoders.items():
        shapes.update(decoder.shapes())
        shapes[f"{prefix}out.W"], shapes[f"{prefix}out.b"] = (decoder.widths[-1],
                                                              cfg.input_dim), (cfg.input_dim,)
    return shapes


class Autoencoder(Model):
    """The paper's split autoencoder; forward and backward passes are plain functions of a dict.

    routing: which code dims each label may train; two groups (the halves), no free dims. It
    routes only when labels are passed; the certificates read its groups' dims.
    """

    kind = "autoencoder"
    noise_dim = 0                        # draws no noise: eps is (N, 0), or None
    logged_losses = ("loss", "recon", "l1", "corr", "cert")
    pixels = (-1.0, 1.0)                 # the paper's pixel range
    val_keys = ("mae", "ratios")
    test_keys = {"mae": "test_mae", "per_digit": "per_digit_mae"}

    def __init__(self, config=None, params=None, rng=None, routing=None):
        config = config if config is not None else AutoencoderConfig()
        routing = routing if routing is not None else halves(half=config.code // 2)
        self.check_routing(config, routing)
        self.encoder, self.decoders = stacks(config, routing)
        self.certificates = len(routing.groups)
        super().__init__(config, routing, params, rng, layer_shapes(config, routing))

    shapes = staticmethod(layer_shapes)        # (config, routing) -> name -> shape

    @staticmethod
    def check_routing(config, routing):
        """Refuse (ValueError) a routing other than two groups over the whole code, no free dims:
        one certificate reads each group."""
        if len(routing.groups) != 2 or routing.free_dims or routing.code_dim != config.code:
            raise ValueError(f"the autoencoder needs a routing of two groups and no free dims "
                             f"over its {config.code} code dims (--routing halves), got {routing}")

    # ------------------------------------------------------------------ forward
    def forward(self, x):
        """x (N, D) in [-1, 1] -> losses dict, cache for `backward`."""
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
        h = self.encoder.forward(self.params, x, cache.setdefault("enc", []))  # relu(h @ W + b)
        z, cache["code"] = linear_forward(h, self.params["code.W"])              # h @ W
        return z

    def decoder_forward(self, z, cache, prefix):
        """z (N, C) or a half (N, C / 2) -> y (N, D): the main decoder (prefix "") or
        certificate g (prefix "cert{g}."); ReLU hidden layers, a linear output."""
        p = self.params
        h = self.decoders[prefix].forward(p, z, cache.setdefault(prefix + "dec", []))
        y, cache[prefix + "out"] = linear_forward(h, p[f"{prefix}out.W"], p[f"{prefix}out.b"])
        return y

    # ------------------------------------------------------------------ backward
    def backward(self, cache, labels=None):
        """The forward pass in reverse. labels (N,) turns routing on; None is a plain autoencoder."""
        grads = {}
        dz = self.decoder_backward(cache["dy"], cache, "", grads)         # (N, C) dL_recon/dz
        for g in range(self.certificates):      # the certificates: weight gradients only
            self.decoder_backward(cache["dy_cert"][g], cache, f"cert{g}.", grads, need_dx=False)

        # ---------------------------------------------------------------- GRADIENT ROUTING
        # The same line as in VAE.backward: keep, in row n of dL_recon/dz, only the columns
        # label n may train (for the halves: a 0-4 keeps dims 0-15, a 5-9 dims 16-31), as if
        # the other half were a constant in this image's reconstruction.
        if labels is not None:
            dz = dz * self.routing.mask(labels, dz.dtype)                 # (N, C)
        # ----------------------------------------------------------------------------------

        # The certificates read the code as a constant (PyTorch: z.detach()): their gradient
        # stops at their input, so decoder_backward above does not compute dL/d(half) for them
        # (need_dx=False): nothing of the certificates' loss reaches dz or the encoder.

        dz = dz + cache["dz_reg"]                  # L1 and correlation: unrouted, like the KL
        self.encoder_backward(dz, cache, grads)
        return grads

    def decoder_backward(self, dy, cache, prefix, grads, need_dx=True):
        """dL/dy (N, D) -> dL/d(input) (N, C or C / 2), or None if not need_dx; fills that
        decoder's entries of grads."""
        dh, grads[prefix + "out.W"], grads[prefix + "out.b"] = linear_backward(dy,
                                                                             cache[prefix + "out"])
        return self.decoders[prefix].backward(dh, cache[prefix + "dec"], grads, need_dx)

    def encoder_backward(self, dz, cache, grads):
        """dL/dz (N, C), routed or not, back through the code layer and the encoder."""
        dh, grads["code.W"], _ = linear_backward(dz, cache["code"])
        self.encoder.backward(dh, cache["enc"], grads, need_dx=False)   # its input is the data
        return grads

    def loss_and_grads(self, x, labels=None, eps=None):
        """x (N, D) floats in [-1, 1]; labels (N,) ints or None; eps: no noise, (N, 0) or None
        -> (losses, grads). The one checked path into a step: training.train_step calls it.

        losses: "loss", "recon" (main MAE), "l1", "corr", "cert" (sum of the certificates'
        MAEs); grads: one array per parameter, same keys and shapes.
        """
        x, labels, _ = self.check_inputs(x, labels, eps)
        losses, cache = self.forward(x)
        return {k: float(v) for k, v in losses.items()}, self.backward(cache, labels)

    # ------------------------------------------------------------------ the code
    def _encode(self, x):
        return self.encoder_forward(x, {})           # encode(x) is the code z itself

    def code_of(self, z):
        """z (N, C) -> the code the decoders read: z itself (no sampling)."""
        return z

    def readout_of(self, z):
        """z (N, C) -> what the routing reads the group off: |z|. The code is signed, and the L1
        penalty pulls the half an image does not use towards 0, whatever the sign of the other."""
        return np.abs(z)

    def _decode(self, z):
        return self.decoder_forward(z, {}, "")       # pixels in [-1, 1], not clipped

    def decode_certificate(self, z, g, batch_size=1000):
        """z (N, C) -> certificate g's drawing (N, D) in [-1, 1] from its group's dims of z (the
        rest of z is not read)."""
        half = np.asarray(z, dtype=self.config.dtype)[:, self.routing.groups[g]]
        return np.concatenate([self.decoder_forward(half[i:i + batch_size], {}, f"cert{g}.")
                               for i in range(0, len(half), batch_size)])

    # ------------------------------------------------------------------ scores
    def score(self, images, labels, batch_size=1000):
        """The certificate table: MAE (pixels in [-1, 1]) of the main decoder and of each
        certificate, per digit and per routing group; and each certificate's MSE as the paper's
        Table 2 has it (per-digit means, averaged with equal weight over a group's digits: the
        official code squares the error). Labels are used only to group the scores.

        Returns {"mae": main decoder over all images, "per_digit": {"decoder", "first",
        "second": (10,) lists}, "certificates": {"first": {"0-4": ..., "5-9": ...}, "second":
        {...}}, "ratios": {"first": MAE on the other group / on its own, "second": ...},
        "certificates_mse": like "certificates", "mse_ratios": like "ratios"}.
        """
        routing = self.routing
        labels = routing.check_labels(np.asarray(labels, dtype=np.intp), where="score")
        names = list(CERTIFICATE_NAMES)
        decoders = ["decoder"] + names
        sums = {d: np.zeros(routing.labels) for d in decoders}             # absolute errors
        squares = {d: np.zeros(routing.labels) for d in names}             # squared errors
        for i in range(0, len(images), batch_size):
            x = self.to_input(images[i:i + batch_size])                   # (n, D) in [-1, 1]
            y = labels[i:i + batch_size]
            z = self.encode(x)
            for d, cert in zip(decoders, (None, 0, 1)):
                drawn = self.decode(z) if cert is None else self.decode_certificate(z, cert)
                diff = drawn - x
                err = np.abs(diff).mean(axis=1, dtype=np.float64)
                sums[d] += np.bincount(y, weights=err, minlength=routing.labels)
                if cert is not None:
                    sq = np.square(diff).mean(axis=1, dtype=np.float64)
                    squares[d] += np.bincount(y, weights=sq, minlength=routing.labels)
        counts = np.maximum(np.bincount(labels, minlength=routing.labels), 1)

        def over(d, group):
            digits = routing.labels_of(group)
            return float(sums[d][digits].sum() / counts[digits].sum())

        def over_digits(d, group):
            digits = routing.labels_of(group)
            return float(np.mean(squares[d][digits] / counts[digits]))

        def other_over_own(table):
            own = {n: table[n][routing.group_names[g]] for g, n in enumerate(names)}
            other = {n: table[n][routing.group_names[1 - g]] for g, n in enumerate(names)}
            return {n: other[n] / own[n] for n in names}
        table = {n: {routing.group_names[g]: over(n, g) for g in range(2)} for n in names}
        mse = {n: {routing.group_names[g]: over_digits(n, g) for g in range(2)} for n in names}
        return {"mae": float(sums["decoder"].sum() / counts.sum()),
                "per_digit": {d: [float(v) for v in sums[d] / counts] for d in decoders},
                "certificates": table, "ratios": other_over_own(table),
                "certificates_mse": mse, "mse_ratios": other_over_own(mse)}

    def report(self, scores):
        """scores -> a small table, test MAE then the paper's MSE, pixels in [-1, 1]."""
        groups = list(scores["certificates"]["first"])                   # ["0-4", "5-9"]
        lines = [f"test   | MAE (pixels in [-1, 1]) | main decoder {scores['mae']:.4f}",
                 f"       | {'certificate':<22} | " + " | ".join(f"on {g:<5}" for g in groups)
                 + " | other / own"]
        for table, ratios in (("certificates", "ratios"), ("certificates_mse", "mse_ratios")):
            if table == "certificates_mse":
                lines.append("       | MSE, per-digit mean    | (the metric of the paper's "
                             "Table 2)")
            for g, name in enumerate(CERTIFICATE_NAMES):
                row = scores[table][name]
                lines.append(f"       | {name + ' half (' + groups[g] + ')':<22} | "
                             + " | ".join(f"{row[k]:8.4f}" for k in groups)
                             + f" | {scores[ratios][name]:.2f}x")
        return lines

    def log_line(self, entry):
        """A history entry -> its log line: the main MAE and each certificate's other / own."""
        ratios = entry["val_ratios"]
        val = (f"val mae {entry['val_mae']:.4f} | certificates other/own "
               f"{ratios['first']:.2f}x {ratios['second']:.2f}x" if ratios else "val n/a")
        return (f"epoch {entry['epoch']:2d} | loss {entry['loss']:.4f} | mae "
                f"{entry['recon']:.4f} | cert {entry['cert']:.4f} | l1 {entry['l1']:.4f} | "
                f"corr {entry['corr']:.4f} | {val} | {entry['seconds']:.1f} s")


CERTIFICATE_NAMES = ("first", "second")          # the certificates, by the half they read
