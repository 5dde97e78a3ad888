"""How the model runs fast: the backend switch and the kernels behind it.

  ops.py         the operations the layers call (`ops.linear`, `ops.relu_backward`, ...), each
                 checked, then sent to the backend chosen with `ops.set_backend`
  checks.py      the input checks both backends go through, so both refuse the same input
  numpy_ops.py   the plain NumPy reference: a few readable lines per operation
  kernels/       the Numba kernels, each tested against its NumPy twin

Nothing in the maths depends on which backend runs it: the layers, losses and optimiser call
`ops` and never a backend directly. Numba is imported only when its backend is chosen.
"""
