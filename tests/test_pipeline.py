"""The scripts end to end on gtzan_mini, and their one-line errors on bad input."""
import json
import os

import numpy as np
import pytest
import soundfile as sf

from conftest import GENRES3, MINI, needs_shared, run_script

GENRES8 = "classical,country,disco,hiphop,jazz,metal,pop,reggae"


def assert_one_line_error(r, *words):
    assert r.returncode == 2, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), r.stderr
    for w in words:
        assert w in lines[0]


@needs_shared
def test_end_to_end_eight_genres(tmp_path):
    work, run = tmp_path / "work", tmp_path / "run"
    common = ["--data-dir", MINI, "--work-dir", work]
    r = run_script("split_data.py", *common, "--split", "random", "--genres", GENRES8, "--val-per-class", 1, "--test-per-class", 2)
    assert r.returncode == 0, r.stderr
    assert "| **total** | 32 | 8 | 16 |" in r.stdout
    r = run_script("dataset.py", *common, "--augment", "noise", "--segment", 4, "--workers", 2)
    assert r.returncode == 0, r.stderr
    caches = list((work / "cache").glob("mel-*"))
    assert len(caches) == 1
    assert np.load(caches[0] / "clips" / "jazz" / "jazz.00000.orig.npy").shape == (7, 128, 172)
    r = run_script("main.py", *common, "--model", "base2dcnn", "--epochs", 1, "--do_train", "--do_test", "--out", run)
    assert r.returncode == 0, r.stderr
    first = json.loads((run / "metrics.json").read_text())["test_clip_accuracy"]
    r = run_script("main.py", *common, "--do_test", "--out", run)  # test only: the model comes from best.pt
    assert r.returncode == 0, r.stderr
    for name in ("config.json", "train.log", "metrics.json", "best.pt", "last.pt", "confusion.png", "results.json", "results.md"):
        assert (run / name).exists(), name
    m = json.loads((run / "metrics.json").read_text())
    res = json.loads((run / "results.json").read_text())  # one run: its accuracy and CI, no spread over one number
    assert res["test_clip_accuracy"] == m["test_clip_accuracy"] and "test_clip_accuracy_std" not in res
    lo, hi = res["test_clip_accuracy_ci95"]
    assert lo <= m["test_clip_accuracy"] <= hi
    assert m["genres"] == sorted(GENRES8.split(","))
    assert 0 <= m["test_clip_accuracy"] <= 1 and 0 <= m["test_segment_accuracy"] <= 1 and 0 <= m["test_macro_f1"] <= 1
    assert np.array(m["confusion_matrix"]).sum() == 16 and m["test_segments"] == 16 * 7
    assert len(m["history"]) == 1 and m["test_clip_accuracy"] == first
    import torch
    ckpt = torch.load(run / "best.pt", weights_only=False)
    assert ckpt["model"] == "base2dcnn" and ckpt["features"]["mel"]["n_mels"] == 128 and ckpt["genres"] == m["genres"]


@needs_shared
def test_corrupt_file_is_named_skipped_and_run_completes(tmp_path):
    data = tmp_path / "data"
    for g in ("jazz", "metal"):
        (data / "wav" / g).mkdir(parents=True)
        for i in range(3):  # links, not copies: the audio stays in ../shared
            os.symlink(MINI / "wav" / g / f"{g}.0000{i}.wav", data / "wav" / g / f"{g}.0000{i}.wav")
    (data / "wav" / "jazz" / "jazz.00054.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt " + bytes(40))
    sf.write(data / "wav" / "jazz" / "jazz.00055.wav", np.zeros(0, np.float32), 22050)  # a header, no samples
    (data / "wav" / "metal" / "metal.00009.m4a").write_bytes(b"not decoded")  # audio we do not read
    common = ["--data-dir", data, "--work-dir", tmp_path / "work"]
    r = run_script("split_data.py", *common, "--split", "random", "--val-per-class", 1, "--test-per-class", 1)
    assert r.returncode == 0, r.stderr
    # at split time: the unreadable header and the unsupported format, each named, and counted
    assert "jazz.00054.wav: left out: corrupt or unreadable" in r.stdout and "metal.00009.m4a: left out" in r.stdout
    assert "2 audio file(s) left out" in r.stdout
    r = run_script("dataset.py", *common)
    assert r.returncode == 0, r.stderr
    assert "jazz.00055.wav" in r.stdout and "skipped 1" in r.stdout  # no samples: found when decoded
    index = json.loads(next((tmp_path / "work" / "cache").glob("mel-*/index.json")).read_text())
    assert len(index["skipped"]) == 1
    assert sum(len(v) for v in index["splits"].values()) == 6  # 9 files: one unreadable, one empty, one m4a


@needs_shared
@pytest.mark.parametrize("model, epochs", [("baseline", 2), ("q1", 1), ("q2", 2), ("resnet18", 1), ("resnet34_musicnn", 1)])
def test_each_family_trains_on_mini(mini3, tmp_path, model, epochs):
    r = run_script("main.py", "--data-dir", MINI, "--work-dir", mini3, "--model", model, "--epochs", epochs,
                   "--batch-size", 16, "--do_train", "--do_test", "--out", tmp_path / "run")
    assert r.returncode == 0, r.stderr
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert m["genres"] == sorted(GENRES3.split(",")) and m["test_clips"] == 6
    if model == "q2":  # test only, without --model: best.pt names the model and so the musicnn cache
        r = run_script("main.py", "--data-dir", MINI, "--work-dir", mini3, "--do_test", "--out", tmp_path / "run")
        assert r.returncode == 0, r.stderr


