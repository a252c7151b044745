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
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from . import audio, augment, musicnn
from .config import digest
from .errors import UserError
from .config import from_args
from .features import MelSpec, log_mel, segment
from .io import save_npy, write_json
from .splits import clip_id, genre_of, load_split


class MelFeatures:
    """Log-mel segments: wave (T,) at spec.sr -> (n_segments, n_mels, segment_frames)."""
    name = "mel"
    Spec = MelSpec

    @classmethod
    def from_args(cls, args):
        return cls(from_args(MelSpec, args))

    @classmethod
    def from_key(cls, key):
        """Rebuild from key(): what a checkpoint stores."""
        return cls(MelSpec(**{k: v for k, v in key.items() if k != "features"}))

    def __init__(self, spec):
        self.spec = spec
        self.sr = spec.sr

    def key(self):
        return {"features": self.name, **vars(self.spec)}

    @property
    def segment_seconds(self):
        return self.spec.segment_samples / self.spec.sr

    def __call__(self, wave):
        return {"segments": segment(log_mel(wave, self.spec), self.spec.segment_frames)}


@dataclass(frozen=True)
class MusicnnSpec:
    musicnn_model: str = field(default="MSD_musicnn", metadata={"help": "pretrained musicnn", "choices": list(musicnn.MODELS)})
    layer: str = field(default="max_pool", metadata={"help": "embedding layer", "choices": list(musicnn.LAYERS)})


class MusicnnFeatures:
    """musicnn embeddings on the mel cache's segment grid, so that fusion models pair each mel
    segment with the embedding of the same seconds: wave (T,) at 16 kHz ->
    segments (n_segments, D): mean of the 3 s patches centred in each segment, and
    clip (D,): mean of all the clip's patches."""
    name = "musicnn"
    Spec = MusicnnSpec

    @classmethod
    def from_args(cls, args):
        return cls(from_args(MusicnnSpec, args), from_args(MelSpec, args))

    @classmethod
    def from_key(cls, key):
        spec = MusicnnSpec(musicnn_model=key["musicnn_model"], layer=key["layer"])
        return cls(spec, MelSpec(**key["segment_grid"]))

    def __init__(self, spec, mel):
        self.spec, self.mel, self.sr = spec, mel, musicnn.SR
        self._model = None  # loaded on first use, once per worker process

    @property
    def segment_seconds(self):
        return self.mel.segment_samples / self.mel.sr

    def key(self):
        grid = {"sr": self.mel.sr, "hop": self.mel.hop, "segment": self.mel.segment}
        return {"features": self.name, **vars(self.spec), "segment_grid": grid}

    def __getstate__(self):  # workers load their own copy of the weights
        return {**self.__dict__, "_model": None}

    def __call__(self, wave):
        if self._model is None:
            self._model = musicnn.load(self.spec.musicnn_model)
        emb = musicnn.embed(self._model, wave, self.spec.layer)  # (P, D)
        seg_s = self.segment_seconds
        n_seg = (1 + round(len(wave) / self.sr * self.mel.sr) // self.mel.hop) // self.mel.segment_frames
        if n_seg == 0:
            raise ValueError(f"{len(wave) / self.sr:.2f} s is shorter than one {seg_s:.2f} s segment")
        centers = musicnn.patch_centers(len(emb))
        owner = np.minimum((centers // seg_s).astype(int), n_seg - 1)
        segs = np.stack([emb[owner == k].mean(0) if (owner == k).any()
                         else emb[np.abs(centers - (k + 0.5) * seg_s).argmin()] for k in range(n_seg)])
        return {"segments": segs.astype(np.float32), "clip": emb.mean(0).astype(np.float32)}


FEATURIZERS = {"mel": MelFeatures, "musicnn": MusicnnFeatures}


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
