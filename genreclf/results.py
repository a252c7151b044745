"""Test results on disk: the predictions compare.py and the recipe table read, and the summary
every main.py run or experiment writes (results.json, results.md), with the statistics of stats.py.

    RUN/predictions.json  per test clip (metrics.clip_predictions): genres, clip_ids, true, pred,
                          probs, and, since issue 18, groups (the clip's artist group) and
                          groups_from (where the groups came from, in words)
    EXP/results.json      an experiment's runs, their mean ± std and the pooled row: its "counted"
                          runs pooled per clip (stats.pool); results.md, the same as a table

A predictions.json without groups (made before they were written) gets them as groups.groups_for
gives them today: GTZAN names take gtzan/artists.txt, other clips are their own group.
"""
import json
import logging
import sys
from pathlib import Path

import numpy as np

from . import stats
from .errors import UserError
from .groups import groups_for
from .io import write_json, write_text
from .stats import N_BOOT, bootstrap_ci, macro_f1, resampled

log = logging.getLogger("genreclf")

PREDICTIONS = "predictions.json"


def with_groups(p, groups_file=None):
    """`p` with "groups" and "groups_from" for its clips: its own, else from `groups_file` when it
    still exists, else groups.groups_for's GTZAN artists (or each clip its own group)."""
    if "groups" in p and len(p["groups"]) == len(p["clip_ids"]):
        return p
    labels, source = groups_for(p["clip_ids"], groups_file if groups_file and Path(groups_file).is_file() else None)
    return {**p, "groups": labels, "groups_from": source}


def pooled_predictions(root, run_names, say=print):
    """The predictions of an experiment's runs `run_names` (folders under `root`), pooled per clip:
    each clip once, probabilities averaged over the runs that tested it (stats.pool). Runs without
    predictions.json are left out and counted in one line passed to `say`. None when none has it."""
    root = Path(root)
    have = [n for n in run_names if (root / n / PREDICTIONS).exists()]
    missing = [n for n in run_names if n not in have]
    if missing:
        say(f"{root}: {len(missing)} of {len(run_names)} runs have no {PREDICTIONS} and are left out of the "
            f"pooled predictions ({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''}; test a run with "
            f"python main.py --do_test --out {root / missing[0]})")
    if not have:
        return None
    files = [root / n / PREDICTIONS for n in have]
    p = stats.pool([json.loads(f.read_text()) for f in files], [str(f) for f in files])
    if p.get("groups_from", "").startswith("artists from"):  # its count of unknown-artist clips was the first run's
        p["groups_from"] = groups_for(p["clip_ids"])[1]
    return p


def load(folder, say=print, seed=None):
    """The test predictions of a run folder (its predictions.json) or an experiment folder (its
    counted runs pooled per clip; with `seed`, that seed's runs only), with groups. Raises UserError, one line naming the folder, for
    a folder that is neither, and for a run or experiment never tested (with the command that tests it)."""
    folder = Path(folder)
    if (folder / PREDICTIONS).exists():
        return with_groups(json.loads((folder / PREDICTIONS).read_text()), _groups_file(folder))
    if (folder / "results.json").exists():
        runs = [r["run"] for r in json.loads((folder / "results.json").read_text())["runs"]
                if r.get("counted", True) and seed in (None, r.get("seed"))]
        p = pooled_predictions(folder, runs, say)
        if p is None:
            raise UserError(f"{folder}: none of its {len(runs)} counted runs has {PREDICTIONS} (never tested, or "
                            f"tested before main.py wrote them): test them with python main.py --do_test --out "
                            f"{folder / (runs[0] if runs else 'RUN')}")
        return with_groups(p, _groups_file(folder))
    if (folder / "best.pt").exists() or (folder / "config.json").exists():
        raise UserError(f"{folder}: a run that was trained but never tested (no {PREDICTIONS}): test it with "
                        f"python main.py --do_test --out {folder}")
    if (folder / "experiment.json").exists():
        raise UserError(f"{folder}: an experiment that has not finished a run (no results.json): continue it with "
                        f"python main.py --resume {folder}")
    raise UserError(f"{folder}: not a run or experiment folder (no {PREDICTIONS}, results.json or best.pt)")


