"""Atomic writes: a file is either absent or complete, never half-written.

Everything we persist (caches, checkpoints, metrics, split lists) goes through here: write to a
temporary file in the same folder, fsync, then rename over the target (rename is atomic on POSIX),
then fsync the folder so the rename itself survives a power cut. Files get the mode a plain open()
would give (0666 minus the umask), not mkstemp's private 0600, so shared storage stays readable.

A write that fails for lack of space or permission leaves the target as it was and raises the
OSError with the target's path as its filename (not the temporary's), which errors.storage_error
turns into one line. Writers go through Python file objects, so a full disk is an OSError (ENOSPC)
rather than torch's "unexpected pos" or a SIGBUS from a memory map.
"""
import io
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from .errors import STORAGE


def _umask():
    """The process umask. Linux shows it in /proc (thread-safe); elsewhere set it and set it back."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1], 8) for line in f if line.startswith("Umask:"))
    except (OSError, StopIteration, ValueError):
        mask = os.umask(0o22)
        os.umask(mask)
        return mask


def _fsync_dir(folder):
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # some file systems do not open folders; the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path`; on success rename it onto `path`, else delete it."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except Exception as e:
        cause = _storage_cause(e)
        if cause is None:
            raise
        name = Path(str(cause.filename)).name  # mkstemp's own failure names its random temporary
        temp = cause.filename is not None and name.startswith(f".{path.name}.") and name.endswith(".tmp")
        if cause.filename in (None, tmp) or temp:  # name what the user asked for
            cause.filename = str(path)
        if cause is e:
            raise
        raise cause from None  # torch.save's "unexpected pos" RuntimeError, raised while handling ENOSPC
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def _storage_cause(e):
    """The OSError of storage (errors.STORAGE) that `e` is or was raised while handling, or None."""
    while e is not None:
        if isinstance(e, OSError) and e.errno in STORAGE:
            return e
        e = e.__cause__ or e.__context__
    return None


def write_text(path, text):
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)


def json_safe(obj):
    """`obj` with every NaN or infinite float replaced by None (null) and numpy scalars and arrays
    made plain, recursively: bare NaN is not JSON, and strict parsers refuse the file."""
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


def to_json(obj):
    """Strict JSON text of `obj` (json_safe first: never NaN or Infinity), indented by 2."""
    return json.dumps(json_safe(obj), indent=2, allow_nan=False)


def write_json(path, obj, only_if_changed=False):
    """Write `obj` as strict, indented JSON (to_json). only_if_changed: leave a file that already
    holds exactly this text untouched (a finished cache is read, not rewritten, and may sit on
    read-only storage). Returns whether it wrote."""
    text = to_json(obj) + "\n"
    if only_if_changed:
        try:
            if Path(path).read_text() == text:
                return False
        except (OSError, UnicodeDecodeError):
            pass
    write_text(path, text)
    return True


def save_npy(path, array):
    buf = io.BytesIO()  # np.save to a real file uses fwrite, whose short write on a full disk has no errno
    np.save(buf, array)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(buf.getbuffer())


def save_torch(path, obj):
    import torch

    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:  # a file object: a full disk is ENOSPC, not "unexpected pos"
            torch.save(obj, f)
