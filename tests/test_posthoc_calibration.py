"""A post-hoc layer's converter ranges come from training data, never from the split it is scored on."""

from __future__ import annotations

import torch

from codesign.devices import create_device
from codesign.distill import CALIBRATION_ROWS, DistillConfig, calibrate_layer, calibration_rows, run_distill
from codesign.students import FitConfig


def test_calibration_rows_are_evenly_strided_and_keep_small_sets_whole():
    x = torch.arange(10_000).float().reshape(-1, 1)
    rows = calibration_rows(x)
    assert len(rows) == CALIBRATION_ROWS
    assert rows[0, 0] == 0 and rows[-1, 0] == 9_999  # first and last row, in order
    assert bool((rows[1:, 0] > rows[:-1, 0]).all())
    small = torch.ones(7, 3)
    assert calibration_rows(small) is small


def test_calibrate_layer_sets_the_ranges_from_its_batch_and_freezes_them():
    device = create_device("analog_crossbar", {"input_range": "calibrated"})
    layer = device.layer(6, 3)
    layer.load_matrix(torch.randn(3, 6, generator=torch.Generator().manual_seed(0)))
    train = torch.randn(256, 6, generator=torch.Generator().manual_seed(1))
    calibrate_layer(layer, train)
    assert not layer.training
    adc, inp = float(layer.adc_range.value), float(layer.input_range.value)
    assert adc > 0 and 0 < inp <= float(train.abs().max())
    with torch.no_grad():  # reading a batch ten times larger leaves them as they were
        layer(10 * train)
    assert float(layer.adc_range.value) == adc and float(layer.input_range.value) == inp


def test_posthoc_distill_calibrates_on_training_rows(digits, digits_teacher):
    """The K layer run_distill scores is calibrated on the training features: a fresh layer
    calibrated on the same rows has the same ADC range, and one calibrated on the test split
    (what reading it first would do) another."""
    res = run_distill(DistillConfig(dataset="digits", pca_rank=8, device="analog_crossbar",
                                    fit=FitConfig(method="labels"), hw_draws=2))
    stored = float(res.layer.adc_range.value)
    assert torch.isfinite(torch.tensor(stored))

    def calibrated_on(psi):
        layer = create_device("analog_crossbar").layer(res.student.K_.shape[1], res.student.K_.shape[0])
        layer.load_matrix(res.student.K_)
        calibrate_layer(layer, calibration_rows(psi))
        return float(layer.adc_range.value)

    train_psi = res.features.train[: len(digits.y_train)]
    assert calibrated_on(train_psi) == stored
    assert calibrated_on(res.features.test) != stored
