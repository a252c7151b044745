"""Evaluation you can trust: artist-grouped folds and splits, runs that pin their data, Ctrl+C and
torchrun over whole experiments, bootstrap CIs and compare.py, --split auto, --device on resume."""
import json
import shutil
import subprocess
import sys

import pytest
from scipy.stats import binomtest

from conftest import GENRES3, MINI, REPO, SHARED, ctrl_c_after_first_epoch, needs_shared, run_script, sine
from genreclf import checkpoint, splits
from genreclf.groups import grouped_folds, groups_for, read_gtzan_index
from genreclf.runlog import read_history

DEV = SHARED / "gtzan_dev"
needs_dev = pytest.mark.skipif(not DEV.is_dir(), reason="../shared/data/gtzan_dev is absent")


def one_line_error(r, *words):
    assert r.returncode != 0 and "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    for w in words:
        assert w in lines[0], lines[0]


@pytest.fixture
def combined(tmp_path):
    """gtzan_mini's WAVs + gtzan_dev's FLACs (187 real clips, 10 genres) as symbolic links."""
    if not DEV.is_dir():
        pytest.skip("../shared/data/gtzan_dev is absent")
    data = tmp_path / "gtzan187"
    for src in list(MINI.glob("wav/*/*.wav")) + list(DEV.glob("wav/*/*.flac")):
        (data / "wav" / src.parent.name).mkdir(parents=True, exist_ok=True)
        (data / "wav" / src.parent.name / src.name).symlink_to(src)
    return data


def artists(ids):
    known = read_gtzan_index()
    return {known.get(i, f"clip:{i}") for i in ids}


def test_gtzan_mini_alone_has_four_single_artist_genres():
    known = read_gtzan_index()
    single = [g for g in splits.GENRES_10 if len({known.get(f"{g}/{g}.{i:05d}") for i in range(7)}) == 1]
    assert single == ["blues", "classical", "reggae", "rock"]
    assert sum(a == "Bob Marley" for c, a in known.items() if c.startswith("reggae/")) == 35


@needs_dev
def test_artist_grouped_folds_never_share_an_artist(combined):
    ids = list(splits.scan(combined))
    assert len(ids) == 187
    genres = [splits.genre_of(i) for i in ids]
    groups, source = groups_for(ids)
    assert "artists.txt" in source
    notes = []
    for seed in (0, 1):
        folds = grouped_folds(ids, genres, groups, 5, seed, say=notes.append)
        assert sorted(c for f in folds for c in f["test"]) == sorted(ids)  # each clip tested once
        for f in folds:
            train, val, test = (artists(f[p]) for p in ("train", "val", "test"))
            assert f["train"] and f["val"] and f["test"]
            assert not train & test and not val & test and not train & val
    assert all("artist group" in n for n in notes)


@needs_dev
def test_split_data_group_by_artist_makes_artist_disjoint_parts(combined, tmp_path):
    r = run_script("split_data.py", "--data-dir", combined, "--work-dir", tmp_path / "w", "--split", "random",
                   "--group-by", "artist")
    assert r.returncode == 0, r.stderr
    assert "shared between parts: 0" in r.stdout
    parts = splits.load_split(tmp_path / "w" / "split")
    sets = [artists([splits.clip_id(p) for p in parts[k]]) for k in splits.PARTS]
    assert not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])
    r = run_script("split_data.py", "--data-dir", combined, "--work-dir", tmp_path / "v", "--split", "random")
    assert "shared between parts: 0" not in r.stdout and "shared between parts:" in r.stdout  # by track: leaky
    r = run_script("split_data.py", "--data-dir", MINI, "--work-dir", tmp_path / "ff", "--split", "fault-filtered")
    assert "shared between parts: 0" in r.stdout


