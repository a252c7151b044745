"""Real-world inputs: any recording level, unsafe or damaged weight files, shared storage."""
import os
import stat
import urllib.error

import numpy as np
import pytest
import torch
import torchvision

from genreclf import checkpoint
from genreclf.errors import UserError
from genreclf.features import MelSpec, loudness_lufs, normalize_loudness
from genreclf.featurizers import MelFeatures, MusicnnFeatures
from genreclf.io import atomic_path, write_text
from model.vision import VisionNet, imagenet_state_dict


def _music(seconds=6.0, sr=22050):
    """A chord with a decaying envelope and a little noise: enough structure for log-mel."""
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * sr)) / sr
    wave = sum(np.sin(2 * np.pi * f * t) for f in (220, 277, 330, 880)) * np.exp(-(t % 0.5) * 4)
    return (0.1 * wave + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


@pytest.mark.parametrize("gain", [10 ** (-30 / 20), 3.0, 8.0])
def test_mel_features_do_not_depend_on_level(gain):
    feat = MelFeatures(MelSpec(segment=2.0))
    wave = _music()
    ours, louder = feat(wave)["segments"], feat(wave * gain)["segments"]
    assert np.abs(ours - louder).max() < 0.01  # dB
    assert abs(loudness_lufs(normalize_loudness(wave * gain, 22050), 22050) - (-23.0)) < 0.01


def test_normalization_edge_cases():
    short = _music(0.2)  # shorter than BS.1770's 400 ms block: measured as one block
    assert abs(loudness_lufs(normalize_loudness(short, 22050), 22050) + 23) < 0.1
    tiny = _music() * 1e-6  # every block gated out: the gain is capped, nothing explodes
    assert np.abs(normalize_loudness(tiny, 22050)).max() <= np.abs(tiny).max() * 10 ** (50 / 20) * 1.001
    loud = normalize_loudness(_music() * 100, 22050, target=-5.0)  # peaks above 1 stay: features are float
    assert np.isfinite(loud).all() and np.abs(loud).max() > 1.0


def test_loudness_is_in_the_keys_and_old_keys_are_refused():
    mel, mus = MelFeatures(MelSpec()), MusicnnFeatures(MusicnnFeatures.Spec(), MelSpec())
    assert mel.key()["loudness"] == -23.0 and mus.key()["loudness"] == -23.0
    assert MelFeatures(MelSpec(loudness=-14.0)).key() != mel.key()  # another cache folder
    assert MusicnnFeatures.from_key(mus.key()).mel.loudness == -23.0
    old = {k: v for k, v in mel.key().items() if k != "loudness"}
    with pytest.raises(UserError, match="made before loudness normalization"):
        MelFeatures.from_key(old)


def _ckpt(**over):
    fields = {"model": "baseline", "kwargs": {"n_classes": 2, "input_shape": {"mel": (128, 172)}},
              "features": {"mel": MelFeatures(MelSpec()).key()}, "genres": ["a", "b"], "state": {"w": torch.ones(2)},
              "val": {"clip_accuracy": np.float64(0.5)}, "rng": {"torch": torch.get_rng_state(), "cuda": None},
              "train_state": {"history": [{"lr": 1e-3}], "best": 0.5}}
    return {**fields, **over}


def test_checkpoints_load_safely_and_old_ones_are_refused(tmp_path):
    checkpoint.save(tmp_path / "ok.pt", **_ckpt())  # numpy values become plain numbers on save
    ckpt = checkpoint.read(tmp_path / "ok.pt")
    assert ckpt["val"]["clip_accuracy"] == 0.5 and torch.equal(ckpt["rng"]["torch"], torch.get_rng_state())
    old = _ckpt(features={"mel": {k: v for k, v in MelFeatures(MelSpec()).key().items() if k != "loudness"}})
    torch.save(old, tmp_path / "old.pt")
    with pytest.raises(UserError, match=r"old\.pt: trained on mel features made before loudness normalization"):
        checkpoint.read(tmp_path / "old.pt")


class _Payload:
    """Unpickling this runs code: it would create a file."""
    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return (open, (self.target, "w"))


def test_a_crafted_checkpoint_runs_no_code(tmp_path):
    evil, marker = tmp_path / "evil.pt", tmp_path / "pwned"
    torch.save(_ckpt(model=_Payload(marker)), evil)
    with pytest.raises(UserError) as e:
        checkpoint.read(evil)
    assert not marker.exists()
    assert "\n" not in str(e.value) and str(evil) in str(e.value) and "refused" in str(e.value)


def test_atomic_files_get_the_umask_mode_and_land(tmp_path):
    old = os.umask(0o027)
    try:
        write_text(tmp_path / "a.txt", "hi")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o640  # 0666 & ~027; mkstemp gave 0600
    synced = []
    real = os.fsync
    try:
        os.fsync = lambda fd: synced.append(stat.S_ISDIR(os.fstat(fd).st_mode)) or real(fd)
        with atomic_path(tmp_path / "b.txt") as tmp:
            open(tmp, "w").write("x")
    finally:
        os.fsync = real
    assert synced == [False, True]  # the file, then its folder after the rename
    assert (tmp_path / "b.txt").read_text() == "x" and [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


# --weights and the ImageNet cache, with resnet18 (45 MB of random weights, written in a blink)


@pytest.fixture(scope="module")
def resnet18_state():
    torch.manual_seed(0)
    return torchvision.models.resnet18().state_dict()


def test_weights_file_problems_are_one_line(tmp_path, resnet18_state):
    good = tmp_path / "r18.pth"
    torch.save(resnet18_state, good)
    truncated = tmp_path / "cut.pth"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(UserError, match=r"cut\.pth: not a readable state dict, truncated or corrupt") as e:
        imagenet_state_dict("resnet18", truncated)
    assert "\n" not in str(e.value)
    with pytest.raises(UserError, match=r"r18\.pth: not resnet34 ImageNet weights: keys \d+ missing \(e\.g\. layer1\.2") as e:
        imagenet_state_dict("resnet34", good)
    assert "\n" not in str(e.value)
    ddp = tmp_path / "ddp.pth"
    torch.save({f"module.{k}": v for k, v in resnet18_state.items()}, ddp)
    state = imagenet_state_dict("resnet18", ddp)
    assert set(state) == set(resnet18_state)
    VisionNet("resnet18", 8, {"mel": (128, 172)}).load_imagenet(state)


def test_a_corrupt_cached_download_is_fetched_again(tmp_path, monkeypatch, resnet18_state, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    url = torchvision.models.ResNet18_Weights.DEFAULT.url
    cached = tmp_path / "hub" / "checkpoints" / os.path.basename(url)
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"PK\x03\x04 half a download")
    fetched = []
    monkeypatch.setattr(torch.hub, "download_url_to_file",
                        lambda u, dst, *a, **k: fetched.append(u) or torch.save(resnet18_state, dst))
    state = imagenet_state_dict("resnet18")
    assert fetched == [url] and set(state) == set(resnet18_state)
    assert "cached ImageNet weights are corrupt; deleting them and downloading again" in capsys.readouterr().err

    cached.write_bytes(b"garbage")  # again, now offline
    def offline(*a, **k):
        raise urllib.error.URLError("no network")
    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(UserError) as e:
        imagenet_state_dict("resnet18")
    message = str(e.value)
    assert "\n" not in message and "was corrupt" in message and f"put it at {cached}" in message
    assert not cached.exists()


def test_damaged_or_foreign_checkpoint_is_one_plain_line(tmp_path):
    path = tmp_path / "best.pt"
    checkpoint.save(path, model="q2", kwargs={}, features={}, genres=["a"], state={"w": torch.zeros(3)})
    cut, text = tmp_path / "cut.pt", tmp_path / "notes.pt"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    text.write_text("hello, not a checkpoint\n")
    for bad in (cut, text):
        with pytest.raises(UserError) as e:
            checkpoint.read(bad)
        message = str(e.value)
        assert "\n" not in message and message.startswith(f"{bad}: not a readable checkpoint: truncated, corrupt")
