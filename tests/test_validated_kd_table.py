"""experiments/validated_kd/validated_kd.py on digits: a resumable table and its paired test-set check."""

from __future__ import annotations

import json

import pytest

# the script sets torch's thread count (--threads 1); the fixture restores it afterwards
pytestmark = pytest.mark.usefixtures("one_thread")



@pytest.fixture(scope="module")
def script(experiment_script):
    return experiment_script("validated_kd/validated_kd.py")


def test_paired_counts_are_the_accuracy_difference(script, tmp_path, digits_teacher, capsys):
    """``--paired`` refits labels and each kd-auto cell's choice (they must reproduce the cells'
    accuracies, or it stops) and counts the test images only one of them gets right: their
    difference over n is exactly kd-auto's accuracy minus labels'."""
    args = ["--out", str(tmp_path), "--datasets", "digits", "--settings", "2:10", "--seeds", "2",
            "--teacher", "mlp", "--augment", "off"]
    script.main(args)
    script.main([*args, "--paired"])
    cells = json.loads((tmp_path / "results_digits.json").read_text())["cells"]
    labels = cells["digits|d2|r10|none|labels|s0"]["test_accuracy"]
    autos = [c for k, c in cells.items() if "|kd-auto|" in k]
    assert len(autos) == 2
    for c in autos:
        q = c["paired_test"]
        assert q["n"] == 360
        assert (q["only_auto"] - q["only_labels"]) / q["n"] == pytest.approx(c["test_accuracy"] - labels, abs=1e-12)
        if c["alpha"] == 0:  # labels chosen: the same student, no disagreement
            assert q["only_auto"] == q["only_labels"] == 0
    md = (tmp_path / "validated_kd.md").read_text()
    assert "Paired on the test set" in md and "checked in 1 settings" in md
    # a changed cell (as if the code or teacher had changed) is refused, not silently re-scored
    data = json.loads((tmp_path / "results_digits.json").read_text())
    for c in data["cells"].values():
        c.pop("paired_test", None)
    data["cells"]["digits|d2|r10|none|labels|s0"]["test_accuracy"] += 0.01
    (tmp_path / "results_digits.json").write_text(json.dumps(data))
    with pytest.raises(SystemExit, match="the code or the teacher changed"):
        script.main([*args, "--paired"])
