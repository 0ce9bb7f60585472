"""codesign.inference_cost: the whole inference (PCA, lift, conversions, K), priced stage by stage."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from codesign.devices import create_device, list_devices
from codesign.devices.digital import DATAPATHS, sram_access_pj
from codesign.dictionaries import Dictionary, create_dictionary
from codesign.distill import DistillConfig, Workspace, run_distill
from codesign.errors import ConfigError
from codesign.devices.base import OPERATING_MODES
from codesign.inference_cost import STAGES, STATIC_KEYS, TOTAL_KEYS, flat_cost, inference_cost
from codesign.artifacts import load_student, save_student

BUILTINS = ("ideal", "photonic_mzi", "analog_crossbar", "fpga_fixed_point")


def _cost(device="ideal", rank=40, dictionary=None, placement="host", **kw):
    kw.setdefault("host_datapath", "fp32")  # the hand counts below are Horowitz's fp32 figures
    d = dictionary or create_dictionary("monomial", degree=2)
    return inference_cost(create_device(device), n_inputs=784, rank=rank, dictionary=d, n_classes=10,
                          pca_placement=placement, **kw)


@pytest.mark.parametrize("device", BUILTINS)
@pytest.mark.parametrize("placement", ["host", "device"])
@pytest.mark.parametrize("dictionary", [("monomial", {"degree": 2}), ("monomial", {"degree": 3}), ("rbf", {"centers": 100}),
                                        ("rff", {"features": 500})])
def test_stages_sum_to_the_totals(device, placement, dictionary):
    c = _cost(device, rank=12, dictionary=create_dictionary(dictionary[0], **dictionary[1]), placement=placement)
    if device == "photonic_mzi" and placement == "device":  # 12 x 784 more of heaters: above 300 W, still priced
        assert not c["feasible"] and "max_power_w=300 W" in c["infeasible"][0]
    else:
        assert c["feasible"] and c["infeasible"] == []
    assert list(c["stages"]) == list(STAGES)
    for key in TOTAL_KEYS:
        assert c[key] > 0
        assert sum(s[key] for s in c["stages"].values()) == pytest.approx(c[key], rel=1e-12)
    assert c["stages"]["pca"]["runs_on"] == placement
    assert c["stages"]["lift"]["runs_on"] == "host" and c["stages"]["matrix"]["runs_on"] == "device"
    # the conversion stage is exactly the device's converter energies, for K (and the PCA on it)
    dev = create_device(device)
    conv = type(dev).conversion_keys
    expected = sum(c["device"][k] for k in conv) + sum(c.get("pca_device", {}).get(k, 0.0) for k in conv)
    assert c["stages"]["conversion"]["energy_pj"] == pytest.approx(expected)


def test_pca_on_the_host_by_hand():
    # r = 40 scores of 784 fp32 pixels: 31,360 multiply-adds (3.7 + 0.9 pJ, Horowitz 2014) plus
    # 40 adds for the mean offset; 64-bit words read: 15,680 of weights, 392 of input, 20 written,
    # priced at the SRAM size of that footprint
    c = _cost("ideal", rank=40)
    words = 31360 // 2 + 784 // 2 + 40 // 2
    sram = sram_access_pj((31360 + 784 + 40) * 4)
    assert c["stages"]["pca"]["energy_pj"] == pytest.approx(31360 * 4.6 + 40 * 0.9 + words * sram)
    assert c["stages"]["pca"]["latency_ns"] == pytest.approx(math.ceil((31360 + 40) / 64))
    # at r = 40, degree 2 the projection costs more than K (861 x 10) on the same digital array
    assert c["stages"]["pca"]["energy_pj"] > c["stages"]["matrix"]["energy_pj"]


def test_lift_ops_count_what_transform_computes():
    m2 = create_dictionary("monomial", degree=2).lift_ops(40)
    assert (m2.mults, m2.adds, m2.exps, m2.outputs) == (820, 0, 0, 861)  # r (r + 1) / 2 products
    m3 = create_dictionary("monomial", degree=3).lift_ops(20)
    assert m3.mults == 1771 - 21  # every monomial of degree 2 and 3 is one product
    rbf = create_dictionary("rbf", centers=100).lift_ops(40)
    # per centre: 40 differences + 39 adds of squares, 40 squares + 1 scale, 1 exponential
    assert (rbf.mults, rbf.adds, rbf.exps, rbf.params) == (100 * 41, 100 * 79, 100, 4000)
    rff = create_dictionary("rff", features=1000).lift_ops(40)
    # per feature: 40 multiplies, 39 adds + 1 phase add, 1 cosine (priced as an exponential); W and u read
    assert (rff.mults, rff.adds, rff.exps, rff.params, rff.outputs) == (40_000, 40_000, 1000, 41_000, 1041)


def test_rff_lift_by_hand_on_the_fp32_host():
    # 1000 features at r = 40 on the fp32 host: 40,000 MACs (3.7 + 0.9 pJ) and 1000 cosines at the
    # exponential's 8 multiplies + 9 adds (devices.digital.EXP_MULTS / EXP_ADDS, Horowitz 2014 prices)
    from codesign.devices.digital import EXP_ADDS, EXP_MULTS, digital_cost

    ops = create_dictionary("rff", features=1000).lift_ops(40)
    got = digital_cost(ops, "fp32", 1000.0, 64)
    assert got["arithmetic_pj"] == pytest.approx(40_000 * 4.6 + 1000 * (EXP_MULTS * 3.7 + EXP_ADDS * 0.9))
    c = _cost("ideal", rank=40, dictionary=create_dictionary("rff", features=1000), host_datapath="fp32")
    assert c["lift_ops"] == ops.as_dict() and c["stages"]["lift"]["runs_on"] == "host"
    assert c["stages"]["lift"]["energy_pj"] > got["arithmetic_pj"]


def test_the_host_datapath_prices_the_host_stages():
    fp32, int8 = _cost("analog_crossbar", host_datapath="fp32"), _cost("analog_crossbar", host_datapath="int8")
    assert int8["stages"]["pca"]["energy_pj"] < fp32["stages"]["pca"]["energy_pj"] / 5
    assert int8["stages"]["matrix"] == fp32["stages"]["matrix"]  # the device's share does not move
    with pytest.raises(ConfigError, match="host_datapath='fp64'"):
        _cost(host_datapath="fp64")
    assert set(DATAPATHS) == {"fp32", "fp16", "int32", "int8"}


def test_an_infeasible_design_is_not_priced():
    dev = create_device("photonic_mzi", {"block_size": 64})
    c = inference_cost(dev, n_inputs=784, rank=40, dictionary=create_dictionary("monomial"), n_classes=10)
    assert c["feasible"] is False and c["stages"] is None
    assert all(c[k] is None for k in TOTAL_KEYS)
    assert len(c["infeasible"]) == 1 and "max_waveguide_power_dbm" in c["infeasible"][0]
    assert c["infeasible"][0].startswith("matrix K (10 x 861)")
    assert c["device"]["optical_depth"] == 129 and not any(k.endswith("_pj") for k in c["device"])
    assert set(flat_cost(c)) == set(c["device"])  # only the counts, no price
    # the PCA projection on the device is checked too: 784 inputs need more crossbar tiles
    xbar = create_device("analog_crossbar", {"max_tiles": 1})
    c = inference_cost(xbar, n_inputs=784, rank=300, dictionary=create_dictionary("monomial", degree=1),
                       n_classes=10, pca_placement="device")
    assert not c["feasible"] and any(r.startswith("PCA projection (300 x 784)") for r in c["infeasible"])


def test_flat_cost_columns():
    c = _cost("photonic_mzi", rank=20)
    flat = flat_cost(c)
    assert flat["energy_pj"] == c["energy_pj"]
    for s in STAGES:
        assert flat[f"{s}_energy_pj"] == c["stages"][s]["energy_pj"]
    assert flat["n_mzi"] == c["device"]["n_mzi"] and flat["laser_static_mw"] == c["device"]["laser_static_mw"]
    assert flat["laser_static_pj"] == c["static"]["laser"]["energy_pj"]
    assert flat["static_energy_pj"] == c["static_energy_pj"] and flat["interval_ns"] == c["interval_ns"]
    assert c["matrix_energy_per_mac_pj"] == pytest.approx(c["stages"]["matrix"]["energy_pj"] / (231 * 10))


def test_a_dictionary_that_does_not_count_its_ops_is_named():
    class Uncounted(Dictionary):
        name = "uncounted"

        def n_features(self, rank):
            return rank + 1

        def transform(self, z):
            return z

    with pytest.raises(ConfigError, match="dictionary 'uncounted' does not count its operations.*lift_ops"):
        inference_cost(create_device("ideal"), n_inputs=64, rank=4, dictionary=Uncounted(), n_classes=10)


def test_every_installed_device_is_costed_the_same_way():
    for name in list_devices():
        c = _cost(name, rank=8)
        if c["feasible"]:
            assert set(c["stages"]) == set(STAGES)


# --------------------------------------------------------------------------- through distill
@pytest.fixture(scope="module")
def ws():
    return Workspace()


def test_distill_reports_the_whole_inference(ws, digits_teacher):
    m = run_distill(DistillConfig(device="analog_crossbar", pca_rank=10), ws).metrics
    c = m["cost"]
    assert c["feasible"] and m["pca_placement"] == "host"
    assert sum(s["energy_pj"] for s in c["stages"].values()) == pytest.approx(c["energy_pj"])
    assert c["n_features"] == m["n_features"] == 66


def test_pca_on_the_ideal_device_changes_no_accuracy(ws, digits_teacher):
    host = run_distill(DistillConfig(device="ideal", pca_rank=10, host_datapath="fp32"), ws).metrics
    dev = run_distill(DistillConfig(device="ideal", pca_rank=10, pca_placement="device", host_datapath="fp32"),
                      ws).metrics
    assert dev["hw_accuracies"] == pytest.approx(host["hw_accuracies"], abs=1 / 360)
    assert dev["cost"]["stages"]["pca"]["runs_on"] == "device"


def test_pca_on_a_noisy_device_is_simulated_and_reloads(ws, digits_teacher, tmp_path, digits):
    cfg = DistillConfig(device="analog_crossbar", pca_rank=10, pca_placement="device", hw_draws=3,
                        device_overrides={"prog_noise": 0.2})
    result = run_distill(cfg, ws)
    host = run_distill(DistillConfig(device="analog_crossbar", pca_rank=10, hw_draws=3,
                                     device_overrides={"prog_noise": 0.2}), ws).metrics
    m = result.metrics
    # the projection's programming noise reaches the accuracy: the draws differ from the host's
    assert m["hw_accuracies"] != host["hw_accuracies"]
    save_student(tmp_path / "s.pt", result)
    st = load_student(tmp_path / "s.pt")
    again = st.hw_accuracy(digits.x_test, digits.y_test, draws=3, seed=cfg.seed)
    assert again == pytest.approx(m["hw_accuracies"], abs=1e-12)


def test_pca_on_a_device_needs_a_device():
    with pytest.raises(ConfigError, match="pca_placement='device'.*--device"):
        DistillConfig(pca_placement="device")
    with pytest.raises(ConfigError, match="pca_placement='gpu'"):
        DistillConfig(device="ideal", pca_placement="gpu")


def test_infeasible_distill_still_scores_but_does_not_price(ws, digits_teacher):
    m = run_distill(DistillConfig(device="photonic_mzi", pca_rank=6, device_overrides={"block_size": 64}), ws).metrics
    assert 0.5 < m["hw_accuracy_mean"] <= 1.0
    assert m["cost"]["feasible"] is False and m["cost"]["energy_pj"] is None
    assert np.isfinite(m["hw_accuracy_std"])


def test_cli_reports_the_unbuildable_design_and_its_limit(digits_teacher, capsys):
    import json

    from codesign.cli import main

    assert main(["distill", "--device", "photonic_mzi", "--set", "block_size=64", "--pca-rank", "6", "--json"]) == 0
    m = json.loads(capsys.readouterr().out)
    assert m["cost"]["feasible"] is False and m["cost"]["energy_pj"] is None
    assert "max_waveguide_power_dbm=20 dBm" in m["cost"]["infeasible"][0]
    assert main(["distill", "--device", "photonic_mzi", "--set", "block_size=64", "--pca-rank", "6"]) == 0
    out = capsys.readouterr().out
    assert "cost: INFEASIBLE (not priced)" in out and "block_size=64" in out


# --------------------------------------------------------------------------- held power (issue 26)
def _every_device_and_preset():
    from codesign.devices import get_device_class

    for name in list_devices():
        yield name, None
        for preset in get_device_class(name).presets():
            yield name, preset


@pytest.mark.parametrize("mode", OPERATING_MODES)
@pytest.mark.parametrize("name,preset", list(_every_device_and_preset()))
def test_every_held_component_is_charged_its_power_times_the_held_time(name, preset, mode):
    from codesign.devices import get_device_class

    dev = get_device_class(name).from_preset(preset) if preset else create_device(name)
    c = inference_cost(dev, n_inputs=784, rank=40, dictionary=create_dictionary("monomial", degree=2),
                       n_classes=10, operating_mode=mode)
    if c["energy_pj"] is None and name == "photonic_mzi":  # LT's 0.99 dB MZIs break the waveguide limit
        dev = dev.with_overrides({"max_waveguide_power_dbm": 30.0})
        c = inference_cost(dev, n_inputs=784, rank=40, dictionary=create_dictionary("monomial", degree=2),
                           n_classes=10, operating_mode=mode)
    assert c["energy_pj"] is not None, c["infeasible"]
    held = c["latency_ns"] if mode == "latency" else c["pipeline_interval_ns"]
    assert c["interval_ns"] == pytest.approx(held)
    assert c["pipeline_interval_ns"] <= c["latency_ns"] + 1e-9
    # every *_static_mw component the device reports is charged, for exactly the held time
    k_static = {k[: -len("_static_mw")]: v for k, v in c["device"].items() if k.endswith("_static_mw")}
    assert set(c["static"]) == set(k_static) or (not k_static and set(c["static"]) <= {"device"})
    for comp, h in c["static"].items():
        assert h["energy_pj"] == pytest.approx(h["power_mw"] * held, rel=1e-12)
        if comp in k_static:
            assert h["power_mw"] == k_static[comp]
    assert c["static_power_mw"] == pytest.approx(float(c["device"].get("static_power_mw", 0.0)))
    assert c["static_energy_pj"] == pytest.approx(c["static_power_mw"] * held)
    # dynamic + static, and the stages still sum to every total
    assert c["energy_pj"] == pytest.approx(c["dynamic_energy_pj"] + c["static_energy_pj"], rel=1e-12)
    for key in TOTAL_KEYS + STATIC_KEYS:
        assert sum(s[key] for s in c["stages"].values()) == pytest.approx(c[key], rel=1e-12)


def test_heaters_are_held_for_the_whole_inference_not_one_sample():
    # the issue's audit: 16,416 phases of a 10 x 861 K at the defaults hold ~407 W of heaters;
    # in latency mode they are held for the whole ~504 ns inference (the host's PCA included)
    dev = create_device("photonic_mzi", {"max_power_w": 0})
    lat = _cost_dev(dev, "latency")
    assert lat["device"]["heater_static_mw"] == pytest.approx(406_624.3, rel=1e-6)
    assert lat["static"]["heater"]["energy_pj"] == pytest.approx(406_624.3 * lat["latency_ns"], rel=1e-6)
    assert lat["static"]["heater"]["energy_pj"] > 2000 * 406_624.3 / dev.config.clock_ghz  # vs one 0.2 ns sample
    stream = _cost_dev(dev, "stream")
    # streaming: the host's MAC array (PCA + lift, 491 + 13 ns) is the slowest stage of the pipeline
    assert stream["interval_ns"] == pytest.approx(stream["stages"]["pca"]["latency_ns"] + stream["stages"]["lift"]["latency_ns"])
    assert stream["static_energy_pj"] < lat["static_energy_pj"]


def _cost_dev(dev, mode):
    return inference_cost(dev, n_inputs=784, rank=40, dictionary=create_dictionary("monomial", degree=2),
                          n_classes=10, operating_mode=mode, host_datapath="fp32")


def test_a_photonic_design_above_the_power_limit_is_infeasible_with_the_reason():
    c = _cost_dev(create_device("photonic_mzi"), "latency")
    assert c["feasible"] is False and c["energy_pj"] > 0  # priced: its power is the reason
    assert len(c["infeasible"]) == 1
    why = c["infeasible"][0]
    assert "photonic chip power 436.9 W" in why and "max_power_w=300 W" in why
    # non-volatile shifters hold no heater power: the same matrix fits
    ok = _cost_dev(create_device("photonic_mzi", {"phase_shifter": "nonvolatile"}), "latency")
    assert ok["feasible"] and "heater" in ok["static"] and ok["static"]["heater"]["power_mw"] == 0.0
    # a power-density limit is checked too
    dense = _cost_dev(create_device("photonic_mzi", {"max_power_w": 0, "max_power_density_w_per_cm2": 1.0}), "latency")
    assert not dense["feasible"] and "max_power_density_w_per_cm2=1 W/cm^2" in dense["infeasible"][0]


def test_the_fpga_is_held_at_its_rated_power():
    c = _cost_dev(create_device("fpga_fixed_point"), "latency")
    assert c["feasible"] and c["static"]["fpga"]["energy_pj"] == pytest.approx(113.0 * c["latency_ns"])
    # the FPGA's static power is held for the whole inference, the host's PCA included (not only
    # the MVAU's 1,350 cycles)
    assert c["latency_ns"] > c["stages"]["matrix"]["latency_ns"]
    hot = _cost_dev(create_device("fpga_fixed_point", {"static_power_w": 6.0}), "latency")
    assert not hot["feasible"] and "max_power_w=5.217 W" in hot["infeasible"][0]


def test_operating_mode_is_checked():
    with pytest.raises(ConfigError, match="operating_mode='batch'"):
        _cost(operating_mode="batch")


def test_the_default_host_is_int8_and_simulated(ws, digits_teacher):
    from codesign.devices.digital import DEFAULT_HOST_DATAPATH

    assert DEFAULT_HOST_DATAPATH == "int8" and DistillConfig().host_datapath == "int8"
    r8 = run_distill(DistillConfig(device="ideal", pca_rank=10), ws)
    r32 = run_distill(DistillConfig(device="ideal", pca_rank=10, host_datapath="fp32"), ws)
    i8, f32 = r8.metrics, r32.metrics
    assert i8["cost"]["host"]["datapath"] == "int8" and f32["cost"]["host"]["datapath"] == "fp32"
    assert i8["cost"]["stages"]["pca"]["energy_pj"] < f32["cost"]["stages"]["pca"]["energy_pj"] / 5
    # simulated, not only priced: the student sees the int8 host's features (on the int8 grid)
    assert r8.features.pipeline.host_datapath == "int8"
    assert not torch.equal(r8.features.test, r32.features.test)
    step = r8.features.pipeline.host_scales_["psi"] / 127
    assert torch.allclose(r8.features.test / step, (r8.features.test / step).round(), atol=1e-3)
    assert abs(i8["hw_accuracy_mean"] - f32["hw_accuracy_mean"]) < 0.03
