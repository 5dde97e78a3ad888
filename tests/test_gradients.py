"""Every backward pass against central finite differences, in float64.

Sizes are small and mostly odd (3, 5, 7, and 4), upstream gradients are random (never all ones), biases are
non-zero, and inputs to ReLUs are kept away from the kink at 0, where the derivative jumps.
"""

import numpy as np
import pytest

from gr_numpy import layers, losses
from gr_numpy.backend import numpy_ops
from gr_numpy.gradcheck import check_gradient, numerical_gradient, numerical_gradient_array
from gr_numpy.model import VAE, VAEConfig
from gr_numpy.routing import halves, one_per_digit, two_per_digit

TOL = 1e-6


def off_kink(a, margin=0.05):
    """Move entries within `margin` of 0 out to +-margin, so a ReLU's derivative is well defined."""
    a = a.copy()
    small = np.abs(a) < margin
    a[small] = np.where(a[small] >= 0, margin, -margin)
    return a


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


# ------------------------------------------------------------------------- single layers
@pytest.mark.parametrize("bias", [True, False])
def test_linear_backward(rng, bias):
    x, W = rng.normal(size=(3, 5)), rng.normal(size=(5, 7))
    b = rng.normal(size=7) if bias else None
    dy = rng.normal(size=(3, 7))
    out, cache = layers.linear_forward(x, W, b)
    np.testing.assert_allclose(out, x @ W + (b if bias else 0), rtol=1e-12)
    dx, dW, db = layers.linear_backward(dy, cache)
    f = lambda: layers.linear_forward(x, W, b)[0]
    check_gradient(dx, numerical_gradient_array(f, x, dy), TOL, "dx")
    check_gradient(dW, numerical_gradient_array(f, W, dy), TOL, "dW")
    if bias:
        check_gradient(db, numerical_gradient_array(f, b, dy), TOL, "db")
    else:
        assert db is None


@pytest.mark.parametrize("act", [None, "relu", "elu"])
def test_backward_without_input_gradient_gives_the_same_weight_gradients(rng, act):
    # need_dx=False (for a first layer, whose input is the data) leaves dx out, nothing else.
    x, W, b, dy = rng.normal(size=(3, 5)), rng.normal(size=(5, 7)), rng.normal(size=7), \
        rng.normal(size=(3, 7))
    if act is None:
        forward, backward = layers.linear_forward, layers.linear_backward
    else:
        forward, backward = layers.LINEAR_ACTIVATIONS[act]
    cache = forward(x, W, b)[1]
    dx, dW, db = backward(dy, cache)
    no_dx, dW_again, db_again = backward(dy, cache, need_dx=False)
    assert dx is not None and no_dx is None
    np.testing.assert_array_equal(dW_again, dW)
    np.testing.assert_array_equal(db_again, db)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("act", ["relu", "elu"])
def test_linear_activation_backward(rng, act, bias):
    """The fused hidden layer h = act(x @ W + b): its forward maths and every gradient."""
    forward, backward = layers.LINEAR_ACTIVATIONS[act]
    x, W = rng.normal(size=(3, 5)), rng.normal(size=(5, 7))
    b = rng.normal(size=7) if bias else None
    x = x + 0.3 * np.sign(x)                     # keep x @ W + b off the ReLU kink (checked below)
    a = x @ W + (b if bias else 0)
    assert np.abs(a).min() > 0.05, "pre-activation on the kink; change the seed"
    dh = rng.normal(size=(3, 7))
    dh_before = dh.copy()
    h, cache = forward(x, W, b)
    act_forward = {"relu": lambda a: np.maximum(a, 0), "elu": numpy_ops.elu}[act]
    np.testing.assert_allclose(h, act_forward(a), rtol=1e-12, atol=1e-15)
    dx, dW, db = backward(dh, cache)
    np.testing.assert_array_equal(dh, dh_before)       # the incoming gradient is not modified
    f = lambda: forward(x, W, b)[0]
    check_gradient(dx, numerical_gradient_array(f, x, dh), TOL, f"linear_{act} dx")
    check_gradient(dW, numerical_gradient_array(f, W, dh), TOL, f"linear_{act} dW")
    if bias:
        check_gradient(db, numerical_gradient_array(f, b, dh), TOL, f"linear_{act} db")
    else:
        assert db is None


