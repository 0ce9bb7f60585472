"""Device-native lifts (issue 30): each built-in primitive's math with the noise off, its noise
statistics with the noise on, its cost numbers, and the plugin contract (``check_lifts``) on a
toy plugin primitive and on broken ones."""

from __future__ import annotations

import math

import pytest
import torch

from codesign.devices import create_device, get_device_class
from codesign.devices.digital import DATAPATHS
from codesign.devices.ideal import IdealDevice
from codesign.devices.lifts import ProjectionLift, device_lifts, lift_problem
from codesign.devices.native_lifts import CrossbarReLU, FPGALookUp, PhotonicCosine, PhotonicIntensity
from codesign.devices.testing import DeviceContractError, check_lifts

Z = torch.randn(400, 8, generator=torch.Generator().manual_seed(0))


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """Relative RMS difference of ``a`` from ``b`` (against ``b``'s spread)."""
    return float((a - b).norm() / (b - b.mean(0)).norm())


def nominal(lift) -> torch.Tensor:
    layer = lift.layer()
    layer.eval()
    return layer(Z)


def test_every_built_in_device_declares_its_primitives():
    assert list(device_lifts(get_device_class("photonic_mzi"))) == ["intensity", "cosine"]
    assert list(device_lifts(get_device_class("analog_crossbar"))) == ["relu"]
    assert list(device_lifts(get_device_class("fpga_fixed_point"))) == ["lut"]
    assert device_lifts(get_device_class("ideal")) == {}


# --------------------------------------------------------------------------- math, noise off
def test_exact_math_of_each_primitive():
    dev = create_device("photonic_mzi", {})
    lift = PhotonicIntensity(dev, features=32).fit(Z, seed=1)
    a = Z @ lift.weights_.T
    assert torch.allclose(lift.ideal(Z), a.square())
    lift = PhotonicCosine(dev, features=32).fit(Z, seed=1)
    assert torch.allclose(lift.ideal(Z), torch.cos(Z @ lift.weights_.T + lift.offsets_))
    lift = CrossbarReLU(create_device("analog_crossbar", {}), features=32).fit(Z, seed=1)
    assert torch.allclose(lift.ideal(Z), (Z @ lift.weights_.T).clamp_min(0))
    for fn, ref in (("tanh", torch.tanh), ("square", torch.square)):
        lift = FPGALookUp(create_device("fpga_fixed_point", {}), features=32, function=fn).fit(Z, seed=1)
        assert torch.allclose(lift.ideal(Z), ref(Z @ lift.weights_.T))


def test_width_follows_the_median_heuristic_like_rff():
    lift = PhotonicCosine(create_device("photonic_mzi", {}), features=4000, bandwidth=2.0).fit(Z, seed=0)
    d = torch.cdist(Z.double(), Z.double())
    med = float(d[torch.triu_indices(400, 400, 1).unbind()].median())
    assert lift.sigma_ == pytest.approx(2.0 * med, rel=0.01)
    # W ~ N(0, 1/sigma^2): the entries' std is 1/sigma within sampling error (32000 draws)
    assert float(lift.weights_.std()) * lift.sigma_ == pytest.approx(1.0, abs=0.02)


@pytest.mark.parametrize("device,cls,tol", [
    ("photonic_mzi", PhotonicIntensity, 0.06), ("photonic_mzi", PhotonicCosine, 0.05),
    ("analog_crossbar", CrossbarReLU, 0.08), ("fpga_fixed_point", FPGALookUp, 0.06)])
def test_nominal_layer_is_the_exact_math_up_to_quantisation(device, cls, tol):
    lift = cls(create_device(device, {}), features=64).fit(Z, seed=2)
    assert rel(nominal(lift), lift.ideal(Z)) < tol


def test_more_converter_bits_bring_the_nominal_lift_closer():
    for overrides in ({"dac_bits": 4, "adc_bits": 4}, {"dac_bits": 10, "adc_bits": 10}):
        dev = create_device("photonic_mzi", overrides)
        lift = PhotonicCosine(dev, features=64).fit(Z, seed=2)
        err = rel(nominal(lift), lift.ideal(Z))
        if overrides["dac_bits"] == 4:
            coarse = err
    assert err < coarse / 3  # 4 -> 10 bits


def test_fpga_cos_table_wraps_the_phase_like_a_dds():
    dev = create_device("fpga_fixed_point", {"output_bits": 16})
    lift = FPGALookUp(dev, features=16, function="cos", lut_bits=12).fit(Z, seed=0)
    a = torch.tensor([[0.0] * 16, [2 * math.pi] * 16, [-2 * math.pi] * 16])
    layer = lift.layer()
    out = lift.periphery(a, layer)
    # cos(0 + u) = cos(2 pi + u) = cos(-2 pi + u): the table's address wraps modulo 2^lut_bits
    assert torch.allclose(out[0], out[1]) and torch.allclose(out[0], out[2])
    assert torch.allclose(out[0], torch.cos(lift.offsets_), atol=2 * math.pi / 2**12 + 2**-14)


