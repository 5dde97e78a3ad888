"""The model's API, its input checks, and Adam; gradients themselves are in test_gradients.py."""

from dataclasses import replace

import numpy as np
import pytest

from gr_numpy.adam import Adam, cosine_decay, exponential_decay, linear_warmup
from gr_numpy.model import VAE, VAEConfig, layer_shapes
from gr_numpy.routing import Routing, halves, one_per_digit, two_per_digit
from gr_numpy.training import TrainConfig, kl_scale_of, schedule_of


@pytest.fixture
def model():
    cfg = VAEConfig(input_dim=12, enc_hidden=(9,), dec_hidden=(9,), latent=4)
    return VAE(cfg, rng=np.random.default_rng(0))


def test_parameters_and_gradients_share_names_shapes_and_dtype(model):
    x = np.random.default_rng(1).uniform(size=(5, 12)).astype(np.float32)
    losses, grads = model.loss_and_grads(x, labels=np.array([0, 1, 2, 3, 0]))
    assert set(grads) == set(model.params) == set(layer_shapes(model.config))
    for k, p in model.params.items():
        assert grads[k].shape == p.shape and grads[k].dtype == np.float32, k
    assert set(losses) == {"loss", "recon", "kl", "l1"}
    assert losses["loss"] == pytest.approx(losses["recon"] + 0.5 * losses["kl"], rel=1e-6)  # 0.5 KL


def test_decoder_hidden_layers_have_no_bias_by_default(model):
    assert "dec0.b" not in model.params and "out.b" in model.params
    with_bias = VAE(VAEConfig(input_dim=12, enc_hidden=(9,), dec_hidden=(9,), latent=4,
                              dec_hidden_bias=True))
    assert "dec0.b" in with_bias.params


def test_encode_decode_shapes_and_ranges(model):
    x = np.random.default_rng(1).uniform(size=(2500, 12))
    mu = model.encode(x)
    assert mu.shape == (2500, 4)
    np.testing.assert_allclose(model.code(x), np.maximum(mu, 0))
    images = model.decode(model.code(x))
    assert images.shape == (2500, 12) and images.min() >= 0 and images.max() <= 1
    assert model.decode(np.ones(4)).shape == (1, 12)       # one code as a 1-D vector


def test_one_per_digit_mask_is_one_hot():
    mask = one_per_digit(digits=3).mask(np.array([2, 0, 1]))
    np.testing.assert_array_equal(mask, [[0, 0, 1], [1, 0, 0], [0, 1, 0]])


def test_one_per_digit_mask_is_one_hot_over_digits_and_ones_over_style():
    mask = one_per_digit(style=2, digits=3).mask(np.array([2, 0]))
    np.testing.assert_array_equal(mask, [[0, 0, 1, 1, 1], [1, 0, 0, 1, 1]])


def test_two_per_digit_and_halves_masks():
    two = two_per_digit(style=1).mask(np.array([3, 0]))
    assert two.shape == (2, 21)
    np.testing.assert_array_equal(np.flatnonzero(two[0]), [6, 7, 20])     # dims 6, 7; style
    np.testing.assert_array_equal(np.flatnonzero(two[1]), [0, 1, 20])
    half = halves().mask(np.array([4, 5]))
    np.testing.assert_array_equal(half[0], [1] * 16 + [0] * 16)           # 0-4: first half
    np.testing.assert_array_equal(half[1], [0] * 16 + [1] * 16)           # 5-9: second half


def test_read_group_takes_the_group_with_the_largest_mean():
    routing = Routing("test", [[0, 1], [2, 3, 4]], [0, 1, 1], code_dim=6)
    mu = np.array([[1.0, 1.0, 0.0, 0.0, 2.9, 50.0],     # means 1.0 vs 0.97: group 0; free dim 5
                   [1.0, 1.0, 0.0, 0.0, 3.1, -50.0]])   # 1.0 vs 1.03: group 1
    np.testing.assert_array_equal(routing.read_group(mu), [0, 1])
    np.testing.assert_allclose(routing.group_scores(mu)[0], [1.0, 2.9 / 3])


