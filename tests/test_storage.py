"""Read-only and full storage, two processes at once, and corrupt cache files (issue 20, points
1 to 3).

Read-only and full file systems are real where the platform allows: permissions for a normal
user, and for root (whom permissions do not stop) read-only bind mounts and a small tmpfs inside
a private user and mount namespace (`unshare -rm`), which vanish with it. Where neither works,
those tests skip; the failures themselves are also raised by monkeypatching, which always runs.
"""
import errno
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, run_script
from genreclf import experiment, rundata
from genreclf.checkpoint import save as save_checkpoint
from genreclf.errors import UserError, storage_error
from genreclf.extract import cache_dir
from genreclf.lock import Lock, hold_folder
from genreclf.train import TrainConfig
from tinycache import EXTRACT, FEAT, MEL, build, contents, one_error_line, stats, tiny  # noqa: F401 (tiny: a fixture)

def _namespaces():
    try:
        return subprocess.run(["unshare", "-rm", "true"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


NAMESPACES = _namespaces()
needs_mounts = pytest.mark.skipif(not NAMESPACES, reason="no user and mount namespaces (unshare -rm) here")


def in_namespace(script):
    """Run a shell script as root of a new user and mount namespace: its mounts vanish with it."""
    return subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True, timeout=300)


def command(*args):
    """A top-level script's command line, quoted for sh."""
    return f"cd {shlex.quote(str(REPO))} && " + shlex.join([sys.executable, str(REPO / args[0]), *map(str, args[1:])])


def run_read_only(folders, *args):
    """Run a script with `folders` read-only: by permissions, or as root by read-only bind mounts."""
    if os.geteuid() != 0:
        dirs = [d for f in folders for d in [Path(f), *Path(f).rglob("*")] if d.is_dir()]
        modes = {d: d.stat().st_mode for d in dirs}
        for d in dirs:
            d.chmod(0o555)
        try:
            return run_script(*args)
        finally:
            for d, mode in modes.items():
                d.chmod(mode)
    if not NAMESPACES:
        pytest.skip("root, and no mount namespace for a read-only bind mount")
    binds = " && ".join(f"mount --bind -o ro {shlex.quote(str(f))} {shlex.quote(str(f))}" for f in folders)
    return in_namespace(f"{binds} && {command(*args)}")


# --- issue 20, point 1: storage ---------------------------------------------------------------

@pytest.mark.parametrize("code,cause,remedy", [(errno.EROFS, "read-only file system", "--work-dir DIR"),
                                               (errno.EACCES, "permission denied", "--work-dir DIR"),
                                               (errno.ENOSPC, "no space left on the device", "free some space"),
                                               (errno.EDQUOT, "disk quota exceeded", "free some space")])
def test_storage_errors_name_path_cause_and_remedy(code, cause, remedy):
    e = storage_error(OSError(code, os.strerror(code), "/w/cache/x.npy"), "--work-dir DIR")
    assert str(e).startswith("/w/cache/x.npy: ") and cause in str(e) and remedy in str(e) and "\n" not in str(e)
    assert storage_error(OSError(errno.ENOENT, "gone", "x")) is None  # not a storage problem: not ours to explain


def test_a_full_disk_at_torch_save_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    import torch
    path = tmp_path / "best.pt"
    save_checkpoint(path, model="baseline", state={"w": torch.ones(3)})
    old = path.read_bytes()

    def full(obj, f, *a, **kw):  # what torch.save does on a full disk: its zip writer fails while handling ENOSPC
        f.write(b"PK\x03\x04 half a checkpoint")
        try:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")
    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(OSError) as caught:
        save_checkpoint(path, model="baseline", state={"w": torch.zeros(3)})
    assert caught.value.filename == str(path) and path.read_bytes() == old and os.listdir(tmp_path) == ["best.pt"]
    assert str(storage_error(caught.value, "--out DIR")).startswith(f"{path}: no space left on the device: free some space")


def test_a_read_only_data_dir_without_work_dir_is_one_line(tiny):
    data, _ = tiny
    r = run_read_only([data], "split_data.py", "--data-dir", data, "--split", "random")
    one_error_line(r, str(data / "split"), "--work-dir DIR")
    assert "read-only file system" in r.stderr or "permission denied" in r.stderr


def test_a_finished_cache_is_read_without_writing(tiny, capsys):
    data, work = tiny
    cache = build(data, work)
    before = stats(cache)
    build(data, work)
    assert stats(cache) == before  # spec.json, the pack and index.json included
    r = run_read_only([work], "dataset.py", "--data-dir", data, "--work-dir", work, *EXTRACT)
    assert r.returncode == 0 and "9 of 9 clips already cached, 0 to do" in r.stdout, r.stderr


@needs_mounts
def test_librosa_numba_kernels_work_on_a_read_only_install_and_home(tmp_path):
    """librosa's @jit(cache=True) kernels need a writable cache folder as they are defined; a
    container's read-only site-packages and HOME leave numba none, unless genreclf finds one."""
    venv = Path(sys.prefix).resolve()
    binds = " && ".join(f"mount --bind -o ro {shlex.quote(str(p))} {shlex.quote(str(p))}" for p in (venv, Path.home()))
    env = "unset NUMBA_CACHE_DIR XDG_CACHE_HOME; "
    use = "librosa.filters.mel(sr=22050, n_fft=1024, n_mels=16); import librosa.effects; print('ok')"
    python = f"{binds} && {env}cd {shlex.quote(str(REPO))} && {shlex.quote(sys.executable)} -c "
    bare = in_namespace(python + shlex.quote(f"import librosa; {use}"))
    assert bare.returncode != 0 and "cannot cache function" in bare.stderr  # the failure is real here
    ours = in_namespace(python + shlex.quote(f"import genreclf, librosa; {use}"))
    assert ours.returncode == 0 and ours.stdout.strip() == "ok", ours.stderr


@needs_mounts
def test_a_full_disk_is_one_line_and_a_rerun_with_space_gives_the_same_cache(tiny, tmp_path):
    data, work = tiny
    single = contents(build(data, _copy_split(work, tmp_path / "single")))
    (work / "cache").mkdir()
    out = tmp_path / "out"
    run = command("dataset.py", "--data-dir", data, "--work-dir", work, *EXTRACT)
    pool = command("dataset.py", "--data-dir", data, "--work-dir", work, *EXTRACT, "--workers", 2)  # errors cross processes
    r = in_namespace(f"mount -t tmpfs -o size=96k tmpfs {work / 'cache'} && {{ {pool} 2>&1; echo rc=$?; }} && "
                     f"mount -o remount,size=8m {work / 'cache'} && {run} >/dev/null && cp -a {work / 'cache'} {out}")
    assert r.returncode == 0, r.stdout + r.stderr
    first = r.stdout
    errors = [line for line in first.splitlines() if line.startswith("error:")]
    assert "rc=2" in first and len(errors) == 1 and "Traceback" not in first, first
    assert "no space left on the device" in errors[0] and str(work / "cache") in errors[0] and "free some space" in errors[0]
    (cache,) = [p for p in out.iterdir() if p.name.startswith("mel-")]
    assert contents(cache) == single  # byte for byte what one run with space writes


def _copy_split(work, other):
    shutil.copytree(work / "split", other / "split")
    return other


# --- issue 20, point 2: two runs at once ------------------------------------------------------

def test_two_extractions_on_one_cache_wait_and_end_as_one_run(tiny, tmp_path):
    data, work = tiny
    single = contents(build(data, _copy_split(work, tmp_path / "single")))
    cache = cache_dir(work / "cache", FEAT, data)
    shard = Lock(cache / ".lock")  # another process at work on the cache, as a shard of it would be
    assert shard.take(shared=True)
    live = cache / "clips" / "a" / ".clip 0.orig.npy.live.tmp"  # the temporary file it is writing
    live.parent.mkdir(parents=True)
    live.write_bytes(b"half")
    procs = [subprocess.Popen([sys.executable, str(REPO / "dataset.py"), "--data-dir", str(data), "--work-dir", str(work),
                               *map(str, EXTRACT)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    for p in procs:
        assert "waiting for it to finish" in p.stdout.readline()
    assert live.exists() and not list(cache.rglob("*.npy"))  # neither touched the other's work
    shard.release()
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0 and "Traceback" not in err, err
    assert not live.exists() and contents(cache) == single  # the stale file went; one run's cache


def test_a_run_folder_in_use_is_refused_and_freed_by_a_crash(tiny, tmp_path):
    data, work = tiny
    build(data, work)
    run = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", "import sys; from genreclf.lock import hold_folder; "
                               "held = hold_folder(sys.argv[1]); print('held', flush=True); sys.stdin.read()", str(run)],
                              cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        r = run_script("main.py", "--data-dir", data, "--work-dir", work, *MEL, "--model", "baseline", "--epochs", 1,
                       "--out", run)
        one_error_line(r, f"{run}: in use by another main.py (pid {holder.pid} on ", "choose another --out")
        assert not (run / "train.log").exists()
        with pytest.raises(UserError, match="in use by another main.py"):  # an experiment folder too
            experiment.repeat(TrainConfig(model="baseline", epochs=1), {}, run, seeds=[0, 1])
    finally:
        holder.kill()  # SIGKILL: no clean-up runs, the OS drops the lock with the process
        holder.wait()
    held = hold_folder(run)
    held.release()


# --- issue 20, point 3: corrupt cache files ---------------------------------------------------

def test_truncated_and_empty_clip_files_are_computed_again(tiny, capsys):
    data, work = tiny
    cache = build(data, work)
    before = contents(cache)
    files = sorted(cache.glob("clips/*/*.orig.npy"))
    files[0].write_bytes(files[0].read_bytes()[:200])  # cut inside the data
    files[1].write_bytes(b"")
    files[2].write_bytes(files[2].read_bytes()[:40])  # cut inside the header
    capsys.readouterr()
    build(data, work)
    out = capsys.readouterr().out
    assert "6 of 9 clips already cached, 3 to do" in out and "3 cached clip files truncated or unreadable" in out
    assert contents(cache) == before


def test_a_truncated_pack_is_named_at_training_and_rebuilt_by_dataset_py(tiny, capsys):
    data, work = tiny
    cache = build(data, work)
    before = contents(cache)
    (packed,) = cache.glob("segments-*.npy")
    packed.write_bytes(packed.read_bytes()[:1000])
    with pytest.raises(UserError, match=re.escape(f"{packed}: segment pack truncated or unreadable: rerun dataset.py")):
        index = rundata.read_index(cache)
        rundata.load_clips({"mel": cache}, index.splits["test"], index.genres)
    capsys.readouterr()
    build(data, work)
    assert "truncated or unreadable segment pack: rebuilding it" in capsys.readouterr().out
    assert contents(cache) == before


def test_a_read_only_folder_names_the_file_not_its_temporary(tmp_path, monkeypatch):
    """mkstemp's own EROFS names its random temporary (`.train.txt.i113xnzu.tmp`): the error names
    train.txt, what the user asked for."""
    import tempfile

    from genreclf.io import write_text

    def read_only(dir, prefix, suffix):
        raise OSError(errno.EROFS, "Read-only file system", os.path.join(dir, f"{prefix}i113xnzu{suffix}"))
    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    with pytest.raises(OSError) as e:
        write_text(tmp_path / "split" / "train.txt", "a\n")
    assert e.value.filename == str(tmp_path / "split" / "train.txt")
