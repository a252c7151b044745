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
    """A cache's index.json as a dict (a run reads it through rundata.read_index, once)."""
    return json.loads((Path(cache) / "index.json").read_text())


def from_rows(packs, spans, clip_ids):
    """A FeatureSet over the rows of memory-mapped packs (rundata.py decides which rows).
    packs: {input name: pack path}; spans: one (clip index into clip_ids, label, {input name: first
    row}, segments) per clip copy, in segment order: segment j of a span is row first + j, and
    `segments` ((k,) int64, ascending) are the ones taken (pos keeps j, so gaps stay gaps)."""
    rows = {n: [first[n] + segs for _, _, first, segs in spans] for n in packs}
    y = [np.full(len(segs), label) for _, label, _, segs in spans]
    clip = [np.full(len(segs), i) for i, _, _, segs in spans]
    pos = [segs for *_, segs in spans]
    return FeatureSet({n: Rows(packs[n], np.concatenate(rows[n])) for n in packs},
                      np.concatenate(y).astype(np.int64), np.concatenate(clip).astype(np.int64), list(clip_ids),
                      np.concatenate(pos).astype(np.int64))


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
