"""The training recipe around the SGD loop: optimizer, LR schedule, online augmentation, loss.
train.fit calls these; they hold no state of their own, so `--resume` is exact. (The scikit-learn
heads are fitted in model/classic.py, where they are defined.)

Online augmentation (all off by default, each a TrainConfig flag; order as applied):
    random crop   each training segment's window starts anywhere in [start, start + segment) of
                  its clip copy, read from the segment and the next one (the previous one for a
                  copy's last segment), instead of the fixed non-overlapping grid; "mel" only
    gain          a random offset of +-gain_db dB on each segment's log-mel (see `augment_batch`)
    SpecAugment   `masks` frequency masks up to freq_mask mel bands and time masks up to time_mask
                  frames per segment (Park et al., 2019), filled with the segment's mean dB;
                  "mel" only
    mixup         the batch mixed with a permutation of itself, lambda ~ Beta(a, a), every input
                  and the loss (Zhang et al., 2018)
Random numbers come from (seed, epoch, batch or segment index) alone, never from global state, so
a resumed epoch, or a DataLoader worker, draws exactly what an uninterrupted run draws.
"""
import math

import numpy as np
import torch

from .errors import UserError
from .windows import Windows, random_starts

CROP, BATCH = 1, 2  # streams of random numbers, kept apart


def rng(seed, epoch, index, stream, rank=0):
    """A numpy Generator for one (seed, epoch, batch/segment, rank): independent of global state."""
    return np.random.default_rng([seed, epoch, index, stream, rank])


# -- optimizer and schedule --------------------------------------------------------------------

def optimizer(params, cfg):
    """Adam with coupled L2 (the seed's), AdamW with decoupled weight decay (Loshchilov & Hutter,
    2019), or SGD with momentum 0.9; weight decay cfg.weight_decay for all."""
    params = list(params)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)
    return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


class Schedule:
    """The LR schedule, stepped by the loop after every batch and after every validation.

    plateau  halve the LR after 5 epochs without a better val clip accuracy (the seed's), per epoch
    cosine   linear warmup over cfg.warmup epochs, then cosine decay to 0 at cfg.epochs, per batch
             (Loshchilov & Hutter, 2017, without restarts); `steps_per_epoch` converts epochs to steps
    state_dict() goes into last.pt, so a resumed run continues at the same step.
    """

    def __init__(self, opt, cfg, steps_per_epoch):
        self.kind = cfg.schedule
        if self.kind == "plateau":
            if cfg.warmup:
                raise UserError("--warmup applies to --schedule cosine; the plateau schedule has no warmup")
            self.sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max", factor=0.5, patience=5)
        else:
            warm, total = cfg.warmup * steps_per_epoch, max(1, cfg.epochs * steps_per_epoch)
            self.sched = torch.optim.lr_scheduler.LambdaLR(opt, CosineWarmup(warm, total))

    def step_batch(self):
        if self.kind == "cosine":
            self.sched.step()

    def step_epoch(self, val_clip_accuracy):
        if self.kind == "plateau":
            self.sched.step(val_clip_accuracy)

    def state_dict(self):
        return self.sched.state_dict()

    def load_state_dict(self, state):
        self.sched.load_state_dict(state)


class CosineWarmup:
    """LR factor at step s: (s + 1) / warm during warmup, then 0.5 (1 + cos(pi * progress))."""

    def __init__(self, warm, total):
        self.warm, self.total = warm, total

    def __call__(self, s):
        if s < self.warm:
            return (s + 1) / self.warm
        progress = min(1.0, (s - self.warm) / max(1, self.total - self.warm))
        return 0.5 * (1 + math.cos(math.pi * progress))


# -- online augmentation -----------------------------------------------------------------------

def epoch_view(fs, cfg, epoch):
    """The training FeatureSet as epoch `epoch` reads it: with --random-crop its "mel" rows are
    windows at random starts within their clip copies (windows.py), drawn once per epoch from
    (seed, epoch), so a row reads the same window in any batch, worker or resumed run; otherwise
    `fs` itself. A fusion model's musicnn input stays the segment's own (up to one segment off)."""
    if not cfg.random_crop or "mel" not in fs.x:
        return fs
    from dataclasses import replace

    first, offset, nxt = random_starts(fs, fs.x["mel"].shape[-1], rng(cfg.seed, epoch, 0, CROP))
    return replace(fs, x={**fs.x, "mel": Windows(fs.x["mel"], first, offset, nxt)})


def augment_batch(xs, y, cfg, epoch, batch, rank=0):
    """Gain, SpecAugment and mixup of one training batch, on whatever device it is on.

    xs {input name: (B, ...)}, y (B,) -> (xs, target) where target is (y, y[perm], lambda) for
    `mixed_loss`. Gain is a constant dB offset of a segment's log-mel: since the featurizers scale
    every clip to one loudness (MelSpec.loudness), it no longer models recording level, only the
    level of a segment against its clip's mean, which the data already show; hence off by default.
    """
    if not (cfg.gain_db or cfg.freq_mask or cfg.time_mask or cfg.mixup):
        return xs, (y, y, 1.0)
    g = rng(cfg.seed, epoch, batch, BATCH, rank)
    n = len(y)
    if "mel" in xs and (cfg.gain_db or cfg.freq_mask or cfg.time_mask):
        mel = xs["mel"]                                                 # (B, n_mels, T)
        if cfg.gain_db:
            gain = g.uniform(-cfg.gain_db, cfg.gain_db, size=(n, 1, 1))
            mel = mel + torch.as_tensor(gain, dtype=mel.dtype, device=mel.device)
        if cfg.freq_mask or cfg.time_mask:
            mask = masks(g, n, mel.shape[1], mel.shape[2], cfg.freq_mask, cfg.time_mask, cfg.masks)
            mask = torch.as_tensor(mask, device=mel.device)
            mel = torch.where(mask, mel.mean(dim=(1, 2), keepdim=True), mel)
        xs = {**xs, "mel": mel}
    if cfg.mixup:
        lam = float(g.beta(cfg.mixup, cfg.mixup))
        perm = torch.as_tensor(g.permutation(n), device=y.device)
        xs = {k: lam * x + (1 - lam) * x[perm] for k, x in xs.items()}
        return xs, (y, y[perm], lam)
    return xs, (y, y, 1.0)


def masks(g, n, n_mels, frames, freq_width, time_width, count):
    """SpecAugment's masks: (n, n_mels, frames) bool, True where masked. Each segment gets `count`
    frequency bands of width U{0..freq_width} and `count` time spans of width U{0..time_width}."""
    def spans(size, width):
        w = g.integers(0, width + 1, size=(n, count, 1))
        start = g.integers(0, np.maximum(size - w, 0) + 1)
        pos = np.arange(size)
        return ((pos >= start) & (pos < start + w)).any(1)              # (n, size)
    out = np.zeros((n, n_mels, frames), dtype=bool)
    if freq_width:
        out |= spans(n_mels, freq_width)[:, :, None]
    if time_width:
        out |= spans(frames, time_width)[:, None, :]
    return out


def mixed_loss(logits, target, label_smoothing=0.0):
    """Cross-entropy against a mixup target (y_a, y_b, lambda), with label smoothing."""
    ya, yb, lam = target
    ce = torch.nn.functional.cross_entropy
    loss = ce(logits, ya, label_smoothing=label_smoothing)
    return loss if lam == 1.0 else lam * loss + (1 - lam) * ce(logits, yb, label_smoothing=label_smoothing)
