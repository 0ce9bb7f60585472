"""How an analog device's input DAC is given its full scale: per vector, or one calibrated range.

Two modes (config field ``input_range``, shared by the analog crossbar and the photonic mesh):

* ``"vector_absmax"``: every input vector is scaled digitally by its own absolute maximum into
  the DAC's ``[-1, 1]`` (aihwkit's ``NoiseManagementType.ABS_MAX``; :func:`~codesign.devices.base.dac`).
  The periphery searches the maximum of each vector (one compare per input) and multiplies every
  input by its reciprocal;
* ``"calibrated"``: one range per layer, set at the ``input_percentile`` of ``|x|`` seen in
  training (frozen in eval, saved with the layer) and inputs beyond it clipped (the fixed, clipping
  range of aihwkit's ``InputRangeParameter``, which aihwkit can also learn; the FPGA device's
  percentile calibration;
  :class:`PercentileRange`, :func:`range_dac`). Only the multiply by the constant ``1 / range``
  remains per input: the features are heavy-tailed, so the range sits below the largest inputs
  and the DAC's steps are finer for the typical one.

Either way the output is rescaled digitally by the scale the inputs were divided by. The fields
(:func:`input_range_field`, :func:`input_percentile_field`) carry the same names, ranges and
docs on every device that uses them.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch

from codesign.errors import ConfigError

from .base import CalibratedRange, quantize_symmetric

#: The values of a device config's ``input_range`` field.
INPUT_RANGES = ("vector_absmax", "calibrated")
#: Values of ``|x|`` a calibration percentile is taken over (a strided sample of a larger batch).
INPUT_SAMPLE = 1 << 20

INPUT_RANGE_DOC = (
    "'vector_absmax': each input vector scaled by its abs-max (aihwkit ABS_MAX noise management; priced: a max "
    "and a multiply per input); 'calibrated': one range per layer at the input_percentile of |x| seen in "
    "training, inputs clipped (as aihwkit's input range, the FPGA's percentile; priced: a multiply per input)"
)
INPUT_PERCENTILE_DOC = "input_range='calibrated': percentile of |x| the range is set to"


def input_range_field() -> Any:
    """The ``input_range`` config field: ``"vector_absmax"`` (default) or ``"calibrated"``."""
    return dataclasses.field(default="vector_absmax", metadata={"doc": INPUT_RANGE_DOC})


def input_percentile_field() -> Any:
    """The ``input_percentile`` config field: 99.99 by default, in [50, 100]."""
    return dataclasses.field(default=99.99, metadata={"range": (50.0, 100.0), "doc": INPUT_PERCENTILE_DOC})


def check_input_range(value: Any) -> None:
    """``ConfigError`` unless ``value`` is one of :data:`INPUT_RANGES`, saying what each one does."""
    if value not in INPUT_RANGES:
        raise ConfigError(
            f"input_range={value!r}: expected 'vector_absmax' (each input vector scaled by its abs-max) or "
            "'calibrated' (one range at input_percentile of |x| seen in training, inputs clipped)"
        )


class PercentileRange(CalibratedRange):
    """Input range calibrated at a percentile of ``|x|`` (aihwkit's input range, the FPGA's percentile).

    As :class:`~codesign.devices.base.CalibratedRange` (moving average in training, frozen in
    eval, a calibration pass on the first batch of a layer never trained; its ``value`` buffer
    is saved in the layer's state dict), each batch asking for the percentile of ``|x|`` over a
    strided sample of at most :data:`INPUT_SAMPLE` values instead of the maximum.
    """

    def __init__(self, percentile: float, momentum: float = 0.1) -> None:
        super().__init__(momentum)
        self.q = percentile / 100.0

    def batch_value(self, x: torch.Tensor) -> torch.Tensor:
        """The percentile of ``|x|`` of one batch."""
        flat = x.detach().abs().reshape(-1)
        flat = flat[:: max(1, flat.numel() // INPUT_SAMPLE)].float()
        return flat.kthvalue(max(1, min(flat.numel(), math.ceil(self.q * flat.numel())))).values


def range_dac(x: torch.Tensor, full_scale: torch.Tensor, bits: int) -> tuple[torch.Tensor, float, torch.Tensor]:
    """An input DAC of fixed full scale: ``x / full_scale`` clipped to ``[-1, 1]``, ``bits`` levels.

    The calibrated counterpart of :func:`~codesign.devices.base.dac`, with the same return
    convention. Inputs beyond the range are clipped; gradients reach ``x`` straight through
    inside the range and not beyond it (:func:`~codesign.devices.base.quantize_symmetric`).

    Args:
        x: ``[batch, in]`` inputs.
        full_scale: the calibrated range, a scalar tensor (:class:`PercentileRange`).
        bits: DAC resolution, >= 1.

    Returns:
        ``(codes, lsb, scale)`` with ``clip(x, -r, r) ~= codes * lsb * scale``; ``codes`` in
        ``[-(2**(bits-1) - 1), 2**(bits-1) - 1]`` (``+-1`` for one bit), ``scale`` is ``[1, 1]``.
    """
    qmax = 1 if bits == 1 else 2 ** (bits - 1) - 1
    codes = quantize_symmetric(x / full_scale, 1.0, bits) * qmax  # clipped at the range
    return codes, 1.0 / qmax, full_scale.reshape(1, 1)


__all__ = [
    "INPUT_PERCENTILE_DOC",
    "INPUT_RANGES",
    "INPUT_RANGE_DOC",
    "INPUT_SAMPLE",
    "PercentileRange",
    "check_input_range",
    "input_percentile_field",
    "input_range_field",
    "range_dac",
]
