"""Train/val/test splits by track, written as text files: splits are data.

Lines are paths relative to `DATA/wav/`, like `jazz/jazz.00012.wav`. The split is made per track
before any segmenting, so no two segments of one clip can land on both sides (GTZAN clip-level
leakage inflates accuracy by 10 to 15 points; see README).

    course          the 8-genre course split shipped in gtzan/split/{train,test}.txt; val is
                    about `val_per_class` clips per genre carved out of train with the seed,
                    whole artists at a time (gtzan/artists.txt), so val shares no artist with train.
    fault-filtered  Kereliuk, Sturm & Larsen (2015) artist-filtered split, 10 genres, own val.
    random          stratified by genre over the files on disk (for data with no lists).
"""
from collections import Counter
from pathlib import Path

import numpy as np

from . import GENRES_8, GENRES_10, REPO
from .clips import PARTS, clip_id, genre_of
from .errors import UserError
from .groups import grouped_random_split, groups_for, is_gtzan
from .io import atomic_path, write_json

LISTS = REPO / "gtzan" / "split"
DEFAULT_GENRES = {"course": GENRES_8, "fault-filtered": GENRES_10, "random": None}


def read_list(path):
    """Non-empty, stripped lines of a split list. Bytes that are not UTF-8 (file names from a
    non-UTF-8 file system) come back as the lone surrogates os.fsdecode gives them, so a path
    read from a list is the path on disk (write_split writes them back the same way). A UTF-8
    byte-order mark and CRLF line ends (a list saved by a Windows editor) are accepted."""
    text = Path(path).read_bytes().removeprefix(b"\xef\xbb\xbf").decode("utf-8", "surrogateescape")
    return [line.strip() for line in text.splitlines() if line.strip()]


def wav_dir(data_dir):
    """DATA/wav, the audio every stage reads; raises UserError when it or DATA is missing."""
    wav = Path(data_dir) / "wav"
    if not Path(data_dir).is_dir():
        raise UserError(f"data dir {data_dir} does not exist (get GTZAN with: python split_data.py --download)")
    if not wav.is_dir():
        raise UserError(f"{data_dir} has no wav/ folder: expected {wav}/<genre>/<genre>.000NN.wav")
    return wav


def scan(data_dir, genres=None, report=print):
    """Audio on disk: {clip_id: relpath}, checking the layout DATA/wav/<genre>/**/<files>.

    Genre folders may nest sub-folders to any depth, and names may hold spaces, any Unicode or
    bytes that are not UTF-8. audio.find_audio walks each folder, so the rules are the ones
    predict.py uses: symbolic links followed once, and a clip present in several formats in one
    folder (x.wav and x.mp3) kept once, lossless first (audio.PREFERENCE). A file whose header
    cannot be read, and audio in a format we do not read (audio.audio_like), are left out of the
    data set. Each such problem is passed to `report` as one line, then a line counting the files
    left out; a missing or empty genre folder raises UserError.
    """
    from .audio import AudioError, find_audio, info, shown

    wav = wav_dir(data_dir)
    there = sorted(p.name for p in wav.iterdir() if p.is_dir() and not p.name.startswith("."))
    unknown = [g for g in genres or () if g not in there]
    if unknown:  # name them, and what there is: the fix is a spelling (case counts), not another flag
        raise UserError(f"genre{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}: no such folder in {shown(wav)}; "
                        f"the genres there are {', '.join(there) or 'none'} (names are case-sensitive; the course and "
                        f"fault-filtered splits expect GTZAN's genres: for others give --split random or auto, and "
                        f"--genres)")
    genres = there if genres is None else genres
    found, left_out = {}, 0
    for g in genres:
        folder = wav / g
        files, problems = find_audio([folder]) if folder.is_dir() else ([], [])
        if not files:
            raise UserError(f"genre folder {shown(folder)} is missing or has no audio files (the course and "
                            f"fault-filtered splits expect GTZAN's genres: for other genres use --split auto or --genres)")
        for f in files:
            try:
                info(f)  # the header only: a file no decoder opens never enters a split list
            except AudioError as e:
                problems.append(f"{shown(f)}: left out: {str(e)[len(shown(f)) + 2:]}")  # e is `<path>: <what>`
                continue
            rel = str(f.relative_to(wav))
            found.setdefault(clip_id(rel), rel)
        for line in problems:
            report(line)
            left_out += ": left out: " in line
    if left_out:
        report(f"{left_out} audio file(s) left out of the data set, each named above")
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


def _carve(paths, per_class, groups, rng):
    """Move about `per_class` tracks of each genre out of `paths` (seeded), whole artist groups
    at a time so that no artist is on both sides (groups.grouped_random_split with no test part);
    returns (rest, carved)."""
    for g in sorted({genre_of(p) for p in paths}):
        n = sum(genre_of(p) == g for p in paths)
        if per_class >= n:
            raise UserError(f"genre {g} has {n} training clips: cannot move {per_class} to val "
                            f"(give a smaller --val-per-class, or --split auto)")
    parts, _ = grouped_random_split(paths, lambda n: 0, lambda n: per_class, groups, rng)
    return parts["train"], parts["val"]


