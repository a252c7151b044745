"""Distributed training, resume after SIGKILL, and atomic writes under kill."""
import json
import shutil
import signal
import subprocess
import sys

import numpy as np

from conftest import MINI, REPO, ctrl_c_after_first_epoch, needs_shared, run_script, wait_for
from genreclf import checkpoint
from genreclf.runlog import read_history


def start(*args):
    script, *rest = args
    return subprocess.Popen([sys.executable, str(REPO / script), *map(str, rest)], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def learned(history):
    """A history without its wall-clock seconds, which no two runs share."""
    return [{k: v for k, v in r.items() if k != "seconds"} for r in history]


def kill_when(proc, condition, timeout=300):
    """SIGKILL `proc` as soon as condition() holds; the test is void if it had already finished."""
    wait_for(proc, condition, timeout)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


@needs_shared
def test_torchrun_two_cpu_processes(mini3, tmp_path):
    run = tmp_path / "ddp"
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", str(REPO / "main.py"),
                        "--data-dir", str(MINI), "--work-dir", str(mini3), "--model", "baseline", "--epochs", "2",
                        "--do_train", "--do_test", "--out", str(run)], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    for name in ("config.json", "train.log", "metrics.json", "best.pt", "last.pt", "confusion.png"):
        assert (run / name).exists(), name
    m = json.loads((run / "metrics.json").read_text())
    hashes = m["rank_weight_hashes"]
    assert len(hashes) == 2 and hashes[0] == hashes[1]
    assert len(m["history"]) == 2 and m["test_clips"] == 6
    assert (run / "train.log").read_text().count("epoch   1") == 1  # rank 0 alone logs


@needs_shared
def test_resume_after_sigkill_matches_uninterrupted_run(mini3, tmp_path):
    # baseline: BatchNorm, dropout and Adam's moments are all in the state a resume must restore, at a
    # tenth of base2dcnn's time; 5 epochs so that the kill after epoch 2 lands before the end
    common = ["--data-dir", MINI, "--work-dir", mini3, "--model", "baseline", "--epochs", 5, "--seed", 3, "--do_train", "--do_test"]
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert run_script("main.py", *common, "--out", full).returncode == 0
    proc = start("main.py", *common, "--out", cut)
    kill_when(proc, lambda: (cut / "train.log").exists() and "epoch   2" in (cut / "train.log").read_text())
    last = checkpoint.read(cut / "last.pt")  # whole files after the kill: both load
    assert 2 <= last["train_state"]["epoch"] < 5
    checkpoint.load_model(cut / "best.pt")
    r = run_script("main.py", "--resume", cut, "--do_test")
    assert r.returncode == 0, r.stderr
    a, b = (json.loads((d / "metrics.json").read_text()) for d in (full, cut))
    assert learned(b["history"]) == learned(a["history"])
    assert [r["epoch"] for r in read_history(cut)] == list(range(1, 6))  # one history.csv, each epoch once
    assert learned(read_history(cut)) == learned(read_history(full))
    for key in ("test_clip_accuracy", "test_segment_accuracy", "test_macro_f1", "confusion_matrix", "test_loss"):
        assert b[key] == a[key], key
    assert "resumed" in (cut / "train.log").read_text()
    r = run_script("main.py", "--resume", cut, "--epochs", 11, "--lr", 0.5)  # a finished run: said so, nothing trains again
    assert r.returncode == 0, r.stderr
    assert "--epochs, --lr ignored" in r.stderr  # the run's own settings win, and the user is told
    assert "training had already finished at epoch 5" in (cut / "train.log").read_text()
    assert learned(json.loads((cut / "metrics.json").read_text())["history"]) == learned(a["history"])


def segment_files(cache):
    """A cache's clip files of segments, without the extras beside them (<copy>.silent.npy)."""
    return [f for f in cache.glob("clips/*/*.npy") if not f.name.endswith(".silent.npy")]


@needs_shared
def test_killed_extraction_leaves_whole_files_and_rerun_completes(mini3, tmp_path):
    for name in ("killed", "clean"):
        shutil.copytree(mini3 / "split", tmp_path / name / "split")
    args = ["dataset.py", "--data-dir", MINI, "--augment", "stretch"]
    proc = start(*args, "--work-dir", tmp_path / "killed")
    kill_when(proc, lambda: len(list((tmp_path / "killed" / "cache").glob("mel-*/clips/*/*.npy"))) >= 8)
    cache = next((tmp_path / "killed" / "cache").glob("mel-*"))
    done = segment_files(cache)
    assert 4 <= len(done) < 33 and not (cache / "index.json").exists()  # 21 clips + 12 training copies
    for f in done:
        assert np.load(f).shape[1:] == (128, 172)  # whole arrays only: written to a temp file, then renamed
    r = run_script(*args, "--work-dir", tmp_path / "killed")
    assert r.returncode == 0 and "already cached" in r.stdout
    assert run_script(*args, "--work-dir", tmp_path / "clean").returncode == 0
    clean = next((tmp_path / "clean" / "cache").glob("mel-*"))
    assert cache.name == clean.name
    files = sorted(p.relative_to(clean) for p in segment_files(clean))
    assert files == sorted(p.relative_to(cache) for p in segment_files(cache)) and len(files) == 33
    for rel in files:
        assert np.array_equal(np.load(cache / rel), np.load(clean / rel)), rel
    assert not list(cache.glob("clips/*/.*.tmp"))


@needs_shared
def test_ctrl_c_stops_cleanly_keeps_best_and_still_tests(mini3, tmp_path):
    run = tmp_path / "run"
    code, out, err = ctrl_c_after_first_epoch(run / "train.log", "--data-dir", MINI, "--work-dir", mini3, "--model", "base2dcnn",
                                              "--epochs", 50, "--do_train", "--do_test", "--out", run)
    assert code == 0, err
    assert "Traceback" not in err and "stopped by Ctrl+C" in out
    m = json.loads((run / "metrics.json").read_text())
    assert 1 <= len(m["history"]) < 50 and "test_clip_accuracy" in m
    assert m["interrupted"] is True  # a single run: Ctrl+C is an early stop, recorded as such
    assert "stopped by Ctrl+C" in (run / "results.md").read_text()
    checkpoint.load_model(run / "best.pt")
