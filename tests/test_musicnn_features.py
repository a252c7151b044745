"""The musicnn featurizers: layers x statistics over patches, overlapping patches, today's key
kept for the default, and musicnn's own log-mel input for fine-tuning."""
import numpy as np
import pytest

from genreclf import musicnn
from genreclf.config import digest
from genreclf.errors import UserError
from genreclf.featurizers import FEATURIZERS, MusicnnFeatures, MusicnnMelFeatures, MusicnnMelSpec, MusicnnSpec
from genreclf.features import MelSpec, level, normalize_loudness


@pytest.fixture(scope="module")
def wave():
    """13 s of noise with a 330 Hz tone in its second half, at 16 kHz: 3 segments, 4 patches."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal(16000 * 13).astype(np.float32) * 0.05
    w[16000 * 6:] += 0.3 * np.sin(2 * np.pi * 330 * np.arange(16000 * 7) / 16000).astype(np.float32)
    return w


@pytest.fixture(scope="module")
def net():
    return musicnn.load("MSD_musicnn")


def test_default_spec_keeps_todays_cache_key_and_features(wave, net):
    feat = MusicnnFeatures(MusicnnSpec(), MelSpec(remove_dc=False))  # --no-remove-dc: the features of before
    key = feat.key()
    # the key of every musicnn cache and checkpoint made before layer lists: same dict, same folder name
    assert key == {"features": "musicnn", "musicnn_model": "MSD_musicnn", "layer": "max_pool",
                   "segment_grid": {"sr": 22050, "hop": 512, "segment": 4.0}, "loudness": -23.0}
    assert digest(key) == "a659256038"
    assert MusicnnFeatures.from_key(key).key() == key
    out = feat(wave)
    # today's computation: mean of the max_pool of the patches centred in each segment
    emb = musicnn.embed(net, normalize_loudness(wave, 16000, -23.0), "max_pool")        # (4, 753)
    owner = np.minimum(musicnn.patch_centers(len(emb)) // feat.segment_seconds, 2).astype(int)
    assert list(owner) == [0, 1, 1, 2]
    expected = np.stack([emb[owner == k].mean(0) for k in range(3)])
    assert out["segments"].shape == (3, 753) and np.array_equal(out["segments"], expected)
    assert np.array_equal(out["clip"], emb.mean(0))


def test_layers_and_statistics_concatenate_layer_by_layer(wave, net):
    spec = MusicnnSpec(layers=("taggram", "cnn3"), patch_stats=("mean", "std:cnn3", "max"), musicnn_overlap=2.0)
    assert spec.parts() == [("taggram", "mean"), ("taggram", "max"), ("cnn3", "mean"), ("cnn3", "std"), ("cnn3", "max")]
    assert spec.dim == 2 * 50 + 3 * 128
    feat = MusicnnFeatures(spec, MelSpec())
    out = feat(wave)
    patches = musicnn.preprocess(level(wave, 16000, MelSpec()), overlap=2.0)
    ref = musicnn.run(net, patches)
    tags = ref["taggram"]
    cnn3 = np.concatenate([ref["max_pool"][:, 689:], ref["mean_pool"][:, 689:]], axis=1)  # max then mean over time
    assert np.array_equal(musicnn.layer(ref, "cnn3"), cnn3)
    centers = musicnn.patch_centers(len(patches), musicnn.patch_step(2.0))
    owner = np.minimum(centers // feat.segment_seconds, 2).astype(int)
    assert np.bincount(owner).min() >= 3  # overlapping patches: several per segment, so std is not 0
    for k in range(3):
        t, c = tags[owner == k], cnn3[owner == k]
        expected = np.concatenate([t.mean(0), t.max(0), c.mean(0), c.std(0), c.max(0)])
        np.testing.assert_allclose(out["segments"][k], expected, rtol=1e-6, atol=1e-6)
    assert (out["segments"][:, 2 * 50 + 128:2 * 50 + 256] > 0).any()
    np.testing.assert_allclose(out["clip"], np.concatenate([tags.mean(0), tags.max(0), cnn3.mean(0), cnn3.std(0), cnn3.max(0)]),
                               rtol=1e-6, atol=1e-6)
    key = feat.key()
    assert key["layers"] == ["taggram", "cnn3"] and key["patch_stats"] == ["mean", "std:cnn3", "max"]
    assert key["musicnn_overlap"] == 2.0 and "layer" not in key
    assert MusicnnFeatures.from_key(key).key() == key and digest(key) != digest(MusicnnFeatures(MusicnnSpec(), MelSpec()).key())


def test_overlapping_patches_share_frames():
    wave = np.random.default_rng(1).standard_normal(16000 * 10).astype(np.float32) * 0.1
    flat = musicnn.preprocess(wave)
    step = musicnn.patch_step(2.0)
    over = musicnn.preprocess(wave, overlap=2.0)
    assert step == 187 - 125 and len(flat) == 3 and len(over) == 1 + (1 + len(wave) // 256 - 187) // step
    assert np.array_equal(over[0], flat[0]) and np.array_equal(over[1][:187 - step], over[0][step:])
    assert musicnn.patch_centers(2, step)[1] - musicnn.patch_centers(2, step)[0] == pytest.approx(step * 256 / 16000)


@pytest.mark.parametrize("bad, match", [
    (dict(layers=("max_pool", "pool5")), "unknown musicnn layer 'pool5'"),
    (dict(patch_stats=("median",)), "unknown statistic 'median'"),
    (dict(patch_stats=("mean", "std:taggram")), "'taggram' is not one of --layers"),
    (dict(layers=("taggram", "taggram")), "repeated"),
    (dict(layers=()), "no features"),
    (dict(musicnn_overlap=3.0), "shorter than musicnn's 2.99 s patch"),
    (dict(musicnn_overlap=2.99), "shorter than musicnn's 2.99 s patch"),
    (dict(musicnn_overlap=-1.0), "at least 0"),
])
def test_bad_specs_are_one_line_errors(bad, match):
    with pytest.raises(UserError, match=match):
        MusicnnSpec(**bad)


def test_musicnn_mel_segments_are_musicnn_log_mel_on_the_mel_grid(wave):
    feat = MusicnnMelFeatures(MusicnnMelSpec(), MelSpec())
    out = feat(wave)["segments"]
    rep = musicnn.log_mel(level(wave, 16000, MelSpec()))
    seg = feat.segment_seconds * 16000 / 256  # 249.6 frames
    assert out.shape == (3, 249, 96) and feat.frames == 249
    for k in range(3):
        assert np.array_equal(out[k], rep[round(k * seg):round(k * seg) + 249])
    key = feat.key()
    assert key["features"] == "musicnn_mel" and FEATURIZERS["musicnn_mel"].from_key(key).key() == key
    with pytest.raises(ValueError, match="shorter than one"):
        feat(wave[:16000 * 3])


def test_bad_musicnn_flags_and_checkpoint_specs_are_one_line_in_every_script(tmp_path):
    import torch

    from conftest import run_script
    from genreclf import checkpoint
    from model import build

    for script, *flags, what in (("dataset.py", "--features", "musicnn", "--musicnn-overlap", "3", "2.99 s patch"),
                                 ("main.py", "--model", "q2", "--patch-stats", "mean,median", "unknown statistic 'median'")):
        r = run_script(script, "--data-dir", tmp_path, *flags)
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and what in r.stderr, (script, r.stderr)
    # a checkpoint whose spec names a layer this version does not know (a newer one's, or a damaged file)
    key = {**MusicnnFeatures(MusicnnSpec(layers=("taggram", "penultimate")), MelSpec()).key(), "layers": ["taggram", "pool9"]}
    kwargs = {"n_classes": 2, "input_shape": {"musicnn": (250,)}}
    checkpoint.save(tmp_path / "new.pt", model="q2", kwargs=kwargs, features={"musicnn": key}, genres=["a", "b"],
                    state=build("q2", **kwargs).state_dict())
    (tmp_path / "x.wav").write_bytes(b"")
    r = run_script("predict.py", tmp_path / "x.wav", "--checkpoint", tmp_path / "new.pt")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "unknown musicnn layer 'pool9'" in r.stderr
    assert torch.load(tmp_path / "new.pt", weights_only=True)["features"]["musicnn"]["layers"] == ["taggram", "pool9"]


def test_every_model_with_a_musicnn_input_takes_the_richer_spec_and_predict_rebuilds_it(tmp_path):
    """q2, the scikit-learn heads and resnet34_musicnn at the width of a five-part spec, and
    predict's Classifier, which featurizes new audio with the spec the checkpoint records."""
    import soundfile as sf
    import torch

    from genreclf import checkpoint, predict
    from model import MODELS, build, inputs_of

    spec = MusicnnSpec(layers=("max_pool", "mean_pool", "penultimate", "taggram"), patch_stats=("mean", "std:max_pool"))
    feat = MusicnnFeatures(spec, MelSpec())
    shapes = {"mel": (128, 172), "musicnn": (spec.dim,)}
    rng = np.random.default_rng(0)
    for name in (n for n in sorted(MODELS) if "musicnn" in inputs_of(n)):
        model = build(name, n_classes=3, input_shape={k: shapes[k] for k in inputs_of(name)})
        if hasattr(model, "fit_sklearn"):
            model.fit_sklearn(rng.normal(size=(30, spec.dim)), np.arange(30) % 3)
        xs = [torch.randn(2, *shapes[k]) for k in model.inputs]
        assert model.eval()(*xs).shape == (2, 3), name
    model = build("q2", n_classes=3, input_shape={"musicnn": (spec.dim,)})
    checkpoint.save(tmp_path / "q2.pt", model="q2", kwargs={"n_classes": 3, "input_shape": {"musicnn": (spec.dim,)}},
                    features={"musicnn": feat.key()}, genres=["a", "b", "c"], state=model.state_dict())
    wave = np.random.default_rng(1).standard_normal(22050 * 9).astype(np.float32) * 0.1
    sf.write(tmp_path / "song.wav", wave, 22050)
    clf = predict.Classifier(*checkpoint.load_model(tmp_path / "q2.pt"))
    assert clf.featurizers["musicnn"].spec == spec
    out = clf(tmp_path / "song.wav")
    assert out["probs"].shape == (2, 3) and np.allclose(out["probs"].sum(1), 1)
