"""Log-mel spectrograms in torch: librosa's numbers, several times faster.

`log_mel` reproduces `librosa.power_to_db(librosa.feature.melspectrogram(...))` with librosa's
defaults (periodic Hann window, centred frames with zero padding, power 2, Slaney mel filters,
ref 1.0, amin 1e-10, top_db 80). The mel filterbank itself comes from librosa, computed once per
spec; the STFT and matrix multiply run in torch (no numba on this path).

`log_mel` is absolute dB (ref 1.0), so it moves with the recording's level: the same clip 20 dB
quieter is a different input. Our featurizers therefore first remove each clip's DC offset and
scale it to one integrated loudness (`level`: `remove_dc`, then `normalize_loudness`, ITU-R
BS.1770-4 as in EBU R128) and keep `log_mel` itself pure.
"""
import dataclasses
from dataclasses import dataclass, field
from contextlib import contextmanager
from functools import lru_cache

import numpy as np
import torch

from .config import AT_LEAST_1, FINITE, POSITIVE


@dataclass(frozen=True)
class MelSpec:
    """What a mel cache is made with; its hash names the cache folder."""
    sr: int = field(default=22050, metadata={"help": "sample rate in Hz", "range": AT_LEAST_1})
    n_fft: int = field(default=1024, metadata={"help": "FFT size", "range": AT_LEAST_1})
    hop: int = field(default=512, metadata={"help": "hop length in samples", "range": AT_LEAST_1})
    n_mels: int = field(default=128, metadata={"help": "mel bands", "range": AT_LEAST_1})
    segment: float = field(default=4.0, metadata={"help": "segment length in seconds (a 30 s clip gives 7 of 4 s)", "range": POSITIVE})
    loudness: float = field(default=-23.0, metadata={"help": "integrated loudness in LUFS (ITU-R BS.1770) that every clip "
                                                             "is scaled to before mel and musicnn features (EBU R128's -23)", "range": FINITE})
    # Absent from keys made before it existed, which therefore mean False (see `key`): those caches
    # and checkpoints keep their meaning, and --no-remove-dc finds their caches again.
    remove_dc: bool = field(default=True, metadata={"help": "subtract each clip's mean (per 28 s chunk in predict.py) "
                                                            "before mel and musicnn features"})

    def key(self):
        """The fields as a dict, without remove_dc when it is False: the key of a cache or a
        checkpoint made before DC removal existed, so old caches and checkpoints stay valid."""
        d = dataclasses.asdict(self)
        if not self.remove_dc:
            del d["remove_dc"]
        return d

    @classmethod
    def from_key(cls, d):
        """Inverse of key(): a key without remove_dc was made without DC removal."""
        return cls(**{"remove_dc": False, **d})

    @property
    def segment_frames(self):
        return int(self.segment * self.sr / self.hop)

    @property
    def segment_samples(self):
        return self.segment_frames * self.hop


@lru_cache(maxsize=8)
def _mel_basis(sr, n_fft, n_mels):
    import librosa

    return torch.from_numpy(librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels))  # (n_mels, n_fft//2+1)


@lru_cache(maxsize=8)
def _window(n_fft):
    return torch.hann_window(n_fft, periodic=True)


@contextmanager
def _one_thread():
    # torch's FFT on one clip is 3x slower with 2 threads than with 1 on this 2-core machine
    # (thread start-up outweighs the work); parallelism comes from worker processes instead.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def mel_power(wave, sr, n_fft, hop, n_mels):
    """Mel power spectrogram, as librosa.feature.melspectrogram with these parameters.

    wave: (B, T) float32 tensor -> (B, n_mels, 1 + T // hop) float32 tensor.
    """
    with _one_thread(), torch.no_grad():
        stft = torch.stft(wave, n_fft, hop, window=_window(n_fft), center=True,
                          pad_mode="constant", return_complex=True)  # (B, n_fft // 2 + 1, frames)
        power = stft.real.square() + stft.imag.square()
        return torch.matmul(_mel_basis(sr, n_fft, n_mels), power)


def log_mel(wave, spec: MelSpec, top_db=80.0):
    """Log-mel in dB of a waveform already at `spec.sr`.

    wave: (T,) or (B, T) numpy or torch float32 -> (n_mels, frames) or (B, n_mels, frames), numpy
    float32, frames = 1 + T // hop. top_db clipping is per clip, as in librosa.
    """
    x = torch.as_tensor(np.asarray(wave, dtype=np.float32))
    batched = x.ndim == 2
    x = x if batched else x[None]
    mel = mel_power(x, spec.sr, spec.n_fft, spec.hop, spec.n_mels)  # (B, n_mels, frames)
    with _one_thread():
        db = 10.0 * torch.log10(torch.clamp(mel, min=1e-10))
        if top_db is not None:
            peak = db.amax(dim=(1, 2), keepdim=True)
            db = torch.maximum(db, peak - top_db)
    out = db.numpy()
    return out if batched else out[0]


MAX_GAIN_DB = 50.0  # audio.load refuses clips below -60 dBFS RMS; no real clip needs more gain


