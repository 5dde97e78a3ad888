"""gr-numpy: a gradient-routed variational autoencoder on MNIST, by hand in NumPy and Numba.

Reading order:
  1. routing.py   `route_mask` and `route_gradient`: the one-hot mask that is the whole idea.
  2. model.py     `VAE.backward`, the fenced "GRADIENT ROUTING" block: the one line where
                  routing happens; then the rest of the forward and backward pass.
  3. layers.py, losses.py   the forward/backward pairs the model is built from.
  4. adam.py, training.py   the optimiser; the loop (labels reach the model only when routing).
  5. gradcheck.py the finite-difference checker every backward pass is tested with.
  6. ops.py -> kernels/ (Numba) and numpy_ops.py (their NumPy twins): the compute kernels;
                  checks.py holds the input checks both backends go through.
  7. codes.py     with style dims (docs/style.md): a typical value per digit dim, and
                  "same style, other digit", shared by the demo and the figures.
Around them: data.py (MNIST), checkpoint.py, cli.py (what every tool shares), and the tools
figures.py, inspector.py (`python -m gr_numpy.inspector` watches routing act on real gradients)
and demo_app.py (the window of `python demo.py`).
"""

__version__ = "0.1.0"
