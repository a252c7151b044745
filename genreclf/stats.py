"""Statistics of test results: the clip is the unit of evidence, the artist the unit of resampling.

Pooling. An experiment tests each clip once per seed (k-fold: every clip once per seed). Seeds are
not new clips, so a pooled clip's probabilities are the mean over the runs that tested it and its
prediction their argmax: three seeds of identical predictions score exactly as one seed does.

Bootstrap. Percentile bootstrap CIs (Efron & Tibshirani 1993, ch. 13) over clips or, when artists
are known, over artists: a cluster bootstrap (Davison & Hinkley 1997, sec. 3.8; Field & Welsh
2007) that resamples whole artist groups, because clips of one artist succeed or fail together.
GTZAN repeats artists heavily (Sturm 2013: 14 of the 16 reggae clips in gtzan_dev + gtzan_mini are
Bob Marley), and a clip bootstrap treats such clips as independent draws: its CIs are too narrow.

McNemar's exact test stays on clips: a binomial test of the clips exactly one model got right
against 1/2 (McNemar 1947; exact form as in Dietterich 1998).

Pure numpy/scipy/scikit-learn on in-memory predictions; reading run folders is results.py's job.
"""
import numpy as np

from .errors import UserError

N_BOOT, LEVEL = 2000, 0.95


def pool(runs, names=None):
    """One prediction per clip from several runs' predictions dicts (metrics.clip_predictions
    format: genres, clip_ids, true, pred, probs). A clip's probabilities are the mean over the runs
    that tested it, its "pred" their argmax; clips keep their first-seen order. Returns that format
    plus "runs_per_clip" (one int per clip) and, when every run has them, "groups"/"groups_from".
    Raises UserError, naming the run (`names`: one per run, e.g. its file), when runs disagree on
    the genre order or on a clip's true genre."""
    names = names or [f"run {i}" for i in range(len(runs))]
    genres = runs[0]["genres"]
    sums, truth, count, group, own = {}, {}, {}, {}, {}
    for name, p in zip(names, runs):
        if p["genres"] != genres:
            raise UserError(f"{name}: genres {', '.join(p['genres'])}, but {names[0]} has {', '.join(genres)}: "
                            f"not runs of one experiment")
        probs = p.get("probs") or [[float(g == q) for g in genres] for q in p["pred"]]  # no probabilities: one-hot
        for i, (c, t) in enumerate(zip(p["clip_ids"], p["true"])):
            if truth.setdefault(c, t) != t:
                raise UserError(f"{name}: clip {c} has true genre {t!r}, another run of the experiment says {truth[c]!r}")
            sums[c] = sums.get(c, 0) + np.asarray(probs[i], dtype=np.float64)
            count[c] = count.get(c, 0) + 1
            own[c] = p["pred"][i]  # a clip tested once keeps its run's own prediction (probs are rounded)
            if "groups" in p:
                group[c] = p["groups"][i]
    ids = list(sums)
    mean = np.array([sums[c] / count[c] for c in ids]).reshape(len(ids), len(genres))
    out = {"genres": list(genres), "clip_ids": ids, "true": [truth[c] for c in ids],
           "pred": [own[c] if count[c] == 1 else genres[k] for c, k in zip(ids, mean.argmax(1))],
           "probs": np.round(mean, 6).tolist(),
           "runs_per_clip": [count[c] for c in ids]}
    if all("groups" in p for p in runs):
        out.update(groups=[group[c] for c in ids], groups_from=runs[0].get("groups_from", ""))
    return out


def clusters(groups):
    """The cluster labels a bootstrap resamples: `groups` (one label per clip), or None when every
    clip is its own group (no artists known), which is the clip bootstrap."""
    return None if groups is None or len(set(groups)) == len(groups) else list(groups)


