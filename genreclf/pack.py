"""The segment pack: every cached segment of one cache in one contiguous .npy, read through a
memory map so that training holds in RAM only the batch it is working on.

    WORK/cache/<name>-<hash>/segments-<layout hash>.npy    (R, ...) float32, R = all segments
    index.json: "pack": that file name; each clip: "rows": {version: [first row, n rows]}

dataset.py writes the pack from the per-clip files after extraction (extract.merge). The file name
carries a hash of its layout (clip ids, versions, row counts, row shape), so an index.json always
names a pack that matches it: a new pack is written beside the old one, then index.json is
replaced, then the old pack is deleted. The OS page cache holds the pages a memory map reads and
can evict them, so a 60 GB cache trains in the memory of a small one (bench.py --section scale).
"""
import hashlib
import json
from pathlib import Path

import numpy as np

from .io import atomic_path

PATTERN = "segments-*.npy"


def layout(files):
    """[(key, path of a per-clip .npy)] -> (rows {key: (first, n)}, row shape, dtype, file name).
    Reads only the .npy headers."""
    rows, first, shape, dtype = {}, 0, None, None
    for key, path in files:
        a = np.load(path, mmap_mode="r")
        if shape is None:
            shape, dtype = a.shape[1:], a.dtype
        elif a.shape[1:] != shape or a.dtype != dtype:
            raise ValueError(f"{path}: segments of shape {a.shape[1:]} {a.dtype}, the pack holds {shape} {dtype}")
        rows[key] = (first, len(a))
        first += len(a)
    blob = json.dumps([[list(k), r] for k, r in rows.items()] + [list(shape or ()), str(dtype)]).encode("utf-8", "surrogateescape")
    return rows, shape, dtype, f"segments-{hashlib.sha1(blob).hexdigest()[:16]}.npy"


def write(cache, files):
    """Pack the per-clip arrays `files` ([(key, path)], in pack order) into one .npy in `cache`,
    atomically, streaming one clip at a time (memory: one clip). Skips the work when the pack of
    this exact layout is already there. Returns (file name or None when empty, rows)."""
    rows, shape, dtype, name = layout(files)
    if not rows:
        return None, {}
    path = Path(cache) / name
    if not path.exists():
        total = sum(n for _, n in rows.values())
        with atomic_path(path) as tmp:
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=(total, *shape))
            for key, f in files:
                first, n = rows[key]
                out[first:first + n] = np.load(f)
            out.flush()
            del out
    return name, rows


def remove_stale(cache, keep):
    """Delete packs other than `keep` (a training job that still maps one keeps its pages)."""
    for p in Path(cache).glob(PATTERN):
        if p.name != keep:
            p.unlink(missing_ok=True)


class Rows:
    """The segments of one input of a FeatureSet: rows `rows` of a memory-mapped pack.

    Looks like the (N, ...) array it stands for (len, shape, dtype, indexing by int, slice, index
    array or mask) but reads rows only when indexed: a batch is gathered in ascending row order
    (sequential reads where the batch allows) and returned in the order asked, as a new array.
    Pickles as (path, rows), so DataLoader workers reopen the map instead of copying it.
    """

    def __init__(self, path, rows):
        self.path, self.rows = Path(path), np.asarray(rows, dtype=np.int64)
        self.pack = np.load(self.path, mmap_mode="r")
        self.shape = (len(self.rows), *self.pack.shape[1:])
        self.dtype, self.ndim = self.pack.dtype, self.pack.ndim

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, idx):
        if isinstance(idx, (int, np.integer)):
            return np.array(self.pack[self.rows[idx]])
        rows = self.rows[idx]
        order = np.argsort(rows, kind="stable")
        out = np.empty((len(rows), *self.shape[1:]), dtype=self.dtype)
        out[order] = self.pack[rows[order]]
        return out

    def __array__(self, dtype=None, copy=None):
        a = self[np.arange(len(self))]
        return a if dtype is None else a.astype(dtype)

    def __getstate__(self):
        return {"path": self.path, "rows": self.rows}

    def __setstate__(self, state):
        self.__init__(state["path"], state["rows"])