@lru_cache(maxsize=8)
def _k_weighting(sr):
    """BS.1770's K-weighting at `sr` as two float32 second-order sections (2, 6): the high shelf
    (+4 dB above ~1.5 kHz, the head) then the high pass (38 Hz, RLB). The coefficients are
    pyloudnorm's (RBJ cookbook designs for any rate), so our meter matches it."""
    from pyloudnorm.iirfilter import IIRfilter

    shelf = IIRfilter(4.0, 1 / np.sqrt(2), 1500.0, sr, "high_shelf")
    high_pass = IIRfilter(0.0, 0.5, 38.0, sr, "high_pass")
    return np.array([np.r_[shelf.b, shelf.a], np.r_[high_pass.b, high_pass.a]], dtype=np.float32)


def _block_power(y, sr, block):
    """Mean square of (T,) in blocks of `block` s with 75% overlap: (n_blocks,) float64. Block
    bounds, count and the divisor are pyloudnorm's (its last block may run past the end)."""
    n = len(y)
    count = int(np.round((n / sr - block) / (block * 0.25))) + 1
    j = np.arange(count, dtype=np.float64)
    lo = np.minimum((block * (j * 0.25) * sr).astype(np.int64), n)
    hi = np.minimum((block * (j * 0.25 + 1) * sr).astype(np.int64), n)
    # sums between consecutive bounds (100 ms pieces), then prefix sums over those few hundred
    edges = np.unique(np.concatenate(([0, n], lo, hi)))
    pieces = np.add.reduceat(np.square(y, dtype=np.float64), edges[:-1])
    prefix = np.concatenate(([0.0], np.cumsum(pieces)))
    return (prefix[np.searchsorted(edges, hi)] - prefix[np.searchsorted(edges, lo)]) / (block * sr)


def loudness_lufs(wave, sr):
    """Integrated loudness of (T,) float samples in LUFS: ITU-R BS.1770-4 (K-weighting, 400 ms
    blocks with 75% overlap, absolute gate -70 LUFS, relative gate -10 LU). A clip shorter than
    one 400 ms block is measured as one block of its own length; -inf when every block is gated
    out (or the clip is empty).

    Vectorized (filter in float32, block sums in float64): about 1e-5 LU from pyloudnorm's
    Meter.integrated_loudness (tests/test_features.py holds it within 0.01 LU), which loops over
    blocks in Python and filters in float64, at about a quarter of its time.
    """
    x = np.asarray(wave, dtype=np.float32)
    if len(x) == 0:
        return float("-inf")
    import scipy.signal

    power = _block_power(scipy.signal.sosfilt(_k_weighting(sr), x), sr, min(0.4, len(x) / sr))
    with np.errstate(divide="ignore"):  # log10(0) of a silent block is -inf: gated out
        level = -0.691 + 10 * np.log10(power)
        kept = level >= -70.0  # absolute gate
        if not kept.any():
            return float("-inf")
        relative = -0.691 + 10 * np.log10(power[kept].mean()) - 10.0
        kept = (level > relative) & (level > -70.0)
        return float(-0.691 + 10 * np.log10(power[kept].mean())) if kept.any() else float("-inf")


def normalize_loudness(wave, sr, target=-23.0):
    """Scale (T,) float32 so its integrated loudness is `target` LUFS; returns (T,) float32.

    The gain is limited to +-MAX_GAIN_DB so a near-silent clip is not blown up to noise, and a clip
    whose every block is gated out (below -70 LUFS) gets the full +MAX_GAIN_DB. Peaks may exceed 1.0
    afterwards: the features are float, nothing is clipped.
    """
    level = loudness_lufs(wave, sr)
    gain_db = MAX_GAIN_DB if not np.isfinite(level) else float(np.clip(target - level, -MAX_GAIN_DB, MAX_GAIN_DB))
    return (np.asarray(wave, dtype=np.float32) * np.float32(10 ** (gain_db / 20))).astype(np.float32)


def remove_dc(wave):
    """(T,) float minus its mean, as float32: the DC offset of a clip (or chunk) taken out. A DC
    offset is inaudible, but it puts energy in the lowest mel bands and, through the per-clip
    top_db floor of log_mel, shifts every other band: +-0.4 flipped the top-1 of real clips."""
    wave = np.asarray(wave, dtype=np.float32)
    return wave - np.float32(wave.mean(dtype=np.float64)) if len(wave) else wave


def level(wave, sr, spec):
    """The step every featurizer takes before its features: DC removal (when spec.remove_dc),
    then loudness normalization to spec.loudness LUFS. (T,) -> (T,) float32."""
    return normalize_loudness(remove_dc(wave) if spec.remove_dc else wave, sr, spec.loudness)


def segment(mel, frames):
    """Cut (n_mels, F) into non-overlapping (n_seg, n_mels, frames), dropping the remainder.

    Raises ValueError when F < frames: the clip is shorter than one segment.
    """
    n = mel.shape[1] // frames
    if n == 0:
        raise ValueError(f"{mel.shape[1]} frames is shorter than one {frames}-frame segment")
    return np.ascontiguousarray(mel[:, : n * frames].reshape(mel.shape[0], n, frames).transpose(1, 0, 2))
