import numpy as np
import pytest

from conftest import MINI, needs_shared, sine
from genreclf.audio import AudioError, find_audio, load


def test_stereo_is_averaged_and_resampled(wav_factory):
    left, right = sine(440, 1.0, 44100), sine(440, 1.0, 44100, amp=0.1)
    path = wav_factory("st.wav", np.stack([left, right], 1), 44100)
    wave = load(path, 22050)
    assert wave.ndim == 1 and abs(len(wave) - 22050) <= 1
    assert abs(np.abs(wave).max() - 0.3) < 0.02


@pytest.mark.parametrize("name, content, message", [
    ("missing.wav", None, "no such file"),
    ("empty.wav", b"", "empty file"),
    ("bad.wav", b"RIFF" + bytes(200), "corrupt or unreadable"),
    ("bad.mp3", b"\xff\xfb" + bytes(500), "corrupt or unreadable audio$"),
    ("notes.txt", b"hello", "unsupported format"),
])
def test_bad_files_name_the_file_and_problem(tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(AudioError, match=message) as e:
        load(path, 22050)
    assert str(path) in str(e.value)


def test_silence_is_refused_unless_allowed(wav_factory):
    path = wav_factory("silent.wav", np.zeros(22050, np.float32))
    with pytest.raises(AudioError, match="silent"):
        load(path, 22050)
    assert load(path, 22050, allow_silent=True).shape == (22050,)


@needs_shared
def test_reads_mp3_and_finds_audio_recursively():
    wave = load(MINI / "wav" / "blues" / "blues.00099.mp3", 22050)
    assert 29 < len(wave) / 22050 < 31
    files = find_audio([MINI / "wav" / "blues"])
    assert len(files) == 8 and all(f.suffix in (".wav", ".mp3") for f in files)


def test_odd_channel_counts_are_mixed_to_mono(wav_factory):
    channels = np.stack([sine(440, 1.0, 48000, amp=0.1 * (i + 1)) for i in range(6)], 1)  # 5.1 at 48 kHz
    wave = load(wav_factory("surround.wav", channels, 48000), 22050)
    assert wave.ndim == 1 and abs(len(wave) - 22050) <= 1
    assert abs(np.abs(wave).max() - 0.35) < 0.02  # the mean of amplitudes 0.1 .. 0.6
