"""One-line errors for users, and the wrapper that prints them instead of a traceback.

Storage failures (read-only file system, no space left, quota, permission) are input problems
too: the user fixes them by writing elsewhere or freeing space, not by reading a traceback.
`storage_error` turns such an OSError into one line naming the path, the cause and the remedy;
`run_cli` applies it to whatever a script raises, so every write in every stage is covered.
"""
import errno
import os
import signal
import sys

# errno -> (cause, which remedy: "elsewhere" for a place we may not write, "space" for a full disk)
STORAGE = {errno.EROFS: ("read-only file system", "elsewhere"),
           errno.EACCES: ("permission denied", "elsewhere"),
           errno.EPERM: ("operation not permitted", "elsewhere"),
           errno.ENOSPC: ("no space left on the device", "space"),
           errno.EDQUOT: ("disk quota exceeded", "space")}


class UserError(Exception):
    """A problem with the user's input (a path, a flag, a file). Printed as one line, exit code 2."""


def storage_error(e, elsewhere="another folder", again="rerun"):
    """The UserError for an OSError of storage (see STORAGE), or None for any other error.

    `elsewhere` names the flag that moves the writes (`--work-dir DIR`), `again` how to finish
    the work once there is space. Every write goes through genreclf.io, which keeps what is
    already written, so a rerun continues where this one stopped."""
    if not isinstance(e, OSError) or e.errno not in STORAGE:
        return None
    cause, kind = STORAGE[e.errno]
    where = e.filename if e.filename is not None else "a file"
    if kind == "space":
        remedy = f"free some space (or write to another disk: {elsewhere}), then {again}: what is already written is kept"
    else:
        remedy = f"write somewhere writable: {elsewhere}"
    from .audio import shown  # late: audio imports soundfile, and every module imports this one
    return UserError(f"{shown(where)}: {cause}: {remedy}")


def numba_cache_error(e):
    """The UserError for librosa's numba kernels finding no writable cache folder, or None."""
    if not (isinstance(e, RuntimeError) and "cannot cache function" in str(e)):
        return None
    return UserError("numba (librosa's compiled functions) found no writable cache folder beside librosa or in "
                     "your home: set NUMBA_CACHE_DIR to a writable folder, for example NUMBA_CACHE_DIR=/tmp/numba-cache")


_ctrl_c = {"pending": False}


def _on_ctrl_c(signum, frame):
    _ctrl_c["pending"] = True
    raise KeyboardInterrupt


def raise_lost_ctrl_c():
    """Raise KeyboardInterrupt for a Ctrl+C whose own was lost. Python raises it in whatever code
    runs when the signal arrives; inside a finalizer (a weakref callback, __del__) it is printed as
    "Exception ignored" and the program goes on, as if no Ctrl+C had come. Loops that Ctrl+C must
    stop (training) call this once a step. A no-op outside run_cli, which records the Ctrl+C."""
    if _ctrl_c["pending"]:
        _ctrl_c["pending"] = False
        raise KeyboardInterrupt


def ctrl_c_handled():
    """Forget the recorded Ctrl+C: its KeyboardInterrupt has been caught and acted on."""
    _ctrl_c["pending"] = False


def run_cli(main, elsewhere="another folder", again="rerun"):
    """Run `main()`; print a UserError (or a storage failure, see storage_error) as `error: ...`
    and exit 2, never a traceback. `elsewhere` and `again`: this script's remedies. When the reader
    of standard output goes away (`| head`), exit quietly with 141, as a tool killed by SIGPIPE.
    Ctrl+C exits with 130; each is recorded (raise_lost_ctrl_c), unless SIGINT is ignored (nohup &)."""
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _on_ctrl_c)
    try:
        code = main()
        sys.stdout.flush()  # here, not at exit, so that a closed pipe is caught below
    except BrokenPipeError:
        # Python docs, "Note on SIGPIPE": point stdout at devnull, or the flush at exit fails again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(141)
    except UserError as e:
        _fail(e)
    except (OSError, RuntimeError) as e:
        known = storage_error(e, elsewhere, again) or numba_cache_error(e)
        if known is None:
            raise
        _fail(known)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)


def _fail(e):
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
