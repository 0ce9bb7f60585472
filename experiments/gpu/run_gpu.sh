#!/usr/bin/env bash
# One prepared run on a lent GPU machine (no network there): trains the ResNet-18 teachers of the
# reproduction table and runs the distillation benchmark on CUDA. The data travel in .gpu_data/
# (a copy of ../shared/data, git-ignored), brevitas and its pure-Python dependencies in .whl/.
# Teacher logits come back as tarballs to unpack into the cache (CODESIGN_CACHE/teachers/).
set -uo pipefail
source "$(dirname "$0")/site.sh"  # brevitas from .whl/, the devices' entry points, PYTHONPATH
export CODESIGN_CACHE=/tmp/cache CODESIGN_DATA=$PWD/.gpu_data PYTHONUNBUFFERED=1
nvidia-smi -L
python3 -c "import torch, devices; print(torch.__version__, torch.cuda.get_device_name(), devices.list_devices(), devices.broken_devices())"
for ds in mnist fashion-mnist; do
  for s in 0 1 2 3 4; do
    python3 -m codesign.cli teacher --arch resnet18 --dataset "$ds" --seed "$s" --torch-device cuda --json
  done
  (cd /tmp/cache/teachers && tar czf "$OUT/resnet18-$ds.tgz" --exclude=model.pt "$ds"-resnet18-*)
done
python3 experiments/bench_distill.py --torch-device cuda 2>&1 | tee "$OUT/bench_distill_cuda.txt"
