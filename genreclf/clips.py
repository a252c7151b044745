"""Clip names, the one naming rule every stage shares (splits, artist groups, caches, runs):

    DATA/wav/jazz/jazz.00012.wav  ->  clip id `jazz/jazz.00012`, genre `jazz`

A leaf module: splits.py and groups.py both import it, and neither imports the other's caller.
"""
from collections import Counter
from pathlib import Path

PARTS = ("train", "val", "test")


def clip_id(relpath):
    """`jazz/jazz.00012.wav` -> `jazz/jazz.00012`: one name for a track whatever its format."""
    return str(Path(relpath).with_suffix(""))


def genre_of(relpath):
    """The genre of a path (or clip id) relative to DATA/wav: its first folder."""
    return Path(relpath).parts[0]


def empty_genres(parts, genres, names=("train", "val")):
    """{genre: line} for each genre of `genres` with no clip in one of the parts `names` of
    `parts` ({part: [relpath or clip id]}), the line such as `genre classical has no train clips
    (0 train / 0 val / 7 test)`; {} when every genre has clips in each. A genre with no training
    clips cannot be learned (its test recall is 0 by construction), and one with no validation
    clips plays no part in choosing the best epoch: main.py refuses both, split_data.py warns."""
    counts = {name: Counter(genre_of(p) for p in parts.get(name, [])) for name in PARTS}
    lines = {}
    for g in genres:
        empty = [name for name in names if not counts[name][g]]
        if empty:
            have = " / ".join(f"{counts[name][g]} {name}" for name in PARTS)
            lines[g] = f"genre {g} has no {' and no '.join(empty)} clips ({have})"
    return lines
