"""Building blocks, written once and varied by parameters."""
from torch import nn


class ConvBlock1d(nn.Sequential):
    """Conv1d -> BatchNorm -> ReLU -> MaxPool over time. (B, c_in, T) -> (B, c_out, T // pool)"""

    def __init__(self, c_in, c_out, kernel=3, pool=2):
        super().__init__(nn.Conv1d(c_in, c_out, kernel, padding=kernel // 2), nn.BatchNorm1d(c_out), nn.ReLU(),
                         nn.MaxPool1d(pool) if pool > 1 else nn.Identity())


class ConvBlock2d(nn.Sequential):
    """Conv2d 3x3 -> BatchNorm -> ReLU -> MaxPool. (B, c_in, F, T) -> (B, c_out, F // pool, T // pool)"""

    def __init__(self, c_in, c_out, pool=2):
        super().__init__(nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(),
                         nn.MaxPool2d(pool) if pool else nn.Identity())


class Head(nn.Sequential):
    """Dense classifier: (B, d_in) -> (B, n_classes) logits, with one hidden layer if `hidden`."""

    def __init__(self, d_in, n_classes, hidden=0, dropout=0.0):
        layers = [nn.Dropout(dropout)] if dropout else []
        if hidden:
            layers += [nn.Linear(d_in, hidden), nn.ReLU(), nn.Dropout(dropout)] if dropout else [nn.Linear(d_in, hidden), nn.ReLU()]
            d_in = hidden
        super().__init__(*layers, nn.Linear(d_in, n_classes))
