"""What main.py does: find the caches a model needs, make run folders, train, test, and repeat
over seeds or folds with a mean ± std summary.

    runs/<model>-<time>/            one run: config.json, train.log, metrics.json, best.pt, last.pt,
                                    history.csv, curves.png (runlog.py), confusion.png
    runs/<model>-<time>/            + data.json (the pinned clips, see rundata.py), predictions.json
                                    (per test clip: id, true and predicted genre, probabilities)
    runs/<name>/seed<S>[-fold<K>]/  one run each when --seeds or --folds repeat it; experiment.json
                                    (the plan, for --resume), results.json, results.md and
                                    curves.png (the runs overlaid) beside them
"""
import contextlib
import functools
import json
import logging
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from . import checkpoint, rundata, runlog
from . import data as D
from .clips import empty_genres
from .device import dist_info
from .errors import UserError
from .groups import grouped_folds, groups_for
from .identity import check_caches, open_cache
from .io import write_json
from .lock import hold_folder
from .plots import save_confusion
from .results import result_row, retested, run_stats, summarize, with_groups
from .stats import over
from .train import TrainConfig, divergence_message, fit, seed_everything, test

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


def open_caches(inputs, featurizers, cache_root, data_dir=None, split_dir=None, make=None):
    """{input: cache dir} for a model's declared inputs, made from the audio in `data_dir`;
    featurizers maps input name -> featurizer, `make` input name -> the dataset.py command that
    makes its cache (for the error when it is missing). UserError for a missing cache (or data
    folder), a cache built from other split lists than split_dir's, or from audio that changed
    since (identity.check_caches)."""
    try:
        caches = {name: open_cache(cache_root, featurizers[name](), data_dir, make and make(name)) for name in inputs}
    except UserError:
        if data_dir is not None and not Path(data_dir).is_dir():  # the likelier mistake: say that one
            raise UserError(f"--data-dir {data_dir}: no such folder (and no cache for it under {cache_root})") from None
        raise
    check_caches(caches, split_dir, data_dir)
    return caches


def dataset_command(args, name):
    """The dataset.py command line that makes input `name`'s cache for these parsed flags: the
    paths, --features, and every feature flag of its spec (and MelSpec's grid) not at its default."""
    import shlex
    from dataclasses import fields

    from .featurizers import FEATURIZERS

    words = ["python", "dataset.py", "--data-dir", str(args.data_dir)]
    if args.work_dir:
        words += ["--work-dir", str(args.work_dir)]
    if name != "mel":
        words += ["--features", name]
    specs = [FEATURIZERS["mel"].Spec] + ([FEATURIZERS[name].Spec] if name != "mel" else [])
    for f in (f for spec in specs for f in fields(spec)):
        value, flag = getattr(args, f.name, f.default), "--" + f.name.replace("_", "-")
        if value == f.default:
            continue
        if isinstance(value, bool):
            words.append(flag if value else "--no-" + flag[2:])
        else:
            words += [flag, ",".join(map(str, value)) if isinstance(value, tuple) else str(value)]
    return shlex.join(words)


def load_data(caches, assignment=None, need_train=True, augment=True, run_dir=None, pinned=None):
    """Data for {part: [clip id]} (default: the cached split), or for a run's pinned clips
    (`pinned`, from run_dir/data.json). Test-only runs skip train/val. Returns (Data, pinned dict):
    `augment` False trains on original clips only. Each index.json is read once (rundata.py)."""
    parts = ("train", "val", "test") if need_train else ("test",)
    indexes = None
    if pinned is None:
        indexes = rundata.read_indexes(caches)
        first = next(iter(indexes.values()))
        if assignment is None:  # k-fold plans say it once (kfold_assignments)
            rundata.skipped(indexes, say=log.info)
        pinned = rundata.pin(indexes, assignment or first.splits, first.genres, ("train",) if augment else (),
                             say=log.info)
    loaded = rundata.load(run_dir, pinned, parts, indexes, say=log.info)
    features = {n: c["spec"] for n, c in pinned["caches"].items()}
    shape = {n: tuple(a.shape[1:]) for n, a in loaded["test"].x.items()}
    return Data(rundata.caches_of(pinned), features, pinned["genres"], shape, loaded.get("train"), loaded.get("val"),
                loaded["test"]), pinned


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


def _held(fn):
    """`fn(cfg, caches, folder, ...)` with its run or experiment folder held by rank 0 while it runs
    (lock.hold_folder: a second main.py on the folder is refused in one line), released when it
    returns or raises, and by the OS if the process dies."""
    @functools.wraps(fn)
    def holding(cfg, caches, folder, *args, **kwargs):
        with hold_folder(folder) if dist_info()[0] == 0 else contextlib.nullcontext():
            return fn(cfg, caches, folder, *args, **kwargs)
    return holding