def test_prototypes_and_switch_keep_the_free_dims():
    routing = two_per_digit(style=1)
    codes = np.zeros((4, 21))
    codes[0, [6, 7, 20]] = [1.0, 2.0, 5.0]           # a 3
    codes[1, [6, 7, 20]] = [3.0, 4.0, -5.0]          # another 3
    codes[2, [0, 1]] = [0.5, 0.0]                    # a 0
    labels = np.array([3, 3, 0, 9])                  # the 9 is all zero: its fallback is used
    proto = routing.prototypes(codes, labels, fallback=np.full(21, 7.0))
    np.testing.assert_allclose(proto[3, 6:8], [2.0, 3.0])        # medians of dims 6, 7 over 3s
    np.testing.assert_allclose(proto[0, 0:2], [0.5, 0.0])
    np.testing.assert_allclose(proto[9, 18:20], [7.0, 7.0])
    np.testing.assert_allclose(proto[1], np.r_[[0, 0, 7, 7], np.zeros(17)])  # no 1s: fallback
    assert proto[3].sum() == 5.0                                 # zero outside the group
    switched = routing.switch(codes[:1], 0, proto)
    np.testing.assert_allclose(switched[0], np.r_[[0.5, 0.0], np.zeros(18), [5.0]])


def test_routing_round_trips_and_refuses_a_bad_description():
    for r in (one_per_digit(style=6), two_per_digit(), halves()):
        assert Routing.from_dict(r.to_dict()) == r
    with pytest.raises(ValueError, match="cover dims"):
        Routing("gap", [[0], [2]], [0, 1], code_dim=3)
    with pytest.raises(ValueError, match="label_group"):
        Routing("bad", [[0], [1]], [0, 2], code_dim=2)


def test_model_refuses_a_routing_of_another_width(model):
    with pytest.raises(ValueError, match="routing halves"):
        VAE(model.config, routing=halves())


@pytest.fixture
def style_model():
    cfg = VAEConfig(input_dim=12, enc_hidden=(9,), dec_hidden=(9, 7), latent=4, style=3)
    return VAE(cfg, rng=np.random.default_rng(0))


def test_style_model_shapes_code_and_read_out(style_model):
    x = np.random.default_rng(1).uniform(size=(50, 12))
    assert style_model.params["mu.W"].shape == (9, 4 + 3)
    assert style_model.params["dec0.W"].shape == (4 + 4 * 3, 9)      # [z_d, vec(z_d outer z_s)]
    mu = style_model.encode(x)
    assert mu.shape == (50, 7)
    code = style_model.code(x)
    np.testing.assert_allclose(code[:, :4], np.maximum(mu[:, :4], 0))   # ReLU on digit dims
    np.testing.assert_allclose(code[:, 4:], mu[:, 4:])                  # style dims as they are
    np.testing.assert_array_equal(style_model.routing.read_group(mu),   # style dims never vote
                                  np.argmax(mu[:, :4], axis=1))
    assert style_model.decode(code).shape == (50, 12)
    with pytest.raises(ValueError, match=r"\(N, 7\)"):
        style_model.decode(np.zeros((2, 4)))
    with pytest.raises(ValueError, match="eps"):
        style_model.loss_and_grads(x, eps=np.zeros((50, 4)))


def test_all_zero_digit_code_decodes_to_one_picture_whatever_the_style(style_model):
    """The product input makes the output independent of style when z_d = 0; the bias-free
    hidden layers make that one picture sigmoid(b_out), a faint digit-less blur."""
    rng = np.random.default_rng(2)
    codes = np.concatenate([np.zeros((5, 4)), rng.normal(scale=5, size=(5, 3))], axis=1)
    blank = 1 / (1 + np.exp(-style_model.params["out.b"].astype(np.float64)))
    np.testing.assert_allclose(style_model.decode(codes), np.tile(blank, (5, 1)), rtol=1e-6)


def test_style_kl_weight_multiplies_only_the_style_dims_kl(style_model):
    """loss = recon + kl_weight * KL_digit + style_kl_weight * KL_style: raising the style
    weight from 1 to 3 adds exactly 2 * KL_style, and the reported KL is unweighted."""
    x = np.random.default_rng(1).uniform(size=(6, 12))
    eps = np.random.default_rng(3).normal(size=(6, 7))
    style_model.params = {k: p.astype(np.float64) for k, p in style_model.params.items()}
    style_model.config.dtype = "float64"
    mu, logvar, _ = style_model.encoder_forward(x, eps, {})
    kl_s = 0.5 * (mu[:, 4:] ** 2 + np.exp(logvar[:, 4:]) - 1 - logvar[:, 4:]).sum() / 6
    style_model.config.style_kl_weight = 1.0
    l_a, _ = style_model.loss_and_grads(x, eps=eps)
    style_model.config.style_kl_weight = 3.0
    l_b, _ = style_model.loss_and_grads(x, eps=eps)
    assert l_a["kl"] == pytest.approx(l_b["kl"], rel=1e-12)
    assert l_b["loss"] - l_a["loss"] == pytest.approx(2 * kl_s, rel=1e-9)


