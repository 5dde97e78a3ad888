"""The paper's autoencoder: its new losses, Adam's two weight decays (AdamW's and the paper's
coupled L2), and the routed gradient with certificates on.

Every gradient is checked by central finite differences in float64 (rel_error < 1e-6), with a
negative control that proves the check can fail.
"""

import numpy as np
import pytest

from gr_numpy import losses
from gr_numpy.adam import Adam
from gr_numpy.autoencoder import Autoencoder, AutoencoderConfig
from gr_numpy.backend import ops
from gr_numpy.gradcheck import check_gradient, numerical_gradient
from gr_numpy.routing import halves

TOL = 1e-6


@pytest.fixture
def rng():
    return np.random.default_rng(17)


# ---------------------------------------------------------------------------- the losses
def test_mae_forward_and_gradient(rng):
    y, x = rng.normal(size=(5, 7)), rng.normal(size=(5, 7))
    loss, dy = losses.mae(y, x)
    assert loss == pytest.approx(np.abs(y - x).sum() / 35, rel=1e-14)
    check_gradient(dy, numerical_gradient(lambda: losses.mae(y, x)[0], y), TOL, "dy")


@pytest.mark.parametrize("N, P, Q", [(7, 3, 4), (9, 5, 5)])
def test_correlation_penalty_gradient(rng, N, P, Q):
    a = rng.normal(size=(N, P)) * rng.uniform(0.5, 3, P) + rng.normal(size=P)
    b = rng.normal(size=(N, Q)) + 0.5 * a[:, :1]          # some real correlation
    _, da, db = losses.correlation_penalty(a, b)
    check_gradient(da, numerical_gradient(lambda: losses.correlation_penalty(a, b)[0], a), TOL, "da")
    check_gradient(db, numerical_gradient(lambda: losses.correlation_penalty(a, b)[0], b), TOL, "db")


def test_correlation_penalty_gradient_is_finite_on_a_constant_column_and_at_two_rows(rng):
    """A column that never moves (a dead code dim) has sigma = 0: its spread path is 0 / 0
    unless the backward treats it; at N = 2 every correlation is +-1 (N - 1 = 1 in the spread)."""
    a, b = rng.normal(size=(6, 3)), rng.normal(size=(6, 2))
    a[:, 1] = 0.5                                           # constant (exactly: c = 0)
    loss, da, db = losses.correlation_penalty(a, b)
    assert np.isfinite(loss) and np.isfinite(da).all() and np.isfinite(db).all()
    live = [0, 2]                                           # the other columns: still checked
    f = lambda: losses.correlation_penalty(a, b)[0]
    check_gradient(da[:, live], numerical_gradient(f, a)[:, live], TOL, "da live columns")
    check_gradient(db, numerical_gradient(f, b), TOL, "db")
    a2, b2 = rng.normal(size=(2, 2)), rng.normal(size=(2, 3))
    loss, da2, db2 = losses.correlation_penalty(a2, b2)
    assert np.isfinite(loss) and np.isfinite(da2).all() and np.isfinite(db2).all()
    f2 = lambda: losses.correlation_penalty(a2, b2)[0]
    np.testing.assert_allclose(da2, numerical_gradient(f2, a2), atol=1e-6)


def test_correlation_penalty_forward_maths(rng):
    """Mean |Pearson r| times (N - 1) / N: the paper's standardisation (sample std) over N."""
    N, a, b = 11, rng.normal(size=(11, 3)), rng.normal(size=(11, 2))
    r = np.array([[np.corrcoef(a[:, i], b[:, j])[0, 1] for j in range(2)] for i in range(3)])
    loss, _, _ = losses.correlation_penalty(a, b, eps=0.0)
    assert loss == pytest.approx(np.abs(r).mean() * (N - 1) / N, rel=1e-12)


def test_correlation_penalty_eps0_folded_formula(rng):
    """The one-line form in the docstring (eps = 0) equals the step-by-step backward."""
    N, a, b = 8, rng.normal(size=(8, 3)), rng.normal(size=(8, 3))
    _, da, db = losses.correlation_penalty(a, b, eps=0.0)
    z = np.concatenate([a, b], axis=1)
    c = z - z.mean(0)
    sigma = np.sqrt((c * c).sum(0) / (N - 1))
    u = c / sigma
    R = u[:, :3].T @ u[:, 3:] / N
    dR = np.sign(R) / R.size
    du = np.concatenate([u[:, 3:] @ dR.T / N, u[:, :3] @ dR / N], axis=1)
    dz = (du - du.mean(0) - u * (du * u).sum(0) / (N - 1)) / sigma
    np.testing.assert_allclose(np.concatenate([da, db], axis=1), dz, rtol=1e-10, atol=1e-14)


