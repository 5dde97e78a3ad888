"""The interactive demo: sliders set the code z, and the decoder draws the digit.

A matplotlib window onto a trained model: one slider per code dim, grouped and coloured by the
model's routing group (one per digit, two per digit, or the halves "0-4" and "5-9"), then one per
style dim if it has any; a bar chart of the code; a random MNIST test digit beside its
reconstruction; and a canvas to draw your own digit on. Keys 0-9 switch the code to that
digit's typical code (`Routing.switch`), keeping the style dims: a "3" redrawn as 0..9. This
module builds the window and its callbacks; `demo.py` is the command line that loads a
checkpoint and opens or saves it. It is a viewer only: nothing here trains, and nothing here is
needed by training or the tests of the maths.

Glossary: D pixels (784 = 28 x 28), C code dims (K routed, then S style), G routing groups,
L labels (10 digits), N images. Drawn strokes are lists of (x, y) points in pixel units of the
28 x 28 field: x is the column, y the row, and pixel (row i, column j) covers [j, j + 1) x
[i, i + 1), so its centre is at (j + 0.5, i + 0.5).
"""

import math

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.animation import FuncAnimation, PillowWriter
from matplotlib.widgets import Button, Slider

from ..data import to_rows
from ..files import save_atomically

SIDE = 28                     # images are SIDE x SIDE = D pixels
FIGSIZE = (12, 7)             # inches; `save` writes FIGSIZE * DPI pixels
DPI = 100
PANEL = 0.17                  # width of each 28 x 28 panel, as a fraction of the figure's width
DEFAULT_MAX = 3.0             # slider range 0..3 when there is no test set to measure codes on
STYLE_COLOUR = "0.3"          # the bars and sliders of the style dims (dark grey)
FADED = 0.3                   # alpha of the bars of the groups not read off the code

# ------------------------------------------------------------------------------------------
# A drawing -> an MNIST-like 28 x 28 image, in plain NumPy
# ------------------------------------------------------------------------------------------
# How MNIST was made (LeCun et al.): each digit was scaled to fit a 20 x 20 box, keeping its
# aspect ratio, with anti-aliasing, then placed in the 28 x 28 field so that its centre of mass
# falls on the centre. We do the same to a drawing, so the encoder sees what it was trained on.
# Measured on the 10k test images: the ink's bounding box is 20 px on its longest side (median),
# the ink sums to about 104 (pixels in [0, 1]), and the centre of mass sits at 14.5 in our
# coordinates (pixel index 14) on both axes. With the constants below, ten hand-made test strokes
# (one per digit) give a 20-21 px box and ink 103 on average; tests/test_demo.py checks this.
FIT = 15.0            # the longest side of the pen's centre line after scaling, in pixels;
                      # the pen and the blur widen the ink to MNIST's box of about 20
PEN_RADIUS = 1.5      # half the stroke width, in pixels
BLUR_SIGMA = 0.5      # the Gaussian blur that softens the edges, in pixels
MNIST_CENTRE = 14.5   # where MNIST puts the centre of mass, on both axes


def stroke_ink(strokes, radius=PEN_RADIUS):
    """strokes: list of (n_i, 2) arrays of (x, y) -> ink (SIDE, SIDE) in [0, 1].

    A pixel is inked by its distance d to the nearest stroke segment: fully when d <= radius -
    0.5, not at all when d >= radius + 0.5, linearly between. That one-pixel ramp is a cheap
    anti-aliasing. A stroke of one point is a dot.
    """
    ink = np.zeros((SIDE, SIDE))
    segments = [np.stack([s[:-1], s[1:]], axis=1) if len(s) > 1 else np.stack([s, s], axis=1)
                for s in map(np.asarray, strokes) if len(s)]
    if not segments:
        return ink
    seg = np.concatenate(segments).astype(np.float64)         # (S, 2 ends, 2 coords)
    a, ab = seg[:, 0], seg[:, 1] - seg[:, 0]                  # start and direction, (S, 2)

    centres = np.arange(SIDE) + 0.5
    px, py = np.meshgrid(centres, centres)                    # px[i, j] = j + 0.5
    p = np.stack([px.ravel(), py.ravel()], axis=1)            # (D, 2) pixel centres
    # The nearest point of segment s to pixel p is a + t * ab with t = (p - a).ab / |ab|^2
    # clipped to [0, 1]; a zero-length segment (a dot) has t = 0.
    ap = p[:, None, :] - a[None, :, :]                        # (D, S, 2)
    length2 = np.maximum((ab ** 2).sum(1), 1e-12)             # (S,)
    t = np.clip((ap * ab).sum(2) / length2, 0.0, 1.0)         # (D, S)
    d = np.sqrt(((ap - t[:, :, None] * ab) ** 2).sum(2)).min(1)  # (D,) nearest distance
    return np.clip(radius + 0.5 - d, 0.0, 1.0).reshape(SIDE, SIDE)


