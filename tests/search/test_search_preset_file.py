"""A search on a preset file (issue 32): trials run on its chip, its identity is the file's content."""

from __future__ import annotations

import json

import pytest

from codesign.cli import main

pytestmark = pytest.mark.slow


def test_search_with_a_preset_file_resumes_by_content(ray_session, tmp_path, capsys):
    chip = tmp_path / "chip.toml"
    assert main(["calibrate", "analog_crossbar", "--write-preset", "ibm_hermes", "--out", str(chip)]) == 0
    out = tmp_path / "search"
    args = ["search", "--dataset", "digits", "--device", "analog_crossbar", "--preset-file", str(chip),
            "--set", "adc_bits=6", "--ranks", "2", "4", "--samples", "2", "--hw-draws", "1", "--teacher-epochs", "3",
            "--quiet", "--out", str(out)]
    assert main(args) == 0
    front = json.loads((out / "front.json").read_text())
    assert front["device_preset_file"]["file"] == "chip.toml"
    assert front["device_preset_file"]["overrides"]["tile_rows"] == 256
    stored = json.loads((out / "search.json").read_text())
    assert stored["identity"]["preset_file"] == front["device_preset_file"]["digest"]
    assert stored["base"]["device_preset_file_overrides"]["tile_rows"] == 256
    # the same content under another name resumes; edited content is another search
    moved = tmp_path / "moved.toml"
    moved.write_text(chip.read_text())
    resumed = [*args[:args.index(str(chip))], str(moved), *args[args.index(str(chip)) + 1:], "--resume"]
    capsys.readouterr()
    assert main(resumed) == 0
    moved.write_text(chip.read_text().replace("adc_share = 1", "adc_share = 2"))
    capsys.readouterr()
    assert main(resumed) == 2
    assert "preset_file" in capsys.readouterr().err