def test_gradient_check_catches_a_correlation_backward_without_its_spread_path(rng, monkeypatch):
    """Negative control: dropping the path through the standard deviation must fail the check."""
    a, b = rng.normal(size=(7, 3)), rng.normal(size=(7, 4))

    def no_spread(a, b, eps=1e-8):                 # the forward as is, dc = du / s only
        N, P = a.shape
        z = np.concatenate([a, b], axis=1)
        c = z - z.mean(axis=0)
        s = np.sqrt((c * c).sum(axis=0) / (N - 1)) + eps
        u = c / s
        R = u[:, :P].T @ u[:, P:] / N
        dR = np.sign(R) / R.size
        du = np.concatenate([u[:, P:] @ dR.T / N, u[:, :P] @ dR / N], axis=1)
        dc = du / s
        dz = dc - dc.mean(axis=0)
        return float(np.abs(R).mean()), dz[:, :P], dz[:, P:]

    _, da, _ = no_spread(a, b)
    with pytest.raises(AssertionError, match="rel_error"):
        check_gradient(da, numerical_gradient(lambda: losses.correlation_penalty(a, b)[0], a),
                       TOL, "da")


# ---------------------------------------------------------------------------- weight decay
def test_adamw_step_worked_by_hand():
    """One step, by hand: p = 2, g = 0.5, lr = 0.1, wd = 0.01.
    Decay first: p = 2 * (1 - 0.1 * 0.01) = 1.998. Then m = 0.1 * 0.5 = 0.05, v = 0.001 * 0.25
    = 0.00025, m_hat = 0.05 / 0.1 = 0.5, v_hat = 0.00025 / 0.001 = 0.25, step = 0.1 * 0.5 /
    (0.5 + 1e-8): p = 1.998 - 0.09999999800000004 = 1.8980000020."""
    p = {"w": np.array([2.0])}
    opt = Adam(p, weight_decay=0.01)
    opt.step(p, {"w": np.array([0.5])}, lr=0.1)
    assert p["w"][0] == pytest.approx(1.998 - 0.1 * 0.5 / (0.5 + 1e-8), rel=1e-14)
    assert p["w"][0] == pytest.approx(1.898000002, rel=1e-12)


def test_adamw_decays_a_parameter_with_zero_gradient_and_adam_does_not():
    p, q = {"w": np.array([3.0])}, {"w": np.array([3.0])}
    Adam(p, weight_decay=0.1).step(p, {"w": np.array([0.0])}, lr=0.5)
    Adam(q).step(q, {"w": np.array([0.0])}, lr=0.5)
    assert p["w"][0] == pytest.approx(3.0 * (1 - 0.05), rel=1e-14)
    assert q["w"][0] == 3.0


def test_coupled_decay_two_steps_worked_by_hand():
    """Coupled (L2): wd * p joins the gradient, g' = g + wd * p, before the moments. lr = 0.1,
    wd = 0.01, p = (2, -3), gradients (0.5, 0) then (-0.1, 0).

    Step 1 (c1 = 0.1, c2 = 0.001): g' = (0.5 + 0.02, 0 - 0.03) = (0.52, -0.03); m_hat = g',
    v_hat = g'^2, so p moves by lr * g' / (|g'| + 1e-8):
      p0 = 2 - 0.1 * 0.52 / 0.52000001 = 1.900000001923077...
      p1 = -3 + 0.1 * 0.03 / 0.03000001 = -2.9000000333333222...
    The second parameter has no gradient of its own: the decay alone moved it 0.1 towards 0
    (AdamW would have moved it lr * wd * 3 = 0.003).
    Step 2 (c1 = 0.19, c2 = 0.001999), with p from step 1: g' = g + 0.01 * p, then m, v as
    Adam's, in plain Python floats below.
    """
    p = {"w": np.array([2.0, -3.0])}
    grads = [np.array([0.5, 0.0]), np.array([-0.1, 0.0])]
    opt = Adam(p, weight_decay=0.01, weight_decay_form="coupled")
    opt.step(p, {"w": grads[0]}, lr=0.1)
    assert p["w"][0] == pytest.approx(2 - 0.1 * 0.52 / (0.52 + 1e-8), rel=1e-14)
    assert p["w"][1] == pytest.approx(-3 + 0.1 * 0.03 / (0.03 + 1e-8), rel=1e-14)
    assert p["w"][0] == pytest.approx(1.900000001923077, rel=1e-13)
    assert p["w"][1] == pytest.approx(-2.9000000333333222, rel=1e-13)
    given = grads[1].copy()
    opt.step(p, {"w": grads[1]}, lr=0.1)
    np.testing.assert_array_equal(grads[1], given)         # the caller's gradient is untouched
    for i, (w, g1, g2) in enumerate([(2.0, 0.5, -0.1), (-3.0, 0.0, 0.0)]):
        m = v = 0.0
        for t, g in enumerate((g1, g2), start=1):
            g = g + 0.01 * w                                # the coupled decay
            m = 0.9 * m + 0.1 * g
            v = 0.999 * v + 0.001 * g * g
            w = w - 0.1 * (m / (1 - 0.9 ** t)) / ((v / (1 - 0.999 ** t)) ** 0.5 + 1e-8)
        assert p["w"][i] == pytest.approx(w, rel=1e-13), i


