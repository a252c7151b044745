"""Step 2: features for every split into a cache keyed by the parameters that made it.

    WORK/cache/<name>-<hash>/
        spec.json                       the featurizer's parameters (hashed into the folder name)
        clips/<clip id>.<version>.npy   (n_segments, ...) float32, one file per clip and copy
        clips/<clip id>.<version>.clip.npy   clip-level extras (musicnn's clip embedding)
        segments-<hash>.npy             every clip's segments in one file, read by training
                                        through a memory map (genreclf/pack.py)
        index.json                      per split: clip ids, genres, copies, pack rows; skipped files
        shards/<i>-of-<n>.json          what each shard of a sharded run skipped

Each clip file is written atomically, so a killed run leaves only whole files and a rerun skips
them. The merge step (the pack, then index.json) runs last; the training loader reads only what
index.json lists. With `shard=(i, n)` a run computes only the clips k ≡ i (mod n) of the sorted
list, so n machines (or torchrun ranks) share the work; the last shard to finish merges, or
`merge()` (dataset.py --merge) does it. Features are deterministic per clip (augmentations are
seeded by clip id), so a sharded cache equals a single run's, byte for byte.
"""
import hashlib
import json
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from tqdm import tqdm

from . import audio, augment, pack
from .config import digest
from .errors import UserError
from .io import save_npy, write_json
from .splits import PARTS, clip_id, genre_of, load_split, wav_dir

NAME_BYTES = 180  # longest file-name part kept as it is (255 bytes, less room for the version suffix)


def cache_dir(cache_root, feat):
    return Path(cache_root) / f"{feat.name}-{digest(feat.key())}"


def clip_file(cache, cid, version):
    """The file of one clip copy: clips/<clip id>.<version>.npy, nested like the audio. An id that
    would make an unsafe file name (bytes that are not UTF-8, a part too long for the file system,
    `.` or `..`) becomes clips/<genre>/_<hash of the id>, so every id gets a file of its own."""
    if not all(_plain(p) for p in cid.split("/")):
        genre = cid.split("/")[0]
        genre = genre if "/" in cid and _plain(genre) else "_"
        cid = f"{genre}/_{hashlib.sha1(cid.encode('utf-8', 'surrogateescape')).hexdigest()[:20]}"
    return Path(cache) / "clips" / f"{cid}.{version}.npy"


def _plain(part):
    """A file-name part usable as it is: valid UTF-8, not too long, not `.`/`..`/empty."""
    try:
        return part not in ("", ".", "..") and len(part.encode("utf-8")) <= NAME_BYTES
    except UnicodeEncodeError:  # lone surrogates: bytes of a non-UTF-8 name
        return False


_STATE = {}  # per worker process: what every job needs, sent once through the pool initializer


def _init(feat, aug, wav_dir, cache, threads=None):
    if threads:  # one torch thread per worker process: N processes x N threads would oversubscribe
        import torch
        torch.set_num_threads(threads)
    _STATE.update(feat=feat, aug=aug, wav_dir=Path(wav_dir), cache=Path(cache))


def _work(job):
    """Compute the missing copies of one clip. Returns (relpath, error or None)."""
    rel, versions = job
    s = _STATE
    cid = clip_id(rel)
    try:
        wave = audio.load(s["wav_dir"] / rel, sr=s["feat"].sr)
        for v in versions:
            kind = v.split("-")[0]
            w = wave if v == "orig" else augment.apply(wave, s["feat"].sr, kind, s["aug"], cid)
            out = s["feat"](w)
            for name, array in out.items():  # extras first: the segments file marks the copy done
                if name != "segments":
                    save_npy(clip_file(s["cache"], cid, f"{v}.{name}"), array)
            save_npy(clip_file(s["cache"], cid, v), out["segments"])
    except audio.AudioError as e:
        return rel, str(e)
    except ValueError as e:  # too short for one segment
        return rel, f"{audio.shown(s['wav_dir'] / rel)}: {e}"
    return rel, None


def _wanted(parts, aug):
    """{relpath: [versions]}: every clip's original, plus the augmented copies for train."""
    wanted = {}
    for part in PARTS:
        extra = [aug.tag(k) for k in aug.augment] if part == "train" else []
        for rel in parts.get(part, []):
            wanted[rel] = ["orig"] + extra
    return wanted


def parse_shard(text):
    """'I/N' -> (I, N) with 0 <= I < N; raises UserError."""
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise UserError(f"--shard {text}: expected I/N, such as 0/4") from None
    if not 0 <= i < n:
        raise UserError(f"--shard {text}: I must be in 0..N-1")
    return i, n


