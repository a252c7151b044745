"""musicnn fine-tuned (model/musicnn_ft.py): what --freeze trains, frozen BatchNorm statistics that
do not move, the original weights as the start, and an exact --resume."""
import numpy as np
import pytest
import torch

from conftest import fit_whole_and_resumed
from genreclf import musicnn
from genreclf.data import FeatureSet
from genreclf.experiment import Data
from genreclf.train import TrainConfig
from model import build
from model.vision import freeze

FRAMES = 64  # short segments keep the test fast; the network pools over time
FRONT = ("input_bn", "timbral", "temporal")
MID_BACK = ("midend", "pool_bn", "dense", "dense_bn")


def model_and_batch(mode, n=6):
    torch.manual_seed(0)
    model = build("musicnn_ft", n_classes=3, input_shape={"musicnn_mel": (FRAMES, 96)})
    freeze(model, mode)
    x = torch.rand(n, FRAMES, 96) * 3  # musicnn's log10(10000 x + 1) values lie in about 0..5
    return model, x, torch.arange(n) % 3


def steps(model, x, y, n=2):
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    model.train()
    for _ in range(n):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()


def parts(model, names):
    """Every parameter and buffer (BatchNorm running statistics included) of encoder parts `names`, copied."""
    return {k: v.clone() for k, v in model.encoder.state_dict().items() if k.split(".")[0] in names}


def test_starts_from_the_original_weights_with_a_new_head():
    model, _, _ = model_and_batch("none")
    original = musicnn.load("MSD_musicnn").state_dict()
    ours = model.encoder.state_dict()
    assert all(torch.equal(ours[k], original[k]) for k in ours) and not any(k.startswith("out.") for k in ours)
    assert model.head[-1].out_features == 3 and model.head[-1].in_features == 200


@pytest.mark.parametrize("mode, frozen, trained", [("last", FRONT, MID_BACK), ("head", FRONT + MID_BACK, ())])
def test_frozen_parts_stay_in_eval_mode_and_their_batchnorm_statistics_do_not_move(mode, frozen, trained):
    model, x, y = model_and_batch(mode)
    before_frozen, before_trained = parts(model, frozen), parts(model, trained)
    head = [p.clone() for p in model.head.parameters()]
    model.train()
    assert model.head.training and all(not getattr(model.encoder, n).training for n in frozen)
    assert all(getattr(model.encoder, n).training for n in trained)
    steps(model, x, y)
    after = parts(model, frozen)
    assert all(torch.equal(after[k], before_frozen[k]) for k in before_frozen)  # weights and running statistics
    assert any("running_mean" in k for k in before_frozen)
    moved = parts(model, trained)
    for k in (k for k in before_trained if k.endswith("running_mean")):  # the trained BatchNorms do update
        assert not torch.equal(moved[k], before_trained[k]), k
    assert not all(torch.equal(a, b) for a, b in zip(head, model.head.parameters()))


def test_end_to_end_trains_the_front_end_too():
    model, x, y = model_and_batch("none")
    before = parts(model, FRONT)
    steps(model, x, y, n=1)
    after = parts(model, FRONT)
    assert not torch.equal(after["input_bn.running_mean"], before["input_bn.running_mean"])
    assert not torch.equal(after["timbral.0.conv.weight"], before["timbral.0.conv.weight"])


def test_frozen_front_end_takes_the_fast_path_with_the_same_outputs():
    model, x, _ = model_and_batch("last")
    model.train()  # the front end stays in eval: musicnn's fast CPU path
    with torch.no_grad():
        fast = model.encoder.frontend(x)
        slow = model.encoder.frontend(x, reference=True)
    assert torch.allclose(fast, slow, atol=1e-4)


def synthetic(n_clips, segs=2, seed=0):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(n_clips) % 3, segs)
    x = rng.uniform(0, 3, size=(len(y), FRAMES, 96)).astype(np.float32)
    x[np.arange(len(y)), :, 10 * y] += 2.0  # a genre-dependent band
    return FeatureSet({"musicnn_mel": x}, y, np.repeat(np.arange(n_clips), segs), [f"c{c}" for c in range(n_clips)],
                      np.tile(np.arange(segs), n_clips))


@pytest.mark.parametrize("mode", ["last"])
def test_resume_is_exact(tmp_path, monkeypatch, mode):
    """Two epochs in one go == Ctrl+C at the start of epoch 2, then --resume: the same weights, bit for bit."""
    train, val = synthetic(6), synthetic(3, seed=1)
    data = Data({}, {}, ["a", "b", "c"], {"musicnn_mel": (FRAMES, 96)}, train, val, val)
    cfg = TrainConfig(model="musicnn_ft", epochs=2, batch_size=4, device="cpu", patience=99, freeze=mode,
                      optimizer="adamw", schedule="cosine", mixup=0.2)
    a, b = fit_whole_and_resumed(cfg, data, tmp_path, monkeypatch)
    assert a["train_state"]["epoch"] == b["train_state"]["epoch"] == 2
    assert all(torch.equal(a["state"][k], b["state"][k]) for k in a["state"])
    def learned(history):  # wall-clock seconds differ between any two runs
        return [{k: v for k, v in r.items() if k != "seconds"} for r in history]
    assert learned(a["train_state"]["history"]) == learned(b["train_state"]["history"])
    start = musicnn.load("MSD_musicnn").state_dict()  # the frozen front end is still the original
    assert all(torch.equal(a["state"][f"encoder.{k}"], start[k]) for k in start if k.split(".")[0] in FRONT)