def choose_split(data_dir, genres=None, val_per_class=None, lists=LISTS):
    """`--split auto`: (split, why). The course split when every file has GTZAN's name
    (<genre>/<genre>.000NN.*, whatever the folder is called) and the course lists leave every
    chosen genre more training clips than val takes and at least one test clip; else random."""
    genres = tuple(genres or GENRES_8)
    on_disk = scan(data_dir, genres if all((Path(data_dir) / "wav" / g).is_dir() for g in genres) else None,
                   report=lambda line: None)
    if not is_gtzan(list(on_disk)):
        odd = next((n for n in on_disk if not is_gtzan([n])), "no files")
        return "random", f"file names are not GTZAN's <genre>/<genre>.000NN (e.g. {odd})"
    lists = Path(lists)
    pool = read_list(lists / "train.txt") + (read_list(lists / "val.txt") if (lists / "val.txt").exists() else [])
    train, _ = _resolve(pool, on_disk, genres)
    test, _ = _resolve(read_list(lists / "test.txt"), on_disk, genres)
    need = 5 if val_per_class is None else val_per_class
    for g in genres:
        n_train, n_test = sum(genre_of(p) == g for p in train), sum(genre_of(p) == g for p in test)
        if n_train <= need or n_test == 0:
            return "random", (f"GTZAN file names, but the course lists give genre {g} {n_train} training and "
                              f"{n_test} test clips here (need more than {need} and at least 1)")
    return "course", f"GTZAN file names, and the course lists cover all {len(genres)} genres here"


def make_split(data_dir, split="course", genres=None, val_per_class=None, test_per_class=None, seed=0,
               lists=LISTS, groups=None):
    """Return ({part: [relpath]}, n_missing). Deterministic for a given seed.
    `val_per_class` defaults to 5 (random split: 10% of a genre, 1 to 5). `groups` ({clip id:
    group}) makes a random split's parts group-disjoint (see groups.grouped_random_split); the
    course split always carves val as whole artists (`groups`, else GTZAN's artist index), as
    near to `val_per_class` clips per genre as whole artists allow."""
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
        if groups is None:  # GTZAN's artists (Sturm 2012); a clip of unknown artist is its own group
            ids = [clip_id(p) for p in train]
            groups = dict(zip(ids, groups_for(ids)[0]))
        train, val = _carve(train, 5 if val_per_class is None else val_per_class, groups, rng)
        missing = m1 + m2
    elif split == "fault-filtered":
        ff = lists / "fault_filtered"
        parts = [_resolve(read_list(ff / f"{name}_filtered.txt"), on_disk, genres) for name in ("train", "valid", "test")]
        (train, _), (val, _), (test, _) = parts
        missing = sum(m for _, m in parts)
    elif groups is not None:
        def n_test(n):
            return test_per_class if test_per_class is not None else max(1, round(0.2 * n))

        def n_val(n):
            return val_per_class if val_per_class is not None else min(5, max(1, round(0.1 * n)))

        mine = [p for p in on_disk.values() if genre_of(p) in genres]
        parts, notes = grouped_random_split(mine, n_test, n_val, groups, rng)
        for note in notes:
            print(note)
        return parts, 0
    else:
        train, val, test = [], [], []
        for g in genres:
            mine = sorted(p for p in on_disk.values() if genre_of(p) == g)
            n_test = test_per_class if test_per_class is not None else max(1, round(0.2 * len(mine)))
            n_val = val_per_class if val_per_class is not None else min(5, max(1, round(0.1 * len(mine))))
            if n_test + n_val >= len(mine):  # keep what little there is for learning, and say so
                print(f"genre {g} has {len(mine)} clips, too few for {n_test} test + {n_val} val + 1 train: "
                      f"all {len(mine)} go to train (the genre is learned but not validated or tested)")
                train += mine
                continue
            order = [mine[i] for i in rng.permutation(len(mine))]
            test += sorted(order[:n_test])
            val += sorted(order[n_test:n_test + n_val])
            train += sorted(order[n_test + n_val:])
        missing = 0
    return {"train": train, "val": val, "test": test}, missing


def write_split(parts, split_dir, meta):
    """Write {train,val,test}.txt and split.json (the parameters that made them) atomically.

    Raises UserError when split_dir is the shipped lists folder (gtzan/split, the default work dir
    of the default data dir) and the split is anything but the 8-genre course split: the course's
    train.txt and test.txt would be replaced, and every later course split built from the new ones.
    (The course split itself is written there by design: make_split pools train + val again.)
    """
    course = meta.get("split") == "course" and sorted(meta.get("genres", [])) == sorted(GENRES_8)
    if Path(split_dir).resolve() == LISTS.resolve() and not course:
        raise UserError(f"{split_dir}: writing this split here would replace the shipped course lists; "
                        f"give a work dir, for example --work-dir work/gtzan")
    for name in PARTS:  # surrogateescape: a non-UTF-8 file name is written as its own bytes
        text = "".join(p + "\n" for p in parts[name]).encode("utf-8", "surrogateescape")
        with atomic_path(Path(split_dir) / f"{name}.txt") as tmp:
            Path(tmp).write_bytes(text)
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
