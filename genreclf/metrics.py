"""Segment- and clip-level evaluation. A clip's prediction is the mean of its segments' softmax."""
import numpy as np
import torch

from .data import batches
from .stats import macro_f1


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
    """Accuracies, macro-F1, per-class report and confusion matrix (clip level). macro-F1 averages
    the genres present in these clips (stats.macro_f1): a fold without reggae is not marked down
    for it; "macro_f1_genres" says how many were averaged. The report lists every genre."""
    from sklearn.metrics import classification_report, confusion_matrix  # here: 0.7 s that --help need not pay

    cp = clip_probs(seg_probs, fs.clip, len(fs.clip_ids))
    truth, pred = clip_labels(fs), cp.argmax(1)
    labels = list(range(len(genres)))
    return {
        "segment_accuracy": float((seg_probs.argmax(1) == fs.y).mean()),
        "clip_accuracy": float((pred == truth).mean()),
        "macro_f1": macro_f1(truth, pred),
        "macro_f1_genres": len(set(truth.tolist())),
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
