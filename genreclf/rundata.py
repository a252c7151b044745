"""Which clips and which copies a run loads: the one rule, over each cache's index.json read once.

The rule (dataset.py wrote the caches; a model reads one cache per input, models/ `inputs`):
- a clip is loaded when every cache holds it; a clip some cache lacks (a featurizer could not read
  its file) is left out, and the count is said in one line;
- its copies are those every cache holds, in the first cache's order: "orig" only, unless the part
  is augmented (dataset.py makes augmented copies for its train split only);
- a copy's segments are the first k rows of each cache's pack, k the smallest count (featurizers
  may round the last segment differently).

What a run trained and was scored on is pinned in RUN/data.json when it starts:

    {"parts":    {"train": [clip id], "val": [...], "test": [...]},
     "versions": {"train": {clip id: ["orig", "noise-0", ...]}, "val": {...}, "test": {...}},
     "caches":   {input name: {"dir": cache dir, "spec": featurizer spec, "index_sha256": hash of
                  its index.json when the run started}},
     "genres":   [label order]}

`main.py --resume` and `--do_test` load exactly these clips and copies, never the split files or
the cache's current index: re-running split_data.py or dataset.py cannot change what a run
resumes on or is re-tested on.
"""
import hashlib
import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from . import data as D
from .errors import UserError
from .io import write_json

NAME = "data.json"


@dataclass(frozen=True)
class Index:
    """One cache's index.json, read once: `raw` is the whole file as parsed."""
    dir: Path
    raw: dict
    sha256: str      # of the file's bytes: data.json records it, a later load compares it

    @property
    def spec(self):
        return self.raw["spec"]

    @cached_property
    def entries(self):
        """{clip id: {"id", "genre", "versions": [copy], "rows": {copy: [first row, n rows]}}}."""
        return {c["id"]: c for clips in self.raw["splits"].values() for c in clips}

    @cached_property
    def splits(self):
        """{part: [clip id]} as dataset.py cached them (unreadable files already left out)."""
        return {part: [c["id"] for c in clips] for part, clips in self.raw["splits"].items()}

    @cached_property
    def genres(self):
        """Sorted genres of all parts: the label order of every model trained on this cache."""
        return sorted({c["genre"] for clips in self.raw["splits"].values() for c in clips})

    def pack(self):
        """The segment pack's path (None for a cache with no segments); UserError for a cache made
        before packs existed."""
        if "pack" not in self.raw:
            raise UserError(f"{self.dir}: made by an older dataset.py, without the segment pack training reads: rerun "
                            f"dataset.py with the same flags (it skips the computed clips and only packs them)")
        return self.dir / self.raw["pack"] if self.raw["pack"] else None


def read_index(cache):
    """The Index of one cache dir (its index.json read once, hashed from the same bytes)."""
    raw = (Path(cache) / "index.json").read_bytes()
    return Index(Path(cache), json.loads(raw), hashlib.sha256(raw).hexdigest())


def read_indexes(caches):
    """{input name: Index} of {input name: cache dir}."""
    return {name: read_index(cache) for name, cache in caches.items()}


def copies(entries, cid, augmented):
    """The copies of clip `cid` a run loads: those every cache holds, first cache's order, "orig"
    only unless `augmented`. entries: {input name: {clip id: entry}}."""
    names = list(entries)
    vs = [v for v in entries[names[0]][cid]["versions"] if all(v in entries[n][cid]["versions"] for n in names)]
    return vs if augmented else [v for v in vs if v == "orig"]


def held(entries, ids, say=print):
    """`ids` that every cache holds; the others are left out and counted in one line to `say`."""
    kept = [c for c in ids if all(c in e for e in entries.values())]
    if len(kept) < len(ids):
        lacking = {n: sum(c not in e for c in ids) for n, e in entries.items()}
        example = next(c for c in ids if c not in kept)
        say(f"{len(ids) - len(kept)} of {len(ids)} clips left out: not in the "
            + ", ".join(f"{n} cache ({k})" for n, k in lacking.items() if k) + f", e.g. {example}")
    return kept


def skipped(indexes, say=print):
    """Say, in one line, how many clips of the split the caches lack because dataset.py could not
    use their files (index.json's "skipped": unreadable, too short, silent), e.g. which and why."""
    lost = {rel: err for ix in indexes.values() for rel, err in (ix.raw.get("skipped") or {}).items()}
    if lost:
        total = len(next(iter(indexes.values())).entries) + len(lost)
        say(f"{len(lost)} of {total} clips of the split left out: dataset.py could not use their files "
            f"(index.json's \"skipped\"), e.g. {lost[min(lost)]}")


