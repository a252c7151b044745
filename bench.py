"""Benchmark features, extraction, musicnn, training and predict on this machine.

    python bench.py                    # every section: prints a markdown table, writes bench.json
    python bench.py --section musicnn  # some sections only; bench.json keeps the others' keys

Each section runs in its own process, so its peak RSS is its own (extraction includes its workers).
"""
import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from genreclf.io import write_json

REPO = Path(__file__).resolve().parent
SHARED = REPO.parent / "shared" / "data"
MINI = SHARED / "gtzan_mini"
SONG = SHARED / "long_tracks" / "chaos_god.ogg"


def best_of(fn, n=5):
    fn()
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def logmel():
    import librosa
    import soundfile as sf
    from genreclf.features import MelSpec, log_mel

    spec = MelSpec()
    clips = sorted((MINI / "wav").glob("*/*.00000.wav"))
    diff = 0.0
    for clip in clips:
        y, _ = sf.read(clip, dtype="float32")
        ref = librosa.power_to_db(librosa.feature.melspectrogram(y=y, sr=spec.sr, n_fft=spec.n_fft, hop_length=spec.hop, n_mels=spec.n_mels))
        diff = max(diff, float(np.abs(log_mel(y, spec) - ref).max()))
    ours = best_of(lambda: log_mel(y, spec), 20)
    theirs = best_of(lambda: librosa.power_to_db(librosa.feature.melspectrogram(
        y=y, sr=spec.sr, n_fft=spec.n_fft, hop_length=spec.hop, n_mels=spec.n_mels)), 20)
    return {"logmel_ours_ms": ours * 1e3, "logmel_librosa_ms": theirs * 1e3, "logmel_speedup_vs_librosa": theirs / ours,
            "logmel_max_abs_db_diff": diff, "logmel_clips_compared": len(clips)}


def extraction(workers, augment):
    from genreclf.augment import AugmentSpec
    from genreclf.extract import extract
    from genreclf.featurizers import MelFeatures
    from genreclf.features import MelSpec
    from genreclf.splits import make_split, write_split

    with tempfile.TemporaryDirectory() as work:
        parts, _ = make_split(MINI, "random", val_per_class=0, test_per_class=0)  # every clip in train: all get augmented
        write_split(parts, Path(work) / "split", {})
        t = time.perf_counter()
        extract(MINI, Path(work) / "split", Path(work) / "cache", MelFeatures(MelSpec()),
                AugmentSpec(augment=("noise", "shift", "stretch", "pitch") if augment else ()), workers)
        seconds = time.perf_counter() - t
    n = len(parts["train"])
    return {"seconds": seconds, "clips": n, "s_per_clip": seconds / n}


def _median(xs):
    return float(np.median(xs))


def _interleaved(fns, rounds):
    """Run each of fns in turn, `rounds` times (A B A B ...): {name: [seconds of each round]}.
    Interleaving shares any load from other processes fairly between the paths compared."""
    times = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t)
    return times


def musicnn_clip(n_clips=6, rounds=3):
    """musicnn on the same clips, the code path from before the speed work (reference=True: NCHW
    front end, batches of 32 patches) against today's, interleaved: clips/s one clip at a time and
    on all clips' patches in one call, the largest taggram difference, and the decode share."""
    import torch
    from genreclf import audio, musicnn
    model = musicnn.load("MSD_musicnn")
    paths = sorted((MINI / "wav").glob("*/*.00001.wav"))[:n_clips]
    t = time.perf_counter()
    patches = [musicnn.preprocess(audio.load(p, musicnn.SR)) for p in paths]
    decode_s = (time.perf_counter() - t) / n_clips
    every = np.concatenate(patches)
    for ref in (True, False):  # start-up: lazy initialisation, first allocations of each path
        musicnn.run(model, patches[0], reference=ref)
    one = _interleaved({"before": lambda: [musicnn.run(model, p, reference=True) for p in patches],
                        "now": lambda: [musicnn.run(model, p) for p in patches]}, rounds)
    batch = _interleaved({"before": lambda: musicnn.run(model, every, reference=True),
                          "now": lambda: musicnn.run(model, every)}, rounds)
    diff = max(float(np.abs(musicnn.run(model, p)["taggram"] - musicnn.run(model, p, reference=True)["taggram"]).max())
               for p in patches)
    one_s = {k: _median(v) / n_clips for k, v in one.items()}
    batch_s = {k: _median(v) / n_clips for k, v in batch.items()}
    return {"musicnn_s_per_clip": one_s["now"], "musicnn_before_s_per_clip": one_s["before"],
            "musicnn_speedup_vs_before": one_s["before"] / one_s["now"],
            "musicnn_batch_s_per_clip": batch_s["now"], "musicnn_batch_before_s_per_clip": batch_s["before"],
            "musicnn_batch_speedup_vs_before": batch_s["before"] / batch_s["now"],
            "musicnn_taggram_max_diff_vs_before": diff, "musicnn_decode_s_per_clip": decode_s,
            "clips": n_clips, "patches": len(every), "rounds": rounds, "torch_threads": torch.get_num_threads(),
            "spread": {"one_clip": {k: [round(x / n_clips, 3) for x in v] for k, v in one.items()},
                       "batch": {k: [round(x / n_clips, 3) for x in v] for k, v in batch.items()}}}


def _musicnn_rows(r):
    m = r["musicnn"]
    spread = lambda k: "-".join(f"{x:.2f}" for x in (min(m["spread"][k]["now"]), max(m["spread"][k]["now"])))
    return [(f"musicnn, one 30 s clip at a time ({m['clips']} clips x {m['rounds']} rounds)",
             f"{m['musicnn_s_per_clip']:.2f} s/clip ({1 / m['musicnn_s_per_clip']:.1f} clips/s)",
             f"{m['musicnn_speedup_vs_before']:.2f}x the port before (its {m['musicnn_before_s_per_clip']:.2f} s/clip), "
             f"rounds {spread('one_clip')} s; decoding + patches {m['musicnn_decode_s_per_clip'] * 1e3:.0f} ms/clip", "≥ 2x"),
            (f"musicnn, {m['clips']} clips' {m['patches']} patches in one call",
             f"{m['musicnn_batch_s_per_clip']:.2f} s/clip ({1 / m['musicnn_batch_s_per_clip']:.1f} clips/s)",
             f"{m['musicnn_batch_speedup_vs_before']:.2f}x the port before ({m['musicnn_batch_before_s_per_clip']:.2f} s/clip), "
             f"taggram within {m['musicnn_taggram_max_diff_vs_before']:.0e} of it", "≥ 2x, ≤ 1e-4")]


