"""The public API: what ``codesign.__all__`` lists resolves, is documented, and ``import codesign``
stays light (no Ray, no search) until a name is used."""

from __future__ import annotations

import inspect
import subprocess
import sys

import codesign


def test_every_public_name_resolves_and_is_documented():
    import codesign.search

    for module in (codesign, codesign.search):
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.isclass(obj) or inspect.isfunction(obj):
                assert inspect.getdoc(obj), f"{module.__name__}.{name} has no docstring"
    for name in ("KoopmanStudent", "run_search", "SearchConfig", "load_dataset", "register_dataset", "run_distill",
                 "export_student", "configure_logging", "plot_fronts"):
        assert name in codesign.__all__
    assert "run_search" in codesign.search.__all__ and codesign.run_search is codesign.search.run_search


def test_entry_points_are_typed():
    for fn in (codesign.run_search, codesign.load_dataset, codesign.run_distill, codesign.KoopmanStudent.fit,
               codesign.configure_logging):
        sig = inspect.signature(fn)
        assert sig.return_annotation is not inspect.Signature.empty, fn
        assert all(p.annotation is not inspect.Parameter.empty for p in sig.parameters.values() if p.name != "self"), fn


def test_import_codesign_loads_nothing_heavy():
    code = ("import sys, codesign; heavy = [m for m in ('ray', 'codesign.search', 'codesign.distill', 'sklearn') "
            "if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"
