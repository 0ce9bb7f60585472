"""Device-native export of an analog crossbar layer: format ``crossbar-conductance/2``.

Three files in the layer's export folder:

* ``crossbar.json``: the manifest (format and version, device config, tile layout, the
  conductance levels, column scales, drift-compensation reference, DAC/ADC settings, a doc line
  and shape for every array);
* ``crossbar.npz``: per tile and device pair, the differential conductance maps ``G+`` and
  ``G-`` in microsiemens and as level indices, in the crossbar's orientation ``[word line
  (input), bit line (column)]`` (a weight of ``weight_slices`` slices takes that many adjacent
  columns), padded to the full tile with unused devices at level 0; the column scales; the tile
  layout of K;
* ``crossbar_conductances.csv``: the same conductances as one long table, one line per weight
  (``tile,row,col,pair,k_out,k_in,slice,g_plus_uS,g_minus_uS,level_plus,level_minus``), for people who
  program chips from spreadsheets; padding cells are left out.

:func:`load_crossbar` rebuilds the layer from the level indices, the column scales and the
calibrated ADC range alone (no K): the programmed conductances, hence the nominal effective
matrix and every seeded hardware draw (programming noise, drift, 1/f noise, stuck devices, IR
drop, output noise) at any read time, are bit-for-bit those of the exported layer. It also
checks that the microsiemens maps and the CSV agree with the levels.

This module does not import :mod:`codesign.devices.analog_crossbar` (which imports it).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from codesign.cache import atomic_write_text
from codesign.errors import ConfigError

from .base import Device, DeviceLayer
from .export_io import (
    REEXPORT,
    adc_value,
    check_section,
    layer_section,
    one_line,
    read_npz,
    saved_layer,
    write_json,
    write_npz,
)

FORMAT = "crossbar-conductance/2"
VERSION = 2
MANIFEST = "crossbar.json"
ARRAYS = "crossbar.npz"
TABLE = "crossbar_conductances.csv"
CSV_COLUMNS = ("tile", "row", "col", "pair", "k_out", "k_in", "slice", "g_plus_uS", "g_minus_uS",
               "level_plus", "level_minus")

#: Every array of ``crossbar.npz`` with its shape (``T`` tiles, ``P`` devices per polarity, ``R x C``
#: cells per polarity and pair, ``out`` rows of K) and meaning; written into the manifest too.
ARRAY_DOCS: dict[str, tuple[str, str]] = {
    "g_plus_uS": ("[T, P, R, C]", "G+ of each device, microsiemens: level_plus_index / levels * g_max_uS "
                                  "(float64; [tile, pair, word line = input, bit line = column])"),
    "g_minus_uS": ("[T, P, R, C]", "G- of each device, microsiemens (as g_plus_uS)"),
    "level_plus_index": ("[T, P, R, C]", "G+ as a programmable level 0..levels (int64)"),
    "level_minus_index": ("[T, P, R, C]", "G- as a programmable level 0..levels (int64)"),
    "column_scale_k_per_gmax": (
        "[out]", "digital scale of each output (float64; weight_scaling='layer': one value repeated)"),
    "tile_k_in_range_index": ("[T, 2]", "inputs (columns of K) [start, stop) on tile t's word lines (int64)"),
    "tile_k_out_range_index": ("[T, 2]", "outputs (rows of K) [start, stop) on tile t's columns (int64); "
                                         "output o's slice s is bit line (o - start) * weight_slices + s"),
}


def _fail(path: Path, what: str) -> ConfigError:
    return ConfigError(f"{path}: {what}; {REEXPORT}")


def level_indices(layer: DeviceLayer) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(level_plus, level_minus, scale)`` of the layer's programming targets.

    The layer's own mapping (``AnalogCrossbarLayer.target_levels``: column scale, slices, pairs),
    as level indices ``[P, S, out, in]`` int64 in ``0..2**bits_per_cell - 1``; ``scale`` is ``[out]``.
    """
    levels = 2**layer.config.bits_per_cell - 1
    with torch.no_grad():
        g, scale = layer.target_levels()
        lv = torch.round(g.detach().double().cpu() * levels).to(torch.int64)
    return lv[0], lv[1], scale.detach().cpu().reshape(-1)


