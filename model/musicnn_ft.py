"""musicnn fine-tuned for genres: the pretrained tagger itself trained, not its cached embeddings.

The PyTorch port of musicnn (genreclf/musicnn.py, Pons & Serra, 2019) with the original MSD
weights, its 50-tag output layer replaced by a new genre head, trained on musicnn's own log-mel
input (the `musicnn_mel` cache, genreclf/featurizers.py). This is the seed's fine-tuning of a
pretrained network (model/vision.py, ImageNet) applied to a network pretrained on music, as
PANNs' fine-tuning wrapper does: a base model, a new head and what to freeze.

`--freeze` (model/vision.freeze, through head_module() and last_block()):
    none   end to end: front end, mid-end, back-end and head
    last   the mid-end and back-end (last_block) and the head; the front end stays fixed
    head   the new head only: a linear probe of the penultimate layer, recomputed every epoch
Frozen parts stay in eval mode whatever `train()` is called with, so their BatchNorm layers use
and keep the pretrained running statistics, and a frozen front end takes the port's fast CPU path.
"""
from torch import nn

from .blocks import Head


class MusicnnFT(nn.Module):
    """musicnn_mel (B, T, 96) musicnn log-mel frames (T = 249 for a 4 s segment; musicnn was trained
    on 187, and pools over time, so any T works) -> logits (B, n_classes), from the penultimate layer (200)."""
    inputs = ("musicnn_mel",)

    def __init__(self, n_classes, input_shape, musicnn_model="MSD_musicnn", dropout=0.3):
        super().__init__()
        from genreclf import musicnn

        self.encoder = musicnn.load(musicnn_model)  # the original weights; a checkpoint's replace them
        self.encoder.out = nn.Identity()  # the 50 tags: not used, not saved
        self.head = Head(self.encoder.dense.out_features, n_classes, dropout=dropout)

    def forward(self, musicnn_mel):                              # (B, T, 96)
        return self.head(self.encoder(musicnn_mel)["penultimate"])  # (B, n_classes)

    def head_module(self):
        return self.head

    def last_block(self):
        """The mid-end and back-end: what `--freeze last` trains besides the head."""
        e = self.encoder
        return nn.ModuleList([e.midend, e.pool_bn, e.dense, e.dense_bn])

    def train(self, mode=True):
        """Train mode for the parts that train; eval mode for every part whose parameters are all frozen."""
        super().train(mode)
        for part in self.encoder.children():
            params = list(part.parameters())
            if params and not any(p.requires_grad for p in params):
                part.eval()
        return self
