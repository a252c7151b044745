"""How a run learned, written into its folder as each epoch ends: history.csv, curves.png and,
with main.py --tensorboard DIR, TensorBoard event files; an experiment's curves.png overlays its runs.

    history.csv   epoch, train_loss, train_accuracy, val_loss, val_clip_accuracy,
                  val_segment_accuracy, lr, seconds, best  (one row per finished epoch)
    curves.png    plots.save_curves: loss, accuracy and learning rate against epoch, best marked

Both are rewritten whole, atomically, from the run's history (the list train.Trainer keeps in
last.pt), so a resumed run continues the same files and an epoch is never listed twice, whether
the kill came before or after the last write. Train accuracy is over training segments (with the
recipe's augmentation on), val accuracy over val clips, as in train.log.
"""
import csv
import io
import json
import time
from pathlib import Path

from . import plots
from .errors import UserError
from .io import write_text

HISTORY = "history.csv"
CURVES = "curves.png"
COLUMNS = ("epoch", "train_loss", "train_accuracy", "val_loss", "val_clip_accuracy", "val_segment_accuracy",
           "lr", "seconds", "best")
# curves.png is redrawn at most this often (seconds) while training; the run's end always redraws
# it. Drawing takes about 0.15 s, which would be a tenth of a q2 epoch on 187 clips.
REDRAW_S = 10.0
_last_drawn = {}       # run folder -> time.monotonic() of its last curves.png
_tensorboard = ""      # use_tensorboard's folder ("": no TensorBoard)
_boards = {}           # TensorBoard log dir -> its SummaryWriter, open for the whole process


def history_csv(history):
    """history.csv's text: one row per epoch, `best` 1 on the epoch whose best.pt is kept."""
    best = plots.best_epoch(history)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COLUMNS)
    for r in history:
        row = {**r, "best": int(r["epoch"] == best)}
        w.writerow(["" if row.get(c) is None else (f"{row[c]:.6g}" if isinstance(row[c], float) else row[c])
                    for c in COLUMNS])
    return buf.getvalue()


def read_history(run_dir):
    """A run's per-epoch records: from history.csv, else from metrics.json's "history" (runs made
    before history.csv existed), else []."""
    run_dir = Path(run_dir)
    if (run_dir / HISTORY).exists():
        with open(run_dir / HISTORY, newline="") as f:
            return [{k: (int(v) if k in ("epoch", "best") else float(v)) if v != "" else None for k, v in r.items()}
                    for r in csv.DictReader(f)]
    if (run_dir / "metrics.json").exists():
        return json.loads((run_dir / "metrics.json").read_text()).get("history", [])
    return []


def use_tensorboard(folder):
    """Log every later epoch of this process (each run of an experiment too) to TensorBoard under
    `folder` as well ("" or None: stop). Set once by main.py --tensorboard, like the logging set-up:
    an output, not a training setting, so it is in no config and a --resume may add it. Raises a
    one-line UserError, before any training, when the tensorboard package is missing."""
    global _tensorboard
    if folder:
        _writer_class()
    _tensorboard = str(folder or "")


def _writer_class():
    """torch.utils.tensorboard.SummaryWriter, or a one-line UserError saying how to install it."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise UserError("--tensorboard needs the tensorboard package, which is not installed: "
                        "pip install tensorboard (here: .venv/bin/pip install tensorboard), or leave --tensorboard out") from None
    return SummaryWriter


def board_dir(folder, run_dir):
    """Where a run's event files go: FOLDER/<run>, or FOLDER/<experiment>/<run> for a run of an
    experiment (--folds/--seeds), so that `tensorboard --logdir FOLDER` lists every run by name."""
    run_dir = Path(run_dir)
    in_experiment = (run_dir.parent / "experiment.json").exists()
    return Path(folder) / (Path(run_dir.parent.name) / run_dir.name if in_experiment else run_dir.name)


def _log_scalars(run_dir, records):
    """Add `records` (history rows) to the run's TensorBoard events and flush them to disk."""
    where = board_dir(_tensorboard, run_dir)
    if where not in _boards:
        # purge_step: a resumed run hides what a killed one had logged after its last.pt
        _boards[where] = _writer_class()(str(where), purge_step=records[0]["epoch"])
    writer = _boards[where]
    for r in records:
        for tag, name in (("loss/train", "train_loss"), ("loss/val", "val_loss"), ("accuracy/train", "train_accuracy"),
                          ("accuracy/val_clip", "val_clip_accuracy"), ("accuracy/val_segment", "val_segment_accuracy"),
                          ("lr", "lr"), ("seconds", "seconds")):
            if r.get(name) is not None:
                writer.add_scalar(tag, r[name], r["epoch"])
    writer.flush()  # whole events on disk each epoch: a killed run loses nothing it logged


def epoch_end(run_dir, history, title="", final=False):
    """Called once per finished epoch on rank 0 (train.Trainer.end_epoch): rewrite history.csv,
    redraw curves.png (at most every REDRAW_S seconds, always when `final`) and log the newest
    epoch to TensorBoard when use_tensorboard() was given a folder."""
    run_dir = Path(run_dir)
    write_text(run_dir / HISTORY, history_csv(history))
    if final or time.monotonic() - _last_drawn.get(run_dir, -REDRAW_S) >= REDRAW_S:
        plots.save_curves(history, run_dir / CURVES, title)
        _last_drawn[run_dir] = time.monotonic()
    if _tensorboard and not final:
        _log_scalars(run_dir, history[-1:])


def run_end(run_dir, history, title=""):
    """After training (also after Ctrl+C, and for the one-fit classic baselines): history.csv and
    an up-to-date curves.png; a run that logged no epoch to TensorBoard in this process (a classic
    baseline's one fit) logs its history there now."""
    if not history:
        return
    epoch_end(run_dir, history, title=title, final=True)
    if _tensorboard and board_dir(_tensorboard, run_dir) not in _boards:
        _log_scalars(run_dir, history)


def experiment_curves(root, run_names, title=""):
    """An experiment's root/curves.png: its runs' curves overlaid (plots.save_overlay). Runs with
    no history yet (not started) are left out; nothing is drawn when none has one."""
    histories = {name: read_history(Path(root) / name) for name in run_names}
    histories = {k: v for k, v in histories.items() if v}
    if histories:
        plots.save_overlay(histories, Path(root) / CURVES, title)
