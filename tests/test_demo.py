"""The demo: the image shown is always model.decode(slider values); a test digit or a drawing
sets the sliders to its code; the sliders, bars and keys follow the model's routing groups;
drawings come out shaped like MNIST digits; and demo.py writes its files, or fails with one line
and exit code 2. No screen needed (matplotlib's Agg backend).
"""

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.transforms import Bbox  # noqa: E402

from gr_numpy.backend import ops  # noqa: E402
from gr_numpy.checkpoint import save_checkpoint  # noqa: E402
from gr_numpy.data import to_rows  # noqa: E402
from gr_numpy.tools.demo_app import (DEFAULT_MAX, FADED, MAX_ROWS, MNIST_CENTRE,  # noqa: E402
                                     SIDE, SLIDER_AREA, Demo, centre_of_mass, code_stats,
                                     gaussian_blur, group_colours, mnist_like, morph_codes,
                                     slider_columns, slider_names, stroke_ink, write_morph)
from gr_numpy.model import VAE, VAEConfig  # noqa: E402
from gr_numpy.routing import ROUTINGS  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def small_model(style=0, routing="one-per-digit"):
    """An untrained VAE 784 -> 16 -> code -> 16 -> 784, the code laid out by the named routing."""
    r = ROUTINGS[routing](style=style)
    cfg = VAEConfig(enc_hidden=(16,), dec_hidden=(16,), latent=r.routed_dims, style=style)
    return VAE(cfg, rng=np.random.default_rng(0), routing=r)


@pytest.fixture(autouse=True, scope="module")
def numpy_backend():
    """The NumPy backend, as demo.py uses: one image at a time gains nothing from Numba."""
    with ops.using_backend("numpy"):
        yield


def make_demo(monkeypatch, style=0, routing="one-per-digit"):
    """A demo on an untrained small model and 40 random 'test images' (labels 0..9 in turn)."""
    # On Agg, draw_idle draws at once (a GUI would wait until it is idle), about 0.1 s a time.
    # These tests check the arrays behind the pixels, so they skip the drawing; the --save
    # test below draws the whole window for real.
    monkeypatch.setattr(FigureCanvasAgg, "draw_idle", lambda self: None)
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(40, SIDE, SIDE), dtype=np.uint8)
    labels = np.arange(40) % 10
    return Demo(small_model(style, routing), images, labels, rng=np.random.default_rng(2))


@pytest.fixture
def demo(monkeypatch):
    d = make_demo(monkeypatch)
    yield d
    plt.close(d.fig)


@pytest.fixture
def style_demo(monkeypatch):
    """The same, on a model with S = 3 style dims."""
    d = make_demo(monkeypatch, style=3)
    yield d
    plt.close(d.fig)


@pytest.fixture
def halves_demo(monkeypatch):
    """The same, on a model routed by halves (digits 0-4: dims 0..15, 5-9: dims 16..31) with
    S = 2 style dims."""
    d = make_demo(monkeypatch, style=2, routing="halves")
    yield d
    plt.close(d.fig)


def bright_dims(demo):
    """The dims whose bars are drawn at full colour (the group read, and the style dims)."""
    return [d for d, bar in enumerate(demo.bars) if bar.get_alpha() == 1.0]


def shown_image(demo):
    return np.asarray(demo.output_im.get_array())


def assert_shows_decode_of_sliders(demo):
    values = demo.slider_values()
    expected = demo.model.decode(values).reshape(SIDE, SIDE)
    np.testing.assert_allclose(shown_image(demo), expected, rtol=0, atol=1e-6)
    np.testing.assert_allclose([bar.get_height() for bar in demo.bars], values, rtol=0, atol=1e-12)


def mouse(demo, x, y, button=1, inaxes="canvas"):
    """A stand-in for a matplotlib MouseEvent: the handlers read only these four fields."""
    axes = demo.canvas_ax if inaxes == "canvas" else inaxes
    return SimpleNamespace(xdata=x, ydata=y, button=button, inaxes=axes)


