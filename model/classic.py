"""Classic heads: scikit-learn pipelines whose fitted numbers live in torch buffers.

    mfcc_svm        20 MFCCs of the log-mel segment, mean and std over its frames (40 values),
                    standardized, RBF SVM (Tzanetakis & Cook, 2002, with an SVM as in most GTZAN work)
    musicnn_svm     the musicnn embedding of the segment (the cache's spec: MSD max_pool by
                    default), standardized, PCA to at most 128 dimensions, RBF SVM (the "transfer
                    learning" baseline of Pons & Serra, sklearn-audio-transfer-learning)
    musicnn_logreg  the same embedding, standardized, multinomial logistic regression (L2): the
                    linear probe of MARBLE and of most pretrained-encoder studies

All are fitted by scikit-learn (`fit`, which the training step calls instead of the SGD loop) and
then *run* in torch: the forward reproduces the fitted pipeline exactly, so a checkpoint is a plain
state dict of tensors (loadable with torch.load(weights_only=True)) and evaluation, predict.py and
the checkpoint code treat these models like any other.

Segment-level, like every model here: they are fitted on one feature vector per training segment
(7x more points than clips), and a clip's prediction is the mean of its segments' softmax, as for
the neural nets. The SVMs' logits are SVC's one-vs-rest decision values ("ovr": votes of the
one-vs-one classifiers plus confidences / (3 (|confidences| + 1)), scikit-learn's
`decision_function`), so their argmax is SVC's vote; their softmax is a soft vote, not a
calibrated probability. The logistic head's softmax is its predict_proba.
"""
import math
import time

import numpy as np
import torch
from torch import nn


def dct_matrix(n_in, n_out):
    """Orthonormal DCT-II (n_out, n_in), as scipy.fft.dct(type=2, norm="ortho") over the first
    axis: librosa.feature.mfcc(S=log_mel_db, n_mfcc=n_out) is dct_matrix(n_mels, n_out) @ S."""
    n = torch.arange(n_in, dtype=torch.float64)
    k = torch.arange(n_out, dtype=torch.float64)[:, None]
    m = torch.cos(math.pi * k * (2 * n + 1) / (2 * n_in)) * math.sqrt(2.0 / n_in)
    m[0] /= math.sqrt(2.0)
    return m


def _f64(a):
    return torch.as_tensor(np.asarray(a, dtype=np.float64))