def test_groups_file_errors_and_use(wav_factory, tmp_path):
    for g in ("x", "y"):
        for i in range(6):
            wav_factory(f"d/wav/{g}/song {i}.wav", sine(220, 0.2, 8000), sr=8000)
    common = ["split_data.py", "--data-dir", tmp_path / "d", "--work-dir", tmp_path / "w", "--split", "random",
              "--group-by", "artist", "--test-per-class", 2, "--val-per-class", 1]
    one_line_error(run_script(*common, "--groups", tmp_path / "none.csv"), "none.csv", "does not exist")
    (tmp_path / "bad.csv").write_text("path,group\nx/song 0.wav\n")
    one_line_error(run_script(*common, "--groups", tmp_path / "bad.csv"), "bad.csv", "line 2")
    (tmp_path / "short.csv").write_text("x/song 0.wav,a\n")  # a clip it does not list is its own group, counted
    r = run_script(*common, "--groups", tmp_path / "short.csv")
    assert r.returncode == 0 and "(11 of the 12 clips are not in it: each is its own group, e.g. x/song 1)" in r.stdout, r.stderr
    # two artists per genre, three songs each: each artist on one side only
    (tmp_path / "ok.csv").write_text("path,group\n" + "".join(f"{g}/song {i}.wav,{g}{i // 3}\n" for g in "xy" for i in range(6)))
    r = run_script(*common, "--groups", tmp_path / "ok.csv")
    assert r.returncode == 0, r.stderr
    assert "shared between parts: 0" in r.stdout


def copy_work(mini3, tmp_path):
    """A private copy of the mini3 work dir (splits and caches, no audio): this test re-splits it."""
    work = tmp_path / "work"
    shutil.copytree(mini3, work, symlinks=True)
    return work


@needs_shared
def test_fold_retest_and_resume_use_pinned_clips(mini3, clip_groups, tmp_path):
    work = copy_work(mini3, tmp_path)
    common = ["--data-dir", MINI, "--work-dir", work]
    cv = tmp_path / "cv"
    r = run_script("main.py", *common, "--model", "baseline", "--epochs", 2, "--folds", 3, "--groups", clip_groups, "--out", cv)
    assert r.returncode == 0, r.stderr
    fold = cv / "seed0-fold0"
    pinned = json.loads((fold / "data.json").read_text())
    before = json.loads((fold / "metrics.json").read_text())
    assert set(pinned["parts"]) == {"train", "val", "test"} and pinned["caches"]["mel"]["index_sha256"]
    assert all(v == ["orig"] for vs in pinned["versions"].values() for v in vs.values())  # k-fold: originals only
    # re-split and re-extract: the cache's own split changes, the fold's pinned clips must not
    assert run_script("split_data.py", *common, "--split", "random", "--genres", GENRES3, "--seed", 7,
                      "--val-per-class", 2, "--test-per-class", 3).returncode == 0
    assert run_script("dataset.py", *common, "--workers", 1).returncode == 0
    r = run_script("main.py", *common, "--do_test", "--out", fold)
    assert r.returncode == 0, r.stderr
    after = json.loads((fold / "metrics.json").read_text())
    for key in ("test_clip_accuracy", "test_clip_accuracy_ci95", "test_segment_accuracy", "confusion_matrix", "test_loss"):
        assert after[key] == before[key], key
    assert json.loads((fold / "predictions.json").read_text())["clip_ids"] == pinned["parts"]["test"]
    r = run_script("main.py", "--resume", fold)
    assert r.returncode == 0, r.stderr
    n_train, n_val = len(pinned["parts"]["train"]), len(pinned["parts"]["val"])
    assert f"({n_train} / {n_val} clips)" in (fold / "train.log").read_text().splitlines()[-1] or \
        f"({n_train} / {n_val} clips)" in (fold / "train.log").read_text()
    # a pinned clip gone from the cache: one line naming it, for --resume and --do_test alike
    index_path = next((work / "cache").glob("mel-*/index.json"))
    index = json.loads(index_path.read_text())
    gone = pinned["parts"]["test"][0]
    index["splits"] = {p: [c for c in clips if c["id"] != gone] for p, clips in index["splits"].items()}
    index_path.write_text(json.dumps(index))
    one_line_error(run_script("main.py", "--resume", fold), gone, "data.json")
    one_line_error(run_script("main.py", *common, "--do_test", "--out", fold), gone)


