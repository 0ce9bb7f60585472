"""Dictionaries psi that lift PCA scores into the space where the student is linear.

A small registry (timm-style): a new dictionary is one subclass of :class:`Dictionary` with a
``name``, registered with :func:`register_dictionary`. Every dictionary's first output column
is the constant 1, which folds the student's bias into K.

* ``monomial`` (``degree=d``): every monomial of the r PCA scores up to total degree d,
  constant and cross terms included, in graded order (1, z1..zr, z1^2, z1 z2, ...):
  ``C(r + d, d)`` features.
* ``rbf`` (``centers=n``): ``[1, z, exp(-|z - c_j|^2 / (2 sigma^2))]`` with the n centres c_j
  placed by k-means (k-means++ seeding, Lloyd iterations) on the training scores. Width rule
  (the "median heuristic"): sigma is the median Euclidean distance between pairs of distinct
  centres, so a centre's neighbours sit about one width away whatever the rank. The linear
  terms are kept, as is usual for EDMD's RBF dictionaries, so the RBF student can never be
  worse than a linear one. ``1 + r + n`` features.
"""

from __future__ import annotations

import abc
import math
from typing import Any, ClassVar

import numpy as np
import torch

from .errors import ConfigError, check_range

_REGISTRY: dict[str, type["Dictionary"]] = {}


def register_dictionary(cls: type["Dictionary"]) -> type["Dictionary"]:
    """Class decorator: make ``cls`` available under ``cls.name``."""
    _REGISTRY[cls.name] = cls
    return cls


def list_dictionaries() -> list[str]:
    """Names of the registered dictionaries."""
    return sorted(_REGISTRY)


def create_dictionary(name: str, **params: Any) -> "Dictionary":
    """Build dictionary ``name`` with ``params``; unknown names list the known ones."""
    if name not in _REGISTRY:
        raise ConfigError(f"unknown dictionary {name!r}; known dictionaries: {', '.join(list_dictionaries())}")
    return _REGISTRY[name](**params)


class Dictionary(abc.ABC):
    """A fixed nonlinear lift ``psi: R^r -> R^F`` whose column 0 is the constant 1."""

    name: ClassVar[str]

    @abc.abstractmethod
    def n_features(self, rank: int) -> int:
        """F for PCA rank ``rank`` (constant included)."""

    def fit(self, z: torch.Tensor, seed: int = 0) -> "Dictionary":
        """Learn data-dependent parameters (e.g. centres) from training scores; returns self."""
        self.rank_ = int(z.shape[1])
        return self

    @abc.abstractmethod
    def transform(self, z: torch.Tensor) -> torch.Tensor:
        """Lift ``z`` (``[n, r]`` float32) to ``[n, F]``."""

    @abc.abstractmethod
    def params(self) -> dict:
        """The constructor's parameters (plain values), for configs and cache keys."""

    def state_dict(self) -> dict:
        """Fitted state, plain arrays (for saving a student)."""
        return {"rank_": self.rank_}

    def load_state_dict(self, state: dict) -> None:
        self.rank_ = int(state["rank_"])

    def describe(self) -> str:
        return f"{self.name}(" + ", ".join(f"{k}={v}" for k, v in self.params().items()) + ")"


@register_dictionary
class Monomial(Dictionary):
    """All monomials up to total degree ``degree`` (constant and cross terms included)."""

    name = "monomial"

    def __init__(self, degree: int = 2) -> None:
        check_range("degree", degree, 1, 10, integer=True)
        self.degree = degree

    def n_features(self, rank: int) -> int:
        return math.comb(rank + self.degree, self.degree)

    def params(self) -> dict:
        return {"degree": self.degree}

    def fit(self, z, seed=0):
        super().fit(z, seed)
        self._build_index(self.rank_)
        return self

    def _build_index(self, r: int) -> None:
        # Each degree-k monomial is a degree-(k-1) monomial times one variable whose index is
        # >= the largest index already in it; storing (parent, variable) pairs lets one
        # gather-and-multiply per degree build the whole block without Python loops over terms.
        self._levels: list[tuple[torch.Tensor, torch.Tensor]] = []
        last = torch.arange(r)  # largest variable index of each degree-1 monomial
        for _ in range(2, self.degree + 1):
            parents, variables = [], []
            for j in range(r):
                p = torch.nonzero(last <= j).flatten()
                parents.append(p)
                variables.append(torch.full_like(p, j))
            parent = torch.cat(parents)
            var = torch.cat(variables)
            self._levels.append((parent, var))
            last = var

    def transform(self, z: torch.Tensor) -> torch.Tensor:
        n, r = z.shape
        if r != self.rank_:
            raise ConfigError(f"monomial dictionary fitted for rank {self.rank_}, got inputs of width {r}")
        out = torch.empty(n, self.n_features(r), dtype=z.dtype)
        out[:, 0] = 1.0
        out[:, 1 : r + 1] = z
        prev, col = z, r + 1
        for parent, var in self._levels:
            block = prev[:, parent] * z[:, var]
            out[:, col : col + block.shape[1]] = block
            col += block.shape[1]
            prev = block
        return out