def test_style_zero_is_todays_model():
    """S = 0 draws the same parameters, in the same order, as a config without the field."""
    cfg = dict(input_dim=12, enc_hidden=(9,), dec_hidden=(9,), latent=4)
    a = VAE(VAEConfig(**cfg), rng=np.random.default_rng(0))
    b = VAE(VAEConfig(**cfg, style=0, style_kl_weight=2.0), rng=np.random.default_rng(0))
    assert list(a.params) == list(b.params)
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k])
    with pytest.raises(ValueError, match="style"):
        VAEConfig(style=-1)


@pytest.mark.parametrize("bad, message", [
    (np.zeros((3, 11), np.float32), r"shape \(N, 12\)"),
    (np.zeros(12, np.float32), r"shape \(N, 12\)"),
    (np.zeros((3, 12), np.uint8), "to_input"),
    (np.full((3, 12), np.nan, np.float32), "NaN"),
])
def test_bad_x_gives_one_line_value_error(model, bad, message):
    for call in (model.loss_and_grads, model.encode):
        with pytest.raises(ValueError, match=message) as info:
            call(bad)
        assert "\n" not in str(info.value)


@pytest.mark.parametrize("labels, message", [
    (np.array([0, 1, 4]), r"0\.\.3"),
    (np.array([0, -1, 2]), r"0\.\.3"),
    (np.array([0.0, 1.0, 2.0]), "integers"),
    (np.array([0, 1]), r"shape \(3,\)"),
])
def test_bad_labels_give_value_error(model, labels, message):
    x = np.zeros((3, 12), np.float32)
    with pytest.raises(ValueError, match=message):
        model.loss_and_grads(x, labels=labels)


def test_bad_eps_and_bad_config():
    m = VAE(VAEConfig(input_dim=12, enc_hidden=(9,), dec_hidden=(9,), latent=4))
    with pytest.raises(ValueError, match="eps"):
        m.loss_and_grads(np.zeros((3, 12)), eps=np.zeros((3, 5)))
    with pytest.raises(ValueError, match="dec_act"):
        VAEConfig(dec_act="tanh")
    with pytest.raises(ValueError, match=">= 1"):
        VAEConfig(enc_hidden=(0,))
    with pytest.raises(ValueError, match="decode"):
        m.decode(np.zeros((2, 3)))


def test_adam_first_step_moves_each_parameter_by_lr_against_its_gradient_sign():
    params = {"w": np.array([1.0, -2.0, 3.0])}
    grads = {"w": np.array([0.5, -4.0, 1e-3])}
    Adam(params).step(params, grads, lr=0.1)
    # With bias correction, m_hat = g and v_hat = g^2 after one step, so the step is lr * sign(g).
    np.testing.assert_allclose(params["w"], [0.9, -1.9, 2.9], rtol=1e-6)


def test_adam_matches_the_textbook_recurrence_and_restores_its_state():
    rng = np.random.default_rng(0)
    params = {"w": rng.normal(size=5)}
    gs = rng.normal(size=(4, 5))
    opt = Adam(params)
    w, m, v = params["w"].copy(), np.zeros(5), np.zeros(5)
    for t, g in enumerate(gs, start=1):
        opt.step(params, {"w": g}, lr=0.01)
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g ** 2
        w = w - 0.01 * (m / (1 - 0.9 ** t)) / (np.sqrt(v / (1 - 0.999 ** t)) + 1e-8)
    np.testing.assert_allclose(params["w"], w, rtol=1e-12)
    clone = Adam(params)
    clone.load_state_dict(opt.state_dict())
    assert clone.t == 4
    np.testing.assert_array_equal(clone.m["w"], opt.m["w"])


def test_exponential_decay():
    schedule = exponential_decay(1e-3, 0.95)
    assert schedule(0) == 1e-3 and schedule(2) == pytest.approx(1e-3 * 0.95 ** 2)


def test_cosine_decay_by_hand():
    # 4 epochs: (1 + cos(pi e / 4)) / 2 = 1, (2 + sqrt 2) / 4, 1/2, (2 - sqrt 2) / 4.
    schedule = cosine_decay(2e-3, 4)
    expected = [2e-3, 2e-3 * (2 + 2 ** 0.5) / 4, 1e-3, 2e-3 * (2 - 2 ** 0.5) / 4]
    np.testing.assert_allclose([schedule(e) for e in range(4)], expected, rtol=1e-12)
    assert schedule(3) > 0                      # the last epoch still trains


