"""photonic_mzi: exactness with non-idealities off, each non-ideality's size, costs."""

import math

import pytest
import torch

from codesign.devices.photonic_mzi import (
    ADC_GSPS,
    PhotonicMZIConfig,
    neighbour_matrix,
    ADC_MW_8BIT,
    DAC_GSPS,
    DAC_MW_8BIT,
    HARRIS_P_PI_MW,
    MODULATOR_IL_DB,
    PhotonicMZIDevice,
)
from codesign.devices.base import Mode

OFF = dict(phase_bits=32, phase_noise_rad=0.0, bs_error=0.0, dac_bits=32, adc_bits=32,
           detector_noise=0.0, receiver_noise=False)
IN, OUT = 37, 5


def _layer(k=8, **overrides):
    layer = PhotonicMZIDevice(block_size=k, **overrides).layer(IN, OUT)
    k_mat = torch.randn(OUT, IN, generator=torch.Generator().manual_seed(0)) * 0.3
    layer.load_matrix(k_mat)
    return layer, k_mat


def _x(batch=64, seed=1, unit_rows=False):
    gen = torch.Generator().manual_seed(seed)
    if unit_rows:  # every row's abs-max is 1, so the per-vector DAC scale is the same
        x = torch.rand(batch, IN, generator=gen) * 2 - 1
        x[:, 0] = 1.0
        return x
    return torch.randn(batch, IN, generator=gen)


@pytest.mark.parametrize("analog", [True, False])
@pytest.mark.parametrize("k", [4, 16])
def test_all_nonidealities_off_equals_ideal(k, analog):
    layer, k_mat = _layer(k, analog_accumulation=analog, **OFF)
    x = _x()
    ref = x @ k_mat.T
    assert torch.allclose(layer.effective_matrix(), k_mat, atol=2e-6)
    for train in (True, False):
        layer.train(train)
        assert torch.allclose(layer(x), ref, atol=2e-5, rtol=1e-5)
    layer.draw_instance(3)
    assert torch.allclose(layer(x), ref, atol=2e-5, rtol=1e-5)


def test_parameters_are_mesh_phases_and_singular_values():
    layer, _ = _layer(8)
    tiles = 1 * 5  # ceil(5/8) x ceil(37/8)
    shapes = {n: tuple(p.shape) for n, p in layer.named_parameters()}
    assert shapes == {"theta": (2 * tiles, 28), "phi": (2 * tiles, 28),
                      "delta": (2 * tiles, 8), "sigma": (tiles, 8)}


def test_phase_noise_spread_matches_sigma_and_is_fresh_in_training():
    layer, _ = _layer(16, phase_noise_rad=0.05, bs_error=0.0, thermal_crosstalk=0.0)
    layer.draw_instance(11)
    nominal = layer.realized_phases(Mode.NOMINAL)
    drawn = layer.realized_phases(Mode.INSTANCE)
    diffs = torch.cat([(drawn[n] - nominal[n]).flatten() for n in ("theta", "phi", "delta")])
    assert diffs.numel() > 1000
    assert diffs.std().item() == pytest.approx(0.05, rel=0.1)
    assert diffs.mean().abs().item() < 0.01
    a, b = layer.realized_phases(Mode.TRAINING), layer.realized_phases(Mode.TRAINING)
    assert not torch.equal(a["theta"], b["theta"])


@pytest.mark.parametrize("bits", [3, 5])
def test_phase_quantization_levels(bits):
    layer, _ = _layer(16, phase_bits=bits, phase_noise_rad=0.0)
    phi = layer.realized_phases(Mode.NOMINAL)["phi"].detach()
    step = 2 * math.pi / 2**bits
    codes = torch.remainder(torch.round(phi / step), 2**bits)
    assert torch.allclose(phi, torch.round(phi / step) * step, atol=1e-5)
    assert len(codes.unique()) == 2**bits


def test_phase_quantization_passes_gradients_straight_through():
    layer, _ = _layer(8, phase_bits=3, phase_noise_rad=0.0, bs_error=0.0)
    layer.realized_phases(Mode.NOMINAL)["theta"].sum().backward()
    assert torch.equal(layer.theta.grad, torch.ones_like(layer.theta))