def _bench_checkpoint(folder, kind, n_classes=8):
    """A checkpoint as main.py saves it, untrained: base2dcnn on log-mel, or q2 on musicnn max_pool."""
    from genreclf import checkpoint
    from genreclf.featurizers import MelFeatures, MusicnnFeatures, MusicnnSpec
    from genreclf.features import MelSpec
    from model import build

    if kind == "base2dcnn":
        kwargs, features = {"n_classes": n_classes, "input_shape": {"mel": (128, 172)}}, {"mel": MelFeatures(MelSpec()).key()}
    else:
        kwargs, features = {"n_classes": n_classes, "input_shape": {"musicnn": (753,)}}, {"musicnn": MusicnnFeatures(MusicnnSpec(), MelSpec()).key()}
    model = build(kind, **kwargs)
    path = Path(folder) / f"{kind}.pt"
    checkpoint.save(path, model=kind, kwargs=kwargs, genres=[f"g{i}" for i in range(n_classes)], features=features,
                    state=model.state_dict())
    return path


def predict_batch(n_files=100, workers=2):
    """predict on n_files 30 s files (gtzan_mini's clips, linked cyclically), the way predict.py
    ran before (one file after the other, in one process, musicnn on its old path) against
    predict_many (workers decode and featurize while the model runs), for base2dcnn and q2 (on
    musicnn embeddings: the issue's case). Interleaved (A B A B), on the same files."""
    import torch
    from genreclf import checkpoint, musicnn, predict

    clips = sorted((MINI / "wav").glob("*/*.wav"))
    out = {"files": n_files, "workers": workers, "torch_threads": torch.get_num_threads()}
    with tempfile.TemporaryDirectory() as d:
        files = []
        for i in range(n_files):
            link = Path(d) / "in" / f"{i:03d}-{clips[i % len(clips)].name}"
            link.parent.mkdir(exist_ok=True)
            link.symlink_to(clips[i % len(clips)])
            files.append(link)
        for kind in ("base2dcnn", "q2"):
            clf = predict.Classifier(*checkpoint.load_model(_bench_checkpoint(d, kind)))
            clf(files[0])  # start-up: lazy initialisation, the musicnn weights

            last = {}

            def before():
                musicnn.REFERENCE = True
                try:
                    last["before"] = [clf(f) for f in files]
                finally:
                    musicnn.REFERENCE = False

            def now():
                last["now"] = [o for _, o, _, _ in predict.predict_many(clf, files, workers)]
            times = _interleaved({"before": before, "now": now}, 2)
            diff = max(float(np.abs(x["probs"] - y["probs"]).max()) for x, y in zip(last["before"], last["now"]))
            out[kind] = {"files": len(files), "before_s": _median(times["before"]), "now_s": _median(times["now"]),
                         "rounds": times, "max_prob_diff": diff}
    out["predict_batch_speedup"] = out["base2dcnn"]["before_s"] / out["base2dcnn"]["now_s"]
    out["predict_batch_speedup_q2"] = out["q2"]["before_s"] / out["q2"]["now_s"]
    return out


def _predict_batch_rows(r):
    p = r["predict_batch"]
    return [(f"predict {p[kind]['files']} files of 30 s, {kind}", f"{p[kind]['now_s']:.1f} s ({p[kind]['now_s'] / p[kind]['files'] * 1e3:.0f} ms/file)",
             f"{p[kind]['before_s'] / p[kind]['now_s']:.2f}x one file at a time before ({p[kind]['before_s']:.1f} s); "
             f"{p['workers']} worker processes", "≥ 2x") for kind in ("base2dcnn", "q2")]


def _seed_extract(paths, augment):
    """The seed project's extraction, as it was: librosa.load at 22050 Hz, librosa's mel and dB, one
    process; augmented copies by numpy noise and roll, librosa time_stretch and pitch_shift."""
    import librosa
    from genreclf.augment import AugmentSpec
    spec, aug, rng = __import__("genreclf.features", fromlist=["MelSpec"]).MelSpec(), AugmentSpec(), np.random.default_rng(0)

    def mel(y):
        return librosa.power_to_db(librosa.feature.melspectrogram(y=y, sr=22050, n_fft=spec.n_fft, hop_length=spec.hop, n_mels=spec.n_mels))
    for path in paths:
        y, _ = librosa.load(path, sr=22050)
        mel(y)
        if augment:
            power = float(np.mean(y.astype(np.float64) ** 2))
            mel(y + rng.standard_normal(len(y)).astype(np.float32) * np.float32(np.sqrt(power / 10 ** (aug.noise_snr / 10))))
            mel(np.roll(y, int(rng.uniform(-aug.shift_max, aug.shift_max) * 22050)))
            mel(librosa.effects.time_stretch(y=y, rate=aug.stretch_rate))
            mel(librosa.effects.pitch_shift(y=y, sr=22050, n_steps=aug.pitch_steps))


