"""``codesign reproduce --smoke-test``: the table on digits, its JSON and markdown."""

from __future__ import annotations

import json

import pytest

from codesign import reproduce
from codesign.cli import main

pytestmark = pytest.mark.usefixtures("one_thread", "digits_teacher")

SETTINGS = {(2, 5), (2, 10), (3, 5)}  # (degree, rank) of the smoke test
METHODS = {"naive", "labels", "kd"}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory, digits_teacher):
    """One smoke run (18 fits; the seed-1 teacher trains here, seed 0 comes from the cache)."""
    import torch

    out = tmp_path_factory.mktemp("repro")
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # module scope: the one_thread fixture is not active yet
    try:
        code = main(["reproduce", "--smoke-test", "--out", str(out)])
    finally:
        torch.set_num_threads(before)
    assert code == 0
    return out


def test_writes_both_files(smoke):
    assert (smoke / "reproduction.md").is_file() and (smoke / "reproduction.json").is_file()


def test_json_runs(smoke):
    data = json.loads((smoke / "reproduction.json").read_text())
    runs = data["runs"]
    assert len(runs) == 3 * 2 * 3
    assert {(r["degree"], r["pca_rank"]) for r in runs} == SETTINGS
    assert {r["seed"] for r in runs} == {0, 1}
    assert {r["method"] for r in runs} == METHODS
    assert {r["dataset"] for r in runs} == {"digits"} and {r["teacher"] for r in runs} == {"mlp"}
    for r in runs:
        assert 0.8 < r["test_accuracy"] <= 1.0
        assert (r["condition_number"] is not None) == (r["method"] == "naive")
        d, rank = r["degree"], r["pca_rank"]
        assert r["n_features"] == {(2, 5): 21, (2, 10): 66, (3, 5): 56}[(d, rank)]
    meta = data["meta"]
    assert meta["options"]["smoke_test"] is True and meta["options"]["datasets"] == ["digits"]
    assert {"torch", "numpy", "codesign"} <= set(meta["versions"])


def test_json_summary(smoke):
    data = json.loads((smoke / "reproduction.json").read_text())
    summary = data["summary"]
    assert len(summary) == 9
    assert {(s["degree"], s["pca_rank"], s["method"]) for s in summary} == {
        (d, r, m) for d, r in SETTINGS for m in METHODS
    }
    for s in summary:
        assert s["n"] == 2 and s["std"] >= 0
        accs = [r["test_accuracy"] * 100 for r in data["runs"]
                if (r["degree"], r["pca_rank"], r["method"]) == (s["degree"], s["pca_rank"], s["method"])]
        assert s["mean"] == pytest.approx(sum(accs) / 2)
    by = {(s["degree"], s["pca_rank"], s["method"]): s["mean"] for s in summary}
    # Distillation beats least squares on digits at these small ranks.
    for d, r in SETTINGS:
        assert by[(d, r, "kd")] > by[(d, r, "naive")]


def test_markdown_table(smoke):
    md = (smoke / "reproduction.md").read_text()
    rows = [line for line in md.splitlines() if line.startswith("| digits |")]
    assert len(rows) == 3
    cells = [[c.strip() for c in row.strip("|").split("|")] for row in rows]
    assert {(int(c[2]), int(c[3])) for c in cells} == SETTINGS
    assert all(c[1].startswith("mlp (") for c in cells)
    assert "## Reading" in md and "- digits, MLP teacher: kd beats naive in 3 of 3 settings." in md
    data = json.loads((smoke / "reproduction.json").read_text())
    kd = {(s["degree"], s["pca_rank"]): s for s in data["summary"] if s["method"] == "kd"}
    for c in cells:
        s = kd[(int(c[2]), int(c[3]))]
        assert c[7] == f"**{s['mean']:.2f} +- {s['std']:.2f}**"


def test_resume_runs_nothing_twice(smoke, monkeypatch, capsys):
    before = json.loads((smoke / "reproduction.json").read_text())["runs"]

    def no_run(*a, **k):
        raise AssertionError("every run is already in reproduction.json")

    monkeypatch.setattr(reproduce, "run_distill", no_run)
    assert main(["reproduce", "--smoke-test", "--resume", "--out", str(smoke)]) == 0
    after = json.loads((smoke / "reproduction.json").read_text())["runs"]
    assert after == before
