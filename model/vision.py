"""Fine-tuned torchvision VGG and ResNet on log-mel, and their fusion with musicnn embeddings.

A log-mel segment is a 1-channel image while ImageNet stems take 3 channels. We replace the first
convolution with a 1-channel one whose kernel is the sum of the pretrained RGB kernels: exactly what
the pretrained net computes on the mel copied to all 3 channels, at a third of the stem's cost.
A BatchNorm2d(1) in front maps dB values to roughly unit scale, as ImageNet normalisation would.
"""
import sys
from pathlib import Path

import torch
from torch import nn

from .blocks import Head


def _models():
    """torchvision.models, imported on first use: torchvision imports torch._dynamo (about 1 s on
    our CPUs), which every script would pay at start-up for models most runs never build."""
    import torchvision.models
    return torchvision.models


def _stem_and_head(net):
    """(first conv's parent, its attribute name, the classifier's parent, its attribute name)."""
    if isinstance(net, _models().ResNet):
        return net, "conv1", net, "fc"
    return net.features, "0", net.classifier, "6"  # VGG


def _to_one_channel(conv):
    new = nn.Conv2d(1, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, bias=conv.bias is not None)
    with torch.no_grad():
        new.weight.copy_(conv.weight.sum(dim=1, keepdim=True))
        if conv.bias is not None:
            new.bias.copy_(conv.bias)
    return new


def _vgg_one_by_one_pool(net, pretrained):
    """VGG's 7x7 adaptive pool and 25088-wide first dense layer assume 224x224 images; a 1x1 pool
    and a 512-wide layer suit 128x172 mel segments. Pretrained weights are summed over the 49
    positions: on a map that is constant over them, that is exactly what the layer computed."""
    old = net.classifier[0]
    net.avgpool = nn.AdaptiveAvgPool2d(1)
    net.classifier[0] = nn.Linear(512, old.out_features)
    if pretrained:
        with torch.no_grad():
            net.classifier[0].weight.copy_(old.weight.view(old.out_features, 512, 49).sum(dim=2))
            net.classifier[0].bias.copy_(old.bias)


class VisionNet(nn.Module):
    """torchvision `arch` (vgg13/16/19, resnet18/34/50/101) over (B, n_mels, T) -> (B, n_classes)."""
    inputs = ("mel",)

    def __init__(self, arch, n_classes, input_shape):
        super().__init__()
        self.arch = arch
        self.norm = nn.BatchNorm2d(1)
        self.n_classes = n_classes
        self._adapt(_models().get_model(arch, weights=None), pretrained=False)

    def _adapt(self, net, pretrained):
        """Fit a torchvision net to 1-channel mel segments and our classes; becomes self.net."""
        if not isinstance(net, _models().ResNet):
            _vgg_one_by_one_pool(net, pretrained)
        self.net = net
        stem_parent, stem, head_parent, head = _stem_and_head(self.net)
        setattr(stem_parent, stem, _to_one_channel(getattr(stem_parent, stem)))
        self.features_dim = getattr(head_parent, head).in_features
        setattr(head_parent, head, nn.Linear(self.features_dim, self.n_classes))

    def load_imagenet(self, state_dict):
        """Load a torchvision ImageNet state dict (3-channel stem, 1000 classes), then re-adapt."""
        net = _models().get_model(self.arch, weights=None)
        net.load_state_dict(state_dict)
        self._adapt(net, pretrained=True)

    def head_module(self):
        _, _, parent, name = _stem_and_head(self.net)
        return getattr(parent, name)

    def last_block(self):
        return self.net.layer4 if isinstance(self.net, _models().ResNet) else self.net.features[-5:]

    def forward(self, mel):                            # (B, n_mels, T)
        return self.net(self.norm(mel.unsqueeze(1)))   # (B, n_classes)


class VisionMusicnn(nn.Module):
    """The seed's best configuration: a torchvision CNN over the mel segment, its pooled features
    joined with the MSD-musicnn embedding of the same segment, then one dense classifier."""
    inputs = ("mel", "musicnn")

    def __init__(self, arch, n_classes, input_shape, dropout=0.3):
        super().__init__()
        self.arch = arch
        self.cnn = VisionNet(arch, n_classes, input_shape)
        self.emb_norm = nn.BatchNorm1d(input_shape["musicnn"][0])
        self._drop_cnn_head()
        self.head = Head(self.cnn.features_dim + input_shape["musicnn"][0], n_classes, dropout=dropout)

    def _drop_cnn_head(self):
        _, _, parent, name = _stem_and_head(self.cnn.net)
        setattr(parent, name, nn.Identity())  # the CNN now returns its pooled features

    def load_imagenet(self, state_dict):
        self.cnn.load_imagenet(state_dict)
        self._drop_cnn_head()

    def head_module(self):
        return self.head

    def last_block(self):
        return self.cnn.last_block()

    def forward(self, mel, musicnn):                  # (B, n_mels, T), (B, D)
        h = torch.cat([self.cnn(mel), self.emb_norm(musicnn)], dim=1)
        return self.head(h)                           # (B, n_classes)


