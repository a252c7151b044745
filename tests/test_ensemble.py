"""main.py --ensemble: the mean of clip probabilities of runs on the same clips, scored as a run."""
import json

import numpy as np
import pytest

from conftest import run_script
from genreclf import ensemble
from genreclf.errors import UserError


def write_run(folder, genres, clips, true, probs, seed=0):
    folder.mkdir(parents=True)
    probs = np.asarray(probs, dtype=float)
    (folder / "predictions.json").write_text(json.dumps({
        "genres": genres, "clip_ids": clips, "true": true, "pred": [genres[i] for i in probs.argmax(1)],
        "probs": probs.tolist()}))
    (folder / "config.json").write_text(json.dumps({"train": {"seed": seed}}))
    return folder


def write_experiment(folder, runs):
    """runs: {name: (genres, clips, true, probs)} -> an experiment folder as main.py --folds writes it."""
    for name, args in runs.items():
        write_run(folder / name, *args)
    (folder / "results.json").write_text(json.dumps({"folds": 2, "seeds": [0], "runs": [
        {"run": n, "seed": 0, "counted": True} for n in runs]}))
    return folder


CLIPS = ["a/1", "b/1", "c/1", "a/2"]
TRUE = ["a", "b", "c", "a"]


def test_runs_average_their_clip_probabilities_and_score_as_a_run(tmp_path):
    # A is right on 2 clips, B (genres and clips in another order) on 3; their mean on all 4
    a = write_run(tmp_path / "a", ["a", "b", "c"], CLIPS, TRUE,
                  [[.6, .3, .1], [.5, .4, .1], [.1, .2, .7], [.2, .7, .1]])
    b = write_run(tmp_path / "b", ["b", "c", "a"], CLIPS[::-1], TRUE[::-1],
                  [[.1, .1, .8], [.1, .8, .1], [.9, .05, .05], [.4, .2, .4]])  # a/2, c/1, b/1, a/1
    summary = ensemble.run([str(a), str(b)], tmp_path / "ens")
    pred = json.loads((tmp_path / "ens" / "predictions.json").read_text())
    assert pred["clip_ids"] == CLIPS and pred["genres"] == ["a", "b", "c"]
    np.testing.assert_allclose(pred["probs"], [[.5, .35, .15], [.275, .65, .075], [.1, .15, .75], [.5, .4, .1]])
    assert pred["pred"] == TRUE
    m = json.loads((tmp_path / "ens" / "metrics.json").read_text())
    assert m["test_clips"] == 4 and m["test_segment_accuracy"] is None and m["ensemble"] == [str(a), str(b)]
    assert m["test_clip_accuracy"] == 1.0 and m["test_macro_f1"] == 1.0
    assert summary["n"] == 1 and (tmp_path / "ens" / "results.md").exists()
    assert json.loads((tmp_path / "ens" / "ensemble.json").read_text())["members"] == [str(a), str(b)]


def test_experiments_join_fold_by_fold(tmp_path):
    g = ["a", "b", "c"]
    runs = lambda p: {"seed0-fold0": (g, CLIPS[:2], TRUE[:2], p[:2]), "seed0-fold1": (g, CLIPS[2:], TRUE[2:], p[2:])}  # noqa: E731
    x = write_experiment(tmp_path / "x", runs([[1, 0, 0], [1, 0, 0], [0, 0, 1], [1, 0, 0]]))
    y = write_experiment(tmp_path / "y", runs([[0, 0, 1], [0, 1, 0], [0, 0, 1], [0, 1, 0]]))
    summary = ensemble.run([str(x), str(y)], tmp_path / "xy")
    fold1 = json.loads((tmp_path / "xy" / "seed0-fold1" / "predictions.json").read_text())
    assert fold1["clip_ids"] == CLIPS[2:] and fold1["probs"] == [[0, 0, 1], [0.5, 0.5, 0]]
    assert summary["n"] == 2 and summary["folds"] == 2 and summary["pooled"]["clips"] == 4
    # an ensemble of experiments is an experiment: it joins again, here with itself fold by fold
    assert ensemble.run([str(tmp_path / "xy"), str(x)], tmp_path / "xyx")["n"] == 2


