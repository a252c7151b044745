"""Step 2: features for every split into a cache keyed by the parameters that made it.

    WORK/cache/<name>-<spec hash>-<data id>/  (the data folder's identity: see identity.py)
        spec.json                       the featurizer's parameters (hashed into the folder name)
        clips/<clip id>.<version>.npy   (n_segments, ...) float32, one file per clip and copy
        clips/<clip id>.<version>.clip.npy   clip-level extras (musicnn's clip embedding)
        clips/<clip id>.source.json     the fingerprint of the clip's audio file, and the copies
                                        computed from it
        segments-<hash>.npy             every clip's segments in one file, read by training
                                        through a memory map (genreclf/pack.py)
        index.json                      per split: clip ids, genres, copies, pack rows, audio
                                        fingerprints; skipped files; the data folder; the split's hash
        shards/<i>-of-<n>.json          what each shard of a sharded run skipped
        .lock, .merge.lock              who is writing (lock.py)

Each clip file is written atomically, so a killed run leaves only whole files and a rerun skips
them. A rerun computes again, and says how many: every copy of a clip whose audio file changed
(fingerprint), and every clip file that is truncated or unreadable (header and size, not a full
read). The merge step (the pack, then index.json) runs last; the training loader reads only what
index.json lists. A finished cache is only read: a rerun writes nothing, so it works on read-only
storage. Two dataset.py on one cache take turns (the second says it waits for the first).

With `shard=(i, n)` a run computes only the clips k ≡ i (mod n) of the sorted list, so n machines
(or torchrun ranks) share the work; the last shard to finish merges, or `merge()` (dataset.py
--merge) does it. Features are deterministic per clip (augmentations are seeded by clip id), so a
sharded cache equals a single run's, byte for byte. Shards share the cache and run side by side;
only a run alone on it deletes the temporary files of killed runs.
"""
import json
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from tqdm import tqdm

from . import audio, augment, identity, pack
from .clipfiles import clip_file, read_note, source_file, valid_copies
from .errors import UserError
from .identity import cache_dir, legacy_dir
from .io import save_npy, write_json
from .lock import Lock
from .splits import PARTS, clip_id, genre_of, load_split, wav_dir

_STATE = {}  # per worker process: what every job needs, sent once through the pool initializer


def _init(feat, aug, wav_dir, cache, threads=None):
    if threads:  # one torch thread per worker process: N processes x N threads would oversubscribe
        import torch
        torch.set_num_threads(threads)
    _STATE.update(feat=feat, aug=aug, wav_dir=Path(wav_dir), cache=Path(cache))


def _work(job):
    """Compute copies `versions` of one clip, then record them in its source note. `kept` is the
    note of the copies still valid (None: the audio is new or changed, every copy is redone).
    Returns (relpath, error or None)."""
    rel, versions, kept = job
    s = _STATE
    cid = clip_id(rel)
    note = source_file(s["cache"], cid)
    try:
        if kept is None:  # first drop the old note: a run killed below leaves no copy that looks valid
            note.unlink(missing_ok=True)
            try:
                kept = {**identity.fingerprint(s["wav_dir"], rel), "versions": []}
            except OSError:
                kept = None  # audio.load names the problem
        wave = audio.load(s["wav_dir"] / rel, sr=s["feat"].sr)
        for v in versions:
            kind = v.split("-")[0]
            w = wave if v == "orig" else augment.apply(wave, s["feat"].sr, kind, s["aug"], cid)
            out = s["feat"](w)
            for name, array in out.items():  # extras first: the segments file marks the copy done
                if name != "segments":
                    save_npy(clip_file(s["cache"], cid, f"{v}.{name}"), array)
            save_npy(clip_file(s["cache"], cid, v), out["segments"])
        if kept is not None:
            write_json(note, {**kept, "versions": sorted(set(kept["versions"]) | set(versions))})
    except audio.AudioError as e:
        return rel, str(e)
    except ValueError as e:  # too short for one segment
        return rel, f"{audio.shown(s['wav_dir'] / rel)}: {e}"
    return rel, None


def _plan(cache, wav, rels, wanted):
    """(jobs [(rel, copies to compute, note of the copies kept or None)], n clips whose audio
    changed, damaged files): what a run must compute for clips `rels`."""
    jobs, changed, bad = [], 0, []
    for rel in rels:
        note = read_note(cache, clip_id(rel))
        same = note is not None and identity.same_audio(note, wav, rel)
        changed += note is not None and same is False
        ok = valid_copies(cache, clip_id(rel), note["versions"], note, bad) if same else []
        todo = [v for v in wanted[rel] if v not in ok]
        if todo:
            jobs.append((rel, todo, {**note, "versions": ok} if same else None))
    return jobs, changed, bad


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


