"""Checkpoints: one .npz file holding everything needed to resume or to use a trained model.

Inside: the parameters (`param/<name>`), the Adam state (`adam/...`), and `meta`, a JSON string
with the format version, the model config, its routing, the training config, the training
position (epoch, step, the epoch's shuffle order) and the random generator's state. Writes go to a temporary file that is
renamed over the old one only when complete, so a crash mid-write never destroys the last good
checkpoint. Loading uses `allow_pickle=False`: a checkpoint file can never run code.
"""

import json
import zipfile
from pathlib import Path

import numpy as np

from .cli import CHECKPOINT_NAME
from .files import write_atomically

FORMAT = "gr-numpy-checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint that is missing, truncated, foreign or from another format version."""


def save_checkpoint(path, params, meta, adam_state=None, arrays=None):
    """Write params, optimiser state, extra arrays and a JSON-able meta dict to path, atomically."""
    path = Path(path)
    contents = {f"param/{k}": v for k, v in params.items()}
    contents.update({f"adam/{k}": v for k, v in (adam_state or {}).items()})
    contents.update({f"array/{k}": v for k, v in (arrays or {}).items()})
    meta = dict(meta, format=FORMAT, version=VERSION)
    contents["meta"] = np.array(json.dumps(meta))
    write_atomically(path, lambda f: np.savez(f, **contents))   # readers see old or new, never half


def checkpoint_file(path):
    """A run folder or a checkpoint file -> the checkpoint file's Path (it may not exist)."""
    path = Path(path)
    return path / CHECKPOINT_NAME if path.is_dir() else path


def load_checkpoint(path):
    """path (a run folder or its checkpoint file) -> (params, meta, adam_state, arrays).

    Raises CheckpointError with a one-line hint.
    """
    folder, path = Path(path), checkpoint_file(path)
    if folder.is_dir() and not path.is_file():
        raise CheckpointError(f"the folder {folder} holds no {CHECKPOINT_NAME}: give a run "
                              f"folder that `python train.py --out` wrote, or a checkpoint file")
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}: run `python train.py` first, "
                              f"or pass --checkpoint RUN_FOLDER")
    try:
        with np.load(path, allow_pickle=False) as npz:
            contents = {k: npz[k] for k in npz.files}
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
        raise CheckpointError(f"{path} is not a readable checkpoint ({type(e).__name__}: {e}); "
                              f"it may be truncated or from another program — delete it and train "
                              f"again") from None
    try:
        meta = json.loads(str(contents.pop("meta")))
    except (KeyError, json.JSONDecodeError):
        raise CheckpointError(f"{path} is an .npz but not a gr-numpy checkpoint (no valid 'meta' "
                              f"entry)") from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a gr-numpy checkpoint (format {meta.get('format')!r})")
    if meta.get("version") != VERSION:
        raise CheckpointError(f"{path} has checkpoint format version {meta.get('version')}, this "
                              f"gr-numpy reads version {VERSION}; retrain with this version")
    parts = {"param": {}, "adam": {}, "array": {}}
    for key, value in contents.items():
        kind, _, name = key.partition("/")
        if kind in parts:
            parts[kind][name] = value
    for kind in ("param", "adam"):
        for name, value in parts[kind].items():
            _check_numbers(path, f"{kind}/{name}", value)
    return parts["param"], meta, parts["adam"], parts["array"]


def _check_numbers(path, key, value):
    """A stored parameter or optimiser array must be finite float32/float64 numbers."""
    if value.dtype not in (np.float32, np.float64) and not (key == "adam/t" and
                                                            np.issubdtype(value.dtype, np.integer)):
        raise CheckpointError(f"{path}: {key} holds {value.dtype} values, not float32 or float64; "
                              f"the file is damaged or not from gr-numpy — train again")
    if value.dtype.kind == "f" and not np.isfinite(value).all():
        raise CheckpointError(f"{path}: {key} holds NaN or inf values; the model is broken — "
                              f"train again, or use another checkpoint")


def load_model(path, kinds=("vae", "autoencoder"), tool=None):
    """path (a run folder or its checkpoint file) -> the model ready for encode/decode (a VAE,
    or the paper's autoencoder), rebuilt from the config and routing stored in the checkpoint.

    kinds: the models the calling tool can show; any other is refused in one line naming tool.
    """
    from ..training import build_model, model_config_of, routing_of

    params, meta, _, _ = load_checkpoint(path)
    try:
        config = model_config_of(meta)
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: its model does not match this gr-numpy ({e}); retrain "
                              f"with `python train.py`") from None
    if config.kind not in kinds:
        raise CheckpointError(f"{path} holds the paper's autoencoder (--preset halves); "
                              f"{tool or 'this tool'} shows VAEs only — see certificates.png "
                              f"in its run folder, or `python train.py --eval-only --checkpoint "
                              f"{path}`")
    try:
        return build_model(config, params=params, routing=routing_of(meta))
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: its model does not match this gr-numpy ({e}); retrain "
                              f"with `python train.py`") from None
