#!/usr/bin/env bash
# The worked example of `codesign calibrate` (issue 32), from the repository root:
# synthetic measurements of an analog crossbar drawn from the device's own model with a known
# config (no public PCM/ReRAM measurement set with a compatible licence was found shipped in a
# package or repository), then the fit, which writes my_chip.toml and my_chip.png.
set -euo pipefail
cd "$(dirname "$0")"
codesign calibrate analog_crossbar --generate crossbar_measurements.csv --seed 2026 \
    --set g_max_us=30 --set prog_noise=0.05 --set read_noise=0.012 \
    --set stuck_off_fraction=0.01 --set stuck_on_fraction=0.005
codesign calibrate analog_crossbar crossbar_measurements.csv --out my_chip.toml | tee calibrate_output.txt
