"""The photonic mesh's native export (``photonic-mesh/2``) round-trips bit for bit from its files.

A layer is exported with ``PhotonicMZIDevice.export_layer`` and rebuilt with
``load_layer_export`` from the DAC codes, attenuator settings and ADC range alone (no K): the
nominal effective matrix and the outputs of seeded hardware instances must be identical (not
merely close), for layers programmed with ``load_matrix``, for phases moved by training (outside
``[0, 2 pi)``), for every preset, both phase-DAC kinds, and for digits students (post hoc and
hardware-aware). Damaged, truncated, wrong-version and missing files give one-line errors.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from codesign.devices import create_device
from codesign.devices.clements import rebuild
from codesign.devices.photonic_export import ARRAYS, FORMAT, MANIFEST, phase_codes, phase_setpoints
from codesign.devices.photonic_mzi import PhotonicMZIDevice, quantize_phase
from codesign.errors import ConfigError

IN, OUT = 20, 10


def _trained_like(layer, seed=0):
    """Move the phases as training does: off the decomposition's [0, 2 pi), signs on sigma."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in (layer.theta, layer.phi, layer.delta):
            p.add_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * 5.0)
        layer.sigma.mul_(torch.rand(layer.sigma.shape, generator=gen, dtype=layer.sigma.dtype) * 1.5 - 0.25)


def _programmed(device, seed=0, trained=True, dtype=torch.float32):
    layer = device.layer(IN, OUT).to(dtype)
    gen = torch.Generator().manual_seed(seed)
    layer.load_matrix(torch.randn(OUT, IN, generator=gen, dtype=torch.float64))
    if trained:
        _trained_like(layer, seed)
    layer.eval()
    x = torch.randn(64, IN, generator=gen, dtype=torch.float64).to(dtype)
    layer(x)  # the first read calibrates the ADC range
    return layer, x


def _round_trip(device, layer, folder):
    folder.mkdir(exist_ok=True)
    section = json.loads(json.dumps(device.export_layer(layer, folder)))  # as read back from export.json
    return device.load_layer_export(folder, section), section


def _assert_identical(layer, loaded, x, seeds=(0, 1, 7)):
    a, b = layer.effective_matrix(), loaded.effective_matrix()
    assert torch.equal(a, b), f"nominal effective matrix differs by {float((a - b).abs().max()):.3g}"
    layer.clear_instance()
    loaded.clear_instance()
    assert torch.equal(layer(x), loaded(x))
    for seed in seeds:
        layer.draw_instance(seed)
        loaded.draw_instance(seed)
        assert torch.equal(layer(x), loaded(x)), f"instance {seed} evaluates differently"
    layer.clear_instance()
    loaded.clear_instance()


# --------------------------------------------------------------------------- DAC codes
@pytest.mark.parametrize("how", ["phase", "voltage"])
@pytest.mark.parametrize("bits", [3, 8, 10])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_codes_give_back_the_quantized_phase_bit_for_bit(how, bits, dtype):
    gen = torch.Generator().manual_seed(bits)
    n = 2**bits
    p = torch.cat((
        torch.randn(4000, generator=gen, dtype=torch.float64) * 12.0,  # several turns, both signs
        torch.tensor([0.0, 2 * math.pi, -2 * math.pi, 4 * math.pi, 1e-9, -1e-9, 2 * math.pi - 1e-9]),
        # at the ends of the DAC's cells, where rounding could tip
        2 * math.pi * (torch.arange(-n, 2 * n, dtype=torch.float64) / n) ** (2 if how == "voltage" else 1),
    )).to(dtype)
    turns, code = phase_codes(p, bits, how)
    top = n - 1 if how == "phase" else n
    assert code.min() >= 0 and code.max() <= top
    back = phase_setpoints(turns, code, bits, how, dtype)
    assert torch.equal(quantize_phase(back, bits, how), quantize_phase(p, bits, how))
    t2, c2 = phase_codes(back, bits, how)
    assert np.array_equal(t2, turns) and np.array_equal(c2, code)


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-5), (torch.float64, 1e-12)])
def test_radians_and_attenuators_alone_give_the_effective_matrix(tmp_path, dtype, tol):
    """The documented meaning of the files: Re(U diag(a) V^T) * weight_scale_k per tile.

    Rebuilt in float64 from the radians (codes mod 2 pi); a float32 layer's trained phases of a
    few turns carry float32 rounding of ~1e-6 rad, hence the looser bound there.
    """
    device = create_device("photonic_mzi", {"block_size": 6})
    layer, _ = _programmed(device, dtype=dtype)
    section = device.export_layer(layer, tmp_path)
    assert section["format"] == FORMAT == "photonic-mesh/2"
    man = json.loads((tmp_path / MANIFEST).read_text())
    z = np.load(tmp_path / ARRAYS)

    def mesh(prefix):
        f = lambda name: torch.from_numpy(z[f"{prefix}_{name}_rad"])  # noqa: E731
        return rebuild(f("theta"), f("phi"), f("screen"))

    u, vh = mesh("u"), mesh("v")
    att = torch.from_numpy(z["attenuator_realized_ratio"]).to(u.dtype)  # as the chip realises them
    tiles = torch.real((u * att[:, None, :]) @ vh).numpy() * man["digital"]["weight_scale_k"]
    k_eff = np.zeros((OUT, IN))
    for t, ((r0, r1), (c0, c1)) in enumerate(zip(z["tile_k_row_range_index"], z["tile_k_col_range_index"])):
        k_eff[r0:r1, c0:c1] = tiles[t, : r1 - r0, : c1 - c0]
    eff = layer.effective_matrix().double().numpy()
    rel = np.abs(k_eff - eff).max() / np.abs(eff).max()
    assert rel < tol, rel


