"""The scikit-learn baselines: torch forward == scikit-learn, MFCC == librosa, plain checkpoints."""
import librosa
import numpy as np
import pytest
import torch

from genreclf import checkpoint
from model import build
from model.classic import dct_matrix


def blobs(n_classes, n=120, dim=12, seed=0):
    """Overlapping Gaussian blobs (same centres for every `seed`), so that votes tie and
    confidences matter."""
    y = np.arange(n) % n_classes
    centers = np.random.default_rng(0).normal(size=(n_classes, dim))
    return centers[y] + np.random.default_rng(seed + 1).normal(size=(n, dim)) * 4.0, y


@pytest.mark.parametrize("n_classes", [2, 3, 10])
def test_torch_forward_reproduces_sklearn_svc(n_classes):
    X, y = blobs(n_classes, n=40 * n_classes, dim=40)
    model = build("musicnn_svm", n_classes=n_classes, input_shape={"musicnn": (40,)})
    pipe = model.fit_sklearn(X, y)
    assert len(pipe.steps) == 3 and pipe.steps[1][1].n_components_ == 40  # PCA to min(128, N, D)
    Xt, yt = blobs(n_classes, n=200, dim=40, seed=1)
    Xt = Xt.astype(np.float32)  # the model's input dtype; scikit-learn sees the same numbers
    with torch.no_grad():
        logits = model(torch.from_numpy(Xt)).double().numpy()
    pred, dec = pipe.predict(Xt), pipe.decision_function(Xt)
    assert min(0.6, 2 / n_classes) < (pred == yt).mean() < 1  # learnt, and hard enough to mean something
    if n_classes > 2:  # scikit-learn's ovr decision_function: votes + confidences / (3 (|confidences| + 1))
        np.testing.assert_allclose(logits, dec, atol=1e-6)
        # SVC.predict is libsvm's vote, ties to the lower class; the ovr argmax breaks ties by confidence
        tie = np.sort(np.floor(dec + 0.5), axis=1)[:, -2] == np.floor(dec.max(1) + 0.5)
        assert (logits.argmax(1) == pred)[~tie].all() and (~tie).sum() > 150
    else:               # binary: one signed value, > 0 for class 1
        assert ((logits[:, 1] > logits[:, 0]) == (dec > 0)).all()
        assert (logits.argmax(1) == pred).all()


def test_mfcc_features_are_librosa_mfcc_mean_and_std():
    rng = np.random.default_rng(0)
    mel = rng.uniform(-80, 0, size=(3, 128, 50)).astype(np.float32)
    model = build("mfcc_svm", n_classes=4, input_shape={"mel": (128, 50)})
    feats = model.features(torch.from_numpy(mel)).numpy()
    ref = librosa.feature.mfcc(S=mel[1], n_mfcc=20)
    np.testing.assert_allclose(feats[1, :20], ref.mean(1), rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(feats[1, 20:], ref.std(1), rtol=1e-4, atol=1e-3)
    assert feats.shape == (3, 40)
    assert torch.allclose(dct_matrix(16, 16) @ dct_matrix(16, 16).T, torch.eye(16, dtype=torch.float64), atol=1e-12)


def test_fitted_model_is_a_plain_checkpoint_rebuilt_without_sklearn(tmp_path):
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 10)
    mel = rng.normal(size=(30, 32, 20)).astype(np.float32) * 5 + y[:, None, None] * 3  # louder per genre
    shape = {"mel": (32, 20)}
    model = build("mfcc_svm", n_classes=3, input_shape=shape)
    with pytest.raises(RuntimeError, match="not fitted"):
        model(torch.from_numpy(mel))
    model.fit_sklearn(model.features(torch.from_numpy(mel)).numpy(), y)
    checkpoint.save(tmp_path / "best.pt", model="mfcc_svm", kwargs={"n_classes": 3, "input_shape": shape},
                    features={}, genres=["a", "b", "c"], state=model.state_dict())
    state = torch.load(tmp_path / "best.pt", weights_only=True)["state"]  # tensors only, no pickled sklearn
    assert state["sv"].shape[1] == 40 and "dct" not in state
    rebuilt, _ = checkpoint.load_model(tmp_path / "best.pt")
    with torch.no_grad():
        out = rebuilt(torch.from_numpy(mel))
    assert torch.equal(out, model(torch.from_numpy(mel)))
    assert (out.argmax(1).numpy() == y).mean() > 0.9


def test_a_genre_without_training_segments_is_a_clear_error():
    from genreclf.errors import UserError

    model = build("musicnn_svm", n_classes=3, input_shape={"musicnn": (4,)})
    with pytest.raises(UserError, match=r"genre indices \[2\]"):
        model.fit_sklearn(np.random.default_rng(0).normal(size=(10, 4)), np.arange(10) % 2)


@pytest.mark.parametrize("n_classes", [2, 4])
def test_logistic_head_reproduces_sklearn_predict_proba(n_classes):
    X, y = blobs(n_classes, n=30 * n_classes, dim=20)
    model = build("musicnn_logreg", n_classes=n_classes, input_shape={"musicnn": (20,)})
    pipe = model.fit_sklearn(X, y)
    assert [type(s).__name__ for _, s in pipe.steps] == ["StandardScaler", "LogisticRegression"]
    Xt, yt = blobs(n_classes, n=100, dim=20, seed=1)
    Xt = Xt.astype(np.float32)
    with torch.no_grad():
        probs = torch.softmax(model(torch.from_numpy(Xt)).double(), dim=1).numpy()
    np.testing.assert_allclose(probs, pipe.predict_proba(Xt), atol=1e-6)
    assert (probs.argmax(1) == pipe.predict(Xt)).all()
    assert 1.2 / n_classes < (probs.argmax(1) == yt).mean() < 1  # above chance (1 / n_classes), and not trivially
    state = model.state_dict()
    assert set(state) == {"mean", "scale", "pca_mean", "pca", "coef", "intercept"} and state["coef"].shape == (n_classes, 20)
