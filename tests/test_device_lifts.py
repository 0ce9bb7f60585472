"""``--lift-placement host|device`` (issue 30): the setting, its one-line errors, the inference
cost with the lift on the device, the search dimension, and one ``codesign distill`` per
built-in device on digits (slow), one of them exported and verified."""

from __future__ import annotations

import json

import pytest
import torch

from codesign.cli import main
from codesign.device_lifts import dictionary_class, make_dictionary, resolve_lift
from codesign.devices import create_device
from codesign.dictionaries import create_dictionary
from codesign.distill import DistillConfig
from codesign.errors import ConfigError
from codesign.inference_cost import inference_cost


# --------------------------------------------------------------------------- the setting
def test_lift_placement_device_names_the_primitive():
    cfg = DistillConfig(device="photonic_mzi", lift_placement="device", dictionary="cosine",
                        dictionary_params={"features": 64})
    assert cfg.dictionary == "photonic_mzi.cosine"
    assert cfg.dictionary_kwargs == {"features": 64, "bandwidth": 1.0}
    # without --dictionary: the device's first primitive
    assert DistillConfig(device="analog_crossbar", lift_placement="device").dictionary == "analog_crossbar.relu"
    assert DistillConfig(device="photonic_mzi", lift_placement="device").dictionary == "photonic_mzi.intensity"
    # the full name is accepted too
    assert resolve_lift("fpga_fixed_point", "fpga_fixed_point.lut") == "fpga_fixed_point.lut"


@pytest.mark.parametrize("kwargs,message", [
    ({"lift_placement": "device"}, "lift_placement='device' computes the lift on a device: give --device"),
    ({"lift_placement": "device", "device": "ideal"}, "device 'ideal' declares no nonlinear primitives"),
    ({"lift_placement": "device", "device": "photonic_mzi", "dictionary": "rbf"},
     "device 'photonic_mzi' cannot compute the dictionary 'rbf'.*its primitives: intensity, cosine"),
    ({"lift_placement": "device", "device": "photonic_mzi", "dictionary": "analog_crossbar.relu"},
     "is a lift of device 'analog_crossbar', not of 'photonic_mzi'"),
    ({"device": "photonic_mzi", "dictionary": "photonic_mzi.cosine"}, "is a device's primitive: give --lift-placement device"),
    ({"lift_placement": "nowhere", "device": "photonic_mzi"}, "lift_placement"),
    ({"lift_placement": "device", "device": "fpga_fixed_point", "dictionary": "lut",
      "dictionary_params": {"function": "sin"}}, "function"),
])
def test_one_line_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message) as err:
        DistillConfig(**kwargs)
    assert "\n" not in str(err.value)


def test_cli_errors_are_one_line(capsys):
    assert main(["distill", "--device", "ideal", "--lift-placement", "device"]) != 0
    err = capsys.readouterr().err.strip()
    assert err.startswith("codesign: error: device 'ideal' declares no nonlinear primitives") and "\n" not in err


def test_device_cosine_is_the_rff_dictionary_math():
    z = torch.randn(300, 8, generator=torch.Generator().manual_seed(1))
    device = make_dictionary("photonic_mzi.cosine", features=50, bandwidth=0.7).fit(z, 3)
    host = create_dictionary("rff", features=50, bandwidth=0.7).fit(z, 3)
    assert torch.equal(device.transform(z), host.transform(z))


def test_state_round_trip_keeps_the_lift():
    z = torch.randn(200, 6, generator=torch.Generator().manual_seed(2))
    d = make_dictionary("fpga_fixed_point.lut", features=20, function="square").fit(z, 1)
    again = dictionary_class("fpga_fixed_point.lut")(features=20, function="square")
    again.load_state_dict(d.state_dict())
    assert torch.equal(again.transform(z), d.transform(z))
    assert d.n_features(6) == 1 + 6 + 20