def _take(cache, shard):
    """The cache lock: a plain run holds it alone, shards share it with each other; either waits,
    saying so, for a plain run that holds it. Whoever holds it alone deletes the temporary files
    of killed runs (never read): only then can none be a live one. Returns the Lock (release it)."""
    lock = Lock(cache / ".lock")
    alone = lock.take(wait=False)
    if not alone and not (shard and lock.take(shared=True, wait=False)):
        print(f"{audio.shown(cache)}: another dataset.py is writing this cache: waiting for it to finish", flush=True)
        alone = lock.take(shared=bool(shard)) and not shard
    if alone:
        for stale in cache.rglob(".*.tmp"):
            try:
                stale.unlink()
            except OSError:  # gone already, or read-only storage: harmless, never read
                pass
        if shard:
            lock.take(shared=True)
    return lock


def extract(data_dir, split_dir, cache_root, feat, aug, workers=1, shard=None):
    """Fill the cache for every split; train also gets the augmented copies. With shard=(i, n),
    compute that shard only, and merge if it is the last of the n to finish. Returns the cache dir."""
    wav = wav_dir(data_dir)  # before the split lists: no audio at all is one line, not one per listed clip
    parts = load_split(split_dir)
    cache = cache_dir(cache_root, feat, data_dir)
    legacy = legacy_dir(cache_root, feat)
    if (legacy / "index.json").exists() and not cache.exists():
        print(f"note: {audio.shown(legacy)} was made by an older dataset.py that did not record which audio it came "
              f"from: it is not reused (delete it to free its space)")
    with _take(cache, shard):
        write_json(cache / "spec.json", feat.key(), only_if_changed=True)
        wanted = _wanted(parts, aug)
        mine = sorted(wanted)[shard[0]::shard[1]] if shard else list(wanted)
        todo, changed, bad = _plan(cache, wav, mine, wanted)
        what = f"shard {shard[0]}/{shard[1]}: " if shard else ""
        print(f"{audio.shown(cache)}: {what}{len(mine) - len(todo)} of {len(mine)} clips already cached, {len(todo)} to do")
        if changed:
            print(f"{_n(changed, 'clip')} changed since cached (the audio file's size, time and content): "
                  f"computing every copy again")
        if bad:
            print(f"{_n(len(bad), 'cached clip file')} truncated or unreadable (such as {audio.shown(bad[0])}): "
                  f"computing again")
        errors = _run(todo, (feat, aug, wav, cache), workers, feat.name)
        skipped = {rel: err for rel, err in sorted(errors.items()) if err}
        if shard is None:
            merge_parts(cache, parts, wanted, feat, aug, skipped, data_dir)
            return cache
        marker = cache / "shards" / f"{shard[0]}-of-{shard[1]}.json"
        write_json(marker, {"shard": list(shard), "skipped": skipped}, only_if_changed=True)
        if all((cache / "shards" / f"{i}-of-{shard[1]}.json").exists() for i in range(shard[1])):
            try:
                merge_parts(cache, parts, wanted, feat, aug, _shard_skips(cache, wanted), data_dir)
            except UserError as e:  # a stale marker from an earlier run: another shard is still working
                print(f"not merging yet: {e}")
        else:
            print(f"shard {shard[0]}/{shard[1]} done; the last shard to finish merges (or run dataset.py --merge)")
    return cache


def _n(n, thing):
    return f"{n} {thing}{'s' if n != 1 else ''}"


def _run(todo, args, workers, name):
    """Run the jobs, in a process pool when workers > 1. Returns {relpath: error or None}."""
    errors = {}
    if workers > 1 and len(todo) > 1:
        with ProcessPoolExecutor(workers, initializer=_init, initargs=args + (1,)) as pool:
            try:
                results = pool.map(_work, todo, chunksize=1)
                for rel, err in tqdm(results, total=len(todo), desc=f"{name} features", unit="clip"):
                    errors[rel] = err
            except BaseException:  # a full disk, Ctrl+C: stop now rather than after every queued clip
                pool.shutdown(cancel_futures=True)
                raise
    else:
        _init(*args)
        for job in tqdm(todo, desc=f"{name} features", unit="clip"):
            rel, err = _work(job)
            errors[rel] = err
    return errors


