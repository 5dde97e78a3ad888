"""Checkpoints: one .npz file holding everything needed to resume or to use a trained model.

Inside: the parameters (`param/<name>`), the Adam state (`adam/...`), extra arrays (`array/...`:
the epoch's shuffle order) and `meta`, a JSON string with the format version, the model config
(with its `kind`), its routing, the training config, the training position and the random
generator's state. This module is the one place that knows that layout: `save_checkpoint`
writes it, `load_checkpoint` reads it (and `upgrade` brings a file from an older gr-numpy to
today's fields, in one function), and `MODELS` is the registry where a checkpoint's `kind`
picks the model class. Writes are atomic (files.py), so a crash mid-write never destroys the
last good checkpoint; loading uses `allow_pickle=False`, so a checkpoint can never run code.
"""

import json
import zipfile
from pathlib import Path

import numpy as np

from .autoencoder import Autoencoder, AutoencoderConfig
from .files import write_atomically
from .model import VAE, VAEConfig
from .routing import Routing, one_per_digit

FORMAT = "gr-numpy-checkpoint"
VERSION = 1
CHECKPOINT_NAME = "checkpoint.npz"           # the model, inside a run folder

# The models: a config's `kind` names its class, and a checkpoint stores that name.
MODELS = {"vae": (VAE, VAEConfig), "autoencoder": (Autoencoder, AutoencoderConfig)}


class CheckpointError(ValueError):
    """A checkpoint that is missing, truncated, foreign or from another format version."""


# ---------------------------------------------------------------------------- the registry
def build_model(config, routing=None, params=None, rng=None):
    """The model a config describes (its class from MODELS by config.kind)."""
    return MODELS[config.kind][0](config, params=params, rng=rng, routing=routing)


def model_config_of(meta):
    """The model config stored in meta (its class picked by meta["model"]["kind"])."""
    stored = dict(meta["model"])
    kind = stored.pop("kind", "vae")
    if kind not in MODELS:
        raise ValueError(f"unknown model kind {kind!r}")
    return MODELS[kind][1](**stored)


def routing_of(meta):
    """The routing stored in meta."""
    return Routing.from_dict(meta["routing"])


# ---------------------------------------------------------------------------- files
def checkpoint_file(path):
    """A run folder or a checkpoint file -> the checkpoint file's Path (it may not exist)."""
    path = Path(path)
    return path / CHECKPOINT_NAME if path.is_dir() else path


def save_checkpoint(path, params, meta, adam_state=None, arrays=None):
    """Write params, optimiser state, extra arrays and a JSON-able meta dict to path, atomically."""
    contents = {f"param/{k}": v for k, v in params.items()}
    contents.update({f"adam/{k}": v for k, v in (adam_state or {}).items()})
    contents.update({f"array/{k}": v for k, v in (arrays or {}).items()})
    meta = dict(meta, format=FORMAT, version=VERSION)
    contents["meta"] = np.array(json.dumps(meta))
    write_atomically(Path(path), lambda f: np.savez(f, **contents))   # old or new, never half


def load_checkpoint(path):
    """path (a run folder or its checkpoint file) -> (params, meta, adam_state, arrays), meta
    in today's fields (`upgrade`). Raises CheckpointError with a one-line hint."""
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
        part, _, name = key.partition("/")
        if part in parts:
            parts[part][name] = value
    for part in ("param", "adam"):
        for name, value in parts[part].items():
            _check_numbers(path, f"{part}/{name}", value)
    try:
        meta = upgrade(meta)
    except ValueError as e:
        raise CheckpointError(f"{path}: {e}") from None
    return parts["param"], meta, parts["adam"], parts["array"]


def upgrade(meta):
    """meta as an older gr-numpy wrote it -> the same in today's fields; the one place that
    knows the older layouts. Fields added to a config since take their defaults when the
    config is built (a run without weight_decay_form decayed decoupled, the only form there
    was)."""
    meta = dict(meta)
    model = meta["model"] = {"kind": "vae", **meta.get("model", {})}   # before autoencoders
    if "routing" not in meta:                             # before routings were stored
        if model.get("latent", 10) != 10:
            raise ValueError(f"it was written before routings were stored, with "
                             f"{model['latent']} latent dims, which name no digit; train it again")
        meta["routing"] = one_per_digit(style=model.get("style", 0)).to_dict()
    if "train" in meta:
        train = meta["train"] = dict(meta["train"])
        if "routing" in train:                            # `routed` was called `routing`
            train["routed"] = train.pop("routing")
    if isinstance(meta.get("sums"), list):                # [loss, recon, kl, images], a VAE's
        meta["totals"] = dict(zip(VAE.logged_losses + ("images",), meta.pop("sums")))
    return meta


def _check_numbers(path, key, value):
    """A stored parameter or optimiser array must be finite float32/float64 numbers."""
    if value.dtype not in (np.float32, np.float64) and not (key == "adam/t" and
                                                            np.issubdtype(value.dtype, np.integer)):
        raise CheckpointError(f"{path}: {key} holds {value.dtype} values, not float32 or float64; "
                              f"the file is damaged or not from gr-numpy — train again")
    if value.dtype.kind == "f" and not np.isfinite(value).all():
        raise CheckpointError(f"{path}: {key} holds NaN or inf values; the model is broken — "
                              f"train again, or use another checkpoint")


def load_model(path, kinds=tuple(MODELS), tool=None):
    """path (a run folder or its checkpoint file) -> the model ready for encode/decode, rebuilt
    from the config and routing stored in the checkpoint.

    kinds: the models the calling tool can show; any other is refused in one line naming tool.
    """
    params, meta, _, _ = load_checkpoint(path)
    try:
        config = model_config_of(meta)
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: its model does not match this gr-numpy ({e}); retrain "
                              f"with `python train.py`") from None
    if config.kind not in kinds:
        raise CheckpointError(f"{path} holds a model of kind {config.kind!r}; {tool or 'this tool'} "
                              f"shows {' and '.join(kinds)} models only — score it with "
                              f"`python train.py --eval-only --checkpoint {path}`")
    try:
        return build_model(config, routing=routing_of(meta), params=params)
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: its model does not match this gr-numpy ({e}); retrain "
                              f"with `python train.py`") from None
