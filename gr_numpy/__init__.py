"""gr-numpy: a gradient-routed variational autoencoder on MNIST, by hand in NumPy and Numba.

The teaching core, in reading order:
  1. routing.py    `Routing`: which code dims each label may train, as a mask on dL/dz; the
                   one-hot mask of one dim per digit is its simplest case.
  2. model.py      `VAE.backward`, the fenced "GRADIENT ROUTING" block: the one line where
                   routing happens; then the rest of the forward and backward pass.
  3. layers.py, losses.py   the forward/backward pairs the model is built from; mlp.py the
                   hidden stacks and the interface (`Model`) both models share.
  4. adam.py, training.py   the optimiser; `train_step` (loss and gradients, Adam) and the loop.
  5. gradcheck.py  the finite-difference checker every backward pass is tested with.
  6. autoencoder.py  the Gradient Routing paper's own MNIST model: the same routing line, with
                   certificate decoders that read the code as a constant (docs/halves.md).
Beside it: checkpoint.py (the saved file and the registry of models), files.py (atomic
writes), data.py (MNIST: `python -m gr_numpy.data`), presets.py (the recipes of train.py).

Around the core, each in a folder of its own:
  backend/   how it runs fast: the `ops` switch, input checks, NumPy twins, Numba kernels
  tools/     command-line helpers, figures, the inspector, the demo window and page
Imports point down: nothing outside tools/ imports from it.
"""

__version__ = "0.1.0"