class SklearnHead(nn.Module):
    """Standardize -> optional PCA -> a scikit-learn classifier, fitted by scikit-learn (`fit_sklearn`),
    evaluated in torch. Subclasses define `inputs`, `features(*inputs) -> (B, F)`, `BUFFERS` (the
    classifier's numbers), `classifier(seed)` (the unfitted estimator), `load_classifier(est)` and
    `logits(z)` on the standardized (and projected) features z (B, K). Before the fit the buffers
    are empty and forward raises. Buffers are float64, as scikit-learn computes:
        mean, scale (F,)          StandardScaler
        pca_mean (F,), pca (K, F) PCA (empty when no PCA)
    """
    pca_dims = 0  # 0: no PCA
    BUFFERS = ()

    def __init__(self, n_classes, input_shape):
        super().__init__()
        self.n_classes = n_classes
        for name in ("mean", "scale", "pca_mean", "pca", *self.BUFFERS):
            self.register_buffer(name, torch.zeros(0, dtype=torch.float64))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # buffer sizes depend on the fit (support vectors, PCA dims): take them from the checkpoint
        for name in ("mean", "scale", "pca_mean", "pca", *self.BUFFERS):
            if prefix + name in state_dict:
                self._buffers[name] = torch.empty_like(state_dict[prefix + name], device=self._buffers[name].device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def features(self, *inputs):
        raise NotImplementedError

    def fit_sklearn(self, X, y, seed=0):
        """Fit on features X (N, F) (from `features`) and labels y (N,) in 0..n_classes-1.
        Every genre needs training segments. Returns the fitted sklearn Pipeline."""
        from sklearn.decomposition import PCA
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        X, y = np.asarray(X, dtype=np.float64), np.asarray(y)
        missing = sorted(set(range(self.n_classes)) - set(y.tolist()))
        if missing:
            from genreclf.errors import UserError
            raise UserError(f"{type(self).__name__}: no training segments of genre indices {missing}")
        steps = [StandardScaler()]
        if self.pca_dims:
            steps.append(PCA(n_components=min(self.pca_dims, *X.shape), random_state=seed))
        steps.append(self.classifier(seed))
        pipe = make_pipeline(*steps).fit(X, y)
        self.load_sklearn(pipe)
        return pipe

    def load_sklearn(self, pipe):
        """Copy a fitted [StandardScaler, (PCA), classifier] pipeline into the buffers."""
        scaler = pipe.steps[0][1]
        self.mean, self.scale = _f64(scaler.mean_), _f64(scaler.scale_)
        if len(pipe.steps) == 3:
            pca = pipe.steps[1][1]
            self.pca_mean, self.pca = _f64(pca.mean_), _f64(pca.components_)
        else:
            self.pca_mean, self.pca = torch.zeros(0, dtype=torch.float64), torch.zeros(0, dtype=torch.float64)
        self.load_classifier(pipe.steps[-1][1])

    def project(self, feats):
        """Standardized (and PCA-projected) features (B, K) of features (B, F)."""
        if self.mean.numel() == 0:
            raise RuntimeError(f"{type(self).__name__} is not fitted: train it (main.py) or load a checkpoint")
        z = (feats.double() - self.mean) / self.scale
        return (z - self.pca_mean) @ self.pca.T if self.pca.numel() else z

    def forward(self, *inputs):
        return self.logits(self.project(self.features(*inputs))).float()


class SVMClassifier(SklearnHead):
    """Standardize -> optional PCA -> RBF SVC. Buffers besides the scaler's and PCA's:
        sv (S, K)                 support vectors, in the standardized/PCA space
        pair_coef (P, S)          dual coefficients of each one-vs-one pair (i < j), P = C(n, 2)
        intercept (P,), gamma ()  libsvm's -rho per pair, the RBF width
    """
    BUFFERS = ("sv", "pair_coef", "intercept", "gamma")

    def __init__(self, n_classes, input_shape, C=10.0):
        super().__init__(n_classes, input_shape)
        self.C = C
        i, j = torch.triu_indices(n_classes, n_classes, offset=1)  # pairs in libsvm's order
        self.register_buffer("vote_i", nn.functional.one_hot(i, n_classes).double(), persistent=False)  # (P, n)
        self.register_buffer("vote_j", nn.functional.one_hot(j, n_classes).double(), persistent=False)

    def classifier(self, seed):
        from sklearn.svm import SVC

        return SVC(C=self.C, kernel="rbf", gamma="scale")

    def load_classifier(self, svc):
        """Copy a fitted SVC into the buffers."""
        # libsvm's raw one-vs-one model; scikit-learn flips the signs of the public attributes when binary
        dual, b = np.asarray(svc.dual_coef_), np.asarray(svc.intercept_)
        if self.n_classes == 2:
            dual, b = -dual, -b
        starts = np.concatenate([[0], np.cumsum(svc.n_support_)])
        coef = np.zeros((len(b), len(svc.support_vectors_)))
        for p, (i, j) in enumerate(zip(*np.triu_indices(self.n_classes, k=1))):
            si, sj = slice(starts[i], starts[i + 1]), slice(starts[j], starts[j + 1])
            coef[p, si] = dual[j - 1, si]  # class i's support vectors against class j
            coef[p, sj] = dual[i, sj]
        self.sv, self.pair_coef, self.intercept = _f64(svc.support_vectors_), _f64(coef), _f64(b)
        self.gamma = _f64(svc._gamma)

    def logits(self, z):
        """scikit-learn's "ovr" decision values (B, n_classes) of projected features z (B, K)."""
        kernel = torch.exp(-self.gamma * torch.cdist(z, self.sv).square())  # (B, S)
        dec = kernel @ self.pair_coef.T + self.intercept                   # (B, P): > 0 favours the pair's first class
        votes = (dec >= 0).double() @ self.vote_i + (dec < 0).double() @ self.vote_j
        conf = dec @ self.vote_i - dec @ self.vote_j                       # (B, n_classes)
        return votes + conf / (3 * (conf.abs() + 1))


class LogRegClassifier(SklearnHead):
    """Standardize -> multinomial logistic regression with an L2 penalty of strength 1 / C (lbfgs).
    Buffers besides the scaler's: coef (n_classes, F), intercept (n_classes,); the logits are
    scikit-learn's decision_function, so their softmax is its predict_proba. With two classes
    scikit-learn keeps one row w, and the logits are (0, w.z + b), whose softmax is the same."""
    BUFFERS = ("coef", "intercept")

    def __init__(self, n_classes, input_shape, C=0.1, max_iter=1000):
        super().__init__(n_classes, input_shape)
        self.C, self.max_iter = C, max_iter

    def classifier(self, seed):
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(C=self.C, max_iter=self.max_iter)

    def load_classifier(self, lr):
        coef, b = np.asarray(lr.coef_), np.asarray(lr.intercept_)
        if self.n_classes == 2:
            coef, b = np.concatenate([np.zeros_like(coef), coef]), np.concatenate([[0.0], b])
        self.coef, self.intercept = _f64(coef), _f64(b)

    def logits(self, z):
        return z @ self.coef.T + self.intercept


class MfccSVM(SVMClassifier):
    """20 MFCCs of a log-mel segment, mean and std over frames, standardized, RBF SVM.
    mel (B, n_mels, T) in dB -> logits (B, n_classes)."""
    inputs = ("mel",)
    n_mfcc = 20

    def __init__(self, n_classes, input_shape, C=10.0):
        super().__init__(n_classes, input_shape, C)
        self.register_buffer("dct", dct_matrix(input_shape["mel"][0], self.n_mfcc), persistent=False)

    def features(self, mel):                                            # (B, n_mels, T)
        mfcc = torch.matmul(self.dct, mel.double())                      # (B, 20, T)
        return torch.cat([mfcc.mean(2), mfcc.std(2, unbiased=False)], 1)  # (B, 40)


class MusicnnSVM(SVMClassifier):
    """musicnn embedding (MSD max_pool by default) standardized, PCA to <= 128 dims, RBF SVM.
    musicnn (B, D) -> logits (B, n_classes)."""
    inputs = ("musicnn",)
    pca_dims = 128

    def features(self, musicnn):                                         # (B, D)
        return musicnn.double()


class MusicnnLogReg(LogRegClassifier):
    """musicnn embedding standardized, multinomial logistic regression (no PCA: the L2 penalty
    regularizes; C = 0.1, of 1, 0.1 and 0.01 tried on the artist-grouped folds, docs/musicnn.md).
    musicnn (B, D) -> logits (B, n_classes)."""
    inputs = ("musicnn",)
    features = MusicnnSVM.features


def fit(cfg, model, data, device):
    """train.fit for a classic head: one scikit-learn fit on the features of every training
    segment, deterministic for cfg.seed, scored on val like an epoch. Returns the training state
    (one epoch in its history); train.fit saves the model as best.pt and last.pt, a plain state
    dict. A --resume refits, which gives the same numbers."""
    from genreclf.data import batches
    from genreclf.metrics import predict_segments, score

    start = time.monotonic()  # history.csv's seconds: the fit and its scoring, as an epoch's are
    feats, ys = [], []
    with torch.no_grad():
        for xs, y in batches(data.train, 256):
            feats.append(model.features(*[xs[k] for k in model.inputs]).numpy())
            ys.append(y.numpy())
    model.fit_sklearn(np.concatenate(feats), np.concatenate(ys), seed=cfg.seed)
    model.to(device)
    train_probs, train_loss = predict_segments(model, data.train, device)
    probs, val_loss = predict_segments(model, data.val, device)
    val = score(probs, data.val, data.genres)
    record = {"epoch": 1, "train_loss": train_loss, "train_accuracy": float((train_probs.argmax(1) == data.train.y).mean()),
              "val_loss": val_loss, "val_clip_accuracy": val["clip_accuracy"],
              "val_segment_accuracy": val["segment_accuracy"], "lr": None,  # no learning rate: left empty
              "seconds": round(time.monotonic() - start, 3)}
    return {"epoch": 1, "best": val["clip_accuracy"], "best_loss": val_loss, "bad_epochs": 0, "history": [record]}