def test_coupled_and_decoupled_decay_differ_and_coupled_moves_an_idle_weight_by_about_lr():
    """Negative control: the same start and gradients, the two forms (and no decay) end apart.
    A weight without gradient: coupled moves it lr * sign(p) a step (Adam normalises wd * p),
    decoupled lr * wd * p."""
    rng = np.random.default_rng(3)
    start, gs = rng.normal(size=6), rng.normal(size=(5, 6))
    gs[:, 0] = 0.0                                          # weight 0 has no gradient of its own
    ends = {}
    for form in ("coupled", "decoupled", None):
        p = {"w": start.copy()}
        opt = Adam(p, weight_decay=0.1 if form else 0.0, weight_decay_form=form or "decoupled")
        for g in gs:
            opt.step(p, {"w": g}, lr=0.01)
        ends[form] = p["w"]
    assert np.abs(ends["coupled"] - ends["decoupled"]).max() > 1e-3
    assert np.abs(ends["decoupled"] - ends[None]).max() > 1e-6
    shrink = 1 - 0.01 * 0.1
    assert ends["decoupled"][0] == pytest.approx(start[0] * shrink ** 5, rel=1e-12)
    # About lr a step, not exactly: wd * p shrinks with p, and m_hat / sqrt(v_hat) lags it
    # (2e-5 short after five steps here). Decoupled, the same five steps moved it 0.01.
    assert ends["coupled"][0] == pytest.approx(start[0] - 5 * 0.01 * np.sign(start[0]), abs=1e-4)
    assert ends[None][0] == start[0]


def test_weight_decay_form_must_be_one_of_two():
    with pytest.raises(ValueError, match="weight_decay_form"):
        Adam({"w": np.zeros(2)}, weight_decay=0.1, weight_decay_form="l2")


@pytest.mark.parametrize("form", ["coupled", "decoupled"])
def test_both_backends_take_the_same_decayed_step(form):
    """float32, as in training: the numba kernel and the NumPy twin, after three steps."""
    rng = np.random.default_rng(5)
    start, gs = rng.normal(size=(4, 7)).astype(np.float32), rng.normal(size=(3, 4, 7))
    ends = {}
    for backend in ("numba", "numpy"):
        p = {"W": start.copy()}
        opt = Adam(p, weight_decay=0.05, weight_decay_form=form)
        with ops.using_backend(backend):
            for g in gs.astype(np.float32):
                opt.step(p, {"W": g}, lr=0.01)
        ends[backend] = p["W"]
    np.testing.assert_allclose(ends["numba"], ends["numpy"], rtol=1e-6, atol=1e-7)
    assert not np.allclose(ends["numba"], start)


# ---------------------------------------------------------------------------- the model
def tiny(rng, seed=5):
    """A float64 autoencoder 7 -> 5 -> 4 code (halves of 2) -> 6 -> 7, and a batch of 8."""
    cfg = AutoencoderConfig(input_dim=7, enc_hidden=(5,), dec_hidden=(6,), code=4,
                            l1_weights=(0.3, 0.2), corr_weight=0.7, dtype="float64")
    model = Autoencoder(cfg, rng=np.random.default_rng(seed), routing=halves(half=2))
    for name, p in model.params.items():          # non-zero biases, lively units
        if name.endswith(".b"):
            p += rng.uniform(0.2, 0.5, p.shape)
    x = rng.uniform(-1, 1, size=(8, 7))
    labels = np.array([0, 7, 3, 9, 4, 5, 1, 6])
    return model, x, labels


def mask_of_halves(labels, half):
    """Written out from the routing's description: a 0-4 trains dims 0..half-1, a 5-9 the rest."""
    m = np.zeros((len(labels), 2 * half))
    m[labels < 5, :half] = 1.0
    m[labels >= 5, half:] = 1.0
    return m


def surrogate_loss(model, x, m, z0, certificates_stopped=True):
    """L~(theta): the main decoder reads m * z(theta) + (1 - m) * z0; the penalties read z(theta);
    each certificate reads its half of z0 (a constant) — or of z(theta) if not stopped."""
    cfg, groups = model.config, model.routing.groups
    z = model.encoder_forward(x, {})
    y = model.decoder_forward(m * z + (1 - m) * z0, {}, "")
    loss = cfg.recon_weight * losses.mae(y, x)[0]
    code_read = z0 if certificates_stopped else z
    for g, dims in enumerate(groups):
        y_g = model.decoder_forward(code_read[:, dims], {}, f"cert{g}.")
        loss += cfg.certificate_weight * losses.mae(y_g, x)[0]
    for weight, dims in zip(cfg.l1_weights, groups):
        loss += weight * np.abs(z[:, dims]).sum() / len(x)
    loss += cfg.corr_weight * losses.correlation_penalty(z[:, groups[0]], z[:, groups[1]])[0]
    return loss


