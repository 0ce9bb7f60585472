"""analog_crossbar presets against the published figures of their papers, on the papers' workloads.

Each test runs the paper's own MVM shape through ``cost()`` and compares with a figure the paper
reports, within the tolerance stated next to the citation. Where the model does not reproduce a
headline figure, the test says so and pins the size of the gap (it is not a validation).
"""

import pytest

from codesign.devices.analog_crossbar import AnalogCrossbarDevice

# --------------------------------------------------------------------------- IBM HERMES
# M. Le Gallo et al., 'A 64-core mixed-signal in-memory compute chip based on phase-change memory
# for deep neural network inference', Nat. Electron. 6, 680 (2023), abstract: for 8-bit
# input/output MVMs in the one-phase read mode the chip reaches 63.1 TOPS at 9.76 TOPS/W
# (four-phase: 16.1 TOPS at 2.48 TOPS/W); 64 cores of 256 x 256. One MVM is 256 x 256 MACs =
# 2 x 65536 operations, so 63.1 TOPS over 64 cores is one MVM per core every 132.9 ns.
HERMES_TOPS, HERMES_TOPS_PER_W, HERMES_CORES = 63.1, 9.76, 64
HERMES_OPS_PER_MVM = 2 * 256 * 256
HERMES_MVM_NS = HERMES_OPS_PER_MVM / (HERMES_TOPS * 1e12 / HERMES_CORES) * 1e9  # 132.9 ns
HERMES_LATENCY_TOL = 0.05  # the model's 128 unit pulses of 1 ns omit the readout after the pulse


def test_hermes_full_core_mvm_latency_matches_the_chip_throughput():
    dev = AnalogCrossbarDevice.from_preset("ibm_hermes")
    c = dev.cost(256, 256)  # one full core, 8-bit in / 8-bit out
    assert c["n_tiles"] == 1 and c["n_adc_conversions"] == 256  # one conversion per column
    assert HERMES_MVM_NS == pytest.approx(132.9, abs=0.05)
    assert c["latency_ns"] == pytest.approx(128.0)  # 2^7 unit pulses of the 1 GHz clock
    assert c["latency_ns"] == pytest.approx(HERMES_MVM_NS, rel=HERMES_LATENCY_TOL)
    # the whole chip: 64 cores in parallel
    tops = HERMES_CORES * HERMES_OPS_PER_MVM / c["latency_ns"] * 1e-3
    assert tops == pytest.approx(HERMES_TOPS, rel=HERMES_LATENCY_TOL)
    assert dev.feasibility(256, 256 * HERMES_CORES) == []
    assert dev.feasibility(256, 256 * HERMES_CORES + 1) != []


def test_hermes_energy_efficiency_is_not_reproduced_the_gap_is_pinned():
    """Measured 9.76 TOPS/W (0.205 pJ/MAC); the model gives ~51 TOPS/W, 5.3x optimistic.

    The model prices the PCM array (V_read^2 G t), one ISAAC-type drive per input line and a
    SAR ADC conversion per column; the chip's figure also carries the local digital processing
    units, clocking, control and static power, and no per-conversion energy of its CCO ADCs was
    found. The bound below documents the gap; it is not a validation of the energy.
    """
    c = AnalogCrossbarDevice.from_preset("ibm_hermes").cost(256, 256)
    model_tops_per_w = HERMES_OPS_PER_MVM / c["energy_pj"]  # ops / pJ = TOPS/W
    assert model_tops_per_w == pytest.approx(51.44, rel=0.01)
    assert 4.0 < model_tops_per_w / HERMES_TOPS_PER_W < 7.0


# --------------------------------------------------------------------------- ISAAC
# A. Shafiee et al., ISAAC, ISCA 2016: an IMA has 8 crossbars of 128 x 128, one 8-bit 1.2 GS/s
# ADC per crossbar (8 ADCs: 16 mW), 8 x 128 1-bit DACs (4 mW) and 4 shift-and-add units
# (0.2 mW); 16-bit inputs are streamed one bit per 100 ns cycle. (Component powers as tabulated,
# with their derivations, in Accelergy-Project/hwcomponents-library, library/isaac.py.)
# Per crossbar: ADC 2 mW, DACs 0.5 mW, shift-and-add 0.025 mW.
ISAAC_ADC_MW, ISAAC_DAC_MW, ISAAC_SA_MW = 16.0 / 8, 4.0 / 8, 0.2 / 8
ISAAC_ADC_GSPS = 1.2
# 10 %: the model converts 128 columns per 100 ns cycle (1.28 GS/s against the ADC's 1.2) and
# prices each drive at ISAAC's 0.41667 pJ, which includes a 128/100 utilization factor.
ISAAC_TOL = 0.10


def test_isaac_crossbar_converter_powers_match_the_ima_budget():
    dev = AnalogCrossbarDevice.from_preset("isaac")
    c = dev.cost(128, 128)  # one full crossbar, 16-bit inputs, bit-serial
    assert c["latency_ns"] == pytest.approx(16 * 100.0)
    assert c["n_adc_conversions"] == 128 * 16  # one conversion per column per input bit
    gsps = c["n_adc_conversions"] / c["latency_ns"]
    assert gsps == pytest.approx(ISAAC_ADC_GSPS, rel=ISAAC_TOL)
    # pJ / ns = mW
    assert c["adc_pj"] / c["latency_ns"] == pytest.approx(ISAAC_ADC_MW, rel=ISAAC_TOL)
    assert c["dac_pj"] / c["latency_ns"] == pytest.approx(ISAAC_DAC_MW, rel=ISAAC_TOL)
    assert c["shift_add_pj"] / c["latency_ns"] == pytest.approx(ISAAC_SA_MW, rel=ISAAC_TOL)
