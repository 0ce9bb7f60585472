"""Per-device co-design searches on MNIST and their combined Pareto plot.

Runs ``codesign search --config mnist-<device>.toml`` for each device (one Ray start shared by
all), then ``codesign pareto --breakdown`` over the results. Each search resumes where it stopped when run
again (``--resume`` is always passed; a finished search is only re-plotted).

    python experiments/search/run_searches.py                    # the full MNIST searches
    python experiments/search/run_searches.py --devices photonic_mzi --cpus 2
    python experiments/search/run_searches.py --smoke-test --out /tmp/smoke   # tiny, on digits

Outputs under ``--out`` (default ``experiments/search/results``): one folder per device (see
``codesign search --help``) and ``combined.png`` / ``combined.pdf`` / ``combined.md``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEVICES = ("photonic_mzi", "analog_crossbar", "fpga_fixed_point")
#: --smoke-test: digits, three trials per device, small ranges (a minute in all).
SMOKE = ["--dataset", "digits", "--samples", "3", "--ranks", "4", "12", "--space", "centers=16:32", "--hw-draws", "2",
         "--max-memory", "256M"]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--devices", nargs="+", default=list(DEVICES), help=f"devices to search (default: {' '.join(DEVICES)})")
    p.add_argument("--out", help="results root (default experiments/search/results, or results-smoke with --smoke-test)")
    p.add_argument("--cpus", type=int, help="CPUs to use (default: all)")
    p.add_argument("--address", help="Ray cluster address (default: $RAY_ADDRESS, else a local Ray)")
    p.add_argument("--smoke-test", action="store_true", help="tiny searches on digits (what the tests run)")
    p.add_argument("--quiet", action="store_true", help="no per-trial lines")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from codesign.cli import main as codesign

    from codesign.search.runner import init_ray

    out = Path(args.out or HERE / ("results-smoke" if args.smoke_test else "results"))
    started = init_ray(args.address, args.cpus)  # one Ray start for every search
    try:
        dirs = []
        for device in args.devices:
            t0 = time.perf_counter()
            cmd = ["search", "--config", str(HERE / f"mnist-{device}.toml"), "--out", str(out / device), "--resume"]
            if args.smoke_test:
                cmd += SMOKE
            if args.cpus:
                cmd += ["--cpus", str(args.cpus)]
            if args.quiet:
                cmd += ["--quiet"]
            print(f"== {device}: codesign {' '.join(cmd)}", file=sys.stderr)
            rc = codesign(cmd)
            print(f"== {device}: exit {rc} after {time.perf_counter() - t0:.0f} s", file=sys.stderr)
            if rc != 0:
                return rc
            dirs.append(str(out / device))
        rc = codesign(["pareto", *dirs, "-o", str(out / "combined.png"), "--breakdown",
                       "--title", f"Co-design on {'digits (smoke test)' if args.smoke_test else 'MNIST'}: "
                                  "accuracy on hardware vs energy per inference"])
        return rc
    finally:
        if started:
            import ray

            ray.shutdown()


if __name__ == "__main__":
    sys.exit(main())
