"""The PyTorch musicnn against outputs of the original (TensorFlow) musicnn 0.1.0."""
import numpy as np
import pytest

from conftest import MINI, SHARED, needs_shared, sine
from genreclf import audio, musicnn
from genreclf.tfbundle import read_bundle

REF = SHARED / "musicnn_reference"
SOURCES = {"synthetic_10s_16k": SHARED / "synthetic_10s_16k.wav",
           "classical.00000": MINI / "wav" / "classical" / "classical.00000.wav",
           "metal.00000": MINI / "wav" / "metal" / "metal.00000.wav",
           "chaos_god": SHARED / "long_tracks" / "chaos_god.ogg"}
TOLERANCE = {"taggram": 1e-4, "penultimate": 1e-3, "mean_pool": 1e-3, "max_pool": 1e-2}


@pytest.fixture(scope="module", params=musicnn.MODELS)
def net(request):
    return musicnn.load(request.param)


def test_checkpoint_reads_without_tensorflow():
    tensors = read_bundle(str(musicnn.weights_dir("MSD_musicnn")) + "/")
    model = {k: v for k, v in tensors.items() if "Adam" not in k and "power" not in k}
    assert len(tensors) == 150 and len(model) == 64
    assert sum(v.size for v in model.values()) == 792079


@needs_shared
@pytest.mark.parametrize("stem", sorted(SOURCES))
def test_outputs_match_reference(net, stem):
    ref = np.load(REF / f"{stem}.npz")
    out = musicnn.run(net, ref[f"{net.name}/input"])
    for layer, tol in TOLERANCE.items():
        assert np.abs(out[layer] - ref[f"{net.name}/{layer}"]).max() <= tol, layer


@needs_shared
@pytest.mark.parametrize("stem", sorted(SOURCES))
def test_preprocessing_matches_reference_input(stem):
    ref = np.load(REF / f"{stem}.npz")["MSD_musicnn/input"]
    ours = musicnn.preprocess(audio.load(SOURCES[stem], musicnn.SR))
    assert ours.shape == ref.shape
    assert np.abs(ours - ref).max() <= 1e-3


def test_tags_and_shapes(net):
    assert len(net.tags) == 50 and ("rock" in net.tags or "guitar" in net.tags)
    out = musicnn.run(net, musicnn.preprocess(sine(440, 7, musicnn.SR)))
    assert out["taggram"].shape == (2, 50) and out["max_pool"].shape == (2, 753) and out["penultimate"].shape == (2, 200)
    assert ((out["taggram"] > 0) & (out["taggram"] < 1)).all()


def test_no_nan_on_loud_audio(net):
    square = np.sign(sine(100, 4, musicnn.SR)) * 50  # far beyond full scale: float16 would overflow
    out = musicnn.run(net, musicnn.preprocess(square))
    assert all(np.isfinite(v).all() for v in out.values())


def test_short_clip_is_repeat_padded_to_one_patch():
    wave = sine(440, 1.0, musicnn.SR)
    patches = musicnn.preprocess(wave)
    assert patches.shape == (1, musicnn.PATCH, musicnn.N_MELS)
    frames = 1 + len(wave) // musicnn.HOP
    assert np.array_equal(patches[0, frames:2 * frames], patches[0, :frames])


def test_eval_shortcut_equals_plain_forward(net):
    """pooled() takes the max over frequency before ReLU/BN; it must equal the plain order."""
    import torch
    x = torch.randn(2, 1, 140, 96)
    for block in list(net.timbral) + list(net.temporal):
        with torch.no_grad():
            assert torch.allclose(block.pooled(x), block(x).amax(dim=3), atol=1e-5)


def test_fast_path_equals_reference_path(net):
    """The CPU fast path (sign-folded channels_last front end, in groups of patches) computes what
    the path from before the speed work computed, for a batch that is not a multiple of the group."""
    import torch
    x = torch.as_tensor(musicnn.preprocess(np.random.default_rng(0).standard_normal(16000 * 10).astype(np.float32) * 0.1))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)  # the groups of patches run on a pool of Python threads (make test sets one torch thread)
        with torch.no_grad():
            fast, ref = net(x), net(x, reference=True)
    finally:
        torch.set_num_threads(threads)
    with torch.no_grad():
        for block in list(net.timbral) + list(net.temporal):
            z = torch.randn(3, 1, 140, 96)
            assert torch.allclose(block.pooled_fast(z), block.pooled(z), atol=1e-5)
    assert len(x) % musicnn.FRONT_PATCHES == 1
    for k in ref:
        assert torch.allclose(fast[k], ref[k], atol=1e-4), k
