"""One-command check of every CUDA path (`make gpu-check`, under 5 minutes on one GPU).

    python gpu_check.py            # or: make gpu-check
    python gpu_check.py --keep W   # keep the work dir W (splits, caches, runs) for a look afterwards

On a GPU machine it:
  1. splits ../shared/data/gtzan_mini (8 genres, 4/1/2 clips each) and extracts log-mels (CPU);
  2. trains base2dcnn and resnet18 for 2 epochs on CUDA, without and with --amp, then tests each;
  3. predicts a 3-minute song (long_tracks/chaos_god.ogg) on CUDA;
  4. runs musicnn on CUDA and on CPU: taggrams must agree within 1e-3;
  5. runs torchrun with NCCL on the visible GPUs (an all_reduce, then main.py under DDP);
  6. prints training throughput (segments/s, batch 32) with and without AMP.
Each check prints PASS or FAIL with its numbers; the exit code is the number of failures.
Without CUDA it prints one line and exits 0, so that CI machines without a GPU can run it.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent
SHARED = REPO.parent / "shared" / "data"
MINI = SHARED / "gtzan_mini"
SONG = SHARED / "long_tracks" / "chaos_god.ogg"
GENRES = "classical,country,disco,hiphop,jazz,metal,pop,reggae"
NCCL_SMOKE = """import os, torch, torch.distributed as dist
rank = int(os.environ["RANK"]); torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
dist.init_process_group("nccl")
t = torch.ones(1, device="cuda") * (rank + 1)
dist.all_reduce(t)
w = dist.get_world_size()
assert t.item() == w * (w + 1) / 2, t.item()
dist.destroy_process_group()
print(f"rank {rank}: nccl all_reduce ok over {w} ranks")
"""


def script(*args, env=None, timeout=300):
    """Run a command in the repo; (ok, seconds, output tail)."""
    t = time.perf_counter()
    r = subprocess.run([str(a) for a in args], cwd=REPO, capture_output=True, text=True, timeout=timeout,
                       env={**os.environ, **(env or {})})
    return r.returncode == 0, time.perf_counter() - t, (r.stdout + r.stderr)[-1500:]


def report(results, name, ok, detail):
    results.append(ok)
    print(f"{'PASS' if ok else 'FAIL'}  {name}: {detail}", flush=True)


def throughput(model_name, amp, steps=30, batch=32):
    """Training segments/s of one model on random (batch, 128, 172) log-mels on cuda:0."""
    import torch

    from genreclf.device import amp_setup
    from model import build

    dev = torch.device("cuda:0")
    model = build(model_name, n_classes=8, input_shape={"mel": (128, 172)}).to(dev).to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters())
    dtype, scaler = amp_setup(amp, dev)
    x, y = torch.randn(batch, 128, 172, device=dev), torch.randint(0, 8, (batch,), device=dev)

    def step():
        with torch.autocast("cuda", dtype=dtype, enabled=amp):
            loss = torch.nn.functional.cross_entropy(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
    for _ in range(5):
        step()
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    return steps * batch / (time.perf_counter() - t), dtype


def musicnn_cuda_vs_cpu():
    import numpy as np

    from genreclf import audio, musicnn
    model = musicnn.load("MSD_musicnn")
    patches = musicnn.preprocess(audio.load(SONG, musicnn.SR, duration=60.0))
    cpu = musicnn.run(model.to("cpu"), patches, "cpu")["taggram"]
    gpu = musicnn.run(model.to("cuda"), patches, "cuda")["taggram"]
    return float(np.abs(cpu - gpu).max()), len(patches)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--keep", default=None, metavar="DIR", help="work dir to keep (default: a temporary one)")
    args = p.parse_args()
    import torch

    if not torch.cuda.is_available():
        print("gpu-check: no CUDA GPU visible to PyTorch (torch.cuda.is_available() is False); nothing to check")
        return 0
    if not MINI.is_dir():
        print(f"gpu-check: needs {MINI} (../shared/data), which is absent")
        return 1
    n_gpus = torch.cuda.device_count()
    print(f"gpu-check on {n_gpus} x {torch.cuda.get_device_name(0)}, torch {torch.__version__}, CUDA {torch.version.cuda}", flush=True)
    work = Path(args.keep or tempfile.mkdtemp(prefix="gpu-check-"))
    common = ["--data-dir", MINI, "--work-dir", work]
    results = []
    ok, s, out = script(sys.executable, "split_data.py", *common, "--split", "random", "--genres", GENRES,
                        "--val-per-class", 1, "--test-per-class", 2)
    report(results, "split gtzan_mini", ok, f"{s:.0f} s" if ok else out)
    ok, s, out = script(sys.executable, "dataset.py", *common, "--workers", min(8, os.cpu_count() or 1))
    report(results, "extract log-mels (CPU)", ok, f"{s:.0f} s" if ok else out)
    table = []
    for model in ("base2dcnn", "resnet18"):
        for amp in (False, True):
            run = work / "runs" / f"{model}{'-amp' if amp else ''}"
            ok, s, out = script(sys.executable, "main.py", *common, "--model", model, "--epochs", 2, "--device", "cuda",
                                *(["--amp"] if amp else []), "--do_train", "--do_test", "--out", run)
            detail = out
            if ok:
                m = json.loads((run / "metrics.json").read_text())
                ok = len(m["history"]) == 2 and m["test_clips"] == 16
                detail = f"2 epochs + test in {s:.0f} s, test clip accuracy {m['test_clip_accuracy']:.3f}"
            report(results, f"train+test {model} on CUDA{' --amp' if amp else ''}", ok, detail)
            sps, dtype = throughput(model, amp)
            table.append((model, f"{dtype}".replace("torch.", "") if amp else "float32", sps))
    ok, s, out = script(sys.executable, "predict.py", SONG, "--checkpoint", work / "runs" / "base2dcnn" / "best.pt",
                        "--device", "cuda", "--format", "json")
    report(results, "predict a 3-minute song on CUDA", ok, f"{s:.1f} s including start-up" if ok else out)
    diff, n = musicnn_cuda_vs_cpu()
    report(results, "musicnn CUDA vs CPU", diff <= 1e-3, f"max |taggram difference| {diff:.2e} over {n} patches (limit 1e-3)")
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(NCCL_SMOKE)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", n_gpus]
    ok, s, out = script(*torchrun, f.name)
    report(results, f"torchrun NCCL all_reduce on {n_gpus} GPU(s)", ok, f"{s:.0f} s" if ok else out)
    run = work / "runs" / "ddp"
    ok, s, out = script(*torchrun, "main.py", *common, "--model", "base2dcnn", "--epochs", 1, "--device", "cuda",
                        "--do_train", "--out", run)
    report(results, f"main.py under torchrun, {n_gpus} rank(s), NCCL" + (" (1 rank: DDP not exercised)" if n_gpus == 1 else ""),
           ok, f"{s:.0f} s" if ok else out)
    print(f"\ntraining throughput on {torch.cuda.get_device_name(0)}, batch 32 of (128, 172) log-mels, after 5 warm-up steps:\n")
    print("| model | precision | segments/s | vs float32 |\n|---|---|---:|---:|")
    for model, precision, sps in table:
        ref = next(x for m, p_, x in table if m == model and p_ == "float32")
        print(f"| {model} | {precision} | {sps:.0f} | {sps / ref:.2f}x |")
    print(f"\n{sum(results)} of {len(results)} checks passed; work dir {work}")
    return len(results) - sum(results)


if __name__ == "__main__":
    sys.exit(main())
