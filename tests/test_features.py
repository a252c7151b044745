import librosa
import numpy as np
import pytest
import soundfile as sf

from conftest import MINI, needs_shared, sine
from genreclf.config import digest
from genreclf.extract import cache_dir
from genreclf.featurizers import MelFeatures
from genreclf.features import MelSpec, log_mel, segment


def librosa_db(wave, spec):
    mel = librosa.feature.melspectrogram(y=wave, sr=spec.sr, n_fft=spec.n_fft, hop_length=spec.hop, n_mels=spec.n_mels)
    return librosa.power_to_db(mel)


def test_sine_peaks_in_its_mel_band():
    spec = MelSpec()
    mel = log_mel(sine(1000, 2.0, spec.sr), spec)
    centers = librosa.mel_frequencies(n_mels=spec.n_mels + 2, fmax=spec.sr / 2)[1:-1]
    assert mel.shape == (spec.n_mels, 1 + int(2.0 * spec.sr) // spec.hop)
    peak = mel.mean(axis=1).argmax()
    assert abs(centers[peak] - 1000) <= np.diff(centers)[peak]


def test_matches_librosa_on_noise():
    spec = MelSpec(n_mels=64, n_fft=2048)
    wave = np.random.default_rng(0).standard_normal(22050 * 3).astype(np.float32) * 0.1
    assert np.abs(log_mel(wave, spec) - librosa_db(wave, spec)).max() <= 0.05


@needs_shared
def test_matches_librosa_on_real_clip():
    spec = MelSpec()
    wave, _ = sf.read(MINI / "wav" / "metal" / "metal.00000.wav", dtype="float32")
    assert np.abs(log_mel(wave, spec) - librosa_db(wave, spec)).max() <= 0.05


def test_batched_equals_single():
    spec = MelSpec()
    waves = np.random.default_rng(1).standard_normal((3, 22050)).astype(np.float32)
    batch = log_mel(waves, spec)
    assert np.allclose(batch[1], log_mel(waves[1], spec), atol=1e-4)


def test_thirty_seconds_give_seven_four_second_segments():
    spec = MelSpec()
    mel = np.zeros((spec.n_mels, 1 + 661794 // spec.hop), np.float32)
    segs = segment(mel, spec.segment_frames)
    assert spec.segment_frames == 172
    assert segs.shape == (7, spec.n_mels, 172)
    with pytest.raises(ValueError, match="shorter than one"):
        segment(mel[:, :100], spec.segment_frames)


def test_segments_are_the_clip_in_order():
    mel = np.arange(2 * 10, dtype=np.float32).reshape(2, 10)
    segs = segment(mel, 4)
    assert segs.shape == (2, 2, 4)
    assert np.array_equal(segs[1], mel[:, 4:8])


def test_cache_key_follows_parameters(tmp_path):
    a, b, c = MelFeatures(MelSpec()), MelFeatures(MelSpec()), MelFeatures(MelSpec(n_mels=64))
    assert cache_dir(tmp_path, a) == cache_dir(tmp_path, b)
    assert cache_dir(tmp_path, a) != cache_dir(tmp_path, c)
    assert digest(MelSpec(segment=3.0)) != digest(MelSpec())


def test_featurizer_is_log_mel_of_the_loudness_normalized_clip(tmp_path):
    from genreclf.features import normalize_loudness
    spec = MelSpec(segment=1.0)
    wave = sine(440, 3.0, spec.sr, amp=0.02) + sine(3000, 3.0, spec.sr, amp=0.01)
    ours = MelFeatures(spec)(wave)["segments"]
    expected = segment(log_mel(normalize_loudness(wave, spec.sr, spec.loudness), spec), spec.segment_frames)
    assert np.allclose(ours, expected, atol=1e-4)
    assert cache_dir(tmp_path, MelFeatures(MelSpec(loudness=-14.0))) != cache_dir(tmp_path, MelFeatures(MelSpec()))
