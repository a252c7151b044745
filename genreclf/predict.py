"""Classify anyone's audio files with a trained checkpoint, or tag them with musicnn.

Audio is decoded once and processed in chunks of CHUNK_SEGMENTS segments (about 28 s, a GTZAN
clip's length), so feature memory is bounded whatever the file's length, and the dB floor of each
chunk is set as it was on the 30 s training clips. A file's probabilities are the mean of its
segments' softmax, as in evaluation.
"""
import numpy as np
import torch

from . import audio, musicnn
from .featurizers import FEATURIZERS

LABEL = {"probabilities": "genre", "tags": "tag"}  # JSON key of the distribution -> name of one label
CHUNK_SEGMENTS = 7
MUSICNN_CHUNK_PATCHES = 64  # about 3 minutes of audio per musicnn batch


class Classifier:
    """A checkpoint's model with the featurizers its inputs were trained on."""

    def __init__(self, model, ckpt, device="cpu"):
        self.model = model.to(device).eval()
        self.genres = ckpt["genres"]
        self.device = device
        self.featurizers = {name: FEATURIZERS[key["features"]].from_key(key) for name, key in ckpt["features"].items()}
        self.segment_s = next(iter(self.featurizers.values())).segment_seconds  # all share one grid

    @torch.no_grad()
    def __call__(self, path):
        """{"duration", "segments": [(start, end)], "probs": (n_segments, n_genres)} for one file."""
        waves = {}
        for name, f in self.featurizers.items():
            if f.sr not in waves:
                waves[f.sr] = audio.load(path, f.sr)
        duration = len(next(iter(waves.values()))) / next(iter(waves))
        chunk_s = CHUNK_SEGMENTS * self.segment_s
        probs = []
        for start in np.arange(0, duration, chunk_s):
            inputs = {}
            for name, f in self.featurizers.items():
                w = waves[f.sr][int(round(start * f.sr)):int(round((start + chunk_s) * f.sr))]
                try:
                    inputs[name] = f(w)["segments"]
                except ValueError:  # the tail is shorter than one segment: dropped, as in training
                    inputs = None
                    break
            if not inputs:
                continue
            n = min(len(x) for x in inputs.values())
            xs = [torch.as_tensor(inputs[k][:n], device=self.device) for k in self.model.inputs]
            probs.append(torch.softmax(self.model(*xs), dim=1).cpu().numpy())
        if not probs:
            raise audio.AudioError(f"{path}: {duration:.2f} s is shorter than one {self.segment_s:.2f} s segment")
        probs = np.concatenate(probs)
        bounds = [(k * self.segment_s, (k + 1) * self.segment_s) for k in range(len(probs))]
        return {"duration": duration, "segments": bounds, "probs": probs}


def result(path, out, labels, top_k, timeline, key="probabilities"):
    """The JSON object of one file: top-k, all probabilities, and optionally the timeline."""
    mean = out["probs"].mean(0)
    order = np.argsort(-mean)[:top_k]
    r = {"path": str(path), "duration": round(out["duration"], 3),
         "top": [{LABEL[key]: labels[i], "probability": float(mean[i])} for i in order],
         key: {g: float(p) for g, p in zip(labels, mean)}}
    if timeline:
        r["timeline"] = [{"start": round(a, 3), "end": round(b, 3), "top": labels[int(p.argmax())],
                          key: {g: float(x) for g, x in zip(labels, p)}} for (a, b), p in zip(out["segments"], out["probs"])]
    return r


class Tagger:
    """musicnn's own 50 tags, averaged over the file's 3 s patches: no trained model needed."""

    def __init__(self, name, device="cpu"):
        self.model = musicnn.load(name).to(device)
        self.genres = self.model.tags
        self.device = device

    def __call__(self, path):
        wave = audio.load(path, musicnn.SR)
        patches = musicnn.preprocess(wave)
        tags = np.concatenate([musicnn.run(self.model, patches[i:i + MUSICNN_CHUNK_PATCHES], self.device)["taggram"]
                               for i in range(0, len(patches), MUSICNN_CHUNK_PATCHES)])
        step = musicnn.PATCH * musicnn.HOP / musicnn.SR
        return {"duration": len(wave) / musicnn.SR, "probs": tags,
                "segments": [(k * step, (k + 1) * step) for k in range(len(tags))]}


def table(results, key):
    lines = []
    for r in results:
        top = ", ".join(f"{t[LABEL[key]]} {t['probability']:.2f}" for t in r["top"])
        lines.append(f"{r['path']}  ({r['duration']:.1f} s)  {top}")
        for seg in r.get("timeline", []):
            lines.append(f"    {seg['start']:7.2f}-{seg['end']:7.2f} s  {seg['top']}")
    return "\n".join(lines)


def csv_rows(results, labels, key):
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["path", "duration", "top"] + labels)
    for r in results:
        w.writerow([r["path"], r["duration"], r["top"][0][LABEL[key]]] + [f"{r[key][g]:.6f}" for g in labels])
    return buf.getvalue()
