"""Audio loading: any format soundfile reads (wav, flac, ogg, oga, opus, mp3, au), any rate, any channels.

Every failure becomes an AudioError that names the file and the problem, so callers can skip the
file, count it, and go on. File names need not be valid UTF-8: paths built from os.fsdecode'd names
(surrogateescape) open through their raw bytes, and `shown(path)` renders them printably.
"""
import os
import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import soundfile as sf

# .oga is Ogg audio and .opus Ogg Opus, which libsndfile (1.0.29 and later) decodes as it does .ogg
AUDIO_EXTS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".au", ".aiff", ".aif")
# When one folder holds the same clip in several formats (x.wav and x.mp3), keep the first of this
# order: lossless before lossy, so nothing is decoded from a lossy copy when the original is there.
PREFERENCE = (".wav", ".flac", ".aiff", ".aif", ".au", ".ogg", ".oga", ".opus", ".mp3")
# Audio containers that mimetypes may not know (it reads the system's table, which varies), so
# that a folder's files we cannot read are named rather than passed over as if they were covers
OTHER_AUDIO = (".m4a", ".m4b", ".aac", ".wma", ".alac", ".ape", ".wv", ".mka", ".webm", ".caf", ".ac3",
               ".dts", ".amr", ".mp2", ".mpc", ".tta", ".dsf", ".dff", ".spx", ".aifc", ".3gp")
MAX_SECONDS = 3 * 3600  # refuse to decode more than 3 hours into memory at once
# RMS level below which a clip holds nothing to classify: BS.1770's absolute gate (-70 LUFS), below
# which loudness normalization has nothing to measure. 16-bit dither is -90 dBFS; the quietest
# GTZAN clips we have (classical) are -41 dBFS, and must still pass 30 dB quieter.
SILENCE_DBFS = -70.0


class AudioError(Exception):
    """A file that cannot be used as audio: missing, empty, corrupt, unsupported or silent."""


def shown(path):
    """`path` as printable text: bytes that are not valid UTF-8 appear as backslash escapes (\\xe9).

    str() of a path from a non-UTF-8 name holds lone surrogates, which crash print() and encode().
    """
    return os.fsencode(os.fspath(path)).decode("utf-8", "backslashreplace")


def warn(message):
    """The default warning sink: one line `warning: <message>` on stderr."""
    print(f"warning: {message}", file=sys.stderr)


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
    """libsndfile's first line, unless it misleads (it says "does not exist" for a bad MP3),
    without soundfile's "Error opening b'<path>': " in front: the line already names the file."""
    text = getattr(e, "error_string", None) or str(e)  # error_string: libsndfile's words alone
    text = text.splitlines()[0] if text else type(e).__name__
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return "" if "does not exist" in text else f" ({text[:120]})"


def info(path):
    """(sample_rate, frames, channels) without decoding; raises AudioError."""
    path = Path(path)
    if not path.exists():
        raise AudioError(f"{shown(path)}: no such file")
    if path.stat().st_size == 0:
        raise AudioError(f"{shown(path)}: empty file (0 bytes)")
    try:
        with _quiet_stderr():
            i = sf.info(os.fsencode(path))  # raw bytes: soundfile would encode str strictly
    except Exception as e:  # soundfile raises several types for bad headers
        if path.suffix.lower() not in AUDIO_EXTS:
            raise AudioError(f"{shown(path)}: unsupported format (readable: {', '.join(AUDIO_EXTS)})") from None
        raise AudioError(f"{shown(path)}: corrupt or unreadable audio{_reason(e)}") from None
    return i.samplerate, i.frames, i.channels


def audio_like(path):
    """True for a file name that looks like audio we do not read (m4a, wma, ...): by extension, in
    OTHER_AUDIO or typed audio/* by mimetypes."""
    import mimetypes

    ext = Path(path).suffix.lower()
    if ext in AUDIO_EXTS or not ext:
        return False
    return ext in OTHER_AUDIO or (mimetypes.guess_type("x" + ext)[0] or "").startswith("audio/")


def resample(wave, sr_in, sr_out):
    """Resample (T,) float32 with soxr's HQ filter, as librosa.load does by default."""
    if sr_in == sr_out:
        return wave
    import soxr

    return soxr.resample(wave, sr_in, sr_out, quality="HQ").astype(np.float32)


def rms_dbfs(wave):
    """RMS level of (T,) float samples in dB relative to full scale (a full-scale sine is -3 dBFS)."""
    # one dot product, no (T,) float64 temporary; float32 accumulation is ample for a level in dB
    # (samples beyond 1e19, possible only in float files, overflow to +inf: loud, not silent)
    with np.errstate(over="ignore"):
        rms = float(np.sqrt(np.dot(wave, wave) / len(wave))) if len(wave) else 0.0
    return 20 * np.log10(max(rms, 1e-12))