def draw_stroke(demo, points):
    demo.on_press(mouse(demo, *points[0]))
    for x, y in points[1:]:
        demo.on_move(mouse(demo, x, y))
    demo.on_release(mouse(demo, *points[-1]))


# ------------------------------------------------------------------ sliders -> image
def test_moving_sliders_shows_decode_of_their_values(demo):
    values = np.random.default_rng(3).uniform(demo.lo, demo.hi)
    for slider, value in zip(demo.sliders, values):
        slider.set_val(value)                  # what a drag does; fires the redraw callback
    np.testing.assert_allclose(demo.slider_values(), values, rtol=0, atol=1e-12)
    assert_shows_decode_of_sliders(demo)
    assert bright_dims(demo) == [int(np.argmax(values))]          # one dim per digit: its group
    assert all(bar.get_alpha() == FADED for d, bar in enumerate(demo.bars)
               if d != np.argmax(values))


@pytest.mark.parametrize("routing, style", [("one-per-digit", 0), ("two-per-digit", 0),
                                            ("halves", 0), ("halves", 6), ("one-per-digit", 6)])
def test_bars_take_their_groups_colour_and_the_group_read_is_bright(monkeypatch, routing, style):
    d = make_demo(monkeypatch, style, routing)
    try:
        r = d.routing
        values = np.random.default_rng(3).uniform(d.lo, d.hi)
        d.set_code(values)
        read = int(r.read_group(values[None])[0])
        assert bright_dims(d) == sorted(r.groups[read].tolist()) + list(range(r.routed_dims,
                                                                              r.code_dim))
        rgb = [matplotlib.colors.to_rgb(bar.get_facecolor()) for bar in d.bars]
        assert rgb == [matplotlib.colors.to_rgb(c) for c in group_colours(r)]
        slider_rgb = [matplotlib.colors.to_rgb(s.poly.get_facecolor()) for s in d.sliders]
        assert slider_rgb == rgb                                   # a slider has its bar's colour
        firsts = [rgb[dims[0]] for dims in r.groups]
        assert len(set(firsts)) == len(r.groups)                   # a colour per group
        for g, dims in enumerate(r.groups):
            assert all(rgb[dim] == firsts[g] for dim in dims)      # the same within a group
        assert not set(rgb[r.routed_dims:]) & set(firsts)          # style dims in none of them
        assert [t.get_text() for t in d.bar_ax.get_xticklabels()] == \
            r.group_names + [f"s{s}" for s in range(style)]
    finally:
        plt.close(d.fig)


def test_set_code_moves_every_slider_and_redraws_once(demo, monkeypatch):
    calls = []
    monkeypatch.setattr(demo.fig.canvas, "draw_idle", lambda: calls.append(1))
    z = np.linspace(0.1, 1.0, demo.model.config.code_dim)
    demo.set_code(z)
    np.testing.assert_allclose(demo.slider_values(), z, rtol=0, atol=1e-12)
    assert len(calls) == 1
    assert_shows_decode_of_sliders(demo)


def test_the_window_opens_on_a_random_test_digit_not_the_blank_code(demo):
    assert demo.index is not None
    x = to_rows(demo.images[demo.index:demo.index + 1])
    np.testing.assert_allclose(demo.slider_values(), demo.model.code(x)[0], rtol=0, atol=1e-6)
    assert demo.status.get_text().startswith(f"true {demo.labels[demo.index]} · predicted")
    assert_shows_decode_of_sliders(demo)


def test_status_line_follows_the_sliders_once_they_move(demo):
    demo.show_random_digit()
    assert demo.status.get_text().startswith("true ")
    values = np.zeros(10)
    values[6] = demo.hi[6]
    demo.set_code(values)
    assert demo.status.get_text().startswith("the sliders read digit 6")
    demo.reset()
    assert demo.status.get_text().startswith("no routed dim is on")


