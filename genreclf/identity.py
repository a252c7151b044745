"""What a cache was made from, so that it is never used for other audio or another split.

    WORK/cache/<features>-<spec hash>-<data id>/    data id: a hash of the data folder's absolute
                                    path, symbolic links resolved (`data_id`): two folders named
                                    `gtzan` that share a --work-dir get a cache each
    clips/<clip id>.source.json     the fingerprint of the audio file the clip's copies came from,
                                    and which copies were computed from it (`fingerprint`)
    index.json                      "data_dir", "split_sha256" (`split_sha256` of the lists it was
                                    built from), and each clip's "source" fingerprint

A fingerprint is the file's size and modification time (ns), plus a SHA-256 of its first and last
64 KB. Checking one costs a stat; the content is hashed only when size or time differ, so a copied
or touched data folder is not re-extracted, while a file replaced in place is. (A replacement
that keeps both the size and the time to the nanosecond goes unseen, as with rsync's quick check.)
"""
import hashlib
import json
import os
from pathlib import Path

from .audio import shown
from .config import digest
from .errors import UserError
from .splits import PARTS, load_split

EDGE = 64 * 1024  # bytes hashed at each end of an audio file


def data_id(data_dir):
    """8 hex digits naming the data folder `data_dir` (its resolved absolute path)."""
    path = os.fsencode(Path(data_dir).resolve())
    return hashlib.sha256(path).hexdigest()[:8]


def cache_dir(cache_root, feat, data_dir):
    """WORK/cache/<features>-<hash of the spec>-<data id>: one cache per spec and data folder."""
    return Path(cache_root) / f"{feat.name}-{digest(feat.key())}-{data_id(data_dir)}"


def legacy_dir(cache_root, feat):
    """Where dataset.py put this spec's cache before caches knew their data folder."""
    return Path(cache_root) / f"{feat.name}-{digest(feat.key())}"


def _edges(path, size):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read(EDGE))
        if size > 2 * EDGE:
            f.seek(size - EDGE)
        h.update(f.read(EDGE))  # the rest of a short file, or its last 64 KB
    return h.hexdigest()


def fingerprint(wav, rel):
    """{"file": rel, "size", "mtime_ns", "sha256"} of the audio file wav/rel (rel as in the split
    lists). Raises OSError when it cannot be read."""
    path = Path(wav) / rel
    st = os.stat(path)
    return {"file": rel, "size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": _edges(path, st.st_size)}


def same_audio(fp, wav, rel=None):
    """Whether wav/<file> is still the audio of fingerprint `fp`: True, False (changed, or listed
    as another file `rel` now), or None (the file is gone: nothing to compare)."""
    rel = fp["file"] if rel is None else rel
    if rel != fp["file"]:
        return False
    path = Path(wav) / rel
    try:
        st = os.stat(path)
        if st.st_size != fp["size"]:
            return False
        return st.st_mtime_ns == fp["mtime_ns"] or _edges(path, st.st_size) == fp["sha256"]
    except FileNotFoundError:
        return None


def split_sha256(parts):
    """SHA-256 of the split lists {part: [relpath]}, as read (line endings and BOM do not count)."""
    blob = json.dumps({p: list(parts.get(p, [])) for p in PARTS}, ensure_ascii=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def check_caches(caches, split_dir=None, data_dir=None):
    """Refuse, in one line, a cache ({input: cache dir}) whose index.json is unreadable, or whose
    split lists or audio changed since dataset.py built it. split_dir: the split folder a run would
    train on (None: not checked); data_dir: the audio (default: the folder the index records; not
    checked when it is not on this machine). Fields an older index lacks are not checked."""
    for cache in caches.values():
        path = Path(cache) / "index.json"
        try:
            index = json.loads(path.read_text())
        except ValueError:
            raise UserError(f"{path}: unreadable (truncated or damaged): rerun dataset.py with the same flags") from None
        if split_dir is not None and (Path(split_dir) / "train.txt").exists() and "split_sha256" in index:
            if split_sha256(load_split(split_dir)) != index["split_sha256"]:
                raise UserError(f"{path}: built from other split lists than {split_dir}/*.txt (split_data.py ran "
                                f"since dataset.py): rerun dataset.py with the same flags")
        _check_audio(cache, index, Path(data_dir or index.get("data_dir") or "."))


def _check_audio(cache, index, data):
    if not (data / "wav").is_dir() or "data_dir" not in index:
        return
    clips = [c for part in index["splits"].values() for c in part if "source" in c]
    changed = [c for c in clips if same_audio(c["source"], data / "wav") is False]
    if changed:
        raise UserError(f"{cache}: the audio of {len(changed)} of its {len(clips)} clips changed since dataset.py "
                        f"cached it, such as {shown(data / 'wav' / changed[0]['source']['file'])}: rerun dataset.py "
                        f"with the same flags (it re-extracts only those clips)")


def open_cache(cache_root, feat, data_dir=None, make=None):
    """The cache dir of `feat` for the audio in `data_dir`, with a clear error if dataset.py has not
    made it (`make`: the dataset.py command that would). Without data_dir: the one cache of these
    features under cache_root, whatever its data."""
    key = f"{feat.name}-{digest(feat.key())}"
    if data_dir is not None:
        cache = cache_dir(cache_root, feat, data_dir)
        found = [cache] if (cache / "index.json").exists() else []
    else:
        found = sorted(p.parent for p in Path(cache_root).glob(f"{key}-*/index.json"))
    if len(found) == 1:
        return found[0]
    others = [p.parent for p in Path(cache_root).glob(f"{key}-*/index.json")]
    if len(found) > 1 or others:
        sources = ", ".join(sorted(str(_data_dir_of(p)) for p in (found or others)))
        hint = (f"several data folders have one ({sources}): pass --data-dir" if found else
                f"there is one for the audio in {sources}: pass that --data-dir, or run dataset.py for this one")
        raise UserError(f"no single {feat.name} cache for {shown(data_dir or cache_root)} under {cache_root}: {hint}")
    old = legacy_dir(cache_root, feat)
    hint = (f" ({old} was made by an older dataset.py that did not record its audio: it is not used)"
            if (old / "index.json").exists() else "")
    how = f"make it with: {make}" if make else "run dataset.py with the same feature flags first"
    raise UserError(f"no {feat.name} cache for {shown(data_dir or cache_root)} under {cache_root}: {how}{hint}")


def _data_dir_of(cache):
    try:
        return json.loads((Path(cache) / "index.json").read_text()).get("data_dir", "?")
    except (OSError, ValueError):
        return "?"
