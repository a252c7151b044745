"""Featurizers: what dataset.py computes per clip, each with the spec that keys its cache.

A featurizer has a `name` (the model input it feeds: "mel", "musicnn" or "musicnn_mel"), a `Spec` dataclass that
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


STATS = {"mean": np.mean, "std": np.std, "max": np.max}  # over a segment's (or a clip's) patches


@dataclass(frozen=True)
class MusicnnSpec:
    """Which musicnn embedding a cache holds: the concatenation, layer by layer in `layers` order, of
    each statistic of `patch_stats` over the segment's patches. A statistic written `STAT:LAYER`
    applies to that layer only: `--layers max_pool,penultimate --patch-stats mean,std:max_pool` is
    [mean of max_pool, std of max_pool, mean of penultimate]. Raises UserError for an unknown
    layer or statistic, and (musicnn.patch_step) for an overlap not shorter than a patch."""
    musicnn_model: str = field(default="MSD_musicnn", metadata={"help": "pretrained musicnn", "choices": list(musicnn.MODELS)})
    layers: tuple = field(default=("max_pool",), metadata={"help": f"embedding layers, concatenated: {', '.join(musicnn.LAYERS)}"})
    patch_stats: tuple = field(default=("mean",), metadata={
        "help": f"statistics over a segment's 3 s patches: {', '.join(STATS)}; STAT:LAYER for one layer only"})
    musicnn_overlap: float = field(default=0.0, metadata={"help": "seconds shared by consecutive 3 s patches (the original "
                                                                  "extractor's input_overlap; 0: none)"})

    def __post_init__(self):
        for name in self.layers:
            if name not in musicnn.LAYERS:
                raise UserError(f"unknown musicnn layer {name!r} in --layers; choose from {', '.join(musicnn.LAYERS)}")
        for stat in self.patch_stats:
            name, _, only = stat.partition(":")
            if name not in STATS:
                raise UserError(f"unknown statistic {name!r} in --patch-stats; choose from {', '.join(STATS)}")
            if only and only not in self.layers:
                raise UserError(f"--patch-stats {stat}: {only!r} is not one of --layers {','.join(self.layers)}")
        if not self.parts():
            raise UserError("--layers and --patch-stats give no features: name at least one layer and one statistic")
        if len(set(self.parts())) < len(self.parts()):
            raise UserError(f"--layers {','.join(self.layers)} --patch-stats {','.join(self.patch_stats)}: a part is repeated")
        musicnn.patch_step(self.musicnn_overlap)

    def parts(self):
        """[(layer, statistic)] in the order of the cached vector."""
        return [(name, stat.split(":")[0]) for name in self.layers for stat in self.patch_stats
                if stat.partition(":")[2] in ("", name)]

    @property
    def dim(self):
        """Width of the cached vector."""
        return sum(musicnn.LAYERS[name] for name, _ in self.parts())


LEGACY = MusicnnSpec()  # the one-layer form of key(), as caches and checkpoints were keyed before


class _OnMelGrid:
    """A featurizer at musicnn's 16 kHz whose segments are the mel cache's (MelSpec's segment grid
    and loudness), so that a model can pair them with the mel segments of the same seconds."""
    sr = musicnn.SR

    def __init__(self, spec, mel):
        self.spec, self.mel = spec, mel

    @classmethod
    def from_args(cls, args):
        return cls(from_args(cls.Spec, args), from_args(MelSpec, args))

    @property
    def segment_seconds(self):
        return self.mel.segment_samples / self.mel.sr

    def _key(self, what):
        grid = {"sr": self.mel.sr, "hop": self.mel.hop, "segment": self.mel.segment}
        dc = {"remove_dc": True} if self.mel.remove_dc else {}  # absent: made before DC removal (MelSpec.key)
        return {"features": self.name, **what, "segment_grid": grid, "loudness": self.mel.loudness, **dc}

    def n_segments(self, wave):
        """Segments of (T,) 16 kHz audio on the mel grid; ValueError when shorter than one."""
        n_seg = (1 + round(len(wave) / self.sr * self.mel.sr) // self.mel.hop) // self.mel.segment_frames
        if n_seg == 0:
            raise ValueError(f"{len(wave) / self.sr:.2f} s is shorter than one {self.segment_seconds:.2f} s segment")
        return n_seg

    def silent(self, raw, n_seg):
        """(n_seg,) bool: the segments of the raw wave below audio.SILENCE_DBFS (see MelFeatures)."""
        return silent_segments(raw, round(self.segment_seconds * self.sr), n_seg)


class MusicnnFeatures(_OnMelGrid):
    """musicnn embeddings on the mel cache's segment grid, so that fusion models pair each mel
    segment with the embedding of the same seconds: wave (T,) at 16 kHz ->
    segments (n_segments, spec.dim): the spec's statistics of the 3 s patches centred in each
    segment (the nearest patch when none is), and clip (spec.dim,): the same over all the clip's
    patches. The default spec, the mean of max_pool over non-overlapping patches, is the embedding
    of the transfer-learning baseline (Pons & Serra, 2019); more layers and statistics over
    time follow Choi et al. (2017, every layer of a pretrained convnet) and the MARBLE probes."""
    name = "musicnn"
    Spec = MusicnnSpec

    @classmethod
    def from_key(cls, key):
        _needs_loudness(key)
        if "layer" in key:  # the one-layer form
            spec = MusicnnSpec(musicnn_model=key["musicnn_model"], layers=(key["layer"],))
        else:
            spec = MusicnnSpec(musicnn_model=key["musicnn_model"], layers=tuple(key["layers"]),
                               patch_stats=tuple(key["patch_stats"]), musicnn_overlap=key["musicnn_overlap"])
        return cls(spec, MelSpec(**key["segment_grid"], loudness=key["loudness"], remove_dc=key.get("remove_dc", False)))

    def __init__(self, spec, mel):
        super().__init__(spec, mel)
        self._model = None  # loaded on first use, once per worker process

    def key(self):
        """What made the cache, hashed into its folder name. One layer, patch means and no overlap
        keep the key of before the lists existed ({"layer": name}), so those caches and
        checkpoints keep their folder and load; any other spec records both lists and the overlap."""
        spec = self.spec
        if len(spec.layers) == 1 and (spec.patch_stats, spec.musicnn_overlap) == (LEGACY.patch_stats, LEGACY.musicnn_overlap):
            what = {"musicnn_model": spec.musicnn_model, "layer": spec.layers[0]}
        else:
            what = {"musicnn_model": spec.musicnn_model, "layers": list(spec.layers), "patch_stats": list(spec.patch_stats),
                    "musicnn_overlap": spec.musicnn_overlap}
        return self._key(what)

    def __getstate__(self):  # workers load their own copy of the weights
        return {**self.__dict__, "_model": None}

    def _pool(self, outputs, idx):
        """The spec's vector over patches `idx`: (spec.dim,) float32."""
        return np.concatenate([STATS[stat](musicnn.layer(outputs, name)[idx], axis=0) for name, stat in self.spec.parts()])

    def __call__(self, wave):
        if self._model is None:
            self._model = musicnn.load(self.spec.musicnn_model)
        # musicnn.preprocess stays faithful to the original (--musicnn-tags); the level is set here
        raw, wave = wave, level(wave, self.sr, self.mel)
        patches = musicnn.preprocess(wave, self.spec.musicnn_overlap)
        out = musicnn.run(self._model, patches)  # every layer's (P, D)
        seg_s, n_seg = self.segment_seconds, self.n_segments(wave)
        centers = musicnn.patch_centers(len(patches), musicnn.patch_step(self.spec.musicnn_overlap))
        owner = np.minimum((centers // seg_s).astype(int), n_seg - 1)
        segs = np.stack([self._pool(out, owner == k) if (owner == k).any()
                         else self._pool(out, [np.abs(centers - (k + 0.5) * seg_s).argmin()]) for k in range(n_seg)])
        return {"segments": segs.astype(np.float32), "clip": self._pool(out, slice(None)).astype(np.float32),
                "silent": self.silent(raw, n_seg)}


@dataclass(frozen=True)
class MusicnnMelSpec:
    """musicnn's input (musicnn.log_mel: 16 kHz, n_fft 512, hop 256, 96 bands) has no parameter of
    its own: its segment grid and loudness are MelSpec's."""


class MusicnnMelFeatures(_OnMelGrid):
    """musicnn's own log-mel input on the mel cache's segment grid, for fine-tuning the encoder
    (model/musicnn_ft.py): wave (T,) at 16 kHz -> segments (n_segments, frames, 96) float32,
    frames = int(segment seconds x 16000 / 256) (249 for the 3.99 s segment), segment k starting
    at frame round(k x segment seconds x 16000 / 256) of the clip's musicnn.log_mel.

    Why this and not our 128-band 22.05 kHz mel cache: musicnn's weights were trained on these
    numbers (96 bands, float16 powers, log10(10000 x + 1)), which no transform of ours recovers.
    Why not the 16 kHz wave: the STFT would run again every epoch, and a 4 s segment is 64,000
    samples against 249 x 96 = 23,904 values here; offline augmented copies (dataset.py
    --augment) still apply, to the wave, before this step."""
    name = "musicnn_mel"
    Spec = MusicnnMelSpec

    @classmethod
    def from_key(cls, key):
        _needs_loudness(key)
        return cls(MusicnnMelSpec(), MelSpec(**key["segment_grid"], loudness=key["loudness"],
                                             remove_dc=key.get("remove_dc", False)))

    @property
    def frames(self):
        return int(self.segment_seconds * self.sr / musicnn.HOP)

    def key(self):
        return self._key({"frames": self.frames, "n_mels": musicnn.N_MELS})

    def __call__(self, wave):
        raw, wave = wave, level(wave, self.sr, self.mel)
        rep, n_seg = musicnn.log_mel(wave), self.n_segments(wave)             # (F_clip, 96)
        starts = np.round(np.arange(n_seg) * self.segment_seconds * self.sr / musicnn.HOP).astype(int)
        rep = np.pad(rep, ((0, max(0, starts[-1] + self.frames - len(rep))), (0, 0)), mode="edge")
        return {"segments": rep[starts[:, None] + np.arange(self.frames)].astype(np.float32),
                "silent": self.silent(raw, n_seg)}


FEATURIZERS = {"mel": MelFeatures, "musicnn": MusicnnFeatures, "musicnn_mel": MusicnnMelFeatures}
