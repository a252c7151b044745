"""Own collections: genre folders of any depth, names with spaces, non-ASCII and non-UTF-8 bytes,
mixed formats, and genres of 1 to many files, through split -> dataset -> main -> predict."""
import json
import os

import numpy as np
import pytest
import soundfile as sf

from conftest import run_script, sine
from genreclf import splits
from genreclf.extract import clip_file

SR = 22050
NON_UTF8 = os.fsdecode(b"caf\xe9 live.wav")  # Latin-1 bytes: what an old Windows or Samba copy leaves


def make_collection(root):
    """rock and jazz (4 clips each, in nested folders, odd names), `solo` with a single clip, and
    one clip present as both .wav and .ogg. Each genre is its own tone, so a model can learn it."""
    tone = {"rock": 220.0, "jazz": 660.0, "solo": 1320.0}
    names = {"rock": ["live/2019/My Song.wav", "Déjà vu.flac", NON_UTF8, "b-sides/intro.ogg"],
             "jazz": ["Miles Davis/So What (take 2).wav", "日本語 タイトル.wav", "x.wav", "x.ogg", "deep/a/b/c/last one.flac"],
             "solo": ["only one.wav"]}
    for g, files in names.items():
        for k, name in enumerate(files):
            wave = sine(tone[g] * (1 + 0.01 * k), 2.2, SR) + 0.01 * np.random.default_rng(k).standard_normal(int(2.2 * SR)).astype(np.float32)
            path = root / "wav" / g / name
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(os.fsencode(path), wave, SR)  # bytes: soundfile encodes a str path strictly
    (root / "wav" / "rock" / "cover.jpg").write_bytes(b"not audio")  # ignored: not an audio extension


def test_scan_ids_come_from_relative_paths(tmp_path):
    make_collection(tmp_path / "data")
    lines = []
    found = splits.scan(tmp_path / "data", report=lines.append)
    assert found["rock/live/2019/My Song"] == "rock/live/2019/My Song.wav"
    assert found["jazz/deep/a/b/c/last one"] == "jazz/deep/a/b/c/last one.flac"
    assert found["jazz/x"] == "jazz/x.wav"  # lossless kept over lossy, as predict.py's audio.find_audio
    assert len(lines) == 1 and "x.wav: kept" in lines[0] and "x.ogg" in lines[0]
    assert os.fsdecode(b"rock/caf\xe9 live") in found
    assert len(found) == 4 + 4 + 1  # x counted once; cover.jpg ignored
    assert splits.scan(tmp_path / "data") == found  # stable


def test_split_lists_round_trip_non_utf8_names(tmp_path):
    make_collection(tmp_path / "data")
    parts, _ = splits.make_split(tmp_path / "data", "random", genres=["rock"], val_per_class=1, test_per_class=1)
    splits.write_split(parts, tmp_path / "split", {})
    back = splits.load_split(tmp_path / "split")
    assert back == parts and os.fsdecode(b"rock/caf\xe9 live.wav") in sum(back.values(), [])
    assert b"caf\xe9 live.wav\n" in b"".join((tmp_path / "split" / f"{p}.txt").read_bytes() for p in splits.PARTS)


def test_clip_files_are_safe_for_any_id(tmp_path):
    ids = ["rock/live/My Song", os.fsdecode(b"rock/caf\xe9"), "rock/" + "é" * 200, "../escape", "jazz/x"]
    files = [clip_file(tmp_path, cid, "orig") for cid in ids]
    assert files[0] == tmp_path / "clips" / "rock" / "live" / "My Song.orig.npy"
    assert len(set(files)) == len(ids)
    for f in files:
        str(f).encode("utf-8")  # no lone surrogates left
        assert tmp_path / "clips" in f.parents and ".." not in f.parts
        assert all(len(part.encode()) < 255 for part in f.parts)


def test_own_collection_end_to_end(tmp_path):
    data, work, run = tmp_path / "data", tmp_path / "work", tmp_path / "run"
    make_collection(data)
    common = ["--data-dir", data, "--work-dir", work]
    r = run_script("split_data.py", *common, "--split", "random", "--val-per-class", 1, "--test-per-class", 1)
    assert r.returncode == 0, r.stderr
    assert "genre solo has 1 clips" in r.stdout and "all 1 go to train" in r.stdout
    assert "| **total** | 5 | 2 | 2 |" in r.stdout, r.stdout
    assert "warning: genre solo has no val clips (1 train / 0 val / 0 test)" in r.stderr
    mel = ["--segment", 1, "--n-mels", 32]
    r = run_script("dataset.py", *common, *mel, "--augment", "noise")
    assert r.returncode == 0, r.stderr
    assert "skipped 0" in r.stdout
    index = json.loads(next((work / "cache").glob("mel-*/index.json")).read_text())
    ids = [c["id"] for part in index["splits"].values() for c in part]
    assert len(ids) == len(set(ids)) == 9 and os.fsdecode(b"rock/caf\xe9 live") in ids
    train = [*common, *mel, "--model", "base2dcnn", "--epochs", 1, "--batch-size", 8, "--amp", "--do_train", "--do_test", "--out", run]
    r = run_script("main.py", *train)  # solo cannot be validated: one line, nothing trained
    assert r.returncode == 2 and r.stderr.startswith("error: genre solo has no val clips") and len(r.stderr.splitlines()) == 1
    assert run_script("split_data.py", *common, "--split", "random", "--genres", "jazz,rock", "--val-per-class", 1,
                      "--test-per-class", 1).returncode == 0
    assert run_script("dataset.py", *common, *mel, "--augment", "noise").returncode == 0  # the clips are cached: a new index
    r = run_script("main.py", *train)
    assert r.returncode == 0, r.stderr
    m = json.loads((run / "metrics.json").read_text())
    assert m["genres"] == ["jazz", "rock"] and m["test_clips"] == 2
    song = data / "wav" / "jazz" / "日本語 タイトル.wav"
    r = run_script("predict.py", song, "--checkpoint", run / "best.pt", "--format", "json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out[0]["path"].endswith("日本語 タイトル.wav") and set(out[0]["probabilities"]) == {"jazz", "rock"}


@pytest.mark.parametrize("n", [1, 2])
def test_small_genre_goes_to_train_with_one_line(tmp_path, wav_factory, capsys, n):
    for g, count in (("big", 5), ("small", n)):
        for k in range(count):
            wav_factory(f"data/wav/{g}/{k}.wav", sine(440, 0.1, SR))
    parts, _ = splits.make_split(tmp_path / "data", "random", val_per_class=1, test_per_class=1)
    lines = [line for line in capsys.readouterr().out.splitlines() if "small" in line]
    assert len(lines) == 1 and f"all {n} go to train" in lines[0]
    assert sorted(p for p in parts["train"] if p.startswith("small/")) == [f"small/{k}.wav" for k in range(n)]
    assert not any(p.startswith("small/") for p in parts["val"] + parts["test"])