@needs_shared
def test_ctrl_c_stops_the_experiment_and_resume_finishes_it(mini3, clip_groups, tmp_path):
    cv = tmp_path / "cv"
    log = cv / "seed0-fold1" / "train.log"
    code, out, err = ctrl_c_after_first_epoch(log, "--data-dir", MINI, "--work-dir", mini3, "--model", "baseline",
                                              "--epochs", 6, "--folds", 3, "--groups", clip_groups, "--out", cv)
    assert code == 130 and "Traceback" not in err, err
    res = json.loads((cv / "results.json").read_text())
    assert [r["run"] for r in res["runs"]] == ["seed0-fold0", "seed0-fold1"]
    assert res["runs"][0]["counted"] and not res["runs"][1]["counted"] and res["runs"][1]["interrupted"]
    assert res["n"] == 1 and "test_clip_accuracy_mean" not in res
    checkpoint.load_model(cv / "seed0-fold1" / "best.pt")
    assert not (cv / "seed0-fold2").exists()
    fold0 = (cv / "seed0-fold0" / "metrics.json").read_text()
    r = run_script("main.py", "--resume", cv)
    assert r.returncode == 0, r.stderr
    res = json.loads((cv / "results.json").read_text())
    assert res["n"] == 3 and all(r["counted"] for r in res["runs"])
    assert (cv / "seed0-fold0" / "metrics.json").read_text() == fold0  # finished runs are kept as they were
    assert len(json.loads((cv / "seed0-fold1" / "metrics.json").read_text())["history"]) == 6
    assert "resumed" in log.read_text()
    assert [r["epoch"] for r in read_history(cv / "seed0-fold1")] == list(range(1, 7))  # history.csv: each epoch once
    assert (cv / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # the 3 folds overlaid


@needs_shared
def test_torchrun_with_folds_and_seeds(mini3, clip_groups, tmp_path):
    cv = tmp_path / "cv"
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", str(REPO / "main.py"),
                        "--data-dir", str(MINI), "--work-dir", str(mini3), "--model", "baseline", "--epochs", "1",
                        "--folds", "2", "--groups", str(clip_groups), "--seeds", "0,1", "--out", str(cv)], cwd=REPO, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads((cv / "results.json").read_text())
    assert res["n"] == 4
    for run in res["runs"]:
        hashes = json.loads((cv / run["run"] / "metrics.json").read_text())["rank_weight_hashes"]
        assert len(hashes) == 2 and hashes[0] == hashes[1]
        assert len(checkpoint.read(cv / run["run"] / "last.pt")["rng"]["ranks"]) == 2  # each rank's RNG states


def write_predictions(folder, ids, true, pred, genres=None):
    folder.mkdir(parents=True, exist_ok=True)
    genres = genres or sorted(set(true))
    (folder / "predictions.json").write_text(json.dumps(
        {"genres": genres, "clip_ids": ids, "true": true, "pred": pred,
         "probs": [[float(g == p) for g in genres] for p in pred]}))