def test_status_line_names_the_group_read_of_halves(halves_demo):
    d = halves_demo
    values = np.zeros(34)
    values[20] = d.hi[20]                                   # a dim of the group of 5-9
    d.set_code(values)
    assert d.status.get_text().startswith("the sliders read digits 5-9")
    d.show_random_digit()
    x = to_rows(d.images[d.index:d.index + 1])
    name = d.routing.group_names[d.routing.read_group(d.model.encode(x))[0]]
    assert d.status.get_text().startswith(f"true {d.labels[d.index]} · predicted digits {name}")


# ------------------------------------------------------------------ buttons and keys
def test_random_digit_sets_sliders_to_the_code_of_the_image_it_shows(demo):
    for _ in range(3):
        demo.show_random_digit()
        i = demo.index
        x = to_rows(demo.images[i:i + 1])                                   # (1, D)
        np.testing.assert_allclose(demo.slider_values(), demo.model.code(x)[0], rtol=0, atol=1e-6)
        np.testing.assert_allclose(demo.input_im.get_array(), x.reshape(SIDE, SIDE))
        assert_shows_decode_of_sliders(demo)                                # the reconstruction
        predicted = int(demo.routing.read_group(demo.model.encode(x))[0])
        assert demo.status.get_text().startswith(
            f"true {demo.labels[i]} · predicted digit {predicted}")
        assert bright_dims(demo) == [predicted]               # the bars agree with the status


def test_key_r_shows_a_random_digit_and_digit_keys_set_a_typical_one_hot(demo):
    demo.on_key(SimpleNamespace(key="r"))
    assert demo.index is not None
    demo.on_key(SimpleNamespace(key="3"))
    expected = np.zeros(demo.model.config.latent)
    expected[3] = demo.prototypes[3, 3]
    assert expected[3] > 0
    np.testing.assert_allclose(demo.prototypes[3], expected, rtol=0, atol=0)   # dim 3 only
    np.testing.assert_allclose(demo.slider_values(), expected, rtol=0, atol=1e-12)
    assert_shows_decode_of_sliders(demo)
    demo.reset()
    np.testing.assert_allclose(demo.slider_values(), 0.0, atol=0)
    assert_shows_decode_of_sliders(demo)


def test_without_test_images_sliders_span_0_to_default_and_random_does_nothing():
    d = Demo(small_model())
    try:
        assert np.count_nonzero(d.slider_values()) == 1       # opens on one digit, not blank
        np.testing.assert_allclose([s.valmax for s in d.sliders], DEFAULT_MAX)
        d.show_random_digit()
        assert d.index is None and "no test set" in d.status.get_text()
        assert_shows_decode_of_sliders(d)
    finally:
        plt.close(d.fig)


def test_code_stats_are_percentiles_and_per_digit_medians():
    model = small_model()
    rng = np.random.default_rng(4)
    images = rng.integers(0, 256, size=(200, SIDE, SIDE), dtype=np.uint8)
    labels = rng.integers(0, 10, size=200)
    lo, hi, prototypes = code_stats(model, images, labels)
    codes = model.code(to_rows(images))                                     # (N, K)
    assert np.all(lo == 0)                                                  # ReLU on z
    np.testing.assert_allclose(hi, np.percentile(codes, 99, axis=0), rtol=1e-6)
    assert prototypes.shape == (10, 10)
    for k in range(10):
        median = np.median(codes[labels == k, k])
        expected = median if median > 0 else hi[k] / 2      # a dim that is off: mid-range
        np.testing.assert_allclose(prototypes[k, k], expected, rtol=1e-6)
        np.testing.assert_array_equal(np.delete(prototypes[k], k), 0.0)     # digit k: dim k only


