#!/usr/bin/env bash
# One prepared run on a lent GPU machine (no network there): trains the ResNet-18 teachers of the
# reproduction table and runs the distillation benchmark on CUDA. The data travel in .gpu_data/
# (a copy of ../shared/data, git-ignored), brevitas and its pure-Python dependencies in .whl/.
# Teacher logits come back as tarballs to unpack into the cache (CODESIGN_CACHE/teachers/).
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
# Register the built-in devices' entry points without building the package: importlib.metadata
# reads any *.dist-info folder on sys.path.
mkdir -p /tmp/site/codesign-0.1.0.dist-info
printf 'Metadata-Version: 2.1\nName: codesign\nVersion: 0.1.0\n' > /tmp/site/codesign-0.1.0.dist-info/METADATA
sed -n '/^\[project.entry-points."codesign.devices"\]/,/^$/p' pyproject.toml | sed 's/^\[project.entry-points."codesign.devices"\]/[codesign.devices]/' \
  | tr -d '"' > /tmp/site/codesign-0.1.0.dist-info/entry_points.txt
export PYTHONPATH=/tmp/site:$PWD
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