def test_compare_paired_difference_mcnemar_and_refusal(tmp_path):
    ids = [f"g/c{i}" for i in range(20)]
    true = ["a"] * 10 + ["b"] * 10
    pred_a = list(true)
    pred_b = list(true)
    for i in (0, 1, 2, 3, 4, 5, 12):  # B wrong on 7 clips (6 of genre a), A wrong on clip 12 as well
        pred_b[i] = "b" if true[i] == "a" else "a"
    pred_a[12] = "a"
    write_predictions(tmp_path / "A", ids, true, pred_a)
    write_predictions(tmp_path / "B", ids, true, pred_b)
    r = run_script("compare.py", tmp_path / "A", tmp_path / "B", "--json")
    assert r.returncode == 0, r.stderr
    c = json.loads(r.stdout)
    assert c["accuracy_a"] == 0.95 and c["accuracy_b"] == 0.65 and c["difference"] == pytest.approx(0.30)
    assert c["only_a_right"] == 6 and c["only_b_right"] == 0
    assert c["mcnemar_exact_p"] == pytest.approx(binomtest(6, 6, 0.5).pvalue)
    lo, hi = c["difference_ci95"]
    assert 0 < lo < 0.30 < hi
    assert c["recall"]["a"]["b"] == 0.4 and c["recall"]["a"]["a"] == 1.0
    write_predictions(tmp_path / "C", ids[1:] + ["g/other"], true, pred_a)
    one_line_error(run_script("compare.py", tmp_path / "A", tmp_path / "C"), "different test clips", "g/c0")
    # an experiment folder pools its runs' test predictions
    exp = tmp_path / "exp"
    write_predictions(exp / "seed0-fold0", ids[:10], true[:10], pred_a[:10], ["a", "b"])
    write_predictions(exp / "seed0-fold1", ids[10:], true[10:], pred_a[10:], ["a", "b"])
    (exp / "results.json").write_text(json.dumps({"runs": [{"run": "seed0-fold0", "counted": True},
                                                           {"run": "seed0-fold1", "counted": True}]}))
    r = run_script("compare.py", exp, tmp_path / "B", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["accuracy_a"] == 0.95
    write_predictions(exp / "seed0-fold1", ids[10:], true[10:], pred_a[10:], ["b", "a"])  # another experiment's run
    one_line_error(run_script("compare.py", exp, tmp_path / "B"), "seed0-fold1", "genres b, a")


def write_experiment(folder, runs, ids, true, pred, genres=("a", "b")):
    """An experiment folder whose `runs` all predicted `pred` (probabilities 0.9 on it)."""
    for run in runs:
        (folder / run).mkdir(parents=True, exist_ok=True)
        (folder / run / "predictions.json").write_text(json.dumps(
            {"genres": list(genres), "clip_ids": ids, "true": true, "pred": pred,
             "probs": [[0.9 if g == p else 0.1 for g in genres] for p in pred]}))
    (folder / "results.json").write_text(json.dumps({"runs": [{"run": r, "seed": i, "counted": True} for i, r in enumerate(runs)]}))


def test_seeds_are_not_clips(tmp_path):
    """Issue 18's repro: 60 clips, identical predictions on every seed. Keyed seed<S>:<clip>, 3 seeds
    made "180 test clips", p = 0.0079 and CI +0.028 to +0.167; each clip once, 3 seeds are 1."""
    from compare import compare
    from genreclf import results

    ids, true = [f"x/c{i:02d}" for i in range(60)], ["a", "b"] * 30
    flip = {"a": "b", "b": "a"}
    pred_a = [flip[t] if 10 <= i < 14 or i >= 50 else t for i, t in enumerate(true)]  # A alone right on 10, B on 4
    pred_b = [flip[t] if i < 10 or i >= 50 else t for i, t in enumerate(true)]
    out = {}
    for seeds in ([0], [0, 1, 2]):
        runs = [f"seed{s}" for s in seeds]
        write_experiment(tmp_path / f"{len(seeds)}" / "A", runs, ids, true, pred_a)
        write_experiment(tmp_path / f"{len(seeds)}" / "B", runs, ids, true, pred_b)
        out[len(seeds)] = compare(results.load(tmp_path / f"{len(seeds)}" / "A"),
                                  results.load(tmp_path / f"{len(seeds)}" / "B"), "A", "B")
    assert out[3]["clips"] == 60 and out[3]["runs_per_clip"] == {"a": [3], "b": [3]}
    assert set(results.load(tmp_path / "3" / "A", seed=1)["runs_per_clip"]) == {1}  # compare.py --seed: that seed's runs
    assert out[3]["mcnemar_exact_p"] == out[1]["mcnemar_exact_p"] == pytest.approx(0.1796, abs=1e-4)
    assert out[3]["difference_ci95"] == out[1]["difference_ci95"] == pytest.approx([-0.017, 0.217], abs=1e-3)
    # seeds that disagree: a clip's probabilities are averaged, then argmax (not a vote of 3 clips)
    write_experiment(tmp_path / "mixed", ["seed0"], ids[:2], ["a", "a"], ["a", "b"])
    p = json.loads((tmp_path / "mixed" / "seed0" / "predictions.json").read_text())
    p.update(pred=["b", "b"], probs=[[0.45, 0.55], [0.2, 0.8]])
    (tmp_path / "mixed" / "seed1").mkdir()
    (tmp_path / "mixed" / "seed1" / "predictions.json").write_text(json.dumps(p))
    (tmp_path / "mixed" / "results.json").write_text(json.dumps({"runs": [{"run": "seed0"}, {"run": "seed1"}]}))
    pooled = results.load(tmp_path / "mixed")
    assert pooled["pred"] == ["a", "b"] and pooled["probs"][0] == pytest.approx([0.675, 0.325])


def test_pooled_folds_count_unknown_artists_over_all_their_clips(tmp_path):
    """Folds pooled into one prediction per clip say how many of *all* the clips have no known artist,
    not how many the first fold had."""
    from genreclf import results
    from genreclf.groups import groups_for

    folds = {"fold0": ["classical/classical.00059", "classical/classical.00000"],
             "fold1": ["country/country.00002", "country/country.00030"]}  # three of the four: unknown artist
    for run, ids in folds.items():
        write_experiment(tmp_path, [run], ids, ["a", "b"], ["a", "b"])
        p = json.loads((tmp_path / run / "predictions.json").read_text())
        p["groups"], p["groups_from"] = groups_for(ids)
        (tmp_path / run / "predictions.json").write_text(json.dumps(p))
    (tmp_path / "results.json").write_text(json.dumps({"runs": [{"run": r} for r in folds]}))
    assert "1 clips of unknown artist" in groups_for(folds["fold0"])[1]
    assert "3 clips of unknown artist" in results.load(tmp_path)["groups_from"]


def test_artist_bootstrap_is_wider_when_an_artists_clips_move_together():
    """40 clips: one artist's 10 all wrong together, 30 clips of 30 other artists (20 right)."""
    from genreclf.stats import bootstrap_ci, resampled

    right = [False] * 10 + [True] * 20 + [False] * 10
    groups = ["one artist"] * 10 + [f"artist {i}" for i in range(30)]
    by_clip, by_artist = bootstrap_ci(right), bootstrap_ci(right, groups)
    assert by_artist[1] - by_artist[0] > 1.2 * (by_clip[1] - by_clip[0])
    assert by_artist[0] < 0.5 < by_artist[1] and by_clip[0] < 0.5 < by_clip[1]
    assert resampled(groups) == ("artists", 31) and resampled([f"clip:{i}" for i in range(40)]) == ("clips", None)
    assert bootstrap_ci(right, [f"clip:{i}" for i in range(40)]) == by_clip  # no artists known: the clip bootstrap


def test_compare_says_how_it_counted_and_names_the_test_command(tmp_path, capsys, monkeypatch):
    import compare
    from genreclf import results
    from genreclf.errors import UserError

    ids = [f"reggae/reggae.{i:05d}" for i in range(7)] + [f"rock/rock.{i:05d}" for i in range(7)]
    true = ["reggae"] * 7 + ["rock"] * 7
    write_experiment(tmp_path / "A", ["seed0-fold0", "seed1-fold0"], ids, true, true, ("reggae", "rock"))
    write_predictions(tmp_path / "B", ids, true, ["rock"] * 14)
    monkeypatch.setattr(sys, "argv", ["compare.py", str(tmp_path / "A"), str(tmp_path / "B")])
    compare.main()
    out = capsys.readouterr().out
    assert "14 test clips, the same in both, each counted once (A: probabilities averaged over its 2 seeds; " \
           "B: one seed)" in out and "an ensemble, which favours the side with more" in out
    assert "paired bootstrap over 2 artists of the test clips; artists from gtzan/artists.txt" in out  # Marley, Morphine
    assert "p = 0.0156 (the clips span 2 artists" in out
    (tmp_path / "trained").mkdir()
    (tmp_path / "trained" / "best.pt").write_bytes(b"")
    with pytest.raises(UserError, match="trained but never tested.*python main.py --do_test --out .*trained"):
        results.load(tmp_path / "trained")
    (tmp_path / "C" / "seed0").mkdir(parents=True)
    (tmp_path / "C" / "results.json").write_text(json.dumps({"runs": [{"run": "seed0"}]}))
    with pytest.raises(UserError, match=r"none of its 1 counted runs.*--do_test --out .*seed0"):
        results.load(tmp_path / "C")
    one_line_error(run_script("compare.py", tmp_path / "trained", tmp_path / "B"), "never tested", "--do_test --out")


def test_newest_run_matches_the_model_exactly(tmp_path):
    """runs/resnet34_musicnn-* starts with "resnet34": it must not be taken for a resnet34 run."""
    import os

    for k, (folder, model) in enumerate([("resnet34-1", "resnet34"), ("resnet34_musicnn-2", "resnet34_musicnn"),
                                         ("mine", "resnet34")]):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "config.json").write_text(json.dumps({"train": {"model": model}}))
        (tmp_path / folder / "best.pt").write_bytes(b"")
        os.utime(tmp_path / folder / "best.pt", (k * 10 + 1000, k * 10 + 1000))
    assert checkpoint.newest_run("resnet34", tmp_path) == tmp_path / "mine"  # --out names do not matter
    os.utime(tmp_path / "mine" / "best.pt", (1, 1))
    assert checkpoint.newest_run("resnet34", tmp_path) == tmp_path / "resnet34-1"
    assert checkpoint.newest_run("resnet34_musicnn", tmp_path) == tmp_path / "resnet34_musicnn-2"
    assert checkpoint.newest_run(None, tmp_path) == tmp_path / "resnet34_musicnn-2"