def test_code_stats_of_halves_give_each_digit_its_groups_median_code():
    model = small_model(style=2, routing="halves")
    rng = np.random.default_rng(4)
    images = rng.integers(0, 256, size=(200, SIDE, SIDE), dtype=np.uint8)
    labels = rng.integers(0, 10, size=200)
    lo, hi, prototypes = code_stats(model, images, labels)
    codes = model.code(to_rows(images))                                     # (N, 34)
    assert lo.shape == hi.shape == (34,) and prototypes.shape == (10, 34)
    for digit in (3, 7):
        dims = np.arange(16) if digit < 5 else np.arange(16, 32)            # its half
        median = np.median(codes[labels == digit][:, dims], axis=0)
        expected = median if median.max() > 0 else (lo[dims] + hi[dims]) / 2
        np.testing.assert_allclose(prototypes[digit, dims], expected, rtol=1e-6)
        np.testing.assert_array_equal(np.delete(prototypes[digit], dims), 0.0)


@pytest.mark.parametrize("routing", ["one-per-digit", "halves"])
def test_without_test_images_each_digit_gets_its_groups_mid_range(routing):
    model = small_model(style=1, routing=routing)
    lo, hi, prototypes = code_stats(model)
    r = model.routing
    np.testing.assert_array_equal(lo, [0.0] * r.routed_dims + [-DEFAULT_MAX])
    np.testing.assert_array_equal(hi, DEFAULT_MAX)
    for digit in range(10):
        dims = r.groups[r.label_group[digit]]
        np.testing.assert_array_equal(prototypes[digit, dims], DEFAULT_MAX / 2)
        np.testing.assert_array_equal(np.delete(prototypes[digit], dims), 0.0)


# ------------------------------------------------------------------ style dims
def test_style_model_has_digit_and_style_sliders_ranged_by_test_percentiles(style_demo):
    d = style_demo
    assert len(d.sliders) == 10 + 3 and len(d.bars) == 13
    codes = d.model.code(to_rows(d.images))                                 # (N, 13)
    np.testing.assert_allclose([s.valmin for s in d.sliders[10:]],
                               np.percentile(codes[:, 10:], 1, axis=0), rtol=1e-6)
    hi = np.percentile(codes, 99, axis=0)
    hi[:10] = np.where(hi[:10] > 0, hi[:10], DEFAULT_MAX)    # an untrained dim that never fires
    np.testing.assert_allclose([s.valmax for s in d.sliders], hi, rtol=1e-6)
    assert all(s.valmin == 0 for s in d.sliders[:10])                       # ReLU on z_d
    assert d.prototypes.shape == (10, 13)


def test_style_model_random_digit_and_drawing_set_digit_and_style_dims(style_demo):
    d = style_demo
    d.show_random_digit()
    x = to_rows(d.images[d.index:d.index + 1])
    np.testing.assert_allclose(d.slider_values(), d.model.code(x)[0], rtol=0, atol=1e-6)
    assert_shows_decode_of_sliders(d)
    draw_stroke(d, [(6, 5), (14, 5), (22, 5), (18, 14), (13, 24)])
    np.testing.assert_allclose(d.slider_values(), d.model.code(d.drawn.reshape(1, -1))[0],
                               rtol=0, atol=1e-6)


def test_digit_keys_keep_the_style_and_switch_the_digit(style_demo):
    d = style_demo
    d.show_random_digit()
    style = d.slider_values()[10:].copy()
    assert np.any(style != 0)
    for key in ("3", "8"):
        d.on_key(SimpleNamespace(key=key))
        expected = np.zeros(10)
        expected[int(key)] = d.prototypes[int(key), int(key)]
        np.testing.assert_allclose(d.slider_values()[:10], expected, rtol=0, atol=1e-12)
        np.testing.assert_allclose(d.slider_values()[10:], style, rtol=0, atol=1e-12)
        assert_shows_decode_of_sliders(d)
        assert d.status.get_text().startswith(f"the sliders read digit {key}")


