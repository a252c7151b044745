"""Compare two runs (or two k-fold/seed experiments) scored on the same test clips.

    python compare.py runs/cv-baseline runs/cv-base2dcnn
    python compare.py runs/q2-20261125-130000 runs/resnet18-20261125-140000

A run folder holds predictions.json (main.py --do_test writes it); an experiment folder
(results.json) pools its runs' test predictions, so two k-fold experiments with the same folds
compare every clip once per seed. Reports each accuracy, the paired difference with its 95%
bootstrap CI over clips (seeded), McNemar's exact test on the clips where exactly one is right
(a binomial test of those discordant clips against 1/2), and per-genre recall deltas. Refuses
runs scored on different clips.
"""
import argparse
import json
from pathlib import Path

import numpy as np

from genreclf.errors import UserError, run_cli
from genreclf.metrics import pooled_predictions


def load(folder):
    """{clip key: (true genre, predicted genre)} of a run or experiment folder."""
    folder = Path(folder)
    if (folder / "predictions.json").exists():
        p = json.loads((folder / "predictions.json").read_text())
    elif (folder / "results.json").exists():
        runs = [r["run"] for r in json.loads((folder / "results.json").read_text())["runs"] if r.get("counted", True)]
        p = pooled_predictions(folder, runs)
        if p is None:
            raise UserError(f"{folder}: its runs have no predictions.json (made before main.py wrote them: re-test them)")
    else:
        raise UserError(f"{folder}: not a run or experiment folder (no predictions.json or results.json)")
    return {c: (t, q) for c, t, q in zip(p["clip_ids"], p["true"], p["pred"])}


def compare(a, b, name_a, name_b, n_boot=2000, seed=0):
    """Paired comparison of two {clip: (true, pred)} dicts over the same clips. Returns a dict."""
    from scipy.stats import binomtest

    if set(a) != set(b):
        only_a, only_b = sorted(set(a) - set(b)), sorted(set(b) - set(a))
        example = (only_a or only_b)[0]
        raise UserError(f"{name_b}: scored on different test clips than {name_a} ({len(only_a)} only in the first, "
                        f"{len(only_b)} only in the second, e.g. {example})")
    clips = sorted(a)
    bad = next((c for c in clips if a[c][0] != b[c][0]), None)
    if bad:
        raise UserError(f"{name_b}: clip {bad} has true genre {b[bad][0]!r} here and {a[bad][0]!r} in {name_a}")
    truth = np.array([a[c][0] for c in clips])
    ra = np.array([a[c][1] == a[c][0] for c in clips], dtype=float)
    rb = np.array([b[c][1] == b[c][0] for c in clips], dtype=float)
    idx = np.random.default_rng(seed).integers(0, len(clips), size=(n_boot, len(clips)))
    diffs = ra[idx].mean(1) - rb[idx].mean(1)
    only_a, only_b = int(((ra == 1) & (rb == 0)).sum()), int(((ra == 0) & (rb == 1)).sum())
    p = binomtest(only_a, only_a + only_b, 0.5).pvalue if only_a + only_b else 1.0
    recall = {g: {"a": float(ra[truth == g].mean()), "b": float(rb[truth == g].mean()), "n": int((truth == g).sum())}
              for g in sorted(set(truth))}
    return {"clips": len(clips), "accuracy_a": float(ra.mean()), "accuracy_b": float(rb.mean()),
            "difference": float(ra.mean() - rb.mean()),
            "difference_ci95": [float(np.quantile(diffs, 0.025)), float(np.quantile(diffs, 0.975))],
            "only_a_right": only_a, "only_b_right": only_b, "mcnemar_exact_p": float(p), "recall": recall}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_a", help="run folder (predictions.json) or experiment folder (results.json)")
    p.add_argument("run_b")
    p.add_argument("--json", action="store_true", help="print the comparison as JSON")
    args = p.parse_args()
    r = compare(load(args.run_a), load(args.run_b), args.run_a, args.run_b)
    if args.json:
        print(json.dumps(r, indent=2))
        return
    lo, hi = r["difference_ci95"]
    print(f"{r['clips']} test clips, the same in both")
    print(f"A {args.run_a}: clip accuracy {r['accuracy_a']:.3f}")
    print(f"B {args.run_b}: clip accuracy {r['accuracy_b']:.3f}")
    print(f"A - B: {r['difference']:+.3f} (95% CI {lo:+.3f} to {hi:+.3f}, paired bootstrap over clips)")
    print(f"McNemar exact test: {r['only_a_right']} clips only A got right, {r['only_b_right']} only B, "
          f"p = {r['mcnemar_exact_p']:.3g}")
    print("| genre | clips | recall A | recall B | B - A |")
    print("|---|---:|---:|---:|---:|")
    for g, x in r["recall"].items():
        print(f"| {g} | {x['n']} | {x['a']:.2f} | {x['b']:.2f} | {x['b'] - x['a']:+.2f} |")


if __name__ == "__main__":
    run_cli(main)
