#!/usr/bin/env bash
# Prepared run for a lent GPU machine (no network there), like run_gpu.sh beside it: times one
# 32-trial MNIST co-design search with --gpus-per-trial against the same search on CPUs only, on
# the same machine, and writes both fronts and the timings to $OUT. NOT RUN YET: written in a
# session without a GPU machine; commit $OUT/search_gpu.md as experiments/gpu/search_gpu.md after a run.
#
# It needs what run_gpu.sh needs, plus the search's own dependencies (ray[tune], optuna) in .whl/ or
# installed: the data in .gpu_data/ (a copy of ../shared/data, git-ignored),
# brevitas and its pure-Python dependencies in .whl/, and the MNIST mlp teacher is trained (or
# taken from CODESIGN_CACHE) in each search's driver. Usage (device tool): bash experiments/gpu/search_gpu.sh
# Environment: GPUS_PER_TRIAL (default 0.25: four trials share the GPU), SAMPLES (32), DEVICE (photonic_mzi),
# SMOKE=1 (2 trials on digits, to check the script).
set -uo pipefail
OUT=${OUT:-/tmp/search_gpu_out}; mkdir -p "$OUT"
if [ -d .whl ]; then source "$(dirname "$0")/site.sh"; fi  # as run_gpu.sh; else codesign as installed
export CODESIGN_CACHE=${CODESIGN_CACHE:-/tmp/cache} CODESIGN_DATA=${CODESIGN_DATA:-$PWD/.gpu_data} PYTHONUNBUFFERED=1
GPUS=${GPUS_PER_TRIAL:-0.25}; SAMPLES=${SAMPLES:-32}; DEVICE=${DEVICE:-photonic_mzi}
DATA=(--dataset mnist --data-root "$CODESIGN_DATA")
if [ "${SMOKE:-0}" = 1 ]; then DATA=(--dataset digits); SAMPLES=2; fi
CMD=(python3 -m codesign.cli search "${DATA[@]}" --device "$DEVICE" --samples "$SAMPLES" --seed 0 --quiet)
nvidia-smi -L 2>/dev/null || echo "no nvidia-smi"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
# the teacher once, so neither timed search trains it
python3 -m codesign.cli distill "${DATA[@]}" --pca-rank 10 --json > /dev/null
run() {  # name, extra flags...
  local name=$1; shift
  local t0=$(date +%s.%N)
  "${CMD[@]}" --out "$OUT/$name" "$@"; local rc=$?
  local t1=$(date +%s.%N)
  printf '| %s | `%s` | %.1f | %s |\n' "$name" "$*" "$(echo "$t1 - $t0" | bc)" "$rc" >> "$OUT/timings.md"
}
printf '| search | flags | wall s | exit |\n|---|---|---|---|\n' > "$OUT/timings.md"
CPUS=$(nproc)
run cpu --cpus "$CPUS"
run gpu --cpus "$CPUS" --gpus-per-trial "$GPUS"
{
  echo "# A ${SAMPLES}-trial search on $DEVICE: GPU trials (--gpus-per-trial $GPUS) against CPU trials"
  echo
  echo "Machine: $(nvidia-smi -L 2>/dev/null | head -1), $CPUS CPUs; command: \`${CMD[*]}\`"
  echo
  cat "$OUT/timings.md"
  echo
  for name in cpu gpu; do
    python3 - "$OUT/$name/front.json" "$name" <<'PY'
import json, os, sys
if not os.path.isfile(sys.argv[1]):
    sys.exit(print(f"- {sys.argv[2]}: no front.json (see its exit code above)"))
s = json.load(open(sys.argv[1]))
front = [(p["trial"], p["cost"], p["val_hw_accuracy"]) for p in s["front"]]
print(f"- {sys.argv[2]}: {s['n_completed']} of {s['n_trials']} trials completed, front {front}, search {s.get('elapsed_s')} s")
PY
  done
} > "$OUT/search_gpu.md"
cat "$OUT/search_gpu.md"
