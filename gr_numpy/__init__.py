"""gr-numpy: a gradient-routed variational autoencoder on MNIST, by hand in NumPy and Numba."""

__version__ = "0.1.0"