def pin(indexes, assignment, genres, augmented_parts=("train",), say=print):
    """The data.json dict for {part: [clip id]}, by the rule above: exactly what the run loads.
    indexes: {input name: Index}."""
    entries = {n: ix.entries for n, ix in indexes.items()}
    parts, versions = {}, {}
    for part, ids in assignment.items():
        ids = held(entries, ids, say=lambda line, part=part: say(f"{part}: {line}"))
        parts[part] = ids
        versions[part] = {c: copies(entries, c, part in augmented_parts) for c in ids}
    return {"parts": parts, "versions": versions, "genres": list(genres),
            "caches": {n: {"dir": str(ix.dir), "spec": ix.spec, "index_sha256": ix.sha256} for n, ix in indexes.items()}}


def assemble(indexes, versions, genres):
    """A FeatureSet of {clip id: [copy]} (clips in that order) from {input name: Index}: every
    copy's first k rows of each pack (k: the fewest any input has), less its silent segments
    (index.json's "silent", from the featurizers). UserError for a clip of a genre not in `genres`."""
    entries = {n: ix.entries for n, ix in indexes.items()}
    names = list(indexes)
    spans = []
    for i, (cid, vs) in enumerate(versions.items()):
        genre = entries[names[0]][cid]["genre"]
        if genre not in genres:
            raise UserError(f"clip {cid} has genre {genre!r}, unknown to this model ({', '.join(genres)})")
        for v in vs:
            rows = {n: entries[n][cid]["rows"][v] for n in names}
            k = min(n_rows for _, n_rows in rows.values())  # featurizers may round the last segment differently
            # silent segments (in any input's cache) take no part: no label to learn, no vote in the clip's mean
            silent = {j for n in names for j in entries[n][cid].get("silent", {}).get(v, ())}
            segments = np.array([j for j in range(k) if j not in silent], dtype=np.int64)
            spans.append((i, genres.index(genre), {n: first for n, (first, _) in rows.items()}, segments))
    if not any(len(s) for *_, s in spans):
        raise UserError(f"no cached segments for these clips in {', '.join(str(ix.dir) for ix in indexes.values())}")
    return D.from_rows({n: ix.pack() for n, ix in indexes.items()}, spans, list(versions))


def load_clips(caches, ids, genres, augmented=False, say=print):
    """Clips `ids` (any mix of the cache's parts) from {input name: cache dir} as one FeatureSet,
    by the rule above (the clips a cache lacks are left out and counted). For tools and tests; a
    run goes through pin and load."""
    indexes = read_indexes(caches)
    entries = {n: ix.entries for n, ix in indexes.items()}
    return assemble(indexes, {c: copies(entries, c, augmented) for c in held(entries, ids, say)}, genres)


def write(run_dir, pinned):
    write_json(Path(run_dir) / NAME, pinned)


def read(run_dir):
    path = Path(run_dir) / NAME
    return json.loads(path.read_text()) if path.exists() else None


def caches_of(pinned):
    return {n: Path(c["dir"]) for n, c in pinned["caches"].items()}


def load(run_dir, pinned, parts, indexes=None, say=print):
    """{part: FeatureSet} of the pinned clips and copies (`indexes`: the pinned caches' Index,
    read here when not given). Raises UserError naming the first pinned clip (or copy) that a
    cache no longer holds."""
    caches = caches_of(pinned)
    if indexes is None:
        for n, c in caches.items():
            if not (c / "index.json").exists():
                raise UserError(f"{Path(run_dir) / NAME}: its {n} cache {c} is gone (re-run dataset.py with the run's flags)")
        indexes = read_indexes(caches)
    for n, ix in indexes.items():
        if ix.sha256 != pinned["caches"][n]["index_sha256"]:
            say(f"{n} cache {ix.dir.name} was re-indexed since this run started: using the run's pinned clips")
    entries = {n: ix.entries for n, ix in indexes.items()}
    out = {}
    for part in parts:
        pinned_versions = pinned["versions"][part]
        for cid in pinned["parts"][part]:
            where = next((n for n, e in entries.items() if cid not in e), None)
            if where:
                raise UserError(f"{Path(run_dir) / NAME}: pinned {part} clip {cid} is not in the {where} cache "
                                f"{caches[where]} (re-extract it: dataset.py with a split that lists it)")
            gone = [v for v in pinned_versions[cid] if not all(v in e[cid]["versions"] for e in entries.values())]
            if gone:
                raise UserError(f"{Path(run_dir) / NAME}: pinned {part} clip {cid} had copies {pinned_versions[cid]}, "
                                f"the cache now lacks {', '.join(gone)}")
        out[part] = assemble(indexes, {c: pinned_versions[c] for c in pinned["parts"][part]}, pinned["genres"])
    return out
