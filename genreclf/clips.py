"""Clip names, the one naming rule every stage shares (splits, artist groups, caches, runs):

    DATA/wav/jazz/jazz.00012.wav  ->  clip id `jazz/jazz.00012`, genre `jazz`

A leaf module: splits.py and groups.py both import it, and neither imports the other's caller.
"""
from pathlib import Path


def clip_id(relpath):
    """`jazz/jazz.00012.wav` -> `jazz/jazz.00012`: one name for a track whatever its format."""
    return str(Path(relpath).with_suffix(""))


def genre_of(relpath):
    """The genre of a path (or clip id) relative to DATA/wav: its first folder."""
    return Path(relpath).parts[0]
