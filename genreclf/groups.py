"""Artist groups: which clips must stay on one side of a split or fold.

GTZAN repeats artists heavily (35 of the 100 reggae clips are Bob Marley); artist overlap between
train and test inflates accuracy by 10 points or more (Sturm 2013, "The GTZAN dataset: its
contents, its faults, their effects on evaluation"). So folds and random splits are made over
artist groups whenever artists are known:

    GTZAN file names (<genre>/<genre>.000NN.*)   gtzan/artists.txt, Sturm's (2012) artist index
    any dataset                                   --groups FILE, a CSV of `path,group` lines with
                                                  paths relative to DATA/wav (matched by clip id)

A clip with no known artist is its own group ("clip:<id>").
"""
import csv
import re
import warnings
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from . import REPO
from .clips import clip_id, empty_genres, genre_of
from .errors import UserError

GTZAN_INDEX = REPO / "gtzan" / "artists.txt"
GTZAN_NAME = re.compile(r"^([a-z]+)/\1\.\d{5}$")  # clip id of a GTZAN file: jazz/jazz.00012


def is_gtzan(ids):
    """True when every clip id has GTZAN's name, e.g. jazz/jazz.00012 (any audio extension)."""
    return bool(ids) and all(GTZAN_NAME.match(i) for i in ids)


def read_gtzan_index(path=GTZAN_INDEX):
    """{clip id: artist} from Sturm's index (`blues.00000.wav ::: artist ::: title`); unknown
    artists (an empty field) are left out."""
    out = {}
    for line in Path(path).read_text(encoding="utf-8-sig").splitlines():  # -sig: a byte-order mark is not text
        if not line.strip() or line.startswith("##"):
            continue
        fields = [f.strip() for f in line.split(":::")]
        name = fields[0]
        if fields[1:] and fields[1]:
            genre = name.split(".")[0]
            out[clip_id(f"{genre}/{name}")] = fields[1]
    return out


