"""Clements rectangular MZI meshes: decompose a unitary into phases, rebuild it in torch.

A ``k x k`` unitary is realised by ``k(k-1)/2`` Mach-Zehnder interferometers (MZIs) arranged in
``k`` columns, followed by a column of ``k`` output phase shifters (Clements et al., "Optimal
design for universal multiport interferometers", Optica 3, 1460 (2016)).

Each MZI is modelled physically, as two directional couplers around an internal phase ``theta``
with an external phase ``phi`` on its top input::

    T(theta, phi) = DC(kappa2) . diag(e^{i theta}, 1) . DC(kappa1) . diag(e^{i phi}, 1),
    DC(kappa) = [[cos kappa, i sin kappa], [i sin kappa, cos kappa]],

so that a beam-splitter imbalance is a deviation of ``kappa`` from ``pi/4`` (50:50). With ideal
couplers ``T = i e^{i theta/2} [[e^{i phi} sin(theta/2), cos(theta/2)],
[e^{i phi} cos(theta/2), -sin(theta/2)]]``.

:func:`decompose` runs Clements' nulling algorithm (numpy, complex128, vectorised over a batch
of unitaries, all of which share one mesh layout) and returns the phases column by column;
:func:`rebuild` is its differentiable inverse in torch, one vectorised step per mesh column.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class MeshLayout:
    """Where the MZIs of a ``k``-mode rectangular mesh sit.

    Attributes:
        k: number of modes.
        columns: per mesh column ``(first_mode, n_mzi)``: that column's MZIs act on the mode
            pairs ``(first_mode + 2j, first_mode + 2j + 1)`` for ``j < n_mzi``.
        offsets: index of each column's first MZI in the flat, column-major phase arrays.
    """

    k: int
    columns: tuple[tuple[int, int], ...]
    offsets: tuple[int, ...]

    @property
    def n_mzi(self) -> int:
        """Number of MZIs, ``k(k-1)/2``."""
        return sum(n for _, n in self.columns)

    @property
    def depth(self) -> int:
        """Optical depth: number of MZI columns (``k`` for ``k >= 2``)."""
        return len(self.columns)


@functools.lru_cache(maxsize=None)
def mesh_layout(k: int) -> MeshLayout:
    """The rectangular layout of a ``k``-mode Clements mesh (column ``c`` starts at mode ``c % 2``)."""
    if k < 1:
        raise ValueError(f"mesh size k={k} must be >= 1")
    columns, offsets, off = [], [], 0
    for c in range(k if k > 1 else 0):
        first = c % 2
        n = (k - first) // 2
        columns.append((first, n))
        offsets.append(off)
        off += n
    return MeshLayout(k, tuple(columns), tuple(offsets))


# --------------------------------------------------------------------------- decomposition
def _null_right(u: np.ndarray, row: int, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Phases of the T^-1 on columns (m, m+1) that zeroes ``u[:, row, m]`` (applied in place)."""
    a, b = u[:, row, m], u[:, row, m + 1]
    theta = 2.0 * np.arctan2(np.abs(b), np.abs(a))
    phi = np.angle(-a * np.conj(b))
    tinv = mzi_matrix_np(theta, phi).conj().transpose(0, 2, 1)  # T^-1 = T^dagger
    cols = u[:, :, m : m + 2].copy()
    u[:, :, m : m + 2] = cols @ tinv
    return theta, phi


