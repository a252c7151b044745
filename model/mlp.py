"""Classifiers over fixed-size embeddings (musicnn's, or any other cache of vectors)."""
from torch import nn

from .blocks import Head


class Q2(nn.Module):
    """The seed's Q2: a 2-layer MLP on pretrained musicnn embeddings (Pons & Serra, 2019).
    (B, D) -> (B, n_classes)."""
    inputs = ("musicnn",)

    def __init__(self, n_classes, input_shape, hidden=256, dropout=0.3):
        super().__init__()
        dim = input_shape["musicnn"][0]
        self.norm = nn.BatchNorm1d(dim)  # musicnn's pooled activations differ in scale by channel
        self.head = Head(dim, n_classes, hidden=hidden, dropout=dropout)

    def forward(self, musicnn):          # (B, D)
        return self.head(self.norm(musicnn))
