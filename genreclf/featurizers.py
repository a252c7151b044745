"""Featurizers: what dataset.py computes per clip, each with the spec that keys its cache.

A featurizer has a `name` (the model input it feeds: "mel" or "musicnn"), a `Spec` dataclass that
generates its flags, `sr` (the rate it wants audio at), `key()` (everything that made its output,
hashed into the cache folder and stored in checkpoints) and `__call__(wave) -> {"segments": ...}`.
"""
from dataclasses import dataclass, field

import numpy as np

from . import musicnn
from .config import from_args
from .features import MelSpec, log_mel, segment


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