def gaussian_blur(image, sigma=BLUR_SIGMA):
    """image (SIDE, SIDE) -> blurred (SIDE, SIDE). A 2-D Gaussian is a 1-D one along the
    columns and then the rows, and a 1-D convolution of a short vector is a matrix product:
    G[i, k] is the weight pixel k gives to pixel i, so the blur is G @ image @ G.T."""
    i = np.arange(SIDE)
    G = np.exp(-(i[:, None] - i[None, :]) ** 2 / (2 * sigma ** 2))   # (SIDE, SIDE)
    G /= G[SIDE // 2].sum()                  # weights sum to 1 away from the border
    return G @ image @ G.T


def centre_of_mass(image):
    """image (SIDE, SIDE), not all zero -> (x, y) of its centre of mass, in pixel units."""
    centres = np.arange(SIDE) + 0.5
    mass = image.sum()
    return (image.sum(0) @ centres) / mass, (image.sum(1) @ centres) / mass


def render(strokes):
    """strokes -> the softened ink (SIDE, SIDE), brightest pixel 1 (or all zeros)."""
    image = gaussian_blur(stroke_ink(strokes))
    return image / image.max() if image.max() > 0 else image


def mnist_like(strokes):
    """strokes as drawn (any size, anywhere) -> float32 (SIDE, SIDE) in [0, 1], made the way
    MNIST was: scaled to a fixed size, then moved so its centre of mass sits at MNIST_CENTRE.

    The geometry is normalised before the pen is applied, so the stroke width is the same
    however large the digit was drawn.
    """
    strokes = [np.asarray(s, dtype=np.float64).reshape(-1, 2) for s in strokes]
    strokes = [s for s in strokes if len(s)]
    if not strokes:
        return np.zeros((SIDE, SIDE), dtype=np.float32)
    points = np.concatenate(strokes)
    lo, hi = points.min(0), points.max(0)
    scale = FIT / max((hi - lo).max(), 1e-9)       # keeps the aspect ratio, like MNIST
    middle = (lo + hi) / 2
    strokes = [(s - middle) * scale + SIDE / 2 for s in strokes]
    # Moving the strokes moves the ink with them, so one measurement of the centre of mass
    # gives the shift (up to the rounding of the pixel grid).
    shift = MNIST_CENTRE - np.array(centre_of_mass(render(strokes)))
    return render([s + shift for s in strokes]).astype(np.float32)


# ------------------------------------------------------------------------------------------
# What the test set says about the codes: slider ranges and a typical code per digit
# ------------------------------------------------------------------------------------------

def code_stats(model, images=None, labels=None):
    """-> lo, hi (C,), the slider range of each code dim, and prototypes (L, C), a typical code
    of each digit (`Routing.prototypes`), which the keys 0-9 and the morph show.

    model: a VAE, or the paper's autoencoder (its code is linear: signed on every dim). images
    uint8 (N, 28, 28) and labels (N,), normally the MNIST test set, given to the model in its own
    pixel range (model.to_input). hi is the 99th percentile of each dim over the test codes,
    lo the 1st (0 on the routed dims of a VAE with ReLU on z; the autoencoder's widened to hold
    0, where Reset puts every slider); where a digit's median code is not positive on its group,
    its prototype takes the middle of the range. Without images: a VAE's routed dims 0..DEFAULT_MAX,
    every other dim -DEFAULT_MAX..DEFAULT_MAX (a style dim's prior is N(0, 1)), every prototype
    in the middle.
    """
    K, C = model.routing.routed_dims, model.routing.code_dim
    if images is None or len(images) == 0:
        lo = np.full(C, -DEFAULT_MAX)
        if getattr(model.config, "relu_z", False):
            lo[:K] = 0.0
        hi = np.full(C, DEFAULT_MAX)
        codes, labels = np.zeros((0, C)), np.zeros(0, dtype=np.intp)
    else:
        codes = model.code(model.to_input(images))                          # (N, C)
        hi = np.percentile(codes, 99, axis=0)
        lo = np.percentile(codes, 1, axis=0)
        if getattr(model.config, "relu_z", False):     # a ReLU'd code: the routed dims >= 0
            lo[:K] = 0.0
        else:                                          # signed dims, each with 0 in its range
            lo, hi = np.minimum(lo, 0.0), np.maximum(hi, 0.0)
        hi = np.where(hi > lo + 1e-6, hi, lo + DEFAULT_MAX)   # a dim that never fires still slides
    return lo, hi, model.routing.prototypes(codes, labels, fallback=(lo + hi) / 2)


def group_colours(routing):
    """-> C colours, one per code dim: its routing group's (tab10, or tab20 past ten groups),
    STYLE_COLOUR on the style dims."""
    G = len(routing.groups)
    palette = matplotlib.colormaps["tab10" if G <= 10 else "tab20"]
    colours = [STYLE_COLOUR] * routing.code_dim
    for g, dims in enumerate(routing.groups):
        for d in dims:
            colours[d] = palette(g % palette.N)
    return colours


def code_ticks(routing):
    """-> positions, names: the ticks of an axis of code dims, one per group (in the middle of
    its dims, named as the group) and one per style dim (s0, s1, ...)."""
    K = routing.routed_dims
    positions = [float(np.mean(dims)) for dims in routing.groups] + list(range(K, routing.code_dim))
    return positions, list(routing.group_names) + [f"s{s}" for s in range(routing.free_dims)]


# ------------------------------------------------------------------------------------------
# The morph: the code sweeping through every digit's prototype
# ------------------------------------------------------------------------------------------

def morph_codes(prototypes, frames):
    """prototypes (L, C) -> codes (frames, C) sweeping from prototype 0 to prototype L - 1.

    Frame f sits at s = f * (L - 1) / (frames - 1) along the way: between labels k = floor(s)
    and k + 1 it cross-fades linearly, (1 - t) * prototypes[k] + t * prototypes[k + 1], with
    t = s - k.
    """
    L = len(prototypes)
    s = np.linspace(0, L - 1, frames)
    k = np.minimum(np.floor(s).astype(int), L - 2)
    t = (s - k)[:, None]                                                # (frames, 1)
    return (1 - t) * prototypes[k] + t * prototypes[k + 1]


def write_morph(model, prototypes, path, frames=91, fps=12):
    """Write a GIF: the decoded image and the code bars as the code sweeps from 0 to 9."""
    routing = model.routing
    codes = morph_codes(prototypes, frames)                      # (frames, C)
    images = model.draw(codes).reshape(frames, SIDE, SIDE)       # every frame in one batch
    C = routing.code_dim
    fig, (ax_img, ax_bar) = plt.subplots(1, 2, figsize=(4 + 0.04 * max(C - 10, 0), 2), dpi=80,
                                         gridspec_kw={"width_ratios": [1, 1.3]})
    shown = ax_img.imshow(images[0], cmap="gray", vmin=0, vmax=1)
    ax_img.set_axis_off()
    bars = ax_bar.bar(range(C), codes[0], color=group_colours(routing))
    positions, names = code_ticks(routing)
    ax_bar.set(xticks=positions, xlim=(-0.6, C - 0.4), yticks=[],
               ylim=(min(codes.min(), 0), 1.05 * max(codes.max(), 1e-6)))
    ax_bar.set_xticklabels(names)
    ax_bar.tick_params(labelsize=7)
    ax_bar.set_title(f"code z ({routing.name})", fontsize=8)
    fig.tight_layout()

    def update(f):
        shown.set_data(images[f])
        for bar, value in zip(bars, codes[f]):
            bar.set_height(value)
        return [shown, *bars]

    animation = FuncAnimation(fig, update, frames=frames, blit=False)
    save_atomically(path, lambda tmp: animation.save(tmp, writer=PillowWriter(fps=fps)))
    plt.close(fig)


# ------------------------------------------------------------------------------------------
# The window
# ------------------------------------------------------------------------------------------

class QuietSlider(Slider):
    """matplotlib's Slider, except that moving it does not draw the window by itself:
    Demo.redraw draws it, once per change, also when ten sliders move at once."""
    drawon = False               # read by Slider.set_val, also inside Slider.__init__


SLIDER_AREA = (0.02, 0.385)     # the slider columns share this span of the figure's width
MAX_ROWS = 16                   # sliders per column at most; more dims take more columns


def slider_columns(routing):
    """-> lists of dims, one per column of sliders, each at most MAX_ROWS long: the routed dims
    group after group (a group stays in one column when it fits), then the style dims in
    columns of their own."""
    def balanced(n):
        """The rows per column that spread n sliders evenly over as few columns as will do."""
        return math.ceil(n / math.ceil(n / MAX_ROWS)) if n else 0

    columns, rows = [], balanced(routing.routed_dims)
    column = []
    for dims in routing.groups:
        if column and len(column) + len(dims) > rows:
            columns.append(column)
            column = []
        column += [int(d) for d in dims]
        while len(column) > rows:                         # a group longer than a column
            columns.append(column[:rows])
            column = column[rows:]
    columns += [column] if column else []
    style = list(range(routing.routed_dims, routing.code_dim))
    rows = balanced(len(style))
    return columns + [style[i:i + rows] for i in range(0, len(style), rows or 1)]


def slider_names(routing):
    """-> C slider labels: a one-dim group's name ("3"), or group:index for a group of several
    ("3:0", "3:1"; "0-4:15"), then s0, s1, ... for the style dims."""
    names = [f"s{d - routing.routed_dims}" for d in range(routing.code_dim)]
    for g, dims in enumerate(routing.groups):
        for i, d in enumerate(dims):
            names[d] = routing.group_names[g] if len(dims) == 1 else f"{routing.group_names[g]}:{i}"
    return names


MIN_STEP = 0.25                 # a stroke records a new point after this many pixels of travel
PEN_STYLE = dict(color="white", solid_capstyle="round", solid_joinstyle="round")
HINT = ("keys: r random test digit · 0-9 that digit's typical code · "
        "draw with the mouse in the black square")
STYLE_HINT = ("keys: r random test digit · 0-9 same style, other digit · "
              "draw with the mouse in the black square")


class Demo:
    """The window and its callbacks. Every path ends in `redraw`, which shows
    model.decode(slider values) reshaped to 28 x 28, and the slider values as bars.

    model: a VAE; its routing lays out the sliders and reads the code (the paper's autoencoder
    has a window built on this one: demo_certificates.CertificateDemo). images uint8
    (N, 28, 28) and labels (N,): the test set, or None (then the random-digit button does
    nothing and the sliders span 0..DEFAULT_MAX). rng: draws the random test digits. fig: a
    figure to build in (from pyplot, so it can be shown), or None for a new one.
    """

    def __init__(self, model, images=None, labels=None, rng=None, fig=None):
        self.model, self.routing = model, model.routing
        self.K, self.S = model.routing.routed_dims, model.routing.free_dims
        self.images, self.labels = images, labels
        self.rng = rng if rng is not None else np.random.default_rng(0)
        self.lo, self.hi, self.prototypes = code_stats(model, images, labels)
        self.colours = group_colours(self.routing)
        self.index = None            # which test image is shown, if any
        self.strokes = []            # the drawing: one list of (x, y) per pen-down
        self.pen_lines = []          # and the line that shows each stroke on the canvas
        self.pen_down = False
        self.drawn = None            # the drawing as the model sees it (SIDE, SIDE), once drawn
        self.input_code = None       # the code of the input shown, the group the model reads
        self.input_read = None       # off it, and what the status line says about it, while
        self.input_text = ""         # the sliders still hold that code
        self.fig = fig if fig is not None else plt.figure(figsize=FIGSIZE)
        self._build_images()
        self._build_code_panel()
        self._build_sliders()
        self._build_buttons()
        self._connect_events()
        self.open()

    def open(self):
        """Start on a random test digit (or, with no test set, a random digit's typical code),
        never on the all-zero code, which decodes to a faint digit-less blur."""
        if self.images is not None and len(self.images):
            self.show_random_digit()
        else:
            self.switch_to(int(self.rng.integers(self.routing.labels)))

    # ---------------------------------------------------------------- layout
    BAR_RECT = [0.42, 0.1, 0.56, 0.28]          # the bar chart of the code
    CLEAR_RECT = [0.85, 0.445, 0.10, 0.045]     # the canvas's Clear button
    BAR_TITLE = "the code z: a colour per routing group, the group read bright"

    def _image_axes(self, left, title, bottom=0.52, width=PANEL):
        ax = self.fig.add_axes([left, bottom, width, width * FIGSIZE[0] / FIGSIZE[1]])  # square
        ax.set_xticks([]), ax.set_yticks([])
        ax.set_title(title, fontsize=10)
        return ax

    def _image_panel(self, left, title, bottom=0.52, width=PANEL):
        """-> axes and the image in them, blank until redraw, grey levels 0..1."""
        ax = self._image_axes(left, title, bottom, width)
        return ax, ax.imshow(np.zeros((SIDE, SIDE)), cmap="gray", vmin=0, vmax=1)

    def _build_canvas(self, left, bottom=0.52, width=PANEL):
        """The drawing canvas: axes in pixel units of the 28 x 28 field, y pointing down like an
        image's rows, so mouse coordinates are stroke coordinates."""
        self.canvas_ax = self._image_axes(left, "draw a digit here", bottom, width)
        self.canvas_ax.set(xlim=(0, SIDE), ylim=(SIDE, 0), facecolor="black")
        self.canvas_ax.set_navigate(False)           # no pan/zoom on the canvas
        # Pen width on screen: 2 * PEN_RADIUS pixels of the field, in points (72 per inch).
        points_per_pixel = width * FIGSIZE[0] * 72 / SIDE
        self.pen_style = dict(PEN_STYLE, linewidth=2 * PEN_RADIUS * points_per_pixel)

    def _build_images(self):
        self.fig.suptitle("Each slider is one code dim; the decoder draws the digit",
                          fontsize=13)
        self.input_ax, self.input_im = self._image_panel(0.40, "input")
        self.output_ax, self.output_im = self._image_panel(0.605, "decode(sliders)")
        self._build_canvas(0.81)
        self.status = self.fig.text(0.5875, 0.46, "", ha="center", fontsize=11)

    def _build_code_panel(self):
        C = self.K + self.S
        self.bar_ax = self.fig.add_axes(self.BAR_RECT)
        self.bars = self.bar_ax.bar(range(C), np.zeros(C), color=self.colours)
        positions, names = code_ticks(self.routing)
        self.bar_ax.set(xticks=positions, xlim=(-0.6, C - 0.4),
                        ylim=(min(self.lo.min(), 0), 1.05 * self.hi.max()))
        self.bar_ax.set_xticklabels(names, fontsize=10 if C <= 20 else 8)
        self.bar_ax.set_title(self.BAR_TITLE + (", style dims grey" if self.S else ""),
                              fontsize=10)
        self.bar_ax.axhline(0, color="black", linewidth=0.8)

    def _build_sliders(self):
        """One slider per code dim, in columns (slider_columns), coloured by routing group."""
        columns, names = slider_columns(self.routing), slider_names(self.routing)
        left, right = SLIDER_AREA
        pitch = (right - left) / len(columns)                   # the width of one column
        rows = max(len(c) for c in columns)
        step = min(0.06, 0.62 / rows)                           # the height of one row
        fontsize = 10 if rows <= 10 else 8
        gap = 0.01                                              # between the knob and a text
        label_room = gap + 0.0065 * max(map(len, names)) * fontsize / 10   # left of a slider
        value_room = gap + 0.035 * fontsize / 10                # right of it: "1.23"
        width = pitch - label_room - value_room                 # a slider's own width
        routed_columns = sum(1 for c in columns if c[0] < self.K)
        header = ("code z: one slider per digit" if len(self.routing.groups) == self.K else
                  f"routed dims, {self.routing.name} (slider group:i)")
        self.fig.text(left + pitch * routed_columns / 2, 0.92, header, ha="center", fontsize=11)
        if self.S:
            self.fig.text(left + pitch * (routed_columns + len(columns)) / 2, 0.92, "style dims",
                          ha="center", fontsize=11)
        self.sliders = [None] * (self.K + self.S)               # in dim order: slider d is dim d
        for c, dims in enumerate(columns):
            for row, d in enumerate(dims):
                ax = self.fig.add_axes([left + c * pitch + label_room, 0.86 - row * step,
                                        width, 0.035 * step / 0.06])
                slider = QuietSlider(ax, names[d], self.lo[d], self.hi[d], valinit=0.0,
                                     valfmt="%.2f", color=self.colours[d])
                slider.label.set(fontsize=fontsize, x=-gap / width)     # texts clear of the knob
                slider.valtext.set(fontsize=fontsize, x=1 + gap / width)
                slider.on_changed(lambda _value: self.redraw())
                self.sliders[d] = slider

    def _build_buttons(self):
        self.buttons = {}
        for name, rect, callback in [
                ("Random test digit", [0.04, 0.16, 0.16, 0.06], self.show_random_digit),
                ("Reset", [0.22, 0.16, 0.12, 0.06], self.reset),
                ("Clear", self.CLEAR_RECT, self.clear_drawing)]:
            button = Button(self.fig.add_axes(rect), name)
            button.on_clicked(callback)
            self.buttons[name] = button
        self.fig.text(0.02, 0.03, STYLE_HINT if self.S else HINT, fontsize=9, color="dimgray")

    def _connect_events(self):
        connect = self.fig.canvas.mpl_connect
        connect("key_press_event", self.on_key)
        connect("button_press_event", self.on_press)
        connect("motion_notify_event", self.on_move)
        connect("button_release_event", self.on_release)

    # ---------------------------------------------------------------- the model's two calls
    READ_OFF = "mu"              # what the status line says the group is read off

    def encode_input(self, x):
        """x (1, D) in [0, 1] -> (the code the group is read off, the code the decoder reads),
        each (1, C): the VAE's mean mu, and its noiseless code."""
        encoded = self.model.encode(self.model.to_input(x))
        return self.model.readout_of(encoded), self.model.code_of(encoded)

    def picture(self, z):
        """z (C,) -> the decoder's drawing (SIDE, SIDE), pixels in [0, 1]."""
        return self.model.draw(z).reshape(SIDE, SIDE)

    # ---------------------------------------------------------------- the code and the image
    def slider_values(self):
        """-> (C,) the code the sliders show."""
        return np.array([s.val for s in self.sliders])

    def group_read(self, z):
        """z (C,) a code -> the group the routing reads off it, or None if no routed dim is on."""
        if z[:self.K].max() <= 0:
            return None
        return int(self.routing.read_group(z[None, :])[0])

    def group_text(self, g):
        """'digit 3' for a group of one digit, 'digits 0-4' for a group of several."""
        one = len(self.routing.labels_of(g)) == 1
        return f"digit{'' if one else 's'} {self.routing.group_names[g]}"

    def redraw(self):
        """Decode the slider values and show the image, the bars and the status line.
        Called on every change."""
        z = self.slider_values()                                    # (C,)
        self.output_im.set_data(self.picture(z))
        # While the sliders hold the input's code, the group read is the model's answer for
        # the input (read off mu); once they move, it is read off the sliders' code.
        holds_input = self.input_code is not None and np.allclose(z, self.input_code, rtol=0,
                                                                  atol=1e-6)
        read = self.input_read if holds_input else self.group_read(z)
        bright = set(self.routing.groups[read].tolist()) if read is not None else set()
        for d, (bar, value) in enumerate(zip(self.bars, z)):
            bar.set_height(value)
            bar.set_alpha(1.0 if d >= self.K or d in bright else FADED)
        self.status.set_text(self.input_text if holds_input else self.sliders_text(read))
        self.fig.canvas.draw_idle()     # draw when the GUI is next idle: drags never queue up

    def sliders_text(self, read):
        """The line under the images once the sliders have moved: the group they read."""
        if read is None:
            return "no routed dim is on"
        return f"the sliders read {self.group_text(read)} (largest group mean)"

    def set_code(self, z):
        """Move every slider to z (C,), then redraw once (not once per slider)."""
        for slider, value in zip(self.sliders, z):
            slider.eventson = False     # set_val would otherwise call redraw C times
            slider.set_val(float(value))
            slider.eventson = True
        self.redraw()

    def show_input(self, x, title, label=None):
        """x (D,) floats in [0, 1]: show it, encode it, and set the sliders to its code
        (routed and style dims both)."""
        x = np.asarray(x, dtype=np.float32).reshape(1, -1)
        mu, code = self.encode_input(x)                          # (1, C) each
        self.input_read = int(self.routing.read_group(mu)[0])    # the model's answer
        self.input_im.set_data(x.reshape(SIDE, SIDE))
        self.input_ax.set_title(title, fontsize=10)
        truth = f"true {label} · " if label is not None else ""
        self.input_text = (f"{truth}predicted {self.group_text(self.input_read)} (largest "
                           f"group mean of {self.READ_OFF})")
        self.input_code = code[0]                                # what the decoder reads, (C,)
        self.set_code(self.input_code)

    # ---------------------------------------------------------------- buttons and keys
    def show_random_digit(self, _event=None):
        """Show a random test image beside its reconstruction; the sliders take its code."""
        if self.images is None or len(self.images) == 0:
            self.status.set_text("no test set loaded (see --data-dir)")
            self.fig.canvas.draw_idle()
            return
        self.index = int(self.rng.integers(len(self.images)))
        x = to_rows(self.images[self.index:self.index + 1])[0]
        self.show_input(x, f"test image #{self.index}", label=int(self.labels[self.index]))

    def reset(self, _event=None):
        """All sliders to zero: the code of "no digit"."""
        self.set_code(np.zeros(len(self.sliders)))

    def switch_to(self, label):
        """Same style, other digit: every group cleared, label's group set to its prototype,
        the style dims kept (`Routing.switch`)."""
        self.set_code(self.routing.switch(self.slider_values(), label, self.prototypes)[0])

    def on_key(self, event):
        """Key r: a random test digit. Keys 0-9: that digit, in the current style."""
        if event.key == "r":
            self.show_random_digit()
        elif event.key is not None and event.key.isdigit() \
                and int(event.key) < self.routing.labels:
            self.switch_to(int(event.key))

    # ---------------------------------------------------------------- drawing
    def on_press(self, event):
        """Left button down on the canvas: start a stroke."""
        if event.inaxes is not self.canvas_ax or event.button != 1:
            return
        self.pen_down = True
        self.strokes.append([(event.xdata, event.ydata)])
        line, = self.canvas_ax.plot([event.xdata], [event.ydata], **self.pen_style)
        self.pen_lines.append(line)
        self.fig.canvas.draw_idle()

    def on_move(self, event):
        """Mouse moves with the button down: extend the stroke (points off the canvas skipped)."""
        if not self.pen_down or event.inaxes is not self.canvas_ax:
            return
        stroke = self.strokes[-1]
        if np.hypot(event.xdata - stroke[-1][0], event.ydata - stroke[-1][1]) < MIN_STEP:
            return                      # the mouse reports often; keep stroke_ink's work small
        stroke.append((event.xdata, event.ydata))
        self.pen_lines[-1].set_data(*zip(*stroke))
        self.fig.canvas.draw_idle()

    def on_release(self, _event):
        """Button up (anywhere): the stroke is done; encode everything drawn so far."""
        if not self.pen_down:
            return
        self.pen_down = False
        self.drawn = mnist_like(self.strokes)                    # (SIDE, SIDE)
        self.index = None
        self.show_input(self.drawn.ravel(), "your drawing, as the model sees it")

    def clear_drawing(self, _event=None):
        """Wipe the canvas. The sliders keep the last code until something else sets them."""
        for line in self.pen_lines:
            line.remove()
        self.strokes, self.pen_lines = [], []
        self.fig.canvas.draw_idle()

    # ---------------------------------------------------------------- output
    def save(self, path):
        """Render the window to an image file of FIGSIZE * DPI pixels."""
        save_atomically(path, lambda tmp: self.fig.savefig(tmp, dpi=DPI))
