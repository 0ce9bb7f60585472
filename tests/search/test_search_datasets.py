"""A search on a data set of the user's own (a CSV file), with a tiny budget; its identity holds
the data's content hash."""

from __future__ import annotations

import json

import numpy as np
import pytest

from codesign.cli import main

pytestmark = pytest.mark.slow


def test_search_on_a_csv_and_its_content_hash(ray_session, tmp_path, capsys):
    rng = np.random.default_rng(0)
    y = np.arange(120) % 3
    x = rng.normal(0, 3, (3, 5))[y] + rng.normal(0, 0.5, (120, 5))
    csv = tmp_path / "plants.csv"
    csv.write_text("a,b,c,d,e,species\n" + "".join(
        ",".join(f"{v:.4f}" for v in row) + f",{'xyz'[c]}\n" for row, c in zip(x, y)))
    out = tmp_path / "search"
    args = ["search", "--dataset", str(csv), "--device", "ideal", "--ranks", "2", "4", "--samples", "2",
            "--hw-draws", "1", "--teacher-epochs", "3", "--quiet", "--out", str(out)]
    assert main(args) == 0
    front = json.loads((out / "front.json").read_text())
    assert front["dataset"] == str(csv) and front["front"]
    assert all(p["test_float_accuracy"] >= 0.9 for p in front["front"])  # three separated clusters
    stored = json.loads((out / "search.json").read_text())
    from codesign.datasets import load_dataset

    assert stored["identity"]["dataset_hash"] == load_dataset(str(csv)).fingerprint
    # the same name on edited data is another search: refused, naming the hash
    csv.write_text(csv.read_text().replace("0.", "1.", 1))
    capsys.readouterr()
    assert main([*args[:-2], "--out", str(out), "--resume"]) == 2
    assert "dataset_hash" in capsys.readouterr().err