def test_digit_keys_of_halves_set_the_digits_half_and_keep_the_style(halves_demo):
    d = halves_demo
    d.show_random_digit()
    style = d.slider_values()[32:].copy()
    assert np.any(style != 0)
    for key, half, other in (("3", slice(0, 16), slice(16, 32)),
                             ("8", slice(16, 32), slice(0, 16))):
        d.on_key(SimpleNamespace(key=key))
        z = d.slider_values()
        np.testing.assert_allclose(z[half], d.prototypes[int(key), half], rtol=0, atol=1e-12)
        np.testing.assert_array_equal(z[other], 0.0)                 # the other half cleared
        np.testing.assert_allclose(z[32:], style, rtol=0, atol=1e-12)
        assert_shows_decode_of_sliders(d)
        assert d.status.get_text().startswith(
            f"the sliders read digits {'0-4' if int(key) < 5 else '5-9'}")


# ------------------------------------------------------------------ the slider layout
@pytest.mark.parametrize("routing, style, columns", [
    ("one-per-digit", 0, [range(10)]),
    ("one-per-digit", 6, [range(10), range(10, 16)]),
    ("two-per-digit", 0, [range(10), range(10, 20)]),              # five digits a column
    ("halves", 0, [range(16), range(16, 32)]),                     # one half a column
    ("halves", 6, [range(16), range(16, 32), range(32, 38)]),
    ("halves", 20, [range(16), range(16, 32), range(32, 42), range(42, 52)]),
])
def test_slider_columns_keep_groups_whole_and_style_apart(routing, style, columns):
    assert slider_columns(ROUTINGS[routing](style=style)) == [list(c) for c in columns]


def test_slider_names_say_the_group_and_the_place_in_it():
    assert slider_names(ROUTINGS["one-per-digit"](style=2)) == [str(k) for k in range(10)] + \
        ["s0", "s1"]
    two = slider_names(ROUTINGS["two-per-digit"]())
    assert two[:4] == ["0:0", "0:1", "1:0", "1:1"] and two[-1] == "9:1"
    halves = slider_names(ROUTINGS["halves"](style=1))
    assert halves[0] == "0-4:0" and halves[15] == "0-4:15" and halves[16] == "5-9:0"
    assert halves[-1] == "s0"


@pytest.mark.parametrize("routing, style", [("one-per-digit", 0), ("one-per-digit", 6),
                                            ("two-per-digit", 6), ("halves", 6)])
def test_every_slider_fits_its_column_without_overlapping_another(monkeypatch, routing, style):
    """Legibility, measured on the drawn window: every slider's label, bar and value text lie
    inside the slider area, left of the images, and no two of them overlap."""
    d = make_demo(monkeypatch, style, routing)
    try:
        r = d.routing
        assert [s.label.get_text() for s in d.sliders] == slider_names(r)
        assert max(map(len, slider_columns(r))) <= MAX_ROWS
        renderer = d.fig.canvas.get_renderer()
        for end in (d.lo, d.hi, None):     # every knob at its left end, at its right, a test digit
            if end is None:
                d.show_random_digit()                       # the longest status line
            else:
                d.set_code(end)
            d.fig.canvas.draw()
            boxes = []
            for s in d.sliders:                     # the label, the bar with its knob, the value
                bar = Bbox.union([s.ax.get_window_extent(renderer),
                                  s._handle.get_window_extent(renderer)])
                boxes += [s.label.get_window_extent(renderer), bar,
                          s.valtext.get_window_extent(renderer)]
            right = min(SLIDER_AREA[1] * d.fig.bbox.width,
                        d.input_ax.get_window_extent(renderer).x0)
            for box in boxes:
                assert box.x0 >= 0 and box.x1 <= right + 1
            boxes.append(d.status.get_window_extent(renderer))     # the line under the images
            for i, a in enumerate(boxes):
                for b in boxes[i + 1:]:
                    overlap = (min(a.x1, b.x1) - max(a.x0, b.x0), min(a.y1, b.y1) - max(a.y0, b.y0))
                    assert min(overlap) < 1, (a, b)   # at most touching, by under a pixel
    finally:
        plt.close(d.fig)


