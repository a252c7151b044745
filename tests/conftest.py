"""Shared fixtures. Real-data tests read ../shared/data and skip cleanly when it is absent."""
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "data"
MINI = SHARED / "gtzan_mini"
GENRES3 = "classical,metal,reggae"

needs_shared = pytest.mark.skipif(not MINI.is_dir(), reason="../shared/data is absent")


def run_script(*args, cwd=REPO, timeout=600):
    """Run a top-level script with this Python; returns CompletedProcess (text)."""
    script, *rest = args
    return subprocess.run([sys.executable, str(REPO / script), *map(str, rest)], cwd=cwd, capture_output=True, text=True, timeout=timeout)


def wait_for(proc, condition, timeout=300):
    """Poll until condition() holds while `proc` still runs; a test whose process finished first is void."""
    t = time.time()
    while not condition():
        assert proc.poll() is None, "the process finished before the condition held"
        assert time.time() - t < timeout
        time.sleep(0.02)


def ctrl_c_after_first_epoch(log, *main_args):
    """Start main.py with `main_args`, press Ctrl+C (SIGINT) once `log` shows epoch 1, wait for the
    exit; returns (returncode, stdout, stderr)."""
    # A job started in the background by a non-interactive shell (`make test &`, nohup) inherits
    # SIGINT ignored, and Python then leaves it ignored: give the child the default disposition.
    proc = subprocess.Popen([sys.executable, str(REPO / "main.py"), *map(str, main_args)],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    wait_for(proc, lambda: log.exists() and "epoch   1" in log.read_text())
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=300)
    return proc.returncode, out, err


def sine(freq, seconds, sr, amp=0.5):
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.fixture
def wav_factory(tmp_path):
    """Write audio files the tests generate: make(name, wave, sr) -> path."""
    def make(name, wave, sr=22050, **kw):
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, wave, sr, **kw)
        return path
    return make


@pytest.fixture(scope="session")
def mini3(tmp_path_factory):
    """gtzan_mini, 3 genres, split 4/1/2 per genre, with mel and musicnn caches (no augmentation).
    Returns the work dir. Built once per test session through the scripts themselves."""
    if not MINI.is_dir():
        pytest.skip("../shared/data is absent")
    work = tmp_path_factory.mktemp("mini3")
    common = ["--data-dir", MINI, "--work-dir", work]
    for cmd in (["split_data.py", *common, "--split", "random", "--genres", GENRES3, "--val-per-class", 1, "--test-per-class", 2],
                ["dataset.py", *common, "--workers", 2],
                ["dataset.py", *common, "--workers", 2, "--features", "musicnn"]):
        r = run_script(*cmd)
        assert r.returncode == 0, r.stderr
    return work


@pytest.fixture(scope="session")
def clip_groups(mini3):
    """A --groups CSV making each clip of mini3 its own group. In gtzan_mini classical and reggae
    are one artist each, so artist-grouped folds would leave them without training clips in the
    fold that tests them, which main.py refuses; tests of k-fold mechanics use this instead."""
    path = mini3 / "clip_groups.csv"
    rels = [line for part in ("train", "val", "test") for line in (mini3 / "split" / f"{part}.txt").read_text().split()]
    path.write_text("".join(f"{rel},{rel}\n" for rel in rels))
    return path


@pytest.fixture(scope="session")
def trained_run(mini3, tmp_path_factory):
    """A baseline trained for one epoch on mini3: run dir with best.pt."""
    run = tmp_path_factory.mktemp("run") / "baseline"
    r = run_script("main.py", "--data-dir", MINI, "--work-dir", mini3, "--model", "baseline", "--epochs", 1, "--out", run)
    assert r.returncode == 0, r.stderr
    return run


def fit_whole_and_resumed(cfg, data, tmp_path, monkeypatch):
    """Train `cfg` on `data` in one go (tmp_path/whole), and again with Ctrl+C at the start of epoch
    2 then --resume (tmp_path/half). Returns the two last.pt checkpoints (whole, resumed)."""
    from genreclf import checkpoint, recipe
    from genreclf.train import fit

    fit(cfg, data, tmp_path / "whole")
    view = recipe.epoch_view

    def interrupt_at_2(fs, cfg, epoch):
        if epoch == 2:
            raise KeyboardInterrupt
        return view(fs, cfg, epoch)
    monkeypatch.setattr(recipe, "epoch_view", interrupt_at_2)
    fit(cfg, data, tmp_path / "half")
    assert checkpoint.read(tmp_path / "half" / "last.pt")["train_state"]["epoch"] == 1
    monkeypatch.setattr(recipe, "epoch_view", view)
    fit(cfg, data, tmp_path / "half", resume=True)
    return checkpoint.read(tmp_path / "whole" / "last.pt"), checkpoint.read(tmp_path / "half" / "last.pt")
