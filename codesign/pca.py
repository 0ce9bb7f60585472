"""Principal component analysis of rank r, fitted on the training set (scikit-learn's shape)."""

from __future__ import annotations

import numpy as np
import torch

from .errors import ConfigError, NumericalError, check_range


class PCADecomposition:
    """Every principal direction of a training set, computed once: :class:`PCA` of any rank is its top rows.

    The rank-r PCA of the same data is exactly (bit for bit) the first r directions, variances and
    signs of this decomposition (:meth:`PCA.from_decomposition`): :meth:`PCA.fit` itself truncates
    one, so a search that tries many ranks decomposes its training set once.

    Attributes:
        mean: ``[n_inputs]`` float64 training mean.
        components: ``[k, n_inputs]`` float64 orthonormal rows, largest variance first, each signed
            so its largest-magnitude entry is positive (``k = min(n_samples, n_inputs)``).
        variance: ``[k]`` float64 variance of each score (clamped at 0).
        total_variance: sum of every (clamped) eigenvalue, for ``explained_variance_ratio_``.
    """

    def __init__(self, mean: np.ndarray, components: np.ndarray, variance: np.ndarray, total_variance: float) -> None:
        self.mean = np.asarray(mean, dtype=np.float64)
        self.components = np.asarray(components, dtype=np.float64)
        self.variance = np.asarray(variance, dtype=np.float64)
        self.total_variance = float(total_variance)

    @property
    def max_rank(self) -> int:
        return int(self.components.shape[0])

    @classmethod
    def fit(cls, x: np.ndarray) -> "PCADecomposition":
        """Decompose ``x`` (``[n_samples, n_inputs]``): eigendecomposition of its covariance (float64)."""
        n, d = x.shape
        xt = torch.from_numpy(np.asarray(x, dtype=np.float64))
        if not torch.isfinite(xt).all():
            raise NumericalError(
                f"PCA input holds NaN or Inf values ({int((~torch.isfinite(xt)).sum())} entries); "
                "check the input data"
            )
        mean = xt.mean(0)
        xc = xt - mean
        cov = xc.T @ xc / max(n - 1, 1)
        del xc, xt
        evals, evecs = torch.linalg.eigh(cov)
        order = torch.argsort(evals, descending=True)[: min(n, d)]
        comps = evecs[:, order].T.contiguous()
        signs = torch.sign(comps.gather(1, comps.abs().argmax(1, keepdim=True)))
        comps = comps * signs
        return cls(mean.numpy(), comps.numpy(), evals[order].clamp_min(0).numpy(),
                   float(evals.clamp_min(0).sum()))

    def state_dict(self) -> dict:
        return {"mean": self.mean, "components": self.components, "variance": self.variance,
                "total_variance": np.asarray(self.total_variance, dtype=np.float64)}

    @classmethod
    def from_state_dict(cls, state: dict) -> "PCADecomposition":
        return cls(state["mean"], state["components"], state["variance"], float(np.asarray(state["total_variance"])))


class PCA:
    """Project inputs onto their top-``rank`` principal directions, whitened.

    Scores are divided by the square root of their variance so every PCA coordinate has unit
    variance on the training set; this keeps the monomials of the next stage on one scale
    (a degree-3 product of raw MNIST scores spans six decades otherwise).

    Args:
        rank: number of components r, ``1 <= r <= min(n_samples, n_inputs)``.
        whiten: divide scores by their standard deviation (default True).

    Attributes (after :meth:`fit`):
        mean_: ``[n_inputs]`` training mean.
        components_: ``[rank, n_inputs]`` orthonormal rows, largest variance first; the sign
            of each row is fixed so its largest-magnitude entry is positive (deterministic).
        explained_variance_: ``[rank]`` variance of each score.
        explained_variance_ratio_: share of the total variance per component.
    """

    def __init__(self, rank: int, whiten: bool = True) -> None:
        check_range("pca_rank", rank, 1, None, integer=True)
        self.rank = rank
        self.whiten = whiten

    def fit(self, x: np.ndarray) -> "PCA":
        """Fit on ``x`` (``[n_samples, n_inputs]``); returns self."""
        n, d = x.shape
        self._check_rank(n, d)
        return self.fit_decomposition(PCADecomposition.fit(x))

    def _check_rank(self, n: int, d: int) -> None:
        if self.rank > min(n, d):
            raise ConfigError(
                f"pca_rank={self.rank} is larger than the input allows: at most "
                f"min(n_samples={n}, n_inputs={d}) = {min(n, d)}"
            )

    def fit_decomposition(self, dec: PCADecomposition) -> "PCA":
        """Take the top ``rank`` directions of a :class:`PCADecomposition` (what :meth:`fit` does); returns self."""
        if self.rank > dec.max_rank:
            raise ConfigError(
                f"pca_rank={self.rank} is larger than the input allows: at most {dec.max_rank} "
                "(min of the training samples and the inputs)"
            )
        comps = torch.from_numpy(dec.components[: self.rank])
        var = torch.from_numpy(dec.variance[: self.rank])
        if self.whiten and (var <= 1e-12 * max(float(var[0]), 1e-300)).any():
            k = int((var > 1e-12 * float(var[0])).sum())
            raise ConfigError(
                f"pca_rank={self.rank}: the training inputs only span {k} directions; "
                f"use pca_rank <= {k}"
            )
        self.mean_ = torch.from_numpy(dec.mean).float().numpy()
        self.components_ = comps.float().numpy()
        self.explained_variance_ = var.float().numpy()
        self.explained_variance_ratio_ = (var / dec.total_variance).float().numpy()
        return self

    @classmethod
    def from_decomposition(cls, dec: PCADecomposition, rank: int, whiten: bool = True) -> "PCA":
        """The rank-``rank`` PCA of the data ``dec`` decomposed (equal to a fresh :meth:`fit`)."""
        return cls(rank, whiten).fit_decomposition(dec)

    def transform(self, x: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Scores of ``x``: ``[n, rank]`` float32 (whitened if asked)."""
        xt = torch.as_tensor(x, dtype=torch.float32)
        if xt.shape[-1] != self.mean_.shape[0]:
            raise ConfigError(
                f"PCA was fitted on {self.mean_.shape[0]} inputs but got {xt.shape[-1]}; "
                "transform data of the same shape as the training set"
            )
        z = (xt - torch.from_numpy(self.mean_)) @ torch.from_numpy(self.components_).T
        if self.whiten:
            z = z / torch.from_numpy(np.sqrt(self.explained_variance_))
        return z

    def state_dict(self) -> dict:
        return {
            "rank": self.rank,
            "whiten": self.whiten,
            "mean_": self.mean_,
            "components_": self.components_,
            "explained_variance_": self.explained_variance_,
            "explained_variance_ratio_": self.explained_variance_ratio_,
        }

    @classmethod
    def from_state_dict(cls, state: dict) -> "PCA":
        pca = cls(int(state["rank"]), bool(state["whiten"]))
        for k in ("mean_", "components_", "explained_variance_", "explained_variance_ratio_"):
            setattr(pca, k, np.asarray(state[k], dtype=np.float32))
        return pca
