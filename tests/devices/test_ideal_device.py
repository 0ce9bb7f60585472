"""ideal: the exact reference and its Horowitz-table cost model."""

import pytest
import torch

from codesign.devices.digital import DATAPATHS, DRAM_ACCESS_PJ, SRAM_BITCELL_UM2, sram_access_pj
from codesign.devices.ideal import IdealDevice


def test_exact_product_in_every_mode():
    layer = IdealDevice().layer(7, 3)
    k_mat = torch.randn(3, 7)
    layer.load_matrix(k_mat)
    x = torch.randn(11, 7)
    for train in (True, False):
        layer.train(train)
        assert torch.allclose(layer(x), x @ k_mat.T, atol=1e-6)
    layer.draw_instance(5)
    assert torch.allclose(layer(x), x @ k_mat.T, atol=1e-6)
    assert torch.equal(layer.effective_matrix(), k_mat)


def test_cost_hand_count_fp32():
    c = IdealDevice(datapath="fp32", clock_mhz=500.0, macs_per_cycle=4).cost(4, 2)
    # 8 MACs x (3.7 + 0.9) pJ; (8 weights + 4 inputs + 2 outputs) x 32 bit = 448 bit = 7
    # 64-bit words from an 8 KB-class SRAM at 10 pJ each
    assert c["n_macs"] == 8 and c["memory_words_64b"] == 7
    assert c["energy_pj"] == pytest.approx(8 * 4.6 + 7 * 10.0)
    assert c["cycles"] == 2 and c["latency_ns"] == pytest.approx(4.0)
    assert c["area_mm2"] == pytest.approx((4 * (7700 + 4184) + 448 * SRAM_BITCELL_UM2) * 1e-6)


def test_cost_grows_with_size_and_word_width():
    dev = IdealDevice()
    assert dev.cost(2000, 10)["energy_pj"] > dev.cost(100, 10)["energy_pj"]
    energies = [dev.with_overrides({"datapath": d}).cost(861, 10)["energy_pj"] for d in DATAPATHS]
    by_name = dict(zip(DATAPATHS, energies))
    assert by_name["int8"] < by_name["fp16"] < by_name["fp32"]
    assert by_name["int8"] < by_name["int32"]


def test_search_space_is_empty():
    assert IdealDevice.search_space() == {}


def test_sram_price_is_horowitz_at_his_sizes_and_smooth_between():
    # Horowitz, ISSCC 2014: 64-bit read 10 pJ from 8 KB, 20 pJ from 32 KB, 100 pJ from 1 MB
    assert sram_access_pj(8 * 1024) == pytest.approx(10.0)
    assert sram_access_pj(32 * 1024) == pytest.approx(20.0)
    assert sram_access_pj(1024 * 1024) == pytest.approx(100.0)
    assert sram_access_pj(100) == 10.0 and sram_access_pj(1e15) == DRAM_ACCESS_PJ
    # no step at a size boundary: one byte more costs (almost) nothing more
    assert sram_access_pj(32 * 1024 + 1) / sram_access_pj(32 * 1024) < 1.0001
    # the 861 x 10 fp32 matrix with its vectors (37 KB) was priced at the 1 MB tier (100 pJ) before
    kb = (861 * 10 + 861 + 10) * 4 / 1024
    assert 21.0 < sram_access_pj(kb * 1024) < 21.6


@pytest.mark.parametrize(("preset", "mac_pj"), [("horowitz45_fp32", 3.7 + 0.9), ("horowitz45_int8", 0.2 + 0.1)])
def test_presets_reproduce_horowitz_mac_energy(preset, mac_pj):
    # Horowitz 2014 table: fp32 multiply 3.7 + add 0.9 pJ; int8 multiply 0.2 + int32 add 0.1 pJ
    # (tolerance: exact, the table is the model)
    c = IdealDevice.from_preset(preset).cost(861, 10)
    assert c["mac_pj"] / c["n_macs"] == pytest.approx(mac_pj)
    # plus the weights read from a 37 KB (fp32) or 9.3 KB (int8) SRAM at 21.4 or 10.4 pJ per 64 bits
    per_mac = c["energy_pj"] / c["n_macs"]
    expected = {"horowitz45_fp32": (16.2, 16.6), "horowitz45_int8": (1.7, 1.9)}[preset]
    assert expected[0] < per_mac < expected[1]