@pytest.mark.parametrize("routed", [True, False])
def test_gradient_equals_surrogate_loss_gradient_with_certificates(rng, routed):
    """Every parameter's gradient, encoder included, with the certificates on: the exact gradient
    of the surrogate loss whose masked-out code entries and certificate inputs are constants."""
    model, x, labels = tiny(rng)
    m = mask_of_halves(labels, 2) if routed else np.ones((8, 4))
    z0 = model.encoder_forward(x, {})
    surrogate = lambda: surrogate_loss(model, x, m, z0)
    losses_, grads = model.loss_and_grads(x, labels if routed else None)
    assert surrogate() == pytest.approx(losses_["loss"], rel=1e-13)
    for name, p in model.params.items():
        check_gradient(grads[name], numerical_gradient(surrogate, p), TOL, name)


def test_routing_changes_only_the_encoder_gradient(rng):
    model, x, labels = tiny(rng)
    _, routed = model.loss_and_grads(x, labels)
    _, plain = model.loss_and_grads(x, None)
    for name in model.params:
        if name.startswith(("enc", "code")):
            assert not np.allclose(routed[name], plain[name]), name
        else:
            np.testing.assert_array_equal(routed[name], plain[name], err_msg=name)


def test_surrogate_check_fails_for_the_wrong_mask(rng):
    """Negative control: the halves swapped (0-4 into dims 2-3) must fail the same check."""
    model, x, labels = tiny(rng)
    z0 = model.encoder_forward(x, {})
    wrong = 1 - mask_of_halves(labels, 2)
    _, grads = model.loss_and_grads(x, labels)
    with pytest.raises(AssertionError, match="rel_error"):
        check_gradient(grads["code.W"],
                       numerical_gradient(lambda: surrogate_loss(model, x, wrong, z0),
                                          model.params["code.W"]), TOL, "code.W")


def test_surrogate_check_fails_if_the_certificates_train_the_encoder(rng):
    """Negative control: certificates that read z(theta), not a constant, must fail the check."""
    model, x, labels = tiny(rng)
    z0 = model.encoder_forward(x, {})
    m = mask_of_halves(labels, 2)
    _, grads = model.loss_and_grads(x, labels)
    leaky = lambda: surrogate_loss(model, x, m, z0, certificates_stopped=False)
    with pytest.raises(AssertionError, match="rel_error"):
        check_gradient(grads["code.W"], numerical_gradient(leaky, model.params["code.W"]), TOL,
                       "code.W")


def test_the_autoencoder_refuses_a_routing_that_is_not_two_halves():
    from gr_numpy.routing import one_per_digit
    with pytest.raises(ValueError, match="two groups"):
        Autoencoder(AutoencoderConfig(code=10), routing=one_per_digit())


def test_certificate_mse_is_the_papers_per_digit_mean():
    # Table 2's metric: each test image's mean squared error, averaged per digit, then the digits
    # of a group averaged with equal weight (so a group's common digits do not count more).
    cfg = AutoencoderConfig(input_dim=784, enc_hidden=(8,), dec_hidden=(8,), code=4,
                            dtype="float64")
    model = Autoencoder(cfg, rng=np.random.default_rng(3), routing=halves(half=2))
    rng = np.random.default_rng(4)
    labels = np.repeat(np.arange(10), [1, 2, 3, 4, 5, 6, 1, 2, 3, 9])      # unequal counts
    images = rng.integers(0, 256, size=(len(labels), 28, 28), dtype=np.uint8)
    scores = model.score(images, labels, batch_size=7)
    x = model.to_input(images)
    z = model.encode(x)
    for name, cert in (("first", 0), ("second", 1)):
        err = ((model.decode_certificate(z, cert) - x) ** 2).mean(axis=1)
        per_digit = np.array([err[labels == d].mean() for d in range(10)])
        want = {"0-4": per_digit[:5].mean(), "5-9": per_digit[5:].mean()}
        assert scores["certificates_mse"][name] == pytest.approx(want, rel=1e-12)
        image_weighted = err[labels < 5].mean()                            # the wrong average
        assert abs(scores["certificates_mse"][name]["0-4"] - image_weighted) > 1e-6
        own, other = ("0-4", "5-9") if name == "first" else ("5-9", "0-4")
        assert scores["mse_ratios"][name] == pytest.approx(want[other] / want[own], rel=1e-12)
