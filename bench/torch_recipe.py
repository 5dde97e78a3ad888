"""The default (or reference) recipe in PyTorch, to time an epoch beside gr-numpy's.

Only the benchmark uses this, and only when PyTorch is installed (`pip install torch`; it is
never needed to run or test gr-numpy). The model, loss, routing, optimiser, batch size and data
order match `python train.py`'s: the encoder's mean and log-variance, z = relu(mu + std * eps),
dL/dz multiplied by the labels' one-hot mask before it reaches the encoder (a custom
backward on z: with the L1 weight at 0, as in these recipes, that is exactly the fenced line of
`VAE.backward`; an autograd function, so that torch.compile can trace it), Bernoulli cross-entropy + 0.5 KL, Adam at 1e-3, batch 128. One epoch is the
55k training images and the validation pass over 5k, as gr-numpy's epoch is.

Variants: "eager" (torch.optim.Adam as it comes), "fused" (Adam(fused=True)), and "compile"
(torch.compile of the forward and backward, with the fused Adam). Every variant first takes three
warm-up steps (for "compile", where it compiles), timed apart and not counted in the epoch, as
gr-numpy's epoch leaves out the loading of its compiled kernels.
"""

import time

import numpy as np

VARIANTS = ("eager", "fused", "compile")


def torch_available():
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def build(torch, preset):
    """-> (encoder, heads, decoder, recon, kl_weight, recon_weight) for a train.py preset."""
    nn = torch.nn
    if preset == "default":
        hidden, act, dec_bias, recon, kl_w, recon_w = (512, 256), nn.ELU, False, "bce", 0.5, 1.0
    else:                                                    # the reference recipe
        hidden, act, dec_bias, recon, kl_w, recon_w = (2048, 512), nn.ReLU, True, "sse", 0.2, 0.3
    K, sizes = 10, (784,) + hidden
    enc = nn.Sequential(*[m for a, b in zip(sizes, sizes[1:]) for m in (nn.Linear(a, b), nn.ReLU())])
    heads = nn.Linear(sizes[-1], 2 * K)                      # mu and logvar, side by side
    back = (K,) + hidden[::-1]
    dec = nn.Sequential(*[m for a, b in zip(back, back[1:]) for m in (nn.Linear(a, b, bias=dec_bias), act())],
                        nn.Linear(back[-1], 784))
    return enc, heads, dec, recon, kl_w, recon_w


def run_epoch(variant, preset="default", threads=2, seed=0):
    """One epoch of the recipe in PyTorch, after three warm-up steps ->
    {"seconds", "warmup_seconds", "val_acc"}."""
    import torch

    from gr_numpy.data import load_mnist, train_val_split

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    images, labels = load_mnist("train")
    tr_x, tr_y, va_x, va_y = train_val_split(images, labels, 5000)
    X = torch.from_numpy(tr_x.reshape(len(tr_x), -1).astype(np.float32) / 255)
    Y = torch.from_numpy(tr_y.astype(np.int64))
    VX = torch.from_numpy(va_x.reshape(len(va_x), -1).astype(np.float32) / 255)
    enc, heads, dec, recon, kl_w, recon_w = build(torch, preset)
    params = [*enc.parameters(), *heads.parameters(), *dec.parameters()]
    opt = torch.optim.Adam(params, lr=1e-3, fused=variant != "eager")
    route = routing_function(torch)

    def loss_of(x, y, eps):
        mu, logvar = heads(enc(x)).chunk(2, dim=1)
        z = torch.relu(mu + torch.exp(0.5 * logvar) * eps)
        mask = torch.nn.functional.one_hot(y, 10).to(z.dtype)
        z = route(z, mask)                                   # dL/dz * mask, the routing step
        logits = dec(z)
        if recon == "bce":
            r = torch.nn.functional.binary_cross_entropy_with_logits(logits, x, reduction="sum")
        else:
            r = ((torch.sigmoid(logits) - x) ** 2).sum()
        kl = 0.5 * (mu * mu + logvar.exp() - 1 - logvar).sum()
        return (recon_w * r + kl_w * kl) / len(x)

    def step(x, y, eps):
        opt.zero_grad(set_to_none=True)
        loss = loss_of(x, y, eps)
        loss.backward()
        return loss

    if variant == "compile":
        loss_of = torch.compile(loss_of)
    t0 = time.perf_counter()
    for i in range(3):                                       # warm up (torch.compile compiles here)
        step(X[:128], Y[:128], torch.randn(128, 10)).item()
        opt.step()
    warmup_seconds = time.perf_counter() - t0

    t0 = time.perf_counter()
    perm = torch.randperm(len(X))
    for start in range(0, len(X), 128):
        idx = perm[start:start + 128]
        step(X[idx], Y[idx], torch.randn(len(idx), 10))
        opt.step()
    with torch.no_grad():                                    # validation, as gr-numpy's epoch
        mu, _ = heads(enc(VX)).chunk(2, dim=1)
        val_acc = float((mu.argmax(1).numpy() == va_y).mean())
        torch.sigmoid(dec(torch.relu(mu)))
    return {"seconds": time.perf_counter() - t0, "warmup_seconds": warmup_seconds,
            "val_acc": val_acc}


def routing_function(torch):
    """The routing step as an autograd function: identity forward, dL/dz * mask backward."""

    class RouteGradient(torch.autograd.Function):
        @staticmethod
        def forward(ctx, z, mask):
            ctx.save_for_backward(mask)
            return z.view_as(z)

        @staticmethod
        def backward(ctx, dz):
            (mask,) = ctx.saved_tensors
            return dz * mask, None

    return RouteGradient.apply
