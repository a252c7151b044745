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


def musicnn_clip():
    from genreclf import audio, musicnn
    model = musicnn.load("MSD_musicnn")
    wave = audio.load(MINI / "wav" / "metal" / "metal.00001.wav", musicnn.SR)
    return {"musicnn_s_per_clip": best_of(lambda: musicnn.embed(model, wave, "max_pool"), 3)}


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
    for name in sorted(MODELS):
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


def predict_song():
    import torch
    from genreclf import audio, checkpoint, predict
    from genreclf.featurizers import MelFeatures
    from genreclf.features import MelSpec
    from model import build

    kwargs = {"n_classes": 8, "input_shape": {"mel": (128, 172)}}
    model = build("base2dcnn", **kwargs)
    with tempfile.TemporaryDirectory() as d:
        checkpoint.save(Path(d) / "best.pt", model="base2dcnn", kwargs=kwargs, genres=list("abcdefgh"),
                        features={"mel": MelFeatures(MelSpec()).key()}, state=model.state_dict())
        clf = predict.Classifier(*checkpoint.load_model(Path(d) / "best.pt"))
    clf(MINI / "wav" / "jazz" / "jazz.00000.wav")  # start-up: lazy initialisation, first allocations
    sr, frames, channels = audio.info(SONG)
    return {"predict_3min_s": best_of(lambda: clf(SONG), 3), "predict_song_seconds": frames / sr,
            "predict_song_channels": channels, "predict_song_sr": sr, "torch_threads": torch.get_num_threads()}


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
SECTIONS = {
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
    "musicnn": (musicnn_clip, lambda r: [("musicnn embedding, one 30 s clip", f"{r['musicnn']['musicnn_s_per_clip']:.2f} s", "", "")],
                lambda r: {"musicnn_s_per_clip": r["musicnn"]["musicnn_s_per_clip"]}),
    **{f"musicnn_{m}min": (lambda m=m: musicnn_long(m),
                           lambda r, m=m: [(f"musicnn tags, {m} min stereo 44.1 kHz file", f"{r[f'musicnn_{m}min']['seconds']:.1f} s",
                                            f"{r[f'musicnn_{m}min']['patches']} patches, in chunks", "memory bounded")], None)
       for m in (1, 10)},
    "training": (training, lambda r: [(f"train {name} (batch 32)", f"{v:.0f} segments/s", "", "")
                                      for name, v in r["training"]["train_segments_per_s"].items()]
                 + [("Base2DCNN epoch, 580 x 7 segments", f"{r['training']['base2dcnn_epoch_projected_s']:.0f} s projected", "", "")],
                 lambda r: {"base2dcnn_epoch_projected_s": r["training"]["base2dcnn_epoch_projected_s"]}),
    "predict": (predict_song, lambda r: [(f"predict a {r['predict']['predict_song_seconds']:.0f} s stereo {r['predict']['predict_song_sr']} Hz song, Base2DCNN",
                                          f"{r['predict']['predict_3min_s']:.2f} s", "after start-up", "")],
                lambda r: {"predict_3min_s": r["predict"]["predict_3min_s"]}),
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
        sys.exit(f"error: unknown section {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
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
