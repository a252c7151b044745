"""Step 2: extract log-mel (or musicnn) features for every split into a keyed .npy cache.

    python dataset.py --augment noise,shift,stretch,pitch --segment 4 --workers 2
    python dataset.py --features musicnn --musicnn-model MSD_musicnn --layer max_pool
"""
import argparse

from genreclf.augment import AugmentSpec
from genreclf.config import add_flags, from_args
from genreclf.errors import run_cli
from genreclf.extract import extract
from genreclf.featurizers import FEATURIZERS, MusicnnSpec
from genreclf.features import MelSpec
from genreclf.paths import add_path_flags, cache_root, split_dir


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_path_flags(p)
    p.add_argument("--workers", type=int, default=1, help="processes for extraction (default: 1)")
    p.add_argument("--features", default="mel", choices=sorted(FEATURIZERS),
                   help="mel spectrograms, or musicnn embeddings on the same segment grid (default: mel)")
    add_flags(p, MelSpec)
    add_flags(p, MusicnnSpec)
    add_flags(p, AugmentSpec)
    args = p.parse_args()
    feat = FEATURIZERS[args.features].from_args(args)
    extract(args.data_dir, split_dir(args), cache_root(args), feat, from_args(AugmentSpec, args), args.workers)


if __name__ == "__main__":
    run_cli(main)
