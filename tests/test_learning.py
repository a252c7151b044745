"""Training really learns, and survives any batch size: the real fit() on small synthetic arrays.

Each genre lights up its own band of a small log-mel-like segment (and its own block of a
musicnn-like vector), over unit noise: separable, so any working model family gets well above
chance within a few steps, and a model whose optimizer never steps stays near chance.
"""
import numpy as np
import pytest
import torch

from genreclf.data import FeatureSet
from genreclf.experiment import Data
from genreclf.train import TrainConfig, fit
from model import MODELS, inputs_of

N_MELS, FRAMES, EMB, GENRES = 32, 32, 16, ["a", "b", "c", "d"]


def synthetic(n_clips, segs_per_clip, seed, signal=3.0):
    """FeatureSet of n_clips clips per genre; genre g adds `signal` to mel bands and embedding
    dims of block g, so the classes are separable."""
    rng = np.random.default_rng(seed)
    n = len(GENRES) * n_clips * segs_per_clip
    y = np.repeat(np.arange(len(GENRES)), n_clips * segs_per_clip)
    mel = rng.normal(size=(n, N_MELS, FRAMES)).astype(np.float32)
    emb = rng.normal(size=(n, EMB)).astype(np.float32)
    musicnn_mel = rng.uniform(0, 3, size=(n, FRAMES, 96)).astype(np.float32)  # musicnn's own 96-band input
    band, block = N_MELS // len(GENRES), EMB // len(GENRES)
    for g in range(len(GENRES)):
        mel[y == g, g * band:(g + 1) * band] += signal
        emb[y == g, g * block:(g + 1) * block] += signal
        musicnn_mel[y == g, :, g * 24:(g + 1) * 24] += signal
    clip = np.arange(n) // segs_per_clip
    return FeatureSet({"mel": mel, "musicnn": emb, "musicnn_mel": musicnn_mel}, y, clip,
                      [f"clip{i}" for i in range(n // segs_per_clip)])


@pytest.fixture(autouse=True)
def no_checkpoints(monkeypatch):
    """fit() saves best.pt/last.pt every epoch: hundreds of MB for VGG, and beside the point here."""
    monkeypatch.setattr("genreclf.train.checkpoint.save", lambda path, **fields: None)
    torch.set_num_threads(1)


def data_for(model, train, val):
    names = inputs_of(model)
    keep = lambda fs: FeatureSet({k: fs.x[k] for k in names}, fs.y, fs.clip, fs.clip_ids)  # noqa: E731
    shape = {"mel": (N_MELS, FRAMES), "musicnn": (EMB,), "musicnn_mel": (FRAMES, 96)}
    return Data({}, {}, GENRES, {k: shape[k] for k in names}, keep(train), keep(val), keep(val))


# one model per family: 1D CNNs, the 2D CNN, the musicnn MLP, torchvision ResNet, the fusion model,
# the fine-tuned musicnn (the fusion model's ResNet-34 over 12 steps is steadier at a lower learning rate)
FAMILIES = [("baseline", 1e-3), ("q1", 1e-3), ("base2dcnn", 1e-3), ("q2", 1e-3), ("resnet18", 1e-3),
            ("resnet34_musicnn", 3e-4), ("musicnn_ft", 1e-3)]


@pytest.mark.parametrize("model, lr", FAMILIES)
def test_every_family_learns_separable_genres(model, lr, tmp_path):
    train, val = synthetic(8, 2, seed=1), synthetic(6, 2, seed=2)  # 64 training segments, 24 val clips
    cfg = TrainConfig(model=model, epochs=2, batch_size=8, lr=lr, device="cpu", seed=0, patience=100)
    state = fit(cfg, data_for(model, train, val), tmp_path)
    # chance is 1/4; a model that never steps its optimizer stays near it (see README, "Tests")
    assert state["best"] >= 0.8, state["history"]


@pytest.mark.parametrize("model", sorted(MODELS))
def test_last_batch_of_one_is_dropped_for_every_model(model, tmp_path):
    """7 training segments with --batch-size 3: batches of 3, 3 and 1. A batch of one would make
    BatchNorm raise in training mode ("Expected more than 1 value per channel")."""
    train, val = synthetic(1, 2, seed=3), synthetic(1, 1, seed=4)
    train = FeatureSet({k: a[:7] for k, a in train.x.items()}, train.y[:7], train.clip[:7], train.clip_ids)
    cfg = TrainConfig(model=model, epochs=1, batch_size=3, device="cpu", seed=0)
    state = fit(cfg, data_for(model, train, val), tmp_path)
    assert state["epoch"] == 1 and np.isfinite(state["history"][0]["train_loss"])
