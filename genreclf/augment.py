"""Offline waveform augmentations for the training split. Each keeps the sample rate.

Every augmented copy is deterministic: its random draws are seeded by (seed, clip id, kind), so a
rerun, or a resumed run, writes the same copy.
"""
import zlib
from dataclasses import dataclass, field

import numpy as np

from .config import FINITE, NON_NEGATIVE, POSITIVE

KINDS = ("noise", "shift", "stretch", "pitch")


@dataclass(frozen=True)
class AugmentSpec:
    augment: tuple = field(default=(), metadata={"help": f"offline copies of train clips: any of {','.join(KINDS)}", "item": str})
    noise_snr: float = field(default=20.0, metadata={"help": "white-noise SNR in dB", "range": FINITE})
    shift_max: float = field(default=2.0, metadata={"help": "largest circular time shift in seconds (random sign and size)", "range": NON_NEGATIVE})
    stretch_rate: float = field(default=1.1, metadata={"help": "time-stretch rate (>1 is faster and shorter)", "range": POSITIVE})
    pitch_steps: float = field(default=2.0, metadata={"help": "pitch shift in semitones", "range": FINITE})
    aug_seed: int = field(default=0, metadata={"help": "seed of the noise and shift draws", "range": NON_NEGATIVE})

    def __post_init__(self):
        from .errors import UserError
        bad = set(self.augment) - set(KINDS)
        if bad:
            raise UserError(f"unknown augmentation {', '.join(sorted(bad))}; choose from {', '.join(KINDS)}")
        if not self.stretch_rate > 0:
            raise UserError(f"--stretch-rate {self.stretch_rate:g}: must be above 0")

    def tag(self, kind):
        """Name of one augmented copy, holding the parameters that made it."""
        param = {"noise": f"snr{self.noise_snr:g}-s{self.aug_seed}", "shift": f"max{self.shift_max:g}-s{self.aug_seed}",
                 "stretch": f"rate{self.stretch_rate:g}", "pitch": f"steps{self.pitch_steps:g}"}[kind]
        return f"{kind}-{param}"


def _rng(seed, clip_id, kind):
    return np.random.default_rng([seed, zlib.crc32(clip_id.encode()), KINDS.index(kind)])


def add_noise(wave, snr_db, rng):
    """White Gaussian noise at `snr_db` below the clip's mean power. (T,) -> (T,)"""
    power = float(np.mean(wave.astype(np.float64) ** 2))
    noise = rng.standard_normal(wave.shape) * np.sqrt(power / 10 ** (snr_db / 10))
    return (wave + noise).astype(np.float32)


def time_shift(wave, sr, max_s, rng):
    """Circular shift by a uniform draw in [-max_s, max_s] seconds. (T,) -> (T,)"""
    return np.roll(wave, int(rng.uniform(-max_s, max_s) * sr))


def apply(wave, sr, kind, spec: AugmentSpec, clip_id):
    """One augmented copy of mono `wave` (T,) at `sr`. stretch changes the length (T / rate)."""
    import librosa  # only the stretch and pitch copies need it

    rng = _rng(spec.aug_seed, clip_id, kind)
    if kind == "noise":
        return add_noise(wave, spec.noise_snr, rng)
    if kind == "shift":
        return time_shift(wave, sr, spec.shift_max, rng)
    if kind == "stretch":
        return librosa.effects.time_stretch(y=wave, rate=spec.stretch_rate).astype(np.float32)
    if kind == "pitch":
        return librosa.effects.pitch_shift(y=wave, sr=sr, n_steps=spec.pitch_steps).astype(np.float32)
    raise ValueError(kind)


def warm_up():
    """Compile and disk-cache librosa's numba kernels (phase vocoder, overlap-add) once, at
    install time, so a user's first `dataset.py --augment stretch,pitch` does not pay 30-60 s."""
    wave = np.random.default_rng(0).standard_normal(22050).astype(np.float32)
    spec = AugmentSpec()
    for kind in ("stretch", "pitch"):
        apply(wave, 22050, kind, spec, "warm/up")
