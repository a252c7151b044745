import torch
import torchvision
import pytest

from genreclf import checkpoint
from genreclf.errors import UserError
from model import MODELS, build, inputs_of
from model.vision import freeze, imagenet_state_dict

SHAPES = {"mel": (128, 172), "musicnn": (753,), "musicnn_mel": (249, 96)}


def make(name, n_classes=8):
    return build(name, n_classes=n_classes, input_shape={k: SHAPES[k] for k in inputs_of(name)})


@pytest.mark.parametrize("name", sorted(MODELS))
def test_forward_backward_and_rebuild_from_checkpoint(name, tmp_path):
    torch.manual_seed(0)
    model = make(name)
    if hasattr(model, "fit_sklearn"):
        pytest.skip("fitted by scikit-learn, not by gradients: tests/test_classic.py")
    xs = [torch.randn(2, *SHAPES[k]) for k in model.inputs]
    out = model(*xs)
    assert out.shape == (2, 8)
    out.sum().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    checkpoint.save(tmp_path / "best.pt", model=name, kwargs={"n_classes": 8, "input_shape": {k: SHAPES[k] for k in model.inputs}},
                    features={}, genres=list("abcdefgh"), state=model.state_dict())
    rebuilt, ckpt = checkpoint.load_model(tmp_path / "best.pt")
    model.eval()
    with torch.no_grad():
        assert torch.allclose(rebuilt(*xs), model(*xs), atol=1e-5)
    assert ckpt["genres"] == list("abcdefgh")


def test_unknown_model_lists_the_valid_ones():
    with pytest.raises(UserError, match="resnet34"):
        build("resnet35", 8, SHAPES)


def test_mismatched_checkpoint_is_one_clear_error(tmp_path):
    state = make("baseline", n_classes=10).state_dict()
    checkpoint.save(tmp_path / "x.pt", model="baseline", kwargs={"n_classes": 8, "input_shape": {"mel": SHAPES["mel"]}},
                    features={}, genres=[], state=state)
    with pytest.raises(UserError, match="do not fit"):
        checkpoint.load_model(tmp_path / "x.pt")
    torch.save({"weights": 1}, tmp_path / "y.pt")
    with pytest.raises(UserError, match="not a checkpoint of this project"):
        checkpoint.read(tmp_path / "y.pt")


def test_local_imagenet_weights_become_a_one_channel_stem(tmp_path):
    ref = torchvision.models.resnet18(weights=None)
    torch.save(ref.state_dict(), tmp_path / "r18.pth")
    model = make("resnet18")
    model.load_imagenet(imagenet_state_dict("resnet18", tmp_path / "r18.pth"))
    assert torch.allclose(model.net.conv1.weight, ref.conv1.weight.sum(1, keepdim=True))
    assert torch.equal(model.net.layer4[1].conv2.weight, ref.layer4[1].conv2.weight)
    assert model.net.fc.out_features == 8
    # summing the RGB kernels equals feeding the mel to all three channels
    x = torch.randn(1, 1, 32, 32)
    assert torch.allclose(model.net.conv1(x), ref.conv1(x.repeat(1, 3, 1, 1)), atol=1e-5)


def test_vgg_keeps_pretrained_dense_layer(tmp_path):
    ref = torchvision.models.vgg13(weights=None)
    model = make("vgg13")
    model.load_imagenet(ref.state_dict())
    assert model.net.classifier[0].weight.shape == (4096, 512)
    assert torch.equal(model.net.classifier[3].weight, ref.classifier[3].weight)
    # on a feature map constant over VGG's 7x7 positions, the 1x1-pool layer computes what the original did
    feats = torch.randn(1, 512)
    expected = ref.classifier[0](feats[:, :, None].expand(1, 512, 49).reshape(1, -1))
    assert torch.allclose(model.net.classifier[0](feats), expected, atol=1e-4)


