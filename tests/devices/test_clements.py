"""Clements meshes: layout counts, exact decompose/rebuild round trips, the MZI model."""

import math

import numpy as np
import pytest
import torch
from scipy.stats import ortho_group, unitary_group

from codesign.devices.clements import decompose, mesh_layout, mzi_coefficients, mzi_matrix_np, rebuild


def test_four_mode_mesh_has_six_mzis_in_four_columns():
    layout = mesh_layout(4)
    assert layout.n_mzi == 6
    assert layout.depth == 4
    assert layout.columns == ((0, 2), (1, 1), (0, 2), (1, 1))


@pytest.mark.parametrize("k", range(2, 10))
def test_mzi_count_is_k_choose_2(k):
    assert mesh_layout(k).n_mzi == k * (k - 1) // 2
    assert mesh_layout(k).depth == k


@pytest.mark.parametrize("k", [2, 3, 4, 7, 16])
def test_decompose_then_rebuild_is_exact(k):
    mats = np.stack(
        [unitary_group.rvs(k, random_state=s) for s in range(3)]
        + [ortho_group.rvs(k, random_state=5)]  # real SVD factors are real orthogonal
    )
    theta, phi, delta = decompose(mats)
    assert theta.shape == phi.shape == (4, k * (k - 1) // 2) and delta.shape == (4, k)
    rebuilt = rebuild(*(torch.from_numpy(a) for a in (theta, phi, delta))).numpy()
    assert np.abs(rebuilt - mats).max() < 1e-10
    rebuilt32 = rebuild(*(torch.from_numpy(a).float() for a in (theta, phi, delta))).numpy()
    assert np.abs(rebuilt32 - mats).max() < 1e-5


def test_ideal_coupler_closed_form_matches_general_model():
    theta, phi = torch.rand(50) * 6.28, torch.rand(50) * 6.28
    quarter = torch.full_like(theta, math.pi / 4)
    for a, b in zip(mzi_coefficients(theta, phi), mzi_coefficients(theta, phi, quarter, quarter)):
        assert torch.allclose(a, b, atol=1e-6)
    t = mzi_matrix_np(theta.double().numpy(), phi.double().numpy())
    t00, t01, t10, t11 = (c.numpy() for c in mzi_coefficients(theta, phi))
    for i, j, c in ((0, 0, t00), (0, 1, t01), (1, 0, t10), (1, 1, t11)):
        assert np.abs(t[:, i, j] - c).max() < 1e-5


def test_imbalanced_couplers_stay_lossless_and_change_the_splitting():
    theta = torch.zeros(1)  # an ideal MZI at theta=0 sends all power to the cross port
    phi = torch.zeros(1)
    k1 = torch.full((1,), math.asin(math.sqrt(0.6)))  # 60:40 couplers
    t00, t01, t10, t11 = mzi_coefficients(theta, phi, k1, k1)
    m = torch.stack((torch.stack((t00, t01), -1), torch.stack((t10, t11), -1)), -2)[0]
    assert torch.allclose(m @ m.conj().T, torch.eye(2, dtype=m.dtype), atol=1e-6)
    assert (mzi_coefficients(theta, phi)[0].abs() ** 2).item() == pytest.approx(0.0, abs=1e-12)
    # with 60:40 couplers (0.6 - 0.4)^2 = 4 % of the power stays in the bar port
    assert (t00.abs() ** 2).item() == pytest.approx(0.04, abs=1e-6)


def test_rebuild_is_differentiable_in_every_phase():
    k = 5
    theta, phi, delta = (torch.from_numpy(a).float().requires_grad_() for a in
                         decompose(unitary_group.rvs(k, size=2, random_state=0)))
    rebuild(theta, phi, delta).real.sum().backward()
    for p in (theta, phi, delta):
        assert p.grad is not None and p.grad.abs().sum() > 0