# --------------------------------------------------------------------------- the cost
def test_device_lift_moves_the_lift_stage_to_the_device():
    z = torch.randn(200, 10, generator=torch.Generator().manual_seed(3))
    device = create_device("analog_crossbar", {})
    d = make_dictionary("analog_crossbar.relu", features=128).fit(z, 0)
    lift = d.device_lift(device)
    host = inference_cost(device, n_inputs=784, rank=10, dictionary=d, n_classes=10)
    dev = inference_cost(device, n_inputs=784, rank=10, dictionary=d, n_classes=10, device_lift=lift)
    assert host["placement"]["lift"] == "host" and dev["placement"]["lift"] == "device"
    assert host["stages"]["lift"]["runs_on"] == "host" and dev["stages"]["lift"]["runs_on"] == "device"
    lc = lift.cost(10)
    conv = sum(lc[k] for k in lift.conversion_keys() if k in lc)
    assert dev["stages"]["lift"]["dynamic_energy_pj"] == pytest.approx(lc["energy_pj"] - conv)
    assert dev["stages"]["lift"]["latency_ns"] == pytest.approx(lc["latency_ns"])
    # the host pays nothing for lifting; K and the PCA are priced as before
    assert dev["lift_ops"] == {k: 0 for k in dev["lift_ops"]}
    assert dev["stages"]["pca"] == host["stages"]["pca"]
    assert dev["stages"]["matrix"]["energy_pj"] == pytest.approx(host["stages"]["matrix"]["energy_pj"])
    assert dev["stages"]["conversion"]["energy_pj"] == pytest.approx(host["stages"]["conversion"]["energy_pj"] + conv)
    assert dev["energy_pj"] == pytest.approx(sum(s["energy_pj"] for s in dev["stages"].values()))


def test_held_power_of_the_lift_is_charged_in_its_stage():
    z = torch.randn(200, 8, generator=torch.Generator().manual_seed(3))
    device = create_device("photonic_mzi", {})
    d = make_dictionary("photonic_mzi.cosine", features=32).fit(z, 0)
    c = inference_cost(device, n_inputs=784, rank=8, dictionary=d, n_classes=10, device_lift=d.device_lift(device))
    lift_static = d.device_lift(device).cost(8)["static_power_mw"]
    assert c["stages"]["lift"]["static_power_mw"] == pytest.approx(lift_static)
    assert c["stages"]["lift"]["static_energy_pj"] == pytest.approx(lift_static * c["interval_ns"])


# --------------------------------------------------------------------------- the search dimension
def test_search_dimension_offers_host_dictionaries_and_device_primitives():
    from codesign.search.config import SearchConfig

    host = SearchConfig(device="photonic_mzi", dictionaries=("monomial",))
    assert host.searched_dictionaries == ("monomial",)
    both = SearchConfig(device="photonic_mzi", dictionaries=("monomial",), lift_placements=("host", "device"))
    assert both.searched_dictionaries == ("monomial", "photonic_mzi.intensity", "photonic_mzi.cosine")
    only = SearchConfig(device="photonic_mzi", dictionaries=("cosine",), lift_placements=("device",))
    assert only.searched_dictionaries == ("photonic_mzi.cosine",)
    assert only.trial_base().lift_placement == "device"
    with pytest.raises(ConfigError, match="declares no nonlinear primitives"):
        SearchConfig(device="ideal", lift_placements=("host", "device"))
    with pytest.raises(ConfigError, match="needs --lift-placement device"):
        SearchConfig(device="photonic_mzi", dictionaries=("photonic_mzi.cosine",))


def test_search_space_samples_and_caps_device_primitives():
    from codesign.search.space import build_space
    from codesign.search.objective import distill_config
    from codesign.search.config import SearchConfig

    space = build_space(n_inputs=64, n_train=1000, n_rows=1200, max_memory=1 << 30, device_space={},
                        dictionaries=["monomial", "analog_crossbar.relu"], ranks=(4, 12),
                        dictionary_space={"features": "16:64"})
    assert space.dictionaries["analog_crossbar.relu"]["features"].high == 64
    assert space.n_features("analog_crossbar.relu", {"features": 40}, 10) == 51
    base = SearchConfig(device="analog_crossbar", dictionaries=("monomial",),
                        lift_placements=("host", "device")).trial_base()
    cfg = distill_config({"dictionary": "analog_crossbar.relu", "analog_crossbar.relu": {"features": 40},
                          "pca_rank": 6}, base)
    assert cfg.lift_placement == "device" and cfg.dictionary_kwargs == {"features": 40, "bandwidth": 1.0}
    cfg = distill_config({"dictionary": "monomial", "monomial": {"degree": 2}, "pca_rank": 6}, base)
    assert cfg.lift_placement == "host"


# --------------------------------------------------------------------------- end to end
@pytest.mark.slow
@pytest.mark.parametrize("device,primitive", [("photonic_mzi", "cosine"), ("analog_crossbar", "relu"),
                                              ("fpga_fixed_point", "lut")])