def test_offline_pretrained_names_the_file_and_where_to_put_it(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    real = torch.hub.load_state_dict_from_url

    def unreachable(url, *a, **kw):  # same call, to a port where nothing listens: a real failure
        return real("http://127.0.0.1:9/" + url.rsplit("/", 1)[1], *a, **kw)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", unreachable)
    with pytest.raises(UserError) as e:
        imagenet_state_dict("resnet34")
    msg = str(e.value)
    assert "resnet34-" in msg and ".pth" in msg and str(tmp_path / "hub" / "checkpoints") in msg
    assert "\n" not in msg


@pytest.mark.parametrize("mode, trainable", [("head", {"net.fc"}), ("last", {"net.fc", "net.layer4"})])
def test_freeze(mode, trainable):
    model = make("resnet18")
    freeze(model, mode)
    for name, p in model.named_parameters():
        assert p.requires_grad == name.startswith(tuple(t + "." for t in trainable)), name


def tiny_trainer(run_dir, **cfg):
    """A Trainer over 8 random 32x32 "mel" segments of 2 genres, on CPU: one epoch is 2 steps."""
    from dataclasses import asdict
    from types import SimpleNamespace

    import numpy as np

    from genreclf.data import FeatureSet
    from genreclf.train import TrainConfig, Trainer, make_model

    x = np.random.default_rng(0).standard_normal((8, 32, 32)).astype(np.float32)
    fs = FeatureSet({"mel": x}, np.array([0, 1] * 4), np.arange(8), [f"g/c{i}" for i in range(8)], np.zeros(8, dtype=np.int64))
    data = SimpleNamespace(train=fs, val=fs, genres=["a", "b"], input_shape={"mel": (32, 32)},
                           features={"mel": {"loudness": -23.0}})
    cfg = TrainConfig(batch_size=4, device="cpu", **cfg)
    model, kwargs = make_model(cfg, data)
    describe = {"model": cfg.model, "kwargs": kwargs, "features": data.features, "genres": data.genres, "config": asdict(cfg)}
    return Trainer(cfg, data, run_dir, model, torch.device("cpu"), describe)


@pytest.mark.parametrize("mode, trainable", [("head", ("net.fc.",)), ("last", ("net.fc.", "net.layer4."))])
def test_frozen_parameters_and_buffers_are_bit_identical_after_a_step(mode, trainable, tmp_path):
    """--freeze: requires_grad=False alone let BatchNorm's running statistics of the frozen layers
    move with every batch (65 state entries changed after one step on resnet18)."""
    trainer = tiny_trainer(tmp_path, model="resnet18", freeze=mode)
    before = {k: v.clone() for k, v in trainer.core.state_dict().items()}
    trainer.train_epoch(1)
    after = trainer.core.state_dict()
    frozen = [k for k in before if not k.startswith(trainable)]
    assert len(frozen) > 90 and all(torch.equal(before[k], after[k]) for k in frozen), \
        [k for k in frozen if not torch.equal(before[k], after[k])][:5]
    assert not torch.equal(before["net.fc.weight"], after["net.fc.weight"])  # what trains does train
    if mode == "last":  # the trained block's BatchNorm keeps learning its statistics
        assert not torch.equal(before["net.layer4.1.bn2.running_mean"], after["net.layer4.1.bn2.running_mean"])
    assert trainer.core.training and not trainer.core.net.layer1.training  # next epoch: the same again


def test_grad_scaler_state_goes_into_last_pt_and_back(tmp_path):
    """fp16 training scales the loss; an exact resume needs the scale and its growth tracker."""
    trainer = tiny_trainer(tmp_path, model="baseline")
    trainer.scaler = torch.amp.GradScaler("cpu", init_scale=1024.0, growth_interval=1)  # doubles after each good step
    trainer.train_epoch(1)
    trainer.save(1, {"epoch": 1}, better=True)
    assert checkpoint.read(tmp_path / "last.pt")["scaler"]["scale"] == 4096.0
    resumed = tiny_trainer(tmp_path, model="baseline")
    resumed.scaler = torch.amp.GradScaler("cpu", init_scale=1.0)
    resumed.restore()
    assert resumed.scaler.get_scale() == 4096.0 and resumed.scaler.state_dict() == trainer.scaler.state_dict()
