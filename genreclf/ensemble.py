"""Ensembles: the mean of the clip probabilities of runs scored on the same test clips, scored as a run.

    python main.py --ensemble runs/cv-recipe/base2dcnn-old runs/cv-recipe/musicnn_logreg-L5 --out runs/ens

Members are all run folders (predictions.json) or all experiment folders (results.json: k-fold or
seed repeats). Experiments are joined run by run (seed S fold K with seed S fold K), over the runs
they all hold (a row of seeds 0,1,2 with a row of seed 0: seed 0's folds), and each joined run
must hold the same clips in every member: the same --folds, --seeds and split, whatever the model
and its cache. The ensemble writes what main.py writes for a scored run, so that
compare.py, recipe_table.py and the summaries take it as they take any run:

    OUT/ensemble.json                          the members, and the command
    OUT/predictions.json, OUT/metrics.json     one run; or, for experiments, OUT/<run>/ for each run
    OUT/results.json, OUT/results.md           results.summarize

A clip's probabilities are the unweighted mean of the members' (the soft vote of Kittler et al.,
1998). The SVMs' probabilities are a softmax of decision values, not calibrated ones, so a member
weighs in by its own sharpness. There is no segment accuracy: predictions.json holds clips.
"""
import json
import sys
from pathlib import Path

import numpy as np

from .errors import UserError
from .io import write_json
from .stats import over

NAME = "ensemble.json"


def members_runs(folder):
    """[(run name, seed, run folder)] of a run folder ([("", seed, folder)]) or of an experiment
    folder (its counted runs). Raises UserError for anything else."""
    folder = Path(folder)
    if (folder / "results.json").exists() and not (folder / "predictions.json").exists():
        rows = [r for r in _json(folder / "results.json")["runs"] if r.get("counted", True)]
        return [(r["run"], r["seed"], folder / r["run"]) for r in rows]
    if (folder / "predictions.json").exists():
        config = folder / "config.json"
        seed = _json(config)["train"].get("seed") if config.exists() else None
        return [("", seed, folder)]
    raise UserError(f"{folder}: not a scored run or experiment folder (no predictions.json or results.json): "
                    f"run main.py --do_test on it first")


def _json(path):
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"{path}: not readable JSON ({type(e).__name__}): re-test the run (main.py --do_test)") from None


def _read(folder):
    path = Path(folder) / "predictions.json"
    if not path.exists():
        raise UserError(f"{path}: missing (the run was not tested: main.py --do_test --out {folder})")
    return _json(path)


def average(preds, names):
    """The predictions.json dict of the mean of `preds` (predictions.json dicts of runs `names`),
    in the first one's clip and genre order. Raises UserError when they are not on the same clips
    with the same true genres, or know other genres."""
    first = preds[0]
    order = {c: i for i, c in enumerate(first["clip_ids"])}
    probs = np.zeros((len(order), len(first["genres"])))
    for p, name in zip(preds, names):
        only_a, only_b = sorted(set(order) - set(p["clip_ids"])), sorted(set(p["clip_ids"]) - set(order))
        if only_a or only_b:
            raise UserError(f"{name}: scored on different test clips than {names[0]} ({len(only_a)} only in the first, "
                            f"{len(only_b)} only in the second, e.g. {(only_a or only_b)[0]}): an ensemble needs the same "
                            f"clips (the same --folds, --seeds and cache)")
        if sorted(p["genres"]) != sorted(first["genres"]):
            raise UserError(f"{name}: genres {p['genres']} are not {names[0]}'s {first['genres']}")
        rows = [order[c] for c in p["clip_ids"]]
        bad = next((c for c, t in zip(p["clip_ids"], p["true"]) if t != first["true"][order[c]]), None)
        if bad:
            raise UserError(f"{name}: clip {bad} has another true genre than in {names[0]}")
        columns = [p["genres"].index(g) for g in first["genres"]]
        probs[rows] += np.asarray(p["probs"], dtype=np.float64)[:, columns]
    probs /= len(preds)
    genres = first["genres"]
    return {"genres": genres, "clip_ids": first["clip_ids"], "true": first["true"],
            "pred": [genres[i] for i in probs.argmax(1)], "probs": np.round(probs, 6).tolist()}


def metrics_of(pred):
    """main.py's metrics.json test fields for a predictions.json dict with groups (clips only: no
    segment accuracy; test_loss is the mean cross-entropy of the clip probabilities; the CI and
    macro-F1 as for any run, results.run_stats)."""
    from .data import FeatureSet
    from .metrics import score
    from .results import run_stats

    genres = pred["genres"]
    truth = np.array([genres.index(t) for t in pred["true"]])
    probs = np.asarray(pred["probs"])
    clips = FeatureSet(x={}, y=truth, clip=np.arange(len(truth)), clip_ids=pred["clip_ids"])
    s = score(probs, clips, genres)  # one "segment" per clip
    loss = float(-np.log(np.maximum(probs[np.arange(len(truth)), truth], 1e-12)).mean())
    return {"test_clip_accuracy": s["clip_accuracy"], "test_segment_accuracy": None, "test_loss": loss,
            "test_per_class": s["per_class"], "confusion_matrix": s["confusion_matrix"], "genres": genres,
            "test_clips": s["n_clips"], **run_stats(pred)}


