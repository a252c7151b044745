"""The training-recipe table (the README's results; docs/training-recipe.md): every row an artist-grouped 5-fold experiment over
the same folds, the classic baselines beside the seed's recipe ("old") and the new one, the heads on
richer musicnn embeddings, the fine-tuned musicnn, and ensembles of rows.

    python recipe_table.py --data-dir work/gtzan187                 # every row, then the table
    python recipe_table.py --data-dir work/gtzan187 --rows q2-old,q2-new
    python recipe_table.py --table-only                              # the table of what has run

Each row runs `main.py ... --folds 5 --seeds S --out runs/cv-recipe/<row>` unless that folder
already holds results.json (delete it to rerun; a row stopped midway, with experiment.json but no
results.json, goes on with `main.py --resume`), after `dataset.py` has made the caches its
feature flags name (a no-op when they exist; timed apart). An ensemble row runs `main.py --ensemble`
on its member rows' folders (run first). Rows that take under a minute a run get seeds 0,1,2, the
others seed 0. The table (runs/cv-recipe/table.md) gives per row clip accuracy and macro-F1 as
mean ± std over its runs (folds x seeds; a fold's macro-F1 averages the genres present in its test
clips), seed 0's pooled clip accuracy (every clip once) with its 95% bootstrap CI over artists and
its pooled macro-F1, the row's wall and CPU minutes (timing.json, written when the row ran), and
paired comparisons on seed 0's 187 clips (compare.py: paired bootstrap over artists, McNemar's
exact test on clips). `--table-only` recomputes all of it from the runs' predictions.json.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time
from collections import namedtuple
from pathlib import Path

import numpy as np

from genreclf.errors import UserError, run_cli
from genreclf.io import write_text

ROOT = Path("runs/cv-recipe")
NEW = "--optimizer adamw --weight-decay 0.01 --schedule cosine --warmup 1 --label-smoothing 0.1 --mixup 0.2 --patience 100"
NEW_MEL = NEW + " --random-crop --freq-mask 16 --time-mask 24"
# musicnn embeddings (issue 21): the means of max_pool, mean_pool, penultimate and taggram over a segment's
# patches plus the std of max_pool (the five parts); L4std: the std of all four; OV2: overlapping patches
L5 = "--layers max_pool,mean_pool,penultimate,taggram --patch-stats mean,std:max_pool"
L4STD = "--layers max_pool,mean_pool,penultimate,taggram --patch-stats mean,std"
OV2 = " --musicnn-overlap 2"
# a row: model, epochs, recipe flags, seeds, feature flags (the caches it reads; "" = the defaults of make cv-data).
# "old" is the seed's recipe (Adam, plateau, no augmentation)
Row = namedtuple("Row", "model epochs flags seeds features", defaults=("",))
ROWS = {
    "mfcc_svm": Row("mfcc_svm", 1, "", "0,1,2"),
    "musicnn_svm": Row("musicnn_svm", 1, "", "0,1,2"),
    "q2-old": Row("q2", 30, "", "0,1,2"),
    "q2-new": Row("q2", 30, NEW, "0,1,2"),
    "baseline-old": Row("baseline", 20, "", "0,1,2"),
    "baseline-new": Row("baseline", 20, NEW_MEL, "0,1,2"),
    "base2dcnn-old": Row("base2dcnn", 20, "", "0"),
    "base2dcnn-new": Row("base2dcnn", 20, NEW_MEL, "0"),
    "resnet18-new": Row("resnet18", 3, NEW_MEL, "0"),
    "resnet34_musicnn-new": Row("resnet34_musicnn", 2, NEW_MEL, "0"),
    "musicnn_logreg": Row("musicnn_logreg", 1, "", "0,1,2"),
    "musicnn_svm-L5": Row("musicnn_svm", 1, "", "0,1,2", L5),
    "musicnn_logreg-L5": Row("musicnn_logreg", 1, "", "0,1,2", L5),
    "q2-new-L5": Row("q2", 30, NEW, "0,1,2", L5),
    "musicnn_logreg-L4std-ov2": Row("musicnn_logreg", 1, "", "0,1,2", L4STD + OV2),
    "musicnn_ft-last": Row("musicnn_ft", 4, NEW + " --freeze last", "0"),
}
# ensembles: row -> member rows, averaged clip by clip on the folds they share (main.py --ensemble): two heads
# on the richer embedding, and a mel CNN with a musicnn head (seed 0's folds, base2dcnn-old's only seed)
ENSEMBLES = {
    "ens-logreg-L5+q2-new-L5": ("musicnn_logreg-L5", "q2-new-L5"),
    "ens-logreg-L5+base2dcnn-old": ("musicnn_logreg-L5", "base2dcnn-old"),
}
ALL = {**ROWS, **ENSEMBLES}
# paired comparisons of the target: (row A, row B); A should beat B
PAIRS = [("q2-new", "musicnn_svm"), ("q2-old", "musicnn_svm"), ("base2dcnn-old", "mfcc_svm"), ("base2dcnn-new", "mfcc_svm"), ("baseline-new", "mfcc_svm"),
         ("baseline-old", "mfcc_svm"), ("q2-new", "q2-old"), ("baseline-new", "baseline-old"), ("base2dcnn-new", "base2dcnn-old"),
         ("musicnn_logreg", "musicnn_svm"), ("musicnn_svm-L5", "musicnn_svm"), ("musicnn_logreg-L5", "musicnn_svm"),
         ("q2-new-L5", "musicnn_svm"), ("musicnn_logreg-L4std-ov2", "musicnn_svm"), ("musicnn_ft-last", "musicnn_svm"),
         *((e, "musicnn_svm") for e in ENSEMBLES), *((e, m[0]) for e, m in ENSEMBLES.items())]


def run_row(name, data_dir, root, seeds=None):
    out = root / name
    if (out / "results.json").exists():
        print(f"{name}: done before ({out}/results.json)")
        return
    if name in ENSEMBLES:
        missing = [m for m in ENSEMBLES[name] if not (root / m / "results.json").exists()]
        if missing:
            raise UserError(f"--rows {name}: run its member rows first ({', '.join(missing)})")
        cmd = [sys.executable, "main.py", "--ensemble", *(str(root / m) for m in ENSEMBLES[name]), "--out", str(out)]
        cache_minutes = 0.0
    else:
        from model import inputs_of

        model, epochs, flags, row_seeds, features = ROWS[name]
        t = time.time()
        for feature in inputs_of(model):  # the row's caches: computed once, then found (timed apart)
            r = subprocess.run([sys.executable, "dataset.py", "--data-dir", str(data_dir), "--workers", "2",
                                "--features", feature, *features.split()], stdout=subprocess.DEVNULL)
            if r.returncode:
                raise UserError(f"{name}: dataset.py --features {feature} {features} exited with {r.returncode}")
        cache_minutes = (time.time() - t) / 60
        cmd = [sys.executable, "main.py", "--data-dir", str(data_dir), "--model", model, "--epochs", str(epochs),
               *flags.split(), *features.split(), "--folds", "5", "--seeds", seeds or row_seeds, "--out", str(out)]
    resumed = (out / "experiment.json").exists() and name not in ENSEMBLES
    if resumed:  # an interrupted row (Ctrl+C, a reboot) goes on from its finished runs; its minutes are the rest's only
        cmd = [sys.executable, "main.py", "--resume", str(out)]
    print(f"{name}: {' '.join(cmd[1:])}", flush=True)
    t, cpu = time.time(), _children_cpu()
    r = subprocess.run(cmd, stdout=subprocess.DEVNULL)
    if r.returncode:
        raise UserError(f"{out}: main.py exited with {r.returncode} (see {out}/*/train.log)")
    write_text(out / "timing.json", json.dumps({"wall_minutes": (time.time() - t) / 60, "cpu_minutes": (_children_cpu() - cpu) / 60,
                                                "cache_minutes": cache_minutes, "load_average_1min_after": os.getloadavg()[0],
                                                "resumed": resumed}) + "\n")


def _children_cpu():
    """User + system CPU seconds of every finished child process (the row's main.py)."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def seed0(root, name):
    """Seed 0's test predictions of a row, pooled per clip with artist groups (results.load's
    format). Seed 0 only: rows ran 1 or 3 seeds, and a 3-seed average is an ensemble that a 1-seed
    row does not get, so rows are compared on one seed each."""
    from genreclf.results import pooled_predictions, with_groups

    folder = root / name
    if (folder / "ensemble.json").exists():  # an ensemble's folds and groups are its members'
        folder = Path(json.loads((folder / "ensemble.json").read_text())["members"][0])
    exp = json.loads((folder / "experiment.json").read_text())
    runs = [r["run"] for r in json.loads((root / name / "results.json").read_text())["runs"]
            if r["seed"] == 0 and r.get("counted", True)]
    return with_groups(pooled_predictions(root / name, runs), exp.get("groups"))


def fold_f1(run_dir, row):
    """A run's macro-F1 over the genres in its test clips, from its predictions.json (results.json
    rows written before issue 18 averaged absent genres in as 0); the row's own without one."""
    from genreclf.stats import macro_f1

    path = run_dir / "predictions.json"
    if not path.exists():
        return row["test_macro_f1"]
    p = json.loads(path.read_text())
    return macro_f1(p["true"], p["pred"])


def inputs_shown(root, name):
    """The row's inputs as its first run's config.json records them: `mel`, or the musicnn layers
    (statistics over patches, overlap) when they are not today's max_pool means."""
    config = next((root / name).glob("*/config.json"), None)
    if config is None:
        return "-"
    shown = []
    for key in json.loads(config.read_text())["features"].values():
        if key["features"] != "musicnn" or "layer" in key:
            shown.append(key.get("layer", key["features"]))
            continue
        overlap = f", overlap {key['musicnn_overlap']:g} s" if key["musicnn_overlap"] else ""
        shown.append(f"{'+'.join(key['layers'])} ({','.join(key['patch_stats'])}{overlap})")
    return "; ".join(shown)


def row_summary(root, name):
    """A row's numbers: per-run clip accuracy and macro-F1 (over the genres present in the run's
    test clips, recomputed from its predictions.json, so older runs get the same definition) as
    mean ± std; seed 0 pooled clip accuracy with its 95% bootstrap CI over artists, and macro-F1."""
    from genreclf.stats import bootstrap_ci, macro_f1, resampled

    res = json.loads((root / name / "results.json").read_text())
    if (root / name / "ensemble.json").exists():
        members = json.loads((root / name / "ensemble.json").read_text())["members"]
        what = {"model": "ensemble of " + " + ".join(Path(m).name for m in members), "epochs": "-", "recipe": "mean of clip probabilities",
                "inputs": "; ".join(dict.fromkeys(inputs_shown(root, Path(m).name) for m in members))}
    else:
        train = json.loads((root / name / "experiment.json").read_text())["train"]  # what ran, not what ROWS says now
        classic = train["model"].endswith(("_svm", "_logreg"))
        what = {"model": train["model"], "epochs": "-" if classic else train["epochs"], "inputs": inputs_shown(root, name),
                "recipe": "scikit-learn" if classic else "new" if train["optimizer"] == "adamw" else "old"}
        if train.get("freeze", "none") != "none":
            what["recipe"] += f", --freeze {train['freeze']}"
    runs = [r for r in res["runs"] if r.get("counted", True)]
    acc = np.array([r["test_clip_accuracy"] for r in runs])
    f1 = np.array([fold_f1(root / name / r["run"], r) for r in runs])
    pooled = seed0(root, name)
    correct = np.array(pooled["true"]) == np.array(pooled["pred"])
    timing = root / name / "timing.json"
    timing = json.loads(timing.read_text()) if timing.exists() else {}
    return {"row": name, **what, "seeds": ",".join(map(str, res["seeds"])), "runs": len(runs),
            "acc": (acc.mean(), acc.std(ddof=1)), "f1": (f1.mean(), f1.std(ddof=1)),
            "pooled_acc": float(correct.mean()), "pooled_ci": bootstrap_ci(correct, pooled["groups"]),
            "resampled": resampled(pooled["groups"]), "pooled_f1": macro_f1(pooled["true"], pooled["pred"]),
            "clips": len(correct), "minutes": timing.get("wall_minutes", float("nan")),
            "cpu_minutes": timing.get("cpu_minutes", float("nan")), "resumed": timing.get("resumed", False)}


def table(root):
    from compare import compare
    from genreclf.stats import over

    done = [n for n in ALL if (root / n / "results.json").exists()]
    lines = ["| row | `--model` | inputs | recipe | epochs | seeds | runs | clip accuracy | macro-F1 (genres in the fold) "
             "| seed 0 pooled clip accuracy (95% CI) | seed 0 pooled macro-F1 | wall minutes | CPU minutes |",
             "|---|---|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    summaries = [row_summary(root, n) for n in done]
    for s in summaries:
        lines.append(f"| {s['row']} | {s['model']} | {s['inputs']} | {s['recipe']} | {s['epochs']} "
                     f"| {s['seeds']} | {s['runs']} | {s['acc'][0]:.3f} ± {s['acc'][1]:.3f} | {s['f1'][0]:.3f} ± {s['f1'][1]:.3f} "
                     f"| {s['pooled_acc']:.3f} ({s['pooled_ci'][0]:.3f}-{s['pooled_ci'][1]:.3f}) | {s['pooled_f1']:.3f} "
                     f"| {s['minutes']:.1f}{' (resumed)' * s['resumed']} | {s['cpu_minutes']:.1f} |")
    lines += ["", f"Total: {sum(s['minutes'] for s in summaries):.1f} wall minutes, {sum(s['cpu_minutes'] for s in summaries):.1f} CPU minutes "
              f"(main.py only; the feature caches are timed apart: make cv-data, and each row's timing.json cache_minutes)"
              + ("; a resumed row's minutes are those after its resume" if any(s["resumed"] for s in summaries) else "") + "."]
    if summaries:
        lines += [f"CIs: 95% percentile bootstrap over {over(*summaries[0]['resampled'])} of seed 0's {summaries[0]['clips']} "
                  f"clips, paired in the comparisons below; McNemar's exact test is on clips."]
    lines += ["", "| A | B | clips | accuracy A | accuracy B | A - B (95% CI) | only A right | only B right | McNemar p |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for a, b in PAIRS:
        if a in done and b in done:
            r = compare(seed0(root, a), seed0(root, b), a, b)
            lo, hi = r["difference_ci95"]
            lines.append(f"| {a} | {b} | {r['clips']} | {r['accuracy_a']:.3f} | {r['accuracy_b']:.3f} | {r['difference']:+.3f} "
                         f"({lo:+.3f} to {hi:+.3f}) | {r['only_a_right']} | {r['only_b_right']} | {r['mcnemar_exact_p']:.3g} |")
    missing = [n for n in ALL if n not in done]
    if missing:
        lines += ["", f"Not run: {', '.join(missing)}."]
    text = "\n".join(lines) + "\n"
    write_text(root / "table.md", text)
    print(text)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default="work/gtzan187", help="the joined gtzan_mini + gtzan_dev folder (make cv-recipe makes it)")
    p.add_argument("--rows", default=",".join(ALL), help=f"comma-separated rows (default: all, ensembles last): {', '.join(ALL)}")
    p.add_argument("--out", default=str(ROOT), help="experiments folder (default: runs/cv-recipe)")
    p.add_argument("--seeds", default=None, help="override the rows' seeds (e.g. 0 on a busy machine); the table shows what ran")
    p.add_argument("--table-only", action="store_true", help="write the table of the rows already run")
    args = p.parse_args()
    root = Path(args.out)
    if not args.table_only:
        unknown = [r for r in args.rows.split(",") if r not in ALL]
        if unknown:
            raise UserError(f"--rows: unknown row {unknown[0]!r}; choose from {', '.join(ALL)}")
        for name in args.rows.split(","):
            run_row(name, args.data_dir, root, args.seeds)
    table(root)


if __name__ == "__main__":
    run_cli(main)
