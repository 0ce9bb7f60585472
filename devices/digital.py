"""The digital cost model: per-operation energy and area of a CMOS datapath and its SRAM.

Used by the ``ideal`` device (a digital MAC array) and by the digital host that runs the
stages of an inference no device takes (the PCA projection by default, the lifting).
Energies and areas are M. Horowitz's 45 nm table ("Computing's energy problem (and what we can
do about it)", ISSCC 2014, Fig. 1.1.9, 0.9 V): integer add 8 b 0.03 pJ / 36 um^2,
32 b 0.1 pJ / 137 um^2; integer multiply 8 b 0.2 pJ / 282 um^2, 32 b 3.1 pJ / 3495 um^2;
float add 16 b 0.4 pJ / 1360 um^2, 32 b 0.9 pJ / 4184 um^2; float multiply 16 b 1.1 pJ /
1640 um^2, 32 b 3.7 pJ / 7700 um^2; a 64-bit read from an 8 KB SRAM 10 pJ, 32 KB 20 pJ,
1 MB 100 pJ; from DRAM 1.3-2.6 nJ.

Memory accesses are priced by the capacity the stage's data occupies, interpolated between
Horowitz's three SRAM sizes on a log-log scale (access energy grows about as the square root
of the capacity: x2 from 8 to 32 KB, x5 from 32 KB to 1 MB), so the price rises smoothly with
the footprint instead of jumping 5x at a tier boundary. Below 8 KB the 8 KB price holds (no
smaller point is published in the table); above 1 MB the 32 KB-1 MB slope continues up to the
DRAM price, which caps it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

from codesign.opcounts import OpCounts


@dataclass(frozen=True)
class Datapath:
    """One number format's multiply and accumulate (Horowitz 2014, 45 nm)."""

    bits: int
    mult_pj: float
    add_pj: float
    mult_um2: float
    add_um2: float


#: Integer datapaths accumulate in 32 bits, float ones in their own format (Horowitz 2014).
DATAPATHS: Mapping[str, Datapath] = {
    "fp32": Datapath(32, 3.7, 0.9, 7700.0, 4184.0),
    "fp16": Datapath(16, 1.1, 0.4, 1640.0, 1360.0),
    "int32": Datapath(32, 3.1, 0.1, 3495.0, 137.0),
    "int8": Datapath(8, 0.2, 0.1, 282.0, 137.0),
}

#: The digital host's default number format (PCA projection and lift): int8 codes with int32
#: accumulation, as an edge inference host runs a linear layer (Jacob et al., "Quantization and
#: training of neural networks for efficient integer-arithmetic-only inference", CVPR 2018:
#: 8-bit weights and activations, 32-bit accumulators, the scheme of TensorFlow Lite and of
#: CMSIS-NN's kernels). MNIST pixels are 8-bit already; an fp32 host would spend 88 % of an
#: inference on the projection (Horowitz: 3.7 + 0.9 pJ per fp32 MAC against 0.2 + 0.1 in int8).
#: The format is simulated (codesign.features.host_quantize), so the accuracy reflects it.
DEFAULT_HOST_DATAPATH = "int8"

#: (capacity in bytes, energy of one 64-bit access in pJ): Horowitz 2014's SRAM points.
SRAM_POINTS_PJ: tuple[tuple[float, float], ...] = ((8 * 1024, 10.0), (32 * 1024, 20.0), (1024 * 1024, 100.0))
#: 64-bit DRAM access, pJ: midpoint of Horowitz 2014's 1.3-2.6 nJ; caps the SRAM extrapolation.
DRAM_ACCESS_PJ = 1950.0
#: 45 nm 6T SRAM cell, um^2 (Mistry et al., IEDM 2007), periphery excluded.
SRAM_BITCELL_UM2 = 0.346
#: An exponential as multiplies and adds: Cody-Waite range reduction n = round(x log2 e),
#: r = x - n ln 2 (2 multiplies, 2 adds), a degree-6 Horner polynomial (6 multiplies, 6 adds)
#: and the 2^n scaling as an exponent add (1 add), as Cephes' ``expf`` computes it.
EXP_MULTS, EXP_ADDS = 8, 9


def sram_access_pj(capacity_bytes: float) -> float:
    """Energy of one 64-bit access to an SRAM holding ``capacity_bytes``, pJ (see the module doc)."""
    pts = SRAM_POINTS_PJ
    if capacity_bytes <= pts[0][0]:
        return pts[0][1]
    for (c0, e0), (c1, e1) in zip(pts, pts[1:]):
        if capacity_bytes <= c1:
            break
    slope = math.log(e1 / e0) / math.log(c1 / c0)
    return min(e0 * (capacity_bytes / c0) ** slope, DRAM_ACCESS_PJ)


def digital_cost(ops: OpCounts, datapath: str, clock_mhz: float, units: int) -> dict[str, float]:
    """Energy, latency and area of ``ops`` on a digital datapath of ``units`` MAC units.

    Energy: every multiply and add at the datapath's price (an exponential as
    :data:`EXP_MULTS` multiplies and :data:`EXP_ADDS` adds), plus 64-bit memory words for the
    stored parameters and inputs read and the outputs written, priced at the capacity they
    occupy together (:func:`sram_access_pj`). Latency: one multiply and one add per unit per
    cycle. Area: the MAC units plus the SRAM cells of that footprint.

    Returns:
        ``energy_pj``, ``latency_ns``, ``area_mm2``, the components ``arithmetic_pj`` and
        ``memory_pj``, and the counts ``cycles``, ``memory_words_64b``, ``storage_bits``.
    """
    dp = DATAPATHS[datapath]
    mults = ops.mults + EXP_MULTS * ops.exps
    adds = ops.adds + EXP_ADDS * ops.exps
    storage_bits = (ops.params + ops.inputs + ops.outputs) * dp.bits
    words = math.ceil(ops.params * dp.bits / 64) + math.ceil(ops.inputs * dp.bits / 64) + math.ceil(
        ops.outputs * dp.bits / 64)
    arithmetic_pj = mults * dp.mult_pj + adds * dp.add_pj
    memory_pj = words * sram_access_pj(storage_bits / 8)
    cycles = math.ceil(max(mults, adds) / units)
    area_um2 = units * (dp.mult_um2 + dp.add_um2) + storage_bits * SRAM_BITCELL_UM2
    return {
        "energy_pj": arithmetic_pj + memory_pj,
        "latency_ns": cycles * 1e3 / clock_mhz,
        "area_mm2": area_um2 * 1e-6,
        "arithmetic_pj": arithmetic_pj,
        "memory_pj": memory_pj,
        "cycles": float(cycles),
        "memory_words_64b": float(words),
        "storage_bits": float(storage_bits),
    }


def matvec_ops(in_features: int, out_features: int) -> OpCounts:
    """A dense ``out x in`` matrix-vector product: one multiply-add per weight, weights read."""
    macs = in_features * out_features
    return OpCounts(mults=macs, adds=macs, params=macs, inputs=in_features, outputs=out_features)
