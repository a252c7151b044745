"""predict.py on real long tracks, GTZAN clips and files the tests generate."""
import json

import numpy as np
import pytest

from conftest import MINI, SHARED, needs_shared, run_script, sine


def predict_json(*args):
    r = run_script("predict.py", *args, "--format", "json", "--timeline")
    return r, (json.loads(r.stdout) if r.stdout.strip() else [])


def check_result(res, genres):
    assert set(res["probabilities"]) == set(genres)
    assert sum(res["probabilities"].values()) == pytest.approx(1, abs=1e-4)
    assert res["top"][0]["probability"] == max(res["probabilities"].values())
    tl = res["timeline"]
    assert tl[0]["start"] == 0 and all(abs(a["end"] - b["start"]) < 1e-3 for a, b in zip(tl, tl[1:]))
    assert res["duration"] - 4.0 < tl[-1]["end"] <= res["duration"] + 1e-3
    for seg in tl:
        assert sum(seg["probabilities"].values()) == pytest.approx(1, abs=1e-4)


@needs_shared
def test_long_stereo_tracks_and_gtzan_clips(trained_run):
    paths = [SHARED / "long_tracks", MINI / "wav" / "blues" / "blues.00099.mp3", MINI / "wav" / "jazz" / "jazz.00003.wav"]
    r, results = predict_json(*paths, "--checkpoint", trained_run / "best.pt", "--top-k", 2)
    assert r.returncode == 0, r.stderr
    assert len(results) == 4
    genres = json.loads((trained_run / "config.json").read_text())["genres"]
    for res in results:
        check_result(res, genres)
        assert len(res["top"]) == 2
    long = [res for res in results if res["path"].endswith(".ogg")]
    assert all(res["duration"] > 180 for res in long)


@needs_shared
def test_generated_files_good_and_bad(trained_run, wav_factory, tmp_path):
    stereo = wav_factory("in/stereo.flac", np.stack([sine(220, 9, 44100), sine(330, 9, 44100)], 1), 44100)
    mono = wav_factory("in/mono.wav", sine(440, 6, 16000), 16000)
    wav_factory("in/short.wav", sine(440, 2, 22050))
    wav_factory("in/silent.wav", np.zeros(22050 * 5, np.float32))
    (tmp_path / "in" / "corrupt.mp3").write_bytes(b"\xff\xfb" + bytes(500))
    r, results = predict_json(tmp_path / "in", "--checkpoint", trained_run / "best.pt")
    assert r.returncode == 1
    assert sorted(res["path"] for res in results) == sorted([str(mono), str(stereo)])
    errors = r.stderr.strip().splitlines()
    assert "Traceback" not in r.stderr and len(errors) == 3
    for name, problem in (("short.wav", "shorter than one"), ("silent.wav", "silent"), ("corrupt.mp3", "corrupt")):
        assert any(name in e and problem in e for e in errors), (name, errors)


def test_missing_path_empty_dir_and_unsupported(trained_run, tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.txt").write_text("not audio")
    r = run_script("predict.py", tmp_path / "nope.wav", tmp_path / "empty", tmp_path / "notes.txt",
                   "--checkpoint", trained_run / "best.pt")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 3
    assert "no such file" in lines[0] and "no audio files" in lines[1] and "unsupported format" in lines[2]


def test_no_checkpoint_says_how_to_train(tmp_path):
    r = run_script("predict.py", "x.wav", cwd=tmp_path)  # no runs/ here
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "train one" in r.stderr and len(r.stderr.strip().splitlines()) == 1


@needs_shared
def test_musicnn_tags_match_reference_taggram(tmp_path):
    out = tmp_path / "tags.json"
    r = run_script("predict.py", MINI / "wav" / "classical" / "classical.00000.wav", "--musicnn-tags", "--format", "json",
                   "--output", out, "--timeline")
    assert r.returncode == 0, r.stderr
    res = json.loads(out.read_text())[0]
    ref = np.load(SHARED / "musicnn_reference" / "classical.00000.npz")["MSD_musicnn/taggram"]
    assert len(res["tags"]) == 50 and len(res["timeline"]) == len(ref)
    assert np.abs(np.array(list(res["tags"].values())) - ref.mean(0)).max() <= 1e-3


@needs_shared
def test_csv_and_table_formats(trained_run):
    clip = MINI / "wav" / "metal" / "metal.00001.wav"
    r = run_script("predict.py", clip, "--checkpoint", trained_run / "best.pt", "--format", "csv")
    header, row = r.stdout.strip().splitlines()
    assert header.startswith("path,duration,top,") and row.startswith(str(clip))
    r = run_script("predict.py", clip, "--checkpoint", trained_run / "best.pt")
    assert r.returncode == 0 and str(clip) in r.stdout and "30.0 s" in r.stdout