@needs_shared
def test_folds_and_seeds_report_mean_and_std(mini3, clip_groups, tmp_path):
    r = run_script("main.py", "--data-dir", MINI, "--work-dir", mini3, "--model", "baseline", "--epochs", 1,
                   "--folds", 3, "--groups", clip_groups, "--seeds", "0,1", "--out", tmp_path / "cv")
    assert r.returncode == 0, r.stderr
    res = json.loads((tmp_path / "cv" / "results.json").read_text())
    assert res["n"] == 6 and res["folds"] == 3
    accs = [run["test_clip_accuracy"] for run in res["runs"]]
    assert res["test_clip_accuracy_mean"] == pytest.approx(np.mean(accs))
    assert res["test_clip_accuracy_std"] == pytest.approx(np.std(accs, ddof=1))
    assert "mean ± std" in (tmp_path / "cv" / "results.md").read_text()
    # every clip is tested exactly once per seed
    tested = [c for k in range(3) for c in json.loads((tmp_path / "cv" / f"seed0-fold{k}" / "config.json").read_text())["assignment"]["test"]]
    assert len(tested) == len(set(tested)) == 21


@needs_shared
def test_fault_filtered_split_end_to_end(tmp_path):
    common = ["--data-dir", MINI, "--work-dir", tmp_path]
    r = run_script("split_data.py", *common, "--split", "fault-filtered")
    assert r.returncode == 0 and "skipped" in r.stdout
    # gtzan_mini holds clips 00000-00006 only: in the filtered lists blues has none for training
    assert "warning: genre blues has no train clips (0 train / 7 val / 1 test)" in r.stderr
    assert run_script("dataset.py", *common, "--workers", 2).returncode == 0
    train = ["main.py", *common, "--model", "baseline", "--epochs", 1, "--do_train", "--do_test", "--out", tmp_path / "run"]
    assert_one_line_error(run_script(*train), "genre blues has no train clips", "genre rock has no val clips")
    assert run_script("split_data.py", *common, "--split", "fault-filtered", "--genres", "disco,jazz,metal").returncode == 0
    assert run_script("dataset.py", *common, "--workers", 2).returncode == 0  # cached clips, a new index
    r = run_script(*train)
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["genres"] == ["disco", "jazz", "metal"]


def test_missing_data_dir(tmp_path):
    assert_one_line_error(run_script("split_data.py", "--data-dir", tmp_path / "nope", "--split", "random"), "does not exist")


def test_dataset_without_audio_is_one_line(tmp_path, wav_factory):
    """dataset.py before the audio is there: one line, not a line per listed clip and exit 0."""
    (tmp_path / "split").mkdir()
    for part in ("train", "val", "test"):
        (tmp_path / "split" / f"{part}.txt").write_text(f"jazz/jazz.0000{len(part)}.wav\n")
    assert_one_line_error(run_script("dataset.py", "--data-dir", tmp_path), "has no wav/ folder")
    (tmp_path / "wav" / "jazz").mkdir(parents=True)  # the folder exists but holds none of the clips
    r = run_script("dataset.py", "--data-dir", tmp_path)
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]  # beside the progress bar
    assert r.returncode == 2 and "Traceback" not in r.stderr and len(errors) == 1, r.stderr
    assert "none of the 3 clips of the split could be used" in errors[0] and "no such file" in errors[0]
    assert not list(tmp_path.glob("cache/*/index.json"))  # no empty cache for main.py to read


def test_empty_genre_folder(tmp_path):
    (tmp_path / "wav" / "jazz").mkdir(parents=True)
    assert_one_line_error(run_script("split_data.py", "--data-dir", tmp_path, "--split", "random"), "jazz", "no audio files")


def test_unknown_model_and_split_are_refused():
    for script, flag in (("main.py", "--model"), ("split_data.py", "--split")):
        r = run_script(script, flag, "bogus")
        assert r.returncode == 2 and "invalid choice: 'bogus'" in r.stderr and "Traceback" not in r.stderr


@needs_shared
def test_do_test_without_checkpoint(mini3, tmp_path):
    r = run_script("main.py", "--data-dir", MINI, "--work-dir", mini3, "--do_test", "--out", tmp_path / "empty")
    assert_one_line_error(r, "needs a trained checkpoint")


@needs_shared
def test_checkpoint_with_other_feature_spec(mini3, tmp_path):
    common = ["--data-dir", MINI, "--work-dir", mini3]
    assert run_script("main.py", *common, "--model", "baseline", "--epochs", 1, "--out", tmp_path / "run").returncode == 0
    assert run_script("dataset.py", *common, "--n-mels", 64).returncode == 0
    r = run_script("main.py", *common, "--model", "baseline", "--do_test", "--n-mels", 64, "--out", tmp_path / "run")
    assert_one_line_error(r, "trained on mel features", "n_mels")


@needs_shared
def test_missing_cache_says_which_command(tmp_path):
    r = run_script("main.py", "--data-dir", MINI, "--work-dir", tmp_path, "--model", "q2")
    assert_one_line_error(r, "no musicnn cache", "dataset.py")