def _null_left(u: np.ndarray, col: int, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Phases of the T on rows (m, m+1) that zeroes ``u[:, m+1, col]`` (applied in place)."""
    a, b = u[:, m, col], u[:, m + 1, col]
    theta = 2.0 * np.arctan2(np.abs(a), np.abs(b))
    phi = np.angle(b * np.conj(a))
    t = mzi_matrix_np(theta, phi)
    rows = u[:, m : m + 2, :].copy()
    u[:, m : m + 2, :] = t @ rows
    return theta, phi


def mzi_matrix_np(theta: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """Ideal MZI transfer matrices ``[batch, 2, 2]`` (complex128) for phases ``theta``, ``phi``."""
    s, c = np.sin(theta / 2), np.cos(theta / 2)
    g = 1j * np.exp(1j * theta / 2)
    e = np.exp(1j * phi)
    t = np.empty(theta.shape + (2, 2), dtype=np.complex128)
    t[..., 0, 0] = g * e * s
    t[..., 0, 1] = g * c
    t[..., 1, 0] = g * e * c
    t[..., 1, 1] = -g * s
    return t


def decompose(unitaries: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Clements decomposition of a batch of unitaries.

    Args:
        unitaries: ``[batch, k, k]`` unitary (or real orthogonal) matrices.

    Returns:
        ``(theta, phi, delta)``: ``theta`` and ``phi`` of shape ``[batch, k(k-1)/2]`` in the
        column-major order of :func:`mesh_layout` (column by column, top MZI first), and the
        output phase screen ``delta`` of shape ``[batch, k]``, such that
        ``rebuild(theta, phi, delta) == unitaries``.
    """
    u = np.array(unitaries, dtype=np.complex128, copy=True)
    if u.ndim != 3 or u.shape[1] != u.shape[2]:
        raise ValueError(f"expected [batch, k, k] unitaries, got shape {u.shape}")
    batch, k, _ = u.shape
    right, left = [], []  # (mode m, theta, phi) in the order they were found
    for i in range(1, k):
        if i % 2 == 1:
            for j in range(i):
                m = i - 1 - j
                right.append((m, *_null_right(u, k - 1 - j, m)))
        else:
            for j in range(1, i + 1):
                m = k + j - i - 2
                left.append((m, *_null_left(u, j - 1, m)))
    # Now L.U.R = D with L = T_ln...T_l1 and R = T_r1^-1...T_rk^-1, so
    # U = T_l1^-1 ... T_ln^-1 . D . T_rk ... T_r1. Push D left through each T^-1 using
    # T^-1(theta, phi) D = D' T(theta, phi') with phi' = d_m - d_{m+1},
    # d'_m = d_{m+1} - theta - phi + pi, d'_{m+1} = d_{m+1} - theta + pi (phases of D).
    d = np.angle(np.diagonal(u, axis1=1, axis2=2)).copy()
    moved = []
    for m, theta, phi in reversed(left):
        new_phi = d[:, m] - d[:, m + 1]
        dm1 = d[:, m + 1].copy()
        d[:, m] = dm1 - theta - phi + np.pi
        d[:, m + 1] = dm1 - theta + np.pi
        moved.append((m, theta, new_phi))
    # Light meets T_r1 first, ..., T_rk, then the moved T'_ln, ..., T'_l1, then D.
    sequence = right + moved
    return (*_to_columns(sequence, k, batch), np.mod(d, 2 * np.pi))


def _to_columns(sequence: list, k: int, batch: int) -> tuple[np.ndarray, np.ndarray]:
    """Place MZIs (in application order) into the rectangular layout's column-major arrays."""
    layout = mesh_layout(k)
    depth = [0] * k
    theta = np.zeros((batch, layout.n_mzi))
    phi = np.zeros((batch, layout.n_mzi))
    filled = [0] * len(layout.columns)
    for m, th, ph in sequence:
        col = max(depth[m], depth[m + 1])
        first, n = layout.columns[col]
        j, rem = divmod(m - first, 2)
        if rem or not 0 <= j < n:  # cannot happen for Clements' ordering; guard the invariant
            raise AssertionError(f"MZI on modes ({m},{m + 1}) does not fit column {col}")
        idx = layout.offsets[col] + j
        theta[:, idx] = np.mod(th, 2 * np.pi)
        phi[:, idx] = np.mod(ph, 2 * np.pi)
        filled[col] += 1
        depth[m] = depth[m + 1] = col + 1
    if filled != [n for _, n in layout.columns]:
        raise AssertionError(f"mesh columns not filled as expected: {filled}")
    return theta, phi


# --------------------------------------------------------------------------- rebuild (torch)
def mzi_coefficients(
    theta: torch.Tensor,
    phi: torch.Tensor,
    kappa1: torch.Tensor | None = None,
    kappa2: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The four complex entries ``t00, t01, t10, t11`` of each MZI's 2x2 transfer matrix.

    Args:
        theta: internal phases (any shape).
        phi: external phases (same shape).
        kappa1: coupling angle of the first coupler (``pi/4`` = 50:50); None means ideal.
        kappa2: coupling angle of the second coupler; None means ideal.
    """
    e_theta = torch.polar(torch.ones_like(theta), theta)
    e_phi = torch.polar(torch.ones_like(phi), phi)
    if kappa1 is None and kappa2 is None:
        # ideal 50:50 couplers: closed form, fewer ops on the training path
        t00 = 0.5 * e_phi * (e_theta - 1)
        t01 = 0.5j * (e_theta + 1)
        t10 = 0.5j * e_phi * (e_theta + 1)
        t11 = 0.5 * (1 - e_theta)
        return t00, t01, t10, t11
    quarter = torch.full_like(theta, math.pi / 4)
    k1 = quarter if kappa1 is None else kappa1
    k2 = quarter if kappa2 is None else kappa2
    c1, s1, c2, s2 = torch.cos(k1), torch.sin(k1), torch.cos(k2), torch.sin(k2)
    t00 = e_phi * (c1 * c2 * e_theta - s1 * s2)
    t01 = 1j * (s1 * c2 * e_theta + c1 * s2)
    t10 = 1j * e_phi * (c1 * s2 * e_theta + s1 * c2)
    t11 = c1 * c2 - s1 * s2 * e_theta
    return t00, t01, t10, t11


def rebuild(
    theta: torch.Tensor,
    phi: torch.Tensor,
    delta: torch.Tensor,
    kappa1: torch.Tensor | None = None,
    kappa2: torch.Tensor | None = None,
) -> torch.Tensor:
    """The matrices of a batch of meshes, ``[batch, k, k]`` complex, differentiable in all phases.

    One step per mesh column, each vectorised over the whole batch and all MZIs of the column;
    there is no loop over meshes or over single MZIs.

    Args:
        theta: ``[batch, k(k-1)/2]`` internal phases, column-major (see :func:`mesh_layout`).
        phi: ``[batch, k(k-1)/2]`` external phases.
        delta: ``[batch, k]`` output phase screen.
        kappa1: optional ``[batch, k(k-1)/2]`` first-coupler angles (beam-splitter errors).
        kappa2: optional ``[batch, k(k-1)/2]`` second-coupler angles.
    """
    batch, k = delta.shape
    layout = mesh_layout(k)
    t00, t01, t10, t11 = mzi_coefficients(theta, phi, kappa1, kappa2)
    # [batch, M, 2, 2] transfer matrices of all MZIs, built once
    tmat = torch.stack((torch.stack((t00, t01), -1), torch.stack((t10, t11), -1)), -2)
    cdtype = torch.complex128 if delta.dtype == torch.float64 else torch.complex64
    mat = torch.eye(k, dtype=cdtype, device=delta.device).expand(batch, k, k)
    for (first, n), off in zip(layout.columns, layout.offsets):
        if n == 0:
            continue
        # rows (first + 2j, first + 2j + 1) as [batch, n, 2, k]; one batched 2x2 matmul per
        # column updates every MZI of the column in every mesh at once
        rows = mat[:, first : first + 2 * n].reshape(batch, n, 2, k)
        pairs = torch.matmul(tmat[:, off : off + n], rows).reshape(batch, 2 * n, k)
        parts = [p for p in (mat[:, :first], pairs, mat[:, first + 2 * n :]) if p.shape[1]]
        mat = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
    screen = torch.polar(torch.ones_like(delta), delta)
    return screen[:, :, None] * mat