def replicates(values, groups=None, n_boot=N_BOOT, seed=0):
    """(n_boot,) bootstrap replicates of mean(values) over clips. values: (n_clips,) float (1/0
    for right/wrong, or a paired difference). With `groups` (one label per clip) whole groups are
    resampled with replacement, and a replicate is the sum of the drawn groups' values over their
    clip count (the ratio estimator of a cluster bootstrap). Seeded: the same input, the same CI."""
    values = np.asarray(values, dtype=np.float64)
    groups = clusters(groups)
    if groups is None:
        sums, sizes = values, np.ones(len(values))
    else:
        _, g = np.unique(np.asarray(groups, dtype=str), return_inverse=True)
        sums, sizes = np.bincount(g, weights=values), np.bincount(g).astype(np.float64)
    idx = np.random.default_rng(seed).integers(0, len(sums), size=(n_boot, len(sums)))
    return sums[idx].sum(1) / sizes[idx].sum(1)


def bootstrap_ci(values, groups=None, n_boot=N_BOOT, seed=0, level=LEVEL):
    """Percentile bootstrap CI [low, high] of mean(values) (e.g. clip accuracy from (n_clips,)
    bools), resampling clips, or artists when `groups` is given (see replicates)."""
    if len(values) == 0:
        return [float("nan"), float("nan")]
    r = replicates(values, groups, n_boot, seed)
    return [float(np.quantile(r, (1 - level) / 2)), float(np.quantile(r, (1 + level) / 2))]


def resampled(groups):
    """What a bootstrap over these clips resamples: ("artists", number of artist groups), or
    ("clips", None) when no artists are known."""
    return ("artists", len(set(groups))) if clusters(groups) else ("clips", None)


def over(unit, artists, groups=None):
    """resampled()'s answer in words: "12 artists", "clips (no artists known)", or, when `groups`
    (the clips' labels) name artists but every clip has its own, "8 artists (each test clip its own
    artist)": that clip bootstrap is the artist bootstrap."""
    if unit == "artists":
        return f"{artists} artists"
    unknown = sum(str(g).startswith("clip:") for g in groups or [])
    if groups and unknown < len(groups):
        return f"{len(groups)} artists (each test clip its own artist{f'; {unknown} unknown' if unknown else ''})"
    return "clips (no artists known)"


def macro_f1(true, pred):
    """Macro-F1 over the genres present in `true` (scikit-learn's f1_score, labels = those genres):
    a genre absent from these test clips is not averaged in as 0. Predictions of an absent genre
    still count, as errors of the present genres."""
    from sklearn.metrics import f1_score

    present = sorted(set(true))
    return float(f1_score(true, pred, labels=present, average="macro", zero_division=0)) if present else float("nan")


def mcnemar(right_a, right_b):
    """McNemar's exact test on clips: (clips only A got right, only B, two-sided p)."""
    from scipy.stats import binomtest

    right_a, right_b = np.asarray(right_a, dtype=bool), np.asarray(right_b, dtype=bool)
    only_a, only_b = int((right_a & ~right_b).sum()), int((~right_a & right_b).sum())
    p = binomtest(only_a, only_a + only_b, 0.5).pvalue if only_a + only_b else 1.0
    return only_a, only_b, float(p)


def paired(truth, pred_a, pred_b, groups=None, n_boot=N_BOOT, seed=0):
    """Paired comparison of two models' predictions on the same clips: (n_clips,) genre names
    each. Accuracies, their difference with its 95% bootstrap CI (over artists when `groups` is
    given, else clips), McNemar's exact test on clips, per-genre recall. Returns a dict."""
    truth = np.asarray(truth)
    ra, rb = np.asarray(pred_a) == truth, np.asarray(pred_b) == truth
    only_a, only_b, p = mcnemar(ra, rb)
    recall = {g: {"a": float(ra[truth == g].mean()), "b": float(rb[truth == g].mean()), "n": int((truth == g).sum())}
              for g in sorted(set(truth))}
    unit, artists = resampled(groups)
    return {"clips": len(truth), "accuracy_a": float(ra.mean()), "accuracy_b": float(rb.mean()),
            "difference": float(ra.mean() - rb.mean()),
            "difference_ci95": bootstrap_ci(ra.astype(float) - rb, groups, n_boot, seed),
            "resampled": unit, "artists": artists,
            "only_a_right": only_a, "only_b_right": only_b, "mcnemar_exact_p": p,
            "macro_f1_a": macro_f1(truth, pred_a), "macro_f1_b": macro_f1(truth, pred_b), "recall": recall}
