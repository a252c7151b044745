"""Compare two runs (or two k-fold/seed experiments) scored on the same test clips.

    python compare.py runs/cv-baseline runs/cv-base2dcnn
    python compare.py runs/q2-20261125-130000 runs/resnet18-20261125-140000

A run folder holds predictions.json (main.py --do_test writes it); an experiment folder
(results.json) pools its runs' test predictions per clip: each clip counts once, with its
probabilities averaged over the seeds that tested it (genreclf/stats.py). Reports each accuracy and
macro-F1, the paired difference with its 95% bootstrap CI (seeded) over artists when artists are
known (GTZAN names: gtzan/artists.txt; an experiment's --groups file), else over clips, McNemar's
exact test on the clips where exactly one is right (a binomial test of those discordant clips
against 1/2) beside the number of artists those clips span, and per-genre recall deltas. Refuses
runs scored on different clips, and names the command that tests a run never tested.
"""
import argparse
import json
import sys

from genreclf import results, stats
from genreclf.errors import UserError, run_cli


def compare(a, b, name_a, name_b, n_boot=stats.N_BOOT, seed=0):
    """Paired comparison (stats.paired) of two predictions dicts (results.load) over the same
    clips, paired by clip id and resampled by A's artist groups. Returns a dict: the stats plus
    "runs_per_clip" of each side. Raises UserError when the clips or their true genres differ."""
    ta, tb = dict(zip(a["clip_ids"], a["true"])), dict(zip(b["clip_ids"], b["true"]))
    if set(ta) != set(tb):
        only_a, only_b = sorted(set(ta) - set(tb)), sorted(set(tb) - set(ta))
        example = (only_a or only_b)[0]
        raise UserError(f"{name_b}: scored on different test clips than {name_a} ({len(only_a)} only in the first, "
                        f"{len(only_b)} only in the second, e.g. {example})")
    clips = sorted(ta)  # a fixed order: the seeded bootstrap draws the same clips whatever the files' order
    bad = next((c for c in clips if ta[c] != tb[c]), None)
    if bad:
        raise UserError(f"{name_b}: clip {bad} has true genre {tb[bad]!r} here and {ta[bad]!r} in {name_a}")
    pred_a, pred_b = dict(zip(a["clip_ids"], a["pred"])), dict(zip(b["clip_ids"], b["pred"]))
    groups = dict(zip(a["clip_ids"], a["groups"])) if a.get("groups") else None
    r = stats.paired([ta[c] for c in clips], [pred_a[c] for c in clips], [pred_b[c] for c in clips],
                     [groups[c] for c in clips] if groups else None, n_boot, seed)
    r["groups_from"] = a.get("groups_from", "")
    r["runs_per_clip"] = {"a": sorted(set(a.get("runs_per_clip", [1]))), "b": sorted(set(b.get("runs_per_clip", [1])))}
    return r


def note(line):
    """A line about what was left out (runs without predictions.json): stderr, the result goes on."""
    print(f"note: {line}", file=sys.stderr)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_a", help="run folder (predictions.json) or experiment folder (results.json)")
    p.add_argument("run_b")
    p.add_argument("--json", action="store_true", help="print the comparison as JSON")
    p.add_argument("--seed", type=int, default=None,
                   help="experiments: pool this seed's runs only (default: all seeds; an average over seeds is an ensemble)")
    args = p.parse_args()
    r = compare(results.load(args.run_a, note, args.seed), results.load(args.run_b, note, args.seed), args.run_a, args.run_b)
    if args.json:
        print(json.dumps(r, indent=2))
        return
    lo, hi = r["difference_ci95"]
    over = stats.over(r["resampled"], r["artists"]) + (f" of the test clips; {r['groups_from']}" if r["artists"] else "")
    each = {k: results.seeds_per_clip(v) for k, v in r["runs_per_clip"].items()}
    print(f"{r['clips']} test clips, the same in both, each counted once (A: {each['a']}; B: {each['b']})")
    if r["runs_per_clip"]["a"] != r["runs_per_clip"]["b"]:
        print("note: the two sides average different numbers of seeds per clip; an average over seeds is an ensemble, "
              "which favours the side with more")
    print(f"A {args.run_a}: clip accuracy {r['accuracy_a']:.3f}, macro-F1 {r['macro_f1_a']:.3f}")
    print(f"B {args.run_b}: clip accuracy {r['accuracy_b']:.3f}, macro-F1 {r['macro_f1_b']:.3f}")
    print(f"A - B: {r['difference']:+.3f} (95% CI {lo:+.3f} to {hi:+.3f}, paired bootstrap over {over})")
    span = f"the clips span {r['artists']} artists" if r["artists"] else "artists unknown"
    print(f"McNemar exact test on clips: {r['only_a_right']} clips only A got right, {r['only_b_right']} only B, "
          f"p = {r['mcnemar_exact_p']:.3g} ({span}: clips of one artist are not independent, so read p beside the CI)")
    print("| genre | clips | recall A | recall B | B - A |")
    print("|---|---:|---:|---:|---:|")
    for g, x in r["recall"].items():
        print(f"| {g} | {x['n']} | {x['a']:.2f} | {x['b']:.2f} | {x['b'] - x['a']:+.2f} |")


if __name__ == "__main__":
    run_cli(main)
