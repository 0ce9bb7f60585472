"""Make ``import devices`` mean the package, not this test directory.

``tests/devices`` has no ``__init__.py``. While ``tests/`` is on ``sys.path`` (pytest puts it
there for ``tests/conftest.py``), Python's path finder would import this directory as a
namespace package called ``devices``, because the editable install's finder only runs after the
path finder. A regular package anywhere on ``sys.path`` wins over namespace portions, so putting
the repository root on the path is enough (``pythonpath = ["."]`` in the pytest options does
the same for the whole suite).
"""

import sys
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)
_mod = sys.modules.get("devices")
if _mod is not None and getattr(_mod, "__file__", None) is None:  # a namespace stand-in
    for _name in [n for n in sys.modules if n == "devices" or n.startswith("devices.")]:
        del sys.modules[_name]