@register_dictionary
class RBF(Dictionary):
    """Gaussian radial basis functions at k-means centres, plus the constant and linear terms."""

    name = "rbf"

    def __init__(self, centers: int = 200, kmeans_iters: int = 25) -> None:
        check_range("centers", centers, 1, 100_000, integer=True)
        check_range("kmeans_iters", kmeans_iters, 1, 10_000, integer=True)
        self.centers = centers
        self.kmeans_iters = kmeans_iters

    def n_features(self, rank: int) -> int:
        return 1 + rank + self.centers

    def params(self) -> dict:
        return {"centers": self.centers}

    def fit(self, z: torch.Tensor, seed: int = 0) -> "RBF":
        super().fit(z, seed)
        if self.centers > z.shape[0]:
            raise ConfigError(f"centers={self.centers} exceeds the {z.shape[0]} training samples; use fewer centres")
        self.centers_ = kmeans(z, self.centers, self.kmeans_iters, seed)
        if self.centers == 1:
            self.sigma_ = float(z.std(0).norm())
        else:
            d = torch.cdist(self.centers_.double(), self.centers_.double())
            iu = torch.triu_indices(self.centers, self.centers, 1)
            # np.median: the mean of the two middle distances for an even count of pairs
            # (torch's median would return the lower one).
            self.sigma_ = float(np.median(d[iu[0], iu[1]].cpu().numpy()))
        if not self.sigma_ > 0:
            raise ConfigError("rbf: all k-means centres coincide (the data has no spread); use fewer centres")
        return self

    def transform(self, z: torch.Tensor) -> torch.Tensor:
        n, r = z.shape
        out = torch.empty(n, self.n_features(r), dtype=z.dtype)
        out[:, 0] = 1.0
        out[:, 1 : r + 1] = z
        d2 = torch.cdist(z, self.centers_.to(z.dtype)).square_()
        out[:, r + 1 :] = torch.exp(d2 * (-0.5 / self.sigma_**2))
        return out

    def state_dict(self) -> dict:
        return {**super().state_dict(), "centers_": self.centers_.numpy(), "sigma_": self.sigma_}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.centers_ = torch.as_tensor(np.asarray(state["centers_"]), dtype=torch.float32)
        self.sigma_ = float(state["sigma_"])


def kmeans(z: torch.Tensor, k: int, iters: int, seed: int) -> torch.Tensor:
    """Lloyd's k-means with k-means++ seeding; deterministic for a seed. Returns ``[k, r]``."""
    gen = torch.Generator().manual_seed(seed)
    z = z.float()
    n = z.shape[0]
    # Seeding on a subsample keeps k-means++ O(sample * k) on 60k points.
    sample = z[torch.randperm(n, generator=gen)[: min(n, max(20 * k, 5000))]]
    centres = [sample[torch.randint(len(sample), (1,), generator=gen)].squeeze(0)]
    d2 = (sample - centres[0]).square().sum(1)
    for _ in range(1, k):
        probs = d2 / d2.sum() if d2.sum() > 0 else torch.full_like(d2, 1.0 / len(d2))
        idx = torch.multinomial(probs, 1, generator=gen)
        centres.append(sample[idx].squeeze(0))
        d2 = torch.minimum(d2, (sample - centres[-1]).square().sum(1))
    c = torch.stack(centres)
    for _ in range(iters):
        assign = _nearest(z, c)
        sums = torch.zeros_like(c).index_add_(0, assign, z)
        counts = torch.bincount(assign, minlength=k).unsqueeze(1).float()
        empty = counts.squeeze(1) == 0
        new = torch.where(empty.unsqueeze(1), c, sums / counts.clamp_min(1))
        if torch.allclose(new, c, atol=1e-6):
            c = new
            break
        c = new
    return c


def _nearest(z: torch.Tensor, c: torch.Tensor, chunk: int = 16384) -> torch.Tensor:
    out = torch.empty(z.shape[0], dtype=torch.long)
    for i in range(0, z.shape[0], chunk):
        out[i : i + chunk] = torch.cdist(z[i : i + chunk], c).argmin(1)
    return out