def silent_segments(wave, seg_samples, n_segments):
    """(n_segments,) bool: True where segment k, wave[k * seg_samples:(k + 1) * seg_samples] of
    (T,) float samples, has an RMS level below SILENCE_DBFS once its own DC offset is removed
    (so an offset alone is not sound). Such a segment holds nothing to classify: it takes no
    part in a clip's mean, and predict's timeline calls it silence."""
    silent = np.zeros(n_segments, dtype=bool)
    for k in range(n_segments):
        seg = np.asarray(wave[k * seg_samples:(k + 1) * seg_samples], dtype=np.float32)
        silent[k] = rms_dbfs(seg - np.float32(seg.mean(dtype=np.float64)) if len(seg) else seg) < SILENCE_DBFS
    return silent


def sound_span(wave, sr, frame_s=0.01):
    """(first, end) sample indices of the sound in (T,) float samples, or None when there is none:
    the leading and trailing runs of 10 ms frames whose RMS, around the frame's own mean (so a DC
    offset is no sound), is below SILENCE_DBFS are left out. Within the first and last loud frames
    the span starts (ends) at the first (last) sample that differs from the silence next to it by
    the threshold's amplitude, so that music after 60 s of digital silence starts where it starts."""
    x = np.asarray(wave, dtype=np.float32)
    if not len(x):
        return None
    n = max(1, int(frame_s * sr))
    frames = np.pad(x, (0, -len(x) % n), mode="edge").reshape(-1, n)
    offsets = frames.mean(1, dtype=np.float64)
    level = 10 ** (SILENCE_DBFS / 20)
    loud = np.flatnonzero(np.sqrt(((frames - offsets[:, None]) ** 2).mean(1)) >= level)
    if not len(loud):
        return None
    first, last = loud[0], loud[-1]
    quiet_before = offsets[first - 1] if first > 0 else offsets[first]
    quiet_after = offsets[last + 1] if last + 1 < len(frames) else offsets[last]
    head = np.abs(frames[first] - quiet_before) >= level
    tail = np.abs(frames[last] - quiet_after) >= level
    return int(first * n + head.argmax()), min(len(x), int(last * n + n - tail[::-1].argmax()))


ONE_READ = 1 << 24  # samples (all channels; 64 MB of float32, 6 min of 44.1 kHz stereo) read in one call


def _mono(block):
    """(n, channels) float32 -> (n,): the channel mean; a mono block's column as it is."""
    return block[:, 0] if block.shape[1] == 1 else block.mean(axis=1)


def load(path, sr, start=0.0, duration=None, allow_silent=False, on_warning=None):
    """Decode `path` to mono float32 at `sr` Hz: returns (T,).

    Channels are averaged (like librosa.load(mono=True)) and the result is resampled with soxr HQ.
    `start`/`duration` in seconds read only part of the file, which bounds memory on long files.

    Raises AudioError (one line, naming the file) for a missing, empty, corrupt or unsupported
    file, and for silence: an RMS level below SILENCE_DBFS (-70 dBFS) unless `allow_silent`.
    Warnings do not stop loading: each is one line `<path>: <what>` passed to `on_warning`
    (default: `warn`, which prints `warning: <line>` on stderr; pass `list.append` to collect).
    Today the only warning is a file rate below `sr`: resampling up cannot add the missing band.
    """
    path = Path(path)
    on_warning = on_warning or warn
    sr_in, frames, channels = info(path)
    if frames / max(sr_in, 1) > MAX_SECONDS and duration is None:
        raise AudioError(f"{shown(path)}: {frames / sr_in / 3600:.1f} h of audio is more than the {MAX_SECONDS // 3600} h limit")
    first = int(start * sr_in)
    count = -1 if duration is None else int(round(duration * sr_in))
    try:
        with _quiet_stderr(), sf.SoundFile(os.fsencode(path)) as f:
            f.seek(first)
            if (frames if count < 0 else count) * channels <= ONE_READ:  # a clip: one read, no block copies
                blocks = [_mono(f.read(frames=count, dtype="float32", always_2d=True))]
            else:  # decode in blocks, mixing each to mono, so a long stereo file never sits in memory twice
                blocks = [_mono(b) for b in f.blocks(blocksize=1 << 20, frames=count, dtype="float32", always_2d=True)]
    except Exception as e:
        raise AudioError(f"{shown(path)}: corrupt or truncated audio{_reason(e)}") from None
    wave = (blocks[0] if len(blocks) == 1 else np.concatenate(blocks)) if blocks else np.zeros(0, np.float32)
    if len(wave) == 0:
        raise AudioError(f"{shown(path)}: contains no audio samples")
    if not np.all(np.isfinite(wave)):
        raise AudioError(f"{shown(path)}: contains NaN or infinite samples")
    level = rms_dbfs(wave)
    if not allow_silent and level < SILENCE_DBFS:
        raise AudioError(f"{shown(path)}: audio is silent (RMS {level:.1f} dBFS, below {SILENCE_DBFS:.0f} dBFS)")
    if sr_in < sr:
        on_warning(f"{shown(path)}: sample rate {sr_in} Hz is below the {sr} Hz the model uses: "
                   f"nothing above {sr_in // 2} Hz, results may be off")
    return resample(np.ascontiguousarray(wave), sr_in, sr)


