"""gr-numpy: a gradient-routed variational autoencoder on MNIST, by hand in NumPy and Numba.

Reading order:
  1. routing.py   `route_mask`: the one-hot mask that is the whole idea.
  2. model.py     `VAE.encoder_backward`, the fenced "GRADIENT ROUTING" block: the one line
                  where routing happens; then the rest of the forward and backward pass.
  3. layers.py, losses.py   the forward/backward pairs the model is built from.
  4. adam.py      the optimiser.
  5. training.py  the loop; labels are passed to the model only when routing.
  6. ops.py -> kernels.py (Numba) and numpy_ops.py (their NumPy twins): the compute kernels.
  7. codes.py     with style dims (docs/style.md): a typical value per digit dim, and
                  "same style, other digit", shared by the demo and the figures.
To watch routing act on real gradients: `python -m gr_numpy.inspector` (inspector.py).
"""

__version__ = "0.1.0"
