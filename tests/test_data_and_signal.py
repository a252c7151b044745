"""Data sets and signal (issue 20): .opus, audio left out at split time, BOM and CRLF text inputs,
DC offset removed before features, silent segments out of a file's mean."""
import json

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import MINI, needs_shared, sine
from genreclf import audio, splits
from genreclf.audio import AudioError, find_audio, silent_segments
from genreclf.config import digest
from genreclf.features import MelSpec
from genreclf.featurizers import MelFeatures, MusicnnFeatures
from genreclf.groups import read_groups_csv, read_gtzan_index
from genreclf.io import to_json
from genreclf.predict import Classifier
from genreclf.predict_output import result

SR = 22050


def test_opus_is_read_like_ogg(tmp_path):
    path = tmp_path / "song.opus"
    sf.write(path, sine(440, 2.0, 48000), 48000, format="OGG", subtype="OPUS")  # libsndfile writes Ogg Opus
    wave = audio.load(path, SR)
    assert abs(len(wave) - 2 * SR) < SR * 0.05
    spectrum = np.abs(np.fft.rfft(wave))
    assert abs(np.argmax(spectrum) * SR / len(wave) - 440) < 5  # the tone survives the codec
    files, problems = find_audio([tmp_path])
    assert files == [path] and problems == []


def test_split_time_names_and_counts_audio_left_out(tmp_path, wav_factory):
    for k in range(3):
        wav_factory(f"data/wav/rock/{k}.wav", sine(220, 0.5, SR))
    (tmp_path / "data/wav/rock/broken.wav").write_bytes(b"RIFF" + bytes(40))
    (tmp_path / "data/wav/rock/phone.m4a").write_bytes(b"\x00\x00\x00\x20ftypM4A ")
    (tmp_path / "data/wav/rock/cover.jpg").write_bytes(b"\xff\xd8")  # not audio: ignored, as before
    lines = []
    found = splits.scan(tmp_path / "data", report=lines.append)
    assert sorted(found) == ["rock/0", "rock/1", "rock/2"]
    assert len(lines) == 3, lines
    assert any(line.startswith(f"{tmp_path / 'data/wav/rock/broken.wav'}: left out: corrupt or unreadable") for line in lines)
    assert any(line.startswith(f"{tmp_path / 'data/wav/rock/phone.m4a'}: left out: .m4a is not a format we read") for line in lines)
    assert lines[-1] == "2 audio file(s) left out of the data set, each named above"


def test_bom_and_crlf_are_accepted_in_every_text_input(tmp_path):
    bom = b"\xef\xbb\xbf"
    (tmp_path / "groups.csv").write_bytes(bom + b"rock/a.wav,band one\r\nrock/b.wav,band two\r\n")  # no header
    assert read_groups_csv(tmp_path / "groups.csv") == {"rock/a": "band one", "rock/b": "band two"}
    (tmp_path / "headed.csv").write_bytes(bom + b"path,group\r\nrock/a.wav,x\r\n")
    assert read_groups_csv(tmp_path / "headed.csv") == {"rock/a": "x"}
    (tmp_path / "train.txt").write_bytes(bom + b"rock/a.wav\r\nrock/b.wav\r\n")
    assert splits.read_list(tmp_path / "train.txt") == ["rock/a.wav", "rock/b.wav"]
    (tmp_path / "artists.txt").write_bytes(bom + b"blues.00000.wav ::: John Lee Hooker ::: Sugar Mama\r\n")
    assert read_gtzan_index(tmp_path / "artists.txt") == {"blues/blues.00000": "John Lee Hooker"}


