"""Windows that start anywhere in a clip, cut from its cached non-overlapping segments.

The mel cache holds each clip copy as consecutive segments of one log-mel (computed over the whole
clip, then cut on a grid), so frames [o, o + T) of (segment i, segment i + 1) are exactly the
window that starts o frames after segment i. That gives, without touching the audio again:
    random crops for training (recipe.epoch_view): one window per segment at a random start
    overlapping windows for testing (`overlapping`): a window every `hop` seconds, the clip's
        prediction being the mean of its windows' softmax, as predict.py --hop does on audio
Only the "mel" input has a time axis to cut; a musicnn embedding is a mean over its segment's
patches and cannot be shifted, so `overlapping` refuses models with a musicnn input (predict.py
--hop recomputes them from the audio instead).
"""
import numpy as np

from .errors import UserError


def neighbours(fs):
    """(N,) index of the segment after each one in the same clip copy, or -1; and of the one
    before, or -1. Needs fs.pos (segment index within its copy, from rundata.load_clips)."""
    pos = getattr(fs, "pos", None)
    if pos is None:
        raise UserError("random crops and --hop need segment positions (FeatureSet.pos, from rundata.load_clips)")
    same = (fs.clip[1:] == fs.clip[:-1]) & (pos[1:] == pos[:-1] + 1)  # i and i + 1 are one copy's neighbours
    nxt, prev = np.full(len(pos), -1), np.full(len(pos), -1)
    nxt[:-1][same] = np.flatnonzero(same) + 1
    prev[1:][same] = np.flatnonzero(same)
    return nxt, prev


class Windows:
    """An (N, n_mels, T) array-like of windows over segments `base` (N_base, n_mels, T): row r is
    frames [offset[r], offset[r] + T) of (base[first[r]], base[nxt[first[r]]]), offset in [0, T).
    Indexing as a numpy array (int, index array); reads two segments per window."""

    def __init__(self, base, first, offset, nxt):
        self.base, self.first, self.offset, self.nxt = base, np.asarray(first), np.asarray(offset), nxt
        self.shape, self.dtype, self.ndim = (len(self.first), *base.shape[1:]), base.dtype, base.ndim
        if ((self.offset > 0) & (nxt[self.first] < 0)).any():
            raise ValueError("a window runs past the end of its clip copy")

    def __len__(self):
        return len(self.first)

    def __getitem__(self, idx):
        scalar = np.ndim(idx) == 0
        idx = np.atleast_1d(np.asarray(idx))
        first, offset = self.first[idx], self.offset[idx]
        here = np.asarray(self.base[first])
        shifted = np.flatnonzero(offset > 0)
        if len(shifted):
            there = np.asarray(self.base[self.nxt[first[shifted]]])
            frames = here.shape[-1]
            for r, o, t in zip(shifted, offset[shifted], there):
                here[r] = np.concatenate([here[r][..., o:], t[..., :o]], -1)[..., :frames]
        return here[0] if scalar else here


def random_starts(fs, frames, g):
    """(first, offset) of one window per segment of `fs`, starting U{0..T-1} frames after the
    segment's start, or, for a copy's last segment, as far before it; a copy of one segment stays."""
    nxt, prev = neighbours(fs)
    o = g.integers(0, frames, size=len(fs))
    first = np.arange(len(fs))
    back = (nxt < 0) & (prev >= 0) & (o > 0)  # the last segment: window from the previous one
    first = np.where(back, prev, first)
    offset = np.where(back, frames - o, np.where(nxt < 0, 0, o))
    return first, offset, nxt


def overlapping(fs, hop_s, features):
    """A FeatureSet of windows every `hop_s` seconds over each clip copy of `fs` (test sets hold
    originals only), the last one ending at or before the clip's last cached frame. y and clip
    follow the windows; `features` (input name -> spec) gives the frame rate."""
    from dataclasses import replace

    if set(fs.x) != {"mel"}:
        raise UserError(f"--test-hop cuts windows from the mel cache; inputs {', '.join(sorted(fs.x))} "
                        f"cannot be shifted (musicnn embeddings are per segment): leave --hop out, or use predict.py --hop")
    spec = features["mel"]
    frames = fs.x["mel"].shape[-1]
    hop = int(round(hop_s * spec["sr"] / spec["hop"]))
    if not 0 < hop <= frames:
        raise UserError(f"--test-hop {hop_s}: must be more than 0 and at most the {frames * spec['hop'] / spec['sr']:.2f} s segment")
    nxt, prev = neighbours(fs)
    starts = np.flatnonzero(prev < 0)  # each run of neighbouring segments: a copy, or its part between silences
    first, offset = [], []
    for s in starts:
        n_seg = 1
        while nxt[s + n_seg - 1] >= 0:
            n_seg += 1
        t = np.arange(0, (n_seg - 1) * frames + 1, hop)     # window starts in frames from the copy's start
        first.append(s + t // frames)
        offset.append(t % frames)
    first, offset = np.concatenate(first), np.concatenate(offset)
    return replace(fs, x={"mel": Windows(fs.x["mel"], first, offset, nxt)}, y=fs.y[first], clip=fs.clip[first], pos=None)
