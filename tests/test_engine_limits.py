"""experiments/engine_limits.py: the pass clock sees every pass of a fit, and the script's smoke run
writes both settings' tables."""

from __future__ import annotations

import pytest
import torch

from codesign.features import build_features
from codesign.students import FitConfig, LinearStudent


def test_pass_clock_counts_the_fits_passes(experiment_script, digits, digits_teacher):
    mod = experiment_script("engine_limits.py")
    psi = build_features(digits.x_train, digits.x_test, 10, "monomial", {"degree": 2}).train
    y, tl = torch.from_numpy(digits.y_train), torch.from_numpy(digits_teacher.train_logits)
    with mod.PassClock() as clock:
        st = LinearStudent(FitConfig(method="kd", pass_dtype="float32")).fit(psi, y, tl)
    assert clock.calls == st.info_.loss_evals > 0
    assert 0 < clock.seconds < st.info_.seconds
    import codesign.students as students

    assert students.kd_loss_and_grad is clock._orig  # restored


@pytest.mark.slow
def test_smoke_run_writes_both_settings(experiment_script, tmp_path):
    mod = experiment_script("engine_limits.py")
    out = tmp_path / "limits.md"
    torch.manual_seed(0)
    mod.main(["--smoke-test", "--dtypes", "float32", "--out", str(out)])
    text = out.read_text()
    assert "command: python experiments/engine_limits.py --smoke-test --dtypes float32" in text
    for label in ("r=40, degree 2", "r=20, degree 3"):
        assert f"## {label}" in text and f"Fewer passes, {label}" in text
    rows = [line.split(" | ") for line in text.splitlines() if line.startswith("| float32 |")]
    assert len(rows) == 2 * (1 + len(mod.CAPS) + 1)  # per setting: the rates row, the caps, the default stop
    capped = [r for r in rows if "(capped)" in r[1]][: len(mod.CAPS)]  # the first setting's
    assert [r[1] for r in capped] == [f"{k} (capped)" for k in mod.CAPS]
    evals = [int(r[2]) for r in capped]
    assert evals == sorted(evals) and evals[0] >= 1
    assert all(50.0 < float(r[5].rstrip(" |")) <= 100.0 for r in capped)  # validation accuracy, %