def test_beam_splitter_error_spread_matches_setting():
    layer, _ = _layer(16, bs_error=0.02, phase_noise_rad=0.0)
    layer.draw_instance(5)
    ph = layer.realized_phases(Mode.INSTANCE)
    ratio = torch.cat([torch.sin(ph[n]) ** 2 for n in ("kappa1", "kappa2")]).flatten()
    assert (ratio - 0.5).std().item() == pytest.approx(0.02, rel=0.1)
    assert layer.realized_phases(Mode.NOMINAL)["kappa1"] is None


def test_beam_splitter_error_perturbs_the_matrix():
    layer, k_mat = _layer(8, **{**OFF, "bs_error": 0.01})
    layer.eval()
    layer.draw_instance(1)
    x = _x()
    err = (layer(x) - x @ k_mat.T).abs().max()
    assert 1e-4 < err < 0.5


@pytest.mark.parametrize("loss_db", [0.0, 0.5, 2.0])
def test_insertion_loss_attenuates_by_depth_and_is_compensated(loss_db):
    k = 8
    layer, k_mat = _layer(k, **{**OFF, "insertion_loss_db": loss_db})
    assert layer.transmission() == pytest.approx(10 ** (-loss_db * (2 * k + 1) / 20))
    tiles, _ = layer._normalized_tiles(Mode.NOMINAL)
    lossless, _ = _layer(k, **{**OFF, "insertion_loss_db": 0.0})[0]._normalized_tiles(Mode.NOMINAL)
    assert torch.allclose(tiles, lossless * layer.transmission(), atol=1e-6)
    x = _x()
    layer.eval()
    assert torch.allclose(layer(x), x @ k_mat.T, atol=2e-5, rtol=1e-5)


def test_dac_quantizes_each_input_vector_to_its_levels():
    layer, k_mat = _layer(8, **{**OFF, "dac_bits": 3})
    layer.eval()
    x = _x()
    amax = x.abs().amax(1, keepdim=True)
    xq = torch.round(x / amax * 3) / 3 * amax  # 3 bits: 7 levels over [-amax, amax]
    assert torch.allclose(layer(x), xq @ k_mat.T, atol=2e-5, rtol=1e-5)


def test_adc_output_levels():
    layer, _ = _layer(8, **{**OFF, "adc_bits": 3})
    layer.eval()
    y = layer(_x(256, unit_rows=True)).detach()
    assert len(y.unique()) <= 2**3 - 1
    assert len(y.unique()) >= 4


def test_detector_noise_std_relative_to_full_scale():
    layer, _ = _layer(8, **{**OFF, "detector_noise": 0.01, "insertion_loss_db": 0.0})
    layer.eval()
    x = _x(2000, unit_rows=True)
    nominal = layer(x)  # first eval batch calibrates the ADC range
    layer.draw_instance(4)
    noisy = layer(x)
    full_scale = layer.adc_range.value * layer.sigma.detach().abs().max()
    ratio = ((noisy - nominal) / full_scale).std().item()
    assert ratio == pytest.approx(0.01, rel=0.1)


def test_training_noise_is_fresh_each_forward():
    layer, _ = _layer(8)
    layer.train()
    x = _x()
    assert not torch.equal(layer(x), layer(x))
    quiet, _ = _layer(8, **OFF)
    quiet.train()
    assert torch.equal(quiet(x), quiet(x))