def test_results_md_names_both_macro_f1s_and_counts_what_it_left_out(tmp_path, caplog):
    """Perfect predictions on a fold without reggae: macro-F1 1.0 (absent genres averaged in as 0
    gave 0.667); the pooled row counts each clip once and says so; a run with no predictions.json
    is counted in one line."""
    import numpy as np

    from genreclf.data import FeatureSet
    from genreclf.metrics import score
    from genreclf.results import result_row, run_stats, summarize, with_groups

    fold = FeatureSet({}, np.array([0, 1, 0, 1]), np.arange(4), ["x/1", "x/2", "x/3", "x/4"])
    s = score(np.eye(3)[[0, 1, 0, 1]], fold, ["classical", "metal", "reggae"])
    assert s["macro_f1"] == 1.0 and s["macro_f1_genres"] == 2
    ids, true = ["x/1", "x/2", "y/3", "y/4"], ["a", "a", "b", "b"]
    write_experiment(tmp_path, ["seed0-fold0", "seed1-fold0"], ids, true, ["a", "a", "b", "a"])
    (tmp_path / "seed2-fold0").mkdir()
    rows = [result_row(r, i, {"test_clip_accuracy": 0.75, "test_segment_accuracy": 0.7, "test_clips": 4,
                              **run_stats(with_groups(json.loads((tmp_path / r / "predictions.json").read_text())))})
            for i, r in enumerate(["seed0-fold0", "seed1-fold0"])] + [result_row("seed2-fold0", 2, {"test_clip_accuracy": 0.5})]
    rows[-1].update(test_clip_accuracy_ci95=[0, 1], test_segment_accuracy=0.5, test_macro_f1=0.5, test_clips=4)
    with caplog.at_level("INFO", logger="genreclf"):
        summary = summarize(tmp_path, "q2", rows)
    assert summary["pooled"]["clips"] == 4 and summary["pooled"]["runs_per_clip"] == [2]
    assert summary["pooled"]["macro_f1"] == pytest.approx(0.733, abs=1e-3) and summary["pooled"]["resampled"] == "clips"
    md = (tmp_path / "results.md").read_text()
    assert "macro-F1 (genres in its test clips)" in md and "pooled macro-F1" in md
    assert "each clip once, probabilities averaged over its 2 seeds" in md and "bootstrap over clips (no artists known)" in md
    left_out = [m for m in caplog.messages if "left out of the pooled predictions" in m]
    assert len(left_out) == 1 and "1 of 3 runs" in left_out[0] and "seed2-fold0" in left_out[0]


