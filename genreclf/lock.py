"""Advisory locks that the OS releases when their process ends, even on a crash or kill -9
(fcntl.flock on a file: the lock belongs to the open file, which dies with the process).

    RUN/.lock           main.py: one process at a time per run folder and per experiment folder,
                        held while the run lives (`hold_folder`); it holds the holder's pid, host
                        and start time, for the message of the one refused
    CACHE/.lock         dataset.py: a plain run holds it alone, shards share it (`Lock`); a run
                        that holds it alone may delete temporary files left by killed runs
    CACHE/.merge.lock   one process at a time writes the pack and index.json

On storage we cannot write (a finished cache on a read-only disk) a lock file that cannot be
created is no lock at all: nobody can write there, so there is nothing to guard.
"""
import os
import socket
import time
from pathlib import Path

from .errors import STORAGE, UserError

try:
    import fcntl
except ImportError:  # not POSIX: no locking (the rest works as before)
    fcntl = None


class Lock:
    """A lock file, taken shared or exclusive, waiting or not; release() or process end frees it.
    Usable as a context manager (released on exit)."""

    def __init__(self, path):
        self.path, self.fd = Path(path), None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as e:
            if e.errno not in STORAGE:
                raise
            try:  # a read-only copy of a lock file made earlier still locks
                self.fd = os.open(self.path, os.O_RDONLY)
            except OSError:
                self.fd = None

    def take(self, shared=False, wait=True):
        """Take the lock; returns False when `wait` is False and another process holds it."""
        if self.fd is None or fcntl is None:
            return True
        try:
            fcntl.flock(self.fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            return False
        return True

    def note(self, text):
        """Record who holds the lock (for the message of the next one), if the file is writable."""
        try:
            os.ftruncate(self.fd, 0)
            os.pwrite(self.fd, text.encode(), 0)
        except (OSError, TypeError):
            pass

    def holder(self):
        try:
            return self.path.read_text().strip()
        except OSError:
            return ""

    def release(self):
        if self.fd is not None:
            os.close(self.fd)  # closing the file drops its lock
            self.fd = None

    def __del__(self):  # the holder's last reference is gone (its function returned)
        self.release()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


def hold_folder(folder, what="main.py", alternative="choose another --out"):
    """Refuse, with one line, a folder (a run or experiment folder) that another live process
    holds; else take it. Returns the Lock, a context manager: the folder is held until the `with`
    block ends (experiment._held), it is released, or the process ends."""
    folder = Path(folder)
    lock = Lock(folder / ".lock")
    if not lock.take(wait=False):
        who = lock.holder()
        lock.release()
        raise UserError(f"{folder}: in use by another {what}{f' (pid {who})' if who else ''}: wait for it to "
                        f"finish, or {alternative}")
    lock.note(f"{os.getpid()} on {socket.gethostname()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}")
    return lock