def elu_forward(x):                     # the ELU's forward is fused into linear_elu_forward
    out = numpy_ops.elu(x)
    return out, out


@pytest.mark.parametrize("name", ["relu", "elu"])
def test_activation_backward(rng, name):
    forward, backward = {"relu": (layers.relu_forward, layers.relu_backward),
                         "elu": (elu_forward, layers.elu_backward)}[name]
    x = off_kink(rng.normal(size=(4, 5)) * 2)
    dout = rng.normal(size=(4, 5))
    dout_before = dout.copy()
    _, cache = forward(x)
    dx = backward(dout, cache)
    np.testing.assert_array_equal(dout, dout_before)   # the incoming gradient is not modified
    check_gradient(dx, numerical_gradient_array(lambda: forward(x)[0], x, dout), TOL, f"{name} dx")


def test_style_product_forward_maths_and_backward(rng):
    """u = [z_d, vec(z_d outer z_s)]: column K + k*S + s is z_d[:, k] * z_s[:, s]."""
    N, K, S = 3, 5, 4
    z_d, z_s = rng.normal(size=(N, K)), rng.normal(size=(N, S))
    u, cache = layers.style_product_forward(z_d, z_s)
    assert u.shape == (N, K + K * S)
    np.testing.assert_array_equal(u[:, :K], z_d)
    for k in range(K):
        for s in range(S):
            np.testing.assert_allclose(u[:, K + k * S + s], z_d[:, k] * z_s[:, s], rtol=1e-15)
    du = rng.normal(size=(N, K + K * S))
    du_before = du.copy()
    dz_d, dz_s = layers.style_product_backward(du, cache)
    np.testing.assert_array_equal(du, du_before)       # the incoming gradient is not modified
    f = lambda: layers.style_product_forward(z_d, z_s)[0]
    check_gradient(dz_d, numerical_gradient_array(f, z_d, du), TOL, "style product dz_d")
    check_gradient(dz_s, numerical_gradient_array(f, z_s, du), TOL, "style product dz_s")


def test_style_shared_forward_maths_and_backward(rng):
    """u = [z_d, m * z_s], m = sum_k z_d[:, k]: one set of style columns for every digit."""
    N, K, S = 3, 5, 4
    z_d, z_s = rng.normal(size=(N, K)), rng.normal(size=(N, S))
    u, cache = layers.style_shared_forward(z_d, z_s)
    assert u.shape == (N, K + S)
    np.testing.assert_array_equal(u[:, :K], z_d)
    np.testing.assert_allclose(u[:, K:], z_d.sum(1)[:, None] * z_s, rtol=1e-15)
    du = rng.normal(size=(N, K + S))
    du_before = du.copy()
    dz_d, dz_s = layers.style_shared_backward(du, cache)
    np.testing.assert_array_equal(du, du_before)
    f = lambda: layers.style_shared_forward(z_d, z_s)[0]
    check_gradient(dz_d, numerical_gradient_array(f, z_d, du), TOL, "style shared dz_d")
    check_gradient(dz_s, numerical_gradient_array(f, z_s, du), TOL, "style shared dz_s")


@pytest.mark.parametrize("kind", ["outer", "shared"])
def test_style_input_of_a_zero_digit_code_is_zero_whatever_the_style(rng, kind):
    """Why style alone cannot draw a digit: with z_d = 0 the decoder's input is all zeros."""
    forward, _ = layers.STYLE_INPUTS[kind]
    u, _ = forward(np.zeros((3, 5)), rng.normal(size=(3, 4)) * 10)
    np.testing.assert_array_equal(u, 0.0)


def test_gradient_check_catches_a_style_product_missing_its_direct_path(rng):
    """Negative control: forget that z_d also reaches u directly, and the check must fail."""
    z_d, z_s = rng.normal(size=(3, 5)), rng.normal(size=(3, 4))
    du = rng.normal(size=(3, 5 + 20))
    _, cache = layers.style_product_forward(z_d, z_s)
    dz_d, _ = layers.style_product_backward(du, cache)
    wrong = dz_d - du[:, :5]                            # the product path alone
    numeric = numerical_gradient_array(lambda: layers.style_product_forward(z_d, z_s)[0], z_d, du)
    with pytest.raises(AssertionError, match="rel_error"):
        check_gradient(wrong, numeric, TOL, "dz_d")


