"""The demo on the paper's autoencoder: the window shows decode(sliders) and each certificate's
drawing of the slider values, mapped from the model's [-1, 1] to [0, 1]; a certificate reads only
its half, so moving a slider of the other half leaves its drawing bit-identical; a test digit or
a drawing enters in [-1, 1]; and demo.py renders it with --save, refusing --morph in
one line. No screen needed (matplotlib's Agg backend).
"""

from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402

from gr_numpy.autoencoder import Autoencoder, AutoencoderConfig  # noqa: E402
from gr_numpy.backend import ops  # noqa: E402
from gr_numpy.data import to_rows  # noqa: E402
from gr_numpy.checkpoint import save_checkpoint  # noqa: E402
from gr_numpy.tools.demo_app import DEFAULT_MAX, SIDE, code_stats  # noqa: E402
from gr_numpy.tools.demo_certificates import CertificateDemo, unit_pixels  # noqa: E402
from test_demo import bright_dims, draw_stroke, run_demo  # noqa: E402


def small_autoencoder():
    """An untrained autoencoder 784 -> 16 -> 32 -> 16 -> 784, its code in halves of 16."""
    cfg = AutoencoderConfig(enc_hidden=(16,), dec_hidden=(16,))
    return Autoencoder(cfg, rng=np.random.default_rng(0))


@pytest.fixture(autouse=True, scope="module")
def numpy_backend():
    with ops.using_backend("numpy"):
        yield


@pytest.fixture
def demo(monkeypatch):
    """The window on small_autoencoder() and 40 random 'test images' (labels 0..9 in turn)."""
    monkeypatch.setattr(FigureCanvasAgg, "draw_idle", lambda self: None)   # as test_demo.py
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(40, SIDE, SIDE), dtype=np.uint8)
    d = CertificateDemo(small_autoencoder(), images, np.arange(40) % 10,
                        rng=np.random.default_rng(2))
    yield d
    plt.close(d.fig)


def shown(image):
    return np.asarray(image.get_array())


def drawings(demo, z):
    """z (C,) -> what the window must show: the main decoder's, certificate 0's and 1's
    drawings of z, computed here from Autoencoder.decode, each (SIDE, SIDE) in [0, 1]."""
    z = np.asarray(z, dtype=np.float32)[None, :]
    m = demo.model
    return [np.clip(((m.decode(z) if c is None else m.decode_certificate(z, c)) + 1) / 2,
                    0, 1).reshape(SIDE, SIDE) for c in (None, 0, 1)]


def assert_shows_drawings_of_sliders(demo):
    values = demo.slider_values()
    main, first, second = drawings(demo, values)
    np.testing.assert_allclose(shown(demo.output_im), main, rtol=0, atol=1e-6)
    np.testing.assert_allclose(shown(demo.certificate_ims[0]), first, rtol=0, atol=1e-6)
    np.testing.assert_allclose(shown(demo.certificate_ims[1]), second, rtol=0, atol=1e-6)
    np.testing.assert_allclose([bar.get_height() for bar in demo.bars], values, rtol=0,
                               atol=1e-12)


def test_unit_pixels_maps_minus_one_to_black_and_one_to_white():
    np.testing.assert_array_equal(unit_pixels([-3.0, -1.0, 0.0, 0.5, 1.0, 2.0]),
                                  [0.0, 0.0, 0.5, 0.75, 1.0, 1.0])


def test_sliders_show_the_decoder_and_both_certificates_drawings(demo):
    assert len(demo.sliders) == 32 and len(demo.certificate_ims) == 2
    values = np.random.default_rng(3).uniform(demo.lo, demo.hi)
    for slider, value in zip(demo.sliders, values):
        slider.set_val(value)                  # what a drag does; fires the redraw callback
    np.testing.assert_allclose(demo.slider_values(), values, rtol=0, atol=1e-12)
    assert_shows_drawings_of_sliders(demo)
    main, first, second = drawings(demo, values)
    assert not np.allclose(first, second) and not np.allclose(main, first)   # three pictures


def test_moving_a_slider_of_one_half_leaves_the_other_certificate_bit_identical(demo):
    demo.set_code(np.random.default_rng(4).uniform(demo.lo, demo.hi))
    before = [shown(im).copy() for im in (demo.output_im, *demo.certificate_ims)]
    for d in (0, 7, 15):                                            # dims of the 0-4 half
        demo.sliders[d].set_val(demo.hi[d] if demo.sliders[d].val < demo.hi[d] else demo.lo[d])
    main, first, second = (shown(im) for im in (demo.output_im, *demo.certificate_ims))
    np.testing.assert_array_equal(second, before[2])                # 5-9 certificate: unmoved
    assert not np.array_equal(first, before[1]) and not np.array_equal(main, before[0])
    assert_shows_drawings_of_sliders(demo)

    before = [shown(im).copy() for im in demo.certificate_ims]
    demo.sliders[20].set_val(demo.lo[20] if demo.sliders[20].val > demo.lo[20] else demo.hi[20])
    np.testing.assert_array_equal(shown(demo.certificate_ims[0]), before[0])   # and back
    assert not np.array_equal(shown(demo.certificate_ims[1]), before[1])


