"""Issue 21's layer-set exploration: scikit-learn heads on column slices of one musicnn cache.

    OMP_NUM_THREADS=1 python docs/musicnn_layer_probe.py --data-dir work/gtzan187 \
        --cache work/gtzan187/cache/musicnn-<hash>-<data id> --sets L5,L4std --heads svm,logreg

The cache must hold layers max_pool,mean_pool,penultimate,taggram with --patch-stats mean,std,max
(a superset): each layer set below is a choice of its columns, so one extraction serves every set.
Heads, folds (main.py --folds 5, artist-grouped, seeds 0,1,2: the same folds as recipe_table.py),
training on the fold's train part and clip scoring (mean of segment softmax) are main.py's; only
the columns are sliced here instead of cached apart. Prints per set and head: pooled clip accuracy
and macro-F1 of each seed (every clip once), their mean ± std over seeds, and McNemar's exact test
against today's musicnn_svm (max_pool means, SVM) on seed 0, computed on --base-cache (default:
--cache). Exploration only: the table's rows run main.py.
"""
import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root
from genreclf import musicnn  # noqa: E402
from genreclf.data import read_index  # noqa: E402
from genreclf.experiment import kfold_assignments  # noqa: E402
from genreclf.rundata import load_clips  # noqa: E402
from model import build  # noqa: E402

LAYERS = ("max_pool", "mean_pool", "penultimate", "taggram")  # the superset cache's layers, each x (mean, std, max)
STATS = ("mean", "std", "max")


def columns(layer, stat):
    """Column indices of (layer, stat) in the superset vector; MAPS layers are their max_pool and mean_pool slices."""
    offsets, at = {}, 0
    for name in LAYERS:
        for s in STATS:
            offsets[name, s] = at
            at += musicnn.LAYERS[name]
    if layer in musicnn.MAPS:
        a, b = musicnn.MAPS[layer]
        return np.r_[offsets["max_pool", stat] + np.arange(a, b), offsets["mean_pool", stat] + np.arange(a, b)]
    return offsets[layer, stat] + np.arange(musicnn.LAYERS[layer])


SETS = {  # name: [(layer, stat)]
    "base": [("max_pool", "mean")],
    "L5": [("max_pool", "mean"), ("mean_pool", "mean"), ("penultimate", "mean"), ("taggram", "mean"), ("max_pool", "std")],
    "L4": [(n, "mean") for n in LAYERS],
    "L4std": [(n, s) for n in LAYERS for s in ("mean", "std")],
    "L4all": [(n, s) for n in LAYERS for s in STATS],
    "pen_tag": [("penultimate", "mean"), ("taggram", "mean")],
    "pen_tag_std": [(n, s) for n in ("penultimate", "taggram") for s in ("mean", "std")],
    "pools": [("max_pool", "mean"), ("mean_pool", "mean")],
    "pools_std": [(n, s) for n in ("max_pool", "mean_pool") for s in ("mean", "std")],
    "maps": [(n, "mean") for n in musicnn.MAPS],
    "mid": [(n, "mean") for n in ("cnn1", "cnn2", "cnn3")] + [("penultimate", "mean"), ("taggram", "mean")],
    "mid_std": [(n, s) for n in ("cnn1", "cnn2", "cnn3", "penultimate", "taggram") for s in ("mean", "std")],
    **{f"only_{n}": [(n, "mean")] for n in musicnn.LAYERS},
}
HEADS = {"svm": "musicnn_svm", "logreg": "musicnn_logreg"}


def clip_scores(model, fs, cols):
    x = torch.from_numpy(np.asarray(fs.x["musicnn"][np.arange(len(fs))])[:, cols])
    with torch.no_grad():
        p = torch.softmax(model(x), 1).numpy()
    probs = np.zeros((len(fs.clip_ids), p.shape[1]))
    np.add.at(probs, fs.clip, p)
    truth = np.zeros(len(fs.clip_ids), int)
    truth[fs.clip] = fs.y
    return dict(zip(fs.clip_ids, zip(truth, probs.argmax(1))))


def main():
    from scipy.stats import binomtest
    from sklearn.metrics import f1_score

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default="work/gtzan187")
    p.add_argument("--cache", required=True)
    p.add_argument("--sets", default=",".join(SETS))
    p.add_argument("--heads", default="svm,logreg")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--C", type=float, default=None, help="the heads' C (default: each head's own)")
    p.add_argument("--base-cache", default=None, help="superset cache of the baseline (default: --cache); "
                                                      "the non-overlapping one for today's musicnn_svm")
    args = p.parse_args()
    cache = Path(args.cache)
    caches = {"musicnn": cache}
    genres = sorted({c["genre"] for part in read_index(cache)["splits"].values() for c in part})
    seeds = [int(s) for s in args.seeds.split(",")]
    folds = {s: kfold_assignments(caches, 5, s)[0] for s in seeds}

    def fold_data(c):
        return {(s, k): (load_clips({"musicnn": c}, f["train"], genres), load_clips({"musicnn": c}, f["test"], genres))
                for s in seeds for k, f in enumerate(folds[s])}
    first = None
    for name in ["base"] + args.sets.split(","):
        data = fold_data(Path(args.base_cache or cache) if first is None else cache)
        cols = np.concatenate([columns(*part) for part in SETS[name]])
        for head in (["svm"] if first is None else args.heads.split(",")):
            accs, f1s, seed0 = [], [], {}
            for s in seeds:
                pooled = {}
                for k in range(5):
                    train, test = data[s, k]
                    model = build(HEADS[head], n_classes=len(genres), input_shape={"musicnn": (len(cols),)},
                                  **({"C": args.C} if args.C and first is not None else {}))
                    x = np.asarray(train.x["musicnn"][np.arange(len(train))])[:, cols]
                    model.fit_sklearn(x, train.y, seed=s)
                    pooled.update(clip_scores(model, test, cols))
                truth, pred = np.array([t for t, _ in pooled.values()]), np.array([q for _, q in pooled.values()])
                accs.append((truth == pred).mean())
                f1s.append(f1_score(truth, pred, average="macro"))
                if s == seeds[0]:
                    seed0 = pooled
            line = (f"{'today' if first is None else name:12s} {head:7s} dim {len(cols):5d}  pooled acc {np.mean(accs):.3f} ± {np.std(accs, ddof=1) if len(accs) > 1 else 0:.3f} "
                    f"({' '.join(f'{a:.3f}' for a in accs)})  macro-F1 {np.mean(f1s):.3f} ± {np.std(f1s, ddof=1) if len(f1s) > 1 else 0:.3f}")
            if first is None:
                first = seed0
            else:
                ra = np.array([seed0[c][0] == seed0[c][1] for c in sorted(seed0)])
                rb = np.array([first[c][0] == first[c][1] for c in sorted(seed0)])
                a, b = int((ra & ~rb).sum()), int((~ra & rb).sum())
                line += f"  seed {seeds[0]}: {a} vs {b} clips, McNemar p {binomtest(a, a + b, 0.5).pvalue if a + b else 1:.3f}"
            print(line, flush=True)


if __name__ == "__main__":
    main()
