"""musicnn (Pons & Serra, 2019) in pure PyTorch, with the original pretrained weights.

"musicnn: pre-trained convolutional neural networks for music audio tagging", ISMIR 2019 LBD.
The weights are the TF1 checkpoints inside the `musicnn` 0.1.0 wheel (install it with --no-deps);
we read them with genreclf.tfbundle and never import TensorFlow. The architecture follows
musicnn/models.py; the notes below are the details that matter to match it numerically.

musicnn is Copyright (c) 2019 Music Technology Group, Universitat Pompeu Fabra, code by Jordi Pons,
under the ISC license: "Permission to use, copy, modify, and/or distribute this software for any
purpose with or without fee is hereby granted, provided that the above copyright notice and this
permission notice appear in all copies." (THE SOFTWARE IS PROVIDED "AS IS" ...; see its LICENSE.md.)
"""
import importlib.util
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .errors import UserError
from .features import mel_power

SR, N_FFT, HOP, N_MELS, PATCH = 16000, 512, 256, 96, 187  # 187 frames: about 3 s
MODELS = ("MSD_musicnn", "MTT_musicnn")
# The layers `layer()` reads, with their width per patch. The first four are the network's outputs;
# the others are its front-end and mid-end maps, named as in the original extractor's features
# dict, each pooled over the patch's frames by max and then mean (what the pool layer feeds the
# dense layer): slices of max_pool and mean_pool, so that a probe can take one part of the network.
MAPS = {"timbral": (0, 408), "temporal": (408, 561), "cnn1": (561, 625), "cnn2": (625, 689), "cnn3": (689, 753)}
LAYERS = {"max_pool": 753, "mean_pool": 753, "penultimate": 200, "taggram": 50,
          **{name: 2 * (b - a) for name, (a, b) in MAPS.items()}}
REFERENCE = False  # run() on the pre-speed-work path; only bench.py sets it
FRONT_PATCHES = 2  # patches per front-end pass on CPU (see Musicnn.forward)
EPS = 1e-3  # TF1 batch_normalization's epsilon (PyTorch's default 1e-5 gives errors up to 16)


class ConvBN(nn.Module):
    """TF order: conv -> ReLU -> batch-norm (not conv -> BN -> ReLU)."""

    def __init__(self, conv, channels):
        super().__init__()
        self.conv = conv
        self.bn = (nn.BatchNorm2d if isinstance(conv, nn.Conv2d) else nn.BatchNorm1d)(channels, eps=EPS)

    def forward(self, x):
        return self.bn(F.relu(self.conv(x)))

    def pooled(self, x):
        """forward(x).amax(dim=3) for the front end, (B, 1, T, F) -> (B, C, T), cheaper in eval mode.

        ReLU and an eval-mode BN are monotonic per channel, so the max over frequency can be
        taken on the conv output first (a min where the BN scale is negative): ReLU and BN then
        run on 1/F of the values. Exact, and 2x faster for the whole network on CPU.
        """
        if self.training:  # BN would use batch statistics over all frequencies
            return self.forward(x).amax(dim=3)
        z = self.conv(x)
        negative = (self.bn.weight < 0).nonzero()[:, 0]  # the scale's sign is gamma's: sqrt(var + eps) > 0
        pooled = z.amax(dim=3)
        if len(negative):
            pooled[:, negative] = z[:, negative].amin(dim=3)
        z = pooled
        bn = self.bn
        return F.batch_norm(F.relu(z), bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)

    def pooled_fast(self, x):
        """pooled(x) in eval mode, about 2x faster on CPU: (B, 1, T, F) -> (B, C, T).

        Two changes, both exact: (1) channels with a negative BN scale get the conv's weights and
        bias negated, so one max over frequency serves every channel (max(-z) = -min(z); no
        gather of those channels); (2) the conv runs in channels_last, so its output is
        (B, T, F, C) in memory and the max over F reads contiguous rows of C. The NCHW max over
        the innermost 59 or 30 bins took as long as the conv itself; this one takes 1/10 of it.
        """
        sign = torch.where(self.bn.weight < 0, -1.0, 1.0).to(x.dtype)
        weight = (self.conv.weight * sign[:, None, None, None]).contiguous(memory_format=torch.channels_last)
        z = F.conv2d(x.contiguous(memory_format=torch.channels_last), weight, self.conv.bias * sign)
        z = z.permute(0, 2, 3, 1).amax(dim=2).transpose(1, 2) * sign[:, None]  # (B, C, T): max or min over F
        bn = self.bn
        return F.batch_norm(F.relu(z), bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)


