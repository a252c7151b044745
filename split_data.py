"""Step 1: split GTZAN by track into train/val/test lists (and optionally download it first).

    python split_data.py --split course --val-per-class 5 --seed 0
    python split_data.py --data-dir ../shared/data/gtzan_mini --work-dir work/mini --split random
    python split_data.py --data-dir DIR --split random --group-by artist   # artist-disjoint parts
    python split_data.py --data-dir DIR --split auto     # course for GTZAN file names, else random
"""
import argparse
import sys

from genreclf import splits
from genreclf.clips import empty_genres, genre_of
from genreclf.config import NON_NEGATIVE, checked
from genreclf.download import download_gtzan
from genreclf.errors import run_cli
from genreclf.groups import groups_for, is_gtzan, overlap_report
from genreclf.paths import add_path_flags, split_dir


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_path_flags(p)
    p.add_argument("--split", default="course", choices=sorted(splits.DEFAULT_GENRES) + ["auto"],
                   help="auto: course when the files have GTZAN's names and the course lists cover every genre, "
                        "else random (it says which and why)")
    p.add_argument("--val-per-class", type=checked(int, NON_NEGATIVE), default=None,
                   help="clips per genre moved from train to val (default: 5; random split: 10%% of a genre, 1 to 5)")
    p.add_argument("--group-by", default="none", choices=["none", "artist"],
                   help="random split: keep each artist on one side (GTZAN: gtzan/artists.txt; else --groups)")
    p.add_argument("--groups", default=None, metavar="FILE", help="CSV of `path,group` (path relative to DATA/wav)")
    p.add_argument("--test-per-class", type=checked(int, NON_NEGATIVE), default=None, help="random split only (default: 20%% of each genre)")
    p.add_argument("--seed", type=checked(int, NON_NEGATIVE), default=0)
    p.add_argument("--genres", default=None, help="comma-separated genres (default: 8 for course, 10 otherwise)")
    p.add_argument("--download", action="store_true", help="download and unpack the official GTZAN archive first")
    args = p.parse_args()

    if args.download:
        n = download_gtzan(args.data_dir)
        print(f"unpacked {n} files into {args.data_dir}/wav")
    genres = args.genres.split(",") if args.genres else None
    if args.split == "auto":
        args.split, why = splits.choose_split(args.data_dir, genres, args.val_per_class)
        print(f"split: {args.split} ({why})")
    groups = None
    if args.group_by == "artist" or args.groups:
        ids = list(splits.scan(args.data_dir, genres, report=lambda line: None))
        labels, source = groups_for(ids, args.groups)
        groups = dict(zip(ids, labels))
        print(f"grouping by artist: {source}")
    parts, missing = splits.make_split(args.data_dir, args.split, genres, args.val_per_class, args.test_per_class,
                                       args.seed, groups=groups if args.group_by == "artist" else None)
    out = split_dir(args)
    meta = {"split": args.split, "group_by": args.group_by, "groups": args.groups, "seed": args.seed, "val_per_class": args.val_per_class,
            "test_per_class": args.test_per_class, "data_dir": str(args.data_dir), "missing": missing,
            "genres": sorted({genre_of(q) for q in parts["train"] + parts["test"]})}
    splits.write_split(parts, out, meta)
    print(splits.count_table(parts))
    for line in empty_genres(parts, sorted({genre_of(q) for part in parts.values() for q in part})).values():
        print(f"warning: {line}: main.py will refuse to train on this split", file=sys.stderr)
    if groups is None and is_gtzan([splits.clip_id(q) for q in parts["train"] + parts["test"]]):
        ids = [splits.clip_id(q) for part in parts.values() for q in part]
        groups = dict(zip(ids, groups_for(ids)[0]))
    if groups is not None:
        print(overlap_report(parts, groups))
    if missing:
        print(f"{missing} listed clips are not on disk in {args.data_dir}/wav, or were left out above, and were skipped")
    print(f"wrote {out}/{{train,val,test}}.txt")


if __name__ == "__main__":
    run_cli(main, elsewhere="--work-dir DIR")