def test_split_auto_picks_course_for_gtzan_names_whatever_the_folder(wav_factory, tmp_path):
    train, test = splits.read_list(splits.LISTS / "train.txt"), splits.read_list(splits.LISTS / "test.txt")
    for g in splits.GENRES_8:
        for rel in [p for p in train if splits.genre_of(p) == g][:7] + [p for p in test if splits.genre_of(p) == g][:1]:
            wav_factory(f"my music/wav/{rel}", sine(220, 0.1, 8000), sr=8000)
    r = run_script("split_data.py", "--data-dir", tmp_path / "my music", "--work-dir", tmp_path / "w", "--split", "auto")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("split: course (GTZAN file names")
    for g in ("rock", "pop"):
        for i in range(6):
            wav_factory(f"other/wav/{g}/take {i}.wav", sine(220, 0.1, 8000), sr=8000)
    r = run_script("split_data.py", "--data-dir", tmp_path / "other", "--work-dir", tmp_path / "w2", "--split", "auto",
                   "--genres", "pop,rock")
    assert r.returncode == 0 and r.stdout.startswith("split: random (file names are not GTZAN's"), r.stdout + r.stderr
    make = subprocess.run(["make", "-n", "demo", f"DATA={tmp_path / 'my music'}"], cwd=REPO, capture_output=True, text=True)
    assert "--split auto" in make.stdout