def test_cost_hand_count_single_4x4_tile():
    dev = PhotonicMZIDevice(block_size=4, insertion_loss_db=1.0, dac_bits=8, adc_bits=8)
    c = dev.cost(4, 4)
    assert c["n_tiles"] == 1
    assert c["n_mzi"] == 12  # two 4-mode Clements meshes of 6 MZIs
    assert c["n_phase_shifters"] == 2 * (2 * 6 + 4)
    assert c["n_attenuators"] == 4
    assert c["optical_depth"] == 9
    assert c["total_insertion_loss_db"] == pytest.approx(9 * 1.0 + MODULATOR_IL_DB)
    laser_dbm = -25.0 + 9.0 + MODULATOR_IL_DB + 10 * math.log10(4)
    assert c["laser_static_mw"] == pytest.approx(10 ** (laser_dbm / 10) / 0.2 * 256)  # held, not per sample
    # launched into one input waveguide: sensitivity + loss + 8 bits of ADC headroom (optical)
    assert c["waveguide_power_mw"] == pytest.approx(10 ** ((-25.0 + 9.0 + MODULATOR_IL_DB) / 10) * 256)
    # heaters: theta (2 x 6) and 4 attenuators at P_pi/2, phi (2 x 6) and 2 x 4 screens at P_pi
    assert c["heater_static_mw"] == pytest.approx(HARRIS_P_PI_MW * (0.5 * 16 + 1.0 * 20))
    # one static DAC per programmed phase (32 shifters + 4 attenuators), held too
    assert c["n_phase_dacs"] == 36 and c["phase_dac_static_mw"] == pytest.approx(36 * 0.13)
    assert c["static_power_mw"] == pytest.approx(c["laser_static_mw"] + c["heater_static_mw"] + 36 * 0.13)
    assert c["interval_ns"] == pytest.approx(0.2)  # one vector per 5 GHz sample
    assert c["n_adc_conversions"] == 4 and c["n_dac_conversions"] == 4
    assert c["adc_pj"] == pytest.approx(4 * ADC_MW_8BIT / ADC_GSPS)
    # per-vector input scaling: a max over 4 inputs, 4 multiplies in and 4 out (Horowitz int32)
    assert c["input_scaling_pj"] == pytest.approx(4 * (0.1 + 3.1) + 4 * 3.1)
    assert c["dac_pj"] == pytest.approx(4 * DAC_MW_8BIT / DAC_GSPS)
    digital = PhotonicMZIDevice(block_size=4, analog_accumulation=False).cost(12, 4)
    assert digital["n_adc_conversions"] == 12  # 3 column tiles x 4 outputs
    assert digital["digital_pj"] == pytest.approx(2 * 4 * 0.1)


def test_cost_grows_with_size_bits_and_block():
    dev = PhotonicMZIDevice()
    base = dev.cost(200, 10)
    assert dev.cost(400, 10)["n_mzi"] > base["n_mzi"]
    for field in ("adc_bits", "dac_bits"):
        more = dev.with_overrides({field: 10}).cost(200, 10)
        assert more["energy_pj"] > base["energy_pj"], field
    deeper = dev.with_overrides({"block_size": 32}).cost(200, 10)
    assert deeper["total_insertion_loss_db"] > base["total_insertion_loss_db"]
    assert dev.with_overrides({"insertion_loss_db": 1.5}).cost(200, 10)["laser_static_mw"] > (
        base["laser_static_mw"]
    )


def test_energy_components_and_conversion_stage():
    dev = PhotonicMZIDevice(analog_accumulation=False)
    c = dev.cost(862, 10)
    parts = {k: v for k, v in c.items() if k.endswith("_pj") and k != "energy_pj"}
    assert set(parts) == {"input_scaling_pj", "dac_pj", "modulator_pj", "detector_pj", "adc_pj", "digital_pj"}
    assert sum(parts.values()) == pytest.approx(c["energy_pj"], rel=1e-12)
    held = {k: v for k, v in c.items() if k.endswith("_static_mw")}
    assert set(held) == {"laser_static_mw", "lo_static_mw", "heater_static_mw", "phase_dac_static_mw"}
    assert held["lo_static_mw"] == 0.0  # link-budget receivers have no local oscillator
    assert sum(held.values()) == pytest.approx(c["static_power_mw"], rel=1e-12)
    assert set(PhotonicMZIDevice.conversion_keys) == {"input_scaling_pj", "dac_pj", "modulator_pj", "detector_pj",
                                                      "adc_pj"}


