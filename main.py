"""Step 3: train a model from model/ on the cached features, and score it on the test split.

    python main.py --model base2dcnn --epochs 30 --do_train --do_test
    python main.py --model base2dcnn --do_test --out runs/base2dcnn-20261125-130000
    python main.py --model q1 --folds 5 --seeds 0,1,2      # mean ± std over folds and seeds
    python main.py --resume runs/q1-20261125-130000         # a run, or an experiment stopped by Ctrl+C
    python main.py --ensemble runs/cv-q2 runs/cv-base2dcnn --out runs/cv-ens   # mean of their clip probabilities
    torchrun --nproc_per_node 2 main.py --model base2dcnn  # DistributedDataParallel
"""
import argparse
import contextlib
import json
import shutil
import sys
from dataclasses import fields, replace
from pathlib import Path

from genreclf import checkpoint, ensemble, rundata, runlog
from genreclf.checkpoint import newest_run
from genreclf.config import NON_NEGATIVE, Range, checked, checked_tuple, from_args
from genreclf.device import dist_info
from genreclf.errors import UserError, run_cli
from genreclf.experiment import (add_training_flags, check_new_folder, dataset_command, new_run_dir, open_caches,
                                 repeat, run)
from genreclf.featurizers import FEATURIZERS
from genreclf.groups import read_groups_csv
from genreclf.paths import cache_root, split_dir
from genreclf.results import result_row, summarize
from genreclf.train import TrainConfig
from model import inputs_of


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_training_flags(p)
    p.add_argument("--out", default=None, help="run folder (default: runs/<model>-<time>)")
    p.add_argument("--do_train", "--do-train", action="store_true", help="train (the default when --do_test is not given)")
    p.add_argument("--do_test", "--do-test", action="store_true", help="score the run's best.pt on the test split")
    p.add_argument("--resume", default=None, metavar="RUN_DIR",
                   help="continue an interrupted run (from its last.pt and pinned data.json) or experiment (--folds/--seeds)")
    p.add_argument("--seeds", default=None, type=checked_tuple(int, NON_NEGATIVE),
                   help="comma-separated seeds: repeat the run, report mean ± std")
    p.add_argument("--folds", type=checked(int, Range(2, also=(0,))), default=0,
                   help="stratified k-fold cross-validation by track, grouped by artist when artists are known "
                        "(GTZAN file names, or --groups); trains on original clips only")
    p.add_argument("--groups", default=None, metavar="FILE",
                   help="CSV of `path,group` (path relative to DATA/wav): the artist groups of --folds, and of the "
                        "test CI of any run")
    p.add_argument("--tensorboard", default=None, metavar="DIR",
                   help="also log every epoch to TensorBoard event files under DIR (needs the tensorboard package)")
    p.add_argument("--ensemble", nargs="+", default=None, metavar="RUN",
                   help="average the clip probabilities of scored runs (or k-fold/seed experiments) on the same clips, "
                        "score it as a run in --out (genreclf/ensemble.py)")
    p.set_defaults(device=None)  # None: not given, so --resume keeps the run's saved device
    args = p.parse_args()
    runlog.use_tensorboard(args.tensorboard)  # refused in one line, before any work, without the package

    if args.ensemble:  # no training, no caches: the members' predictions.json
        if not args.out:
            raise UserError("--ensemble needs --out DIR, the folder of the ensemble's scores")
        print(ensemble.summary_line(ensemble.run(args.ensemble, args.out), args.out))
        return
    if args.groups:  # checked before any work: a run's CI resamples its artists too
        read_groups_csv(args.groups)
    cfg = from_args(TrainConfig, args, device=args.device or TrainConfig.device)
    for featurizer in FEATURIZERS.values():  # an unknown --layers name is an error whatever the model
        from_args(featurizer.Spec, args)
    featurizers = {name: (lambda f=f: f.from_args(args)) for name, f in FEATURIZERS.items()}
    if args.resume:
        run_dir = Path(args.resume)
        if not run_dir.is_dir():
            raise UserError(f"{run_dir}: no such run folder")
        config = run_dir / ("experiment.json" if (run_dir / "experiment.json").exists() else "config.json")
        if not config.exists():
            raise UserError(f"{run_dir} is not a run or experiment folder (no config.json or experiment.json)")
        saved = json.loads(config.read_text())
        # a field newer than the run folder takes its default: the behaviour the run was made with
        cfg = TrainConfig(**{f.name: saved["train"].get(f.name, f.default) for f in fields(TrainConfig)})
        given = [f.name for f in fields(TrainConfig) if f.name != "device"
                 and getattr(args, f.name) != f.default and getattr(args, f.name) != getattr(cfg, f.name)]
        if given:  # a flag that differs from both the default and the run: the user wanted a change
            print(f"note: {', '.join('--' + g.replace('_', '-') for g in given)} ignored: --resume continues with the "
                  f"settings in {config} (only --device may change)", file=sys.stderr)
        if args.device:  # the one setting a resume may change: where it runs
            cfg = replace(cfg, device=args.device)
        caches = {k: Path(v) for k, v in saved["caches"].items()}
        if config.name == "experiment.json":
            repeat(cfg, caches, run_dir, resume=True)
            return
        if not (run_dir / "last.pt").exists():
            raise UserError(f"{run_dir / 'last.pt'}: missing, nothing to resume (the run never finished an epoch)")
        diverged(run(cfg, caches, run_dir, do_train=True, do_test=args.do_test, resume=True))
        return
    do_train = args.do_train or not args.do_test
    if not do_train:  # test only: the checkpoint says which model, hence which caches
        run_dir = Path(args.out) if args.out else newest_run(cfg.model)
        why = checkpoint.diverged_message(run_dir) if run_dir is not None and not (run_dir / "best.pt").exists() else ""
        if why:
            raise UserError(f"{run_dir}: the run diverged, so it has no best.pt to test: {why}, into another --out")
        if run_dir is None or not (run_dir / "best.pt").exists():
            raise UserError(f"--do_test needs a trained checkpoint: none at {run_dir or f'runs/{cfg.model}-*'}/best.pt "
                            f"(train one first, or pass --out RUN_DIR)")
        cfg = replace(cfg, model=checkpoint.read(run_dir / "best.pt")["model"])
    try:
        caches = open_caches(inputs_of(cfg.model), featurizers, cache_root(args), args.data_dir, split_dir(args),
                             make=lambda name: dataset_command(args, name))
    except UserError:
        pinned = None if do_train else rundata.read(run_dir)
        if pinned is None:
            raise
        # test only, and these flags name no cache: the run's pinned caches are the ones it was made from
        caches = rundata.caches_of(pinned)
        missing = [str(c) for c in caches.values() if not (c / "index.json").exists()]
        if missing:
            raise UserError(f"{run_dir / 'data.json'}: its caches {', '.join(missing)} are gone: rerun dataset.py "
                            f"with the run's feature flags (see {run_dir / 'config.json'})") from None
        print(f"note: using the caches pinned in {run_dir / 'data.json'}", file=sys.stderr)
    if do_train:
        run_dir = new_run_dir(cfg.model, args.out)
        if dist_info()[0] == 0:  # rank 0 alone: the others would find the config.json rank 0 just wrote
            check_new_folder(run_dir)
    with removed_if_failed(run_dir if do_train else None):
        if args.seeds or args.folds:
            repeat(cfg, caches, run_dir, list(args.seeds or []), args.folds, args.groups)
            return
        metrics = diverged(run(cfg, caches, run_dir, do_train=do_train, do_test=args.do_test, groups_file=args.groups))
    if args.do_test and dist_info()[0] == 0:
        summarize(run_dir, cfg.model, [result_row(run_dir.name, cfg.seed, metrics)], args.groups)


def diverged(metrics):
    """metrics, or the one line of a run that diverged (its metrics.json says so too)."""
    if metrics.get("diverged"):
        raise UserError(metrics["diverged_message"])
    return metrics


# what a start that failed before its first epoch leaves in a folder it made
FAILED_START = {"train.log", ".lock", "config.json", "data.json"}


@contextlib.contextmanager
def removed_if_failed(folder):
    """Remove `folder` when the code in the block fails (a bad flag, too many folds, a damaged cache)
    and the folder is one this start made and holds nothing a training wrote (FAILED_START): a
    failed start leaves no clutter. Ctrl+C is not a failure: it keeps what it has."""
    new = folder is not None and not Path(folder).exists() and dist_info()[0] == 0
    try:
        yield
    except Exception:
        if new and Path(folder).is_dir() and {p.name for p in Path(folder).iterdir()} <= FAILED_START:
            shutil.rmtree(folder, ignore_errors=True)
        raise


if __name__ == "__main__":
    run_cli(main, elsewhere="--out DIR for the run, --work-dir DIR for caches",
            again="rerun (continue a run with main.py --resume RUN_DIR)")