@needs_shared
def test_split_auto_falls_back_to_random_on_gtzan_mini(tmp_path):
    """gtzan_mini's indices 00000-00006 of classical are all in the course test list: no training clips."""
    r = run_script("split_data.py", "--data-dir", MINI, "--work-dir", tmp_path, "--split", "auto",
                   "--genres", ",".join(splits.GENRES_8))
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("split: random (GTZAN file names, but the course lists give genre classical 0 training")
    assert json.loads((tmp_path / "split" / "split.json").read_text())["split"] == "random"


@needs_shared
def test_single_run_reports_a_ci_and_resume_takes_device(mini3, tmp_path):
    run = tmp_path / "run"
    common = ["--data-dir", MINI, "--work-dir", mini3]
    r = run_script("main.py", *common, "--model", "baseline", "--epochs", 1, "--device", "cpu", "--do_train",
                   "--do_test", "--out", run)
    assert r.returncode == 0, r.stderr
    m = json.loads((run / "metrics.json").read_text())
    lo, hi = m["test_clip_accuracy_ci95"]
    assert lo <= m["test_clip_accuracy"] <= hi and m["interrupted"] is False
    md = (run / "results.md").read_text()
    assert "± 0.000" not in md and f"({lo:.3f}-{hi:.3f})" in md
    p = json.loads((run / "predictions.json").read_text())
    assert len(p["clip_ids"]) == len(p["true"]) == len(p["probs"]) == m["test_clips"]
    config = json.loads((run / "config.json").read_text())
    config["train"].update(device="cuda", epochs=2)  # as if trained on a GPU machine
    (run / "config.json").write_text(json.dumps(config))
    r = run_script("main.py", "--resume", run, "--device", "cpu")
    assert r.returncode == 0, r.stderr
    assert len(json.loads((run / "metrics.json").read_text())["history"]) == 2
    import torch
    if not torch.cuda.is_available():  # without --device the saved one applies
        one_line_error(run_script("main.py", "--resume", run), "--device cuda")