def test_distill_with_the_lift_on_each_device(device, primitive, tmp_path, capsys, digits_teacher):
    out = tmp_path / "run"
    rc = main(["distill", "--device", device, "--lift-placement", "device", "--dictionary", primitive,
               "--features", "48", "--pca-rank", "8", "--hw-draws", "2", "--out", str(out), "--json"])
    assert rc == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["lift_placement"] == "device" and m["dictionary"].startswith(f"{device}.{primitive}(")
    assert m["n_features"] == 1 + 8 + 48
    assert m["cost"]["stages"]["lift"]["runs_on"] == "device" and m["cost"]["lift_ops"]["mults"] == 0
    assert m["cost"]["lift_device"]["lift_features"] == 48
    # the student is fitted on the exact lift; the draws run the device's (the crossbar's read noise
    # in its ReLU features costs it ~12 points on digits)
    assert 0.6 < m["hw_accuracy_mean"] <= m["test_accuracy"] + 0.02 and len(m["hw_accuracies"]) == 2
    if device == "analog_crossbar":
        bundle = tmp_path / "bundle"
        assert main(["export", str(out / "student.pt"), "--out", str(bundle), "--verify"]) == 0
        text = capsys.readouterr().out
        assert "verify: all checks pass" in text
        assert json.loads((bundle / "export.json").read_text())["lift_placement"] == "device"


def test_the_fpga_part_holds_the_lift_and_k_together(capsys):
    """Each MVAU fits the xc7z020 alone (LUTs: FINN's estimate, about 32k each at PE 4 x SIMD 64),
    but the lift's and K's share one part: the whole inference is infeasible, the reason naming
    the resource, each matrix's count, the total and the budget; with the lift on the host it fits."""
    z = torch.randn(300, 20, generator=torch.Generator().manual_seed(0))
    dev = create_device("fpga_fixed_point", {"pe": 4, "simd": 64})
    d = make_dictionary("fpga_fixed_point.lut", features=64).fit(z, 0)
    lift = d.device_lift(dev)
    k_luts, lift_luts = dev.resources(85, 10)["lut"], dev.resources(20, 64)["lut"]
    assert (k_luts, lift_luts) == (32332, 32310)  # FINN-R: 300 + 1.1 PE (mult + adder tree + acc + requant)
    assert dev.feasibility(85, 10) == [] and lift.feasibility(20) == []
    cost = inference_cost(dev, n_inputs=64, rank=20, dictionary=d, n_classes=10, device_lift=lift)
    assert cost["feasible"] is False and cost["energy_pj"] is None
    assert cost["infeasible"] == [
        "together: LUTs on one part xc7z020: matrix K (10 x 85) 32,332 + lift lut (20 -> 64) 32,310 = 64,642, "
        "more than its 53,200; lower pe/simd (fields pe, simd), the bit widths, fewer lift features, or a larger "
        "part (field part)"]
    shared = cost["shared_resources"]
    assert shared["lut"]["used"] == 64642 and shared["lut"]["budget"] == 53200
    assert shared["bram_18k"]["by"] == {"matrix K (10 x 85)": 57, "lift lut (20 -> 64)": 59}  # 2 of them the tables'
    assert shared["dsp"]["used"] == 0
    from codesign.cli import _print_cost

    _print_cost(cost)  # what `codesign distill` prints
    text = capsys.readouterr().out
    assert text.startswith("cost: INFEASIBLE (not priced)\n  together: LUTs on one part xc7z020: ")
    assert ("  shared LUTs on one part xc7z020: matrix K (10 x 85) 32,332 + lift lut (20 -> 64) 32,310 = 64,642 "
            "of 53,200\n") in text
    host = inference_cost(dev, n_inputs=64, rank=20, dictionary=d, n_classes=10)
    assert host["feasible"] is True and host["shared_resources"] == {}
    # at PE 2 both fit together, and the cost reports the part's shared budget
    small = create_device("fpga_fixed_point", {"pe": 2, "simd": 64})
    ok = inference_cost(small, n_inputs=64, rank=20, dictionary=d, n_classes=10, device_lift=d.device_lift(small))
    assert ok["feasible"] is True
    used = ok["shared_resources"]["lut"]
    assert used["used"] == sum(used["by"].values()) == small.resources(85, 10)["lut"] + small.resources(20, 64)["lut"]
    from codesign.inference_cost import flat_cost

    assert flat_cost(ok)["shared_lut"] == used["used"]


