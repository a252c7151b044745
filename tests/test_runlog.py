"""How a run learned: history.csv, curves.png, an experiment's overlay and TensorBoard (runlog.py)."""
import importlib.util
import sys

import pytest

from conftest import needs_shared, run_script
from genreclf import runlog
from genreclf.errors import UserError
from genreclf.plots import best_epoch

PNG = b"\x89PNG\r\n\x1a\n"
has_tensorboard = importlib.util.find_spec("tensorboard") is not None


def fake_history(n, peak=3):
    """n epochs whose val clip accuracy rises to epoch `peak`, then falls."""
    return [{"epoch": e, "train_loss": 2.0 / e, "train_accuracy": 0.5, "val_loss": 1.0, "lr": 1e-3, "seconds": 0.5,
             "val_clip_accuracy": 0.5 - 0.1 * abs(e - peak), "val_segment_accuracy": 0.4} for e in range(1, n + 1)]


@needs_shared
def test_a_trained_run_has_its_history_and_curves(trained_run):
    rows = runlog.read_history(trained_run)
    assert [r["epoch"] for r in rows] == [1] and rows[0]["best"] == 1  # the fixture trains one epoch
    assert set(runlog.COLUMNS) == set(rows[0]) and rows[0]["seconds"] > 0 and 0 <= rows[0]["val_clip_accuracy"] <= 1
    assert (trained_run / "curves.png").read_bytes()[:8] == PNG


def test_best_epoch_follows_the_trainers_rule():
    h = fake_history(6, peak=4)
    assert best_epoch(h) == 4
    h[4]["val_clip_accuracy"], h[4]["val_loss"] = h[3]["val_clip_accuracy"], 0.5  # a tie, lower val loss: later wins
    assert best_epoch(h) == 5
    h[5].update(val_clip_accuracy=h[4]["val_clip_accuracy"], val_loss=0.5)  # a full tie: the earlier keeps best.pt
    assert best_epoch(h) == 5 and best_epoch([]) is None


def test_history_is_rewritten_whole_so_a_resume_lists_each_epoch_once(tmp_path):
    h = fake_history(5)
    runlog.epoch_end(tmp_path, h)  # a run killed after writing epoch 5, whose last.pt holds epoch 4 ...
    runlog.run_end(tmp_path, h[:4] + [dict(h[4], train_loss=0.123)] + fake_history(7)[5:])  # ... resumes: 5 again, then 6, 7
    rows = runlog.read_history(tmp_path)
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4, 5, 6, 7] and rows[4]["train_loss"] == 0.123
    assert [r["best"] for r in rows] == [0, 0, 1, 0, 0, 0, 0]
    assert (tmp_path / "curves.png").read_bytes()[:8] == PNG


def test_experiment_overlay_reads_each_runs_history(tmp_path):
    for k, n in enumerate((4, 6)):
        runlog.run_end(tmp_path / f"seed0-fold{k}", fake_history(n))
    (tmp_path / "seed0-fold2").mkdir()  # never trained: left out
    runlog.experiment_curves(tmp_path, ["seed0-fold0", "seed0-fold1", "seed0-fold2"])
    assert (tmp_path / "curves.png").read_bytes()[:8] == PNG
    runlog.experiment_curves(tmp_path / "seed0-fold2", [])
    assert not (tmp_path / "seed0-fold2" / "curves.png").exists()


def test_tensorboard_without_the_package_is_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if tensorboard were not installed
    with pytest.raises(UserError, match=r"^--tensorboard needs the tensorboard package.*pip install tensorboard"):
        runlog.use_tensorboard("tb")
    runlog.use_tensorboard(None)  # off: no package needed


@pytest.mark.skipif(has_tensorboard, reason="tensorboard is installed here")
def test_main_refuses_tensorboard_without_the_package_before_any_work(tmp_path):
    r = run_script("main.py", "--tensorboard", tmp_path / "tb", "--data-dir", tmp_path / "nothing")
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and lines == [lines[0]] and "pip install tensorboard" in lines[0]
    assert not (tmp_path / "tb").exists()


@pytest.mark.skipif(not has_tensorboard, reason="the tensorboard package is not installed")
def test_tensorboard_events_hold_every_epoch_once(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "runs" / "q2-x"
    runlog.use_tensorboard(tmp_path / "tb")
    try:
        h = fake_history(4)
        for n in range(1, 5):
            runlog.epoch_end(run, h[:n])
        runlog.run_end(run, h)  # already logged: nothing twice
    finally:
        runlog.use_tensorboard(None)
    events = EventAccumulator(str(tmp_path / "tb" / "q2-x"))
    events.Reload()
    assert [e.step for e in events.Scalars("accuracy/val_clip")] == [1, 2, 3, 4]
    assert [round(e.value, 6) for e in events.Scalars("loss/train")] == [round(r["train_loss"], 6) for r in h]


def test_confusion_of_few_genres_keeps_its_title_and_a_constant_lr_reads_plainly(tmp_path, monkeypatch):
    from genreclf import plots

    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figures.append(fig))
    plots.save_confusion([[1, 0, 0], [0, 1, 0], [0, 0, 1]], ["a", "b", "c"], tmp_path / "c.png",
                         "base2dcnn: test clip accuracy 1.000")
    assert figures[0].get_size_inches()[0] >= 4.5  # 2.8 inches cut the title
    plots.save_curves(fake_history(4), tmp_path / "curves.png")
    lr = figures[1].axes[2]
    assert [t.get_text() for t in lr.get_yticklabels()] == ["0", "0.001"] and lr.get_ylim()[0] == 0
    history = [{**r, "lr": None} for r in fake_history(1)]  # a scikit-learn fit: no learning rate
    assert runlog.history_csv(history).splitlines()[1].split(",")[6] == ""
    plots.save_curves(history, tmp_path / "curves.png")
