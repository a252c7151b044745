"""Convolutional nets over log-mel segments. Input (B, n_mels, frames) in dB; output logits."""
import torch
from torch import nn

from .blocks import ConvBlock1d, ConvBlock2d, Head


class Baseline(nn.Module):
    """The seed's 1D CNN: convolutions over time with mel bands as channels (after Dieleman &
    Schrauwen, 2014), batch-norm and max-pool, global average pool, two dense layers."""
    inputs = ("mel",)

    def __init__(self, n_classes, input_shape, channels=(64, 128, 128), hidden=64):
        super().__init__()
        n_mels = input_shape["mel"][0]
        self.norm = nn.BatchNorm1d(n_mels)  # dB values are far from unit scale; learn it per band
        sizes = (n_mels,) + tuple(channels)
        self.blocks = nn.Sequential(*[ConvBlock1d(a, b, kernel=3, pool=2) for a, b in zip(sizes, sizes[1:])])
        self.head = Head(sizes[-1], n_classes, hidden=hidden)

    def forward(self, mel):                       # (B, n_mels, T)
        h = self.blocks(self.norm(mel))           # (B, C, T / 8)
        return self.head(h.mean(dim=2))           # (B, n_classes)


class Q1(nn.Module):
    """Improved 1D CNN: four wider blocks, global max and mean pooling concatenated (as in
    musicnn's back end, Pons & Serra 2019) and dropout before the dense layers."""
    inputs = ("mel",)

    def __init__(self, n_classes, input_shape, channels=(128, 128, 256, 256), hidden=128, dropout=0.3):
        super().__init__()
        n_mels = input_shape["mel"][0]
        self.norm = nn.BatchNorm1d(n_mels)
        sizes = (n_mels,) + tuple(channels)
        self.blocks = nn.Sequential(*[ConvBlock1d(a, b, kernel=5 if i == 0 else 3, pool=2)
                                      for i, (a, b) in enumerate(zip(sizes, sizes[1:]))])
        self.head = Head(2 * sizes[-1], n_classes, hidden=hidden, dropout=dropout)

    def forward(self, mel):                                         # (B, n_mels, T)
        h = self.blocks(self.norm(mel))                             # (B, C, T / 16)
        return self.head(torch.cat([h.amax(dim=2), h.mean(dim=2)], dim=1))  # (B, n_classes)


class Base2DCNN(nn.Module):
    """2D CNN on log-mel (Choi, Fazekas & Sandler, 2016): 3x3 conv blocks with 2x2 pooling,
    global average pool, dense classifier. Channels (16, 32, 64, 128) rather than wider: 3x the
    CPU throughput of (32, 64, 128, 128) for GTZAN's few thousand segments."""
    inputs = ("mel",)

    def __init__(self, n_classes, input_shape, channels=(16, 32, 64, 128), dropout=0.3):
        super().__init__()
        self.norm = nn.BatchNorm2d(1)
        sizes = (1,) + tuple(channels)
        self.blocks = nn.Sequential(*[ConvBlock2d(a, b, pool=2) for a, b in zip(sizes, sizes[1:])])
        self.head = Head(sizes[-1], n_classes, dropout=dropout)

    def forward(self, mel):                              # (B, n_mels, T)
        x = mel.unsqueeze(1).contiguous(memory_format=torch.channels_last)  # 1.5x faster convs on CPU
        h = self.blocks(self.norm(x))                    # (B, C, n_mels / 16, T / 16)
        return self.head(h.mean(dim=(2, 3)))             # (B, n_classes)