def _read_state_dict(path):
    """torch.load a state dict safely (weights_only); None when the file is damaged. DDP's
    `module.` prefix is stripped, and a {"state_dict": ...} wrapper is unwrapped."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, bad pickle, refused global: all "not a usable file"
        return None, f"{type(e).__name__}: {str(e).splitlines()[0][:80] if str(e) else ''}"
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        return None, "not a state dict of tensors"
    if state and all(k.startswith("module.") for k in state):  # saved from DistributedDataParallel
        state = {k[len("module."):]: v for k, v in state.items()}
    return state, ""


def check_fits(arch, state, source):
    """Raise a one-line UserError unless `state` has exactly torchvision `arch`'s keys and shapes."""
    from genreclf.errors import UserError

    with torch.device("meta"):  # shapes only: no memory for the weights
        want = {k: v.shape for k, v in _models().get_model(arch, weights=None).state_dict().items()}
    missing = [k for k in want if k not in state]
    extra = [k for k in state if k not in want]
    shapes = [k for k in want if k in state and tuple(state[k].shape) != tuple(want[k])]
    if missing or extra or shapes:
        parts = [f"{len(missing)} missing (e.g. {missing[0]})" if missing else "",
                 f"{len(extra)} unexpected (e.g. {extra[0]})" if extra else "",
                 f"{len(shapes)} of another shape (e.g. {shapes[0]}: {tuple(state[shapes[0]].shape)} "
                 f"instead of {tuple(want[shapes[0]])})" if shapes else ""]
        raise UserError(f"{source}: not {arch} ImageNet weights: keys {', '.join(p for p in parts if p)}")


def imagenet_state_dict(arch, weights_file=None):
    """torchvision's ImageNet weights for `arch`: from `weights_file`, or downloaded once into
    TORCH_HOME/hub/checkpoints. Every failure is a one-line UserError naming the file: missing,
    truncated or corrupt, or the weights of another architecture. Keys with DDP's `module.` prefix
    load. A corrupt file in the cache is deleted and fetched again; offline, the error says where
    to put a good copy."""
    from genreclf.errors import UserError

    if weights_file:
        if not Path(weights_file).exists():
            raise UserError(f"weights file {weights_file} does not exist")
        state, why = _read_state_dict(weights_file)
        if state is None:
            raise UserError(f"{weights_file}: not a readable state dict, truncated or corrupt ({why})")
        check_fits(arch, state, weights_file)
        return state
    weights = _models().get_model_weights(arch).DEFAULT
    target = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    corrupt = ""
    if target.exists() and _read_state_dict(target)[0] is None:
        corrupt = f"the cached copy at {target} was corrupt ({_read_state_dict(target)[1]}) and was deleted; "
        print(f"warning: {target}: cached ImageNet weights are corrupt; deleting them and downloading again", file=sys.stderr)
        target.unlink()
    try:
        state = weights.get_state_dict(progress=True)
    except Exception as e:  # URLError, socket errors, HTTP errors: all mean "could not fetch"
        raise UserError(f"{corrupt}cannot download ImageNet weights {Path(weights.url).name} ({type(e).__name__}); "
                        f"download {weights.url} elsewhere and put it at {target}, or pass --weights FILE") from None
    check_fits(arch, state, target)
    return state


def _trainable(model, mode):
    """The modules --freeze `mode` trains: the head, and for 'last' the last block too."""
    return [model.head_module()] + ([model.last_block()] if mode == "last" else [])


def freeze(model, mode):
    """What fine-tuning trains: 'none' everything, 'last' the last block and head, 'head' the head.
    Sets requires_grad only; keep_frozen_in_eval must follow every model.train() (Trainer does)."""
    if mode == "none":
        return
    for p in model.parameters():
        p.requires_grad = False
    for m in _trainable(model, mode):
        for p in m.parameters():
            p.requires_grad = True


def keep_frozen_in_eval(model, mode):
    """Put the modules that --freeze `mode` keeps fixed back in eval mode after model.train():
    requires_grad=False stops gradients but not BatchNorm's running statistics (nor dropout), so a
    frozen layer would still drift with every batch. A module stays in training mode when it is
    inside a trainable module or holds one; every other module, parameter-free ones (dropout)
    included, goes to eval. The same rule as freeze(), so what is frozen is bit-identical after a
    training step (tests/test_models.py)."""
    if mode == "none":
        return
    inside = {id(m) for t in _trainable(model, mode) for m in t.modules()}
    for m in model.modules():
        if id(m) not in inside and not any(id(c) in inside for c in m.modules()):
            m.eval()
