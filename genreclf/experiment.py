"""What main.py does: find the caches a model needs, make run folders, train, test, and repeat
over seeds or folds with a mean ± std summary.

    runs/<model>-<time>/            one run: config.json, train.log, metrics.json, best.pt, last.pt,
                                    confusion.png
    runs/<name>/seed<S>/, fold<K>/  one run each when --seeds or --folds repeat it; results.json and
                                    results.md beside them
"""
import json
import logging
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from sklearn.model_selection import StratifiedKFold

from . import data as D
from .errors import UserError
from .extract import open_cache
from .io import write_json, write_text
from .metrics import save_confusion
from .train import dist_info, fit, seed_everything, test

log = logging.getLogger("genreclf")


@dataclass
class Data:
    caches: dict        # input name -> cache dir
    features: dict      # input name -> the spec that made its cache
    genres: list
    input_shape: dict   # input name -> shape of one segment
    train: D.FeatureSet
    val: D.FeatureSet
    test: D.FeatureSet


def open_caches(inputs, featurizers, cache_root):
    """{input: cache dir} for a model's declared inputs; featurizers maps input name -> featurizer."""
    return {name: open_cache(cache_root, featurizers[name]()) for name in inputs}


def load_data(caches, assignment=None, need_train=True):
    """Data for {part: [clip ids]} (default: the cached split). Test-only runs skip train/val."""
    first = next(iter(caches.values()))
    assignment = assignment or D.split_ids(first)
    genres = D.genres_of(first)
    parts = {p: D.load_clips(caches, assignment[p], genres, augmented=p == "train")
             for p in (("train", "val", "test") if need_train else ("test",))}
    features = {n: D.read_index(c)["spec"] for n, c in caches.items()}
    shape = {n: tuple(a.shape[1:]) for n, a in parts["test"].x.items()}
    return Data(caches, features, genres, shape, parts.get("train"), parts.get("val"), parts["test"])


def setup_logging(run_dir):
    rank, _, _ = dist_info()
    log.handlers.clear()
    log.setLevel(logging.INFO if rank == 0 else logging.WARNING)
    log.propagate = False
    handlers = [logging.StreamHandler(sys.stdout)]
    if rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(run_dir / "train.log"))
    for h in handlers:
        h.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
        log.addHandler(h)


def run(cfg, caches, run_dir, do_train=True, do_test=True, resume=False, assignment=None, extra_config=None):
    """One run in `run_dir`. Returns its metrics dict."""
    rank, _, _ = dist_info()
    setup_logging(run_dir)
    seed_everything(cfg.seed)
    data = load_data(caches, assignment, need_train=do_train)
    metrics_path = run_dir / "metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.exists() else {}
    if do_train:
        if rank == 0:
            write_json(run_dir / "config.json", {"train": asdict(cfg), "features": data.features,
                                                 "caches": {k: str(v) for k, v in caches.items()},
                                                 "genres": data.genres, **(extra_config or {})})
        log.info(f"{cfg.model}: {len(data.train)} train / {len(data.val)} val segments "
                 f"({len(data.train.clip_ids)} / {len(data.val.clip_ids)} clips), {len(data.genres)} genres -> {run_dir}")
        state = fit(cfg, data, run_dir, resume=resume)
        metrics.update(history=state["history"], best_val_clip_accuracy=state["best"], epochs_run=state["epoch"])
        if "rank_weight_hashes" in state:
            metrics["rank_weight_hashes"] = state["rank_weight_hashes"]
    if do_test and rank == 0:
        metrics.update(test(run_dir, data, cfg.device))
        save_confusion(metrics["confusion_matrix"], data.genres, run_dir / "confusion.png",
                       f"{cfg.model}: test clip accuracy {metrics['test_clip_accuracy']:.3f}")
        log.info(f"test: clip accuracy {metrics['test_clip_accuracy']:.3f}, segment accuracy "
                 f"{metrics['test_segment_accuracy']:.3f}, macro-F1 {metrics['test_macro_f1']:.3f} "
                 f"on {metrics['test_clips']} clips")
        for g in data.genres:
            r = metrics["test_per_class"][g]
            log.info(f"  {g:10s} precision {r['precision']:.2f} recall {r['recall']:.2f} f1 {r['f1-score']:.2f} n={r['support']:.0f}")
        log.info(f"confusion matrix: {run_dir / 'confusion.png'}")
    if rank == 0:
        write_json(metrics_path, metrics)
    return metrics