def _groups_file(folder):
    """The --groups file an experiment was planned with (experiment.json, here or one folder up)."""
    for exp in (Path(folder) / "experiment.json", Path(folder).parent / "experiment.json"):
        if exp.exists():
            return json.loads(exp.read_text()).get("groups")
    return None


def run_stats(predictions):
    """A run's test statistics from its predictions (with groups): clip accuracy's 95% CI, a
    bootstrap over the artists of its test clips when known, else over clips, what it resampled
    ("artists"/"clips", how many artists, from where), and macro-F1 over the genres present.
    retested() recomputes them, so an old run's results.md gets today's definitions."""
    correct = [t == q for t, q in zip(predictions["true"], predictions["pred"])]
    unit, artists = resampled(predictions["groups"])
    return {"test_clip_accuracy_ci95": bootstrap_ci(correct, predictions["groups"]), "test_ci_resampled": unit,
            "test_artists": artists, "test_groups_from": predictions["groups_from"],
            "test_macro_f1": macro_f1(predictions["true"], predictions["pred"]),
            "test_macro_f1_genres": len(set(predictions["true"]))}


def retested(run_dir, metrics, groups_file=None):
    """A finished run's metrics with its test statistics recomputed from its predictions.json
    (run_stats): resuming a finished experiment rewrites results.md with today's CIs and macro-F1."""
    path = Path(run_dir) / "predictions.json"
    if not path.exists():
        return metrics
    return {**metrics, **run_stats(with_groups(json.loads(path.read_text()), groups_file))}


def result_row(name, seed, metrics, counted=True):
    """One line of results.json: a run's test scores, "interrupted" (Ctrl+C), "diverged" (a
    non-finite loss stopped it), and "counted" (in mean ± std: False for a multi-run experiment's
    interrupted or diverged, untested run)."""
    counted = counted and "test_clip_accuracy" in metrics
    keys = ("test_clip_accuracy", "test_clip_accuracy_ci95", "test_ci_resampled", "test_artists", "test_groups_from",
            "test_segment_accuracy", "test_macro_f1", "test_macro_f1_genres", "test_clips")
    return {"run": name, "seed": seed, "interrupted": bool(metrics.get("interrupted")),
            "diverged": bool(metrics.get("diverged")), "counted": counted,
            **({k: metrics.get(k) for k in keys} if counted else {})}


def pooled_row(root, runs, groups_file=None):
    """The pooled test predictions of several runs: each clip once, its probabilities averaged over
    the seeds that tested it; clip accuracy with its 95% bootstrap CI over artists (else clips) and
    macro-F1 over every genre of the pooled clips. None when no run has predictions.json."""
    pooled = pooled_predictions(root, runs, say=log.info)
    if pooled is None:
        return None
    pooled = with_groups(pooled, groups_file)
    correct = np.array(pooled["true"]) == np.array(pooled["pred"])
    per_clip = sorted(set(pooled["runs_per_clip"]))
    unit, artists = resampled(pooled["groups"])
    return {"clips": len(correct), "test_clip_accuracy": float(correct.mean()),
            "ci95": bootstrap_ci(correct, pooled["groups"]), "resampled": unit, "artists": artists,
            "groups_from": pooled["groups_from"], "macro_f1": macro_f1(pooled["true"], pooled["pred"]),
            "genres": len(set(pooled["true"])), "runs_per_clip": per_clip}


