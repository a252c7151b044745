"""A tiny synthetic data set and its cache, for the tests of caches and storage: 3 genres x 3
clips of 2.2 s tones, tiny log-mels (16 bands, 1 s segments), one augmented copy of train."""
from pathlib import Path

import pytest
import soundfile as sf

from conftest import sine
from genreclf import splits
from genreclf.augment import AugmentSpec
from genreclf.extract import extract
from genreclf.featurizers import MelFeatures
from genreclf.features import MelSpec

SR = 22050
MEL = ["--segment", 1, "--n-mels", 16]  # main.py's feature flags for this cache
EXTRACT = [*MEL, "--augment", "noise"]  # dataset.py's
FEAT = MelFeatures(MelSpec(segment=1.0, n_mels=16))
AUG = AugmentSpec(augment=("noise",))
FEATURIZERS = {"mel": lambda: FEAT}


def one_error_line(r, *parts):
    """An exit code of 2 and one `error:` line holding every part, no traceback."""
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert r.returncode == 2 and len(errors) == 1 and "Traceback" not in r.stderr, r.stderr
    for part in parts:
        assert part in errors[0], errors[0]
    return errors[0]


def write_clips(data, freqs=(220.0, 440.0, 880.0), seconds=2.2):
    """3 genres x 3 clips of tones: 2 one-second segments each."""
    for g, f0 in zip("abc", freqs):
        for k in range(3):
            path = data / "wav" / g / f"clip {k}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, sine(f0 * (1 + 0.03 * k), seconds, SR), SR)


def split(data, work, seed=0):
    parts, _ = splits.make_split(data, "random", val_per_class=1, test_per_class=1, seed=seed)
    splits.write_split(parts, work / "split", {})
    return parts


@pytest.fixture
def tiny(tmp_path):
    """(data dir, work dir) of 9 clips, split 1/1/1 per genre."""
    data, work = tmp_path / "data", tmp_path / "work"
    write_clips(data)
    split(data, work)
    return data, work


def build(data, work, **kw):
    return extract(data, work / "split", work / "cache", FEAT, AUG, **kw)


def contents(cache):
    """{relative path: bytes} of every file of a cache but its (empty) lock files."""
    return {p.relative_to(cache): p.read_bytes() for p in Path(cache).rglob("*") if p.is_file() and "lock" not in p.name}


def stats(folder):
    """{relative path: (inode, size, mtime)} of every file: equal when nothing was written."""
    return {p.relative_to(folder): (p.stat().st_ino, p.stat().st_size, p.stat().st_mtime_ns)
            for p in Path(folder).rglob("*")}