def test_linear_warmup_climbs_to_the_schedule_then_follows_it():
    schedule = linear_warmup(exponential_decay(1e-3, 0.5), 3)
    # Epochs 0, 1, 2 climb to 1/4, 2/4, 3/4 of the schedule's rate at epoch 3 (1e-3 * 0.5^3);
    # from epoch 3 on, the schedule itself.
    expected = [1.25e-4 / 4, 1.25e-4 / 2, 1.25e-4 * 3 / 4, 1.25e-4, 6.25e-5]
    np.testing.assert_allclose([schedule(e) for e in range(5)], expected, rtol=1e-12)


def test_kl_warmup_climbs_to_the_kl_weights_then_holds_them():
    # 3 epochs of KL warm-up: epochs 0, 1, 2 at 1/4, 2/4, 3/4 of the KL weights, then all of them.
    assert [kl_scale_of(TrainConfig(kl_warmup=3))(e) for e in range(5)] == [0.25, 0.5, 0.75, 1, 1]
    assert [kl_scale_of(TrainConfig())(e) for e in range(3)] == [1, 1, 1]        # off by default
    with pytest.raises(ValueError, match="kl_warmup"):
        TrainConfig(kl_warmup=-1)


def test_kl_scale_multiplies_both_kl_weights_and_nothing_else():
    # kl_scale 0.5 on weights 0.5 (digit dims) and 1.5 (style dims) is the model whose weights
    # are 0.25 and 0.75: the same loss and the same gradients, bit for bit (the products are exact).
    cfg = VAEConfig(input_dim=12, enc_hidden=(9,), dec_hidden=(9,), latent=4, style=2,
                    style_kl_weight=1.5, l1_weight=0.3)
    model = VAE(cfg, rng=np.random.default_rng(0))
    halved = VAE(replace(cfg, kl_weight=0.25, style_kl_weight=0.75), params=model.params)
    rng = np.random.default_rng(1)
    x = rng.uniform(size=(5, 12)).astype(np.float32)
    eps = rng.standard_normal((5, 6)).astype(np.float32)
    labels = np.array([0, 1, 2, 3, 0])
    losses, cache = model.forward(x, eps, kl_scale=0.5)
    expected, expected_cache = halved.forward(x, eps)
    assert losses == expected
    grads, expected_grads = model.backward(cache, labels), halved.backward(expected_cache, labels)
    for k in grads:
        np.testing.assert_array_equal(grads[k], expected_grads[k], err_msg=k)
    # And it is not a no-op: the full weights give another loss and other mu gradients.
    full, full_cache = model.forward(x, eps)
    assert full["loss"] > losses["loss"] and full["recon"] == losses["recon"]
    np.testing.assert_allclose(cache["dmu_kl"], 0.5 * full_cache["dmu_kl"], rtol=1e-6)


def test_train_config_builds_the_schedule_it_names():
    rates = lambda tcfg: [schedule_of(tcfg)(e) for e in range(3)]
    assert rates(TrainConfig()) == [1e-3, 1e-3 * 0.95, 1e-3 * 0.95 ** 2]    # the default
    np.testing.assert_allclose(rates(TrainConfig(lr_schedule="cosine", epochs=2, warmup=1)),
                               [1e-3 * 0.5 / 2, 1e-3 * 0.5, 1e-3 * 0.0], atol=1e-18)
    with pytest.raises(ValueError, match="lr_schedule"):
        TrainConfig(lr_schedule="step")
    with pytest.raises(ValueError, match="warmup, shift and kl_warmup"):
        TrainConfig(shift=-1)


def test_numba_and_numpy_backends_agree_on_the_whole_model():
    from gr_numpy.backend import ops

    cfg = VAEConfig(input_dim=13, enc_hidden=(9, 7), dec_hidden=(5, 11), latent=3, dtype="float64")
    rng = np.random.default_rng(2)
    x, eps, labels = rng.uniform(size=(17, 13)), rng.normal(size=(17, 3)), rng.integers(0, 3, 17)
    results = {}
    for backend in ("numba", "numpy"):
        with ops.using_backend(backend):
            model = VAE(cfg, rng=np.random.default_rng(0))
            results[backend] = model.loss_and_grads(x, labels, eps)
    (l1, g1), (l2, g2) = results["numba"], results["numpy"]
    for k in l1:
        assert l1[k] == pytest.approx(l2[k], rel=1e-12)
    for k in g1:
        np.testing.assert_allclose(g1[k], g2[k], rtol=1e-10, atol=1e-13, err_msg=k)