def _scan_dir(folder, files, problems, seen):
    """Depth-first, sorted walk that follows symbolic links to folders; a folder reached twice by
    its resolved path (a link loop, or two links to one place) is reported and scanned once."""
    real = folder.resolve()
    if real in seen:
        problems.append(f"{shown(folder)}: skipped, it leads to {shown(real)}, already scanned (a link loop or a second link)")
        return False
    seen.add(real)
    try:  # real entries before links, so a folder is listed under its own name when both lead to it
        entries = sorted(os.scandir(folder), key=lambda e: (e.is_symlink(), os.fsencode(e.name)))
    except OSError as e:
        problems.append(f"{shown(folder)}: cannot read folder ({e.strerror or type(e).__name__})")
        return True
    clips = {}  # stem -> files of one clip in several formats
    for e in entries:
        p = folder / e.name
        try:
            if e.is_symlink() and not p.exists():
                problems.append(f"{shown(p)}: dangling symbolic link (to {shown(os.readlink(p))}, which does not exist)")
            elif e.is_dir():
                _scan_dir(p, files, problems, seen)
            elif e.is_file() and p.suffix.lower() in AUDIO_EXTS:
                clips.setdefault(p.stem, []).append(p)
            elif e.is_file() and audio_like(p):
                problems.append(f"{shown(p)}: left out: {p.suffix} is not a format we read (readable: {', '.join(AUDIO_EXTS)})")
        except OSError as err:
            problems.append(f"{shown(p)}: cannot read ({err.strerror or type(err).__name__})")
    for stem, same in sorted(clips.items(), key=lambda kv: os.fsencode(kv[0])):
        same.sort(key=lambda p: PREFERENCE.index(p.suffix.lower()))
        files.append(same[0])
        if len(same) > 1:
            problems.append(f"{shown(same[0])}: kept; skipped {', '.join(shown(p.name) for p in same[1:])} beside it, "
                            f"the same clip in another format (kept in the order {' > '.join(x[1:] for x in PREFERENCE)})")
    return True


def find_audio(paths):
    """Expand files and folders into audio files: returns (files: list[Path], problems: list[str]).

    Folders are searched recursively and symbolic links to folders are followed (each real folder
    once, so link loops end). Files in folders are kept by extension (AUDIO_EXTS); audio in other
    formats (`audio_like`: m4a, wma, ...) gets a problem line `<path>: left out: ...`, and other
    files there (covers, notes) are ignored. Nothing is skipped in silence: `problems` holds one line
    `<path>: <what>` for every missing path, dangling link, unreadable folder, explicitly given
    non-audio file (or audio in a format we do not read), link loop, and each clip present in
    several formats in one folder (x.wav and x.mp3: the first in PREFERENCE is kept, lossless
    before lossy; that line says `kept`).
    Explicitly given files keep their order; each folder's files come sorted.
    """
    files, problems, seen = [], [], set()
    for p in map(Path, paths):
        if p.is_symlink() and not p.exists():
            problems.append(f"{shown(p)}: dangling symbolic link (to {shown(os.readlink(p))}, which does not exist)")
        elif not p.exists():
            problems.append(f"{shown(p)}: no such file or folder")
        elif p.is_dir():
            before = len(files)
            if _scan_dir(p, files, problems, seen) and len(files) == before:
                problems.append(f"{shown(p)}: no audio files found ({', '.join(AUDIO_EXTS)})")
        elif p.suffix.lower() in AUDIO_EXTS:
            files.append(p)
        elif audio_like(p):  # the words a folder's file gets, without "left out": a given file is an error
            problems.append(f"{shown(p)}: {p.suffix} is not a format we read (readable: {', '.join(AUDIO_EXTS)})")
        else:
            problems.append(f"{shown(p)}: not an audio file (readable: {', '.join(AUDIO_EXTS)})")
    unique = list(dict.fromkeys(files))  # the same file given twice is classified once
    return unique, problems
