"""What main.py does: find the caches a model needs, make run folders, train, test, and repeat
over seeds or folds with a mean ± std summary.

    runs/<model>-<time>/            one run: config.json, train.log, metrics.json, best.pt, last.pt,
                                    confusion.png
    runs/<model>-<time>/            + data.json (the pinned clips, see rundata.py), predictions.json
                                    (per test clip: id, true and predicted genre, probabilities)
    runs/<name>/seed<S>[-fold<K>]/  one run each when --seeds or --folds repeat it; experiment.json
                                    (the plan, for --resume), results.json and results.md beside them
"""
import json
import logging
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from . import checkpoint, rundata
from . import data as D
from .extract import open_cache
from .groups import grouped_folds, groups_for
from .io import write_json, write_text
from .metrics import bootstrap_ci, pooled_predictions, save_confusion
from .device import dist_info
from .train import TrainConfig, fit, seed_everything, test

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


def add_training_flags(p):
    """The flags of a training run: data and work paths, TrainConfig and every featurizer's spec
    (main.py and `python -m genreclf.pretrained` take the same ones)."""
    from .config import add_flags
    from .featurizers import FEATURIZERS
    from .paths import add_path_flags

    add_path_flags(p)
    add_flags(p, TrainConfig)
    for featurizer in FEATURIZERS.values():
        add_flags(p, featurizer.Spec)


def open_caches(inputs, featurizers, cache_root):
    """{input: cache dir} for a model's declared inputs; featurizers maps input name -> featurizer."""
    return {name: open_cache(cache_root, featurizers[name]()) for name in inputs}


def load_data(caches, assignment=None, need_train=True, augment=True, run_dir=None, pinned=None):
    """Data for {part: [clip id]} (default: the cached split), or for a run's pinned clips
    (`pinned`, from run_dir/data.json). Test-only runs skip train/val. Returns (Data, pinned dict):
    `augment` False trains on original clips only."""
    parts = ("train", "val", "test") if need_train else ("test",)
    if pinned is None:
        first = next(iter(caches.values()))
        assignment = assignment or D.split_ids(first)
        pinned = rundata.pin(caches, assignment, D.genres_of(first), ("train",) if augment else ())
    caches = rundata.caches_of(pinned)
    loaded = rundata.load(run_dir, pinned, parts, say=log.info)
    features = {n: c["spec"] for n, c in pinned["caches"].items()}
    shape = {n: tuple(a.shape[1:]) for n, a in loaded["test"].x.items()}
    return Data(caches, features, pinned["genres"], shape, loaded.get("train"), loaded.get("val"), loaded["test"]), pinned


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


def run(cfg, caches, run_dir, do_train=True, do_test=True, resume=False, assignment=None, extra_config=None,
        augment=True, test_if_interrupted=True):
    """One run in `run_dir`. Returns its metrics dict ("interrupted": True after Ctrl+C; the test
    is then skipped unless `test_if_interrupted`). A run folder with data.json, when resumed or
    re-tested, loads its pinned clips (see rundata.py), whatever the split files say now."""
    rank, _, _ = dist_info()
    setup_logging(run_dir)
    seed_everything(cfg.seed)
    pinned = rundata.read(run_dir) if (resume or not do_train) else None
    if pinned is None and not do_train:
        log.info(f"{run_dir} has no {rundata.NAME} (made before runs pinned their data): testing on the cache's test split")
    elif pinned is not None and not resume:  # test only: feature flags that differ from the run's are a mistake
        checkpoint.check_features({"features": {n: c["spec"] for n, c in pinned["caches"].items()}},
                                  {n: D.read_index(c)["spec"] for n, c in caches.items()}, run_dir / "best.pt")
    data, pinned = load_data(caches, assignment, need_train=do_train, augment=augment, run_dir=run_dir, pinned=pinned)
    metrics_path = run_dir / "metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.exists() else {}
    if do_train:
        if rank == 0 and not resume:
            rundata.write(run_dir, pinned)
            write_json(run_dir / "config.json", {"train": asdict(cfg), "features": data.features,
                                                 "caches": {k: str(v) for k, v in data.caches.items()},
                                                 "genres": data.genres, **(extra_config or {})})
        log.info(f"{cfg.model}: {len(data.train)} train / {len(data.val)} val segments "
                 f"({len(data.train.clip_ids)} / {len(data.val.clip_ids)} clips), {len(data.genres)} genres -> {run_dir}")
        state = fit(cfg, data, run_dir, resume=resume)
        metrics.update(history=state["history"], best_val_clip_accuracy=state["best"], epochs_run=state["epoch"],
                       interrupted=state.get("interrupted", False))
        if "rank_weight_hashes" in state:
            metrics["rank_weight_hashes"] = state["rank_weight_hashes"]
    if do_test and rank == 0 and (test_if_interrupted or not metrics.get("interrupted")):
        scored = test(run_dir, data, cfg.device, hop=cfg.test_hop)
        predictions = scored.pop("predictions")
        write_json(run_dir / "predictions.json", predictions)
        metrics.update(scored)
        ci = metrics["test_clip_accuracy_ci95"]
        save_confusion(metrics["confusion_matrix"], data.genres, run_dir / "confusion.png",
                       f"{cfg.model}: test clip accuracy {metrics['test_clip_accuracy']:.3f}")
        log.info(f"test: clip accuracy {metrics['test_clip_accuracy']:.3f} (95% CI {ci[0]:.3f}-{ci[1]:.3f}, bootstrap "
                 f"over clips), segment accuracy {metrics['test_segment_accuracy']:.3f}, macro-F1 "
                 f"{metrics['test_macro_f1']:.3f} on {metrics['test_clips']} clips")
        for g in data.genres:
            r = metrics["test_per_class"][g]
            log.info(f"  {g:10s} precision {r['precision']:.2f} recall {r['recall']:.2f} f1 {r['f1-score']:.2f} n={r['support']:.0f}")
        log.info(f"confusion matrix: {run_dir / 'confusion.png'}")
    if rank == 0:
        write_json(metrics_path, metrics)
    return metrics