def read_groups_csv(path):
    """{clip id: group} from a CSV of `path,group` (an optional `path,group` header line), with or
    without a UTF-8 byte-order mark, LF or CRLF line ends. Raises UserError naming the file on a
    missing file or a malformed line."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path}: is a folder, not a groups file (a CSV of `path,group` lines)")
    if not path.is_file():
        raise UserError(f"{path}: groups file does not exist")
    out = {}
    try:
        rows = list(csv.reader(path.read_text(encoding="utf-8-sig").splitlines()))
    except (UnicodeDecodeError, csv.Error) as e:
        raise UserError(f"{path}: not a readable CSV ({e})") from None
    for n, row in enumerate(rows, 1):
        if not row or not "".join(row).strip():
            continue
        if n == 1 and [c.strip().lower() for c in row] == ["path", "group"]:
            continue
        if len(row) != 2 or not row[0].strip() or not row[1].strip():
            raise UserError(f"{path}: line {n} is not `path,group`: {','.join(row)[:80]!r}")
        out[clip_id(row[0].strip())] = row[1].strip()
    if not out:
        raise UserError(f"{path}: no `path,group` lines")
    return out


def groups_for(ids, groups_file=None):
    """(group label per clip id, where the groups came from). With `groups_file`, a clip it does not
    list is its own group, as a GTZAN clip of unknown artist is (the words say how many, with an
    example); GTZAN names use gtzan/artists.txt; otherwise every clip is its own group."""
    if groups_file:
        known = read_groups_csv(groups_file)
        missing = [i for i in ids if i not in known]
        return ([known.get(i, f"clip:{i}") for i in ids],
                f"groups from {groups_file}" + (f" ({len(missing)} of the {len(ids)} clips are not in it: each is its own "
                                                f"group, e.g. {missing[0]})" if missing else ""))
    if is_gtzan(ids):
        known = read_gtzan_index()
        n_unknown = sum(i not in known for i in ids)
        return ([known.get(i, f"clip:{i}") for i in ids],
                f"artists from {GTZAN_INDEX.relative_to(REPO)} (Sturm 2012; {n_unknown} clips of unknown artist "
                f"are their own group)")
    return [f"clip:{i}" for i in ids], "no artists known: each clip is its own group"


def grouped_folds(ids, genres, groups, k, seed, val_per_class=1, say=print):
    """Stratified-by-genre k folds over artist groups (scikit-learn's StratifiedGroupKFold).
    Each fold is {"train", "val", "test": [clip id]}; no group is on two sides of a fold, val
    included: val takes whole groups (the smallest first) from the fold's training clips, about
    `val_per_class` clips per genre, never a genre's last training group.

    Raises UserError (one line) when `k` folds cannot be made, or when a fold would leave a genre
    without training or validation clips (clips.empty_genres; a genre needs three artist groups:
    one each to test, validate and train on); the line names the genre and the largest k that
    works, if any."""
    try:
        return _grouped_folds(ids, genres, groups, k, seed, val_per_class, say)
    except UserError as e:
        genre_of_id = dict(zip(ids, genres))
        for smaller in range(k - 1, 1, -1):
            try:
                folds = _grouped_folds(ids, genres, groups, smaller, seed, val_per_class, say=lambda line: None)
            except UserError:
                continue
            narrow = sum(len({genre_of_id[i] for i in f["test"]}) < 2 for f in folds) > len(folds) / 2
            raise UserError(f"{e}: --folds {smaller} works" + (" (but most of its folds would test a single genre; "
                                                              "5 is the usual k)" if narrow else "")) from None
        raise UserError(f"{e}; fewer folds do not work either: give --groups FILE with finer groups (a CSV of "
                        f"`path,group`), or leave such genres out of the split") from None


def _grouped_folds(ids, genres, groups, k, seed, val_per_class, say):
    from sklearn.model_selection import StratifiedGroupKFold

    ids, genres, groups = np.asarray(ids), np.asarray(genres), np.asarray(groups)
    per_genre = {g: len(set(groups[genres == g])) for g in sorted(set(genres))}
    if len(set(groups)) < k or max(Counter(genres).values()) < k:  # what scikit-learn refuses
        raise UserError(f"--folds {k}: {len(set(groups))} artist groups, at most {max(Counter(genres).values())} clips "
                        f"per genre, too few for {k} folds")
    for g, n in per_genre.items():
        if n < k:
            say(f"genre {g} has {n} artist group(s) for {k} folds: its clips stay with their artist, so it is "
                f"tested in {n} fold(s) and missing from the others' test sets")
    with warnings.catch_warnings():  # "least populated class" warning: said above, in our words
        warnings.simplefilter("ignore", UserWarning)
        splits = list(StratifiedGroupKFold(k, shuffle=True, random_state=seed).split(ids, genres, groups))
    out = []
    for train_idx, test_idx in splits:
        rng = np.random.default_rng(seed)
        val_groups = set()
        for g in sorted(set(genres[train_idx])):
            mine = train_idx[genres[train_idx] == g]
            sizes = Counter(groups[mine])
            order = sorted(rng.permutation(sorted(sizes)), key=lambda a: sizes[a])  # smallest groups first
            taken = sum(sizes[a] for a in order if a in val_groups)
            for a in order[:-1]:  # never the genre's last training group
                if taken >= val_per_class:
                    break
                if a not in val_groups:
                    val_groups.add(a)
                    taken += sizes[a]
        val = [i for i in train_idx if groups[i] in val_groups]
        train = [i for i in train_idx if groups[i] not in val_groups]
        out.append({"train": sorted(ids[train].tolist()), "val": sorted(ids[val].tolist()),
                    "test": sorted(ids[test_idx].tolist())})
    for n, fold in enumerate(out):
        for g, line in empty_genres(fold, sorted(per_genre)).items():
            raise UserError(f"--folds {k}: in fold {n}, {line}; it has {per_genre[g]} artist group(s), and a fold "
                            f"needs one each to test, validate and train on")
    return out


def grouped_random_split(paths, n_test, n_val, groups, rng):
    """Artist-disjoint train/val/test over `paths` (relpaths): per genre, whole groups in seeded
    order go to test until it holds n_test(genre) clips, then to val until n_val(genre), the rest
    to train; a group met before (in another genre) stays where it went. A genre's last group
    always goes to train; a group that would overshoot is passed over for one that fits, and taken
    only when the part is still empty or it lands nearer the target than stopping does. Returns
    ({part: [relpath]}, [notes])."""
    where, notes = {}, []
    by_genre = defaultdict(list)
    for p in paths:
        by_genre[genre_of(p)].append(p)
    for g in sorted(by_genre):
        mine = sorted(by_genre[g])
        sizes = Counter(groups[clip_id(p)] for p in mine)
        order = [a for a in rng.permutation(sorted(sizes)) if a not in where]
        counts = Counter(where[a] for a in sizes if a in where for _ in range(sizes[a]))
        free = len(order)
        for part, want in (("test", n_test(len(mine))), ("val", n_val(len(mine)))):
            while counts[part] < want and free > 1:  # the first group (seeded order) that fits, else the smallest
                a = next((a for a in order if sizes[a] <= want - counts[part]), min(order, key=sizes.get))
                if counts[part] and sizes[a] >= 2 * (want - counts[part]):
                    break  # it would overshoot by more than is missing: stopping is nearer the target
                order.remove(a)
                where[a] = part
                counts[part] += sizes[a]
                free -= 1
        for a in order:
            where[a] = "train"
        if len(sizes) < 3:
            notes.append(f"genre {g} has {len(sizes)} artist group(s): it cannot be in all of train, val and test")
    parts = {part: sorted(p for p in paths if where[groups[clip_id(p)]] == part) for part in ("train", "val", "test")}
    return parts, notes


def overlap_report(parts, groups):
    """A line saying how many groups each part has and how many each pair of parts shares."""
    sets = {part: {groups.get(clip_id(p), f"clip:{clip_id(p)}") for p in rels} for part, rels in parts.items()}
    names = list(sets)
    pairs = {f"{a}/{b}": sets[a] & sets[b] for i, a in enumerate(names) for b in names[i + 1:]}
    shared = set().union(*pairs.values())
    line = ", ".join(f"{part} {len(s)}" for part, s in sets.items())
    each = ", ".join(f"{pair} {len(s)}" for pair, s in pairs.items())
    return f"artists per part: {line}; shared between parts: {len(shared)} ({each})" + (
        f", e.g. {sorted(shared)[0]}" if shared else "")
