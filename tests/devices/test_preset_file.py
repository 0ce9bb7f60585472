"""Preset files (issue 32): TOML round trip, validation with one-line errors, built-in presets as files."""

from __future__ import annotations

import math
import tomllib

import pytest

from codesign.devices import get_device_class
from codesign.devices.preset_file import (
    PresetFileError,
    builtin_preset_document,
    dumps_toml,
    overrides_digest,
    preset_document,
    read_preset_file,
    write_preset_file,
)


def test_toml_writer_round_trips_awkward_values():
    doc = {
        "format": "x", "quote": 'a "quoted" \\ back\\slash', "lines": "one\ntwo\r\tthree\b\f",
        "control": "bell\x07 del\x7f nul\x00", "unicode": "µS ±σ — 漢字 😀", "int": -3, "big": 2**53,
        "float": 0.1, "tiny": 1e-300, "neg": -2.5e-7, "whole": 25.0, "yes": True, "no": False,
        "list": [1, 2.5, "x\"y"], "empty": [], "weird key": 1, "dotted.key": "v",
        "table": {"a": 1, "nested": {"b": "c", "deeper": {"d": [0.5]}}},
        "fit": {"notes": ["n1", "n2"], "uncertainty": {"prog_noise": 0.001}},
    }
    back = tomllib.loads(dumps_toml(doc))
    assert back == doc
    assert math.isinf(tomllib.loads(dumps_toml({"x": float("inf")}))["x"])


def test_builtin_preset_written_and_read_back(tmp_path):
    path = write_preset_file(tmp_path / "isaac.toml", builtin_preset_document("analog_crossbar", "isaac"))
    pf = read_preset_file(path, "analog_crossbar")
    pre = get_device_class("analog_crossbar").presets()["isaac"]
    assert dict(pf.overrides) == dict(pre.overrides)
    assert pf.source["kind"] == "builtin" and pf.source["preset"] == "isaac" and "ISCA 2016" in pf.source["citation"]
    assert pf.codesign_version
    doc = tomllib.loads(path.read_text())
    assert doc["format"] == "codesign-preset/1" and doc["created"]


def test_digest_is_the_content_not_the_path_or_date(tmp_path):
    doc = preset_document("analog_crossbar", {"prog_noise": 0.05}, {"kind": "manual"})
    a = read_preset_file(write_preset_file(tmp_path / "a.toml", doc))
    b = read_preset_file(write_preset_file(tmp_path / "b.toml", {**doc, "created": "2020-01-01T00:00:00+00:00"}))
    c = read_preset_file(write_preset_file(tmp_path / "c.toml", {**doc, "overrides": {"prog_noise": 0.06}}))
    assert a.digest == b.digest == overrides_digest("analog_crossbar", {"prog_noise": 0.05})
    assert c.digest != a.digest


@pytest.mark.parametrize("text, device, message", [
    ("not = [toml", None, "not TOML"),
    ('format = "other/1"\ndevice = "analog_crossbar"\n', None, "format 'other/1'"),
    ('format = "codesign-preset/1"\n', None, "no device name"),
    ('format = "codesign-preset/1"\ndevice = "analog_crossbar"\n', "photonic_mzi", "not of 'photonic_mzi'"),
    ('format = "codesign-preset/1"\ndevice = "no_such"\n', None, "no_such"),
    ('format = "codesign-preset/1"\ndevice = "analog_crossbar"\n[overrides]\nprog_nois = 0.1\n', None,
     "unknown field(s) prog_nois"),
    ('format = "codesign-preset/1"\ndevice = "analog_crossbar"\n[overrides]\nprog_noise = 7.0\n', None, "prog_noise"),
    ('format = "codesign-preset/1"\ndevice = "analog_crossbar"\n[overrides]\ndrift_model = "linear"\n', None,
     "drift_model"),
    ('format = "codesign-preset/1"\ndevice = "analog_crossbar"\nsurprise = 1\n', None, "unknown key(s) surprise"),
    ('format = "codesign-preset/1"\ndevice = "analog_crossbar"\noverrides = 3\n', None, "must be a table"),
])
def test_bad_preset_files_get_one_line_errors(tmp_path, text, device, message):
    path = tmp_path / "p.toml"
    path.write_text(text)
    with pytest.raises(PresetFileError) as exc:
        read_preset_file(path, device)
    assert message in str(exc.value) and "\n" not in str(exc.value)
    assert str(path) in str(exc.value)


def test_missing_preset_file(tmp_path):
    with pytest.raises(PresetFileError, match="no such file"):
        read_preset_file(tmp_path / "none.toml")
