"""Audio loading: any format soundfile reads (wav, flac, ogg, mp3, au), any rate, any channels.

Every failure becomes an AudioError that names the file and the problem, so callers can skip the
file, count it, and go on.
"""
import os
import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import soundfile as sf

AUDIO_EXTS = (".wav", ".flac", ".ogg", ".mp3", ".au", ".aiff", ".aif")
MAX_SECONDS = 3 * 3600  # refuse to decode more than 3 hours into memory at once


class AudioError(Exception):
    """A file that cannot be used as audio: missing, empty, corrupt, unsupported or silent."""


@contextmanager
def _quiet_stderr():
    """Silence the decoders' own C-level chatter on fd 2 (libmpg123 prints "Note: Illegal
    Audio-MPEG-Header" lines for a bad MP3); our AudioError says what went wrong instead."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _reason(e):
    """libsndfile's first line, unless it misleads (it says "does not exist" for a bad MP3)."""
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    return "" if "does not exist" in text else f" ({text[:120]})"


def info(path):
    """(sample_rate, frames, channels) without decoding; raises AudioError."""
    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise AudioError(f"{path}: empty file (0 bytes)")
    try:
        with _quiet_stderr():
            i = sf.info(str(path))
    except Exception as e:  # soundfile raises several types for bad headers
        if path.suffix.lower() not in AUDIO_EXTS:
            raise AudioError(f"{path}: unsupported format (readable: {', '.join(AUDIO_EXTS)})") from None
        raise AudioError(f"{path}: corrupt or unreadable audio{_reason(e)}") from None
    return i.samplerate, i.frames, i.channels


def resample(wave, sr_in, sr_out):
    """Resample (T,) float32 with soxr's HQ filter, as librosa.load does by default."""
    if sr_in == sr_out:
        return wave
    import soxr

    return soxr.resample(wave, sr_in, sr_out, quality="HQ").astype(np.float32)


def load(path, sr, start=0.0, duration=None, allow_silent=False):
    """Decode `path` to mono float32 at `sr` Hz: returns (T,).

    Channels are averaged (like librosa.load(mono=True)) and the result is resampled with soxr HQ.
    `start`/`duration` in seconds read only part of the file, which bounds memory on long files.
    """
    path = Path(path)
    sr_in, frames, channels = info(path)
    if frames / max(sr_in, 1) > MAX_SECONDS and duration is None:
        raise AudioError(f"{path}: {frames / sr_in / 3600:.1f} h of audio is more than the {MAX_SECONDS // 3600} h limit")
    first = int(start * sr_in)
    count = -1 if duration is None else int(round(duration * sr_in))
    try:  # decode in blocks, mixing each to mono, so a long stereo file never sits in memory twice
        with _quiet_stderr(), sf.SoundFile(str(path)) as f:
            f.seek(first)
            blocks = [b.mean(axis=1) for b in f.blocks(blocksize=1 << 20, frames=count, dtype="float32", always_2d=True)]
    except Exception as e:
        raise AudioError(f"{path}: corrupt or truncated audio{_reason(e)}") from None
    wave = np.concatenate(blocks) if blocks else np.zeros(0, np.float32)
    if len(wave) == 0:
        raise AudioError(f"{path}: contains no audio samples")
    if not np.all(np.isfinite(wave)):
        raise AudioError(f"{path}: contains NaN or infinite samples")
    if not allow_silent and np.max(np.abs(wave)) < 1e-6:
        raise AudioError(f"{path}: audio is silent")
    return resample(np.ascontiguousarray(wave), sr_in, sr)


def find_audio(paths):
    """Expand files and directories (recursively) into a sorted list of audio files."""
    found = []
    for p in map(Path, paths):
        if p.is_dir():
            found += sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in AUDIO_EXTS)
        else:
            found.append(p)
    return found