def extraction_vs_seed(workers=2):
    """Our extraction (genreclf.extract, `workers` processes) against the seed's (_seed_extract)
    on gtzan_mini's clips, without and with the 4 augmentations. Ours runs before and after the
    seed (A B A), and its mean is the one compared; the first call of each pays numba's start-up."""
    from genreclf.augment import warm_up
    paths = sorted(p for p in (MINI / "wav").glob("*/*") if p.suffix in (".wav", ".mp3"))
    warm_up()  # librosa's numba kernels, for both: a user's install pays this once
    _seed_extract(paths[:1], True)
    out = {"clips": len(paths), "workers": workers}
    # CPU seconds beside wall time: this process and its finished workers, every thread. On a
    # shared machine whose scheduler groups a session's processes (Linux autogroup), the workers
    # together get one process's share, so wall time there shows CPU work, not parallel speed.
    cpu = lambda: sum(os.times()[:4])
    for augment in (False, True):
        c = cpu()
        ours = [extraction(workers, augment)["seconds"]]
        ours_cpu = [cpu() - c]
        c, t = cpu(), time.perf_counter()
        _seed_extract(paths, augment)
        seed, seed_cpu = time.perf_counter() - t, cpu() - c
        c = cpu()
        ours.append(extraction(workers, augment)["seconds"])
        ours_cpu.append(cpu() - c)
        key = "aug" if augment else "plain"
        out[key] = {"seed_s": seed, "ours_s": ours, "speedup": seed / float(np.mean(ours)),
                    "seed_cpu_s": seed_cpu, "ours_cpu_s": ours_cpu, "cpu_ratio": seed_cpu / float(np.mean(ours_cpu))}
    out["stages_ms"] = _extraction_stages(paths[:12])
    # the best 2 workers could do with today's per-clip work: no start-up, no waiting, perfect split
    out["plain"]["ceiling"] = out["plain"]["seed_s"] / len(paths) / (sum(out["stages_ms"]["ours"].values()) / 1e3 / workers)
    out["extraction_speedup_vs_seed"] = out["plain"]["speedup"]
    out["extraction_aug_speedup_vs_seed"] = out["aug"]["speedup"]
    return out


def _extraction_stages(paths):
    """Median milliseconds per clip of each step, one process, no augmentation: ours (decode,
    BS.1770 loudness, log-mel and segments, the atomic write) and the seed's (librosa.load,
    melspectrogram + power_to_db). Says where a clip's time goes, so what a faster path could win."""
    import librosa
    from genreclf import audio
    from genreclf.features import MelSpec, log_mel, normalize_loudness, segment
    from genreclf.io import save_npy
    spec, times = MelSpec(), {}

    def timed(name, fn):
        t = time.perf_counter()
        out = fn()
        times.setdefault(name, []).append((time.perf_counter() - t) * 1e3)
        return out
    with tempfile.TemporaryDirectory() as tmp:
        for i, path in enumerate(paths):
            y = timed("ours decode", lambda: audio.load(path, sr=spec.sr))
            y = timed("ours loudness", lambda: normalize_loudness(y, spec.sr, spec.loudness))
            segs = timed("ours log-mel", lambda: segment(log_mel(y, spec), spec.segment_frames))
            timed("ours write", lambda: save_npy(Path(tmp) / f"{i}.npy", segs))
            y = timed("seed load", lambda: librosa.load(path, sr=22050)[0])
            timed("seed mel", lambda: librosa.power_to_db(librosa.feature.melspectrogram(
                y=y, sr=22050, n_fft=spec.n_fft, hop_length=spec.hop, n_mels=spec.n_mels)))
    med = {k: float(np.median(v)) for k, v in times.items()}
    return {who: {k.split(" ", 1)[1]: v for k, v in med.items() if k.startswith(who)} for who in ("ours", "seed")}


def _extraction_seed_rows(r):
    e = r["extraction_seed"]
    return [(f"extract gtzan_mini ({e['clips']} clips){label}, {e['workers']} workers",
             f"{np.mean(e[k]['ours_s']):.1f} s ({'-'.join(f'{x:.1f}' for x in e[k]['ours_s'])})",
             f"{e[k]['speedup']:.2f}x the seed's librosa extraction in one process ({e[k]['seed_s']:.1f} s)"
             + (f"; CPU {np.mean(e[k]['ours_cpu_s']):.1f} s against the seed's {e[k]['seed_cpu_s']:.1f} s "
                f"({e[k]['cpu_ratio']:.2f}x less)" if "cpu_ratio" in e[k] else ""), target)
            for k, label, target in (("plain", "", "≥ 3x"), ("aug", " + 4 augmentations", "≥ 2x"))] + (
        [("per clip, one process (median of 12 clips)", f"ours {sum(e['stages_ms']['ours'].values()):.1f} ms",
          "ours: " + ", ".join(f"{k} {v:.1f}" for k, v in e["stages_ms"]["ours"].items()) + " ms; the seed's: "
          + ", ".join(f"{k} {v:.1f}" for k, v in e["stages_ms"]["seed"].items())
          + f" ms. At this work per clip, 2 workers with no overhead would reach {e['plain']['ceiling']:.2f}x", "")]
        if "stages_ms" in e else [])


def musicnn_long(minutes):
    """Tag a generated stereo 44.1 kHz file of `minutes`: patches run in chunks, so peak memory is
    the decoded audio plus a constant."""
    import soundfile as sf
    from genreclf import predict

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "long.flac"
        rng = np.random.default_rng(0)
        with sf.SoundFile(path, "w", 44100, 2, format="FLAC") as f:
            for _ in range(minutes * 6):  # 10 s blocks: the generator itself stays small
                f.write((0.1 * rng.standard_normal((441000, 2))).astype(np.float32))
        tagger = predict.Tagger("MSD_musicnn")
        t = time.perf_counter()
        out = tagger(path)
        return {"minutes": minutes, "seconds": time.perf_counter() - t, "patches": len(out["probs"])}


