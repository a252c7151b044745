"""Classic baselines: scikit-learn pipelines whose fitted numbers live in torch buffers.

    mfcc_svm     20 MFCCs of the log-mel segment, mean and std over its frames (40 values),
                 standardized, RBF SVM (Tzanetakis & Cook, 2002, with an SVM as in most GTZAN work)
    musicnn_svm  musicnn MSD max_pool embedding of the segment, standardized, PCA to at most
                 128 dimensions, RBF SVM (the "transfer learning" baseline of Pons & Serra,
                 sklearn-audio-transfer-learning)

Both are fitted by scikit-learn (`fit_sklearn`, called by the training step instead of the SGD
loop) and then *run* in torch: the forward reproduces StandardScaler -> PCA -> SVC exactly, so a
checkpoint is a plain state dict of tensors (loadable with torch.load(weights_only=True)) and
evaluation, predict.py and the checkpoint code treat these models like any other.

Segment-level, like every model here: they are fitted on one feature vector per training segment
(7x more points than clips), and a clip's prediction is the mean of its segments' softmax, as for
the neural nets. The logits are SVC's one-vs-rest decision values ("ovr": votes of the one-vs-one
classifiers plus confidences / (3 (|confidences| + 1)), scikit-learn's `decision_function`), so
their argmax is SVC's vote; their softmax is a soft vote, not a calibrated probability.
"""
import math

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


class SVMClassifier(nn.Module):
    """Standardize -> optional PCA -> RBF SVC, fitted by scikit-learn, evaluated in torch.

    Subclasses define `inputs` and `features(*inputs) -> (B, F)`. Before `fit_sklearn` the
    buffers are empty and forward raises. Buffers (float64, as libsvm computes):
        mean, scale (F,)          StandardScaler
        pca_mean (F,), pca (K, F) PCA (empty when no PCA)
        sv (S, K)                 support vectors, in the standardized/PCA space
        pair_coef (P, S)          dual coefficients of each one-vs-one pair (i < j), P = C(n, 2)
        intercept (P,), gamma ()  libsvm's -rho per pair, the RBF width
    """
    pca_dims = 0  # 0: no PCA

    def __init__(self, n_classes, input_shape, C=10.0):
        super().__init__()
        self.n_classes, self.C = n_classes, C
        for name in ("mean", "scale", "pca_mean", "pca", "sv", "pair_coef", "intercept", "gamma"):
            self.register_buffer(name, torch.zeros(0, dtype=torch.float64))
        i, j = torch.triu_indices(n_classes, n_classes, offset=1)  # pairs in libsvm's order
        self.register_buffer("vote_i", nn.functional.one_hot(i, n_classes).double(), persistent=False)  # (P, n)
        self.register_buffer("vote_j", nn.functional.one_hot(j, n_classes).double(), persistent=False)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # buffer sizes depend on the fit (support vectors, PCA dims): take them from the checkpoint
        for name in ("mean", "scale", "pca_mean", "pca", "sv", "pair_coef", "intercept", "gamma"):
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
        from sklearn.svm import SVC

        X, y = np.asarray(X, dtype=np.float64), np.asarray(y)
        missing = sorted(set(range(self.n_classes)) - set(y.tolist()))
        if missing:
            from genreclf.errors import UserError
            raise UserError(f"{type(self).__name__}: no training segments of genre indices {missing}")
        steps = [StandardScaler()]
        if self.pca_dims:
            steps.append(PCA(n_components=min(self.pca_dims, *X.shape), random_state=seed))
        steps.append(SVC(C=self.C, kernel="rbf", gamma="scale"))
        pipe = make_pipeline(*steps).fit(X, y)
        self.load_sklearn(pipe)
        return pipe

    def load_sklearn(self, pipe):
        """Copy a fitted [StandardScaler, (PCA), SVC] pipeline into the buffers."""
        scaler, svc = pipe.steps[0][1], pipe.steps[-1][1]
        f64 = lambda a: torch.as_tensor(np.asarray(a, dtype=np.float64))  # noqa: E731
        self.mean, self.scale = f64(scaler.mean_), f64(scaler.scale_)
        if len(pipe.steps) == 3:
            pca = pipe.steps[1][1]
            self.pca_mean, self.pca = f64(pca.mean_), f64(pca.components_)
        else:
            self.pca_mean, self.pca = torch.zeros(0, dtype=torch.float64), torch.zeros(0, dtype=torch.float64)
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
        self.sv, self.pair_coef, self.intercept = f64(svc.support_vectors_), f64(coef), f64(b)
        self.gamma = f64(svc._gamma)

    def decision(self, feats):
        """One-vs-one decision values (B, P) of features (B, F); > 0 favours the pair's first class."""
        if self.sv.numel() == 0:
            raise RuntimeError(f"{type(self).__name__} is not fitted: train it (main.py) or load a checkpoint")
        z = (feats.double() - self.mean) / self.scale
        if self.pca.numel():
            z = (z - self.pca_mean) @ self.pca.T
        kernel = torch.exp(-self.gamma * torch.cdist(z, self.sv).square())  # (B, S)
        return kernel @ self.pair_coef.T + self.intercept

    def forward(self, *inputs):
        dec = self.decision(self.features(*inputs))                       # (B, P)
        votes = (dec >= 0).double() @ self.vote_i + (dec < 0).double() @ self.vote_j
        conf = dec @ self.vote_i - dec @ self.vote_j                       # (B, n_classes)
        return (votes + conf / (3 * (conf.abs() + 1))).float()             # scikit-learn's "ovr" shape


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
