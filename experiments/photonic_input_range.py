"""The photonic mesh's calibrated input range against per-vector abs-max scaling (issue 27, item 3).

Runs ``codesign distill --device photonic_mzi --set input_range=MODE`` on digits (the embedded
data set; small budgets) for both modes, post hoc and hardware-aware, at the default 8-bit input
DAC and a coarse 4-bit one, over seeds, and tabulates accuracy on hardware (mean and worst of the
draws) with the input-scaling energy the device prices (the calibrated range drops the per-vector
max search: one compare per input).

    python experiments/photonic_input_range.py --out experiments
    python experiments/photonic_input_range.py --smoke-test --out /tmp/pir   # one seed, seconds
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

#: (label, --set overrides): per-vector scaling, the calibrated range at the default 99.99th
#: percentile of |x| and at the 99th (more clipping, finer steps for the typical input)
MODES = (("vector_absmax", ("input_range=vector_absmax",)),
         ("calibrated", ("input_range=calibrated",)),
         ("calibrated p99", ("input_range=calibrated", "input_percentile=99")))


def command(sets: tuple[str, ...], protocol: str, dac_bits: int, seed: int, steps: int, draws: int) -> list[str]:
    return ["codesign", "distill", "--device", "photonic_mzi", *[a for s in sets for a in ("--set", s)],
            "--set", f"dac_bits={dac_bits}", "--protocol", protocol, "--aware-steps", str(steps),
            "--hw-draws", str(draws), "--seed", str(seed), "--json", "-q"]


_WS = None


def run(cmd: list[str]) -> dict:
    """The metrics ``cmd`` (a ``codesign distill`` command line) prints with ``--json``, run in this
    process through the CLI's own parser and option resolution, one workspace for every run (the
    data set, teacher and features are loaded once)."""
    global _WS
    from codesign.cli import build_parser, distill_config_from, resolve_distill
    from codesign.distill import Workspace, run_distill

    _WS = _WS or Workspace(verbose=False)
    args = build_parser().parse_args(cmd[1:])
    cfg = distill_config_from(resolve_distill(args))
    return json.loads(json.dumps(run_distill(cfg, _WS).metrics, default=float))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="folder for photonic_input_range.md and .json")
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--aware-steps", type=int, default=100)
    p.add_argument("--hw-draws", type=int, default=5)
    p.add_argument("--smoke-test", action="store_true", help="one seed, 10 aware steps, 2 draws")
    a = p.parse_args(argv)
    seeds, steps, draws = (1, 10, 2) if a.smoke_test else (a.seeds, a.aware_steps, a.hw_draws)
    rows = []
    t0 = time.time()
    for protocol in ("posthoc", "aware"):
        for dac_bits in (8, 4):
            for seed in range(seeds):
                for mode, sets in MODES:
                    cmd = command(sets, protocol, dac_bits, seed, steps, draws)
                    m = run(cmd)
                    dev = m["cost"]["device"]
                    rows.append({"protocol": protocol, "dac_bits": dac_bits, "seed": seed, "mode": mode,
                                 "command": " ".join(cmd), "test_accuracy": m["test_accuracy"],
                                 "hw_accuracy_mean": m["hw_accuracy_mean"], "hw_accuracy_worst": m["hw_accuracy_worst"],
                                 "input_scaling_pj": dev["input_scaling_pj"], "device_energy_pj": dev["energy_pj"]})
                    print(f"{protocol} dac_bits={dac_bits} seed={seed} {mode}: {m['hw_accuracy_mean']:.4f}", flush=True)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "photonic_input_range.json").write_text(json.dumps(rows, indent=1) + "\n")
    lines = [
        "# Photonic mesh: calibrated input range against per-vector abs-max scaling",
        "",
        f"Made by `python experiments/photonic_input_range.py --out {a.out}"
        + (" --smoke-test" if a.smoke_test else "") + f"` ({time.time() - t0:.0f} s on a shared 2-core machine). "
        "Each row is one `codesign distill` run on digits (defaults: mlp teacher, PCA rank 20, degree-2 "
        f"monomials, 231 features, 12 x 12 meshes), {draws} hardware draws, aware runs {steps} steps; the "
        "command of every row is in `photonic_input_range.json`, e.g.",
        "",
        "    " + rows[-1]["command"],
        "",
        "`hw mean`/`worst`: accuracy on hardware over the draws, %. `scaling pJ`: the device's "
        "`input_scaling_pj` (vector_absmax: a 32-bit compare and multiply per input, a multiply per "
        "output; calibrated: the multiplies alone). Delta: calibrated minus vector_absmax, points.",
        "",
        "| protocol | dac_bits | seed | " + " | ".join(f"{m} hw mean / worst" for m, _ in MODES)
        + " | " + " | ".join(f"delta {m}" for m, _ in MODES[1:]) + " | scaling pJ (absmax / calibrated) |",
        "|---|---:|---:|" + "---:|" * (2 * len(MODES)),
    ]
    deltas: dict[str, list[float]] = {m: [] for m, _ in MODES[1:]}
    for i in range(0, len(rows), len(MODES)):
        group = rows[i : i + len(MODES)]
        v = group[0]
        cells = [f"{100 * r['hw_accuracy_mean']:.2f} / {100 * r['hw_accuracy_worst']:.2f}" for r in group]
        for r in group[1:]:
            deltas[r["mode"]].append(100 * (r["hw_accuracy_mean"] - v["hw_accuracy_mean"]))
        lines.append(f"| {v['protocol']} | {v['dac_bits']} | {v['seed']} | " + " | ".join(cells) + " | "
                     + " | ".join(f"{deltas[r['mode']][-1]:+.2f}" for r in group[1:])
                     + f" | {v['input_scaling_pj']:.1f} / {group[1]['input_scaling_pj']:.1f} |")
    lines.append("")
    for m, d in deltas.items():
        lines.append(f"Delta of {m} over all rows: min {min(d):+.2f}, mean {sum(d) / len(d):+.2f}, max {max(d):+.2f} points.")
    lines.append("")
    (out / "photonic_input_range.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
