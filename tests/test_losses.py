"""The distillation loss against hand computations."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from codesign.errors import ConfigError
from codesign.losses import KDTargets, kd_loss

pytestmark = pytest.mark.usefixtures("one_thread")  # small tensors: one thread is fastest on a shared machine


@pytest.fixture
def batch():
    gen = torch.Generator().manual_seed(0)
    s = torch.randn(32, 10, generator=gen, dtype=torch.float64) * 3
    t = torch.randn(32, 10, generator=gen, dtype=torch.float64) * 3
    y = torch.randint(0, 10, (32,), generator=gen)
    return s, t, y


def hand_kd(s, t, y, T, alpha):
    p = torch.softmax(t / T, 1)
    log_q = torch.log_softmax(s / T, 1)
    kl = (p * (torch.log(p) - log_q)).sum(1).mean()
    ce = -torch.log_softmax(s, 1)[torch.arange(len(y)), y].mean()
    return alpha * T * T * kl + (1 - alpha) * ce


@pytest.mark.parametrize("T,alpha", [(1.0, 0.5), (2.0, 0.9), (4.0, 0.3), (0.5, 1.0), (3.0, 0.0)])
def test_kd_loss_equals_hand_computation(batch, T, alpha):
    s, t, y = batch
    got = kd_loss(s, KDTargets(t, y, T, alpha))
    assert float(got) == pytest.approx(float(hand_kd(s, t, y, T, alpha)), rel=1e-6)
    # ... and torch's own KL divergence.
    ref = alpha * T * T * F.kl_div(F.log_softmax(s / T, 1), F.softmax(t / T, 1), reduction="batchmean") \
        + (1 - alpha) * F.cross_entropy(s, y)
    assert float(got) == pytest.approx(float(ref), rel=1e-5)


def test_alpha_zero_is_cross_entropy(batch):
    s, _, y = batch
    got = kd_loss(s, KDTargets(None, y, 2.0, 0.0))
    assert float(got) == pytest.approx(float(F.cross_entropy(s, y)), rel=1e-12)


def test_kl_term_vanishes_when_student_equals_teacher(batch):
    _, t, y = batch
    t = t.float()  # teacher targets are prepared in float32, as in every fit
    pure_kd = kd_loss(t.clone(), KDTargets(t, y, 2.0, 1.0))
    assert abs(float(pure_kd)) < 1e-6
    # A per-row shift of the logits changes no probability: still zero.
    assert abs(float(kd_loss(t + 5.0, KDTargets(t, y, 2.0, 1.0)))) < 1e-6
    # The student sits at the soft term's minimum: zero gradient.
    s = t.clone().requires_grad_(True)
    kd_loss(s, KDTargets(t, y, 2.0, 1.0)).backward()
    assert s.grad.abs().max() < 1e-7
    mixed = kd_loss(t.clone(), KDTargets(t, y, 2.0, 0.9))
    assert float(mixed) == pytest.approx(0.1 * float(F.cross_entropy(t, y)), rel=1e-5)


def test_kl_term_positive_otherwise(batch):
    s, t, y = batch
    assert float(kd_loss(s, KDTargets(t, y, 2.0, 1.0))) > 0.1


def test_gradient_matches_autograd_of_hand_loss(batch):
    s, t, y = batch
    a = s.clone().requires_grad_(True)
    kd_loss(a, KDTargets(t, y, 2.0, 0.7)).backward()
    b = s.clone().requires_grad_(True)
    hand_kd(b, t, y, 2.0, 0.7).backward()
    assert torch.allclose(a.grad, b.grad, atol=1e-10)


def test_subset_is_the_loss_of_the_rows(batch):
    s, t, y = batch
    targets = KDTargets(t, y, 2.0, 0.9)
    idx = torch.tensor([3, 7, 11, 30])
    got = kd_loss(s[idx], targets.subset(idx))
    assert float(got) == pytest.approx(float(hand_kd(s[idx], t[idx], y[idx], 2.0, 0.9)), rel=1e-6)


@pytest.mark.parametrize("kwargs,match", [
    ({"temperature": 0.0, "alpha": 0.5}, "temperature"),
    ({"temperature": 2.0, "alpha": 1.5}, "alpha"),
    ({"temperature": 2.0, "alpha": -0.1}, "alpha"),
])
def test_bad_settings(batch, kwargs, match):
    _, t, y = batch
    with pytest.raises(ConfigError, match=match):
        KDTargets(t, y, **kwargs)


def test_soft_term_needs_teacher(batch):
    _, _, y = batch
    with pytest.raises(ValueError, match="teacher logits"):
        KDTargets(None, y, 2.0, 0.5)
