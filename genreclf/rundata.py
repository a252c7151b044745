"""What a run trained and was scored on, pinned in RUN/data.json when it starts:

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
from pathlib import Path

from . import data as D
from .errors import UserError
from .io import write_json

NAME = "data.json"


def index_sha256(cache):
    return hashlib.sha256((Path(cache) / "index.json").read_bytes()).hexdigest()


def _entries(caches):
    return {n: {c["id"]: c for clips in D.read_index(cache)["splits"].values() for c in clips}
            for n, cache in caches.items()}


def _versions(entries, cid, augmented):
    """The copies load_clips takes for a clip: those in every cache; originals only unless augmented."""
    names = list(entries)
    vs = [v for v in entries[names[0]][cid]["versions"] if all(v in entries[n][cid]["versions"] for n in names)]
    return vs if augmented else [v for v in vs if v == "orig"]


def pin(caches, assignment, genres, augmented_parts=("train",)):
    """The data.json dict for {part: [clip id]}: clips absent from a cache are left out, as
    load_clips leaves them out, so the pinned lists are exactly what the run loads."""
    entries = _entries(caches)
    parts, versions = {}, {}
    for part, ids in assignment.items():
        ids = [c for c in ids if all(c in e for e in entries.values())]
        parts[part] = ids
        versions[part] = {c: _versions(entries, c, part in augmented_parts) for c in ids}
    return {"parts": parts, "versions": versions, "genres": list(genres),
            "caches": {n: {"dir": str(c), "spec": D.read_index(c)["spec"], "index_sha256": index_sha256(c)}
                       for n, c in caches.items()}}


def write(run_dir, pinned):
    write_json(Path(run_dir) / NAME, pinned)


def read(run_dir):
    path = Path(run_dir) / NAME
    return json.loads(path.read_text()) if path.exists() else None


def caches_of(pinned):
    return {n: Path(c["dir"]) for n, c in pinned["caches"].items()}


def load(run_dir, pinned, parts, say=print):
    """{part: FeatureSet} of the pinned clips and copies. Raises UserError naming the first pinned
    clip (or copy) that the cache no longer holds."""
    caches = caches_of(pinned)
    for n, c in caches.items():
        if not (c / "index.json").exists():
            raise UserError(f"{Path(run_dir) / NAME}: its {n} cache {c} is gone (re-run dataset.py with the run's flags)")
        if index_sha256(c) != pinned["caches"][n]["index_sha256"]:
            say(f"{n} cache {c.name} was re-indexed since this run started: using the run's pinned clips")
    entries = _entries(caches)
    out = {}
    for part in parts:
        pinned_versions = pinned["versions"][part]
        augmented = any(v != "orig" for vs in pinned_versions.values() for v in vs)
        for cid in pinned["parts"][part]:
            where = next((n for n, e in entries.items() if cid not in e), None)
            if where:
                raise UserError(f"{Path(run_dir) / NAME}: pinned {part} clip {cid} is not in the {where} cache "
                                f"{caches[where]} (re-extract it: dataset.py with a split that lists it)")
            if _versions(entries, cid, augmented) != pinned_versions[cid]:
                raise UserError(f"{Path(run_dir) / NAME}: pinned {part} clip {cid} had copies {pinned_versions[cid]}, "
                                f"the cache now has {_versions(entries, cid, augmented)}")
        out[part] = D.load_clips(caches, pinned["parts"][part], pinned["genres"], augmented=augmented)
    return out
