"""Principal component analysis of rank r, fitted on the training set (scikit-learn's shape)."""

from __future__ import annotations

import numpy as np
import torch

from .errors import ConfigError, NumericalError, check_range


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
        if self.rank > min(n, d):
            raise ConfigError(
                f"pca_rank={self.rank} is larger than the input allows: at most "
                f"min(n_samples={n}, n_inputs={d}) = {min(n, d)}"
            )
        xt = torch.from_numpy(np.asarray(x, dtype=np.float64))
        if not torch.isfinite(xt).all():
            raise NumericalError(
                f"PCA input holds NaN or Inf values ({int((~torch.isfinite(xt)).sum())} entries); "
                "check the input data"
            )
        mean = xt.mean(0)
        xc = xt - mean
        cov = xc.T @ xc / max(n - 1, 1)
        evals, evecs = torch.linalg.eigh(cov)
        order = torch.argsort(evals, descending=True)[: self.rank]
        comps = evecs[:, order].T.contiguous()
        signs = torch.sign(comps.gather(1, comps.abs().argmax(1, keepdim=True)))
        comps = comps * signs
        var = evals[order].clamp_min(0)
        if self.whiten and (var <= 1e-12 * max(float(var[0]), 1e-300)).any():
            k = int((var > 1e-12 * float(var[0])).sum())
            raise ConfigError(
                f"pca_rank={self.rank}: the training inputs only span {k} directions; "
                f"use pca_rank <= {k}"
            )
        self.mean_ = mean.float().numpy()
        self.components_ = comps.float().numpy()
        self.explained_variance_ = var.float().numpy()
        self.explained_variance_ratio_ = (var / evals.clamp_min(0).sum()).float().numpy()
        return self

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