def test_sigmoid_is_finite_for_large_inputs():
    out, _ = layers.sigmoid_forward(np.array([-1000.0, 0.0, 1000.0]))
    np.testing.assert_allclose(out, [0.0, 0.5, 1.0])


@pytest.mark.parametrize("name", ["bce", "sse"])
def test_reconstruction_loss_gradient(rng, name):
    loss_fn = losses.RECONSTRUCTION_LOSSES[name]
    logits, x = rng.normal(size=(3, 7)) * 2, rng.uniform(size=(3, 7))
    _, dlogits = loss_fn(logits, x)
    check_gradient(dlogits, numerical_gradient(lambda: loss_fn(logits, x)[0], logits), TOL, name)


def test_bce_matches_its_definition(rng):
    logits, x = rng.normal(size=(3, 7)), rng.uniform(size=(3, 7))
    s = 1 / (1 + np.exp(-logits))
    expected = -(x * np.log(s) + (1 - x) * np.log(1 - s)).sum() / 3
    np.testing.assert_allclose(losses.bce_with_logits(logits, x)[0], expected, rtol=1e-12)


def test_kl_gradient(rng):
    mu, logvar = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
    _, dmu, dlogvar = losses.kl_normal(mu, logvar)
    f = lambda: losses.kl_normal(mu, logvar)[0]
    check_gradient(dmu, numerical_gradient(f, mu), TOL, "dmu")
    check_gradient(dlogvar, numerical_gradient(f, logvar), TOL, "dlogvar")


def test_l1_gradient(rng):
    z = off_kink(rng.normal(size=(3, 4)))
    _, dz = losses.l1_penalty(z)
    check_gradient(dz, numerical_gradient(lambda: losses.l1_penalty(z)[0], z), TOL, "dz")


def test_reparameterize_gradient(rng):
    mu, logvar, eps = rng.normal(size=(3, 4)), rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
    dz = rng.normal(size=(3, 4))
    _, cache = losses.reparameterize_forward(mu, logvar, eps)
    dmu, dlogvar = losses.reparameterize_backward(dz, cache)
    f = lambda: losses.reparameterize_forward(mu, logvar, eps)[0]
    check_gradient(dmu, numerical_gradient_array(f, mu, dz), TOL, "dmu")
    check_gradient(dlogvar, numerical_gradient_array(f, logvar, dz), TOL, "dlogvar")


# ------------------------------------------------------------------------- forward maths
def test_kl_matches_numerical_integral():
    """KL(q || p) = integral of q log(q / p), computed on a fine grid, one dim at a time."""
    mu = np.array([[0.0, 1.5, -0.7]])
    logvar = np.array([[0.0, -1.2, 0.8]])
    grid = np.linspace(-15, 15, 200001)
    dx = grid[1] - grid[0]
    total = 0.0
    for m, lv in zip(mu[0], logvar[0]):
        var = np.exp(lv)
        log_q = -0.5 * np.log(2 * np.pi * var) - (grid - m) ** 2 / (2 * var)
        log_p = -0.5 * np.log(2 * np.pi) - grid ** 2 / 2
        total += np.sum(np.exp(log_q) * (log_q - log_p)) * dx
    kl, _, _ = losses.kl_normal(mu, logvar)
    np.testing.assert_allclose(kl, total, rtol=1e-6)


def test_reparameterized_samples_have_mean_mu_and_std_exp_half_logvar():
    """logvar is a log-variance: the std is exp(logvar / 2), not exp(logvar)."""
    rng = np.random.default_rng(0)
    M = 400_000
    mu = np.array([0.5, -1.0, 2.0])
    logvar = np.array([1.0, -2.0, 0.5])               # std 1.65, 0.37, 1.28; exp(logvar) differs
    eps = rng.standard_normal((M, 3))
    z, _ = losses.reparameterize_forward(np.tile(mu, (M, 1)), np.tile(logvar, (M, 1)), eps)
    np.testing.assert_allclose(z.mean(0), mu, atol=0.01)
    np.testing.assert_allclose(z.std(0), np.exp(logvar / 2), rtol=0.01)
    assert np.all(np.abs(z.std(0) - np.exp(logvar)) > 0.1)