def training():
    import torch
    from model import MODELS, build, inputs_of
    shapes = {"mel": (128, 172), "musicnn": (753,)}
    out = {}
    for name in sorted(n for n in MODELS if n not in ("mfcc_svm", "musicnn_svm")):  # those have no SGD step
        torch.manual_seed(0)
        model = build(name, n_classes=8, input_shape={k: shapes[k] for k in inputs_of(name)})
        opt = torch.optim.Adam(model.parameters())
        xs = [torch.randn(32, *shapes[k]) for k in model.inputs]
        y = torch.randint(0, 8, (32,))

        def step():
            loss = torch.nn.functional.cross_entropy(model(*xs), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        heavy = name.startswith(("vgg", "resnet"))
        out[name] = 32 / best_of(step, 1 if heavy else 5)
    return {"train_segments_per_s": out, "base2dcnn_epoch_projected_s": 580 * 7 / out["base2dcnn"]}


def augment_cost(n_segments=580 * 7, batch=32):
    """Per-batch cost of each online augmentation (recipe.py) on 128 x 172 log-mel segments, next
    to one Base2DCNN training step, projected to an epoch of the course split (580 clips x 7)."""
    import torch
    from dataclasses import replace
    from genreclf import recipe
    from genreclf.data import FeatureSet
    from genreclf.train import TrainConfig
    from model import build

    torch.manual_seed(0)
    n = 64 * 7  # 64 clips of 7 segments in memory: crops read two segments per window
    fs = FeatureSet({"mel": np.random.default_rng(0).normal(size=(n, 128, 172)).astype(np.float32)},
                    np.zeros(n, dtype=np.int64), np.arange(n) // 7, [str(i) for i in range(n // 7)], np.arange(n) % 7)
    idx = np.arange(batch) * 7 + 3
    model = build("base2dcnn", n_classes=8, input_shape={"mel": (128, 172)})
    opt = torch.optim.Adam(model.parameters())
    xs, y = {"mel": torch.from_numpy(fs.x["mel"][idx])}, torch.zeros(batch, dtype=torch.long)

    def step():
        loss = torch.nn.functional.cross_entropy(model(xs["mel"]), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    base = TrainConfig()
    aug = {"random crop": lambda: recipe.epoch_view(fs, replace(base, random_crop=True), 1).x["mel"][idx],
           "SpecAugment (2 x 16 bands, 2 x 24 frames)": lambda: recipe.augment_batch(xs, y, replace(base, freq_mask=16, time_mask=24), 1, 0),
           "mixup": lambda: recipe.augment_batch(xs, y, replace(base, mixup=0.2), 1, 0),
           "gain": lambda: recipe.augment_batch(xs, y, replace(base, gain_db=6.0), 1, 0),
           "no augmentation (batch gather only)": lambda: fs.x["mel"][idx]}
    per_batch = {k: best_of(f, 10) for k, f in aug.items()}
    step_s = best_of(step, 3)
    batches = n_segments / batch
    return {"augment_ms_per_batch": {k: v * 1e3 for k, v in per_batch.items()}, "train_step_ms": step_s * 1e3,
            "augment_s_per_epoch": {k: v * batches for k, v in per_batch.items()}, "train_epoch_s": step_s * batches}


def _augment_rows(r):
    a = r["augment_cost"]
    return [(f"{k}, per epoch of 580 x 7 segments", f"{v:.2f} s", f"{100 * v / a['train_epoch_s']:.1f}% of a Base2DCNN epoch "
             f"({a['train_epoch_s']:.0f} s)", "") for k, v in a["augment_s_per_epoch"].items()]


SHIPPED_BEFORE = "32e64e2"  # the commit whose pretrained/ held the shipped model before issue 21's retraining


def _shipped_before(folder):
    """Today's shipped model before issue 21 (q2 on max_pool means), from git history; without git
    history, an untrained q2 of the same shapes (speed does not depend on the weights). Returns (path, how)."""
    from genreclf import pretrained

    rel = "pretrained/genre_musicnn_q2.pt"
    r = subprocess.run(["git", "show", f"{SHIPPED_BEFORE}:{rel}"], cwd=REPO, capture_output=True)
    if r.returncode == 0:
        path = Path(folder) / "before.pt"
        path.write_bytes(r.stdout)
        return path, f"{rel} of commit {SHIPPED_BEFORE}"
    kwargs = {"n_classes": 10, "input_shape": {"musicnn": (753,)}}
    return _bench_checkpoint(folder, "q2", kwargs["n_classes"]), f"an untrained twin ({pretrained.FILE.name} not in git history)"


def predict_song():
    """predict on the 3-minute song after start-up: an untrained base2dcnn, and the shipped model
    against the one shipped before issue 21, interleaved (A B A B), each the best of its rounds."""
    import torch
    from genreclf import audio, checkpoint, predict, pretrained

    with tempfile.TemporaryDirectory() as d:
        paths = {"base2dcnn": _bench_checkpoint(d, "base2dcnn"), "shipped": pretrained.checkpoint_path()}
        paths["shipped_before"], how = _shipped_before(d)
        clfs = {k: predict.Classifier(*checkpoint.load_model(p)) for k, p in paths.items()}
    for clf in clfs.values():
        clf(MINI / "wav" / "jazz" / "jazz.00000.wav")  # start-up: lazy initialisation, first allocations
    sr, frames, channels = audio.info(SONG)
    times = _interleaved({k: (lambda c=c: c(SONG)) for k, c in clfs.items()}, 3)
    best = {k: min(v) for k, v in times.items()}
    return {"predict_3min_s": best["base2dcnn"], "predict_song_seconds": frames / sr, "rounds": times,
            "predict_shipped_3min_s": best["shipped"], "predict_shipped_before_3min_s": best["shipped_before"],
            "predict_shipped_ratio": best["shipped"] / best["shipped_before"], "shipped_before": how,
            "shipped_model": ckpt_name(paths["shipped"]),
            "predict_song_channels": channels, "predict_song_sr": sr, "torch_threads": torch.get_num_threads()}


def ckpt_name(path):
    """`model (inputs)` of a checkpoint, for the table."""
    from genreclf import checkpoint

    ckpt = checkpoint.read(path)
    return f"{ckpt['model']} on {', '.join(ckpt['features'])}"


def _predict_rows(r):
    p = r["predict"]
    song = f"a {p['predict_song_seconds']:.0f} s stereo {p['predict_song_sr']} Hz song"
    return [(f"predict {song}, Base2DCNN", f"{p['predict_3min_s']:.2f} s", "after start-up", ""),
            (f"predict {song}, the shipped model ({p['shipped_model']})", f"{p['predict_shipped_3min_s']:.2f} s",
             f"{p['predict_shipped_ratio']:.2f}x the time of the model shipped before ({p['predict_shipped_before_3min_s']:.2f} s, "
             f"{p['shipped_before']}), same run, best of 3 interleaved rounds", "< 1.5 s")]


def _scale_cache(root, n_clips, segments=2, shape=(128, 172), n_genres=8):
    """A synthetic mel cache as dataset.py leaves it (index.json + the segment pack), without the
    per-clip files: n_clips clips of `segments` random segments, genres round-robin. Filled in
    blocks, so building it needs little memory. Returns the cache dir."""
    from genreclf.io import atomic_path

    cache = Path(root) / f"mel-{n_clips}"
    cache.mkdir(parents=True)
    rng, block, n = np.random.default_rng(0), 1024, n_clips * segments
    with atomic_path(cache / "segments-synthetic.npy") as tmp:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n, *shape))
        for i in range(0, n, block):
            out[i:i + block] = rng.standard_normal((min(block, n - i), *shape), dtype=np.float32)
        out.flush()
        del out
    clips = [{"id": f"g{k % n_genres}/clip{k:06d}", "genre": f"g{k % n_genres}", "versions": ["orig"],
              "rows": {"orig": [k * segments, segments]}} for k in range(n_clips)]
    write_json(cache / "index.json", {"spec": {"features": "mel"}, "augment": [], "pack": "segments-synthetic.npy",
                                      "splits": {"train": clips, "val": [], "test": []}, "skipped": {}})
    return cache


def _rss_anon_mb():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _scale_train(cache, n_batches=200, batch_size=32):
    """Train base2dcnn on n_batches shuffled batches drawn across the whole cache, in this process;
    print {peak RssAnon (sampled every 2 ms by a thread), segments/s (median step), ...} as JSON."""
    import threading

    import torch
    from genreclf import data as D
    from genreclf import rundata
    from model import build

    peak, stop = [_rss_anon_mb()], threading.Event()

    def sample():
        while not stop.wait(0.002):
            peak[0] = max(peak[0], _rss_anon_mb())
    threading.Thread(target=sample, daemon=True).start()
    t0 = time.perf_counter()
    index = rundata.read_index(cache)
    fs = rundata.load_clips({"mel": cache}, index.splits["train"], index.genres)
    load_s = time.perf_counter() - t0
    torch.manual_seed(0)
    model = build("base2dcnn", n_classes=len(index.genres), input_shape={"mel": fs.x["mel"].shape[1:]})
    opt = torch.optim.Adam(model.parameters())
    steps, t0 = [], time.perf_counter()
    epochs = (D.batches(fs, batch_size, shuffle=True, seed=e) for e in range(n_batches))  # a new order each epoch
    for xs, y in (batch for epoch in epochs for batch in epoch):
        if len(steps) == n_batches:
            break
        t = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(xs["mel"]), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        steps.append((time.perf_counter() - t, t - (steps[-1][2] if steps else t0), time.perf_counter()))
    total = time.perf_counter() - t0
    stop.set()
    peak[0] = max(peak[0], _rss_anon_mb())
    step_s = np.array([s[0] + s[1] for s in steps])  # read + train of each batch
    print(json.dumps({"segments": len(fs), "load_s": load_s, "train_s": total, "peak_rss_anon_mb": peak[0],
                      "segments_per_s_median": batch_size / float(np.median(step_s)),
                      "segments_per_s_mean": len(steps) * batch_size / total,
                      "read_ms_median": 1e3 * float(np.median([s[1] for s in steps]))}))


def scale(sizes=(2000, 16000), batches=None):
    """Synthetic caches of 2,000 and 16,000 clips x 2 segments (0.35 and 2.8 GB): peak anonymous
    memory and throughput of 200 training batches (BENCH_SCALE_BATCHES) of base2dcnn drawn across
    the whole cache, each size in its own process."""
    import shutil

    batches = batches or int(os.environ.get("BENCH_SCALE_BATCHES", 200))

    out = {}
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as root:
        need = 1.1 * max(sizes) * 2 * 128 * 172 * 4 + 1.1 * min(sizes) * 2 * 128 * 172 * 4
        if shutil.disk_usage(root).free < need:
            raise SystemExit(f"bench scale needs {need / 1e9:.1f} GB free in {root}")
        for n in sizes:
            t = time.perf_counter()
            cache = _scale_cache(root, n)
            build_s = time.perf_counter() - t
            r = subprocess.run([sys.executable, "-c", f"import bench; bench._scale_train({str(cache)!r}, {batches})"],
                               capture_output=True, text=True, cwd=REPO)
            if r.returncode:
                raise SystemExit(f"scale {n}: {r.stderr[-2000:]}")
            out[n] = {**json.loads(r.stdout.strip().splitlines()[-1]), "clips": n, "build_s": build_s,
                      "pack_gb": (cache / "segments-synthetic.npy").stat().st_size / 1e9}
    small, large = out[min(sizes)], out[max(sizes)]
    return {"sizes": {str(k): v for k, v in out.items()}, "batches": batches,
            "scale_rss_anon_ratio": large["peak_rss_anon_mb"] / small["peak_rss_anon_mb"],
            "scale_throughput_ratio": large["segments_per_s_median"] / small["segments_per_s_median"]}


def _scale_rows(r):
    s = r["scale"]
    rows = [(f"train base2dcnn {s['batches']} batches of 32 from a {v['clips']:,}-clip cache ({v['segments']:,} segments, {v['pack_gb']:.2f} GB)",
             f"{v['segments_per_s_median']:.0f} segments/s", f"peak RssAnon {v['peak_rss_anon_mb']:.0f} MB; "
             f"{v['train_s']:.0f} s, read {v['read_ms_median']:.1f} ms/batch (median)", "") for v in s["sizes"].values()]
    rows.append(("large / small cache", f"{s['scale_throughput_ratio']:.2f}x throughput",
                 f"{s['scale_rss_anon_ratio']:.2f}x peak RssAnon", "≥ 0.8x throughput, ≤ 1.2x memory"))
    return rows


def cache_checks(n_clips=2000, rounds=5):
    """What a cache's identity and health checks cost on a healthy cache of n_clips 200 KB audio
    files with 2 copies each (warm page cache): dataset.py's rerun plan (a stat, a note and two
    .npy headers per clip), main.py's check (a stat per clip), and main.py's check once every
    file's time changed, as in a copied data folder (the first and last 64 KB of each are hashed)."""
    from genreclf import identity
    from genreclf.clipfiles import clip_file, source_file
    from genreclf.extract import _plan
    from genreclf.io import save_npy

    with tempfile.TemporaryDirectory() as root:
        data, cache = Path(root) / "data", Path(root) / "cache"
        rels = [f"g{k % 10}/clip{k:06d}.wav" for k in range(n_clips)]
        wanted, entries = {r: ["orig", "noise-snr20-s0"] for r in rels}, []
        for r in rels:
            (data / "wav" / r).parent.mkdir(parents=True, exist_ok=True)
            (data / "wav" / r).write_bytes(os.urandom(200_000))
            for v in wanted[r]:
                save_npy(clip_file(cache, r[:-4], v), np.zeros((7, 16, 16), np.float32))
            fp = identity.fingerprint(data / "wav", r)
            write_json(source_file(cache, r[:-4]), {**fp, "versions": wanted[r]})
            entries.append({"id": r[:-4], "source": fp})
        write_json(cache / "index.json", {"data_dir": str(data.resolve()), "splits": {"train": entries}})

        def timed(fn):
            ms = []
            for _ in range(rounds):
                t = time.perf_counter()
                fn()
                ms.append((time.perf_counter() - t) * 1000)
            return {"median_ms": _median(ms), "min_ms": min(ms), "max_ms": max(ms)}
        out = {"clips": n_clips, "rounds": rounds, "plan": timed(lambda: _plan(cache, data / "wav", rels, wanted)),
               "check": timed(lambda: identity.check_caches({"mel": cache}, None, data))}
        for r in rels:
            st = (data / "wav" / r).stat()
            os.utime(data / "wav" / r, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
        out["check_touched"] = timed(lambda: identity.check_caches({"mel": cache}, None, data))
    return out


def _cache_check_rows(r):
    c = r["cache_checks"]
    return [(f"{what}, {c['clips']:,} clips", f"{c[key]['median_ms']:.0f} ms",
             f"median of {c['rounds']} ({c[key]['min_ms']:.0f} to {c[key]['max_ms']:.0f})", "")
            for key, what in (("plan", "dataset.py rerun: fingerprints and clip files checked"),
                              ("check", "main.py: cache audio checked"),
                              ("check_touched", "main.py: cache audio checked, every file's time changed"))]


def _extraction_rows(results):
    rows = []
    for k, label in (("extract_1w", "1 worker"), ("extract_2w", "2 workers"),
                     ("extract_aug_1w", "4 augmentations, 1 worker"), ("extract_aug_2w", "4 augmentations, 2 workers")):
        r = results[k]
        rows.append((f"extract gtzan_mini ({r['clips']} clips), {label}", f"{r['seconds']:.1f} s", f"{r['s_per_clip'] * 1e3:.0f} ms/clip", ""))
    return rows


# name -> (function run in a child process, rows(results of all sections run) -> [(what, value, notes, target)],
#          summary(results) -> {bench.json key: value}). A section's rows and summary may read other sections'
#          results; they are only asked for when those ran too.

LEVELS = ("-30 dB", "original", "peak 0 dBFS", "float x8")


def _load_at_level(clip, level, path, sr):
    """Clip written to `path` at one of LEVELS (16-bit like a user's WAV, except float x8), then
    loaded as predict.py would: mono float32 at `sr`."""
    import soundfile as sf
    from genreclf import audio

    y, rate = sf.read(clip, dtype="float32")
    samples, subtype = {"-30 dB": (y * 10 ** (-30 / 20), "PCM_16"), "original": (y, "PCM_16"),
                        "peak 0 dBFS": (y / np.abs(y).max(), "PCM_16"), "float x8": (y * 8, "FLOAT")}[level]
    sf.write(path, samples, rate, subtype=subtype)
    return audio.load(path, sr, on_warning=lambda m: None)


OFFSETS = ("original", "+0.4 DC", "-0.4 DC", "60 s silence before", "60 s silence after")


def _offset_wave(y, rate, kind):
    """(T,) clip with a DC offset, or 60 s of digital silence before or after it (OFFSETS)."""
    quiet = np.zeros(60 * rate, np.float32)
    return {"original": y, "+0.4 DC": y + 0.4, "-0.4 DC": y - 0.4, "60 s silence before": np.concatenate([quiet, y]),
            "60 s silence after": np.concatenate([y, quiet])}[kind]


def dc_and_silence(runner, clips, work, watch="metal/metal.00000"):
    """Classify each clip as predict.py does (`runner`, a predict.Classifier) at each of OFFSETS,
    written as float WAV (16 bits would clip music + 0.4). Returns {"top1_agreement": {offset:
    fraction of clips whose top-1 is the original's}, "watch": {offset: probability of the watched
    clip's own genre}, "clips": n}."""
    import soundfile as sf

    top, watched = {k: [] for k in OFFSETS}, {}
    for clip in clips:
        y, rate = sf.read(clip, dtype="float32")
        for kind in OFFSETS:
            sf.write(Path(work) / "offset.wav", _offset_wave(y, rate, kind), rate, subtype="FLOAT")
            mean = runner(Path(work) / "offset.wav")["mean"]
            top[kind].append(int(mean.argmax()))
            if f"{clip.parent.name}/{clip.stem}" == watch:
                watched[kind] = float(mean[runner.genres.index(clip.parent.name)])
    agree = {k: float(np.mean(np.array(top[k]) == np.array(top["original"]))) for k in OFFSETS if k != "original"}
    return {"top1_agreement": agree, "watch": watched, "clips": len(clips)}


def loudness():
    """Train the demo model (8 genres of gtzan_mini, random 4/1/2 per genre, base2dcnn, no
    augmentation, BENCH_LOUDNESS_EPOCHS epochs, default 20), then classify each of its 56 clips
    written at LEVELS: how often is the top-1 the one at the original level? Also the change of
    log-mel and musicnn clip embeddings across levels, with and without loudness normalization,
    and the top-1 of this model (56 clips) and of the shipped one (70 clips) under a DC offset of
    +-0.4 and 60 s of silence before or after, through predict.py's path (dc_and_silence)."""
    import torch
    from genreclf import checkpoint, musicnn, pretrained
    from genreclf.features import MelSpec, log_mel
    from genreclf.featurizers import MelFeatures, MusicnnFeatures
    from genreclf.predict import Classifier

    genres = "classical,country,disco,hiphop,jazz,metal,pop,reggae"
    epochs = int(os.environ.get("BENCH_LOUDNESS_EPOCHS", 20))
    with tempfile.TemporaryDirectory() as work:
        common = ["--data-dir", str(MINI), "--work-dir", work]
        t = time.perf_counter()
        for cmd in (["split_data.py", *common, "--split", "random", "--genres", genres, "--val-per-class", "1", "--test-per-class", "2"],
                    ["dataset.py", *common, "--workers", "2", "--augment", ""],
                    ["main.py", *common, "--model", "base2dcnn", "--epochs", str(epochs), "--do_train", "--out", f"{work}/run"]):
            r = subprocess.run([sys.executable, str(REPO / cmd[0]), *cmd[1:]], capture_output=True, text=True, cwd=REPO)
            if r.returncode:
                raise SystemExit(f"{cmd[0]} failed: {r.stderr[-1500:]}")
        train_s = time.perf_counter() - t
        model, ckpt = checkpoint.load_model(Path(work) / "run" / "best.pt")
        feat = MelFeatures.from_key(ckpt["features"]["mel"])
        clips = sorted(p for g in genres.split(",") for p in (MINI / "wav" / g).glob("*.wav"))
        top, mel_change = {lv: [] for lv in LEVELS}, {"normalized": [], "raw": []}
        for clip in clips:
            mels = {}
            for lv in LEVELS:
                wave = _load_at_level(clip, lv, Path(work) / "level.wav", feat.sr)
                x = torch.as_tensor(feat(wave)["segments"])
                with torch.no_grad():
                    top[lv].append(int(torch.softmax(model(x), 1).mean(0).argmax()))
                mels[lv] = {"normalized": x.numpy(), "raw": log_mel(wave, feat.spec)}  # raw: what a model without it sees
            for kind in mel_change:
                mel_change[kind] += [float(np.abs(mels[lv][kind] - mels["original"][kind]).mean()) for lv in LEVELS]
        agree = {lv: float(np.mean(np.array(top[lv]) == np.array(top["original"]))) for lv in LEVELS}
        truth = [ckpt["genres"].index(c.parent.name) for c in clips]  # train clips included: context only
        accuracy = float(np.mean(np.array(top["original"]) == np.array(truth)))
        # musicnn: one clip per genre (embedding a clip takes about a second)
        n_mus = int(os.environ.get("BENCH_LOUDNESS_MUSICNN_CLIPS", 8))
        mfeat = MusicnnFeatures(MusicnnFeatures.Spec(), MelSpec())
        net = musicnn.load(mfeat.spec.musicnn_model)
        change = {"normalized": [], "raw": []}
        for clip in [c for c in clips if c.stem.endswith("00000")][:n_mus]:
            emb = {}
            for lv in LEVELS:
                wave = _load_at_level(clip, lv, Path(work) / "level.wav", musicnn.SR)
                emb[lv] = {"normalized": mfeat(wave)["clip"], "raw": musicnn.embed(net, wave, mfeat.spec.layers[0]).mean(0)}
            for kind in change:
                o = emb["original"][kind]
                change[kind] += [float(np.linalg.norm(emb[lv][kind] - o) / np.linalg.norm(o)) for lv in LEVELS if lv != "original"]
        offsets = {"mel": dc_and_silence(Classifier(model, ckpt), clips, work),
                   "shipped": dc_and_silence(Classifier(*checkpoint.load_model(pretrained.checkpoint_path())),
                                             sorted(MINI.glob("wav/*/*.wav")), work)}
    return {"epochs": epochs, "train_s": train_s, "accuracy_all_clips": accuracy, "clips": len(clips), "offsets": offsets,
            "top1_agreement": agree, "mel_mean_abs_db_change": {k: float(np.max(v)) for k, v in mel_change.items()},
            "musicnn_clips": n_mus, "musicnn_rel_l2_change": {k: {"max": max(v), "mean": float(np.mean(v))} for k, v in change.items()}}


def _loudness_rows(r):
    x = r["loudness"]
    rows = [(f"top-1 = top-1 at original level, {lv}", f"{x['top1_agreement'][lv]:.1%}",
             f"{x['clips']} clips, base2dcnn {x['epochs']} epochs (accuracy on all, train included: {x['accuracy_all_clips']:.2f})", "≥ 95%")
            for lv in LEVELS if lv != "original"]
    for kind in ("normalized", "raw"):
        c = x["musicnn_rel_l2_change"][kind]
        rows.append((f"musicnn clip embedding change across levels, {kind}", f"max {c['max']:.4f}, mean {c['mean']:.4f}",
                     f"relative L2, {x['musicnn_clips']} clips", ""))
        rows.append((f"log-mel change across levels, {kind}", f"{x['mel_mean_abs_db_change'][kind]:.3f} dB",
                     "max over clips of the mean absolute dB difference", ""))
    for name, what in (("mel", f"base2dcnn {x['epochs']} epochs"), ("shipped", "the shipped model")):
        o = x.get("offsets", {}).get(name)
        for kind in OFFSETS[1:] if o else ():
            rows.append((f"top-1 = top-1 of the original, {kind}", f"{o['top1_agreement'][kind]:.1%}",
                         f"{o['clips']} clips, {what}, as predict.py (float WAV)", "100%"))
        if o and o["watch"]:
            p0 = o["watch"]["original"]
            worst = max(abs(p - p0) for p in o["watch"].values())
            rows.append((f"metal.00000's metal probability, {what}", f"{p0:.3f}, at most {worst:.4f} away",
                         f"over {', '.join(OFFSETS[1:])}", "within 0.02" if name == "shipped" else ""))
    return rows



SECTIONS = {
    "scale": (scale, _scale_rows, lambda r: {k: r["scale"][k] for k in ("scale_rss_anon_ratio", "scale_throughput_ratio")}),
    "cache_checks": (cache_checks, _cache_check_rows, None),
    "logmel": (logmel, lambda r: [("log-mel, one 30 s clip",
                                   f"{r['logmel']['logmel_ours_ms']:.1f} ms (librosa {r['logmel']['logmel_librosa_ms']:.1f} ms)",
                                   f"{r['logmel']['logmel_speedup_vs_librosa']:.2f}x librosa, max diff {r['logmel']['logmel_max_abs_db_diff']:.4f} dB", "≤ 0.05 dB")],
               lambda r: {k: r["logmel"][k] for k in ("logmel_speedup_vs_librosa", "logmel_max_abs_db_diff")}),
    "extract_1w": (lambda: extraction(1, False), None, None),
    "extract_2w": (lambda: extraction(2, False), None, None),
    "extract_aug_1w": (lambda: extraction(1, True), None, None),
    "extract_aug_2w": (lambda: extraction(2, True),
                       lambda r: _extraction_rows(r) + [("GTZAN-sized extraction (1,000 clips, 4 augmentations, 2 workers)",
                                                          f"{r['extract_aug_2w']['s_per_clip'] * 1000:.0f} s projected", "", "")],
                       lambda r: {"gtzan_extraction_projected_s": r["extract_aug_2w"]["s_per_clip"] * 1000}),
    "musicnn": (musicnn_clip, _musicnn_rows,
                lambda r: {k: r["musicnn"][k] for k in ("musicnn_s_per_clip", "musicnn_speedup_vs_before", "musicnn_batch_speedup_vs_before")}),
    "predict_batch": (predict_batch, _predict_batch_rows,
                      lambda r: {k: r["predict_batch"][k] for k in ("predict_batch_speedup", "predict_batch_speedup_q2")}),
    "extraction_seed": (extraction_vs_seed, _extraction_seed_rows,
                        lambda r: {k: r["extraction_seed"][k] for k in ("extraction_speedup_vs_seed", "extraction_aug_speedup_vs_seed")}),
    **{f"musicnn_{m}min": (lambda m=m: musicnn_long(m),
                           lambda r, m=m: [(f"musicnn tags, {m} min stereo 44.1 kHz file", f"{r[f'musicnn_{m}min']['seconds']:.1f} s",
                                            f"{r[f'musicnn_{m}min']['patches']} patches, in chunks", "memory bounded")], None)
       for m in (1, 10)},
    "training": (training, lambda r: [(f"train {name} (batch 32)", f"{v:.0f} segments/s", "", "")
                                      for name, v in r["training"]["train_segments_per_s"].items()]
                 + [("Base2DCNN epoch, 580 x 7 segments", f"{r['training']['base2dcnn_epoch_projected_s']:.0f} s projected", "", "")],
                 lambda r: {"base2dcnn_epoch_projected_s": r["training"]["base2dcnn_epoch_projected_s"]}),
    "predict": (predict_song, _predict_rows,
                lambda r: {k: r["predict"][k] for k in ("predict_3min_s", "predict_shipped_3min_s", "predict_shipped_ratio")}),
    "augment_cost": (augment_cost, _augment_rows, lambda r: {"augment_s_per_epoch": r["augment_cost"]["augment_s_per_epoch"]}),
    "loudness": (loudness, _loudness_rows, lambda r: {"loudness_top1_agreement_min": min(r["loudness"]["top1_agreement"].values()),
                                                      "offset_top1_agreement_min": min(v for o in r["loudness"]["offsets"].values()
                                                                                       for v in o["top1_agreement"].values())}),
}


def child(name):
    result = SECTIONS[name][0]()
    rss = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    print(json.dumps({**result, "peak_rss_mb": rss / 1024}))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--section", default="all", help=f"comma-separated sections to run (default: all): {', '.join(SECTIONS)}")
    args = p.parse_args()
    names = list(SECTIONS) if args.section == "all" else args.section.split(",")
    unknown = [n for n in names if n not in SECTIONS]
    if unknown:
        print(f"error: unknown section {', '.join(repr(u) for u in unknown)}; choose from {', '.join(SECTIONS)}", file=sys.stderr)
        sys.exit(2)  # a usage error, as in the pipeline scripts
    if not MINI.is_dir():
        sys.exit("error: the benchmark reads ../shared/data (gtzan_mini, long_tracks), which is absent")
    results = {}
    for name in names:
        print(f"running {name} ...", file=sys.stderr)
        r = subprocess.run([sys.executable, __file__, "--child", name], capture_output=True, text=True, cwd=REPO)
        if r.returncode:
            sys.exit(f"error: section {name} failed:\n{r.stderr[-2000:]}")
        results[name] = json.loads(r.stdout.strip().splitlines()[-1])
    # bench.json keeps the keys of sections not run this time, so `--section X` updates only X's
    path = REPO / "bench.json"
    summary = json.loads(path.read_text()) if path.exists() else {}
    summary.setdefault("sections", {}).update(results)
    summary["machine"] = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    for name in names:
        if SECTIONS[name][2]:
            summary.update(SECTIONS[name][2](results))
    write_json(path, summary)
    print(f"Machine: {summary['machine']}\n")
    print("| measurement | time | notes | target | peak RSS |\n|---|---:|---|---|---:|")
    for name in names:
        for what, value, note, target in (SECTIONS[name][1](results) if SECTIONS[name][1] else []):
            print(f"| {what} | {value} | {note} | {target} | {results[name]['peak_rss_mb']:.0f} MB |")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        child(sys.argv[2])
    else:
        main()
