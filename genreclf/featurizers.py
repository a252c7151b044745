"""Featurizers: what dataset.py computes per clip, each with the spec that keys its cache.

A featurizer has a `name` (the model input it feeds: "mel" or "musicnn"), a `Spec` dataclass that
generates its flags, `sr` (the rate it wants audio at), `key()` (everything that made its output,
hashed into the cache folder and stored in checkpoints) and `__call__(wave) -> {"segments": ...}`.

Every featurizer first removes the DC offset of the wave it is given (MelSpec.remove_dc) and scales
it to MelSpec.loudness LUFS (ITU-R BS.1770), so a clip gives the same features at any recording
level and offset; both are part of key(). Call a featurizer on a whole clip (or a clip-length chunk
of a long file, as predict does): mean and loudness are measured over what it is given. Each also
returns "silent" (n_segments,) bool, the segments below audio.SILENCE_DBFS (dataset.py stores it
beside the clip's segments; predict.py leaves them out of a file's mean).
"""
from dataclasses import dataclass, field

import numpy as np

from . import musicnn
from .audio import silent_segments
from .config import from_args
from .errors import UserError
from .features import MelSpec, level, log_mel, segment


def _needs_loudness(key):
    """A key written before loudness normalization was part of the features: refuse it, since
    the model learned absolute levels and would give level-dependent answers."""
    if "loudness" not in key:
        raise UserError(f"{key.get('features')} features were made before loudness normalization (MelSpec.loudness): "
                        "retrain the model (and rebuild its cache with dataset.py) with this version")


class MelFeatures:
    """Log-mel segments: wave (T,) at spec.sr -> (n_segments, n_mels, segment_frames)."""
    name = "mel"
    Spec = MelSpec

    @classmethod
    def from_args(cls, args):
        return cls(from_args(MelSpec, args))

    @classmethod
    def from_key(cls, key):
        """Rebuild from key(): what a checkpoint stores. Raises UserError for a pre-loudness key."""
        _needs_loudness(key)
        return cls(MelSpec.from_key({k: v for k, v in key.items() if k != "features"}))

    def __init__(self, spec):
        self.spec = spec
        self.sr = spec.sr

    def key(self):
        return {"features": self.name, **self.spec.key()}

    @property
    def segment_seconds(self):
        return self.spec.segment_samples / self.spec.sr

    def __call__(self, wave):
        x = level(wave, self.sr, self.spec)
        segs = segment(log_mel(x, self.spec), self.spec.segment_frames)
        return {"segments": segs, "silent": silent_segments(wave, self.spec.segment_samples, len(segs))}


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
        _needs_loudness(key)
        spec = MusicnnSpec(musicnn_model=key["musicnn_model"], layer=key["layer"])
        return cls(spec, MelSpec(**key["segment_grid"], loudness=key["loudness"], remove_dc=key.get("remove_dc", False)))

    def __init__(self, spec, mel):
        self.spec, self.mel, self.sr = spec, mel, musicnn.SR
        self._model = None  # loaded on first use, once per worker process

    @property
    def segment_seconds(self):
        return self.mel.segment_samples / self.mel.sr

    def key(self):
        grid = {"sr": self.mel.sr, "hop": self.mel.hop, "segment": self.mel.segment}
        dc = {"remove_dc": True} if self.mel.remove_dc else {}  # absent: made before DC removal (MelSpec.key)
        return {"features": self.name, **vars(self.spec), "segment_grid": grid, "loudness": self.mel.loudness, **dc}

    def __getstate__(self):  # workers load their own copy of the weights
        return {**self.__dict__, "_model": None}

    def __call__(self, wave):
        if self._model is None:
            self._model = musicnn.load(self.spec.musicnn_model)
        # musicnn.preprocess stays faithful to the original (--musicnn-tags); the level is set here
        raw, wave = wave, level(wave, self.sr, self.mel)
        emb = musicnn.embed(self._model, wave, self.spec.layer)  # (P, D)
        seg_s = self.segment_seconds
        n_seg = (1 + round(len(wave) / self.sr * self.mel.sr) // self.mel.hop) // self.mel.segment_frames
        if n_seg == 0:
            raise ValueError(f"{len(wave) / self.sr:.2f} s is shorter than one {seg_s:.2f} s segment")
        centers = musicnn.patch_centers(len(emb))
        owner = np.minimum((centers // seg_s).astype(int), n_seg - 1)
        segs = np.stack([emb[owner == k].mean(0) if (owner == k).any()
                         else emb[np.abs(centers - (k + 0.5) * seg_s).argmin()] for k in range(n_seg)])
        return {"segments": segs.astype(np.float32), "clip": emb.mean(0).astype(np.float32),
                "silent": silent_segments(raw, round(seg_s * self.sr), n_seg)}


FEATURIZERS = {"mel": MelFeatures, "musicnn": MusicnnFeatures}
