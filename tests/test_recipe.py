"""The training recipe: schedules, online augmentation, random crops, determinism under --resume,
and the classic baselines trained through the same fit() and scored by the same test()."""
from dataclasses import replace

import numpy as np
import pytest
import torch

from conftest import fit_whole_and_resumed
from genreclf import checkpoint, recipe
from genreclf.data import FeatureSet
from genreclf.errors import UserError
from genreclf.experiment import Data
from genreclf import train
from genreclf.train import TrainConfig, fit

GENRES = ["a", "b", "c"]


def synthetic(n_clips=6, segs=3, n_mels=16, frames=24, seed=0):
    """Clips whose mel frames count up (frame t of segment k of clip c holds c * 1000 + k * frames + t)
    plus a genre-dependent bump in band 2 * genre, so that crops can be read back and genres learnt."""
    rng = np.random.default_rng(seed)
    mel, y, clip, pos = [], [], [], []
    for c in range(n_clips):
        g = c % len(GENRES)
        t = c * 1000 + np.arange(segs * frames, dtype=np.float32)
        m = np.broadcast_to(t, (n_mels, len(t))).copy()
        m[2 * g] += 50 + rng.normal(size=len(t)).astype(np.float32)
        mel += [m[:, k * frames:(k + 1) * frames] for k in range(segs)]
        y += [g] * segs
        clip += [c] * segs
        pos += range(segs)
    return FeatureSet({"mel": np.stack(mel)}, np.array(y), np.array(clip), [f"c{c}" for c in range(n_clips)], np.array(pos))


def test_cosine_schedule_warms_up_decays_to_zero_and_resumes_at_the_same_step():
    cfg = TrainConfig(schedule="cosine", warmup=2, epochs=10, lr=0.1)
    p = [torch.nn.Parameter(torch.zeros(1))]
    opt = recipe.optimizer(p, replace(cfg, optimizer="adamw"))
    assert isinstance(opt, torch.optim.AdamW)
    sched = recipe.Schedule(opt, cfg, steps_per_epoch=5)
    lrs = []
    for _ in range(50):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step_batch()
    assert lrs[0] == pytest.approx(0.01) and lrs[9] == pytest.approx(0.1)  # 10 warmup steps, linear
    assert all(a > b for a, b in zip(lrs[10:], lrs[11:])) and lrs[-1] < 1e-3
    # a fresh optimizer and schedule loaded from state dicts continue the same curve
    opt2 = recipe.optimizer(p, replace(cfg, optimizer="adamw"))
    opt2.load_state_dict(opt.state_dict())
    sched2 = recipe.Schedule(opt2, cfg, steps_per_epoch=5)
    sched2.load_state_dict(sched.state_dict())
    sched.step_batch(), sched2.step_batch()
    assert opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
    with pytest.raises(UserError, match="--warmup applies to --schedule cosine"):
        recipe.Schedule(opt, TrainConfig(warmup=1), 5)


def test_specaugment_masks_are_bounded_seeded_and_filled_with_the_mean():
    g = np.random.default_rng(0)
    m = recipe.masks(g, 200, 16, 40, freq_width=4, time_width=6, count=2)
    band_masked = m.all(axis=2).sum(1)   # bands masked over every frame
    frame_masked = m.all(axis=1).sum(1)  # frames masked over every band
    assert band_masked.max() <= 8 and frame_masked.max() <= 12 and band_masked.mean() > 1 and frame_masked.mean() > 1
    cfg = TrainConfig(freq_mask=4, time_mask=6, seed=3)
    mel = torch.randn(8, 16, 40)
    a, _ = recipe.augment_batch({"mel": mel}, torch.zeros(8, dtype=torch.long), cfg, epoch=2, batch=5)
    b, _ = recipe.augment_batch({"mel": mel}, torch.zeros(8, dtype=torch.long), cfg, epoch=2, batch=5)
    c, _ = recipe.augment_batch({"mel": mel}, torch.zeros(8, dtype=torch.long), cfg, epoch=2, batch=6)
    assert torch.equal(a["mel"], b["mel"]) and not torch.equal(a["mel"], c["mel"])
    changed = a["mel"] != mel
    assert changed.any()
    filled = a["mel"][0][changed[0]]
    assert torch.allclose(filled, mel[0].mean().expand_as(filled))


