"""Step 2: features for every split into a cache keyed by the parameters that made it.

    WORK/cache/<name>-<hash>/
        spec.json                       the featurizer's parameters (hashed into the folder name)
        clips/<genre>/<stem>.<version>.npy   (n_segments, ...) float32, one file per clip and copy
        clips/<genre>/<stem>.<version>.clip.npy   clip-level extras (musicnn's clip embedding)
        index.json                      per split: clip ids, genres, the copies that exist; skipped files

Each clip file is written atomically, so a killed run leaves only whole files and a rerun skips
them. index.json is written last; the training loader reads only what it lists.
"""
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from tqdm import tqdm

from . import audio, augment
from .config import digest
from .errors import UserError
from .io import save_npy, write_json
from .splits import clip_id, genre_of, load_split


def cache_dir(cache_root, feat):
    return Path(cache_root) / f"{feat.name}-{digest(feat.key())}"


def clip_file(cache, cid, version):
    return Path(cache) / "clips" / f"{cid}.{version}.npy"


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
        return rel, f"{s['wav_dir'] / rel}: {e}"
    return rel, None


def extract(data_dir, split_dir, cache_root, feat, aug, workers=1):
    """Fill the cache for every split; train also gets the augmented copies. Returns the cache dir."""
    parts = load_split(split_dir)
    cache = cache_dir(cache_root, feat)
    write_json(cache / "spec.json", feat.key())
    for stale in (cache / "clips").glob("*/.*.tmp"):  # left by a killed run; never read, but tidy up
        stale.unlink()
    wanted = {}
    for part, rels in parts.items():
        extra = [aug.tag(k) for k in aug.augment] if part == "train" else []
        for rel in rels:
            wanted[rel] = ["orig"] + extra
    todo = [(rel, [v for v in vs if not clip_file(cache, clip_id(rel), v).exists()]) for rel, vs in wanted.items()]
    todo = [j for j in todo if j[1]]
    print(f"{cache}: {len(wanted) - len(todo)} of {len(wanted)} clips already cached, {len(todo)} to do")
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
    skipped = {rel: err for rel, err in errors.items() if err}
    index = {"spec": feat.key(), "augment": [aug.tag(k) for k in aug.augment], "splits": {}, "skipped": skipped}
    for part, rels in parts.items():
        index["splits"][part] = [
            {"id": clip_id(rel), "genre": genre_of(rel),
             "versions": [v for v in wanted[rel] if clip_file(cache, clip_id(rel), v).exists()]}
            for rel in rels if rel not in skipped]
    write_json(cache / "index.json", index)
    for rel, err in skipped.items():
        print(f"skipped {err}")
    counts = ", ".join(f"{p} {len(v)}" for p, v in index["splits"].items())
    print(f"cached clips: {counts}; skipped {len(skipped)} unreadable or too-short files")
    return cache


def open_cache(cache_root, feat):
    """The cache dir for `feat`, with a clear error if dataset.py has not made it."""
    cache = cache_dir(cache_root, feat)
    if not (cache / "index.json").exists():
        raise UserError(f"no {feat.name} cache for {feat.key()} under {cache_root}: run dataset.py with the "
                        f"same feature flags first")
    return cache


def default_workers():
    return max(1, min(4, os.cpu_count() or 1))
