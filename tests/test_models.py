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
