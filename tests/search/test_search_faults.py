"""Searches that meet damaged folders, failed starts and hopeless plugins (digits, tiny budgets)."""

from __future__ import annotations

import json
import re
import shutil

import pytest

from codesign import load_student
from codesign.cli import main
from codesign.search import outputs

pytestmark = pytest.mark.slow

TINY = ["--dataset", "digits", "--ranks", "4", "16", "--space", "centers=16:32", "--hw-draws", "2", "--quiet"]


def _front_md_rows(path):
    """``{trial: describe}`` of the front table in front.md."""
    rows = {}
    for line in path.read_text().splitlines():
        m = re.match(r"\| (\d+) \| ([^|]+) \|", line)
        if m:
            rows[int(m.group(1))] = m.group(2).strip()
    return rows


@pytest.fixture(scope="module")
def finished_search(ray_session, split_teacher, tmp_path_factory):
    """A finished 6-trial ideal search; the resume tests damage copies of it (one search, not two)."""
    out = tmp_path_factory.mktemp("faults") / "finished"
    assert main(["search", *TINY, "--device", "ideal", "--samples", "6", "--cpus", "2", "--out", str(out)]) == 0
    return out


def _copy_of(search, folder):
    shutil.copytree(search, folder)
    return folder


def test_resume_after_a_damaged_middle_line_keeps_the_front_and_its_students_together(
        finished_search, tmp_path, capsys):
    out = _copy_of(finished_search, tmp_path / "damaged")
    log = out / "trials.jsonl"
    lines = log.read_text().splitlines()
    lines[2] = lines[2][: len(lines[2]) // 2]  # a damaged record in the middle
    log.write_text("\n".join(lines) + "\n")
    capsys.readouterr()
    assert main(["search", "--out", str(out), "--resume", "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "line 3 skipped (not JSON); its trial will run again" in err
    records = outputs.TrialLog(log).read()
    numbers = [r["trial"] for r in records]
    assert len(records) == 6 and len(set(numbers)) == 6  # one rerun, no number used twice
    front = json.loads((out / "front.json").read_text())
    md = _front_md_rows(out / "front.md")
    assert set(md) == {p["trial"] for p in front["front"]}
    for target, info in front["targets"].items():  # each saved student is the one front.md names
        st = load_student(out / info["student"])
        assert st.metrics["search_trial"] == info["trial"] and st.metrics["search_target"] == target
        record = next(r for r in records if r["trial"] == info["trial"])
        assert st.metrics["dictionary"].split("(")[0] == record["config"]["dictionary"]
        assert st.metrics["pca_rank"] == record["config"]["pca_rank"]
        assert md[info["trial"]] == outputs.describe_config(record["config"])
        assert st.metrics["scored_on"] == "validation" and "val_accuracy" in st.metrics
        assert st.metrics["test_hw_accuracy"] == info["test_hw_accuracy"]
        assert st.metrics["test_scored_with"] == {"hw_draws": 2, "seed": 0, "eval_time_s": 3600.0}


def test_a_failed_start_does_not_block_the_corrected_command(ray_session, split_teacher, tmp_path, capsys):
    out = tmp_path / "restart"
    # a start that fails before its first trial, after search.json is written (a teacher that
    # cannot be imported) ...
    assert main(["search", *TINY, "--device", "ideal", "--samples", "2", "--teacher", "no_such_module:factory",
                 "--out", str(out)]) == 2
    assert "no_such_module" in capsys.readouterr().err
    assert (out / "search.json").is_file()
    # ... leaves nothing that refuses the corrected command
    assert main(["search", *TINY, "--device", "ideal", "--samples", "2", "--out", str(out)]) == 0


def test_a_search_whose_every_trial_failed_exits_non_zero(ray_session, split_teacher, brittle_plugin, tmp_path, capsys):
    out = tmp_path / "hopeless"
    assert main(["search", *TINY, "--device", "hopeless", "--samples", "3", "--cpus", "2", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "every one of the 3 trials failed" in err[0]
    assert "device 'hopeless' failed on a [8," in err[0] and "trials.csv" in err[0]
    assert len(outputs.read_csv(out / "trials.csv")) == 3  # recorded all the same


def test_resume_names_and_reruns_hand_edited_records(finished_search, tmp_path, capsys):
    out = _copy_of(finished_search, tmp_path / "edited")
    log = out / "trials.jsonl"
    records = [json.loads(line) for line in log.read_text().splitlines()]
    completed = [i for i, r in enumerate(records) if r["status"] == "completed"]
    assert len(completed) >= 4
    a, b, c, d = completed[:4]
    records[a]["metrics"]["hw_accuracy"] = 1.5
    records[b]["metrics"]["cost"] = records[b]["metrics"]["energy_pj"] = -1e9
    wrong_rank = 16 if records[c]["config"]["pca_rank"] != 16 else 4
    records[c]["config"]["pca_rank"] = wrong_rank
    records[d]["ray_trial_id"] = "../" + records[d]["ray_trial_id"]
    log.write_text("".join(json.dumps(r) + "\n" for r in records))
    capsys.readouterr()
    assert main(["search", "--out", str(out), "--resume", "--quiet"]) == 0
    err = capsys.readouterr().err
    assert f"line {a + 1} skipped (metric hw_accuracy = 1.5 is outside [0, 1])" in err
    assert f"line {b + 1} skipped (metric " in err and "-1000000000.0 is negative" in err
    assert f"line {c + 1} skipped (trial {records[c]['trial']}: config pca_rank {wrong_rank}, but its student" in err
    assert f"line {d + 1} skipped (ray_trial_id '../" in err
    front = json.loads((out / "front.json").read_text())
    shown = [p for p in front["front"]] + list(front["targets"].values()) + list(front["points"])
    assert front["front"] and all(0 <= p.get("val_hw_accuracy", p.get("hw_accuracy")) <= 1 and p["cost"] >= 0
                                  for p in shown)
    bad_trials = {records[i]["trial"] for i in (a, b, c, d)}
    assert not bad_trials & {p["trial"] for p in shown}
    md = (out / "front.md").read_text()
    assert "150.00" not in md and "-1e+09" not in md