# --------------------------------------------------------------------------- noise on
def _instances(lift, seeds=range(4)) -> list[torch.Tensor]:
    layer = lift.layer()
    layer.eval()
    outs = []
    for s in seeds:
        layer.draw_instance(s)
        outs.append(layer(Z))
    return outs


def test_photonic_phase_noise_grows_the_lift_error():
    errs = []
    for noise in (0.0, 0.05, 0.2):
        dev = create_device("photonic_mzi", {"phase_noise_rad": noise})
        lift = PhotonicCosine(dev, features=64).fit(Z, seed=3)
        errs.append(sum(rel(o, lift.ideal(Z)) for o in _instances(lift)) / 4)
    assert errs[0] < errs[1] < errs[2]
    assert errs[2] > 3 * errs[0]


def test_photonic_intensity_detects_the_whole_field():
    """The photodiode reads |E|^2 = Re^2 + Im^2 of the programmed mesh's complex output field:
    with phase noise the field gains a quadrature part whose power the diode adds to Re^2."""
    quiet = {"receiver_noise": False, "detector_noise": 0.0, "adc_bits": 32}  # the detection alone
    lift = PhotonicIntensity(create_device("photonic_mzi", {"phase_noise_rad": 0.1, **quiet}), features=64).fit(Z, seed=2)
    layer = lift.layer()
    layer.eval()
    nominal_field = layer.projection.output_field(Z).detach()
    # ideal phases up to 8-bit quantisation: the field is real to 0.1 % of its power (measured 0.10 %)
    assert float(nominal_field.imag.square().sum() / nominal_field.abs().square().sum()) < 0.002
    assert rel(layer(Z), lift.ideal(Z)) < 0.04  # measured 0.026
    layer.draw_instance(3)
    out, field = layer(Z), layer.projection.output_field(Z).detach()
    coherent = layer.projection(Z).detach()  # what K's coherent receivers read from the same chip: Re(E)
    assert torch.allclose(field.real, coherent, rtol=1e-5, atol=1e-6)
    assert torch.allclose(out, coherent.square() + field.imag.square(), rtol=1e-5, atol=1e-6)
    # 0.1 rad on every phase turns ~20 % of the power into quadrature (measured 20.3 %), which Re^2
    # alone would lose: the mean intensity is 0.524 (measured; 0.418 from Re^2 alone)
    share = float(field.imag.square().sum() / field.abs().square().sum())
    assert 0.15 < share < 0.25
    assert float((out - coherent.square()).mean()) == pytest.approx(float(field.imag.square().mean()), rel=1e-4)
    assert float(out.mean()) > 1.2 * float(coherent.square().mean())


def test_instances_are_seeded_and_distinct():
    for device, cls in (("photonic_mzi", PhotonicIntensity), ("analog_crossbar", CrossbarReLU)):
        lift = cls(create_device(device, {}), features=32).fit(Z, seed=1)
        a, b = _instances(lift, (5, 6))
        again = _instances(lift, (5,))[0]
        assert torch.equal(a, again) and not torch.equal(a, b)


def test_crossbar_read_noise_scales_the_lift_noise():
    spreads = []
    for read_noise in (0.01, 0.05):
        lift = CrossbarReLU(create_device("analog_crossbar", {"read_noise": read_noise}), features=64).fit(Z, seed=4)
        outs = torch.stack(_instances(lift, range(6)))
        spreads.append(float(outs.std(0).mean()))
    assert spreads[1] > 1.5 * spreads[0]


def test_fpga_lift_has_no_noise():
    lift = FPGALookUp(create_device("fpga_fixed_point", {}), features=32).fit(Z, seed=1)
    a, b = _instances(lift, (1, 2))
    assert torch.equal(a, b) and torch.equal(a, nominal(lift))


# --------------------------------------------------------------------------- cost numbers
def test_photonic_cosine_prices_one_modulator_chain_per_feature():
    from codesign.devices import photonic_mzi as ph

    dev = create_device("photonic_mzi", {})
    cfg = dev.config
    m, r = 100, 8
    cos = PhotonicCosine(dev, features=m).fit(Z, seed=0).cost(r)
    mesh = dev.cost(r, m)
    assert cos["eo_modulator_pj"] == pytest.approx(m * ph.MODULATOR_PJ * cfg.dac_bits / 8)
    assert cos["eo_detector_pj"] == pytest.approx(m * (ph.PHOTODETECTOR_MW + ph.TIA_MW) / cfg.clock_ghz)
    extra = sum(v for k, v in cos.items() if k.startswith("eo_") and k.endswith("_pj"))
    assert cos["energy_pj"] == pytest.approx(mesh["energy_pj"] + extra)
    assert cos["latency_ns"] == pytest.approx(mesh["latency_ns"] + 1 / cfg.clock_ghz)
    # the bias heaters hold one p_pi each on average (thermo-optic default)
    assert cos["eo_bias_heater_static_mw"] == pytest.approx(m * cfg.heater_p_pi_mw)
    # intensity readout is the mesh's own cost
    inten = PhotonicIntensity(dev, features=m).fit(Z, seed=0).cost(r)
    assert inten["energy_pj"] == pytest.approx(mesh["energy_pj"])


