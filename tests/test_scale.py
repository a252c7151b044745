"""Memory-mapped training data, sharded extraction, and the GPU options' CPU side."""
import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, run_script, sine
from genreclf import data as D
from genreclf import pack, rundata, splits
from genreclf.augment import AugmentSpec
from genreclf.errors import UserError
from genreclf.extract import clip_file, extract, merge, parse_shard
from genreclf.featurizers import MelFeatures
from genreclf.features import MelSpec

SR = 22050
MEL = ["--segment", 1, "--n-mels", 16]
FEAT = MelFeatures(MelSpec(segment=1.0, n_mels=16))
AUG = AugmentSpec(augment=("noise",))


@pytest.fixture
def collection(tmp_path, wav_factory):
    """3 genres x 4 clips of 2.2 s (2 one-second segments each), one of them in a sub-folder, and
    one unreadable file; split 2/1/1 per genre. Returns (data dir, work dir)."""
    for g, f0 in (("a", 220.0), ("b", 440.0), ("c", 880.0)):
        for k in range(4):
            wav_factory(f"data/wav/{g}/{'sub/' if k == 3 else ''}clip {k}.wav", sine(f0 * (1 + 0.02 * k), 2.2, SR))
    (tmp_path / "data" / "wav" / "a" / "broken.wav").write_bytes(b"RIFF" + bytes(40))
    parts, _ = splits.make_split(tmp_path / "data", "random", val_per_class=1, test_per_class=1)
    parts["train"].append("a/broken.wav")  # split time leaves it out; lists from elsewhere may still name it
    splits.write_split(parts, tmp_path / "work" / "split", {})
    return tmp_path / "data", tmp_path / "work"


def run_extract(data, work, **kw):
    return extract(data, work / "split", work / "cache", FEAT, AUG, **kw)


def test_training_reads_the_memory_mapped_pack(collection):
    data, work = collection
    cache = run_extract(data, work)
    index = D.read_index(cache)
    ids = [c["id"] for part in ("test", "train", "val") for c in index["splits"][part]]  # any mix of parts
    fs = rundata.load_clips({"mel": cache}, ids, rundata.read_index(cache).genres, augmented=True)
    x = fs.x["mel"]
    assert isinstance(x, pack.Rows) and isinstance(x.pack, np.memmap) and x.shape == (len(fs), 16, 43)
    expected = np.concatenate([np.load(clip_file(cache, c["id"], v)) for cid in ids
                               for c in [next(e for p in index["splits"].values() for e in p if e["id"] == cid)]
                               for v in c["versions"]])
    assert np.array_equal(np.asarray(x), expected)  # same segments, same order as the per-clip files
    assert len(fs) == 2 * (12 + 6)  # 12 readable clips + 6 noise copies of train, 2 segments each
    assert len(pickle.dumps(x)) < 10_000  # DataLoader workers reopen the map, they get no copy
    got = [(b["mel"].numpy(), y.numpy()) for b, y in D.batches(fs, 5, shuffle=True, seed=7)]
    order = np.random.default_rng(7).permutation(len(fs))
    assert np.array_equal(np.concatenate([g[0] for g in got]), expected[order])
    assert np.array_equal(np.concatenate([g[1] for g in got]), fs.y[order])
    via_loader = [(b["mel"].numpy(), y.numpy()) for b, y in D.loader(fs, 5, shuffle=True, seed=7, workers=1)]
    assert all(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) for a, b in zip(got, via_loader))


def test_old_cache_gets_one_line_and_a_cheap_rerun(collection):
    data, work = collection
    cache = run_extract(data, work)
    index = D.read_index(cache)
    old = {k: v for k, v in index.items() if k != "pack"}
    (cache / "index.json").write_text(json.dumps(old))
    for f in cache.glob(pack.PATTERN):
        f.unlink()
    with pytest.raises(UserError, match="rerun dataset.py"):
        rundata.load_clips({"mel": cache}, [c["id"] for c in old["splits"]["test"]], ["a", "b", "c"])
    r = run_script("dataset.py", "--data-dir", data, "--work-dir", work, *MEL, "--augment", "noise")
    assert r.returncode == 0, r.stderr
    assert "12 of 13 clips already cached, 1 to do" in r.stdout  # only the unreadable file is tried again
    assert D.read_index(cache)["pack"] == index["pack"]


def cache_files(cache):
    return {p.relative_to(cache): p.read_bytes() for p in cache.rglob("*.npy")}