def test_mixup_mixes_inputs_and_loss_with_one_lambda():
    cfg = TrainConfig(mixup=0.4)
    x = torch.randn(6, 5)
    y = torch.arange(6) % 3
    xs, (ya, yb, lam) = recipe.augment_batch({"musicnn": x}, y, cfg, epoch=1, batch=0)
    assert 0 < lam < 1 and torch.equal(ya, y)
    # every mixed row is lam * x[i] + (1 - lam) * x[j] for the j whose label is yb[i]
    logits = torch.randn(6, 3)
    ce = torch.nn.functional.cross_entropy
    assert torch.allclose(recipe.mixed_loss(logits, (ya, yb, lam)), lam * ce(logits, ya) + (1 - lam) * ce(logits, yb))
    assert torch.allclose(recipe.mixed_loss(logits, (y, y, 1.0), 0.1), ce(logits, y, label_smoothing=0.1))
    j = [int(torch.argmin(((xs["musicnn"][i] - lam * x[i]) / (1 - lam) - x).abs().sum(1))) for i in range(6)]
    assert torch.allclose(xs["musicnn"], lam * x + (1 - lam) * x[j], atol=1e-5) and torch.equal(y[j], yb)


def test_random_crop_reads_contiguous_frames_of_the_same_copy_only():
    fs = synthetic(segs=3, frames=24)
    fs1 = synthetic(n_clips=1, segs=1)
    view = recipe.epoch_view(fs, TrainConfig(random_crop=True, seed=1), epoch=4)
    rows = view.x["mel"][np.arange(len(fs))]
    assert rows.shape == fs.x["mel"].shape
    t = rows[:, -1, :]                                             # frame counters (the top band has no bump)
    assert (np.diff(t, axis=1) == 1).all()                         # contiguous frames of one clip
    assert (t[:, 0] // 1000 == fs.clip).all()                      # never from another clip
    start = t[:, 0] - fs.clip * 1000
    seg_start = fs.pos * 24
    last = fs.pos == 2
    assert ((start >= seg_start) & (start < seg_start + 24))[~last].all()      # within [start, start + T)
    assert ((start > seg_start - 24) & (start <= seg_start))[last].all()       # last: from the previous one
    assert (start != seg_start).mean() > 0.5
    again = recipe.epoch_view(fs, TrainConfig(random_crop=True, seed=1), epoch=4).x["mel"][np.array([5, 0])]
    assert np.array_equal(again, rows[[5, 0]])                     # per row, not per batch: same window
    other = recipe.epoch_view(fs, TrainConfig(random_crop=True, seed=1), epoch=5).x["mel"][np.arange(len(fs))]
    assert not np.array_equal(other, rows)
    single = recipe.epoch_view(fs1, TrainConfig(random_crop=True), epoch=1).x["mel"][np.array([0])]
    assert np.array_equal(single, fs1.x["mel"][[0]])               # nothing to crop from


def data_of(fs_train, fs_val):
    return Data({}, {}, GENRES, {"mel": fs_train.x["mel"].shape[1:]}, fs_train, fs_val, fs_val)


NEW = dict(optimizer="adamw", schedule="cosine", warmup=1, label_smoothing=0.1, random_crop=True,
           freq_mask=3, time_mask=4, mixup=0.2, gain_db=3.0)


def test_new_recipe_resumes_exactly(tmp_path, monkeypatch):
    """Two epochs in one go == Ctrl+C at the start of epoch 2, then --resume: same weights, bit
    for bit (schedule step, crops, masks, mixup and dropout all continue where they were)."""
    data = data_of(synthetic(n_clips=6), synthetic(n_clips=3, seed=1))
    cfg = TrainConfig(model="baseline", epochs=2, batch_size=4, device="cpu", patience=99, **NEW)
    a, b = fit_whole_and_resumed(cfg, data, tmp_path, monkeypatch)
    assert a["train_state"]["history"][-1]["lr"] == b["train_state"]["history"][-1]["lr"]
    assert all(torch.equal(a["state"][k], b["state"][k]) for k in a["state"])


@pytest.mark.parametrize("model", ["mfcc_svm"])
def test_classic_baseline_trains_through_fit_and_scores_through_test(tmp_path, model):
    data = data_of(synthetic(n_clips=9), synthetic(n_clips=6, seed=1))
    state = fit(TrainConfig(model=model, device="cpu"), data, tmp_path)
    assert state["epoch"] == 1 and state["best"] == 1.0
    metrics = train.test(tmp_path, data, "cpu")
    assert metrics["test_clip_accuracy"] == 1.0
    assert "optimizer" not in checkpoint.read(tmp_path / "last.pt")


def test_overlapping_windows_every_hop_within_each_clip():
    from genreclf.windows import overlapping

    fs = synthetic(n_clips=2, segs=3, frames=24)
    spec = {"mel": {"sr": 24, "hop": 1}}                            # 24 frames a second: a 1 s segment
    win = overlapping(fs, 0.5, spec)
    rows = win.x["mel"][np.arange(len(win))]
    t = rows[:, -1, :]
    starts = t[:, 0] - win.clip * 1000
    assert len(win) == 2 * 5 and list(starts[:5]) == [0, 12, 24, 36, 48]  # the last ends on the clip's last frame
    assert (np.diff(t, axis=1) == 1).all() and (win.y == fs.y[win.clip * 3]).all()
    grid = overlapping(fs, 1.0, spec)                               # hop = segment: the cached segments
    assert np.array_equal(grid.x["mel"][np.arange(len(grid))], fs.x["mel"])
    with pytest.raises(UserError, match="at most"):
        overlapping(fs, 2.0, spec)
    both = replace(fs, x={**fs.x, "musicnn": np.zeros((len(fs), 4), np.float32)})
    with pytest.raises(UserError, match="musicnn"):
        overlapping(both, 0.5, spec)


def test_shipped_model_rebuilds_to_the_same_bytes_and_is_checked_by_its_sha256_sidecar(mini3, tmp_path):
    from genreclf import pretrained

    caches = {"musicnn": next((mini3 / "cache").glob("musicnn-*"))}
    cfg = TrainConfig(model="q2", epochs=2, device="cpu", patience=99, **{k: NEW[k] for k in ("optimizer", "schedule", "warmup", "mixup")})
    _, sha_a = pretrained.build(cfg, caches, tmp_path / "a.pt")
    _, sha_b = pretrained.build(cfg, caches, tmp_path / "b.pt")
    assert sha_a == sha_b
    assert (tmp_path / "a.pt.sha256").read_text() == f"{sha_a}  a.pt\n"  # sha256sum's format
    assert pretrained.checkpoint_path(tmp_path / "a.pt") == tmp_path / "a.pt"
    ckpt = torch.load(tmp_path / "a.pt", weights_only=True)  # plain tensors and lists
    assert ckpt["trained_on"]["clips"] == 21 and "optimizer" not in ckpt
    blob = bytearray((tmp_path / "a.pt").read_bytes())
    blob[-100] ^= 1
    (tmp_path / "a.pt").write_bytes(bytes(blob))
    with pytest.raises(UserError, match=r"SHA-256 .* is not the .* of a.pt.sha256: the file is damaged"):
        pretrained.checkpoint_path(tmp_path / "a.pt")
    # a rebuild with other bytes (another CPU) writes its own sidecar and is taken at once
    _, sha_c = pretrained.build(replace(cfg, seed=1), caches, tmp_path / "a.pt")
    assert sha_c != sha_a and pretrained.checkpoint_path(tmp_path / "a.pt") == tmp_path / "a.pt"
    (tmp_path / "a.pt.sha256").write_text("not a checksum\n")
    with pytest.raises(UserError, match="not a `<sha256>  a.pt` line"):
        pretrained.checkpoint_path(tmp_path / "a.pt")
    (tmp_path / "a.pt.sha256").unlink()
    with pytest.raises(UserError, match="a.pt.sha256: missing"):
        pretrained.checkpoint_path(tmp_path / "a.pt")
    with pytest.raises(UserError, match="missing"):
        pretrained.checkpoint_path(tmp_path / "gone.pt")
    assert pretrained.checkpoint_path() == pretrained.FILE  # the shipped file matches its shipped sidecar


def test_predict_hop_adds_overlapping_windows_in_time_order(trained_run, wav_factory):
    from genreclf.checkpoint import load_model
    from genreclf.predict import Classifier
    from tests.conftest import sine

    wave = np.concatenate([sine(220, 6, 22050), sine(1760, 6, 22050)])   # 12 s
    path = wav_factory("two.wav", wave)
    model, ckpt = load_model(trained_run / "best.pt")
    grid = Classifier(model, ckpt)(path)
    hop = Classifier(model, ckpt, hop=2.0)(path)
    seg = Classifier(model, ckpt).segment_s
    assert [a for a, _ in grid["segments"]] == pytest.approx([0, seg, 2 * seg])
    assert [a for a, _ in hop["segments"]] == pytest.approx([0, 2, seg, seg + 2, 2 * seg])  # the last ends by 12 s
    # the grid's windows are among them, with the same probabilities
    np.testing.assert_allclose(hop["probs"][[0, 2, 4]], grid["probs"], atol=1e-5)
    with pytest.raises(UserError, match="at most"):
        Classifier(model, ckpt, hop=5.0)


def test_predict_without_a_checkpoint_or_run_uses_the_shipped_model(tmp_path, wav_factory):
    from genreclf import pretrained
    from tests.conftest import run_script, sine

    if not pretrained.FILE.exists():
        pytest.skip("no shipped model in pretrained/ (make pretrained)")
    path = wav_factory("tone.wav", sine(440, 9, 22050))
    r = run_script("predict.py", path, "--workers", 0, "--format", "json", cwd=tmp_path)  # tmp_path has no runs/
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("\n") == 1 and f"using the shipped model pretrained/{pretrained.FILE.name}" in r.stderr
    import json
    assert set(json.loads(r.stdout)[0]["probabilities"]) == {"blues", "classical", "country", "disco", "hiphop", "jazz",
                                                            "metal", "pop", "reggae", "rock"}
