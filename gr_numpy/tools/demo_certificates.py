"""The demo window on the paper's autoencoder: the main decoder and both certificates side by side.

The same window as demo_app.Demo (its sliders, keys, buttons, canvas and bars), laid out for
the halves: the 32 sliders in the groups "0-4" and "5-9", and on top, drawn from the sliders'
code z, the main decoder's picture and each certificate's. Certificate g reads only its half
of z (`Autoencoder.decode_certificate(z, g)`), so moving a 0-4 slider leaves what the 5-9
certificate draws exactly as it was: the window shows the certificate's argument in pixels,
and what a routed half holds is what its certificate can draw.

The autoencoder's pixels are in [-1, 1] (the paper's); its drawings are shown mapped back to
[0, 1], the window's grey levels. Its code is linear, so every slider is signed, and the group
is read off the sizes |z| (the routing's rule, largest group mean, on |z|): the L1 penalty pulls
the half an image does not use towards 0, whatever the sign of the half it uses.

Glossary: D pixels (784 = 28 x 28), C code dims (32), G groups (2 halves).
"""

import numpy as np

from .demo_app import SIDE, Demo

LOWER = 0.1                   # the bottom row of panels (input, canvas) starts at this height
LOWER_PANEL = 0.15            # and its panels are this wide (the top row's are demo_app.PANEL)


def unit_pixels(y):
    """y pixels in [-1, 1] (a decoder's linear output, not clipped) -> the same in [0, 1]."""
    return np.clip((np.asarray(y) + 1) / 2, 0.0, 1.0)


class CertificateDemo(Demo):
    """Demo for an Autoencoder: `redraw` also shows, beside decode(sliders), each certificate's
    drawing of the sliders' code (`certificate_ims[g]`, one per routing group)."""

    BAR_RECT = [0.79, LOWER, 0.19, 0.26]
    CLEAR_RECT = [0.605, 0.035, 0.10, 0.045]
    BAR_TITLE = "code z, the group read bright"
    READ_OFF = "|z|"

    # ---------------------------------------------------------------- layout
    def _build_images(self):
        """Top row: decode(sliders), certificate 0-4, certificate 5-9. Bottom row: the input
        and the canvas, beside the bars."""
        self.fig.suptitle("Each certificate draws from its half of the code alone", fontsize=13)
        self.output_ax, self.output_im = self._image_panel(0.40, "decode(sliders)")
        self.certificate_ims = []
        for g, (left, dims) in enumerate(zip((0.605, 0.81), self.routing.groups)):
            _, image = self._image_panel(left, f"certificate {self.routing.group_names[g]} "
                                               f"(dims {dims[0]}-{dims[-1]})")
            self.certificate_ims.append(image)
        self.input_ax, self.input_im = self._image_panel(0.40, "input", LOWER, LOWER_PANEL)
        self._build_canvas(0.58, LOWER, LOWER_PANEL)
        self.status = self.fig.text(0.69, 0.445, "", ha="center", fontsize=11)

    # ---------------------------------------------------------------- the model's calls
    def encode_input(self, x):
        """x (1, D) in [0, 1] -> (|z|, z), each (1, C): the group is read off the sizes of the
        code z the decoders read (no mean, no sampling)."""
        z = self.model.encode(self.model.to_input(x))
        return self.model.readout_of(z), z

    def picture(self, z, certificate=None):
        """z (C,) -> the main decoder's drawing (SIDE, SIDE) in [0, 1], or certificate g's
        drawing from its half of z."""
        z = np.asarray(z)[None, :]
        y = self.model.decode(z) if certificate is None else \
            self.model.decode_certificate(z, certificate)                  # (1, D)
        return unit_pixels(y).reshape(SIDE, SIDE)

    def group_read(self, z):
        """z (C,) -> the group with the largest mean |z|, or None on the all-zero code (Reset)."""
        if not np.any(z[:self.K]):
            return None
        return int(self.routing.read_group(np.abs(z)[None, :])[0])

    def redraw(self):
        """The certificates' drawings of the sliders' code, then all the window shows."""
        z = self.slider_values()                                    # (C,)
        for g, image in enumerate(self.certificate_ims):
            image.set_data(self.picture(z, certificate=g))
        super().redraw()