@_held
def run(cfg, caches, run_dir, do_train=True, do_test=True, resume=False, assignment=None, extra_config=None,
        augment=True, test_if_interrupted=True, groups_file=None):
    """One run in `run_dir`. Returns its metrics dict ("interrupted": True after Ctrl+C; the test
    is then skipped unless `test_if_interrupted`). A run folder with data.json, when resumed or
    re-tested, loads its pinned clips (see rundata.py), whatever the split files say now. The test
    CI resamples the artists of the test clips (`groups_file`, else GTZAN's; see run_stats)."""
    rank, _, _ = dist_info()
    setup_logging(run_dir)
    seed_everything(cfg.seed)
    pinned = rundata.read(run_dir) if (resume or not do_train) else None
    if pinned is None and not do_train:
        log.info(f"{run_dir} has no {rundata.NAME} (made before runs pinned their data): testing on the cache's test split")
    elif pinned is not None and not resume:  # test only: feature flags that differ from the run's are a mistake
        checkpoint.check_features({"features": {n: c["spec"] for n, c in pinned["caches"].items()}},
                                  {n: rundata.read_index(c).spec for n, c in caches.items()}, run_dir / "best.pt")
    data, pinned = load_data(caches, assignment, need_train=do_train, augment=augment, run_dir=run_dir, pinned=pinned)
    gaps = empty_genres(pinned["parts"], pinned["genres"]) if do_train else {}
    if gaps:  # such a genre cannot be learned (test recall 0 by construction) or weigh in choosing the best epoch
        raise UserError(f"{'; '.join(gaps.values())}: give it clips in every part (split_data.py --split random, or "
                        f"--val-per-class), or leave it out (split_data.py --genres)")
    metrics_path = run_dir / "metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.exists() else {}
    if do_train and not resume:  # a fresh training: nothing of an earlier model may survive here
        metrics = {}
        for name in TEST_FILES if rank == 0 else ():
            (run_dir / name).unlink(missing_ok=True)
    if do_train:
        if rank == 0 and not resume:
            rundata.write(run_dir, pinned)
            write_json(run_dir / "config.json", {"train": asdict(cfg), "features": data.features,
                                                 "caches": {k: str(v) for k, v in data.caches.items()},
                                                 "genres": data.genres, "groups": groups_file, **(extra_config or {})})
        log.info(f"{cfg.model}: {len(data.train)} train / {len(data.val)} val segments "
                 f"({len(data.train.clip_ids)} / {len(data.val.clip_ids)} clips), {len(data.genres)} genres -> {run_dir}")
        state = fit(cfg, data, run_dir, resume=resume)
        if rank == 0:
            runlog.run_end(run_dir, state["history"], f"{cfg.model}: {run_dir.name}")
        metrics = {k: v for k, v in metrics.items() if not k.startswith("diverged")}
        metrics.update(history=state["history"], best_val_clip_accuracy=state["best"], epochs_run=state["epoch"],
                       interrupted=state.get("interrupted", False), **diverged_fields(state))
        if "rank_weight_hashes" in state:
            metrics["rank_weight_hashes"] = state["rank_weight_hashes"]
    if do_test and rank == 0 and not metrics.get("diverged") and (test_if_interrupted or not metrics.get("interrupted")):
        scored = test(run_dir, data, cfg.device, hop=cfg.test_hop)
        if groups_file is None and (run_dir / "config.json").exists():  # re-tested alone: the groups it ran with
            groups_file = json.loads((run_dir / "config.json").read_text()).get("groups")
        predictions = with_groups(scored.pop("predictions"), groups_file)
        write_json(run_dir / "predictions.json", predictions)
        metrics.update(scored, **run_stats(predictions))
        ci = metrics["test_clip_accuracy_ci95"]
        save_confusion(metrics["confusion_matrix"], data.genres, run_dir / "confusion.png",
                       f"{cfg.model}: test clip accuracy {metrics['test_clip_accuracy']:.3f}")
        unit = over(metrics["test_ci_resampled"], metrics["test_artists"], predictions["groups"])
        metrics["test_clips_sharing_train_artist"] = shared = shared_artists(predictions, pinned["parts"]["train"], groups_file)
        log.info(f"test: clip accuracy {metrics['test_clip_accuracy']:.3f} (95% CI {ci[0]:.3f}-{ci[1]:.3f}, bootstrap "
                 f"over {unit}), segment accuracy {metrics['test_segment_accuracy']:.3f}, macro-F1 "
                 f"{metrics['test_macro_f1']:.3f} (over the {metrics['test_macro_f1_genres']} genres present) "
                 f"on {metrics['test_clips']} clips")
        if shared:  # the split knows: its train and test parts share artists (GTZAN's course split does not)
            log.info(f"note: {shared} test clips share an artist with training clips: this accuracy is optimistic "
                     f"(see docs/splits-and-evaluation.md)")
        width = max(10, *map(len, data.genres))
        for g in data.genres:
            r = metrics["test_per_class"][g]
            log.info(f"  {g:{width}s} precision {r['precision']:.2f} recall {r['recall']:.2f} f1 {r['f1-score']:.2f} n={r['support']:.0f}")
        log.info(f"confusion matrix: {run_dir / 'confusion.png'}")
    if rank == 0:
        write_json(metrics_path, metrics)
    return metrics


