"""Step 2: extract log-mel, musicnn embedding or musicnn input features for every split into a keyed .npy cache.

    python dataset.py --augment noise,shift,stretch,pitch --segment 4 --workers 2
    python dataset.py --features musicnn --musicnn-model MSD_musicnn --layers max_pool
    python dataset.py --features musicnn --layers max_pool,mean_pool,penultimate,taggram --patch-stats mean,std:max_pool
    python dataset.py --features musicnn_mel         # musicnn's own log-mel input, for --model musicnn_ft
    python dataset.py --shard 0/4 ... --shard 3/4    # four machines; the last to finish merges
    python dataset.py --merge                        # or merge explicitly once all shards are done
    torchrun --nproc_per_node 4 dataset.py           # each rank computes shard RANK/WORLD_SIZE
"""
import argparse
import os
import sys

from genreclf.augment import AugmentSpec
from genreclf.config import AT_LEAST_1, add_flags, checked, from_args
from genreclf.errors import run_cli
from genreclf.extract import extract, merge, parse_shard
from genreclf.featurizers import FEATURIZERS, MusicnnSpec
from genreclf.features import MelSpec
from genreclf.paths import add_path_flags, cache_root, split_dir


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_path_flags(p)
    p.add_argument("--workers", type=checked(int, AT_LEAST_1), default=1, help="processes for extraction (default: 1)")
    p.add_argument("--features", default="mel", choices=sorted(FEATURIZERS),
                   help="mel spectrograms, or musicnn embeddings or musicnn's own log-mel input on the same segment grid "
                        "(default: mel)")
    add_flags(p, MelSpec)
    add_flags(p, MusicnnSpec)
    add_flags(p, AugmentSpec)
    p.add_argument("--shard", default=None, metavar="I/N",
                   help="compute only shard I of N (0-based: clips k with k %% N == I of the sorted list); "
                        "under torchrun, default RANK/WORLD_SIZE")
    p.add_argument("--merge", action="store_true",
                   help="write the segment pack and index.json from the shards' clip files, computing nothing")
    args = p.parse_args()
    sys.stdout.reconfigure(errors="backslashreplace")  # a non-UTF-8 file name prints as \xNN, not a crash
    from_args(MusicnnSpec, args)  # an unknown --layers name is an error whatever --features says
    feat = FEATURIZERS[args.features].from_args(args)
    aug = from_args(AugmentSpec, args)
    if args.merge:
        merge(args.data_dir, split_dir(args), cache_root(args), feat, aug)
        return
    shard = parse_shard(args.shard) if args.shard else None
    if shard is None and int(os.environ.get("WORLD_SIZE", 1)) > 1:
        shard = (int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]))
    extract(args.data_dir, split_dir(args), cache_root(args), feat, aug, args.workers, shard)


if __name__ == "__main__":
    run_cli(main, elsewhere="--work-dir DIR")
