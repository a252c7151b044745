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
    assert cache_dir(tmp_path, a, "data") == cache_dir(tmp_path, b, "data")
    assert cache_dir(tmp_path, a, "data") != cache_dir(tmp_path, c, "data")
    assert digest(MelSpec(segment=3.0)) != digest(MelSpec())


def test_featurizer_is_log_mel_of_the_loudness_normalized_clip(tmp_path):
    from genreclf.features import normalize_loudness
    spec = MelSpec(segment=1.0)
    wave = sine(440, 3.0, spec.sr, amp=0.02) + sine(3000, 3.0, spec.sr, amp=0.01)
    ours = MelFeatures(spec)(wave)["segments"]
    expected = segment(log_mel(normalize_loudness(wave, spec.sr, spec.loudness), spec), spec.segment_frames)
    assert np.allclose(ours, expected, atol=1e-4)
    assert cache_dir(tmp_path, MelFeatures(MelSpec(loudness=-14.0)), "data") != cache_dir(tmp_path, MelFeatures(MelSpec()), "data")


def _pyloudnorm_lufs(wave, sr):
    """The reference meter: pyloudnorm's BS.1770-4 integrated loudness, in float64."""
    import pyloudnorm
    with np.errstate(divide="ignore"):
        return float(pyloudnorm.Meter(sr, block_size=min(0.4, len(wave) / sr)).integrated_loudness(wave.astype(np.float64)))


def _signals(sr):
    rng = np.random.default_rng(3)
    noise = lambda seconds, amp: (amp * rng.standard_normal(int(seconds * sr))).astype(np.float32)
    return {"noise": noise(7.3, 0.1), "sine": sine(997, 5.0, sr, amp=0.3),
            # below the absolute gate (-70), then quiet (about -57, under the relative gate), then loud
            "gated": np.concatenate([noise(4, 1e-5), noise(6, 1e-3), noise(3, 0.3)]),
            "short": noise(0.25, 0.1)}


@pytest.mark.parametrize("sr", [22050, 16000, 44100])
def test_loudness_agrees_with_pyloudnorm(sr):
    from genreclf.features import loudness_lufs
    for name, wave in _signals(sr).items():
        assert abs(loudness_lufs(wave, sr) - _pyloudnorm_lufs(wave, sr)) < 0.01, name
    # the relative gate drops the quiet 6 s (above -70 LUFS): the level is the loud 3 s's, where
    # averaging all 13 s would be about 6 LU lower (only the blocks across the step differ)
    gated = _signals(sr)["gated"]
    assert abs(loudness_lufs(gated, sr) - loudness_lufs(gated[-3 * sr:], sr)) < 0.5


def test_loudness_of_silence_is_minus_infinity():
    from genreclf.features import loudness_lufs
    assert loudness_lufs(np.zeros(22050, np.float32), 22050) == float("-inf")
    assert loudness_lufs(np.full(22050, 1e-5, np.float32), 22050) == float("-inf")  # every block under -70 LUFS
    assert loudness_lufs(np.zeros(0, np.float32), 22050) == float("-inf")


@needs_shared
def test_loudness_agrees_with_pyloudnorm_on_a_real_clip():
    from genreclf.features import loudness_lufs
    wave, sr = sf.read(MINI / "wav" / "classical" / "classical.00001.wav", dtype="float32")
    assert abs(loudness_lufs(wave, sr) - _pyloudnorm_lufs(wave, sr)) < 0.01
