"""Self-describing checkpoints: a model can be rebuilt from best.pt alone.

    best.pt = {"model": name, "kwargs": {n_classes, input_shape, ...}, "features": {input: spec},
               "genres": [...], "state": state_dict, "config": {...}, "epoch", "val": {...}}
    last.pt = best.pt's fields for the newest epoch + optimizer, scheduler, GradScaler (fp16's
              loss scale), RNG state, best score: everything `main.py --resume` needs.

Checkpoints hold only tensors and plain data (dict, list, tuple, str, int, float, bool, None): `save`
converts numpy values, and `read` loads with torch.load(weights_only=True), so a crafted .pt cannot
run code when loaded; it is refused in one line.
"""
import re
from pathlib import Path

import numpy as np
import torch

from .errors import UserError
from .io import save_torch

REQUIRED = ("model", "kwargs", "features", "genres", "state")


def plain(obj):
    """`obj` with numpy scalars and arrays turned into Python numbers and tensors, recursively:
    what torch.load(weights_only=True) accepts."""
    if isinstance(obj, dict):
        return type(obj)((k, plain(v)) for k, v in obj.items())  # keeps OrderedDict state dicts
    if isinstance(obj, (list, tuple)):
        return type(obj)(plain(v) for v in obj)
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(obj))
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


# Numpy scalars (np.float64 metrics) in checkpoints written before `plain` existed: rebuilding one
# only reads bytes into a number, so they are safe to allow; nothing else outside torch's list is.
NUMPY_SCALARS = [(getattr(np, "_core", None) or np.core).multiarray.scalar, np.dtype,
                 *{type(np.dtype(t)) for t in ("f8", "f4", "i8", "i4", "u1", "b1")}]


def save(path, **fields):
    save_torch(path, plain(fields))


def _load_error(path, e):
    """One line for a file torch.load refused or could not read."""
    text = str(e)
    refused = re.search(r"GLOBAL ([\w.]+)", text)
    if "Weights only load failed" in text and "global" in text.lower():  # not a bare "Unsupported operand"
        what = f" ({refused.group(1)})" if refused else ""
        return (f"{path}: refused: it holds Python objects{what} that could run code when loaded, "
                "not just tensors and plain data (only a checkpoint from this project is loaded)")
    # torch's own messages for a damaged zip or a foreign file are long or cryptic (KeyError: 101),
    # and the name of the exception means nothing to someone who passed a song or a text file
    return f"{path}: not a readable checkpoint: truncated, corrupt or not a PyTorch file"


def read(path):
    """Load a checkpoint dict, checking it is one of ours."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"no checkpoint at {path}: train a model first (python main.py --model base2dcnn)")
    try:
        with torch.serialization.safe_globals(NUMPY_SCALARS):
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise UserError(_load_error(path, e)) from None
    missing = [k for k in REQUIRED if not isinstance(ckpt, dict) or k not in ckpt]
    if missing:
        raise UserError(f"{path}: not a checkpoint of this project (missing {', '.join(missing)})")
    old = [name for name, key in ckpt["features"].items() if "loudness" not in key]
    if old:
        raise UserError(f"{path}: trained on {', '.join(old)} features made before loudness normalization, so its answers "
                        "depend on the recording level: retrain it with this version (make demo, or main.py)")
    return ckpt


def non_finite(state):
    """(number of NaN or infinite values, number of values) over the floating tensors of a state
    dict (weights and BatchNorm statistics)."""
    floats = [t for t in state.values() if torch.is_tensor(t) and t.is_floating_point()]
    return sum(int((~torch.isfinite(t)).sum()) for t in floats), sum(t.numel() for t in floats)


def load_model(path):
    """Rebuild the model of a checkpoint. Returns (model in eval mode, checkpoint dict).
    Raises UserError for weights that do not fit, or that hold NaN or infinity (what a diverged
    run kept before training learned to stop: predict.py and --do_test would answer nonsense)."""
    from model import build

    ckpt = read(path)
    bad, total = non_finite(ckpt["state"])
    if bad:
        raise UserError(f"{path}: {bad:,} of its {total:,} weights are NaN or infinite (training diverged): not usable; "
                        f"retrain with a lower --lr")
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


def run_model(run_dir):
    """The model name a run folder trained: its config.json's, else its best.pt's (a folder made
    without config.json), else None."""
    import json

    config = Path(run_dir) / "config.json"
    try:
        return json.loads(config.read_text())["train"]["model"]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    try:
        return read(Path(run_dir) / "best.pt")["model"]
    except UserError:
        return None


def newest_run(model=None, root="runs"):
    """The run folder under `root` whose best.pt is newest, of exactly `model` when given (read
    from the run, not its folder name: runs/resnet34-* and runs/resnet34_musicnn-* both start
    with "resnet34"), or None."""
    runs = sorted(Path(root).glob("*/best.pt"), key=lambda p: p.stat().st_mtime)
    runs = [p for p in runs if model is None or run_model(p.parent) == model]
    return runs[-1].parent if runs else None


def diverged_message(run_dir):
    """The diverged_message of a run folder's metrics.json (experiment.diverged_fields), or "" for a
    run that did not diverge or has no readable metrics.json."""
    import json

    try:
        metrics = json.loads((Path(run_dir) / "metrics.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ""
    return (metrics.get("diverged_message") or "diverged") if isinstance(metrics, dict) and metrics.get("diverged") else ""