# ------------------------------------------------------------------------- the whole model
def tiny_model(rng, routing=None, **overrides):
    """A float64 VAE with small sizes: 7 pixels -> 5 -> 4 -> K=3 -> 4 -> 5 -> 7."""
    kwargs = dict(input_dim=7, enc_hidden=(5, 4), dec_hidden=(4, 5), latent=3, dtype="float64",
                  kl_weight=0.7, recon_weight=1.3, l1_weight=0.4)
    kwargs.update(overrides)
    model = VAE(VAEConfig(**kwargs), rng=rng, routing=routing)
    for k in model.params:                                  # non-zero biases, larger weights
        model.params[k] += rng.normal(scale=0.3, size=model.params[k].shape)
    return model


def batch(rng, N=6, D=7, K=3, S=0):
    x = rng.uniform(size=(N, D))
    eps = rng.normal(size=(N, K + S))
    labels = np.arange(N) % K
    return x, eps, labels


def assert_off_kinks(model, x, eps, margin=1e-4):
    """The finite-difference step must not cross a ReLU kink: check every ReLU's input."""
    cfg, cache = model.config, {}
    _, _, z = model.encoder_forward(x, eps, cache)
    model.decoder_forward(z, cache)
    # A hidden layer caches ((x, W, b), h); its ReLU's input is x @ W + b.
    pre_activation = lambda layer: layer[0][0] @ layer[0][1] + (0 if layer[0][2] is None
                                                                else layer[0][2])
    relu_inputs = [pre_activation(layer) for layer in cache["enc"] if cfg.enc_act == "relu"]
    relu_inputs += [pre_activation(layer) for layer in cache["dec"] if cfg.dec_act == "relu"]
    relu_inputs += [cache["relu_z"]] if cfg.relu_z else []      # the digit dims' sample
    for a in relu_inputs:
        assert np.abs(a).min() > margin, "test data sits on a ReLU kink; change the seed"


def loss_of(model, x, eps):
    return model.forward(x, eps)[0]["loss"]


@pytest.mark.parametrize("overrides", [
    dict(),                                                   # the default recipe: ELU decoder
    dict(dec_act="relu", dec_hidden_bias=True),
    dict(recon="sse", relu_z=False),
    dict(enc_act="elu", enc_hidden=(5,), dec_hidden=(6, 4, 5)),
    dict(style=2, style_kl_weight=1.9),                        # style dims: K + S = 3 + 2
    dict(style=3, style_kl_weight=0.6, relu_z=False, recon="sse"),
    dict(style=2, style_kl_weight=1.3, style_input="shared"),
], ids=["default", "relu-bias", "sse-noreluz", "odd-depth", "style", "style-sse-noreluz",
        "style-shared"])
def test_unrouted_loss_gradient_every_parameter(overrides):
    rng = np.random.default_rng(7)
    model = tiny_model(rng, **overrides)
    x, eps, _ = batch(rng, S=model.config.style)
    assert_off_kinks(model, x, eps)
    _, grads = model.loss_and_grads(x, labels=None, eps=eps)
    assert set(grads) == set(model.params)
    for name, p in model.params.items():
        numeric = numerical_gradient(lambda: loss_of(model, x, eps), p)
        check_gradient(grads[name], numeric, TOL, name)


# Every routing the code offers, with the dims each label may train written out here, from the
# routing's description (not by asking the code under test): label -> its group's dims.
ROUTINGS = {
    "one-per-digit": (one_per_digit, lambda label: [label]),
    "two-per-digit": (two_per_digit, lambda label: [2 * label, 2 * label + 1]),
    "halves": (halves, lambda label: list(range(16)) if label < 5 else list(range(16, 32))),
}
ROUTED_CASES = [(name, style, style_input) for name in ROUTINGS for style, style_input in
                [(0, "outer"), (2, "outer")]] + [("one-per-digit", 3, "shared")]


