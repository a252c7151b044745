"""Step 3: train a model from model/ on the cached features, and score it on the test split.

    python main.py --model base2dcnn --epochs 30 --do_train --do_test
    python main.py --model base2dcnn --do_test --out runs/base2dcnn-20261125-130000
    python main.py --model q1 --folds 5 --seeds 0,1,2      # mean ± std over folds and seeds
    torchrun --nproc_per_node 2 main.py --model base2dcnn  # DistributedDataParallel
"""
import argparse
import json
from dataclasses import fields, replace
from pathlib import Path

from genreclf import checkpoint
from genreclf.config import add_flags, from_args
from genreclf.errors import UserError, run_cli
from genreclf.experiment import new_run_dir, newest_run, open_caches, repeat, result_row, run, summarize
from genreclf.featurizers import FEATURIZERS
from genreclf.paths import add_path_flags, cache_root
from genreclf.train import TrainConfig, dist_info
from model import inputs_of


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_path_flags(p)
    add_flags(p, TrainConfig)
    for featurizer in FEATURIZERS.values():
        add_flags(p, featurizer.Spec)
    p.add_argument("--out", default=None, help="run folder (default: runs/<model>-<time>)")
    p.add_argument("--do_train", "--do-train", action="store_true", help="train (the default when --do_test is not given)")
    p.add_argument("--do_test", "--do-test", action="store_true", help="score the run's best.pt on the test split")
    p.add_argument("--resume", default=None, metavar="RUN_DIR", help="continue an interrupted run from its last.pt")
    p.add_argument("--seeds", default=None, help="comma-separated seeds: repeat the run, report mean ± std")
    p.add_argument("--folds", type=int, default=0, help="stratified k-fold cross-validation by track")
    args = p.parse_args()

    cfg = from_args(TrainConfig, args)
    featurizers = {name: (lambda f=f: f.from_args(args)) for name, f in FEATURIZERS.items()}
    if args.resume:
        run_dir = Path(args.resume)
        if not (run_dir / "config.json").exists():
            raise UserError(f"{run_dir} is not a run folder (no config.json)")
        saved = json.loads((run_dir / "config.json").read_text())
        cfg = TrainConfig(**{f.name: saved["train"][f.name] for f in fields(TrainConfig)})
        caches = {k: Path(v) for k, v in saved["caches"].items()}
        run(cfg, caches, run_dir, do_train=True, do_test=args.do_test, resume=True)
        return
    do_train = args.do_train or not args.do_test
    if not do_train:  # test only: the checkpoint says which model, hence which caches
        run_dir = Path(args.out) if args.out else newest_run(cfg.model)
        if run_dir is None or not (run_dir / "best.pt").exists():
            raise UserError(f"--do_test needs a trained checkpoint: none at {run_dir or f'runs/{cfg.model}-*'}/best.pt "
                            f"(train one first, or pass --out RUN_DIR)")
        cfg = replace(cfg, model=checkpoint.read(run_dir / "best.pt")["model"])
    caches = open_caches(inputs_of(cfg.model), featurizers, cache_root(args))
    if args.seeds or args.folds:
        seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else []
        repeat(cfg, caches, new_run_dir(cfg.model, args.out), seeds, args.folds)
        return
    if do_train:
        run_dir = new_run_dir(cfg.model, args.out)
    metrics = run(cfg, caches, run_dir, do_train=do_train, do_test=args.do_test)
    if args.do_test and dist_info()[0] == 0:
        summarize(run_dir, cfg.model, [result_row(run_dir.name, cfg.seed, metrics)])


if __name__ == "__main__":
    run_cli(main)
