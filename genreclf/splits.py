"""Train/val/test splits by track, written as text files: splits are data.

Lines are paths relative to `DATA/wav/`, like `jazz/jazz.00012.wav`. The split is made per track
before any segmenting, so no two segments of one clip can land on both sides (GTZAN clip-level
leakage inflates accuracy by 10 to 15 points; see README).

    course          the 8-genre course split shipped in gtzan/split/{train,test}.txt; val is
                    `val_per_class` clips per genre carved out of train with the seed.
    fault-filtered  Kereliuk, Sturm & Larsen (2015) artist-filtered split, 10 genres, own val.
    random          stratified by genre over the files on disk (for data with no lists).
"""
from collections import Counter
from pathlib import Path

import numpy as np

from . import GENRES_8, GENRES_10, REPO
from .audio import AUDIO_EXTS
from .errors import UserError
from .io import write_json, write_text

LISTS = REPO / "gtzan" / "split"
PARTS = ("train", "val", "test")
DEFAULT_GENRES = {"course": GENRES_8, "fault-filtered": GENRES_10, "random": None}


def read_list(path):
    """Non-empty, stripped lines of a split list."""
    return [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]


def clip_id(relpath):
    """`jazz/jazz.00012.wav` -> `jazz/jazz.00012`: one name for a track whatever its format."""
    return str(Path(relpath).with_suffix(""))


def genre_of(relpath):
    return Path(relpath).parts[0]


def scan(data_dir, genres=None):
    """Audio on disk: {clip_id: relpath}, checking the layout DATA/wav/<genre>/<files>."""
    wav = Path(data_dir) / "wav"
    if not Path(data_dir).is_dir():
        raise UserError(f"data dir {data_dir} does not exist (get GTZAN with: python split_data.py --download)")
    if not wav.is_dir():
        raise UserError(f"{data_dir} has no wav/ folder: expected {wav}/<genre>/<genre>.000NN.wav")
    if genres is None:
        genres = sorted(p.name for p in wav.iterdir() if p.is_dir())
    found = {}
    for g in genres:
        folder = wav / g
        files = sorted(f for f in folder.glob("*") if f.suffix.lower() in AUDIO_EXTS) if folder.is_dir() else []
        if not files:
            raise UserError(f"genre folder {folder} is missing or has no audio files")
        for f in files:
            found.setdefault(clip_id(f.relative_to(wav)), str(f.relative_to(wav)))
    return found


def _resolve(listed, on_disk, genres):
    """Keep listed tracks of `genres` that exist (any audio extension); return (kept, n_missing)."""
    kept, missing = [], 0
    for rel in listed:
        if genre_of(rel) not in genres:
            continue
        if clip_id(rel) in on_disk:
            kept.append(on_disk[clip_id(rel)])
        else:
            missing += 1
    return kept, missing


def _carve(paths, per_class, rng):
    """Move `per_class` tracks of each genre out of `paths` (seeded); returns (rest, carved)."""
    carved = []
    for g in sorted({genre_of(p) for p in paths}):
        mine = sorted(p for p in paths if genre_of(p) == g)
        if per_class >= len(mine):
            raise UserError(f"genre {g} has {len(mine)} training clips: cannot move {per_class} to val")
        carved += [mine[i] for i in sorted(rng.permutation(len(mine))[:per_class])]
    chosen = set(carved)
    return [p for p in paths if p not in chosen], carved


def make_split(data_dir, split="course", genres=None, val_per_class=5, test_per_class=None, seed=0,
               lists=LISTS):
    """Return ({part: [relpath]}, n_missing). Deterministic for a given seed."""
    if split not in DEFAULT_GENRES:
        raise UserError(f"unknown split {split!r}; choose one of {', '.join(DEFAULT_GENRES)}")
    genres = tuple(genres or DEFAULT_GENRES[split] or ())
    on_disk = scan(data_dir, genres or None)
    genres = genres or tuple(sorted({genre_of(p) for p in on_disk.values()}))
    rng = np.random.default_rng(seed)
    lists = Path(lists)
    if split == "course":
        # val.txt, when present beside train.txt, was carved out of train: pool them again so that
        # rerunning (with any seed) always starts from the same 580 training tracks.
        pool = read_list(lists / "train.txt") + (read_list(lists / "val.txt") if (lists / "val.txt").exists() else [])
        train, m1 = _resolve(pool, on_disk, genres)
        test, m2 = _resolve(read_list(lists / "test.txt"), on_disk, genres)
        train, val = _carve(train, val_per_class, rng)
        missing = m1 + m2
    elif split == "fault-filtered":
        ff = lists / "fault_filtered"
        parts = [_resolve(read_list(ff / f"{name}_filtered.txt"), on_disk, genres) for name in ("train", "valid", "test")]
        (train, _), (val, _), (test, _) = parts
        missing = sum(m for _, m in parts)
    else:
        train, val, test = [], [], []
        for g in genres:
            mine = sorted(p for p in on_disk.values() if genre_of(p) == g)
            n_test = test_per_class if test_per_class is not None else max(1, round(0.2 * len(mine)))
            if n_test + val_per_class >= len(mine):
                raise UserError(f"genre {g} has {len(mine)} clips: too few for {n_test} test + {val_per_class} val")
            order = [mine[i] for i in rng.permutation(len(mine))]
            test += sorted(order[:n_test])
            val += sorted(order[n_test:n_test + val_per_class])
            train += sorted(order[n_test + val_per_class:])
        missing = 0
    return {"train": train, "val": val, "test": test}, missing


def write_split(parts, split_dir, meta):
    """Write {train,val,test}.txt and split.json (the parameters that made them) atomically."""
    for name in PARTS:
        write_text(Path(split_dir) / f"{name}.txt", "".join(p + "\n" for p in parts[name]))
    write_json(Path(split_dir) / "split.json", meta)


def load_split(split_dir):
    """{part: [relpath]} from a split folder written by split_data.py."""
    split_dir = Path(split_dir)
    if not (split_dir / "train.txt").exists():
        raise UserError(f"no split lists in {split_dir}: run split_data.py first")
    return {name: read_list(split_dir / f"{name}.txt") if (split_dir / f"{name}.txt").exists() else []
            for name in PARTS}


def count_table(parts):
    """Markdown table of clips per genre and part."""
    counts = {name: Counter(genre_of(p) for p in parts[name]) for name in PARTS}
    genres = sorted(set().union(*counts.values()))
    rows = ["| genre | " + " | ".join(PARTS) + " |", "|---|" + "---:|" * len(PARTS)]
    rows += [f"| {g} | " + " | ".join(str(counts[n][g]) for n in PARTS) + " |" for g in genres]
    rows.append("| **total** | " + " | ".join(str(len(parts[n])) for n in PARTS) + " |")
    return "\n".join(rows)