def new_run_dir(model, out=None):
    return Path(out) if out else Path("runs") / f"{model}-{time.strftime('%Y%m%d-%H%M%S')}"


def newest_run(model=None, root="runs"):
    runs = sorted(Path(root).glob("*/best.pt"), key=lambda p: p.stat().st_mtime)
    runs = [p for p in runs if model is None or p.parent.name.startswith(model)]
    return runs[-1].parent if runs else None


def kfold_assignments(caches, k, seed, val_per_class=1):
    """Stratified k folds by track over every cached clip: each fold is the test set once, and
    `val_per_class` clips per genre of the rest are held out for model selection."""
    first = next(iter(caches.values()))
    index = D.read_index(first)
    clips = sorted({(c["id"], c["genre"]) for part in index["splits"].values() for c in part})
    ids, genres = np.array([c[0] for c in clips]), np.array([c[1] for c in clips])
    if np.unique(genres, return_counts=True)[1].min() < k:
        raise UserError(f"--folds {k}: some genre has fewer than {k} clips")
    out = []
    for train_idx, test_idx in StratifiedKFold(k, shuffle=True, random_state=seed).split(ids, genres):
        rng = np.random.default_rng(seed)
        val = [i for g in sorted(set(genres[train_idx]))
               for i in rng.permutation(train_idx[genres[train_idx] == g])[:val_per_class]]
        train = sorted(set(train_idx) - set(val))
        out.append({"train": list(ids[train]), "val": list(ids[sorted(val)]), "test": list(ids[test_idx])})
    return out


def repeat(cfg, caches, root, seeds=(), folds=0):
    """Repeat a run over seeds and/or folds; write root/results.json and root/results.md."""
    jobs = []
    for seed in seeds or [cfg.seed]:
        if folds:
            for k, a in enumerate(kfold_assignments(caches, folds, seed)):
                jobs.append((f"seed{seed}-fold{k}", replace(cfg, seed=seed), a))
        else:
            jobs.append((f"seed{seed}", replace(cfg, seed=seed), None))
    rows = []
    for name, c, assignment in jobs:
        m = run(c, caches, root / name, assignment=assignment, extra_config={"assignment": assignment})
        rows.append(result_row(name, c.seed, m))
    return summarize(root, cfg.model, rows, folds=folds, seeds=list(seeds or [cfg.seed]))


def result_row(name, seed, metrics):
    return {"run": name, "seed": seed, **{k: metrics[k] for k in ("test_clip_accuracy", "test_segment_accuracy", "test_macro_f1")}}


def summarize(root, model, rows, **extra):
    """Every experiment's summary: root/results.json (mean ± std of test clip accuracy, the command
    that made it) and root/results.md (a line per run). Returns the summary dict."""
    acc = np.array([r["test_clip_accuracy"] for r in rows])
    summary = {"model": model, "runs": rows, "n": len(rows), **extra,
               "test_clip_accuracy_mean": float(acc.mean()), "test_clip_accuracy_std": float(acc.std(ddof=1)) if len(acc) > 1 else 0.0,
               "command": " ".join(sys.argv)}
    write_json(root / "results.json", summary)
    table = ["| run | seed | test clip acc | test segment acc | macro-F1 |", "|---|---:|---:|---:|---:|"]
    table += [f"| {r['run']} | {r['seed']} | {r['test_clip_accuracy']:.3f} | {r['test_segment_accuracy']:.3f} | "
              f"{r['test_macro_f1']:.3f} |" for r in rows]
    table.append(f"| **mean ± std** | | **{summary['test_clip_accuracy_mean']:.3f} ± {summary['test_clip_accuracy_std']:.3f}** | | |")
    write_text(root / "results.md", "\n".join(table) + "\n")
    log.info("\n" + "\n".join(table))
    return summary