def new_run_dir(model, out=None):
    return Path(out) if out else Path("runs") / f"{model}-{time.strftime('%Y%m%d-%H%M%S')}"


def kfold_assignments(caches, k, seed, groups_file=None, val_per_class=1):
    """Stratified k folds over every cached clip, grouped by artist when artists are known
    (groups.py): each fold is the test set once, and about `val_per_class` clips per genre of the
    rest (whole artists) are held out for model selection. Returns (folds, where groups came from)."""
    first = next(iter(caches.values()))
    index = D.read_index(first)
    clips = sorted({(c["id"], c["genre"]) for part in index["splits"].values() for c in part})
    ids, genres = [c[0] for c in clips], [c[1] for c in clips]
    labels, source = groups_for(ids, groups_file)
    return grouped_folds(ids, genres, labels, k, seed, val_per_class, say=log.info), source


EXPERIMENT = "experiment.json"


def plan(cfg, caches, seeds=(), folds=0, groups_file=None):
    """The jobs of an experiment: [{"name", "seed", "assignment"}] (assignment None: the cache's split)."""
    jobs = []
    for seed in seeds or [cfg.seed]:
        if folds:
            assignments, source = kfold_assignments(caches, folds, seed, groups_file)
            log.info(f"--folds {folds}, seed {seed}: {source}")
            jobs += [{"name": f"seed{seed}-fold{k}", "seed": seed, "assignment": a} for k, a in enumerate(assignments)]
        else:
            jobs.append({"name": f"seed{seed}", "seed": seed, "assignment": None})
    return jobs


def repeat(cfg, caches, root, seeds=(), folds=0, groups_file=None, resume=False):
    """Repeat a run over seeds and/or folds; write root/results.json and root/results.md.
    Ctrl+C stops the whole experiment: the current run keeps best.pt and is marked interrupted
    (left out of mean ± std), then KeyboardInterrupt goes on up (exit code 130). `resume`
    continues from root/experiment.json: finished runs are kept, the interrupted one resumes."""
    rank, _, _ = dist_info()
    root = Path(root)
    setup_logging(root)  # root/train.log: how folds were made, and where the experiment stopped
    if resume:
        exp = json.loads((root / EXPERIMENT).read_text())
        jobs, folds, seeds = exp["jobs"], exp["folds"], exp["seeds"]
    else:
        jobs = plan(cfg, caches, seeds, folds, groups_file)
        if rank == 0:
            write_json(root / EXPERIMENT, {"train": asdict(cfg), "caches": {k: str(v) for k, v in caches.items()},
                                           "folds": folds, "seeds": list(seeds), "groups": groups_file,
                                           "command": " ".join(sys.argv), "jobs": jobs})
    if folds:  # cache's train clips have augmented copies, the others not: same footing for all
        log.info("k-fold: every fold trains on original clips only (the cache has augmented copies for its own "
                 "train split only, which would weight those clips more)")
    rows, stopped = [], False
    for job in jobs:
        run_dir, c = root / job["name"], replace(cfg, seed=job["seed"])
        done = json.loads((run_dir / "metrics.json").read_text()) if (run_dir / "metrics.json").exists() else {}
        try:
            if resume and "test_clip_accuracy" in done and not done.get("interrupted"):
                m = done
            else:
                again = resume and (run_dir / "last.pt").exists()
                m = run(c, caches, run_dir, resume=again, assignment=job["assignment"], augment=not folds,
                        extra_config={"assignment": job["assignment"]}, test_if_interrupted=False)
        except KeyboardInterrupt:
            m = {**done, "interrupted": True}
            if rank == 0 and run_dir.exists():
                write_json(run_dir / "metrics.json", m)
        if rank == 0:
            rows.append(result_row(job["name"], c.seed, m, counted=not m.get("interrupted")))
        if m.get("interrupted"):
            stopped = True
            log.info(f"stopped by Ctrl+C in {job['name']}: the experiment stops here "
                     f"(continue it with: python main.py --resume {root})")
            break
    summary = summarize(root, cfg.model, rows, folds=folds, seeds=list(seeds or [cfg.seed])) if rank == 0 else None
    if stopped:
        raise KeyboardInterrupt
    return summary


