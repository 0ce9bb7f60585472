"""The tutorial notebooks (docs/notebooks/) run from top to bottom, and are stored without outputs.

Each is executed with nbclient in a fresh kernel, with the session's private cache
(``CODESIGN_CACHE``, tests/conftest.py) and ``CODESIGN_DATA`` for MNIST; its budgets are tiny so
that each finishes in a minute or two on two cores. The site shows them as stored
(mkdocs-jupyter with ``execute: false``), which is why they must hold no outputs.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = Path(__file__).resolve().parents[1] / "docs" / "notebooks"
PATHS = sorted(NOTEBOOKS.glob("*.ipynb"))
#: seconds one cell may run (a whole notebook stays under ~2 minutes on 2 cores)
CELL_TIMEOUT = 300
NEEDS_MNIST = {"mnist-search-export.ipynb"}


def test_the_tutorials_are_there():
    assert {p.name for p in PATHS} >= {"quickstart-digits.ipynb", "device-plugin.ipynb",
                                       "mnist-search-export.ipynb"}


@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
def test_stored_without_outputs(path):
    book = nbformat.read(path, as_version=4)
    nbformat.validate(book)
    dirty = [i for i, cell in enumerate(book.cells)
             if cell.cell_type == "code" and (cell.outputs or cell.execution_count is not None)]
    assert not dirty, f"{path.name}: cells {dirty} hold outputs; clear them before committing"


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
def test_notebook_runs(path, tmp_path):
    if path.name in NEEDS_MNIST and not os.environ.get("CODESIGN_DATA"):
        pytest.skip("needs MNIST: set CODESIGN_DATA to the folder holding mnist/")
    book = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(book, timeout=CELL_TIMEOUT, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError naming the cell and its traceback
    errors = [out for cell in book.cells if cell.cell_type == "code" for out in cell.outputs
              if out.output_type == "error"]
    assert not errors
    # the plotting cells drew their figures
    images = sum("image/png" in out.get("data", {}) for cell in book.cells if cell.cell_type == "code"
                 for out in cell.outputs)
    assert images >= 1, f"{path.name} drew no figure"
