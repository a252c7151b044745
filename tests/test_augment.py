import librosa
import numpy as np
import pytest

from conftest import sine
from genreclf.augment import AugmentSpec, apply
from genreclf.errors import UserError

SR = 22050


def peak_hz(wave, sr=SR):
    spectrum = np.abs(np.fft.rfft(wave))
    return np.fft.rfftfreq(len(wave), 1 / sr)[spectrum.argmax()]


def test_noise_has_the_asked_snr_and_is_deterministic():
    wave = sine(440, 2, SR)
    spec = AugmentSpec(augment=("noise",), noise_snr=10)
    noisy = apply(wave, SR, "noise", spec, "jazz/jazz.00001")
    snr = 10 * np.log10(np.mean(wave ** 2) / np.mean((noisy - wave) ** 2))
    assert abs(snr - 10) < 0.5
    assert noisy.dtype == np.float32 and noisy.shape == wave.shape
    assert np.array_equal(noisy, apply(wave, SR, "noise", spec, "jazz/jazz.00001"))
    assert not np.array_equal(noisy, apply(wave, SR, "noise", spec, "jazz/jazz.00002"))


def test_shift_is_a_circular_roll():
    wave = np.random.default_rng(0).standard_normal(SR).astype(np.float32)
    shifted = apply(wave, SR, "shift", AugmentSpec(shift_max=0.5), "pop/pop.00000")
    k = int(np.argmax([np.dot(np.roll(wave, s), shifted) for s in range(-SR // 2, SR // 2 + 1)])) - SR // 2
    assert k != 0 and abs(k) <= SR // 2
    assert np.allclose(np.roll(wave, k), shifted)


def test_stretch_changes_length_not_pitch():
    wave = sine(440, 2, SR)
    out = apply(wave, SR, "stretch", AugmentSpec(stretch_rate=1.25), "x/x")
    assert abs(len(out) - len(wave) / 1.25) < 512
    assert abs(peak_hz(out) - 440) < 5


def test_pitch_moves_by_semitones_and_keeps_length():
    wave = sine(440, 2, SR)
    out = apply(wave, SR, "pitch", AugmentSpec(pitch_steps=2), "x/x")
    assert len(out) == len(wave)
    assert abs(peak_hz(out) - librosa.midi_to_hz(librosa.hz_to_midi(440) + 2)) < 5


def test_tags_name_parameters_and_unknown_kind_is_refused():
    spec = AugmentSpec(augment=("noise", "pitch"), noise_snr=15, pitch_steps=-1)
    assert spec.tag("noise") == "noise-snr15-s0" and spec.tag("pitch") == "pitch-steps-1"
    with pytest.raises(UserError, match="unknown augmentation"):
        AugmentSpec(augment=("reverb",))
    with pytest.raises(UserError, match="--stretch-rate 0: must be above 0"):
        AugmentSpec(stretch_rate=0)