def summarize(root, model, rows, groups_file=None, **extra):
    """Every experiment's summary: root/results.json (each run's test clip accuracy with its 95%
    bootstrap CI, over artists where known; macro-F1 over the genres in its test clips; mean ± std
    over runs and the pooled row when there are several; interrupted runs listed but left out) and
    root/results.md, which says what each number is. Returns the summary dict."""
    done = [r for r in rows if r["counted"]]
    acc = np.array([r["test_clip_accuracy"] for r in done])
    f1 = np.array([r["test_macro_f1"] for r in done])
    summary = {"model": model, "runs": rows, "n": len(done), "n_not_counted": len(rows) - len(done), **extra,
               "command": " ".join(sys.argv)}
    if len(done) > 1:
        summary.update(test_clip_accuracy_mean=float(acc.mean()), test_clip_accuracy_std=float(acc.std(ddof=1)),
                       test_macro_f1_mean=float(f1.mean()), test_macro_f1_std=float(f1.std(ddof=1)))
    elif done:
        summary.update(test_clip_accuracy=done[0]["test_clip_accuracy"], test_clip_accuracy_ci95=done[0]["test_clip_accuracy_ci95"])
    table = ["| run | seed | test clip acc (95% CI) | test segment acc | macro-F1 (genres in its test clips) | clips |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        if not r["counted"]:
            why = "diverged" if r.get("diverged") else "interrupted"
            table.append(f"| {r['run']} | {r['seed']} | {why}, not tested (not counted) | | | |")
            continue
        lo, hi = r["test_clip_accuracy_ci95"]
        table.append(f"| {r['run']}{' (stopped by Ctrl+C)' if r['interrupted'] else ''} | {r['seed']} | "
                     f"{r['test_clip_accuracy']:.3f} ({lo:.3f}-{hi:.3f}) | {_num(r['test_segment_accuracy'])} | "
                     f"{r['test_macro_f1']:.3f} ({r.get('test_macro_f1_genres') or '?'}) | {r['test_clips']} |")
    if len(done) > 1:
        table.append(f"| **mean ± std over {len(done)} runs** | | **{summary['test_clip_accuracy_mean']:.3f} ± "
                     f"{summary['test_clip_accuracy_std']:.3f}** | | **{summary['test_macro_f1_mean']:.3f} ± "
                     f"{summary['test_macro_f1_std']:.3f}** | |")
        pooled = pooled_row(root, [r["run"] for r in done], groups_file)
        if pooled:
            summary["pooled"] = pooled
            lo, hi = pooled["ci95"]
            table.append(f"| pooled test predictions: each clip once, {seeds_per_clip(pooled['runs_per_clip'])} | | "
                         f"{pooled['test_clip_accuracy']:.3f} ({lo:.3f}-{hi:.3f}) | | {pooled['macro_f1']:.3f} "
                         f"({pooled['genres']}; pooled macro-F1) | {pooled['clips']} |")
    table += ["", ci_note(done, summary.get("pooled")),
              "macro-F1 of a run averages the genres present in its test clips (how many in brackets)"
              + ("; the pooled macro-F1 averages the genres of all pooled clips, each clip counted once."
                 if "pooled" in summary else ".")]
    write_json(root / "results.json", summary)
    write_text(root / "results.md", "\n".join(table) + "\n")
    log.info("\n" + "\n".join(table))
    return summary


def _num(x):
    """A score in a table: 3 decimals, or "-" where a run has none (an ensemble's segment accuracy)."""
    return "-" if x is None else f"{x:.3f}"


def seeds_per_clip(counts):
    """How pooled clips were averaged, in words; `counts` the sorted distinct runs per clip."""
    if counts == [1]:
        return "one seed"
    n = str(counts[0]) if len(counts) == 1 else f"{counts[0]} to {counts[-1]}"
    return f"probabilities averaged over its {n} seeds"


def ci_note(rows, pooled=None):
    """The line under results.md's table that says what its CIs resample."""
    units = {r.get("test_ci_resampled") or "clips" for r in rows} | ({pooled["resampled"]} if pooled else set())
    source = next((r["test_groups_from"] for r in rows if r.get("test_groups_from")), "")
    known = source.startswith(("artists from", "groups from"))  # else groups.groups_for's "no artists known"
    what = ("artists where known, else clips" if len(units) > 1 else
            "the artists of each row's test clips" + (f", {source}" if source else "") if units == {"artists"} else
            f"clips: no two test clips share a known artist, so it is the bootstrap over artists ({source})"
            if known else "clips (no artists known)")
    if pooled and pooled["resampled"] == "artists":
        what += f"; the pooled row's {pooled['clips']} clips span {pooled['artists']} artists"
    return f"95% CIs: percentile bootstrap over {what}; {N_BOOT} resamples, seed 0."
