"""Cached segments for training, read through a memory map: no audio is decoded after dataset.py,
and RAM holds only the batch in use, whatever the size of the cache (genreclf/pack.py).

A FeatureSet is one split: one array-like per model input, all aligned by segment.
    x[name]  (N, ...) float32   e.g. mel (N, n_mels, frames), musicnn (N, D): pack.Rows, rows of
                                the cache's memory-mapped pack, gathered when indexed
    y        (N,) int64         genre index
    clip     (N,) int64         index into clip_ids: segments of one clip share it
    pos      (N,) int64         the segment's index in its clip copy (time order), or None
"""
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import UserError
from .pack import Rows


@dataclass
class FeatureSet:
    x: dict
    y: np.ndarray
    clip: np.ndarray
    clip_ids: list
    pos: np.ndarray = None  # random crops read the next segment of the same copy (recipe.py)

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


def _open(cache):
    """({clip id: index entry}, pack path) of one cache; UserError for a cache without a pack."""
    index = read_index(cache)
    if "pack" not in index:
        raise UserError(f"{cache}: made by an older dataset.py, without the segment pack training reads: rerun "
                        f"dataset.py with the same flags (it skips the computed clips and only packs them)")
    entries = {c["id"]: c for clips in index["splits"].values() for c in clips}
    return entries, (Path(cache) / index["pack"] if index["pack"] else None)


def load_clips(caches, ids, genres, augmented=False):
    """Clips `ids` (any mix of the cache's parts) from {input name: cache dir}, as a FeatureSet
    whose x[name] are rows of the memory-mapped pack. `augmented` includes each clip's augmented
    copies (those that exist: dataset.py makes them for the training split only); every copy keeps
    its clip's id. Clips must be present in every cache (one skipped by a featurizer is dropped).
    Segment order: clips in `ids` order, copies in cache order, segments in time order."""
    opened = {name: _open(cache) for name, cache in caches.items()}
    names = list(caches)
    ids = [cid for cid in ids if all(cid in opened[n][0] for n in names)]
    rows = {n: [] for n in names}
    y, clip, clip_ids, pos = [], [], [], []
    for cid in ids:
        entries = {n: opened[n][0][cid] for n in names}
        entry = entries[names[0]]
        if entry["genre"] not in genres:
            raise UserError(f"clip {cid} has genre {entry['genre']!r}, unknown to this model ({', '.join(genres)})")
        versions = [v for v in entry["versions"] if all(v in entries[n]["versions"] for n in names)]
        versions = versions if augmented else [v for v in versions if v == "orig"]
        for v in versions:
            spans = {n: entries[n]["rows"][v] for n in names}
            k = min(n_rows for _, n_rows in spans.values())  # featurizers may round the last segment differently
            for n in names:
                rows[n].append(np.arange(spans[n][0], spans[n][0] + k))
            y += [genres.index(entry["genre"])] * k
            clip += [len(clip_ids)] * k
            pos += range(k)
        clip_ids.append(cid)
    if not y:
        raise UserError(f"no cached segments for these clips in {', '.join(map(str, caches.values()))}")
    return FeatureSet({n: Rows(opened[n][1], np.concatenate(rows[n])) for n in names},
                      np.asarray(y, dtype=np.int64), np.asarray(clip, dtype=np.int64), clip_ids,
                      np.asarray(pos, dtype=np.int64))


def batch_plan(n, batch_size, shuffle=False, seed=0, rank=0, world=1):
    """The segment indices of each batch this rank runs: a list of (B,) int64 arrays. Shuffling
    depends only on `seed`, so a resumed epoch sees the same order. With world > 1 each rank takes
    every world-th batch of the same permutation (padding by wrap-around so that all ranks run the
    same number of steps)."""
    order = np.random.default_rng(seed).permutation(n) if shuffle else np.arange(n)
    n_batches = -(-len(order) // batch_size)
    n_batches = -(-n_batches // world) * world
    order = np.resize(order, n_batches * batch_size) if world > 1 else order
    plan = [order[b * batch_size:(b + 1) * batch_size] for b in range(rank, n_batches, world)]
    return [idx for idx in plan if len(idx)]


def gather(fs, idx):
    """(inputs {name: (B, ...) tensor}, y (B,) tensor) of segments `idx`."""
    return {n: torch.from_numpy(a[idx]) for n, a in fs.x.items()}, torch.from_numpy(fs.y[idx])


def batches(fs, batch_size, shuffle=False, seed=0, rank=0, world=1):
    """Yield (inputs {name: (B, ...)}, y (B,)) tensors, batch by batch of batch_plan()."""
    for idx in batch_plan(len(fs), batch_size, shuffle, seed, rank, world):
        yield gather(fs, idx)


class _Planned(torch.utils.data.Dataset):
    """Batch b of a plan as one item: DataLoader workers gather whole batches from the map."""

    def __init__(self, fs, plan):
        self.fs, self.plan = fs, plan

    def __len__(self):
        return len(self.plan)

    def __getitem__(self, b):
        return gather(self.fs, self.plan[b])


def loader(fs, batch_size, shuffle=False, seed=0, rank=0, world=1, workers=0, pin_memory=False):
    """The batches of batches(), in the same order, read by `workers` processes ahead of the model
    and into pinned (page-locked) memory when asked, so that host-to-GPU copies can overlap compute
    (`.to(device, non_blocking=True)`). With no workers and no pinning it is batches() itself."""
    if not workers and not pin_memory:
        return batches(fs, batch_size, shuffle, seed, rank, world)
    plan = batch_plan(len(fs), batch_size, shuffle, seed, rank, world)
    return torch.utils.data.DataLoader(_Planned(fs, plan), batch_size=None, shuffle=False, num_workers=workers,
                                       pin_memory=pin_memory, prefetch_factor=4 if workers else None)