def run(members, out):
    """Ensemble `members` (folders) into `out`. Returns the summary dict (results.summarize).
    Raises UserError for fewer than two members, a mix of runs and experiments, experiments with
    no run in common, or runs on other clips."""
    from .results import result_row, summarize, with_groups

    if len(members) < 2:
        raise UserError(f"--ensemble needs at least two runs or experiments, got {len(members)}")
    out = Path(out)
    if out.resolve() in [Path(m).resolve() for m in members]:
        raise UserError(f"--out {out}: is one of the members; choose a new folder")
    runs = [{name: (seed, path) for name, seed, path in members_runs(m)} for m in members]
    groups_file = _groups_file(members[0])
    common = [name for name in runs[0] if all(name in r for r in runs[1:])]
    for m, r in zip(members[1:], runs[1:]):
        if ("" in r) != ("" in runs[0]) or not common:
            raise UserError(f"{m}: is {_kind(r)}, {members[0]} is {_kind(runs[0])}: an ensemble joins the same runs")
    left_out = sorted({name for r in runs for name in r} - set(common))
    if left_out:  # e.g. a row of seeds 0,1,2 with a row of seed 0: their seed 0 folds
        print(f"note: --ensemble joins the {len(common)} runs all members have; left out: {', '.join(left_out)}", file=sys.stderr)
    rows = []
    for name in common:
        paths = [str(r[name][1]) for r in runs]
        pred = with_groups(average([_read(p) for p in paths], paths), groups_file)
        metrics = {**metrics_of(pred), "ensemble": paths}
        write_json(out / name / "predictions.json", pred)
        write_json(out / name / "metrics.json", metrics)
        rows.append(result_row(name or out.name, runs[0][name][0], metrics))
    write_json(out / NAME, {"members": [str(m) for m in members], "runs": common, "command": " ".join(sys.argv)})
    extra = {}
    if "" not in runs[0]:  # experiments: their folds, and the seeds joined
        extra = {"folds": _json(Path(members[0]) / "results.json").get("folds"),
                 "seeds": sorted({runs[0][name][0] for name in common})}
    return summarize(out, "ensemble", rows, groups_file, members=[str(m) for m in members], **extra)


def _groups_file(member):
    """The --groups file the first member's experiment (or run) was made with, or None."""
    for config in (Path(member) / "experiment.json", Path(member) / "config.json"):
        if config.exists():
            return _json(config).get("groups")
    return None


def _kind(runs):
    """What a member is, in words, from its {run name: ...}."""
    if list(runs) == [""]:
        return "a run"
    names = list(runs)
    return f"an experiment of runs {', '.join(names[:3])}{'...' if len(names) > 3 else ''}"


def summary_line(summary, out):
    """An ensemble's result (run's summary) in one line: where it wrote, its clips, clip accuracy (with the
    95% CI a run reports) and macro-F1; for experiments the mean ± std over runs and the pooled clips."""
    out = Path(out)
    if summary["n"] > 1:
        line = (f"{summary['n']} runs, test clip accuracy {summary['test_clip_accuracy_mean']:.3f} ± "
                f"{summary['test_clip_accuracy_std']:.3f}, macro-F1 {summary['test_macro_f1_mean']:.3f} ± "
                f"{summary['test_macro_f1_std']:.3f}")
        pooled = summary.get("pooled")
        if pooled:
            lo, hi = pooled["ci95"]
            line += (f"; pooled over its {pooled['clips']} clips {pooled['test_clip_accuracy']:.3f} (95% CI {lo:.3f}-"
                     f"{hi:.3f}, bootstrap over {over(pooled['resampled'], pooled['artists'])})")
    else:
        row = summary["runs"][0]
        lo, hi = row["test_clip_accuracy_ci95"]
        groups = json.loads((out / row["run"] / "predictions.json" if (out / row["run"]).is_dir() else
                             out / "predictions.json").read_text()).get("groups")
        line = (f"{row['test_clips']} clips, test clip accuracy {row['test_clip_accuracy']:.3f} (95% CI {lo:.3f}-{hi:.3f}, "
                f"bootstrap over {over(row['test_ci_resampled'], row['test_artists'], groups)}), macro-F1 "
                f"{row['test_macro_f1']:.3f}")
    return f"ensemble -> {out}: {line} (table: {out / 'results.md'})"
