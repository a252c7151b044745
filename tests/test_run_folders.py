"""What main.py does with the folder it trains into: an earlier run or experiment is never trained
over, a fresh training leaves no test file of another model, a failed start leaves no folder; and
the lines a run and an ensemble print about their results."""
import argparse
import json

import pytest

from genreclf import experiment, rundata
from genreclf.config import add_flags
from genreclf.errors import UserError
from genreclf.experiment import check_new_folder, dataset_command, shared_artists
from genreclf.featurizers import FEATURIZERS
from genreclf.train import TrainConfig
from genreclf.ensemble import summary_line
from main import removed_if_failed


@pytest.mark.parametrize("files, words", [
    ({"best.pt": ""}, ["holds a run already (its best.pt)", "--resume", "--do_test --out", "another --out", "delete"]),
    ({"metrics.json": "{}", "predictions.json": "{}"}, ["its metrics.json", "--resume"]),
    ({"experiment.json": "{}"}, ["holds an experiment", "--resume"]),
    ({"metrics.json": json.dumps({"diverged": True})}, ["diverged", "lower --lr", "another --out"]),
])
def test_a_folder_holding_a_run_is_not_trained_over(tmp_path, files, words):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(UserError) as e:
        check_new_folder(tmp_path)
    assert str(tmp_path) in str(e.value) and "\n" not in str(e.value)
    for w in words:
        assert w in str(e.value)


def test_a_new_or_failed_start_folder_may_be_trained_into(tmp_path):
    check_new_folder(tmp_path / "new")
    (tmp_path / "train.log").write_text("")
    (tmp_path / ".lock").write_text("")
    check_new_folder(tmp_path)


class Clips(list):
    clip_ids = ()


def test_a_fresh_training_removes_the_test_files_of_an_earlier_model(tmp_path, monkeypatch):
    """experiment.run training anew in a folder with an old test (an experiment's resume retrains a
    run that never finished an epoch): predictions.json, confusion.png, results.* and the test_*
    metrics of the old model are gone once training starts."""
    for name in experiment.TEST_FILES:
        (tmp_path / name).write_text("old")
    (tmp_path / "metrics.json").write_text(json.dumps({"test_clip_accuracy": 0.9}))
    parts = {"train": ["a/1"], "val": ["a/2"], "test": ["a/3"]}
    data = experiment.Data({}, {}, ["a"], {}, Clips(), Clips(), Clips())
    monkeypatch.setattr(experiment, "load_data", lambda *a, **k: (data, {"parts": parts, "genres": ["a"]}))
    monkeypatch.setattr(rundata, "write", lambda *a: None)

    def fit(cfg, data, run_dir, resume=False):
        assert not any((run_dir / name).exists() for name in experiment.TEST_FILES)
        return {"history": [], "best": 0.5, "epoch": 1}
    monkeypatch.setattr(experiment, "fit", fit)
    metrics = experiment.run(TrainConfig(device="cpu"), {}, tmp_path, do_train=True, do_test=False)
    assert "test_clip_accuracy" not in metrics
    assert "test_clip_accuracy" not in json.loads((tmp_path / "metrics.json").read_text())


def test_a_failed_start_removes_only_a_folder_it_made_and_left_empty(tmp_path):
    new, kept, trained = tmp_path / "new", tmp_path / "kept", tmp_path / "trained"
    kept.mkdir()
    for folder in (new, kept, trained):
        with pytest.raises(UserError), removed_if_failed(folder):
            folder.mkdir(exist_ok=True)
            (folder / "train.log").write_text("--folds 10: too few")
            if folder is trained:
                (folder / "best.pt").write_text("")
            raise UserError("--folds 10: too few")
    assert not new.exists() and kept.exists() and (trained / "best.pt").exists()
    with pytest.raises(KeyboardInterrupt), removed_if_failed(new):  # Ctrl+C is no failure: kept
        new.mkdir()
        raise KeyboardInterrupt
    assert new.exists()


def test_the_missing_cache_error_gives_the_dataset_command(tmp_path):
    p = argparse.ArgumentParser()
    p.add_argument("--data-dir")
    p.add_argument("--work-dir")
    for featurizer in FEATURIZERS.values():
        add_flags(p, featurizer.Spec)
    args = p.parse_args(["--data-dir", "my data", "--layers", "max_pool,penultimate", "--no-remove-dc"])
    assert dataset_command(args, "musicnn") == ("python dataset.py --data-dir 'my data' --features musicnn --no-remove-dc "
                                                "--layers max_pool,penultimate")
    feats = {n: (lambda f=f: f.from_args(args)) for n, f in FEATURIZERS.items()}
    with pytest.raises(UserError, match="no mel cache .* make it with: python dataset.py --data-dir 'my data'"):
        experiment.open_caches(["mel"], feats, tmp_path / "cache", tmp_path, make=lambda n: dataset_command(args, n))
    with pytest.raises(UserError, match="--data-dir .*nothere: no such folder"):
        experiment.open_caches(["mel"], feats, tmp_path / "cache", tmp_path / "nothere")


def test_test_clips_sharing_an_artist_with_training_are_counted(tmp_path):
    groups = tmp_path / "g.csv"
    groups.write_text("a/1.wav,x\na/2.wav,y\na/3.wav,x\n")
    predictions = {"clip_ids": ["a/3", "a/4"], "groups": ["x", "clip:a/4"]}
    assert shared_artists(predictions, ["a/1", "a/2"], groups) == 1
    assert shared_artists(predictions, ["a/2"], groups) == 0


def test_an_ensemble_says_where_it_wrote_and_what_it_scored(tmp_path):
    (tmp_path / "predictions.json").write_text(json.dumps({"groups": ["x", "y"]}))
    row = {"run": "ens", "test_clips": 2, "test_clip_accuracy": 0.5, "test_clip_accuracy_ci95": [0.0, 1.0],
           "test_ci_resampled": "clips", "test_artists": None, "test_macro_f1": 0.333}
    out = summary_line({"n": 1, "runs": [row]}, tmp_path)
    assert str(tmp_path) in out and "2 clips, test clip accuracy 0.500 (95% CI 0.000-1.000" in out
    assert "2 artists (each test clip its own artist)" in out and "macro-F1 0.333" in out


def test_clips_dataset_py_skipped_are_counted_in_one_line(tmp_path):
    raw = {"splits": {"train": [{"id": "a/1"}, {"id": "a/2"}]}, "skipped": {"a/3.wav": "a/3.wav: too short"}}
    lines = []
    rundata.skipped({"mel": rundata.Index(tmp_path, raw, "")}, say=lines.append)
    assert lines == ['1 of 3 clips of the split left out: dataset.py could not use their files (index.json\'s '
                     '"skipped"), e.g. a/3.wav: too short']
    rundata.skipped({"mel": rundata.Index(tmp_path, {**raw, "skipped": {}}, "")}, say=lines.append)
    assert len(lines) == 1