def test_two_shards_and_merge_equal_a_single_run_byte_for_byte(collection, tmp_path):
    data, work = collection
    single = run_extract(data, work)
    sharded = tmp_path / "sharded"
    sharded.mkdir()
    (sharded / "split").symlink_to(work / "split")
    with pytest.raises(UserError, match="run dataset.py --shard"):
        merge(data, sharded / "split", sharded / "cache", FEAT, AUG)
    cache = run_extract(data, sharded, shard=(1, 2))
    assert not (cache / "index.json").exists()
    with pytest.raises(UserError, match="not computed yet"):
        merge(data, sharded / "split", sharded / "cache", FEAT, AUG)
    env = {**os.environ, "RANK": "0", "WORLD_SIZE": "2"}  # as torchrun sets them: rank 0 takes shard 0/2
    r = subprocess.run([sys.executable, str(REPO / "dataset.py"), "--data-dir", str(data), "--work-dir", str(sharded),
                        *map(str, MEL), "--augment", "noise"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "shard 0/2" in r.stdout and "cached clips" in r.stdout, r.stderr  # the last one merged
    want, got = cache_files(single), cache_files(cache)
    assert len(want) == 2 * (12 + 6) + 1 and sorted(want) == sorted(got)  # clips, noise copies (each with its .silent.npy), the pack
    assert all(want[k] == got[k] for k in want)
    assert D.read_index(cache) == D.read_index(single)  # the skipped file included
    merge(data, sharded / "split", sharded / "cache", FEAT, AUG)  # merging again changes nothing
    assert cache_files(cache) == want


def test_shard_flag_is_checked():
    assert parse_shard("3/4") == (3, 4)
    for bad in ("4/4", "-1/2", "1", "a/b"):
        with pytest.raises(UserError, match="--shard"):
            parse_shard(bad)


def test_amp_on_cpu_steps_in_bf16():
    import torch

    from genreclf.device import amp_setup
    from model import build

    dtype, scaler = amp_setup(True, torch.device("cpu"))
    assert dtype == torch.bfloat16 and not scaler.is_enabled()  # bf16 needs no loss scaling
    model = build("base2dcnn", n_classes=3, input_shape={"mel": (16, 43)})
    with torch.autocast("cpu", dtype=dtype):
        logits = model(torch.randn(4, 16, 43))
    assert logits.dtype == torch.bfloat16
    loss = torch.nn.functional.cross_entropy(logits.float(), torch.tensor([0, 1, 2, 0]))
    scaler.scale(loss).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_gpu_check_without_cuda_is_one_line_and_success():
    r = subprocess.run([sys.executable, str(REPO / "gpu_check.py")], cwd=REPO, capture_output=True, text=True,
                       env={**os.environ, "CUDA_VISIBLE_DEVICES": ""}, timeout=120)
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.strip().splitlines()) == 1 and "no CUDA GPU" in r.stdout


def test_a_run_reads_each_index_once_and_counts_the_clips_it_leaves_out(collection, monkeypatch, caplog, tmp_path):
    """rundata.py is the one rule for which clips and copies a run loads: one read of each cache's
    index.json per load_data (it was 10), and a clip one cache lacks is left out in one line."""
    import shutil

    from genreclf.experiment import load_data

    data, work = collection
    cache = run_extract(data, work)
    other = tmp_path / "other-cache"  # a second input's cache, lacking one training clip
    shutil.copytree(cache, other)
    index = D.read_index(other)
    gone = index["splits"]["train"][0]["id"]
    index["splits"]["train"] = index["splits"]["train"][1:]
    (other / "index.json").write_text(json.dumps(index))
    reads = []
    real = rundata.read_index
    monkeypatch.setattr(rundata, "read_index", lambda c: reads.append(c) or real(c))
    with caplog.at_level("INFO", logger="genreclf"):
        d, pinned = load_data({"mel": cache, "musicnn": other}, run_dir=tmp_path)
    assert sorted(map(str, reads)) == sorted([str(cache), str(other)])
    said = [m for m in caplog.messages if "left out" in m]
    assert said[-1] == f"train: 1 of 6 clips left out: not in the musicnn cache (1), e.g. {gone}"
    assert len(said) == 2 and "could not use their files" in said[0]  # tinycache's broken file, said once
    assert gone not in pinned["parts"]["train"] and gone not in d.train.clip_ids and len(d.train.clip_ids) == 5
    assert all(vs == ["orig", "noise-snr20-s0"] for vs in pinned["versions"]["train"].values())  # train's copies
    assert all(vs == ["orig"] for vs in pinned["versions"]["test"].values())