# ------------------------------------------------------------------ drawing
def test_mouse_stroke_gives_a_28x28_input_and_sets_sliders_to_its_encoding(demo):
    seven = [(6, 5), (14, 5), (22, 5), (18, 14), (13, 24)]        # a "7", in canvas pixels
    draw_stroke(demo, seven)
    assert demo.drawn.shape == (SIDE, SIDE) and demo.drawn.sum() > 20
    x = demo.drawn.reshape(1, -1)
    np.testing.assert_allclose(demo.input_im.get_array(), demo.drawn)
    np.testing.assert_allclose(demo.slider_values(), demo.model.code(x)[0], rtol=0, atol=1e-6)
    assert_shows_decode_of_sliders(demo)
    assert demo.status.get_text().startswith("predicted")

    # A second stroke adds to the first; the input is re-made from both.
    first = demo.drawn.copy()
    draw_stroke(demo, [(10, 14), (20, 14)])
    assert len(demo.strokes) == 2 and not np.allclose(demo.drawn, first)
    demo.clear_drawing()
    assert demo.strokes == [] and demo.pen_lines == []


def test_presses_off_the_canvas_or_with_other_buttons_draw_nothing(demo):
    demo.on_press(mouse(demo, 5, 5, button=3))                     # right button
    demo.on_press(mouse(demo, 5, 5, inaxes=demo.bar_ax))           # another panel
    demo.on_move(mouse(demo, 6, 6))
    demo.on_release(mouse(demo, 6, 6))
    assert demo.strokes == [] and demo.drawn is None


# Ten hand-made digits as strokes, in the canvas's pixel units (x right, y down).
def arc(cx, cy, rx, ry, a0=0.0, a1=2 * np.pi, n=40):
    t = np.linspace(a0, a1, n)
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], axis=1)


def polyline(*corners, n=20):
    t = np.linspace(0, 1, n)[:, None]
    return np.concatenate([np.multiply(p, 1 - t) + np.multiply(q, t)
                           for p, q in zip(corners[:-1], corners[1:])])


DIGITS = {
    0: [arc(14, 14, 6, 9)],
    1: [polyline((15, 4), (13, 24))],
    2: [np.concatenate([arc(14, 10, 6, 5, np.pi, 2.2 * np.pi),
                        polyline((18, 13), (8, 24), (21, 24))])],
    3: [np.concatenate([arc(13, 9, 5, 4.5, -0.8 * np.pi, 0.5 * np.pi),
                        arc(13, 19, 6, 5.5, -0.5 * np.pi, 0.85 * np.pi)])],
    4: [polyline((16, 4), (7, 18), (22, 18)), polyline((17, 10), (17, 26))],
    5: [polyline((20, 4), (10, 4), (9, 13)), arc(13, 18, 7, 6, -0.75 * np.pi, 0.8 * np.pi)],
    6: [np.concatenate([polyline((18, 3), (9, 16)), arc(14, 19, 6, 5.5, np.pi, 3 * np.pi)])],
    7: [polyline((7, 5), (21, 5), (11, 26))],
    8: [arc(14, 9, 5, 5), arc(14, 20, 6, 6)],
    9: [arc(14, 10, 6, 5.5), polyline((20, 10), (18, 26))],
}


def ink_box(image):
    """Longest side of the bounding box of the pixels a uint8 MNIST file would store as > 0."""
    rows, cols = np.nonzero(image >= 1 / 255)
    return max(np.ptp(rows), np.ptp(cols)) + 1


@pytest.mark.parametrize("digit", sorted(DIGITS))
def test_drawings_come_out_shaped_like_mnist(digit):
    # MNIST test set (measured): box 20 px (median), centre of mass at 14.5, ink ~104.
    image = mnist_like(DIGITS[digit])
    assert image.shape == (SIDE, SIDE) and image.dtype == np.float32
    assert image.min() >= 0 and image.max() == pytest.approx(1.0)
    assert 19 <= ink_box(image) <= 21
    np.testing.assert_allclose(centre_of_mass(image), MNIST_CENTRE, atol=0.1)