class Musicnn(nn.Module):
    """patches (B, 187, 96) log-compressed mel -> dict of
    logits (B, 50), penultimate (B, 200), mean_pool (B, 753), max_pool (B, 753)."""

    def __init__(self, n_tags=50, n_mels=N_MELS, timbral=204, temporal=51, midend=64, backend=200):
        super().__init__()
        self.input_bn = nn.BatchNorm2d(1, eps=EPS)  # the whole input normalised as one channel
        # timbral: kernels of 7 frames x 40% and 70% of the mel bands
        self.timbral = nn.ModuleList(ConvBN(nn.Conv2d(1, timbral, (7, int(f * n_mels))), timbral) for f in (0.4, 0.7))
        # temporal: 128, 64 and 32 frames x 1 band
        self.temporal = nn.ModuleList(ConvBN(nn.Conv2d(1, temporal, (k, 1)), temporal) for k in (128, 64, 32))
        front = 2 * timbral + 3 * temporal  # 561
        self.midend = nn.ModuleList(ConvBN(nn.Conv1d(c, midend, 7), midend) for c in (front, midend, midend))
        pooled = front + 3 * midend  # 753
        self.pool_bn = nn.BatchNorm1d(2 * pooled, eps=EPS)
        self.dense = nn.Linear(2 * pooled, backend)
        self.dense_bn = nn.BatchNorm1d(backend, eps=EPS)
        self.out = nn.Linear(backend, n_tags)

    def forward(self, x, reference=False):                      # (B, T, 96)
        """reference=True runs the port as it was before the fast path (bench.py compares the two)."""
        return self.backend(self.frontend(x, reference))

    def frontend(self, x, reference=False):                     # (B, T, 96) -> (B, 561, T)
        """Input batch-norm and the five front-end blocks, max-pooled over frequency. The fast path
        runs whenever the front end is in eval mode on CPU, also inside a model whose other parts
        train (model/musicnn_ft.py with --freeze)."""
        x = self.input_bn(x.unsqueeze(1))                       # (B, 1, T, 96)
        if reference or self.timbral.training or self.temporal.training or x.device.type != "cpu":
            return self._front(x, lambda block, x: block.pooled(x))
        # The front end's activations are 9 MB per patch (204 x 187 x 59 floats): in groups of
        # FRONT_PATCHES they stay in the 4 MB/core L2 + L3 instead of streaming through memory.
        # Measured per patch: 1 patch 18 ms, 2: 15 ms, 4-8: 18 ms, 30: 22 ms. With several torch
        # threads the groups run side by side, one thread each (see _map_threads).
        # As many groups as a multiple of the thread count, sizes as even as can be (at most
        # FRONT_PATCHES): one clip's 10 patches on 2 threads are 2+2+1 each, not 3 groups
        # against 2 with one thread idle for the last (bench.py, one clip at a time: 1.83x -> 2.15x
        # the old path).
        n = -(-len(x) // FRONT_PATCHES)
        n += -n % torch.get_num_threads()
        groups = [g for g in torch.tensor_split(x, n) if len(g)]
        return torch.cat(_map_threads(lambda g: self._front(g, lambda block, x: block.pooled_fast(x)), groups))

    def backend(self, front):                                   # (B, 561, T)
        """Mid-end (three residual 1-D convs) and back-end (pooling, dense, tags) on the front end's maps."""
        c1 = self.midend[0](F.pad(front, (3, 3)))               # (B, 64, T)
        c2 = self.midend[1](F.pad(c1, (3, 3))) + c1             # residuals are added after the BN
        c3 = self.midend[2](F.pad(c2, (3, 3))) + c2
        feats = torch.cat([front, c1, c2, c3], dim=1)           # (B, 753, T)
        max_pool, mean_pool = feats.amax(dim=2), feats.mean(dim=2)
        flat = torch.stack([max_pool, mean_pool], dim=2).flatten(1)  # interleaved: max0, mean0, max1, ...
        penultimate = self.dense_bn(F.relu(self.dense(self.pool_bn(flat))))
        return {"logits": self.out(penultimate), "penultimate": penultimate, "mean_pool": mean_pool, "max_pool": max_pool}

    def _front(self, x, pooled):
        """(B, 1, T, 96) -> (B, 561, T): the five front-end blocks, each max-pooled over frequency."""
        front = []
        for block in self.timbral:   # zero-pad time 3/3, 'valid' in frequency, max over what is left
            front.append(pooled(block, F.pad(x, (0, 0, 3, 3))))               # (B, 204, T)
        for block in self.temporal:  # TF 'same' padding: the odd extra frame goes at the end
            k = block.conv.kernel_size[0]
            front.append(pooled(block, F.pad(x, (0, 0, (k - 1) // 2, k // 2))))     # (B, 51, T)
        return torch.cat(front, dim=1)                          # (B, 561, T)


_POOL = {}  # torch's thread count -> a thread pool of that size, made on first use
os.register_at_fork(after_in_child=_POOL.clear)  # a forked child has none of the parent's threads


def _map_threads(fn, items):
    """[fn(item) for item in items], on torch.get_num_threads() Python threads with one torch
    thread each. Small ops split across OpenMP threads wait at a barrier after each op; on a
    loaded 2-core machine that made 2-patch groups slower than 1 thread. Whole groups per thread
    need no barrier and keep each group's activations in its own core's cache. Grad mode is
    per thread in torch, so the caller's is passed on."""
    n = torch.get_num_threads()
    if n == 1 or len(items) == 1:
        return [fn(item) for item in items]
    if n not in _POOL:
        from concurrent.futures import ThreadPoolExecutor
        _POOL[n] = ThreadPoolExecutor(n, thread_name_prefix="musicnn", initializer=torch.set_num_threads, initargs=(1,))
    grad = torch.is_grad_enabled()

    def call(item):
        with torch.set_grad_enabled(grad):
            return fn(item)
    return list(_POOL[n].map(call, items))


def weights_dir(name):
    """Folder of the installed musicnn package's checkpoint `name`, found without importing it."""
    if name not in MODELS:
        raise UserError(f"unknown musicnn model {name!r}; choose {' or '.join(MODELS)}")
    spec = importlib.util.find_spec("musicnn")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("the musicnn package is not installed: pip install --no-deps musicnn==0.1.0 (weights only)")
    folder = Path(list(spec.submodule_search_locations)[0]) / name
    if not (folder / ".index").exists():
        raise UserError(f"musicnn weights {folder}/.index are missing: reinstall with pip install --no-deps musicnn==0.1.0")
    return folder


def tag_names(name):
    """The 50 tags of `name`, read as text from musicnn/configuration.py (plain constants)."""
    import ast

    src = (weights_dir(name).parent / "configuration.py").read_text()
    target = name.split("_")[0] + "_LABELS"
    for node in ast.parse(src).body:
        if isinstance(node, ast.Assign) and node.targets[0].id == target:
            return list(ast.literal_eval(node.value))
    raise UserError(f"no {target} in {weights_dir(name).parent}/configuration.py")


def _convert(tf):
    """TF variable names and layouts -> our state_dict. Layers are numbered in creation order."""
    def conv2d(i):   # HWIO -> OIHW
        return {"weight": torch.from_numpy(tf[f"conv2d{i}/kernel"]).permute(3, 2, 0, 1), "bias": torch.from_numpy(tf[f"conv2d{i}/bias"])}

    def conv1d(i):   # (7, C, 1, O) over (time, channels) -> (O, C, 7)
        return {"weight": torch.from_numpy(tf[f"conv2d{i}/kernel"][:, :, 0, :]).permute(2, 1, 0), "bias": torch.from_numpy(tf[f"conv2d{i}/bias"])}

    def bn(i):
        p = f"batch_normalization{i}/"
        return {"weight": tf[p + "gamma"], "bias": tf[p + "beta"], "running_mean": tf[p + "moving_mean"], "running_var": tf[p + "moving_variance"]}

    def suffix(n):
        return "" if n == 0 else f"_{n}"

    modules = {"input_bn": bn(suffix(0)), "pool_bn": bn(suffix(9)), "dense_bn": bn(suffix(10)),
               "dense": {"weight": tf["dense/kernel"].T, "bias": tf["dense/bias"]},
               "out": {"weight": tf["dense_1/kernel"].T, "bias": tf["dense_1/bias"]}}
    blocks = [f"timbral.{i}" for i in range(2)] + [f"temporal.{i}" for i in range(3)] + [f"midend.{i}" for i in range(3)]
    for n, block in enumerate(blocks):
        modules[block + ".conv"] = (conv1d if block.startswith("midend") else conv2d)(suffix(n))
        modules[block + ".bn"] = bn(suffix(n + 1))
    return {f"{m}.{k}": torch.as_tensor(np.ascontiguousarray(v)) for m, params in modules.items() for k, v in params.items()}


def load(name="MSD_musicnn"):
    """Musicnn with the pretrained weights `name`, in eval mode, with `.tags` (50 names)."""
    from .tfbundle import read_bundle

    model = Musicnn()
    model.load_state_dict(_convert(read_bundle(str(weights_dir(name)) + "/")))
    model.tags = tag_names(name)
    model.name = name
    return model.eval()


def log_mel(wave):
    """musicnn's input representation of mono 16 kHz audio (T,): (frames, 96) float32, frames = 1 + T // 256.

    As musicnn 0.1.0: mel power (n_fft 512, hop 256, 96 bands), cast to float16, then
    log10(10000 x + 1) computed in float32 (float16 arithmetic would overflow to inf on loud
    audio). Powers above float16's largest value (65504) are clamped there first, where the
    original gives inf and then NaN.
    """
    mel = mel_power(torch.as_tensor(np.asarray(wave, dtype=np.float32))[None], SR, N_FFT, HOP, N_MELS)[0].T.numpy()
    mel = np.minimum(mel, np.finfo(np.float16).max).astype(np.float16).astype(np.float32)
    return np.log10(10000 * mel + 1)


def patch_step(overlap=0.0):
    """Frames between the starts of consecutive patches that share `overlap` seconds. Raises
    UserError unless 0 <= overlap < the 187-frame patch (2.99 s)."""
    step = PATCH - int(round(overlap * SR / HOP)) if overlap >= 0 else 0
    if not 0 < step <= PATCH:
        raise UserError(f"--musicnn-overlap {overlap:g}: must be at least 0 and shorter than musicnn's "
                        f"{PATCH * HOP / SR:.2f} s patch ({PATCH} frames)")
    return step


def preprocess(wave, overlap=0.0):
    """musicnn's input from mono 16 kHz audio (T,): patches (P, 187, 96) float32 of `log_mel`.

    Patches start every patch_step(overlap) frames, consecutive ones sharing `overlap` seconds
    (0: non-overlapping, as musicnn's extractor by default). The original's `input_overlap` is
    documented as this overlap but its code uses it as the step between patch starts
    (extractor.py: range(0, last_frame, overlap)); ours is the overlap. The last partial patch
    is dropped. Audio shorter than one patch is repeat-padded to 187 frames, the padding musicnn
    was trained with ("repeat-pad" in its config.json), where the original would crash.
    """
    step = patch_step(overlap)
    rep = log_mel(wave)  # (frames, 96)
    if len(rep) < PATCH:
        rep = np.resize(rep, (PATCH, N_MELS))  # np.resize repeats the rows cyclically
    n = 1 + (len(rep) - PATCH) // step
    if step == PATCH:
        return np.ascontiguousarray(rep[: n * PATCH].reshape(n, PATCH, N_MELS))
    return rep[np.arange(n)[:, None] * step + np.arange(PATCH)]


@torch.no_grad()
def run(model, patches, device="cpu", batch=32, reference=None):
    """Outputs for (P, 187, 96) patches in batches of `batch`, so memory is bounded for long files
    (on CPU the front end runs FRONT_PATCHES at a time; elsewhere, and with reference=True, the first
    timbral conv's output is batch x 204 x 187 x 59 floats: 290 MB at 32):
    {taggram (P, 50) sigmoid, penultimate (P, 200), mean_pool (P, 753), max_pool (P, 753)}.
    reference=True: the code path from before the speed work, kept for bench.py's comparison
    (None: the module's REFERENCE, which bench.py sets to time whole pipelines the old way)."""
    reference = REFERENCE if reference is None else reference
    outs = []
    for i in range(0, len(patches), batch):
        o = model(torch.as_tensor(patches[i:i + batch], device=device), reference=reference)
        o["taggram"] = torch.sigmoid(o.pop("logits"))
        outs.append({k: v.float().cpu().numpy() for k, v in o.items()})
    return {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}


def layer(outputs, name):
    """Layer `name` of LAYERS, (P, LAYERS[name]), from run()'s outputs; a front-end or mid-end
    map (MAPS) is its slice of max_pool then of mean_pool."""
    if name in MAPS:
        a, b = MAPS[name]
        return np.concatenate([outputs["max_pool"][:, a:b], outputs["mean_pool"][:, a:b]], axis=1)
    return outputs[name]


def embed(model, wave, layer_name, device="cpu"):
    """{layer}: per-patch outputs (P, D) of mono 16 kHz audio, in bounded-memory batches."""
    return layer(run(model, preprocess(wave), device), layer_name)


def patch_centers(n_patches, step=PATCH):
    """Centre time in seconds of each 187-frame patch, patches starting every `step` frames."""
    return (np.arange(n_patches) * step + PATCH / 2) * HOP / SR
