"""Step 1: split GTZAN by track into train/val/test lists (and optionally download it first).

    python split_data.py --split course --val-per-class 5 --seed 0
    python split_data.py --data-dir ../shared/data/gtzan_mini --work-dir work/mini --split random
"""
import argparse

from genreclf import splits
from genreclf.download import download_gtzan
from genreclf.errors import run_cli
from genreclf.paths import add_path_flags, split_dir


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_path_flags(p)
    p.add_argument("--split", default="course", choices=sorted(splits.DEFAULT_GENRES))
    p.add_argument("--val-per-class", type=int, default=5, help="clips per genre moved from train to val (default: 5)")
    p.add_argument("--test-per-class", type=int, default=None, help="random split only (default: 20%% of each genre)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--genres", default=None, help="comma-separated genres (default: 8 for course, 10 otherwise)")
    p.add_argument("--download", action="store_true", help="download and unpack the official GTZAN archive first")
    args = p.parse_args()

    if args.download:
        n = download_gtzan(args.data_dir)
        print(f"unpacked {n} files into {args.data_dir}/wav")
    genres = args.genres.split(",") if args.genres else None
    parts, missing = splits.make_split(args.data_dir, args.split, genres, args.val_per_class,
                                       args.test_per_class, args.seed)
    out = split_dir(args)
    meta = {"split": args.split, "seed": args.seed, "val_per_class": args.val_per_class,
            "test_per_class": args.test_per_class, "data_dir": str(args.data_dir), "missing": missing,
            "genres": sorted({splits.genre_of(q) for q in parts["train"] + parts["test"]})}
    splits.write_split(parts, out, meta)
    print(splits.count_table(parts))
    if missing:
        print(f"{missing} listed clips are not on disk in {args.data_dir}/wav and were skipped")
    print(f"wrote {out}/{{train,val,test}}.txt")


if __name__ == "__main__":
    run_cli(main)