def test_runs_on_other_clips_or_of_another_kind_are_refused(tmp_path):
    g = ["a", "b", "c"]
    a = write_run(tmp_path / "a", g, CLIPS, TRUE, np.eye(3)[[0, 1, 2, 0]])
    other = write_run(tmp_path / "other", g, CLIPS[:3] + ["b/9"], TRUE[:3] + ["b"], np.eye(3)[[0, 1, 2, 1]])
    with pytest.raises(UserError, match=r"different test clips .*1 only in the first, 1 only in the second, e.g. a/2"):
        ensemble.run([str(a), str(other)], tmp_path / "e1")
    relabelled = write_run(tmp_path / "relabelled", g, CLIPS, ["a", "b", "c", "b"], np.eye(3)[[0, 1, 2, 0]])
    with pytest.raises(UserError, match="another true genre"):
        ensemble.run([str(a), str(relabelled)], tmp_path / "e2")
    exp = write_experiment(tmp_path / "exp", {"seed0-fold0": (g, CLIPS, TRUE, np.eye(3)[[0, 1, 2, 0]])})
    with pytest.raises(UserError, match="is an experiment of runs seed0-fold0, .* is a run"):
        ensemble.run([str(a), str(exp)], tmp_path / "e3")
    with pytest.raises(UserError, match="at least two"):
        ensemble.run([str(a)], tmp_path / "e4")
    # the CLI: one line, exit 2
    r = run_script("main.py", "--ensemble", a, other, "--out", tmp_path / "e5")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "different test clips" in r.stderr
    assert not (tmp_path / "e5").exists()


def test_experiments_with_other_seeds_join_on_the_runs_they_share(tmp_path, capsys):
    g = ["a", "b", "c"]
    one = {"seed0-fold0": (g, CLIPS, TRUE, np.eye(3)[[0, 1, 2, 0]])}
    x = write_experiment(tmp_path / "x", one)
    y = write_experiment(tmp_path / "y", {**one, "seed1-fold0": (g, CLIPS, TRUE, np.eye(3)[[0, 0, 0, 0]])})
    summary = ensemble.run([str(y), str(x)], tmp_path / "xy")
    assert [r["run"] for r in summary["runs"]] == ["seed0-fold0"] and "left out: seed1-fold0" in capsys.readouterr().err
    other = write_experiment(tmp_path / "other", {"seed2-fold0": one["seed0-fold0"]})
    with pytest.raises(UserError, match="an ensemble joins the same runs"):
        ensemble.run([str(x), str(other)], tmp_path / "e")


def test_the_recipe_table_reads_an_ensemble_row(tmp_path, monkeypatch):
    """An ensemble folder has no experiment.json of its own: its folds and groups are its members'."""
    import recipe_table

    g = ["a", "b", "c"]
    runs = lambda p: {"seed0-fold0": (g, CLIPS[:2], TRUE[:2], p[:2]), "seed0-fold1": (g, CLIPS[2:], TRUE[2:], p[2:])}  # noqa: E731
    for name, p in (("x", [[1, 0, 0], [1, 0, 0], [0, 0, 1], [1, 0, 0]]), ("y", [[0, 0, 1], [0, 1, 0], [0, 0, 1], [0, 1, 0]])):
        write_experiment(tmp_path / name, runs(p))
        (tmp_path / name / "experiment.json").write_text(json.dumps({"groups": None, "train": {"model": "q2"}}))
    monkeypatch.chdir(tmp_path)  # members are named as recipe_table names them: relative to where it runs
    ensemble.run(["x", "y"], "x+y")
    pooled = recipe_table.seed0(tmp_path, "x+y")
    assert pooled["clip_ids"] == CLIPS and pooled["pred"] == ["a", "a", "c", "a"] and len(pooled["groups"]) == 4  # ties: the first genre


def test_the_recipe_table_resumes_a_row_stopped_midway(tmp_path, monkeypatch):
    """A row with experiment.json but no results.json (Ctrl+C, a reboot) goes on with main.py --resume,
    not from scratch, and its timing says so."""
    import subprocess

    import recipe_table

    (tmp_path / "q2-old").mkdir()
    (tmp_path / "q2-old" / "experiment.json").write_text("{}")
    calls = []
    monkeypatch.setattr(subprocess, "run", lambda cmd, **kw: calls.append(cmd) or subprocess.CompletedProcess(cmd, 0))
    recipe_table.run_row("q2-old", tmp_path / "data", tmp_path)
    assert calls[-1][1:] == ["main.py", "--resume", str(tmp_path / "q2-old")]
    assert json.loads((tmp_path / "q2-old" / "timing.json").read_text())["resumed"] is True