def test_the_crossbar_chip_holds_the_lift_and_k_tiles_together():
    z = torch.randn(300, 20, generator=torch.Generator().manual_seed(0))
    dev = create_device("analog_crossbar", {"max_tiles": 1})
    d = make_dictionary("analog_crossbar.relu", features=64).fit(z, 0)
    cost = inference_cost(dev, n_inputs=64, rank=20, dictionary=d, n_classes=10, device_lift=d.device_lift(dev))
    assert cost["infeasible"] == [
        "together: tiles on one chip: matrix K (10 x 85) 1 + lift relu (20 -> 64) 1 = 2, more than its 1; "
        "raise max_tiles or tile_rows/tile_cols, or shrink the matrices (fewer lift features)"]
    two = create_device("analog_crossbar", {"max_tiles": 2})
    ok = inference_cost(two, n_inputs=64, rank=20, dictionary=d, n_classes=10, device_lift=d.device_lift(two))
    assert ok["feasible"] is True and ok["shared_resources"]["tiles"]["used"] == 2


@pytest.fixture(scope="module")
def relu_features(digits):
    from codesign.distill import Workspace

    cfg = DistillConfig(dataset="digits", pca_rank=8, dictionary="relu", dictionary_params={"features": 48},
                        device="analog_crossbar", lift_placement="device")
    return Workspace(verbose=False).features(cfg, digits)


def test_aware_training_rows_carry_the_lifts_noise(digits, relu_features):
    """Hardware-aware training's features with the lift on the device: the constant and the scores
    as the host has them, the lift columns from the device's lift layer with fresh noise per call."""
    from codesign.distill import lift_training_rows

    feats = relu_features
    psi, n = feats.train, len(feats.train)
    lift = feats.pipeline.dictionary.device_lift(create_device("analog_crossbar", {}))
    rows = lift_training_rows(feats.pipeline, lift.layer(), digits.x_train, psi, n, 1.0)
    idx = torch.arange(0, n, 3)
    a, b = rows(idx), rows(idx)
    assert torch.equal(a[:, :9], psi[idx, :9]) and torch.equal(b[:, :9], psi[idx, :9])

    def rel(u, v):
        return float((u - v).norm() / v.norm())

    exact = psi[idx, 9:]
    # the crossbar's programming and read noise and its ADC: 13 % off the exact ReLU features
    # (measured 0.128, 0.130), and two calls are two noise draws (0.17 apart)
    assert 0.08 < rel(a[:, 9:], exact) < 0.2 and 0.08 < rel(b[:, 9:], exact) < 0.2
    assert 0.1 < rel(a[:, 9:], b[:, 9:]) < 0.3


def test_aware_training_rows_of_augmented_copies_read_their_scores_back(digits):
    """Copies after the original rows get their scores from their own features' score columns: a
    copy that equals its original gives the same rows (the FPGA's fixed-point lift has no noise)."""
    from codesign.distill import Workspace, lift_training_rows

    cfg = DistillConfig(dataset="digits", pca_rank=8, dictionary="lut", dictionary_params={"features": 48},
                        device="fpga_fixed_point", lift_placement="device", host_datapath="fp32")
    feats = Workspace(verbose=False).features(cfg, digits)
    psi, n = feats.train, len(feats.train)
    lift = feats.pipeline.dictionary.device_lift(create_device("fpga_fixed_point", {}))
    rows = lift_training_rows(feats.pipeline, lift.layer(), digits.x_train, torch.cat([psi, psi]), n, 1.0)
    idx = torch.arange(0, n, 3)
    original, copy = rows(idx), rows(idx + n)
    assert torch.equal(original, copy)
    # the lift columns are the table's fixed-point values: 2.4 % off the exact ones (measured 0.0239)
    assert 0.01 < float((original[:, 9:] - psi[idx, 9:]).norm() / psi[idx, 9:].norm()) < 0.04


@pytest.mark.usefixtures("digits_teacher")
def test_aware_training_with_the_lift_on_the_device_sees_its_noise():
    from codesign.distill import Workspace, run_distill
    from codesign.students import FitConfig

    cfg = DistillConfig(dataset="digits", pca_rank=8, dictionary="relu", dictionary_params={"features": 48},
                        device="analog_crossbar", lift_placement="device", protocol="aware", hw_draws=1,
                        fit=FitConfig(aware_steps=4))
    m = run_distill(cfg, Workspace(verbose=False)).metrics
    assert m["aware_lift_noise"] is True and m["aware_steps"] == 4
    assert 0.8 < m["hw_accuracy_mean"] <= m["test_accuracy"] + 0.02
