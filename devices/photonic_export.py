"""Device-native export of a photonic MZI-mesh layer: format ``photonic-mesh/2``.

Two files in the layer's export folder:

* ``photonic_mesh.json``: the manifest (format and version, device config, tile layout, the
  mesh's conventions, DAC/ADC settings, digital scales, a doc line and shape for every array);
* ``photonic_mesh.npz``: per tile, the phase settings of both Clements meshes (``U`` and
  ``V^T``) and of their output phase screens as phase-DAC codes and in radians, and the
  attenuator (singular value) settings; the tile layout of K.

:func:`load_mesh` rebuilds the layer from the DAC codes, the attenuator settings, the
calibrated ADC range and (``input_range="calibrated"``) the calibrated input range alone (no K),
so that its nominal effective matrix and every seeded hardware draw are bit-for-bit those of
the exported layer. A trained phase may lie outside ``[0, 2 pi)``; the simulator's float
arithmetic depends on its whole number of turns, so ``*_turns`` keeps it (a chip ignores it:
the phase it realises is the code's).

This module does not import :mod:`codesign.devices.photonic_mzi` (which imports it); the layer
and device are used through their attributes.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from codesign.errors import ConfigError

from .base import Device, DeviceLayer, Mode
from .clements import mesh_layout
from .export_io import (
    REEXPORT,
    adc_value,
    check_section,
    layer_section,
    read_npz,
    saved_layer,
    write_json,
    write_npz,
)

#: Version 2 (issue 27): the input DAC's calibrated range (``input_dac.input_range``; a version 1
#: reader would scale every vector by its max), and ``attenuators.quantized`` stated as the layer
#: computes it. Version 1 bundles are refused with the re-export hint.
FORMAT = "photonic-mesh/2"
VERSION = 2
MANIFEST = "photonic_mesh.json"
ARRAYS = "photonic_mesh.npz"
TWO_PI = 2 * math.pi

#: Every array of ``photonic_mesh.npz`` with its shape (``T`` tiles, ``M = k(k-1)/2`` MZIs per
#: mesh, ``k`` modes) and meaning; written into the manifest's ``arrays`` entry too.
ARRAY_DOCS: dict[str, tuple[str, str]] = {}
for _mesh, _what in (("u", "U mesh (output side, after the attenuators)"),
                     ("v", "V^T mesh (input side, before the attenuators)")):
    for _ph, _shape, _desc in (
        ("theta", "[T, M]", "internal phase theta of each MZI"),
        ("phi", "[T, M]", "external phase phi of each MZI (on its top input)"),
        ("screen", "[T, k]", "output phase screen, one shifter per mode after the mesh"),
    ):
        ARRAY_DOCS[f"{_mesh}_{_ph}_code"] = (
            _shape, f"{_what}: {_desc}, phase-DAC code (int64; see phase_dac)")
        ARRAY_DOCS[f"{_mesh}_{_ph}_rad"] = (
            _shape, f"{_what}: {_desc}, the phase the code realises, radians in [0, 2 pi) (float64)")
        ARRAY_DOCS[f"{_mesh}_{_ph}_turns"] = (
            _shape, f"{_what}: {_desc}, whole 2 pi turns of the simulator's set-point (int64; a chip "
            "ignores it, the re-simulation needs it to repeat the same float arithmetic)")
ARRAY_DOCS.update({
    "attenuator_amplitude_ratio": (
        "[T, k]", "attenuator column between the meshes: amplitude transmission s_i / max|s| "
        "(float64, in [-1, 1]; a negative value is |value| with an extra pi phase)"),
    "attenuator_realized_ratio": (
        "[T, k]", "the amplitude transmission each attenuator MZI realises for that ratio: "
        "sin(theta / 2) with theta = 2 asin|ratio| on the phase DAC's levels (float64; the matrix "
        "the layer computes uses these)"),
    "tile_k_row_range_index": (
        "[T, 2]", "rows [start, stop) of K (outputs) tile t holds (int64)"),
    "tile_k_col_range_index": (
        "[T, 2]", "columns [start, stop) of K (inputs) tile t holds (int64)"),
    "mzi_column_index": ("[M]", "mesh column of each MZI in the phase arrays' order (int64)"),
    "mzi_top_mode_index": (
        "[M]", "upper mode m of each MZI (it couples modes m and m + 1) (int64)"),
})


# --------------------------------------------------------------------------- phase DAC codes
def phase_codes(p: torch.Tensor, bits: int, how: str) -> tuple[np.ndarray, np.ndarray]:
    """``(turns, code)`` of the phase DAC for set-points ``p`` (int64 arrays, ``p``'s shape).

    The same float operations as :func:`codesign.devices.photonic_mzi.quantize_phase`:
    ``how == "phase"``: ``c = round(p / (2 pi / N))``, code ``c mod N``, turns ``c div N``;
    ``"voltage"``: turns ``floor(p / 2 pi)``, code ``round(sqrt(frac / 2 pi) N)`` in
    ``[0, N]`` (``N = 2**bits``; code ``N`` is the heater's full ``V_2pi`` drive, phase 2 pi).
    """
    n = 2**bits
    with torch.no_grad():
        p = p.detach()
        if how == "phase":
            c = torch.round(p / (TWO_PI / n)).to(torch.int64)
            turns = torch.div(c, n, rounding_mode="floor")
            code = c - turns * n
        else:
            w = torch.floor(p / TWO_PI)
            code = torch.round(torch.sqrt((p - w * TWO_PI).clamp_min(0.0) / TWO_PI) * n).to(torch.int64)
            turns = w.to(torch.int64)
    return turns.cpu().numpy(), code.cpu().numpy()


def code_radians(code: np.ndarray, bits: int, how: str) -> np.ndarray:
    """The phase in ``[0, 2 pi)`` a DAC ``code`` realises (float64)."""
    n = 2**bits
    frac = code / n if how == "phase" else (code / n) ** 2
    return np.mod(TWO_PI * frac, TWO_PI)


def phase_setpoints(turns: np.ndarray, code: np.ndarray, bits: int, how: str, dtype: torch.dtype) -> torch.Tensor:
    """Set-points the simulator's DAC maps back to ``(turns, code)``, in ``dtype``.

    ``phase``: ``c * step`` with ``c = turns N + code`` (the quantizer's own output value).
    ``voltage``: the level ``2 pi (turns + (code / N)^2)``, moved inside the DAC cell at its two
    ends (codes 0 and N) so that the wrap ``floor(p / 2 pi)`` cannot tip over.
    """
    n = 2**bits
    if how == "phase":
        c = torch.from_numpy(turns * n + code).to(dtype)
        return c * (TWO_PI / n)
    nudge = np.where(code == 0, 0.49, np.where(code == n, -0.49, 0.0))
    value = TWO_PI * (turns + ((code + nudge) / n) ** 2)
    return torch.from_numpy(value).to(dtype)


# --------------------------------------------------------------------------- export
def _tile_ranges(layer: DeviceLayer) -> tuple[np.ndarray, np.ndarray]:
    k, rows, cols = layer.k, layer.tile_rows, layer.tile_cols
    r, c = np.divmod(np.arange(rows * cols), cols)
    row_range = np.stack((r * k, np.minimum((r + 1) * k, layer.out_features)), 1)
    col_range = np.stack((c * k, np.minimum((c + 1) * k, layer.in_features)), 1)
    return row_range.astype(np.int64), col_range.astype(np.int64)


def _mzi_positions(k: int) -> tuple[np.ndarray, np.ndarray]:
    layout = mesh_layout(k)
    column, top = [], []
    for i, (first, n) in enumerate(layout.columns):
        column += [i] * n
        top += [first + 2 * j for j in range(n)]
    return np.asarray(column, dtype=np.int64), np.asarray(top, dtype=np.int64)


def export_mesh(
    device: Device,
    layer: DeviceLayer,
    folder: Path,
    link: Mapping[str, float],
    receiver: tuple[float, float],
) -> dict[str, Any]:
    """Write ``layer`` (a :class:`~codesign.devices.photonic_mzi.PhotonicMZILayer`) into ``folder``.

    Args:
        device: the device (its name and export format).
        layer: the programmed layer; its current state is written (trained phases included).
        folder: an existing, empty folder.
        link: :func:`~codesign.devices.photonic_mzi.optical_link` of the layer's config.
        receiver: :func:`~codesign.devices.photonic_mzi.receiver_noise_coefficients` of it.

    Returns:
        The manifest section: format, files, manifest file, tile count.
    """
    folder = Path(folder)
    cfg = layer.config
    bits, how = cfg.phase_bits, cfg.phase_quantization
    t = layer.n_tiles
    arrays: dict[str, np.ndarray] = {}
    for name, param in (("theta", layer.theta), ("phi", layer.phi), ("screen", layer.delta)):
        turns, code = phase_codes(param, bits, how)
        for mesh, part in (("u", slice(0, t)), ("v", slice(t, 2 * t))):
            arrays[f"{mesh}_{name}_code"] = code[part]
            arrays[f"{mesh}_{name}_rad"] = code_radians(code[part], bits, how)
            arrays[f"{mesh}_{name}_turns"] = turns[part]
    with torch.no_grad():
        sigma = layer.sigma.detach().cpu()
        scale = sigma.abs().amax().clamp_min(1e-30)  # as the layer computes it
    sigma64, scale64 = sigma.double(), float(scale)
    arrays["attenuator_amplitude_ratio"] = (sigma64 / scale64).numpy()
    with torch.no_grad():  # what the chip's attenuator MZIs realise on the phase DAC's levels
        arrays["attenuator_realized_ratio"] = layer.realized_attenuators(
            sigma64 / scale64, Mode.NOMINAL).numpy()
    arrays["tile_k_row_range_index"], arrays["tile_k_col_range_index"] = _tile_ranges(layer)
    arrays["mzi_column_index"], arrays["mzi_top_mode_index"] = _mzi_positions(layer.k)
    transmission = float(layer.transmission())
    full_scale = adc_value(float(layer.adc_range.value))
    calibrated = cfg.input_range == "calibrated"
    input_range = adc_value(float(layer.input_range.value)) if calibrated else None
    n = 2**bits
    dac_max = 1 if cfg.dac_bits == 1 else 2 ** (cfg.dac_bits - 1) - 1
    adc_max = 1 if cfg.adc_bits == 1 else 2 ** (cfg.adc_bits - 1) - 1
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        **layer_section(device, layer),
        "tiles": {
            "block_size": layer.k,
            "grid_rows": layer.tile_rows,
            "grid_cols": layer.tile_cols,
            "count": t,
            "order": "row-major: tile t = r * grid_cols + c holds K[r*k:(r+1)*k, c*k:(c+1)*k] "
                     "(rows = outputs, columns = inputs); edge tiles are zero-padded to k x k",
        },
        "mesh": {
            "modes": layer.k,
            "mzis_per_mesh": mesh_layout(layer.k).n_mzi,
            "columns": mesh_layout(layer.k).depth,
            "mzi_order": "column-major: mesh column i (i = 0..k-1) starts at mode i % 2; its MZI j "
                         "couples modes (i%2 + 2j, i%2 + 2j + 1); see mzi_column_index, mzi_top_mode_index",
            "mzi_transfer": "T(theta, phi) = DC . diag(e^{i theta}, 1) . DC . diag(e^{i phi}, 1), "
                            "DC = [[1, i], [i, 1]] / sqrt(2) (50:50 couplers; Clements et al., Optica 3, 1460 (2016))",
            "mesh_matrix": "M = diag(e^{i screen}) . C_{k-1} ... C_1 . C_0: light meets mesh column 0 "
                           "first; C_i applies T(theta, phi) of column i's MZIs to their mode pairs",
            "light_path": "modulators (x) -> V^T mesh -> attenuators -> U mesh -> coherent detection of "
                          "Re(.); tile matrix = Re(U diag(a) V^T) with a = attenuator_amplitude_ratio",
        },
        "phase_dac": {
            "bits": bits,
            "quantization": how,
            "codes": f"0..{n - 1}" if how == "phase" else f"0..{n} ({n} = the full V_2pi drive, phase 2 pi = 0)",
            "phase_of_code_rad": "2 pi code / 2^bits" if how == "phase" else "2 pi (code / 2^bits)^2",
            "phase_noise_rad": cfg.phase_noise_rad,
            "thermal_crosstalk": cfg.thermal_crosstalk,
            "crosstalk_calibrated": cfg.crosstalk_calibrated,
        },
        "attenuators": {
            "quantized": True,
            "note": "attenuator_amplitude_ratio is the ideal ratio a; each attenuator is an MZI of internal phase "
                    "2 asin|a| on the phase DAC's levels (phase_bits, phase_quantization), with its drive noise: "
                    "attenuator_realized_ratio is what it transmits",
        },
        "input_dac": {
            "bits": cfg.dac_bits,
            "scaling": ("per input vector: x / max|x| into [-1, 1] (digital), then the DAC"
                        if not calibrated else
                        f"one calibrated range (the {cfg.input_percentile:g}th percentile of |x| in training; null "
                        "until calibrated): clip(x / input_range, -1, 1), then the DAC"),
            "input_range": input_range,
            "codes": f"-{dac_max}..{dac_max}, drive = code / {dac_max} of the modulator's full swing",
        },
        "output_adc": {
            "bits": cfg.adc_bits,
            "codes": f"-{adc_max}..{adc_max}, symmetric mid-tread",
            "full_scale_drive": full_scale,
            "full_scale_unit": "the detected tile output of one input waveguide at full drive through "
                               "the normalized, lossy tile (|a| <= 1)",
            "calibrated": full_scale is not None,
            "accumulation": "analog: photocurrents of a block row summed before one ADC per output"
                            if cfg.analog_accumulation else
                            "digital: one ADC per tile output, partial sums added digitally",
        },
        "digital": {
            "weight_scale_k": float(scale64),
            "optical_transmission_amplitude": transmission,
            "output_gain_k_per_drive": float(scale64) / transmission,
            "output": "y = ADC(t Re(U diag(a) V^T) . code / dac_max) * s * output_gain_k_per_drive, "
                      "t = optical_transmission_amplitude; output_gain_k_per_drive = weight_scale_k / t; "
                      + ("s = max|x| of the input vector" if not calibrated else "s = input_dac.input_range"),
        },
        "optics": {
            **{k: float(v) for k, v in link.items()},
            "receiver_noise_variance": "a |u| + c per tile output u (shot + TIA), from the config",
            "receiver_shot_coefficient_a": float(receiver[0]),
            "receiver_floor_coefficient_c": float(receiver[1]),
        },
        "noise": "not stored: a hardware instance (phase errors, coupler errors, receiver noise) is "
                 "re-drawn from the config and the instance seed (draw_instance(seed))",
        "arrays": {name: {"shape": shape, "doc": doc} for name, (shape, doc) in ARRAY_DOCS.items()},
        "files": [MANIFEST, ARRAYS],
    }
    write_npz(folder, ARRAYS, arrays)
    write_json(folder, MANIFEST, manifest)
    return {"format": FORMAT, "files": [MANIFEST, ARRAYS], "manifest": MANIFEST, "tiles": t}


# --------------------------------------------------------------------------- import
def _fail(path: Path, what: str) -> ConfigError:
    return ConfigError(f"{path}: {what}; {REEXPORT}")


def load_mesh(device: Device, folder: Path, manifest: Mapping[str, Any]) -> DeviceLayer:
    """Rebuild the layer :func:`export_mesh` wrote in ``folder`` from its files alone.

    The phases come from the DAC codes (and turns), the singular values from the attenuator
    settings and the weight scale, the ADC range and a calibrated input range from the manifest. Returns the layer in eval
    mode at the saved read time.

    Raises:
        ConfigError: wrong format or version, a missing or damaged file, inconsistent arrays
            (one line naming the file and the fix).
    """
    folder = Path(folder)
    own = check_section(device, manifest, folder, MANIFEST, VERSION)
    path = folder / MANIFEST
    layer = saved_layer(device, own, path)
    cfg = layer.config
    bits, how = cfg.phase_bits, cfg.phase_quantization
    k, t, m = layer.k, layer.n_tiles, mesh_layout(layer.k).n_mzi
    shapes = {}
    for name, (shape, _) in ARRAY_DOCS.items():
        dims = {"T": t, "M": m, "k": k, "2": 2}
        shapes[name] = tuple(dims[d.strip()] for d in shape.strip("[]").split(","))
    arrays = read_npz(folder, ARRAYS, shapes)
    npz = folder / ARRAYS
    n = 2**bits
    top = n - 1 if how == "phase" else n
    dtype = layer.theta.dtype
    with torch.no_grad():
        for name, param in (("theta", layer.theta), ("phi", layer.phi), ("screen", layer.delta)):
            parts = {}
            for kind in ("code", "turns", "rad"):
                parts[kind] = np.concatenate([arrays[f"{mesh}_{name}_{kind}"] for mesh in ("u", "v")])
            code, turns = parts["code"], parts["turns"]
            if not (np.issubdtype(code.dtype, np.integer) and np.issubdtype(turns.dtype, np.integer)):
                raise _fail(npz, f"{name} codes and turns must be integers, found {code.dtype}/{turns.dtype}")
            if code.size and (code.min() < 0 or code.max() > top):
                raise _fail(npz, f"{name} DAC codes outside 0..{top} of a {bits}-bit {how} DAC")
            if not np.allclose(parts["rad"], code_radians(code, bits, how), rtol=0.0, atol=1e-9):
                raise _fail(npz, f"{name} radians disagree with its DAC codes (an edited file?)")
            setpoints = phase_setpoints(turns.astype(np.int64), code.astype(np.int64), bits, how, dtype)
            back = phase_codes(setpoints, bits, how)
            if not (np.array_equal(back[0], turns) and np.array_equal(back[1], code)):
                raise _fail(npz, f"{name} codes cannot be re-set exactly in {dtype} at phase_bits={bits}")
            param.copy_(setpoints.to(param.device))
        att = arrays["attenuator_amplitude_ratio"]
        if not np.all(np.isfinite(att)) or np.abs(att).max(initial=0.0) > 1.0:
            raise _fail(npz, "attenuator amplitude ratios must be finite and within [-1, 1]")
        try:
            scale = float(own["digital"]["weight_scale_k"])
            full_scale = own["output_adc"]["full_scale_drive"]
            full_scale = float("nan") if full_scale is None else float(full_scale)
            input_range = own["input_dac"]["input_range"]
            input_range = float("nan") if input_range is None else float(input_range)
        except (KeyError, TypeError, ValueError) as exc:
            raise _fail(path, f"incomplete manifest ({type(exc).__name__}: {exc})") from None
        layer.sigma.copy_(torch.from_numpy(att * scale).to(dtype))
        layer.adc_range.value.fill_(full_scale)
        if cfg.input_range == "calibrated":
            if not (math.isnan(input_range) or (math.isfinite(input_range) and input_range > 0)):
                raise _fail(path, f"input_dac.input_range={input_range!r} must be a positive number or null")
            layer.input_range.value.fill_(input_range)
    for name, want in (("tile_k_row_range_index", _tile_ranges(layer)[0]),
                       ("tile_k_col_range_index", _tile_ranges(layer)[1]),
                       ("mzi_column_index", _mzi_positions(k)[0]),
                       ("mzi_top_mode_index", _mzi_positions(k)[1])):
        if not np.array_equal(arrays[name], want):
            raise _fail(npz, f"{name} does not match block_size={k} and the layer size")
    return layer


__all__ = ["ARRAY_DOCS", "FORMAT", "code_radians", "export_mesh", "load_mesh", "phase_codes", "phase_setpoints"]