def shared_artists(predictions, train_ids, groups_file=None):
    """How many test clips (predictions, with groups) have a known artist that training clips
    `train_ids` have too (groups.groups_for): artist overlap that makes test accuracy optimistic."""
    usable = groups_file if groups_file and Path(groups_file).is_file() else None
    trained = {g for g in groups_for(train_ids, usable)[0] if not g.startswith("clip:")} if train_ids else set()
    return sum(g in trained for g in predictions["groups"])


def diverged_fields(state):
    """metrics.json's record of a diverged run: {"diverged": True, "diverged_epoch", "diverged_at"
    (which loss, its value), "diverged_message"}; False for the others (a resumed run's old record
    is overwritten)."""
    d = state.get("diverged")
    return {"diverged": True, "diverged_epoch": d["epoch"], "diverged_at": d["what"],
            "diverged_message": divergence_message(state)} if d else {"diverged": False}


def new_run_dir(model, out=None):
    return Path(out) if out else Path("runs") / f"{model}-{time.strftime('%Y%m%d-%H%M%S')}"


# what a run or an experiment leaves in its folder; a folder holding none of them (train.log and
# .lock of a start that failed) may be trained into
RUN_FILES = ("best.pt", "metrics.json", "config.json", "last.pt", "data.json", "predictions.json")
# what a test leaves: a fresh training in a folder removes them, so they never describe another model
TEST_FILES = ("predictions.json", "confusion.png", "results.json", "results.md")


def check_new_folder(folder):
    """Refuse, in one line naming the ways on, to train into `folder` when it already holds a run
    or an experiment: training over it would leave the old test files beside the new model."""
    folder = Path(folder)
    if (folder / EXPERIMENT).exists():
        raise UserError(f"{folder}: holds an experiment already: continue it with main.py --resume {folder}, or train "
                        f"into another --out (or delete the folder)")
    found = [name for name in RUN_FILES + ("results.json",) if (folder / name).exists()]
    if not found:
        return
    if "best.pt" not in found and checkpoint.diverged_message(folder):
        raise UserError(f"{folder}: holds a run that diverged (see its metrics.json): train into another --out "
                        f"with a lower --lr (or delete the folder)")
    raise UserError(f"{folder}: holds a run already (its {found[0]}): continue it with main.py --resume {folder}, "
                    f"test it with main.py --do_test --out {folder}, train into another --out, or delete the folder")


def kfold_assignments(caches, k, seed, groups_file=None, val_per_class=1):
    """Stratified k folds over every cached clip, grouped by artist when artists are known
    (groups.py): each fold is the test set once, and about `val_per_class` clips per genre of the
    rest (whole artists) are held out for model selection. Returns (folds, where groups came from)."""
    index = rundata.read_index(next(iter(caches.values())))
    rundata.skipped({"": index}, say=log.info)
    clips = sorted((cid, c["genre"]) for cid, c in index.entries.items())
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


@_held
def repeat(cfg, caches, root, seeds=(), folds=0, groups_file=None, resume=False):
    """Repeat a run over seeds and/or folds; write root/results.json and root/results.md.
    Ctrl+C stops the whole experiment: the current run keeps best.pt and is marked interrupted
    (left out of mean ± std), then KeyboardInterrupt goes on up (exit code 130). A run that
    diverges stops it too (marked diverged, not counted), with a UserError naming the run, the
    epoch and the remedy (a lower --lr, in a new experiment). `resume` continues from
    root/experiment.json: finished runs are kept, the interrupted one resumes."""
    rank, _, _ = dist_info()
    root = Path(root)
    setup_logging(root)  # root/train.log: how folds were made, and where the experiment stopped
    if resume:
        exp = json.loads((root / EXPERIMENT).read_text())
        jobs, folds, seeds, groups_file = exp["jobs"], exp["folds"], exp["seeds"], exp.get("groups")
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
                m = retested(run_dir, done, groups_file)
            else:
                again = resume and (run_dir / "last.pt").exists()
                m = run(c, caches, run_dir, resume=again, assignment=job["assignment"], augment=not folds,
                        extra_config={"assignment": job["assignment"]}, test_if_interrupted=False,
                        groups_file=groups_file)
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
        if m.get("diverged"):  # the other runs share its --lr: they would most likely diverge too
            stopped = f"{run_dir}: {m['diverged_message']} The experiment stops here; its other runs were not trained."
            log.info(stopped)
            break
    summary = summarize(root, cfg.model, rows, groups_file, folds=folds, seeds=list(seeds or [cfg.seed])) if rank == 0 else None
    if rank == 0:
        runlog.experiment_curves(root, [job["name"] for job in jobs], f"{cfg.model}: {root.name}, {len(jobs)} runs")
    if stopped is True:
        raise KeyboardInterrupt
    if stopped:
        raise UserError(stopped)
    return summary
