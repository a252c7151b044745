"""Where each stage reads and writes. Audio stays in DATA/wav (read-only to us); what we derive
goes under a work dir, by default DATA itself:

    WORK/split/{train,val,test}.txt, split.json      split_data.py
    WORK/cache/<feature>-<hash>/                      dataset.py
    runs/<model>-<time>/                              main.py
"""
from pathlib import Path


def add_path_flags(parser):
    parser.add_argument("--data-dir", default="gtzan", help="GTZAN folder holding wav/<genre>/ (default: gtzan)")
    parser.add_argument("--work-dir", default=None,
                        help="where splits and caches go (default: the data dir; use this when it is read-only)")


def work_dir(args):
    return Path(args.work_dir or args.data_dir)


def split_dir(args):
    return work_dir(args) / "split"


def cache_root(args):
    return work_dir(args) / "cache"