def routed_model_and_batch(name, style, style_input, seed=11):
    """A tiny float64 VAE with the named routing (K from the routing), a batch of 7 images
    with labels from 0..9, and the mask m written out from the routing's description."""
    make, dims_of = ROUTINGS[name]
    routing = make(style=style)
    K = routing.routed_dims
    rng = np.random.default_rng(seed)
    model = tiny_model(rng, latent=K, style=style, style_kl_weight=1.7, style_input=style_input,
                       routing=routing)
    x, eps, _ = batch(rng, N=7, K=K, S=style)
    labels = np.array([3, 7, 0, 9, 5, 4, 3])
    m = np.zeros((len(x), K + style))                             # (N, K + S)
    for n, label in enumerate(labels):
        m[n, dims_of(label)] = 1.0                                # the label's group
    m[:, K:] = 1.0                                                # style dims: every image
    return model, x, eps, labels, m


def surrogate_loss(model, x, eps, m, z0):
    """recon(decoder(m * z(theta) + (1 - m) * z0)) + KL(theta) + L1(z(theta)): the loss whose
    exact gradient routing claims to be, with the masked-out entries of z held at z0."""
    cfg, K = model.config, model.config.latent
    mu, logvar, z = model.encoder_forward(x, eps, {})
    logits = model.decoder_forward(m * z + (1 - m) * z0, {})
    recon, _ = losses.RECONSTRUCTION_LOSSES[cfg.recon](logits, x)
    kl_d, _, _ = losses.kl_normal(mu[:, :K], logvar[:, :K])
    kl_s, _, _ = losses.kl_normal(mu[:, K:], logvar[:, K:])
    l1, _ = losses.l1_penalty(z[:, :K])                           # label-free terms see all of z_d
    return (cfg.recon_weight * recon + cfg.kl_weight * kl_d + cfg.style_kl_weight * kl_s
            + cfg.l1_weight * l1)


ENCODER = ("enc", "mu.", "logvar.")


@pytest.mark.parametrize("name, style, style_input", ROUTED_CASES,
                         ids=[f"{n}-S{s}-{i}" for n, s, i in ROUTED_CASES])
def test_routed_gradient_equals_surrogate_loss_gradient(name, style, style_input):
    """Routing = the exact gradient of a loss whose z has its masked entries held constant.

    Surrogate: recon(decoder(m * z(theta) + (1 - m) * z(theta0))) + KL(theta) + L1(z(theta)),
    where m[n] is 1 on the dims of label n's group and on the S style dims, and theta0 are the
    current parameters. For every routing the code offers, with and without style dims.
    """
    model, x, eps, labels, m = routed_model_and_batch(name, style, style_input)
    assert_off_kinks(model, x, eps)
    _, _, z0 = model.encoder_forward(x, eps, {})                  # z at theta0, frozen
    surrogate = lambda: surrogate_loss(model, x, eps, m, z0)

    np.testing.assert_allclose(surrogate(), loss_of(model, x, eps), rtol=1e-13)
    _, routed = model.loss_and_grads(x, labels=labels, eps=eps)
    _, plain = model.loss_and_grads(x, labels=None, eps=eps)
    for pname, p in model.params.items():
        if pname.startswith(ENCODER):
            check_gradient(routed[pname], numerical_gradient(surrogate, p), TOL, pname)
        else:                                                  # the decoder does not see routing
            np.testing.assert_array_equal(routed[pname], plain[pname], err_msg=pname)
    # Not vacuous: routing does change the encoder's gradient here.
    assert not np.allclose(routed["enc0.W"], plain["enc0.W"])


@pytest.mark.parametrize("name", list(ROUTINGS))
def test_surrogate_check_fails_for_the_wrong_mask(name):
    """Negative control: the same check, with each label given the next label's dims (or, for
    halves, the other half), must fail; so must the plain, unrouted gradient."""
    model, x, eps, labels, m = routed_model_and_batch(name, 0, "outer")
    shifted = (labels + 5) % 10 if name == "halves" else (labels + 1) % 10
    dims_of = ROUTINGS[name][1]
    m_shifted = np.zeros_like(m)
    for n, label in enumerate(shifted):
        m_shifted[n, dims_of(label)] = 1.0
    _, _, z0 = model.encoder_forward(x, eps, {})
    numeric = numerical_gradient(lambda: surrogate_loss(model, x, eps, m_shifted, z0),
                                 model.params["mu.b"])
    _, routed = model.loss_and_grads(x, labels=labels, eps=eps)
    _, plain = model.loss_and_grads(x, labels=None, eps=eps)
    for grads in (routed, plain):
        with pytest.raises(AssertionError, match="rel_error"):
            check_gradient(grads["mu.b"], numeric, TOL, "mu.b")