def test_default_held_power_at_862x10():
    # 862 x 10 on 12 x 12 tiles: 1 x 72 tiles, 20736 phase shifters + 864 attenuators
    c = PhotonicMZIDevice().cost(862, 10)
    macs = 862 * 10
    assert c["n_phase_dacs"] == 20736 + 864
    # holding a full k x k tile draws P_pi (1.5 + 1/k) per MAC of the tile (Harris: 24.77 +- 0.43
    # mW), times the 72 x 144 / 8620 = 1.203 zero padding of 862 x 10: ~407 W in all
    per_mac = c["heater_static_mw"] / macs
    lo, hi = ((24.77 + d) * (1.5 + 1 / 12) * 72 * 144 / macs for d in (-0.43, 0.43))
    assert lo <= per_mac <= hi
    assert c["heater_static_mw"] == pytest.approx(406_624.3, rel=1e-6)
    assert c["laser_static_mw"] == pytest.approx(27_461.5, rel=1e-5)
    assert c["phase_dac_static_mw"] == pytest.approx(21_600 * 0.13)
    # the dynamic energy is the converters' (and the input scaling's) alone
    conversion = sum(c[k] for k in PhotonicMZIDevice.conversion_keys)
    assert c["energy_pj"] == pytest.approx(conversion, rel=1e-12)
    # writing every phase once: 21,600 x 0.13 mW x 1 us
    assert c["reprogram_nj"] == pytest.approx(21_600 * 0.13 * 1000 * 1e-3)


def test_nonvolatile_shifters_hold_no_power():
    thermo = PhotonicMZIDevice().cost(862, 10)
    pcm = PhotonicMZIDevice(phase_shifter="nonvolatile").cost(862, 10)
    assert pcm["heater_static_mw"] == 0.0
    assert pcm["static_power_mw"] == pytest.approx(thermo["static_power_mw"] - thermo["heater_static_mw"])
    assert PhotonicMZIDevice(heater_p_pi_mw=12.0).cost(862, 10)["heater_static_mw"] == pytest.approx(
        thermo["heater_static_mw"] * 12.0 / 24.77
    )


def test_calibration_scales_each_component():
    base = PhotonicMZIDevice().cost(862, 10)
    cal = PhotonicMZIDevice(laser_energy_scale=0.5, adc_energy_scale=2.0, phase_dac_area_scale=0.1).cost(862, 10)
    assert cal["laser_static_mw"] == pytest.approx(0.5 * base["laser_static_mw"])
    assert cal["adc_pj"] == pytest.approx(2 * base["adc_pj"])
    assert cal["phase_dac_area_mm2"] == pytest.approx(0.1 * base["phase_dac_area_mm2"])
    assert cal["area_mm2"] == pytest.approx(base["area_mm2"] - 0.9 * base["phase_dac_area_mm2"])
    assert cal["dac_pj"] == base["dac_pj"]
    from codesign.errors import ConfigError

    with pytest.raises(ConfigError, match="laser_energy_scale"):
        PhotonicMZIDevice(laser_energy_scale=0.0)


def test_receivers_are_counted_once_for_noise_and_cost():
    from codesign.devices.photonic_mzi import receiver_noise_coefficients, receivers

    for analog in (True, False):
        dev = PhotonicMZIDevice(analog_accumulation=analog)
        c = dev.cost(862, 10)
        rc = receivers(dev.config, 862, 10)
        assert c["n_tias"] == rc["n_tias"] == c["n_adc_conversions"]
        assert c["n_detectors"] == 2 * 72 * 10
    # with analog accumulation one TIA (one noise floor) per output: a layer whose tiles get no
    # light reads the TIA floor once, not once per tile
    dev = PhotonicMZIDevice(detector_noise=0.0)
    layer = dev.layer(862, 10)
    codes = torch.zeros(1, 862)
    tiles, _ = layer._normalized_tiles(layer.mode)
    std = layer.receiver_noise_std(codes, 1.0, tiles, torch.zeros(1, 10))
    _, floor = receiver_noise_coefficients(dev.config)
    assert torch.allclose(std, torch.full_like(std, layer.transmission() * math.sqrt(floor)))


def test_bad_phase_shifter_is_refused():
    from codesign.errors import ConfigError

    with pytest.raises(ConfigError, match="phase_shifter"):
        PhotonicMZIDevice(phase_shifter="electro_optic")