def test_drawings_have_mnist_like_ink_on_average():
    ink = np.mean([mnist_like(strokes).sum() for strokes in DIGITS.values()])
    assert 90 < ink < 115, ink


def test_size_and_position_of_a_drawing_do_not_matter():
    strokes = DIGITS[4]
    moved = [0.4 * s + np.array([3.0, 11.0]) for s in strokes]   # small, in a corner
    np.testing.assert_allclose(mnist_like(moved), mnist_like(strokes), atol=1e-5)


def test_empty_drawing_is_blank_and_a_click_is_a_centred_dot():
    assert not mnist_like([]).any()
    dot = mnist_like([[(3.0, 20.0)]])
    assert 0 < dot.sum() < 20
    np.testing.assert_allclose(centre_of_mass(dot), MNIST_CENTRE, atol=0.05)


def test_stroke_ink_is_full_within_the_pen_and_zero_beyond_its_soft_edge():
    ink = stroke_ink([[(5.0, 14.5), (20.0, 14.5)]], radius=1.5)   # along row 14's centre line
    assert np.all(ink[13:16, 6:19] == 1.0)                        # distance <= 1: full
    assert np.all(ink[16, 6:19] == 0.0) and np.all(ink[12, 6:19] == 0.0)  # distance 2: none
    assert np.all(ink[:, :2] == 0.0)


