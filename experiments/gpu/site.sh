# Sourced by the GPU scripts: install brevitas and its pure-Python dependencies from .whl/ into
# /tmp/site and register the built-in devices' entry points without building the package
# (importlib.metadata reads any *.dist-info folder on sys.path).
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
mkdir -p /tmp/site/codesign-0.1.0.dist-info
printf 'Metadata-Version: 2.1\nName: codesign\nVersion: 0.1.0\n' > /tmp/site/codesign-0.1.0.dist-info/METADATA
sed -n '/^\[project.entry-points."codesign.devices"\]/,/^$/p' pyproject.toml | sed 's/^\[project.entry-points."codesign.devices"\]/[codesign.devices]/' \
  | tr -d '"' > /tmp/site/codesign-0.1.0.dist-info/entry_points.txt
export PYTHONPATH=/tmp/site:$PWD
