"""Where each stage reads and writes. Audio stays in DATA/wav (read-only to us); what we derive
goes under a work dir, by default DATA itself:

    WORK/split/{train,val,test}.txt, split.json      split_data.py
    WORK/cache/<feature>-<hash>/                      dataset.py
    runs/<model>-<time>/                              main.py

plus, on a read-only install and HOME, a writable cache folder for librosa's numba kernels
(`ensure_numba_cache`).
"""
import importlib.util
import os
import stat
import sys
import tempfile
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


def _writable(folder):
    """Whether files can be created in `folder` (or, if it is missing, in its nearest existing parent).
    os.access reports read-only mounts (EROFS) and permissions; it creates nothing."""
    folder = Path(folder)
    while not folder.exists():
        if folder.parent == folder:
            return False
        folder = folder.parent
    return folder.is_dir() and os.access(folder, os.W_OK | os.X_OK)


def numba_cache_dir():
    """A writable folder for numba's cache when neither of numba's defaults is writable, else None.

    librosa compiles some kernels with numba's `cache=True` (time_stretch, pitch_shift, the mel
    filters' note names); numba caches them beside librosa's source, or else in ~/.cache/numba,
    and raises "cannot cache function ...: no locator available" when neither is writable (a
    read-only install and HOME, as in a container). Then we use a private folder in the temporary
    directory, mode 0700 and owned by us (numba loads pickles from it), else a fresh one."""
    if os.environ.get("NUMBA_CACHE_DIR") or os.name != "posix":
        return None
    spec = importlib.util.find_spec("librosa")  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        return None
    librosa = Path(next(iter(spec.submodule_search_locations)))
    try:  # numba's user-wide folder (its appdirs.user_cache_dir)
        home = Path.home() / "Library" / "Caches" if sys.platform == "darwin" else \
            Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    except RuntimeError:  # no HOME and no password entry
        home = None
    if _writable(librosa / "core" / "__pycache__") or (home is not None and _writable(home / "numba")):
        return None
    mine = Path(tempfile.gettempdir()) / f"genreclf-numba-{os.getuid()}"
    try:
        mine.mkdir(mode=0o700, exist_ok=True)
        st = mine.lstat()  # not a link someone else planted: ours, a folder, writable by us alone
        if stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and not st.st_mode & 0o022 and _writable(mine):
            return str(mine)
        return tempfile.mkdtemp(prefix="genreclf-numba-")
    except OSError:
        return None  # nowhere to write: errors.numba_cache_error says how to set one


def ensure_numba_cache():
    """Point NUMBA_CACHE_DIR at a writable folder when numba would find none (see numba_cache_dir).
    Must run before numba is imported: genreclf/__init__.py calls it."""
    folder = numba_cache_dir()
    if folder:
        os.environ["NUMBA_CACHE_DIR"] = folder