def test_gaussian_blur_matches_a_direct_sum():
    image = np.random.default_rng(5).random((SIDE, SIDE))
    sigma = 0.7
    i = np.arange(SIDE)
    weight = np.exp(-(i[:, None] - i[None, :]) ** 2 / (2 * sigma ** 2))
    weight /= weight[SIDE // 2].sum()
    # out[a, b] = sum over pixels (c, d) of weight[a, c] * weight[b, d] * image[c, d]
    direct = np.einsum("ac,bd,cd->ab", weight, weight, image)
    np.testing.assert_allclose(gaussian_blur(image, sigma), direct, rtol=1e-12)
    point = np.zeros((SIDE, SIDE))
    point[14, 14] = 1.0
    assert gaussian_blur(point, sigma).sum() == pytest.approx(1.0, rel=1e-9)


# ------------------------------------------------------------------ the morph
def test_morph_codes_go_through_each_typical_one_hot_in_turn():
    typical = np.arange(1.0, 11.0)
    codes = morph_codes(np.diag(typical), frames=19)        # a one-hot, then a midpoint, ...
    np.testing.assert_allclose(codes[::2], np.diag(typical))
    np.testing.assert_allclose(codes[1, :2], [0.5, 1.0])    # halfway from 0 to 1
    assert np.count_nonzero(codes[1]) == 2


def test_morph_codes_go_through_every_prototype_of_a_wide_code():
    prototypes = np.random.default_rng(6).uniform(size=(10, 38))   # halves + 6 style dims
    codes = morph_codes(prototypes, frames=28)              # three frames per step
    assert codes.shape == (28, 38)
    np.testing.assert_allclose(codes[::3], prototypes, rtol=1e-12)
    np.testing.assert_allclose(codes[1], (2 * prototypes[0] + prototypes[1]) / 3, rtol=1e-12)


@pytest.mark.parametrize("routing, style", [("two-per-digit", 0), ("halves", 6)])
def test_write_morph_writes_a_gif_for_any_routing(tmp_path, routing, style):
    model = small_model(style, routing)
    # Distinct prototypes: the GIF writer merges identical frames, and without test images the
    # five digits of a half share one mid-range prototype.
    prototypes = np.random.default_rng(7).uniform(size=(10, model.config.code_dim))
    write_morph(model, prototypes, tmp_path / "m.gif", frames=5)
    from PIL import Image
    with Image.open(tmp_path / "m.gif") as animation:
        assert animation.format == "GIF" and animation.n_frames == 5


# ------------------------------------------------------------------ the command line
def run_demo(*args, env_changes=None):
    env = dict(os.environ, MPLBACKEND="Agg", **(env_changes or {}))
    env.pop("DISPLAY", None)
    return subprocess.run([sys.executable, str(ROOT / "demo.py"), *map(str, args)],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)


def save_small(path, style=0, routing="one-per-digit"):
    """A checkpoint of small_model(style, routing) at path, with its config and routing."""
    model = small_model(style, routing)
    save_checkpoint(path, model.params, {"model": model.config.to_dict(),
                                         "routing": model.routing.to_dict()})
    return path


@pytest.fixture
def small_checkpoint(tmp_path):
    return save_small(tmp_path / "small.npz")


def test_save_and_morph_write_a_png_and_a_gif(small_checkpoint, tmp_path, mnist_dir):
    png, gif = tmp_path / "demo.png", tmp_path / "morph.gif"
    run = run_demo("--checkpoint", small_checkpoint, "--data-dir", mnist_dir,
                   "--save", png, "--morph", gif, "--morph-frames", 4)
    assert run.returncode == 0, run.stderr
    assert plt.imread(png).shape[:2] == (700, 1200)       # FIGSIZE (12, 7) inches at 100 dpi
    from PIL import Image                                 # Pillow comes with matplotlib
    with Image.open(gif) as animation:
        assert animation.format == "GIF" and animation.n_frames == 4


def test_save_and_morph_work_with_a_halves_style_checkpoint_in_a_run_folder(tmp_path, mnist_dir):
    (tmp_path / "run").mkdir()
    save_small(tmp_path / "run" / "checkpoint.npz", style=2, routing="halves")
    png, gif = tmp_path / "demo.png", tmp_path / "morph.gif"
    run = run_demo("--checkpoint", tmp_path / "run", "--data-dir", mnist_dir, "--save", png,
                   "--morph", gif, "--morph-frames", 3)
    assert run.returncode == 0, run.stderr
    assert plt.imread(png).shape[:2] == (700, 1200)
    from PIL import Image
    with Image.open(gif) as animation:
        assert animation.format == "GIF" and animation.n_frames == 3


def test_missing_checkpoint_is_one_line_and_exit_2(tmp_path):
    path = tmp_path / "nothing.npz"
    run = run_demo("--checkpoint", path, "--save", tmp_path / "x.png")
    assert run.returncode == 2
    assert run.stderr == (f"demo.py: error: no checkpoint at {path}: run `python train.py` "
                          f"first, or pass --checkpoint RUN_FOLDER\n")
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("flag, name, message", [
    ("--save", "x.txt", "--save {path}: matplotlib cannot write .txt; end the name in one of "),
    ("--save", "x", "--save {path}: matplotlib cannot write a file without an extension; "),
    ("--morph", "x.png", "--morph {path}: the animation is written as a GIF; end the name in "
                         ".gif\n"),
])
def test_an_output_name_of_the_wrong_kind_is_one_line_before_any_work(tmp_path, flag, name,
                                                                      message):
    """Checked before the checkpoint is even looked for (here there is none)."""
    path = tmp_path / name
    run = run_demo("--checkpoint", tmp_path / "nothing.npz", flag, path)
    assert run.returncode == 2
    assert run.stderr.startswith("demo.py: error: " + message.format(path=path)), run.stderr
    assert run.stderr.count("\n") == 1 and "Traceback" not in run.stderr
    assert list(tmp_path.iterdir()) == []


def test_window_without_a_display_is_one_line_and_exit_2(small_checkpoint):
    run = run_demo("--checkpoint", small_checkpoint)
    assert run.returncode == 2
    assert run.stderr.count("\n") == 1 and "--save" in run.stderr, run.stderr