def test_routed_encoder_ignores_non_label_entries_of_dz():
    rng = np.random.default_rng(3)
    model = tiny_model(rng, relu_z=False)
    x, eps, labels = batch(rng)
    _, cache = model.forward(x, eps)
    dz = rng.normal(size=(len(x), 3))
    dz_other = dz + (1 - np.eye(3)[labels]) * rng.normal(size=dz.shape)  # only non-label entries
    for routed in (True, False):
        def encoder_grads(dz):                    # what VAE.backward does after the decoder
            mask = model.routing.mask(labels) if routed else 1.0
            return model.encoder_backward(dz * mask, cache, {})
        g1, g2 = encoder_grads(dz), encoder_grads(dz_other)
        for name in g1:
            if routed:
                np.testing.assert_array_equal(g1[name], g2[name], err_msg=name)
            else:
                assert not np.array_equal(g1[name], g2[name]), name


def test_without_routing_non_label_columns_reach_the_encoder():
    """Negative control: all images are '0'; only routing keeps dims 1..K-1 out of mu's bias grad."""
    rng = np.random.default_rng(5)
    model = tiny_model(rng, relu_z=False, kl_weight=0.0, l1_weight=0.0)
    x, eps, _ = batch(rng)
    zeros = np.zeros(len(x), dtype=int)
    _, routed = model.loss_and_grads(x, labels=zeros, eps=eps)
    _, plain = model.loss_and_grads(x, labels=None, eps=eps)
    np.testing.assert_array_equal(routed["mu.b"][1:], 0.0)
    assert np.all(plain["mu.b"][1:] != 0.0)
    assert routed["mu.b"][0] == pytest.approx(plain["mu.b"][0], rel=1e-12)


def test_gradient_check_catches_a_wrong_backward(monkeypatch):
    """Negative control: drop the 0.5 in d z / d logvar and the check must fail."""
    rng = np.random.default_rng(7)
    model = tiny_model(rng, relu_z=False)
    x, eps, _ = batch(rng)

    def wrong_backward(dz, cache):
        std, e = cache
        return dz.copy(), dz * e * std                         # missing factor 0.5

    monkeypatch.setattr("gr_numpy.model.reparameterize_backward", wrong_backward)
    _, grads = model.loss_and_grads(x, eps=eps)
    numeric = numerical_gradient(lambda: loss_of(model, x, eps), model.params["logvar.b"])
    with pytest.raises(AssertionError, match="rel_error"):
        check_gradient(grads["logvar.b"], numeric, TOL, "logvar.b")


def test_gradient_check_catches_a_transposed_weight_gradient(rng):
    """Negative control on a layer: dW computed as dy.T @ x (transposed) cannot pass."""
    x, W, dy = rng.normal(size=(4, 4)), rng.normal(size=(4, 4)), rng.normal(size=(4, 4))
    numeric = numerical_gradient_array(lambda: x @ W, W, dy)
    with pytest.raises(AssertionError):
        check_gradient((dy.T @ x), numeric, TOL, "dW")


def test_routing_leaves_the_style_dims_gradient_alone():
    """All images are '0': routing zeroes mu.b's digit dims 1..K-1 but not the S style dims."""
    rng = np.random.default_rng(5)
    model = tiny_model(rng, relu_z=False, kl_weight=0.0, l1_weight=0.0, style=2)
    x, eps, _ = batch(rng, S=2)
    zeros = np.zeros(len(x), dtype=int)
    _, routed = model.loss_and_grads(x, labels=zeros, eps=eps)
    _, plain = model.loss_and_grads(x, labels=None, eps=eps)
    np.testing.assert_array_equal(routed["mu.b"][1:3], 0.0)
    assert np.all(plain["mu.b"][1:3] != 0.0)
    np.testing.assert_array_equal(routed["mu.b"][3:], plain["mu.b"][3:])
    assert np.all(routed["mu.b"][3:] != 0.0)
