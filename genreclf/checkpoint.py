"""Self-describing checkpoints: a model can be rebuilt from best.pt alone.

    best.pt = {"model": name, "kwargs": {n_classes, input_shape, ...}, "features": {input: spec},
               "genres": [...], "state": state_dict, "config": {...}, "epoch", "val": {...}}
    last.pt = best.pt's fields for the newest epoch + optimizer, scheduler, RNG state, best score:
              everything `main.py --resume` needs.
"""
from pathlib import Path

import torch

from .errors import UserError
from .io import save_torch

REQUIRED = ("model", "kwargs", "features", "genres", "state")


def save(path, **fields):
    save_torch(path, fields)


def read(path):
    """Load a checkpoint dict, checking it is one of ours."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"no checkpoint at {path}: train a model first (python main.py --model base2dcnn)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:
        raise UserError(f"{path}: not a readable checkpoint ({type(e).__name__}: {str(e)[:100]})") from None
    missing = [k for k in REQUIRED if not isinstance(ckpt, dict) or k not in ckpt]
    if missing:
        raise UserError(f"{path}: not a checkpoint of this project (missing {', '.join(missing)})")
    return ckpt


def load_model(path):
    """Rebuild the model of a checkpoint. Returns (model in eval mode, checkpoint dict)."""
    from model import build

    ckpt = read(path)
    model = build(ckpt["model"], **ckpt["kwargs"])
    try:
        model.load_state_dict(ckpt["state"])
    except RuntimeError as e:
        raise UserError(f"{path}: weights do not fit model {ckpt['model']} ({str(e).splitlines()[0][:150]})") from None
    return model.eval(), ckpt


def check_features(ckpt, features, path):
    """Refuse a cache made with other feature parameters than the checkpoint's."""
    for name, spec in ckpt["features"].items():
        if features.get(name) != spec:
            raise UserError(f"{path} was trained on {name} features {spec}, but the cache for these flags was "
                            f"made with {features.get(name)}: pass the checkpoint's feature flags")
