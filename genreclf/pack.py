"""The segment pack: every cached segment of one cache in one contiguous .npy, read through a
memory map so that training holds in RAM only the batch it is working on.

    WORK/cache/<name>-<hash>/segments-<layout hash>.npy    (R, ...) float32, R = all segments
    index.json: "pack": that file name; each clip: "rows": {version: [first row, n rows]}

dataset.py writes the pack from the per-clip files after extraction (extract.merge). The file name
carries a hash of its layout (clip ids, versions, row counts, row shape), so an index.json always
names a pack that matches it: a new pack is written beside the old one, then index.json is
replaced, then the old pack is deleted. The OS page cache holds the pages a memory map reads and
can evict them, so a 60 GB cache trains in the memory of a small one (bench.py --section scale).

A .npy is checked by its header and its size (`npy_state`): a file cut short by a full disk or a
crash outside our atomic writes has fewer bytes than its header promises. That costs one small
read per file, never a full read, so dataset.py checks every clip file of a rerun and main.py
every pack it maps.
"""
import hashlib
import json
import os
from pathlib import Path

import numpy as np

from .errors import UserError
from .io import atomic_path

PATTERN = "segments-*.npy"


def read_header(path):
    """(shape, dtype, bytes the file should have) from a .npy's header. Raises FileNotFoundError,
    or ValueError for a file that is empty, cut inside its header or not a .npy."""
    with open(path, "rb") as f:
        try:
            version = np.lib.format.read_magic(f)
            reader = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}[version]
            shape, _, dtype = reader(f)  # (shape, fortran order, dtype)
        except (EOFError, KeyError) as e:
            raise ValueError(f"not a .npy ({type(e).__name__})") from None
        return shape, dtype, f.tell() + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize


def npy_state(path):
    """"ok", "missing" or "bad" (empty, truncated, longer than its header says, or not a .npy)."""
    try:
        _, _, size = read_header(path)
    except FileNotFoundError:
        return "missing"
    except ValueError:
        return "bad"
    return "ok" if os.stat(path).st_size == size else "bad"


def layout(files, sources=()):
    """[(key, path of a per-clip .npy)] -> (rows {key: (first, n)}, row shape, dtype, file name).
    Reads only the .npy headers. `sources` (JSON data: the clips' audio fingerprints) goes into
    the name too, so a clip re-extracted from changed audio of the same length gets a new pack."""
    rows, first, shape, dtype = {}, 0, None, None
    for key, path in files:
        a_shape, a_dtype, _ = read_header(path)
        if shape is None:
            shape, dtype = a_shape[1:], a_dtype
        elif a_shape[1:] != shape or a_dtype != dtype:
            raise ValueError(f"{path}: segments of shape {a_shape[1:]} {a_dtype}, the pack holds {shape} {dtype}")
        rows[key] = (first, a_shape[0])
        first += a_shape[0]
    blob = json.dumps([[list(k), r] for k, r in rows.items()] + [list(shape or ()), str(dtype)] + list(sources))
    blob = blob.encode("utf-8", "surrogateescape")
    return rows, shape, dtype, f"segments-{hashlib.sha1(blob).hexdigest()[:16]}.npy"


def write(cache, files, sources=(), say=print):
    """Pack the per-clip arrays `files` ([(key, path)], in pack order) into one .npy in `cache`,
    atomically, streaming one clip at a time (memory: one clip). Skips the work when the pack of
    this exact layout is already there, whole; one that is not (truncated) is rebuilt, and `say`
    says so. Returns (file name or None when empty, rows)."""
    rows, shape, dtype, name = layout(files, sources)
    if not rows:
        return None, {}
    path = Path(cache) / name
    total = sum(n for _, n in rows.values())
    state = npy_state(path)
    if state == "ok" and read_header(path)[:2] == ((total, *shape), dtype):
        return name, rows
    if state != "missing":
        say(f"{path}: truncated or unreadable segment pack: rebuilding it")
    with atomic_path(path) as tmp, open(tmp, "wb") as out:
        # The header np.lib.format.open_memmap would write, then the rows in order through write(),
        # so a full disk is an OSError (ENOSPC); writing through a memory map, it would be a SIGBUS.
        np.lib.format.write_array_header_1_0(out, {"descr": np.lib.format.dtype_to_descr(dtype),
                                                   "fortran_order": False, "shape": (total, *shape)})
        for _, f in files:
            out.write(np.ascontiguousarray(np.load(f), dtype=dtype).data)
    return name, rows


def open_pack(path):
    """The pack at `path` as a read-only memory map; UserError naming the file when it is missing,
    truncated or unreadable (dataset.py rebuilds it)."""
    state = npy_state(path)
    if state != "ok":
        what = "missing" if state == "missing" else "truncated or unreadable"
        raise UserError(f"{path}: segment pack {what}: rerun dataset.py with the same flags (it rebuilds the pack "
                        f"from the clip files)")
    return np.load(path, mmap_mode="r")


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
        self.pack = open_pack(self.path)
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
