"""Segment- and clip-level evaluation. A clip's prediction is the mean of its segments' softmax."""
import numpy as np
import torch
from sklearn.metrics import classification_report, confusion_matrix, f1_score

from .data import batches


@torch.no_grad()
def predict_segments(model, fs, device, batch_size=64):
    """Softmax probabilities (N, n_classes) and the mean cross-entropy over `fs`."""
    model.eval()
    probs, loss, n = [], 0.0, 0
    for xs, y in batches(fs, batch_size):
        logits = model(*[xs[k].to(device) for k in model.inputs])
        loss += torch.nn.functional.cross_entropy(logits, y.to(device), reduction="sum").item()
        probs.append(torch.softmax(logits.float(), dim=1).cpu().numpy())
        n += len(y)
    return np.concatenate(probs), loss / max(n, 1)


def clip_probs(seg_probs, clip, n_clips):
    """Mean of segment probabilities per clip: (N, C), (N,) -> (n_clips, C)."""
    out = np.zeros((n_clips, seg_probs.shape[1]))
    np.add.at(out, clip, seg_probs)
    return out / np.bincount(clip, minlength=n_clips)[:, None]


def clip_labels(fs):
    labels = np.zeros(len(fs.clip_ids), dtype=np.int64)
    labels[fs.clip] = fs.y
    return labels


def score(seg_probs, fs, genres):
    """Accuracies, macro-F1, per-class report and confusion matrix (clip level)."""
    cp = clip_probs(seg_probs, fs.clip, len(fs.clip_ids))
    truth, pred = clip_labels(fs), cp.argmax(1)
    labels = list(range(len(genres)))
    return {
        "segment_accuracy": float((seg_probs.argmax(1) == fs.y).mean()),
        "clip_accuracy": float((pred == truth).mean()),
        "macro_f1": float(f1_score(truth, pred, labels=labels, average="macro", zero_division=0)),
        "per_class": classification_report(truth, pred, labels=labels, target_names=genres, output_dict=True,
                                           zero_division=0),
        "confusion_matrix": confusion_matrix(truth, pred, labels=labels).tolist(),
        "n_clips": len(truth),
        "n_segments": len(fs.y),
    }


def clip_predictions(seg_probs, fs, genres):
    """Per test clip, the predictions.json format: {"genres": [...], "clip_ids": [...], "true":
    [genre], "pred": [genre], "probs": [[p per genre in `genres` order]]}."""
    cp = clip_probs(seg_probs, fs.clip, len(fs.clip_ids))
    return {"genres": list(genres), "clip_ids": list(fs.clip_ids),
            "true": [genres[i] for i in clip_labels(fs)], "pred": [genres[i] for i in cp.argmax(1)],
            "probs": np.round(cp, 6).tolist()}


def bootstrap_ci(correct, n_boot=2000, seed=0, level=0.95):
    """Percentile bootstrap CI of an accuracy over clips: resample the clips (with replacement)
    `n_boot` times with a fixed seed. correct: (n_clips,) bool. Returns [low, high]."""
    correct = np.asarray(correct, dtype=np.float64)
    if len(correct) == 0:
        return [float("nan"), float("nan")]
    idx = np.random.default_rng(seed).integers(0, len(correct), size=(n_boot, len(correct)))
    means = correct[idx].mean(1)
    return [float(np.quantile(means, (1 - level) / 2)), float(np.quantile(means, (1 + level) / 2))]


def pooled_predictions(root, run_names):
    """predictions.json of several runs of an experiment, concatenated (k-fold: each clip once per
    seed). A clip tested by more than one run (several seeds) is keyed `seed<S>:<clip id>`."""
    import json
    from pathlib import Path

    loaded = [(name, json.loads(f.read_text())) for name in run_names
              if (f := Path(root) / name / "predictions.json").exists()]
    if not loaded:
        return None
    ids = [c for _, p in loaded for c in p["clip_ids"]]
    repeated = len(ids) != len(set(ids))
    out = {"genres": loaded[0][1]["genres"], "clip_ids": [], "true": [], "pred": [], "probs": []}
    for name, p in loaded:
        out["clip_ids"] += [f"{name.split('-fold')[0]}:{c}" if repeated else c for c in p["clip_ids"]]
        for k in ("true", "pred", "probs"):
            out[k] += p[k]
    return out