def test_block_64_is_infeasible_and_names_the_limit():
    reasons = PhotonicMZIDevice(block_size=64).feasibility(862, 10)
    assert len(reasons) == 1
    assert "max_waveguide_power_dbm=20 dBm" in reasons[0]
    assert "40.3 dBm" in reasons[0]  # -25 + (129 x 0.31 + 1.2) + 24.1 dB
    assert "block_size=64" in reasons[0] and "link budget 20.9 dB" in reasons[0]


@pytest.mark.parametrize("k, feasible, power_mw", [
    (8, True, 3.594), (12, True, 6.357), (16, True, 11.25), (32, False, 110.5),
])
def test_searched_block_sizes_feasibility_at_defaults(k, feasible, power_mw):
    dev = PhotonicMZIDevice(block_size=k)
    assert (dev.feasibility(862, 10) == []) is feasible
    assert dev.cost(862, 10)["waveguide_power_mw"] == pytest.approx(power_mw, rel=1e-3)


def test_feasibility_follows_its_limit_fields():
    dev = PhotonicMZIDevice(block_size=32)
    assert dev.feasibility(862, 10)
    assert dev.with_overrides({"max_waveguide_power_dbm": 21.0}).feasibility(862, 10) == []
    assert dev.with_overrides({"adc_bits": 7}).feasibility(862, 10) == []  # 3 dB less headroom
    assert dev.with_overrides({"detector_sensitivity_dbm": -26.0}).feasibility(862, 10) == []
    # independent of the matrix size: a property of the tile's optical path
    assert PhotonicMZIDevice().feasibility(10_000, 100) == []


# ------------------------------------------------------------------ issue 12: crosstalk, voltage DAC
def test_thermal_crosstalk_correlates_neighbouring_phase_errors():
    # e_i = z_i + c (z_{i-1} + z_{i+1}) along a mesh column: an interior heater has variance
    # sigma^2 (1 + 2 c^2), adjacent heaters covariance 2 c sigma^2, next-but-one c^2 sigma^2
    c, sigma = 0.3, 0.05
    layer = PhotonicMZIDevice(block_size=16, phase_noise_rad=sigma, bs_error=0.0,
                              thermal_crosstalk=c).layer(1600, 32)  # 200 tiles, 400 screens
    layer.draw_instance(2)
    err = layer.realized_phases(Mode.INSTANCE)["delta"] - layer.realized_phases(Mode.NOMINAL)["delta"]
    err = err.detach().double()  # [400, 16] output screens: adjacent modes are neighbours
    inner = err[:, 1:15]
    assert inner.std().item() == pytest.approx(sigma * math.sqrt(1 + 2 * c * c), rel=0.05)
    cov1 = (err[:, 2:14] * err[:, 3:15]).mean().item()  # both interior: exactly 2 c sigma^2
    cov2 = (err[:, 2:13] * err[:, 4:15]).mean().item()
    assert cov1 == pytest.approx(2 * c * sigma**2, rel=0.1)  # estimate's rel. std ~3 %
    assert cov2 == pytest.approx(c * c * sigma**2, rel=0.35)  # 0.09 sigma^2, abs std ~0.02
    # no crosstalk: independent errors
    quiet, _ = _layer(16, phase_noise_rad=sigma, bs_error=0.0, thermal_crosstalk=0.0)
    quiet.draw_instance(2)
    e0 = (quiet.realized_phases(Mode.INSTANCE)["delta"] - quiet.realized_phases(Mode.NOMINAL)["delta"]).detach()
    assert abs((e0[:, :-1] * e0[:, 1:]).mean().item()) < 0.1 * sigma**2


def test_mesh_neighbours_are_adjacent_mzis_of_one_column():
    adj = neighbour_matrix(4)  # columns (first mode, n): (0, 2), (1, 1), (0, 2), (1, 1)
    assert adj.shape == (6, 6) and torch.equal(adj, adj.T)
    assert adj.sum().item() == 2 * 2  # two pairs: MZIs 0-1 (column 0) and 3-4 (column 2)
    assert adj[0, 1] == adj[3, 4] == 1.0 and adj[1, 2] == 0.0
    assert torch.equal(neighbour_matrix(3, screen=True), torch.tensor(
        [[0.0, 1, 0], [1, 0, 1], [0, 1, 0]], dtype=torch.float64))