def test_a_test_digit_enters_in_minus_one_to_one_and_the_sliders_take_its_code(demo):
    for _ in range(3):
        demo.show_random_digit()
        i = demo.index
        x = to_rows(demo.images[i:i + 1])                                   # (1, D) in [0, 1]
        z = demo.model.encode(2 * x - 1)[0]                                 # the model's range
        np.testing.assert_allclose(demo.slider_values(), z, rtol=0, atol=1e-6)
        np.testing.assert_allclose(shown(demo.input_im), x.reshape(SIDE, SIDE))
        assert_shows_drawings_of_sliders(demo)
        read = int(demo.routing.read_group(np.abs(z)[None])[0])        # the larger half
        assert demo.status.get_text().startswith(
            f"true {demo.labels[i]} · predicted digits {demo.routing.group_names[read]} "
            f"(largest group mean of |z|)")
        assert bright_dims(demo) == demo.routing.groups[read].tolist()


def test_digit_keys_set_the_digits_half_to_its_prototype_and_reset_is_no_digit(demo):
    demo.on_key(SimpleNamespace(key="7"))
    expected = np.zeros(32)
    expected[16:] = demo.prototypes[7, 16:]
    np.testing.assert_allclose(demo.slider_values(), expected, rtol=0, atol=1e-12)
    assert demo.status.get_text().startswith("the sliders read digits 5-9")
    assert bright_dims(demo) == list(range(16, 32))
    assert_shows_drawings_of_sliders(demo)
    demo.sliders[3].set_val(demo.lo[3])                 # a signed dim of the other half: |z|
    read = 0 if np.abs(demo.lo[3]) > np.abs(expected[16:]).sum() else 1
    assert demo.status.get_text().startswith(f"the sliders read digits {['0-4', '5-9'][read]}")
    demo.reset()
    np.testing.assert_array_equal(demo.slider_values(), 0.0)
    assert demo.status.get_text() == "no routed dim is on"
    assert_shows_drawings_of_sliders(demo)


def test_a_drawing_enters_in_minus_one_to_one(demo):
    draw_stroke(demo, [(6, 5), (14, 5), (22, 5), (18, 14), (13, 24)])      # a "7"
    x = demo.drawn.reshape(1, -1)
    np.testing.assert_allclose(shown(demo.input_im), demo.drawn)
    np.testing.assert_allclose(demo.slider_values(), demo.model.encode(2 * x - 1)[0], rtol=0,
                               atol=1e-6)
    assert_shows_drawings_of_sliders(demo)


def test_code_stats_of_the_autoencoder_are_signed_percentiles_holding_zero():
    model = small_autoencoder()
    rng = np.random.default_rng(5)
    images = rng.integers(0, 256, size=(200, SIDE, SIDE), dtype=np.uint8)
    lo, hi, prototypes = code_stats(model, images, rng.integers(0, 10, size=200))
    codes = model.encode(2 * to_rows(images) - 1)                           # (N, 32)
    np.testing.assert_allclose(lo, np.minimum(np.percentile(codes, 1, axis=0), 0), rtol=1e-6)
    np.testing.assert_allclose(hi, np.maximum(np.percentile(codes, 99, axis=0), 0), rtol=1e-6)
    assert (lo < 0).any() and (lo <= 0).all() and (hi >= 0).all()
    assert prototypes.shape == (10, 32)
    np.testing.assert_array_equal(prototypes[2, 16:], 0.0)                 # a 2: its half only
    lo, hi, _ = code_stats(model)                                          # no test images
    np.testing.assert_array_equal(lo, -DEFAULT_MAX)
    np.testing.assert_array_equal(hi, DEFAULT_MAX)


# ------------------------------------------------------------------ the command line
@pytest.fixture
def checkpoint(tmp_path):
    model = small_autoencoder()
    (tmp_path / "run").mkdir()
    path = tmp_path / "run" / "checkpoint.npz"
    save_checkpoint(path, model.params, {"model": model.config.to_dict(),
                                         "routing": model.routing.to_dict()})
    return path


@pytest.mark.parametrize("given", ["folder", "file"])
def test_save_renders_the_autoencoder_window(checkpoint, tmp_path, mnist_dir, given):
    png = tmp_path / "demo.png"
    run = run_demo("--checkpoint", checkpoint.parent if given == "folder" else checkpoint,
                   "--data-dir", mnist_dir, "--save", png)
    assert run.returncode == 0, run.stderr
    assert run.stdout == f"wrote {png}\n"
    assert plt.imread(png).shape[:2] == (700, 1200)       # FIGSIZE (12, 7) inches at 100 dpi


def test_morph_refuses_the_autoencoder_in_one_line(checkpoint, tmp_path):
    run = run_demo("--checkpoint", checkpoint, "--save", tmp_path / "d.png", "--morph",
                   tmp_path / "m.gif")
    assert run.returncode == 2
    assert run.stderr == (f"demo.py: error: {checkpoint} holds the paper's autoencoder "
                          f"(--preset halves): --morph shows VAEs only; --save PNG renders its "
                          f"window with both certificates, --html its page\n")
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["checkpoint.npz", "run"]


def test_html_writes_the_autoencoders_page(checkpoint, tmp_path, mnist_dir):
    page = tmp_path / "d.html"
    run = run_demo("--checkpoint", checkpoint, "--data-dir", mnist_dir, "--html", page)
    assert run.returncode == 0, run.stderr
    assert "300 test digits) | on those digits: MSE" in run.stdout
    assert '"kind":"autoencoder"' in page.read_text()
