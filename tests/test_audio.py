import os

import numpy as np
import pytest
import soundfile as sf

from conftest import MINI, needs_shared, sine
from genreclf.audio import AudioError, find_audio, load, shown


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
    ("text.wav", b"hello", r"text\.wav: corrupt or unreadable audio \(Format not recognised\.\)$"),
])
def test_bad_files_name_the_file_and_problem(tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(AudioError, match=message) as e:
        load(path, 22050)
    assert str(path) in str(e.value) and str(e.value).count(name) == 1  # soundfile's b'<path>' is left out


def test_a_given_file_in_a_format_we_do_not_read_says_so_as_in_a_folder(tmp_path):
    (tmp_path / "in").mkdir()
    for song in (tmp_path / "song.m4a", tmp_path / "in" / "song.m4a"):
        song.write_bytes(b"")
    files, problems = find_audio([tmp_path / "song.m4a", tmp_path / "in"])
    assert files == [] and problems[0] == (f"{tmp_path / 'song.m4a'}: .m4a is not a format we read "
                                           "(readable: .wav, .flac, .ogg, .oga, .opus, .mp3, .au, .aiff, .aif)")
    assert problems[1] == f"{tmp_path / 'in' / 'song.m4a'}: left out: {problems[0].split(': ', 1)[1]}"


def test_silence_is_refused_unless_allowed(wav_factory):
    path = wav_factory("silent.wav", np.zeros(22050, np.float32))
    with pytest.raises(AudioError, match="silent"):
        load(path, 22050)
    assert load(path, 22050, allow_silent=True).shape == (22050,)


@needs_shared
def test_reads_mp3_and_finds_audio_recursively():
    wave = load(MINI / "wav" / "blues" / "blues.00099.mp3", 22050)
    assert 29 < len(wave) / 22050 < 31
    files, problems = find_audio([MINI / "wav" / "blues"])
    assert len(files) == 8 and problems == []
    assert all(f.suffix in (".wav", ".mp3") for f in files)


def test_odd_channel_counts_are_mixed_to_mono(wav_factory):
    channels = np.stack([sine(440, 1.0, 48000, amp=0.1 * (i + 1)) for i in range(6)], 1)  # 5.1 at 48 kHz
    wave = load(wav_factory("surround.wav", channels, 48000), 22050)
    assert wave.ndim == 1 and abs(len(wave) - 22050) <= 1
    assert abs(np.abs(wave).max() - 0.35) < 0.02  # the mean of amplitudes 0.1 .. 0.6


def test_silence_is_judged_by_level_in_one_line(wav_factory):
    lsb = np.random.default_rng(0).choice([-1, 1], 22050).astype(np.float32) / 32768  # +-1 LSB: -90 dBFS
    with pytest.raises(AudioError) as e:
        load(wav_factory("dither.wav", lsb), 22050)
    assert "audio is silent (RMS -90.3 dBFS, below -70 dBFS)" in str(e.value) and "\n" not in str(e.value)
    quiet = sine(440, 1.0, 22050, amp=10 ** (-65 / 20))  # -68 dBFS RMS: quiet, not silent
    assert load(wav_factory("quiet.wav", quiet), 22050).shape == (22050,)


def test_low_sample_rate_warns_in_one_line(wav_factory):
    lines = []
    wave = load(wav_factory("phone.wav", sine(440, 1.0, 8000), 8000), 22050, on_warning=lines.append)
    assert abs(len(wave) - 22050) <= 1
    assert len(lines) == 1 and "8000 Hz is below the 22050 Hz" in lines[0] and "\n" not in lines[0]
    load(wav_factory("cd.wav", sine(440, 1.0, 44100), 44100), 22050, on_warning=lines.append)
    assert len(lines) == 1  # a higher rate is fine


def _bytes_path(folder, raw_name):
    """A Path for a file name that is not valid UTF-8, as os.listdir would return it."""
    return folder / os.fsdecode(raw_name)


def test_non_utf8_names_load_and_print(tmp_path, capsys):
    path = _bytes_path(tmp_path, b"caf\xe9 \xff.wav")
    with sf.SoundFile(os.fsencode(path), "w", samplerate=22050, channels=1) as f:
        f.write(sine(440, 1.0, 22050))
    assert load(path, 22050).shape == (22050,)
    assert shown(path).endswith("caf\\xe9 \\xff.wav")
    print(shown(path))  # would raise UnicodeEncodeError with str(path)
    broken = _bytes_path(tmp_path, b"bad\xe9.wav")
    broken.write_bytes(b"RIFF" + bytes(100))
    with pytest.raises(AudioError, match=r"bad\\xe9\.wav: corrupt or unreadable"):
        load(broken, 22050)
    files, problems = find_audio([tmp_path])
    assert files == [broken, path] and problems == []


def test_find_audio_follows_links_and_reports_every_problem(tmp_path, wav_factory):
    wav_factory("music/a.wav", sine(440, 0.1, 22050))
    wav_factory("elsewhere/b.flac", sine(440, 0.1, 22050))
    wav_factory("music/x.mp3.wav", sine(440, 0.1, 22050))
    music = tmp_path / "music"
    (music / "linked").symlink_to(tmp_path / "elsewhere")  # a symlinked sub-folder is followed
    (music / "loop").symlink_to(music)  # a loop ends with one line
    (music / "gone.wav").symlink_to(tmp_path / "deleted.wav")
    notes = tmp_path / "notes.txt"
    notes.write_text("hi")
    files, problems = find_audio([music, notes, tmp_path / "missing.wav"])
    assert [f.name for f in files] == ["b.flac", "a.wav", "x.mp3.wav"]
    assert len(problems) == 4 and all("\n" not in p for p in problems)
    assert any(p.startswith(f"{music / 'gone.wav'}: dangling symbolic link") for p in problems)
    assert any(p.startswith(f"{music / 'loop'}: skipped") and "already scanned" in p for p in problems)
    assert f"{notes}: not an audio file" in "".join(problems)
    assert f"{tmp_path / 'missing.wav'}: no such file or folder" in problems


def test_same_clip_in_two_formats_keeps_the_lossless_one(wav_factory):
    for ext in (".mp3", ".wav", ".ogg"):
        path = wav_factory("d/x" + ext, sine(440, 0.5, 22050), format="WAV")  # content does not matter
    files, problems = find_audio([path.parent])
    assert files == [path.parent / "x.wav"]
    assert problems == [f"{path.parent / 'x.wav'}: kept; skipped x.ogg, x.mp3 beside it, the same clip in another "
                        "format (kept in the order wav > flac > aiff > aif > au > ogg > oga > opus > mp3)"]


def test_unreadable_folder_is_reported(tmp_path, wav_factory):
    wav_factory("locked/a.wav", sine(440, 0.1, 22050))
    (tmp_path / "locked").chmod(0)
    try:
        if os.access(tmp_path / "locked", os.R_OK):
            pytest.skip("running as root: permissions are not enforced")
        files, problems = find_audio([tmp_path])
        assert files == [] and problems[0].startswith(f"{tmp_path / 'locked'}: cannot read folder")
    finally:
        (tmp_path / "locked").chmod(0o755)


@pytest.mark.parametrize("channels", [1, 2])
def test_one_read_and_block_decoding_give_the_same_samples(wav_factory, monkeypatch, channels):
    from genreclf import audio
    rng = np.random.default_rng(1)
    data = (0.1 * rng.standard_normal((50 * 22050 + 77, channels))).astype(np.float32)  # 2 blocks of 2^20
    path = wav_factory(f"c{channels}.flac", data[:, 0] if channels == 1 else data)
    whole = load(path, 22050)  # a short file: one sf.read
    part = load(path, 22050, start=0.5, duration=1.0)
    monkeypatch.setattr(audio, "ONE_READ", 0)  # as a long file: block by block
    assert np.array_equal(load(path, 22050), whole)
    assert np.array_equal(load(path, 22050, start=0.5, duration=1.0), part) and len(part) == 22050
    # PCM_16 on disk: the mono mix of the decoded samples
    assert np.allclose(whole, sf.read(path, dtype="float32", always_2d=True)[0].mean(axis=1), atol=0)