def result_row(name, seed, metrics, counted=True):
    """One line of results.json: a run's test scores, "interrupted" (Ctrl+C), and "counted" (in
    mean ± std: False for a multi-run experiment's interrupted, untested run)."""
    counted = counted and "test_clip_accuracy" in metrics
    keys = ("test_clip_accuracy", "test_clip_accuracy_ci95", "test_segment_accuracy", "test_macro_f1", "test_clips")
    return {"run": name, "seed": seed, "interrupted": bool(metrics.get("interrupted")), "counted": counted,
            **({k: metrics.get(k) for k in keys} if counted else {})}


def _num(x):
    """A score in a table: 3 decimals, or "-" where a run has none (an ensemble's segment accuracy)."""
    return "-" if x is None else f"{x:.3f}"


def summarize(root, model, rows, **extra):
    """Every experiment's summary: root/results.json (test clip accuracy of each run with its 95%
    bootstrap CI over clips; mean ± std over runs when there are several; interrupted runs listed
    but left out) and root/results.md. Returns the summary dict."""
    done = [r for r in rows if r["counted"]]
    acc = np.array([r["test_clip_accuracy"] for r in done])
    summary = {"model": model, "runs": rows, "n": len(done), "n_not_counted": len(rows) - len(done), **extra,
               "command": " ".join(sys.argv)}
    if len(done) > 1:
        summary.update(test_clip_accuracy_mean=float(acc.mean()), test_clip_accuracy_std=float(acc.std(ddof=1)))
    elif done:
        summary.update(test_clip_accuracy=done[0]["test_clip_accuracy"], test_clip_accuracy_ci95=done[0]["test_clip_accuracy_ci95"])
    table = ["| run | seed | test clip acc (95% CI) | test segment acc | macro-F1 | clips |", "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        if not r["counted"]:
            table.append(f"| {r['run']} | {r['seed']} | interrupted, not tested (not counted) | | | |")
            continue
        lo, hi = r["test_clip_accuracy_ci95"]
        table.append(f"| {r['run']}{' (stopped by Ctrl+C)' if r['interrupted'] else ''} | {r['seed']} | "
                     f"{r['test_clip_accuracy']:.3f} ({lo:.3f}-{hi:.3f}) | "
                     f"{_num(r['test_segment_accuracy'])} | {r['test_macro_f1']:.3f} | {r['test_clips']} |")
    if len(done) > 1:
        table.append(f"| **mean ± std over {len(done)} runs** | | **{summary['test_clip_accuracy_mean']:.3f} ± "
                     f"{summary['test_clip_accuracy_std']:.3f}** | | | |")
        pooled = pooled_predictions(root, [r["run"] for r in done])
        if pooled:
            correct = np.array(pooled["true"]) == np.array(pooled["pred"])
            lo, hi = bootstrap_ci(correct)
            summary["pooled"] = {"clips": len(correct), "test_clip_accuracy": float(correct.mean()), "ci95": [lo, hi]}
            table.append(f"| pooled test predictions | | {correct.mean():.3f} ({lo:.3f}-{hi:.3f}) | | | {len(correct)} |")
    write_json(root / "results.json", summary)
    write_text(root / "results.md", "\n".join(table) + "\n")
    log.info("\n" + "\n".join(table))
    return summary