@needs_shared
def test_do_test_alone_uses_the_runs_pinned_caches(trained_run, tmp_path):
    """`main.py --do_test --out RUN` with no data flags: the caches pinned in data.json, not gtzan/'s."""
    import shutil
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    r = run_script("main.py", "--do_test", "--out", run)
    assert r.returncode == 0, r.stderr
    assert "using the caches pinned in" in r.stderr
    assert json.loads((run / "metrics.json").read_text())["test_clips"] == 6
    pinned = json.loads((run / "data.json").read_text())
    pinned["caches"]["mel"]["dir"] = str(tmp_path / "gone")
    (run / "data.json").write_text(json.dumps(pinned))
    one_line_error(run_script("main.py", "--do_test", "--out", run), "are gone")


def test_resume_of_a_missing_folder_says_so(tmp_path):
    one_line_error(run_script("main.py", "--resume", tmp_path / "nowhere"), "nowhere: no such run folder")


def test_a_clip_bootstrap_over_known_artists_says_so():
    """Every test clip of its own artist: the clip bootstrap is the artist one, and known artists are
    not called unknown (the single run's log line and results.md's note)."""
    from genreclf.results import ci_note
    from genreclf.stats import over

    assert over("clips", None, ["Bob Marley", "ABBA", "clip:jazz/jazz.00054"]) == \
        "3 artists (each test clip its own artist; 1 unknown)"
    assert over("clips", None, ["clip:a/1", "clip:a/2"]) == over("clips", None) == "clips (no artists known)"
    assert over("artists", 4, ["x", "x", "y", "z", "w"]) == "4 artists"
    row = {"test_ci_resampled": "clips", "test_groups_from": "artists from gtzan/artists.txt (Sturm 2012; 0 clips "
           "of unknown artist are their own group)"}
    note = ci_note([row])
    assert "no artists known" not in note and "no two test clips share a known artist" in note
    assert "no artists known" in ci_note([{**row, "test_groups_from": "no artists known: each clip is its own group"}])


def test_a_suggested_k_whose_folds_test_one_genre_says_so():
    ids = [f"{g}/{g}{a}-{c}" for g in "abc" for a in range(3) for c in range(4)]  # 3 genres x 3 artists x 4 clips
    genres, artists = [i[0] for i in ids], [i.split("-")[0] for i in ids]
    with pytest.raises(Exception, match=r"--folds 9 works \(but most of its folds would test a single genre; 5 is the usual k\)"):
        grouped_folds(ids, genres, artists, 10, 0, say=lambda line: None)


def test_a_groups_file_that_lacks_clips_makes_them_their_own_group(tmp_path):
    (tmp_path / "g.csv").write_text("a/1.wav,x\na/2.wav,x\n")
    labels, source = groups_for(["a/1", "a/2", "a/3"], tmp_path / "g.csv")
    assert labels == ["x", "x", "clip:a/3"] and "(1 of the 3 clips are not in it: each is its own group, e.g. a/3)" in source
    assert groups_for(["a/1"], tmp_path / "g.csv") == (["x"], f"groups from {tmp_path / 'g.csv'}")
    with pytest.raises(Exception, match="is a folder, not a groups file"):
        groups_for(["a/1"], tmp_path)