def _music(seconds, sr=SR, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    wave = sum(np.sin(2 * np.pi * f * t) for f in (220, 277, 330, 880)) * np.exp(-(t % 0.5) * 4)
    return (0.1 * wave + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


@pytest.mark.parametrize("offset", [0.4, -0.4])
def test_dc_offset_is_removed_before_mel_features(offset):
    spec = MelSpec(segment=1.0, n_mels=32)
    wave = _music(3.0)
    new, old = MelFeatures(spec), MelFeatures(MelSpec(segment=1.0, n_mels=32, remove_dc=False))
    clean = new(wave)["segments"]
    assert np.abs(new(wave + offset)["segments"] - clean).max() < 0.05  # dB
    assert np.abs(old(wave + offset)["segments"] - old(wave)["segments"]).max() > 10  # what it was before


def test_remove_dc_is_in_the_key_and_old_keys_mean_without():
    mel, mus = MelFeatures(MelSpec()), MusicnnFeatures(MusicnnFeatures.Spec(), MelSpec())
    assert mel.key()["remove_dc"] is True and mus.key()["remove_dc"] is True
    old_mel = {k: v for k, v in mel.key().items() if k != "remove_dc"}  # a key from before DC removal
    old_mus = {k: v for k, v in mus.key().items() if k != "remove_dc"}
    assert MelFeatures.from_key(old_mel).spec.remove_dc is False and MusicnnFeatures.from_key(old_mus).mel.remove_dc is False
    assert MelFeatures(MelSpec(remove_dc=False)).key() == old_mel  # --no-remove-dc finds the old cache folder
    assert digest(old_mel) != digest(mel.key())  # the new features get a cache of their own
    assert MelFeatures.from_key(mel.key()).key() == mel.key() and MusicnnFeatures.from_key(mus.key()).key() == mus.key()


def test_silent_segments_ignore_an_offset_and_cut_on_the_grid():
    wave = np.concatenate([np.full(2 * SR, 0.3, np.float32), _music(2.0) + 0.3])  # 2 s of offset only, then music
    assert silent_segments(wave, SR, 4).tolist() == [True, True, False, False]
    out = MelFeatures(MelSpec(segment=1.0, n_mels=32))(wave)
    assert out["silent"].tolist()[:2] == [True, True] and not out["silent"][2:].any()
    assert len(out["silent"]) == len(out["segments"])


@pytest.fixture
def classifier():
    from model import build

    spec = MelSpec(segment=1.0, n_mels=32)
    kwargs = {"n_classes": 3, "input_shape": {"mel": (32, spec.segment_frames)}}
    torch.manual_seed(0)
    ckpt = {"genres": ["a", "b", "c"], "features": {"mel": MelFeatures(spec).key()}}
    return Classifier(build("baseline", **kwargs), ckpt)


def test_silent_segments_take_no_part_in_the_mean_and_say_silence(classifier, wav_factory):
    gap = np.zeros(3 * SR, np.float32)
    path = wav_factory("gap.wav", np.concatenate([_music(3.0), gap, _music(3.0, seed=1)]))  # 3 s of silence inside
    out = classifier(path)
    silent = out["silent"]
    assert silent.tolist() == [a >= 3 - 1e-3 and b <= 6 + 1e-3 for a, b in out["segments"]] and silent.sum() == 2
    assert np.isnan(out["probs"][silent]).all() and np.allclose(out["mean"], out["probs"][~silent].mean(0))
    r = json.loads(to_json(result(path, out, classifier.genres, 2, True)))
    quiet = [seg for seg in r["timeline"] if seg["top"] == "silence"]
    assert len(quiet) == 2 and all(seg["silent"] and seg["probabilities"] is None for seg in quiet)  # a stable schema
    assert r["probabilities"] == pytest.approx(dict(zip(classifier.genres, out["mean"].tolist())))


def test_silence_at_either_end_changes_nothing(classifier, wav_factory):
    music = _music(5.0)
    alone = classifier(wav_factory("music.wav", music))
    before = classifier(wav_factory("before.wav", np.concatenate([np.zeros(3 * SR, np.float32), music])))
    after = classifier(wav_factory("after.wav", np.concatenate([music, np.zeros(3 * SR, np.float32)])))
    assert np.allclose(before["mean"], alone["mean"], atol=1e-5) and np.allclose(after["mean"], alone["mean"], atol=1e-5)
    assert before["silent"].tolist() == [True] * 3 + [False] * len(alone["silent"])
    seg = classifier.segment_s  # 0.998 s: the grid back from 3 s, the first one stretched to 0
    bounds = [t for pair in before["segments"][:4] for t in pair]
    assert bounds == pytest.approx([0, 3 - 2 * seg, 3 - 2 * seg, 3 - seg, 3 - seg, 3, 3, 3 + seg], abs=1e-3)
    assert after["silent"].tolist() == [False] * len(alone["silent"]) + [True] * 3


def test_a_file_of_only_silence_and_offset_is_one_error(classifier, wav_factory):
    offset = np.full(4 * SR, 0.3, np.float32)  # -10 dBFS of DC alone: passes the whole-file check
    hum = np.concatenate([offset, 0.3 + 1e-4 * np.sin(np.arange(4 * SR) / 5, dtype=np.float32)])  # -83 dBFS of tone
    clicks = offset.copy()  # two 10 ms clicks 3 s apart: sound (-57 dBFS) in 10 ms frames, silence in every segment
    for t in (0.5, 3.5):
        clicks[int(t * SR):int(t * SR) + SR // 100] += 0.002 * np.sign(np.sin(np.arange(SR // 100)) + 0.5)
    for name, wave in (("offset.wav", offset), ("hum.wav", hum), ("clicks.wav", clicks)):
        path = wav_factory(name, wave)
        with pytest.raises(AudioError, match="audio is silent: no 1 s segment is above -70 dBFS") as e:
            classifier(path)
        assert "\n" not in str(e.value) and str(path) in str(e.value)


@needs_shared
def test_shipped_model_ignores_dc_and_a_minute_of_silence(tmp_path):
    """metal.00000 (0.999 metal for the shipped model): +-0.4 DC and 60 s of digital silence before
    or after leave the top-1 and move the metal probability by at most 0.02."""
    from genreclf import checkpoint, pretrained

    model, ckpt = checkpoint.load_model(pretrained.checkpoint_path())
    runner = Classifier(model, ckpt)
    clip, rate = sf.read(MINI / "wav" / "metal" / "metal.00000.wav", dtype="float32")
    quiet = np.zeros(60 * rate, np.float32)
    variants = {"original": clip, "+0.4 DC": clip + 0.4, "-0.4 DC": clip - 0.4,
                "silence before": np.concatenate([quiet, clip]), "silence after": np.concatenate([clip, quiet])}
    metal = ckpt["genres"].index("metal")
    probs = {}
    for name, wave in variants.items():
        sf.write(tmp_path / "x.wav", wave, rate, subtype="FLOAT")  # float: +0.4 would clip in 16 bits
        probs[name] = runner(tmp_path / "x.wav")["mean"]
    assert probs["original"][metal] > 0.9
    for name, p in probs.items():
        assert p.argmax() == metal and abs(p[metal] - probs["original"][metal]) <= 0.02, (name, p[metal])


def test_silent_segments_of_cached_clips_take_no_part_in_training_or_evaluation(tmp_path):
    """A clip with a silent second inside: dataset.py records it in index.json, and the rows a run
    loads skip it (pos keeps the gap, so no window or crop spans it)."""
    from genreclf import rundata
    from genreclf.augment import AugmentSpec
    from genreclf.extract import extract
    from genreclf.windows import neighbours

    data, work = tmp_path / "data", tmp_path / "work"
    for g, f0 in zip("abc", (220.0, 440.0, 880.0)):
        for k in range(3):
            wave = sine(f0 * (1 + 0.03 * k), 3.2, SR)
            if (g, k) == ("a", 0):
                wave[int(0.95 * SR):int(2.05 * SR)] = 0.0  # segment 1 of 3 (0.998 s each) is silent
            (data / "wav" / g).mkdir(parents=True, exist_ok=True)
            sf.write(data / "wav" / g / f"clip {k}.wav", wave, SR)
    parts, _ = splits.make_split(data, "random", val_per_class=1, test_per_class=1, seed=0)
    splits.write_split(parts, work / "split", {})
    cache = extract(data, work / "split", work / "cache", MelFeatures(MelSpec(segment=1.0, n_mels=16)), AugmentSpec())
    index = rundata.read_index(cache)
    assert index.entries["a/clip 0"]["silent"] == {"orig": [1]}
    assert not any("silent" in e for cid, e in index.entries.items() if cid != "a/clip 0")
    fs = rundata.load_clips({"mel": cache}, ["a/clip 0", "b/clip 0"], index.genres)
    assert fs.pos.tolist() == [0, 2, 0, 1, 2] and fs.clip.tolist() == [0, 0, 1, 1, 1]
    nxt, _ = neighbours(fs)
    assert nxt.tolist() == [-1, -1, 3, 4, -1]  # segments 0 and 2 of the first clip are not neighbours