def _grid(layer: DeviceLayer) -> tuple[int, int, np.ndarray, np.ndarray]:
    """``(row_tiles, col_tiles, in_range, out_range)``: tile ``t = r * col_tiles + c``."""
    cfg = layer.config
    per_tile = cfg.tile_cols // cfg.weight_slices
    rows = -(-layer.in_features // cfg.tile_rows)
    cols = -(-layer.out_features // per_tile)
    r, c = np.divmod(np.arange(rows * cols), cols)
    in_range = np.stack((r * cfg.tile_rows, np.minimum((r + 1) * cfg.tile_rows, layer.in_features)), 1)
    out_range = np.stack((c * per_tile, np.minimum((c + 1) * per_tile, layer.out_features)), 1)
    return rows, cols, in_range.astype(np.int64), out_range.astype(np.int64)


def _to_tiles(levels: np.ndarray, layer: DeviceLayer, in_range: np.ndarray, out_range: np.ndarray) -> np.ndarray:
    """``[P, S, out, in]`` -> ``[T, P, tile_rows, tile_cols]`` in crossbar orientation, zero-padded."""
    cfg = layer.config
    P, S = levels.shape[:2]
    tiles = np.zeros((len(in_range), P, cfg.tile_rows, cfg.tile_cols), dtype=levels.dtype)
    for t, ((i0, i1), (o0, o1)) in enumerate(zip(in_range, out_range)):
        block = levels[:, :, o0:o1, i0:i1]  # [P, S, o, i] -> [P, i, o * S + s]
        tiles[t, :, : i1 - i0, : (o1 - o0) * S] = block.transpose(0, 3, 2, 1).reshape(P, i1 - i0, -1)
    return tiles


def _from_tiles(tiles: np.ndarray, layer: DeviceLayer, in_range: np.ndarray, out_range: np.ndarray) -> np.ndarray:
    """Inverse of :func:`_to_tiles` (the padding is dropped): ``[P, S, out, in]``."""
    cfg = layer.config
    P, S = tiles.shape[1], cfg.weight_slices
    out = np.zeros((P, S, layer.out_features, layer.in_features), dtype=tiles.dtype)
    for t, ((i0, i1), (o0, o1)) in enumerate(zip(in_range, out_range)):
        block = tiles[t, :, : i1 - i0, : (o1 - o0) * S].reshape(P, i1 - i0, o1 - o0, S)
        out[:, :, o0:o1, i0:i1] = block.transpose(0, 3, 2, 1)
    return out


def _padding_mask(layer: DeviceLayer, in_range: np.ndarray, out_range: np.ndarray) -> np.ndarray:
    cfg = layer.config
    mask = np.ones((len(in_range), cfg.devices_per_polarity, cfg.tile_rows, cfg.tile_cols), dtype=bool)
    for t, ((i0, i1), (o0, o1)) in enumerate(zip(in_range, out_range)):
        mask[t, :, : i1 - i0, : (o1 - o0) * cfg.weight_slices] = False
    return mask


def _csv_rows(plus: np.ndarray, minus: np.ndarray, levels: int, g_max_us: float,
              in_range: np.ndarray, out_range: np.ndarray) -> np.ndarray:
    """The long table as an ``[n, 11]`` array (float64), in the order tile, pair, row, col."""
    P, S = plus.shape[:2]
    rows = []
    for t, ((i0, i1), (o0, o1)) in enumerate(zip(in_range, out_range)):
        for p in range(P):
            k_in, k_out, sl = np.meshgrid(np.arange(i0, i1), np.arange(o0, o1), np.arange(S), indexing="ij")
            k_in, k_out, sl = k_in.reshape(-1), k_out.reshape(-1), sl.reshape(-1)
            lp, lm = plus[p, sl, k_out, k_in], minus[p, sl, k_out, k_in]
            rows.append(np.stack((np.full(k_in.shape, t), k_in - i0, (k_out - o0) * S + sl, np.full(k_in.shape, p),
                                  k_out, k_in, sl, lp / levels * g_max_us, lm / levels * g_max_us, lp, lm),
                                 1).astype(np.float64))
    return np.concatenate(rows) if rows else np.zeros((0, len(CSV_COLUMNS)))


def _write_csv(folder: Path, table: np.ndarray) -> None:
    lines = [",".join(CSV_COLUMNS)]
    for tile, row, col, pair, k_out, k_in, sl, gp, gm, lp, lm in table.tolist():
        lines.append(f"{int(tile)},{int(row)},{int(col)},{int(pair)},{int(k_out)},{int(k_in)},{int(sl)},"
                     f"{gp!r},{gm!r},{int(lp)},{int(lm)}")
    atomic_write_text(Path(folder) / TABLE, "\n".join(lines) + "\n")


def export_crossbar(device: Device, layer: DeviceLayer, folder: Path) -> dict[str, Any]:
    """Write ``layer`` (an :class:`~codesign.devices.analog_crossbar.AnalogCrossbarLayer`) into ``folder``.

    Returns:
        The manifest section: format, files, manifest file, tile count.
    """
    folder = Path(folder)
    cfg = layer.config
    levels = 2**cfg.bits_per_cell - 1
    plus_t, minus_t, scale_t = level_indices(layer)
    plus, minus = plus_t.numpy(), minus_t.numpy()
    row_tiles, col_tiles, in_range, out_range = _grid(layer)
    lp, lm = _to_tiles(plus, layer, in_range, out_range), _to_tiles(minus, layer, in_range, out_range)
    arrays = {
        "g_plus_uS": lp / levels * cfg.g_max_us,
        "g_minus_uS": lm / levels * cfg.g_max_us,
        "level_plus_index": lp,
        "level_minus_index": lm,
        "column_scale_k_per_gmax": scale_t.double().numpy(),
        "tile_k_in_range_index": in_range,
        "tile_k_out_range_index": out_range,
    }
    full_scales = [adc_value(float(r.value)) for r in layer.adc_ranges()]
    input_range = adc_value(float(layer.input_range.value)) if cfg.input_range == "calibrated" else None
    dac_max = 1 if cfg.dac_bits == 1 else 2 ** (cfg.dac_bits - 1) - 1
    adc_max = 1 if cfg.adc_bits == 1 else 2 ** (cfg.adc_bits - 1) - 1
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        **layer_section(device, layer),
        "tiles": {
            "tile_rows": cfg.tile_rows,
            "tile_cols": cfg.tile_cols,
            "outputs_per_tile": cfg.tile_cols // cfg.weight_slices,
            "grid_rows": row_tiles,
            "grid_cols": col_tiles,
            "count": row_tiles * col_tiles,
            "order": "tile t = r * grid_cols + c: word lines carry inputs K[:, r*tile_rows:(r+1)*tile_rows]; "
                     "output o of tile column c takes bit lines (o - start) * weight_slices + s for its slices "
                     "s; unused cells are level 0 (RESET)",
            "partial_sums": "the ADC outputs of the row tiles of an output are added digitally",
        },
        "conductance": {
            "bits_per_cell": cfg.bits_per_cell,
            "levels": levels,
            "g_max_uS": cfg.g_max_us,
            "g_of_level_uS": "level / levels * g_max_uS",
            "weight_slices": cfg.weight_slices,
            "slice_significance": list(cfg.slice_significances()),
            "devices_per_polarity": cfg.devices_per_polarity,
            "pair_significance": list(cfg.pair_factors()),
            "weight": "K[o, i] = column_scale_k_per_gmax[o] * sum_s slice_significance[s] * sum_p "
                      "pair_significance[p] (G+ - G-)[p, s, i, o] / g_max / sum(pair_significance); "
                      "at most one polarity of a weight is above level 0",
            "weight_scaling": cfg.weight_scaling,
        },
        "drift_compensation": {
            "enabled": bool(cfg.drift_compensation),
            "type": cfg.drift_compensation_type,
            "reference": "an all-ones input read through the periphery (output noise, ADC at the programming "
                         "read's full scale), G+ and G- columns apiece, right after programming and at the read "
                         "time; global: the output gain is multiplied by sum|codes(0)| / sum|codes(t)| "
                         "(aihwkit GlobalDriftCompensation); column: per slice column "
                         "(aihwkit PerColumnDriftCompensation). A chip takes its own reads",
        },
        "input_dac": {
            "bits": cfg.dac_bits,
            "encoding": cfg.input_encoding,
            "cycles": cfg.cycles,
            "scaling": ("per input vector: x / max|x| into [-1, 1] (digital), then the DAC"
                        if cfg.input_range == "vector_absmax" else
                        "one calibrated range: clip(x / input_range, -1, 1), then the DAC"),
            "input_range": input_range,
            "codes": f"-{dac_max}..{dac_max}; drive = code / {dac_max} of full scale"
                     + ("; bit_serial: two's-complement bit planes, one 0/1 drive per bit, the top bit "
                        "weighted -2^(bits-1)" if cfg.input_encoding == "bit_serial" else ""),
        },
        "output_adc": {
            "bits": cfg.adc_bits,
            "columns_per_adc": cfg.adc_share,
            "codes": f"-{adc_max}..{adc_max}, symmetric mid-tread, one conversion per slice column per row "
                     "tile per input cycle",
            "full_scale_gmax_units": full_scales,
            "full_scale_uA": [None if f is None else f * cfg.g_max_us * cfg.read_voltage_v for f in full_scales],
            "full_scale_unit": "per slice (least significant first); gmax_units: the current of one g_max "
                               "device at full-scale input; uA: the same at read_voltage_v",
            "calibrated": all(f is not None for f in full_scales),
        },
        "digital": {
            "output": "y[o] = sum over row tiles, input cycles and slices of ADC(column current) * cycle weight "
                      "* slice significance / sum(pair_significance) * drift gain * input scale * "
                      "column_scale_k_per_gmax[o]",
        },
        "noise": "not stored: a hardware instance (stuck devices, programming noise, drift exponents, 1/f, "
                 "weight and output noise) is re-drawn from the config, the instance seed and the read time",
        "csv": {
            "file": TABLE,
            "layout": "one long table, one line per device pair position of K (padding cells left out), sorted "
                      "by tile, pair, row; row = word line (input) and col = bit line within the tile, "
                      "k_out/k_in = the weight's row/column in K, slice = its significance",
            "columns": list(CSV_COLUMNS),
        },
        "arrays": {name: {"shape": shape, "doc": doc} for name, (shape, doc) in ARRAY_DOCS.items()},
        "files": [MANIFEST, ARRAYS, TABLE],
    }
    write_npz(folder, ARRAYS, arrays)
    _write_csv(folder, _csv_rows(plus, minus, levels, cfg.g_max_us, in_range, out_range))
    write_json(folder, MANIFEST, manifest)
    return {"format": FORMAT, "files": [MANIFEST, ARRAYS, TABLE], "manifest": MANIFEST, "tiles": row_tiles * col_tiles}


def _read_csv(folder: Path) -> np.ndarray:
    path = Path(folder) / TABLE
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise _fail(path, f"unreadable ({one_line(exc)})") from None
    header, _, body = text.partition("\n")
    if header.strip() != ",".join(CSV_COLUMNS):
        raise _fail(path, f"header {header.strip()[:80]!r}, expected {','.join(CSV_COLUMNS)!r}")
    try:
        table = np.loadtxt(io.StringIO(body), delimiter=",", dtype=np.float64, ndmin=2)
    except ValueError as exc:
        raise _fail(path, f"damaged table ({one_line(exc)[:120]})") from None
    return table.reshape(-1, len(CSV_COLUMNS))


def load_crossbar(device: Device, folder: Path, manifest: Mapping[str, Any]) -> DeviceLayer:
    """Rebuild the layer :func:`export_crossbar` wrote in ``folder`` from its files alone.

    The weights come from the level indices and the column scales, the ADC range from the
    manifest. Returns the layer in eval mode at the saved read time.

    Raises:
        ConfigError: wrong format or version, a missing or damaged file, conductances that
            disagree with the levels, or levels this device model cannot hold (one line naming
            the file and the fix).
    """
    folder = Path(folder)
    own = check_section(device, manifest, folder, MANIFEST, VERSION)
    path = folder / MANIFEST
    layer = saved_layer(device, own, path)
    cfg = layer.config
    levels = 2**cfg.bits_per_cell - 1
    _, _, in_range, out_range = _grid(layer)
    dims = {"T": len(in_range), "P": cfg.devices_per_polarity, "R": cfg.tile_rows, "C": cfg.tile_cols,
            "out": layer.out_features, "2": 2}
    shapes = {name: tuple(dims[d.strip()] for d in shape.strip("[]").split(",")) for name, (shape, _) in ARRAY_DOCS.items()}
    arrays = read_npz(folder, ARRAYS, shapes)
    npz = folder / ARRAYS
    for name, want in (("tile_k_in_range_index", in_range), ("tile_k_out_range_index", out_range)):
        if not np.array_equal(arrays[name], want):
            raise _fail(npz, f"{name} does not match the tile size and the layer size")
    tiles = {}
    for sign in ("plus", "minus"):
        lv = arrays[f"level_{sign}_index"]
        if not np.issubdtype(lv.dtype, np.integer):
            raise _fail(npz, f"level_{sign}_index must be integers, found {lv.dtype}")
        if lv.size and (lv.min() < 0 or lv.max() > levels):
            raise _fail(npz, f"level_{sign}_index outside 0..{levels} (bits_per_cell={cfg.bits_per_cell})")
        if not np.allclose(arrays[f"g_{sign}_uS"], lv / levels * cfg.g_max_us, rtol=1e-12, atol=1e-12 * cfg.g_max_us):
            raise _fail(npz, f"g_{sign}_uS disagrees with level_{sign}_index (an edited file?)")
        if lv[_padding_mask(layer, in_range, out_range)].any():
            raise _fail(npz, f"level_{sign}_index: cells outside K must be at level 0")
        tiles[sign] = lv.astype(np.int64)
    plus = _from_tiles(tiles["plus"], layer, in_range, out_range)
    minus = _from_tiles(tiles["minus"], layer, in_range, out_range)
    if np.any((plus > 0).any((0, 1)) & (minus > 0).any((0, 1))):
        raise _fail(npz, "a weight has both G+ and G- above level 0; this device model programs one "
                         "polarity per weight")
    scale = arrays["column_scale_k_per_gmax"]
    if not (np.all(np.isfinite(scale)) and np.all(scale > 0)):
        raise _fail(npz, "column_scale_k_per_gmax must be finite and > 0")
    table = _read_csv(folder)
    want = _csv_rows(plus, minus, levels, cfg.g_max_us, in_range, out_range)
    if table.shape != want.shape or not np.allclose(table, want, rtol=1e-12, atol=1e-12 * cfg.g_max_us):
        raise _fail(folder / TABLE, f"disagrees with {ARRAYS} ({len(table)} lines, expected {len(want)})")
    try:
        full_scales = [float("nan") if f is None else float(f) for f in own["output_adc"]["full_scale_gmax_units"]]
        input_range = own["input_dac"]["input_range"]
        if len(full_scales) != cfg.weight_slices:
            raise ValueError(f"{len(full_scales)} ADC full scales for {cfg.weight_slices} slices")
    except (KeyError, TypeError, ValueError) as exc:
        raise _fail(path, f"incomplete manifest ({type(exc).__name__}: {exc})") from None
    # wn = sum_s (L+1)^s sum_p f_p (G+ - G-) / (sum_p f_p ((L+1)^S - 1)) in levels: exact integers
    # over an exact denominator, so that a full-scale weight is exactly 1 (the column scale)
    factors = np.asarray(cfg.pair_factors()).reshape(-1, 1, 1, 1)
    powers = float(levels + 1) ** np.arange(cfg.weight_slices).reshape(-1, 1, 1)
    num = (((plus - minus) * factors).sum(0) * powers).sum(0)
    wn = num / (factors.sum() * (float(levels + 1) ** cfg.weight_slices - 1))
    weight = wn * scale[:, None]
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(weight).to(layer.weight))
        for r, f in zip(layer.adc_ranges(), full_scales):
            r.value.fill_(f)
        if cfg.input_range == "calibrated":
            layer.input_range.value.fill_(float("nan") if input_range is None else float(input_range))
    back_plus, back_minus, _ = level_indices(layer)
    if not (np.array_equal(back_plus.numpy(), plus) and np.array_equal(back_minus.numpy(), minus)):
        raise _fail(npz, f"levels this device model cannot hold: with weight_scaling={cfg.weight_scaling!r} "
                         f"the largest weight of each {'output' if cfg.weight_scaling == 'column' else 'layer'} "
                         f"must be at full scale, and slices and pairs filled as the model programs them")
    return layer


__all__ = ["ARRAY_DOCS", "CSV_COLUMNS", "FORMAT", "export_crossbar", "level_indices", "load_crossbar"]
