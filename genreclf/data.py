"""Cached segments held in memory for training: no audio is decoded after dataset.py.

A FeatureSet is one split: one array per model input, all aligned by segment.
    x[name]  (N, ...) float32   e.g. mel (N, n_mels, frames), musicnn (N, D)
    y        (N,) int64         genre index
    clip     (N,) int64         index into clip_ids: segments of one clip share it
"""
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import UserError
from .extract import clip_file


@dataclass
class FeatureSet:
    x: dict
    y: np.ndarray
    clip: np.ndarray
    clip_ids: list

    def __len__(self):
        return len(self.y)


def read_index(cache):
    return json.loads((Path(cache) / "index.json").read_text())


def genres_of(cache):
    """Sorted genres of all splits: the label order of every model trained on this cache."""
    return sorted({c["genre"] for clips in read_index(cache)["splits"].values() for c in clips})


def split_ids(cache):
    """{part: [clip id]} as dataset.py cached them (unreadable files already left out)."""
    return {part: [c["id"] for c in clips] for part, clips in read_index(cache)["splits"].items()}


def load_clips(caches, ids, genres, augmented=False):
    """Load clips `ids` from {input name: cache dir}. `augmented` includes each clip's augmented
    copies (those that exist: dataset.py makes them for the training split only); every copy keeps
    its clip's id. Clips must be present in every cache (one skipped by a featurizer is dropped)."""
    indexes = {name: {c["id"]: c for clips in read_index(cache)["splits"].values() for c in clips}
               for name, cache in caches.items()}
    names = list(caches)
    ids = [cid for cid in ids if all(cid in indexes[n] for n in names)]
    xs = {n: [] for n in names}
    y, clip, clip_ids = [], [], []
    for cid in ids:
        entry = indexes[names[0]][cid]
        if entry["genre"] not in genres:
            raise UserError(f"clip {cid} has genre {entry['genre']!r}, unknown to this model ({', '.join(genres)})")
        versions = [v for v in entry["versions"] if all(v in indexes[n][cid]["versions"] for n in names)]
        versions = versions if augmented else [v for v in versions if v == "orig"]
        for v in versions:
            arrays = {n: np.load(clip_file(caches[n], cid, v)) for n in names}
            k = min(len(a) for a in arrays.values())  # featurizers may round the last segment differently
            for n in names:
                xs[n].append(arrays[n][:k])
            y += [genres.index(entry["genre"])] * k
            clip += [len(clip_ids)] * k
        clip_ids.append(cid)
    if not y:
        raise UserError(f"no cached segments for these clips in {', '.join(map(str, caches.values()))}")
    return FeatureSet({n: np.concatenate(xs[n]).astype(np.float32, copy=False) for n in names},
                      np.asarray(y, dtype=np.int64), np.asarray(clip, dtype=np.int64), clip_ids)


def batches(fs, batch_size, shuffle=False, seed=0, rank=0, world=1):
    """Yield (inputs {name: (B, ...)}, y (B,)) tensors. Shuffling depends only on `seed`, so a
    resumed epoch sees the same order. With world > 1 each rank takes every world-th batch of
    the same permutation (padding by wrap-around so that all ranks run the same number of steps)."""
    order = np.random.default_rng(seed).permutation(len(fs)) if shuffle else np.arange(len(fs))
    n_batches = -(-len(order) // batch_size)
    n_batches = -(-n_batches // world) * world
    order = np.resize(order, n_batches * batch_size) if world > 1 else order
    for b in range(rank, n_batches, world):
        idx = order[b * batch_size:(b + 1) * batch_size]
        if len(idx) == 0:
            continue
        yield {n: torch.from_numpy(a[idx]) for n, a in fs.x.items()}, torch.from_numpy(fs.y[idx])
