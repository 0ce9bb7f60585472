"""The layer helpers in codesign.devices.base: quantizer, DAC, calibrated range, instance generators."""

import pytest
import torch

from codesign.devices.base import CalibratedRange, dac, instance_generator, quantize_symmetric


@pytest.mark.parametrize("bits", [1, 2, 3, 5])
def test_quantize_symmetric_levels(bits):
    x = torch.linspace(-1.5, 1.5, 10001)
    q = quantize_symmetric(x, 1.0, bits)
    levels = q.unique()
    assert len(levels) == (2 if bits == 1 else 2**bits - 1)
    assert levels.abs().max() == pytest.approx(1.0)  # saturates at full scale


def test_quantize_symmetric_clipped_straight_through_gradient():
    x = torch.tensor([-2.0, -0.3, 0.2, 0.9, 1.7], requires_grad=True)
    quantize_symmetric(x, 1.0, 4).sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 0.0]


def test_quantize_symmetric_high_bits_is_identity_to_float_precision():
    x = torch.randn(1000)
    assert torch.allclose(quantize_symmetric(x, x.abs().max(), 32), x, atol=1e-6)


def test_dac_codes_rescale_to_quantized_input():
    x = torch.randn(64, 30) * 3
    codes, lsb, amax = dac(x, 4)
    assert codes.abs().max() <= 7 and torch.equal(codes, codes.round())
    assert torch.allclose(amax.squeeze(1), x.abs().amax(1))
    expect = quantize_symmetric(x / amax, 1.0, 4) * amax
    assert torch.allclose(codes * lsb * amax, expect, atol=1e-6)


def test_dac_passes_gradient_when_input_requires_it():
    x = torch.randn(8, 5, requires_grad=True)
    codes, lsb, amax = dac(x, 6)
    (codes * lsb * amax).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_calibrated_range_tracks_in_training_and_freezes_in_eval():
    r = CalibratedRange(momentum=0.5)
    r.train()
    assert r(torch.tensor([1.0, -4.0])).item() == 4.0  # first batch initialises
    assert r(torch.tensor([2.0])).item() == 3.0  # EMA
    r.eval()
    assert r(torch.tensor([100.0])).item() == 3.0  # frozen
    r.reset()
    assert r(torch.tensor([5.0])).item() == 5.0  # never-trained eval calibrates once
    assert r(torch.tensor([7.0])).item() == 5.0


def test_instance_generators_are_seeded_and_leave_global_rng_alone():
    state = torch.get_rng_state()
    a = torch.randn(5, generator=instance_generator(3, 0))
    b = torch.randn(5, generator=instance_generator(3, 0))
    c = torch.randn(5, generator=instance_generator(3, 1))
    d = torch.randn(5, generator=instance_generator(4, 0))
    assert torch.equal(a, b) and not torch.equal(a, c) and not torch.equal(a, d)
    assert torch.equal(torch.get_rng_state(), state)
