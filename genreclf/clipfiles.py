"""The files of one cached clip: their names, and the note that says which copies are valid.

    clips/<clip id>.<version>.npy   (n_segments, ...) float32: one copy (orig, noise-..., ...)
    clips/<clip id>.source.json     {"file", "size", "mtime_ns", "sha256"}: the fingerprint of the
                                    audio the copies came from (identity.fingerprint), and
                                    "versions": the copies computed from that audio

A copy is valid when the note lists it and its file is whole (pack.npy_state: header and size).
A copy without a note, or one the note does not list, is computed again: it may come from other
audio, or from a run killed before it finished the clip.
"""
import hashlib
import json
from pathlib import Path

from . import pack

NAME_BYTES = 180  # longest file-name part kept as it is (255 bytes, less room for the version suffix)


def clip_file(cache, cid, version):
    """The file of one clip copy: clips/<clip id>.<version>.npy, nested like the audio. An id that
    would make an unsafe file name (bytes that are not UTF-8, a part too long for the file system,
    `.` or `..`) becomes clips/<genre>/_<hash of the id>, so every id gets a file of its own."""
    if not all(_plain(p) for p in cid.split("/")):
        genre = cid.split("/")[0]
        genre = genre if "/" in cid and _plain(genre) else "_"
        cid = f"{genre}/_{hashlib.sha1(cid.encode('utf-8', 'surrogateescape')).hexdigest()[:20]}"
    return Path(cache) / "clips" / f"{cid}.{version}.npy"


def source_file(cache, cid):
    """clips/<clip id>.source.json: the clip's audio fingerprint and the copies computed from it."""
    return clip_file(cache, cid, "source").with_suffix(".json")


def _plain(part):
    """A file-name part usable as it is: valid UTF-8, not too long, not `.`/`..`/empty."""
    try:
        return part not in ("", ".", "..") and len(part.encode("utf-8")) <= NAME_BYTES
    except UnicodeEncodeError:  # lone surrogates: bytes of a non-UTF-8 name
        return False


def read_note(cache, cid):
    """A clip's source note, or None when it has none (never computed, or a run killed mid-clip)."""
    try:
        return json.loads(source_file(cache, cid).read_text())
    except FileNotFoundError:
        return None
    except ValueError:  # a damaged note: compute the clip again
        return None


def valid_copies(cache, cid, versions, note, bad=None):
    """The copies of clip `cid` among `versions` that `note` lists and whose file is whole. Listed
    copies whose file exists but is damaged go into the list `bad`, when given."""
    ok = []
    for v in versions:
        if note is None or v not in note["versions"]:
            continue
        path = clip_file(cache, cid, v)
        state = pack.npy_state(path)
        if state == "ok":
            ok.append(v)
        elif state == "bad" and bad is not None:
            bad.append(path)
    return ok