def extract(data_dir, split_dir, cache_root, feat, aug, workers=1, shard=None):
    """Fill the cache for every split; train also gets the augmented copies. With shard=(i, n),
    compute that shard only, and merge if it is the last of the n to finish. Returns the cache dir."""
    wav_dir(data_dir)  # before the split lists: no audio at all is one line, not one per listed clip
    parts = load_split(split_dir)
    cache = cache_dir(cache_root, feat)
    write_json(cache / "spec.json", feat.key())
    if shard is None:  # temp files left by a killed run; never read. (Shards may be writing theirs now.)
        for stale in (cache / "clips").rglob(".*.tmp"):
            stale.unlink(missing_ok=True)
    wanted = _wanted(parts, aug)
    mine = sorted(wanted)[shard[0]::shard[1]] if shard else list(wanted)
    todo = [(rel, [v for v in wanted[rel] if not clip_file(cache, clip_id(rel), v).exists()]) for rel in mine]
    todo = [j for j in todo if j[1]]
    what = f"shard {shard[0]}/{shard[1]}: " if shard else ""
    print(f"{audio.shown(cache)}: {what}{len(mine) - len(todo)} of {len(mine)} clips already cached, {len(todo)} to do")
    args = (feat, aug, Path(data_dir) / "wav", cache)
    errors = {}
    if workers > 1 and len(todo) > 1:
        with ProcessPoolExecutor(workers, initializer=_init, initargs=args + (1,)) as pool:
            results = pool.map(_work, todo, chunksize=1)
            for rel, err in tqdm(results, total=len(todo), desc=f"{feat.name} features", unit="clip"):
                errors[rel] = err
    else:
        _init(*args)
        for job in tqdm(todo, desc=f"{feat.name} features", unit="clip"):
            rel, err = _work(job)
            errors[rel] = err
    skipped = {rel: err for rel, err in sorted(errors.items()) if err}
    if shard is None:
        merge_parts(cache, parts, wanted, feat, aug, skipped)
        return cache
    write_json(cache / "shards" / f"{shard[0]}-of-{shard[1]}.json", {"shard": list(shard), "skipped": skipped})
    if all((cache / "shards" / f"{i}-of-{shard[1]}.json").exists() for i in range(shard[1])):
        try:
            merge_parts(cache, parts, wanted, feat, aug, _shard_skips(cache, wanted))
        except UserError as e:  # a stale marker from an earlier run: another shard is still working
            print(f"not merging yet: {e}")
    else:
        print(f"shard {shard[0]}/{shard[1]} done; the last shard to finish merges (or run dataset.py --merge)")
    return cache


def _shard_skips(cache, wanted):
    """What the shards' notes say they skipped, less clips whose copies all exist now (a note may
    be older than a rerun that computed them)."""
    skipped = {}
    for marker in sorted((Path(cache) / "shards").glob("*-of-*.json")):
        skipped.update(json.loads(marker.read_text())["skipped"])
    return {rel: err for rel, err in sorted(skipped.items()) if rel in wanted and not all(
            clip_file(cache, clip_id(rel), v).exists() for v in wanted[rel])}


def merge(data_dir, split_dir, cache_root, feat, aug):
    """Write the pack and index.json from the clip files of every shard (dataset.py --merge)."""
    cache = cache_dir(cache_root, feat)
    if not (cache / "spec.json").exists():
        raise UserError(f"no {feat.name} cache at {audio.shown(cache)} to merge: run dataset.py --shard I/N first")
    parts = load_split(split_dir)
    wanted = _wanted(parts, aug)
    merge_parts(cache, parts, wanted, feat, aug, _shard_skips(cache, wanted))
    return cache


def merge_parts(cache, parts, wanted, feat, aug, skipped):
    """Pack every cached clip copy (in split-list order) and write index.json, atomically, in that
    order. Raises UserError when a clip has neither a file nor a recorded reason for skipping it."""
    done = {rel: [v for v in vs if clip_file(cache, clip_id(rel), v).exists()] for rel, vs in wanted.items()}
    missing = [rel for rel, vs in done.items() if "orig" not in vs and rel not in skipped]
    if missing:
        raise UserError(f"{audio.shown(cache)}: {len(missing)} clips are not computed yet (such as "
                        f"{audio.shown(missing[0])}): run every dataset.py --shard I/N first")
    entries = {p: [{"id": clip_id(rel), "genre": genre_of(rel), "versions": done[rel]}
                   for rel in parts.get(p, []) if rel not in skipped] for p in PARTS}
    if skipped and not any(entries.values()):
        first = next(iter(skipped.values()))
        raise UserError(f"{audio.shown(cache)}: none of the {len(skipped)} clips of the split could be used, such as {first}")
    files = [((c["id"], v), clip_file(cache, c["id"], v)) for p in PARTS for c in entries[p] for v in c["versions"]]
    name, rows = pack.write(cache, files)
    for c in (c for p in PARTS for c in entries[p]):
        c["rows"] = {v: list(rows[(c["id"], v)]) for v in c["versions"]}
    index = {"spec": feat.key(), "augment": [aug.tag(k) for k in aug.augment], "pack": name,
             "splits": entries, "skipped": skipped}
    write_json(cache / "index.json", index)
    pack.remove_stale(cache, name)
    for rel, err in skipped.items():
        print(f"skipped {err}")
    counts = ", ".join(f"{p} {len(v)}" for p, v in entries.items())
    print(f"cached clips: {counts}; skipped {len(skipped)} unreadable or too-short files; "
          f"{sum(n for _, n in rows.values())} segments packed in {name}")
    return index


def open_cache(cache_root, feat):
    """The cache dir for `feat`, with a clear error if dataset.py has not made it."""
    cache = cache_dir(cache_root, feat)
    if not (cache / "index.json").exists():
        raise UserError(f"no {feat.name} cache for {feat.key()} under {cache_root}: run dataset.py with the "
                        f"same feature flags first")
    return cache


def default_workers():
    return max(1, min(4, os.cpu_count() or 1))