def test_uncalibrated_crosstalk_shifts_programmed_phases_and_nonvolatile_has_none():
    c = 0.05
    cal, _ = _layer(8, thermal_crosstalk=c)
    raw, _ = _layer(8, thermal_crosstalk=c, crosstalk_calibrated=False)
    a, b = cal.realized_phases(Mode.NOMINAL)["delta"], raw.realized_phases(Mode.NOMINAL)["delta"]
    heat = torch.remainder(a, 2 * math.pi).double() @ neighbour_matrix(8, screen=True)
    assert torch.allclose((b - a).double(), c * heat, atol=1e-5)
    assert (b - a).abs().max().item() > 0.1  # ~ c x 2 neighbours x pi
    pcm, _ = _layer(8, thermal_crosstalk=c, crosstalk_calibrated=False, phase_shifter="nonvolatile")
    assert torch.equal(pcm.realized_phases(Mode.NOMINAL)["delta"], a)


@pytest.mark.parametrize("bits", [3, 5])
def test_voltage_quantization_levels_are_quadratic_in_the_code(bits):
    layer, _ = _layer(16, phase_bits=bits, phase_quantization="voltage")
    phi = layer.realized_phases(Mode.NOMINAL)["phi"].detach().double()
    n = 2**bits
    wrapped = torch.remainder(phi, 2 * math.pi)
    levels = 2 * math.pi * (torch.arange(n + 1, dtype=torch.float64) / n) ** 2  # 2 pi (m / N)^2
    dist = (wrapped[..., None] - levels).abs()
    assert dist.min(-1).values.max().item() < 1e-5  # every phase sits on a level
    used = torch.unique(dist.argmin(-1) % n)  # level N is 2 pi = level 0
    # the phases of one 16x16 mesh use nearly every level (which few stay empty depends on the
    # CPU's SVD rounding: 31 of 32 on one machine, 30 on another); a collapsed quantizer uses few
    assert len(used) >= n - max(1, n // 8)
    # the spacing grows with the phase: 2 pi / N^2 at the bottom, (2N - 1) 2 pi / N^2 at the top
    assert 2 * math.pi * (n**2 - (n - 1) ** 2) / n**2 == pytest.approx(2 * math.pi * (2 * n - 1) / n**2)
    uniform, _ = _layer(16, phase_bits=bits)
    err_v = (phi - layer.phi.detach().double()).abs()
    err_u = (uniform.realized_phases(Mode.NOMINAL)["phi"].detach().double() - uniform.phi.detach().double()).abs()
    big = torch.remainder(layer.phi.detach().double(), 2 * math.pi) > 1.5 * math.pi
    small = torch.remainder(layer.phi.detach().double(), 2 * math.pi) < 0.5 * math.pi
    assert err_v[big].mean() > 1.3 * err_u[big].mean()  # coarser at large phases
    assert err_v[small].mean() < 0.8 * err_u[small].mean()  # finer at small phases


def test_voltage_quantization_passes_gradients_straight_through():
    layer, _ = _layer(8, phase_bits=3, phase_quantization="voltage", phase_noise_rad=0.0)
    layer.realized_phases(Mode.NOMINAL)["phi"].sum().backward()
    assert torch.equal(layer.phi.grad, torch.ones_like(layer.phi))


def test_new_fields_are_validated():
    from codesign.errors import ConfigError

    for bad in ({"phase_quantization": "current"}, {"thermal_crosstalk": 0.9},
                {"laser_margin_db": 50.0}, {"tia_noise_pa_per_rthz": -1.0}):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            PhotonicMZIDevice(**bad)


def test_config_saved_before_issue_12_still_loads():
    old = {"block_size": 12, "phase_bits": 8, "phase_noise_rad": 0.01, "bs_error": 0.005,
           "dac_bits": 8, "adc_bits": 8, "detector_noise": 0.001, "analog_accumulation": True,
           "clock_ghz": 5.0}
    cfg = PhotonicMZIConfig.from_dict(old)
    assert cfg.detector_noise == 0.001  # now an extra term on top of shot/TIA noise
    assert cfg.receiver_noise and cfg.laser_margin_db == 0.0 and cfg.phase_quantization == "phase"


# ------------------------------------------------------------------ issue 12: laser margin
def test_laser_margin_scales_laser_waveguide_and_received_power():
    base = PhotonicMZIDevice().cost(862, 10)
    low = PhotonicMZIDevice(laser_margin_db=-10.0).cost(862, 10)
    for key in ("laser_static_mw", "waveguide_power_mw", "received_power_mw"):
        assert low[key] == pytest.approx(base[key] / 10, rel=1e-9), key
    assert low["laser_static_mw"] == pytest.approx(base["laser_static_mw"] / 10, rel=1e-9)
    # at zero margin a unit output brings sensitivity x 2^adc_bits to the detectors
    assert base["received_power_mw"] == pytest.approx(10 ** (-25 / 10) * 256, rel=1e-9)
    # a margin eats into the link budget
    # k = 16: 11.25 mW per waveguide at zero margin; +10 dB is 112.5 mW, over the 100 mW limit
    reasons = PhotonicMZIDevice(block_size=16, laser_margin_db=10.0).feasibility(862, 10)
    assert reasons and "laser_margin_db=10 dB" in reasons[0] and "20.5 dBm" in reasons[0]
    assert PhotonicMZIDevice(block_size=32, laser_margin_db=-1.0).feasibility(862, 10) == []


def test_homodyne_receivers_have_a_priced_local_oscillator_and_its_shot_noise():
    from codesign.devices.photonic_mzi import Q_E_C, homodyne_noise_coefficients, lo_power_mw, optical_link

    dev = PhotonicMZIDevice(detection="homodyne", block_size=8, phase_bits=32, phase_noise_rad=0.0, bs_error=0.0,
                            dac_bits=32, adc_bits=32, laser_margin_db=-10 * math.log10(2.0**24))
    cfg = dev.config
    p_lo = lo_power_mw(cfg)
    assert p_lo == pytest.approx(10 ** (optical_link(cfg)["waveguide_dbm"] / 10))  # one waveguide's power
    c = dev.cost(40, 8)
    assert c["lo_static_mw"] == pytest.approx(c["n_detectors"] / 2 * p_lo / 0.2)  # one LO per pair, wall-plug 0.2
    lo, sig, tia = homodyne_noise_coefficients(cfg)
    p_fs = 10 ** (optical_link(cfg)["received_dbm"] / 10) * 1e-3
    assert lo == pytest.approx(Q_E_C * 5e9 / (2 * p_fs))  # LO-limited shot noise: q B / (2 R P_fs)
    # one unit output in one of the row's 5 tiles: every tile's pair adds its LO shot noise,
    # the output's one TIA its floor
    k_mat = torch.zeros(8, 40)
    k_mat[0, 0] = 1.0
    x = torch.zeros(4000, 40)
    x[:, 0] = 1.0
    layer = dev.layer(40, 8)
    layer.load_matrix(k_mat)
    layer.eval()
    layer.adc_range.value.fill_(1e3)
    nominal = layer(x)
    layer.draw_instance(5)
    std = (layer(x) - nominal)[:, 0].double().std().item()
    expected = math.sqrt(5 * lo + sig + tia)  # u = 1 in the lit tile
    assert std == pytest.approx(expected, rel=0.06)
    # a stronger LO lowers the TIA's share only: the noise tends to the LO-limited floor
    strong = PhotonicMZIDevice(detection="homodyne", lo_power_mw=100 * p_lo, laser_margin_db=cfg.laser_margin_db,
                               block_size=8, adc_bits=32)
    lo2, _, tia2 = homodyne_noise_coefficients(strong.config)
    assert lo2 == pytest.approx(lo) and tia2 == pytest.approx(tia / 100)
    from codesign.errors import ConfigError

    with pytest.raises(ConfigError, match="detection"):
        PhotonicMZIDevice(detection="direct")
