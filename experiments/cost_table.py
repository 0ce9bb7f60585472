"""Cost table: what each device's energy includes, per MAC and per whole inference.

For every installed device, at its defaults and at each of its presets, prints and writes
(``cost_table.md`` beside this script, or ``--out``):

* the matrix stage K of a 861-input x 10-output student (MNIST, PCA rank 40, degree-2
  monomials: 861 features, the constant included) on the device: energy per MAC of the matrix stage
  (the device's energy minus its converters), of the converters, and in all; the energy
  components; feasibility;
* the whole inference (784 pixels -> PCA r=40 -> degree-2 lift -> K) with the PCA projection
  on the digital host and on the device, split by stage, in the chosen ``--operating-mode``: its
  latency, the time between inferences (interval), the held (static) power and its energy over
  that time, and whether the design fits its power limits.

No data and no training: the cost model only (:func:`codesign.inference_cost.inference_cost`).

    python experiments/cost_table.py [--operating-mode latency|stream]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from codesign.cache import atomic_write_text
from codesign.devices import create_device, get_device_class, list_devices
from codesign.devices.base import DEFAULT_OPERATING_MODE, OPERATING_MODES
from codesign.dictionaries import create_dictionary
from codesign.inference_cost import STAGES, inference_cost
from codesign.reproduce import metadata

HERE = Path(__file__).resolve().parent
D, RANK, C = 784, 40, 10


def _fmt(v: float | None) -> str:
    return "–" if v is None else f"{v:.3g}"


def device_rows(name: str, mode: str = DEFAULT_OPERATING_MODE) -> list[str]:
    cls = get_device_class(name)
    lift = create_dictionary("monomial", degree=2)
    f = lift.n_features(RANK)
    rows = []
    for preset in [None, *cls.presets()]:
        dev = create_device(name, preset=preset)
        raw = dev.cost(f, C)
        conv = sum(raw[k] for k in cls.conversion_keys)
        reasons = dev.feasibility(f, C)
        parts = ", ".join(f"{k} {raw[k]:.3g}" for k in raw if k.endswith("_pj") and k != "energy_pj")
        held = ", ".join(f"{k[:-len('_static_mw')]} {raw[k]:.4g}" for k in raw if k.endswith("_static_mw")) or "–"
        whole = {p: inference_cost(dev, n_inputs=D, rank=RANK, dictionary=lift, n_classes=C, pca_placement=p,
                                   operating_mode=mode)
                 for p in ("host", "device")}
        h = whole["host"]
        stage = " / ".join(_fmt((h["stages"] or {}).get(s, {}).get("energy_pj")) for s in STAGES)
        power = "–" if h.get("device_power_mw") is None else (
            f"{h['device_power_mw'] * 1e-3:.3g}" + ("" if h["feasible"] or h["energy_pj"] is None else " (over the limit)"))
        rows.append(
            f"| {name} | {preset or '(defaults)'} | {'yes' if not reasons else 'NO: ' + '; '.join(reasons)[:160]} | "
            f"{(raw['energy_pj'] - conv) / (f * C):.3g} | {conv / (f * C):.3g} | {raw['energy_pj'] / (f * C):.3g} | "
            f"{parts} | {held} | {_fmt(h.get('latency_ns'))} | {_fmt(h.get('interval_ns'))} | "
            f"{_fmt(h.get('static_energy_pj'))} | {power} | {_fmt(h['energy_pj'])} | {stage} | "
            f"{_fmt(whole['device']['energy_pj'])} |")
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(HERE / "cost_table.md"), help="markdown file to write")
    p.add_argument("--operating-mode", choices=OPERATING_MODES, default=DEFAULT_OPERATING_MODE,
                   help="time base of held power: latency (whole inference) or stream (pipeline interval)")
    args = p.parse_args(argv)
    mode = args.operating_mode
    lines = [
        "# Cost table: energy per MAC of K and per whole inference, per device and preset",
        "",
        f"Made by `python experiments/cost_table.py --operating-mode {mode}` (commit {metadata({}, 0.0, 'cost_table')['commit']}). Shapes: K is {C} x {RANK * 41 // 2 + RANK + 1} "
        f"(MNIST, PCA rank {RANK}, degree-2 monomials); a whole inference is {D} pixels -> PCA r={RANK} -> lift -> K. "
        "Energies in pJ; per-MAC columns divide by the MACs of K. `matrix` excludes the device's converters "
        "(`conversion_keys`), which `conv.` holds; the pJ/MAC columns are the device's dynamic energy only. "
        "`held` lists the device's held (static) power components of K in mW; the whole inference charges "
        f"them for the time they are held per inference in operating mode `{mode}` (latency: the whole "
        "inference; stream: the pipeline's initiation interval): `interval` is that time, `static` their energy, "
        "`device W` the device's power at that rate (checked against its power limits: a design over them is "
        "priced but infeasible). Stage split (host PCA): pca / lift / conversion / matrix, held energy included.",
        "",
        "| device | preset | buildable (K) | matrix pJ/MAC | conv. pJ/MAC | total pJ/MAC | components of K (pJ) | "
        "held (mW) | latency (ns) | interval (ns) | static (pJ) | device W | "
        "inference, PCA on host (pJ) | stages, PCA on host (pJ) | inference, PCA on device (pJ) |",
        "|---|---|---|---:|---:|---:|---|---|---:|---:|---:|---:|---:|---|---:|",
    ]
    for name in list_devices():
        lines += device_rows(name, mode)
    text = "\n".join(lines) + "\n"
    atomic_write_text(args.out, text)
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