def test_manifest_documents_every_array_with_a_unit(tmp_path):
    device = create_device("photonic_mzi", {"block_size": 4})
    layer, _ = _programmed(device, trained=False)
    device.export_layer(layer, tmp_path)
    man = json.loads((tmp_path / MANIFEST).read_text())
    with np.load(tmp_path / ARRAYS) as z:
        assert set(man["arrays"]) == set(z.files)
        for name in z.files:
            assert name.endswith(("_rad", "_code", "_turns", "_ratio", "_index")), name
            assert man["arrays"][name]["doc"] and man["arrays"][name]["shape"].startswith("[")
    assert man["version"] == 2 and man["device"] == "photonic_mzi"
    assert man["config"] == json.loads(json.dumps(layer.device_spec()["config"]))
    assert man["phase_dac"]["bits"] == 8 and man["output_adc"]["calibrated"] is True
    assert man["tiles"]["count"] == layer.n_tiles == 3 * 5


# --------------------------------------------------------------------------- round trips
CONFIGS = {
    "default": {},
    "voltage-dac-uncalibrated-crosstalk": {"phase_quantization": "voltage", "crosstalk_calibrated": False, "phase_bits": 6},
    "digital-accumulation": {"analog_accumulation": False, "detector_noise": 0.01, "block_size": 8},
    "nonvolatile-10bit": {"phase_shifter": "nonvolatile", "phase_bits": 10, "block_size": 5},
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_round_trip_is_exact(tmp_path, name):
    device = create_device("photonic_mzi", CONFIGS[name])
    layer, x = _programmed(device)
    loaded, _ = _round_trip(device, layer, tmp_path / "mesh")
    assert loaded.config == layer.config and loaded.device_name == "photonic_mzi"
    _assert_identical(layer, loaded, x)


@pytest.mark.parametrize("preset", sorted(PhotonicMZIDevice.presets()))
def test_presets_round_trip(tmp_path, preset):
    device = create_device("photonic_mzi", preset=preset)
    layer, x = _programmed(device, seed=3)
    loaded, _ = _round_trip(device, layer, tmp_path / "mesh")
    _assert_identical(layer, loaded, x)


def test_float64_layer_and_uncalibrated_adc_round_trip(tmp_path):
    device = create_device("photonic_mzi", {"block_size": 6})
    layer = device.layer(IN, OUT).double()
    layer.load_matrix(torch.randn(OUT, IN, generator=torch.Generator().manual_seed(1)))
    _trained_like(layer, 1)
    layer.eval()  # never read: the ADC range is not calibrated yet (null in the manifest)
    loaded, _ = _round_trip(device, layer, tmp_path / "mesh")
    assert json.loads((tmp_path / "mesh" / MANIFEST).read_text())["output_adc"]["full_scale_drive"] is None
    assert loaded.theta.dtype == torch.float64
    x = torch.randn(32, IN, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    _assert_identical(layer, loaded, x)  # both calibrate on the same first batch


# --------------------------------------------------------------------------- damaged files
@pytest.fixture
def exported(tmp_path):
    device = create_device("photonic_mzi", {"block_size": 6})
    layer, _ = _programmed(device)
    section = json.loads(json.dumps(device.export_layer(layer, tmp_path)))
    return device, tmp_path, section


def _one_line_error(device, folder, section, *names):
    with pytest.raises(ConfigError) as info:
        device.load_layer_export(folder, section)
    message = str(info.value)
    assert "\n" not in message
    for name in names:
        assert name in message, message
    return message


def test_flipped_bytes_in_the_npz_are_refused(exported):
    device, folder, section = exported
    data = bytearray((folder / ARRAYS).read_bytes())
    middle = len(data) // 2
    data[middle : middle + 16] = bytes(b ^ 0xFF for b in data[middle : middle + 16])
    (folder / ARRAYS).write_bytes(bytes(data))
    assert "codesign export" in _one_line_error(device, folder, section, ARRAYS, "damaged")


def test_truncated_npz_is_refused(exported):
    device, folder, section = exported
    data = (folder / ARRAYS).read_bytes()
    (folder / ARRAYS).write_bytes(data[: len(data) * 2 // 3])
    _one_line_error(device, folder, section, ARRAYS)


def test_wrong_version_is_refused(exported):
    device, folder, section = exported
    man = json.loads((folder / MANIFEST).read_text())
    man["format"], man["version"] = "photonic-mesh/3", 3
    (folder / MANIFEST).write_text(json.dumps(man))
    _one_line_error(device, folder, section, "photonic-mesh/3", "photonic-mesh/2")
    _one_line_error(device, folder, {**section, "format": "photonic-mesh/3"}, "photonic-mesh/3")
    # a version 1 bundle (no calibrated input range) is refused with the re-export hint
    man["format"], man["version"] = "photonic-mesh/1", 1
    (folder / MANIFEST).write_text(json.dumps(man))
    _one_line_error(device, folder, {**section, "format": "photonic-mesh/1"}, "photonic-mesh/1", "export")
    _one_line_error(device, folder, {**section, "format": "crossbar-conductance/1"}, "crossbar-conductance/1")


def test_missing_file_is_refused(exported):
    device, folder, section = exported
    (folder / ARRAYS).unlink()
    _one_line_error(device, folder, section, ARRAYS, "missing")


def test_edited_codes_are_refused(exported):
    device, folder, section = exported
    with np.load(folder / ARRAYS) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["u_theta_code"] = arrays["u_theta_code"] + 2**8  # beyond an 8-bit DAC
    np.savez(folder / ARRAYS, **arrays)
    _one_line_error(device, folder, section, ARRAYS, "0..255")


# --------------------------------------------------------------------------- real students
@pytest.fixture(scope="module")
def students(digits_teacher):
    """Two digits students on 8 x 8 meshes: mapped post hoc, and after hardware-aware training."""
    from codesign.distill import DistillConfig, Workspace, run_distill
    from codesign.students import FitConfig

    ws = Workspace()
    out = {}
    for protocol in ("posthoc", "aware"):
        cfg = DistillConfig(device="photonic_mzi", pca_rank=10, hw_draws=1, protocol=protocol,
                            device_overrides={"block_size": 8}, fit=FitConfig(aware_steps=15))
        out[protocol] = (run_distill(cfg, ws), cfg)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["posthoc", "aware"])
def test_digits_students_round_trip(tmp_path, digits, students, protocol):
    from codesign.distill import hardware_accuracy

    result, cfg = students[protocol]
    layer = result.layer
    device = create_device("photonic_mzi", dict(cfg.device_overrides))
    if protocol == "aware":  # training moved the phases off what load_matrix(K) would program
        fresh = device.layer(layer.in_features, layer.out_features)
        fresh.load_matrix(result.student.K_)
        assert not torch.equal(fresh.theta, layer.theta)
    loaded, _ = _round_trip(device, layer, tmp_path / "mesh")
    psi, y = result.features.test, torch.from_numpy(digits.y_test)
    _assert_identical(layer, loaded, psi[:200])
    a = hardware_accuracy(layer, psi, y, 3, cfg.seed, cfg.eval_time_s)
    b = hardware_accuracy(loaded, psi, y, 3, cfg.seed, cfg.eval_time_s)
    assert a == b and min(a) > 0.8, (a, b)
