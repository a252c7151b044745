"""The model registry: every model by name, with the inputs it declares.

    model = build("resnet34", n_classes=8, input_shape={"mel": (128, 172)})

A model's `inputs` (e.g. ("mel",), ("mel", "musicnn") or ("musicnn_mel",)) tells the data pipeline which caches
to load; its forward takes them in that order and returns logits (B, n_classes).
"""
from functools import partial

from .classic import MfccSVM, MusicnnLogReg, MusicnnSVM
from .cnn import Base2DCNN, Baseline, Q1
from .mlp import Q2
from .musicnn_ft import MusicnnFT
from .vision import VisionMusicnn, VisionNet

VISION = ("vgg13", "vgg16", "vgg19", "resnet18", "resnet34", "resnet50", "resnet101")

MODELS = {
    "baseline": Baseline,
    "q1": Q1,
    "base2dcnn": Base2DCNN,
    "q2": Q2,
    **{arch: partial(VisionNet, arch) for arch in VISION},
    "resnet34_musicnn": partial(VisionMusicnn, "resnet34"),
    "musicnn_ft": MusicnnFT,    # the musicnn encoder itself, fine-tuned on its own log-mel input
    "mfcc_svm": MfccSVM,        # scikit-learn heads: fitted by model/classic.fit, not by SGD
    "musicnn_svm": MusicnnSVM,
    "musicnn_logreg": MusicnnLogReg,
}


def model_class(name):
    entry = MODELS[name]
    return entry.func if isinstance(entry, partial) else entry


def inputs_of(name):
    return model_class(name).inputs


def build(name, n_classes, input_shape, **kwargs):
    if name not in MODELS:
        from genreclf.errors import UserError
        raise UserError(f"unknown model {name!r}; choose one of {', '.join(sorted(MODELS))}")
    return MODELS[name](n_classes=n_classes, input_shape=input_shape, **kwargs)
