"""The tooling around the model: command-line helpers, files, checkpoints, figures, windows.

  cli.py          what every command shares: one-line errors, flag types, run-folder names
  files.py        writing a file whole or not at all
  runfolder.py    one training process per run folder (a lock)
  checkpoint.py   saving and loading a model, its routing and its training position (.npz)
  figures.py      a run's figures (python -m gr_numpy.tools.figures)
  inspector.py    routing watched on real gradients (python -m gr_numpy.tools.inspector)
  demo_app.py     the window of `python demo.py`
  demo_certificates.py  that window on the paper's autoencoder: both certificates' drawings

The model and its training loop import nothing from here; these modules import the model.
"""