def test_crossbar_relu_prices_a_compare_per_column():
    dev = create_device("analog_crossbar", {})
    c = CrossbarReLU(dev, features=128).fit(Z, seed=0).cost(8)
    assert c["relu_pj"] == pytest.approx(128 * DATAPATHS["int8"].add_pj)
    assert c["energy_pj"] == pytest.approx(dev.cost(8, 128)["energy_pj"] + c["relu_pj"])


def test_fpga_lut_resources_latency_and_static_power():
    dev = create_device("fpga_fixed_point", {"pe": 4, "output_bits": 8})
    lift = FPGALookUp(dev, features=256, lut_bits=10).fit(Z, seed=0)
    assert lift.table() == {"copies": 2, "lut": 0, "bram_18k": 2}  # 2^10 x 8 bits fit one RAMB18, two copies
    small = FPGALookUp(dev, features=256, lut_bits=6).fit(Z, seed=0)
    assert small.table() == {"copies": 2, "lut": 32, "bram_18k": 0}  # 8 output bits x 2 ports x 2 copies
    c = lift.cost(8)
    mvau = dev.cost(8, 256)
    assert c["latency_ns"] == pytest.approx(mvau["latency_ns"] + (256 / 4 + 2) * 1e3 / dev.config.clock_mhz)
    assert "fpga_static_mw" not in c and c["static_power_mw"] == 0.0  # the part's static power is K's
    # the tables' resources are counted with the MVAU's, so the part's budget sees both
    assert c["table_bram_18k"] == 2.0 and c["bram_18k"] == mvau["bram_18k"] + 2
    assert c["lut"] == mvau["lut"] and small.cost(8)["lut"] == mvau["lut"] + 32


def test_fpga_lut_tables_count_against_the_part():
    # 2^16 entries of 16 bits: 57 RAMB18 per copy, 8 copies (PE 16) = 456 > the xc7z020's 280,
    # though the projection's MVAU alone fits
    dev = create_device("fpga_fixed_point", {"pe": 16, "output_bits": 16})
    lift = FPGALookUp(dev, features=64, lut_bits=16).fit(Z, seed=0)
    assert dev.feasibility(8, 64) == [] and lift.table()["bram_18k"] == 456
    mvau = int(dev.resources(8, 64)["bram_18k"])
    assert lift.feasibility(8) == [
        f"RAMB18 block RAMs on one part xc7z020: the 64x8 MVAU {mvau} + its look-up tables 456 = {mvau + 456}, "
        "more than its 280; lower pe/simd (fields pe, simd), weight_bits, fewer lift features, or a larger part "
        "(field part)"]
    assert FPGALookUp(dev, features=64, lut_bits=12).fit(Z, seed=0).feasibility(8) == []  # 4 x 8 = 32 RAMB18


# --------------------------------------------------------------------------- the plugin contract
class ToySine(ProjectionLift):
    """A toy plugin primitive: sin(W z) through the device, its output quantised to 8 bits."""

    name = "sine"
    description = "toy: sin(W z), 8-bit output"
    nominal_tolerance = 0.05

    def f(self, a):
        return torch.sin(a)

    def periphery(self, a, layer):
        return torch.round(torch.sin(a) * 127) / 127 + 0.01 * layer.noise(tuple(a.shape), 1, a)


class ToyLiftDevice(IdealDevice):
    name = "toy_lift_device"

    @classmethod
    def lifts(cls):
        return {"sine": ToySine}


class OffsetSine(ToySine):
    def periphery(self, a, layer):  # noise off is not the math: a constant error
        return torch.sin(a) + 0.5


class WrongShape(ToySine):
    def periphery(self, a, layer):
        return a[:, :3]


def _device_with(lift_cls):
    return type("D", (IdealDevice,), {"name": "toy_lift_device", "lifts": classmethod(lambda cls: {"sine": lift_cls})})


def test_toy_plugin_primitive_passes_the_contract():
    check_lifts(ToyLiftDevice)


@pytest.mark.parametrize("lift_cls,message", [
    (OffsetSine, "with the noise off the layer differs from the exact math"),
    (WrongShape, "expected \\[n, n_outputs\\]")])
def test_broken_primitives_fail_the_contract(lift_cls, message):
    with pytest.raises(DeviceContractError, match=f"toy_lift_device.*check_lifts.*{message}"):
        check_lifts(_device_with(lift_cls))


def test_static_problems_are_named():
    assert "declared as 'cosine'" in lift_problem(ToySine, "cosine")
    assert "is not a codesign.devices.lifts.Lift" in lift_problem(int, "x")
