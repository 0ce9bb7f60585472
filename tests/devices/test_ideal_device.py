"""ideal: the exact reference and its Horowitz-table cost model."""

import pytest
import torch

from codesign.devices.ideal import DATAPATHS, SRAM_BITCELL_UM2, IdealDevice


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