def _shard_skips(cache, wanted):
    """What the shards' notes say they skipped, less clips whose copies all exist now (a note may
    be older than a rerun that computed them)."""
    skipped = {}
    for marker in sorted((Path(cache) / "shards").glob("*-of-*.json")):
        skipped.update(json.loads(marker.read_text())["skipped"])
    return {rel: err for rel, err in sorted(skipped.items()) if rel in wanted and
            len(valid_copies(cache, clip_id(rel), wanted[rel], read_note(cache, clip_id(rel)))) < len(wanted[rel])}


def merge(data_dir, split_dir, cache_root, feat, aug):
    """Write the pack and index.json from the clip files of every shard (dataset.py --merge)."""
    cache = cache_dir(cache_root, feat, data_dir)
    if not (cache / "spec.json").exists():
        raise UserError(f"no {feat.name} cache at {audio.shown(cache)} to merge: run dataset.py --shard I/N first")
    parts = load_split(split_dir)
    wanted = _wanted(parts, aug)
    with Lock(cache / ".lock") as lock:
        lock.take(shared=True)
        merge_parts(cache, parts, wanted, feat, aug, _shard_skips(cache, wanted), data_dir)
    return cache


def merge_parts(cache, parts, wanted, feat, aug, skipped, data_dir):
    """Pack every cached clip copy (in split-list order) and write index.json, atomically, in that
    order, one process at a time. Raises UserError when a clip has neither a valid file nor a
    recorded reason for skipping it. Writes nothing when the pack and index.json are current."""
    with Lock(cache / ".merge.lock") as lock:
        lock.take()
        notes = {rel: read_note(cache, clip_id(rel)) for rel in wanted}
        done = {rel: valid_copies(cache, clip_id(rel), vs, notes[rel]) for rel, vs in wanted.items()}
        missing = [rel for rel, vs in done.items() if "orig" not in vs and rel not in skipped]
        if missing:
            raise UserError(f"{audio.shown(cache)}: {len(missing)} clips are not computed yet (such as "
                            f"{audio.shown(missing[0])}): run every dataset.py --shard I/N first")
        entries = {p: [{"id": clip_id(rel), "genre": genre_of(rel), "versions": done[rel],
                        "source": {k: v for k, v in notes[rel].items() if k != "versions"}}
                       for rel in parts.get(p, []) if rel not in skipped] for p in PARTS}
        if skipped and not any(entries.values()):
            first = next(iter(skipped.values()))
            raise UserError(f"{audio.shown(cache)}: none of the {len(skipped)} clips of the split could be used, such as {first}")
        files = [((c["id"], v), clip_file(cache, c["id"], v)) for p in PARTS for c in entries[p] for v in c["versions"]]
        name, rows = pack.write(cache, files, [c["source"] for p in PARTS for c in entries[p]])
        for c in (c for p in PARTS for c in entries[p]):
            c["rows"] = {v: list(rows[(c["id"], v)]) for v in c["versions"]}
            silent = _silent_segments(cache, c["id"], c["versions"])
            if silent:
                c["silent"] = silent
        index = {"spec": feat.key(), "augment": [aug.tag(k) for k in aug.augment], "pack": name,
                 "data_dir": str(Path(data_dir).resolve()), "split_sha256": identity.split_sha256(parts),
                 "splits": entries, "skipped": skipped}
        write_json(cache / "index.json", index, only_if_changed=True)
        pack.remove_stale(cache, name)
    for rel, err in skipped.items():
        print(f"skipped {err}")
    counts = ", ".join(f"{p} {len(v)}" for p, v in entries.items())
    print(f"cached clips: {counts}; skipped {len(skipped)} unreadable or too-short files; "
          f"{sum(n for _, n in rows.values())} segments packed in {name}")
    return index


def _silent_segments(cache, cid, versions):
    """{copy: [segment index]} of a clip's silent segments, from the featurizer's `silent` extra
    (clips/<id>.<copy>.silent.npy), for the copies that have any: what training and evaluation
    leave out (rundata.assemble). Copies whose every segment is silent are not listed (nothing
    would be left of them), nor are caches made before the extra existed."""
    out = {}
    for v in versions:
        f = clip_file(cache, cid, f"{v}.silent")
        if f.exists():
            flags = np.load(f)
            if flags.any() and not flags.all():
                out[v] = np.flatnonzero(flags).tolist()
    return out


def default_workers():
    return max(1, min(4, os.cpu_count() or 1))
