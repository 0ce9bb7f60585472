"""``codesign export``: bundles of digits students on every built-in device, round trip, errors.

Each student is distilled once on digits (the session's cached teacher) and exported; the
checks are the ones ``--verify`` runs (:func:`codesign.export.verify_export`), asserted row by
row, plus the manifest, the CLI and the one-line errors of damaged, missing and wrong-version
files.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from codesign.artifacts import load_student, save_student
from codesign.cli import main
from codesign.devices import get_device_class
from codesign.distill import DistillConfig, Workspace, run_distill
from codesign.errors import ConfigError
from codesign.export import SCHEMA, VERSION, export_student, load_export, verify_export
from codesign.students import FitConfig

#: name -> DistillConfig keywords (pca_rank 10, degree 2 unless said)
STUDENTS = {
    "none": {},
    "ideal": {"device": "ideal"},
    "fpga": {"device": "fpga_fixed_point", "device_overrides": {"weight_bits": 4, "input_bits": 6}},
    "fpga_aware": {"device": "fpga_fixed_point", "protocol": "aware", "fit": FitConfig(aware_steps=10)},
    "photonic": {"device": "photonic_mzi"},
    # the input range calibrated in training travels in the mesh's manifest (photonic-mesh/2)
    "photonic_calibrated": {"device": "photonic_mzi", "protocol": "aware", "fit": FitConfig(aware_steps=10),
                            "device_overrides": {"input_range": "calibrated", "block_size": 8}},
    "crossbar": {"device": "analog_crossbar"},
    "crossbar_pca": {"device": "analog_crossbar", "pca_placement": "device"},
    "rbf": {"device": "ideal", "dictionary": "rbf", "dictionary_params": {"centers": 24}},
    "rbf_fpga": {"device": "fpga_fixed_point", "dictionary": "rbf", "dictionary_params": {"centers": 24}},
    "rff": {"device": "ideal", "dictionary": "rff", "dictionary_params": {"features": 64, "bandwidth": 0.8}},
    "rff_crossbar": {"device": "analog_crossbar", "dictionary": "rff", "dictionary_params": {"features": 64}},
}


@pytest.fixture(scope="module")
def students(tmp_path_factory, digits_teacher):
    """Saved digits students, by name of :data:`STUDENTS` (distilled lazily, once)."""
    folder = tmp_path_factory.mktemp("students")
    ws = Workspace(verbose=False)
    made: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in made:
            result = run_distill(DistillConfig(pca_rank=10, **STUDENTS[name]), ws)
            made[name] = folder / f"{name}.pt"
            save_student(made[name], result)
        return made[name]

    return get


def _checks(report) -> dict:
    return {c.name: c for c in report.checks}


def _needs_native(name: str) -> None:
    device = STUDENTS[name].get("device")
    if device is not None and get_device_class(device).export_format is None:
        pytest.skip(f"device {device!r} has no export_format yet")


# --------------------------------------------------------------------------- round trip
@pytest.mark.parametrize("name", list(STUDENTS))
def test_export_then_verify_passes(students, tmp_path, name):
    _needs_native(name)
    out = export_student(students(name), tmp_path / "bundle")
    report = verify_export(out, students(name))
    checks = _checks(report)
    assert report.ok, report.table()
    assert checks["student file"].passed is True
    assert checks["front end"].value == "max |diff| 0"
    assert checks["nominal matrix"].passed is True
    # the ONNX graph agrees with the student on every row but exact ties (float rounding order)
    assert checks["onnx"].passed is True and ", 0 outside ties;" in checks["onnx"].detail
    assert int(checks["onnx"].value.split("/")[0]) >= 359
    if name == "none":
        assert checks["hw accuracy"].passed is None
    else:
        assert checks["hw accuracy"].passed is True
        stored = load_student(students(name)).metrics["hw_accuracy_mean"]
        assert checks["hw accuracy"].value == f"{stored:.6f}"
    assert ("qonnx" in checks) == ("fpga" in name)
    if "qonnx" in checks:
        assert checks["qonnx"].value == "360/360 rows identical"


@pytest.mark.parametrize("name", ["photonic", "photonic_calibrated", "crossbar", "fpga", "ideal"])
def test_device_layer_rebuilt_from_files_alone(students, tmp_path, name):
    """The rebuilt layer has no K: its seeded instances still match the student's layer draw for draw."""
    _needs_native(name)
    st = load_student(students(name))
    out = export_student(students(name), tmp_path / "b")
    exp = load_export(out)
    assert exp.layer is not None and exp.manifest["device"]["native"]["format"] == type(exp.device).export_format
    original = st.device_layer()
    psi = st.features(np.load(out / "frontend.npz")["pca_mean"][None, :].repeat(4, 0) + 0.05)
    for seed in (3, 11):
        original.draw_instance(seed)
        exp.layer.draw_instance(seed, t_inference_s=original.t_inference_s)
        with torch.no_grad():
            assert torch.equal(original(psi), exp.layer(psi))


def test_calibrated_input_range_travels_with_the_photonic_bundle(students, tmp_path):
    st = load_student(students("photonic_calibrated"))
    trained = float(st.device_layer().input_range.value)
    assert trained == trained and trained > 0  # calibrated in training, saved with the student
    exp = load_export(export_student(students("photonic_calibrated"), tmp_path / "b"))
    assert float(exp.layer.input_range.value) == trained
    native = exp.manifest["device"]["native"]
    mesh = json.loads((tmp_path / "b" / native["folder"] / native["manifest"]).read_text())
    assert mesh["input_dac"]["input_range"] == trained


def test_pca_on_device_exports_both_layers(students, tmp_path):
    _needs_native("crossbar_pca")
    exp = load_export(export_student(students("crossbar_pca"), tmp_path / "b"))
    dev = exp.manifest["device"]
    assert dev["native"]["folder"] == "device" and dev["native_pca"]["folder"] == "device_pca"
    assert exp.pca_layer is not None and exp.pca_layer.out_features == 10 and exp.pca_layer.in_features == 64


def test_load_export_predicts_as_the_student(students, digits, tmp_path):
    st = load_student(students("ideal"))
    exp = load_export(export_student(students("ideal"), tmp_path / "b"))
    assert torch.allclose(exp.logits(digits.x_test), st.logits(digits.x_test), atol=1e-5)
    assert np.array_equal(exp.predict(digits.x_test), st.logits(digits.x_test).argmax(1).numpy())
    onnx_pred = exp.onnx_logits(digits.x_test).argmax(1)
    assert np.array_equal(onnx_pred, exp.predict(digits.x_test))


# --------------------------------------------------------------------------- manifest
def test_manifest_fields_and_checksums(students, tmp_path):
    import hashlib

    out = export_student(students("fpga"), tmp_path / "b")
    m = json.loads((out / "export.json").read_text())
    assert (m["schema"], m["version"]) == (SCHEMA, VERSION) == ("codesign-export/1", 2)
    assert m["dataset"] == {"name": "digits", "n_inputs": 64, "n_classes": 10, "classes": [str(i) for i in range(10)],
                            "input": m["dataset"]["input"]}
    assert (m["pca_rank"], m["dictionary"], m["dictionary_params"], m["n_features"]) == (10, "monomial", {"degree": 2}, 66)
    assert m["pca_placement"] == "host"
    assert m["device"]["name"] == "fpga_fixed_point" and m["device"]["config"]["weight_bits"] == 4
    assert m["device"]["export_format"] == "fpga-fixed-point/1"
    assert {"scored_on", "hw_draws", "seed", "hw_accuracy_mean", "test_accuracy"} <= set(m["metrics"])
    assert m["qonnx"]["weight_bits"] == 4 and m["qonnx"]["input_bits"] == 6
    assert set(m["files"]) == {"frontend.npz", "matrix.npz", "model.onnx", "model.qonnx.onnx",
                               "device/layer.npz", "device/weight_codes.csv", "probe.npz"}
    for name, info in m["files"].items():
        data = (out / name).read_bytes()
        assert info == {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    with np.load(out / "frontend.npz") as f:
        assert set(f.files) == set(m["frontend"]["arrays"])
        assert f["monomial_exponents"].shape == (66, 10) and f["monomial_exponents"].sum(1).max() == 2
        assert f["pca_components"].shape == (10, 64)
    codes = np.loadtxt(out / "device" / "weight_codes.csv", delimiter=",", dtype=np.int64)
    assert codes.shape == (10, 66) and np.abs(codes).max() <= 7  # 4-bit narrow range


def test_rbf_frontend_holds_centres_and_width(students, tmp_path):
    st = load_student(students("rbf"))
    out = export_student(students("rbf"), tmp_path / "b")
    m = json.loads((out / "export.json").read_text())
    with np.load(out / "frontend.npz") as f:
        assert np.array_equal(f["rbf_centers"], st.pipeline.dictionary.centers_.numpy())
    assert m["frontend"]["dictionary_state"]["sigma_"] == st.pipeline.dictionary.sigma_


def test_rff_frontend_holds_the_draws_and_width(students, tmp_path, capsys):
    st = load_student(students("rff"))
    d = st.pipeline.dictionary
    out = export_student(students("rff"), tmp_path / "b")
    m = json.loads((out / "export.json").read_text())
    with np.load(out / "frontend.npz") as f:
        assert np.array_equal(f["rff_weights"], d.weights_.numpy()) and np.array_equal(f["rff_phases"], d.phases_.numpy())
    assert m["frontend"]["dictionary_state"]["sigma_"] == d.sigma_ and m["frontend"]["lift"].startswith("rff: psi")
    assert m["frontend"]["arrays"]["rff_weights"]["shape"] == [64, 10]
    # the reloaded bundle lifts exactly as the student; the CLI's --verify passes on it
    assert torch.equal(load_export(out).pipeline.dictionary.weights_, d.weights_)
    assert main(["export", str(out), "--verify", "--student", str(students("rff"))]) == 0
    assert "verify: all checks pass" in capsys.readouterr().out


def test_device_without_native_format_still_exports_onnx(students, tmp_path, monkeypatch):
    from codesign.devices.ideal import IdealDevice

    monkeypatch.setattr(IdealDevice, "export_format", None)
    out = export_student(students("ideal"), tmp_path / "b")
    m = json.loads((out / "export.json").read_text())
    assert m["device"]["native"] is None and "no native export format" in m["device"]["note"]
    assert not (out / "device").exists() and (out / "model.onnx").is_file()
    report = verify_export(out, students("ideal"))
    checks = _checks(report)
    assert report.ok and checks["hw accuracy"].passed is None and checks["onnx"].value == "360/360 agree"
    assert load_export(out).layer is None


# --------------------------------------------------------------------------- writing the folder
def test_refuses_a_non_empty_folder_unless_forced(students, tmp_path):
    out = tmp_path / "b"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not empty.*--force"):
        export_student(students("none"), out)
    assert (out / "keep.txt").read_text() == "mine"
    export_student(students("none"), tmp_path / "b2")
    export_student(students("ideal"), tmp_path / "b2", force=True)  # a previous bundle and nothing else
    assert json.loads((tmp_path / "b2" / "export.json").read_text())["source"]["student"] == "ideal.pt"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b", "b2"]  # no temp folder left beside it


def _fake_user_folder(folder: Path, kind: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    if kind == "tex":
        (folder / "paper.tex").write_text("\\section{mine}")
    elif kind == "notes":
        (folder / "notes").mkdir()
        (folder / "notes" / "day1.md").write_text("mine")
    elif kind == "tex_in_bundle":  # a previous bundle plus the user's own file
        pass


@pytest.mark.parametrize("kind", ["tex", "notes", "tex_in_bundle", "empty_dir_in_bundle"])
def test_force_replaces_only_a_previous_bundle(students, tmp_path, kind):
    out = tmp_path / "b"
    if kind in ("tex_in_bundle", "empty_dir_in_bundle"):
        export_student(students("none"), out)
        if kind == "tex_in_bundle":
            (out / "paper.tex").write_text("mine")
        else:
            (out / "notes").mkdir()
    else:
        _fake_user_folder(out, kind)
    before = sorted(p.relative_to(out).as_posix() for p in out.rglob("*"))
    with pytest.raises(ConfigError) as info:
        export_student(students("ideal"), out, force=True)
    msg = str(info.value)
    assert "\n" not in msg and "--force replaces only a previous export" in msg
    assert {"tex": "holds none", "notes": "holds none", "tex_in_bundle": "paper.tex",
            "empty_dir_in_bundle": "notes"}[kind] in msg
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == before  # nothing deleted


def _distilled_folder(students, folder: Path) -> Path:
    folder.mkdir(parents=True)
    shutil.copy(students("ideal"), folder / "student.pt")
    (folder / "metrics.json").write_text("{}")
    return folder / "student.pt"


@pytest.mark.parametrize("where", ["search", "students", "trials", "inside_search", "student_folder",
                                   "inside_student_folder", "above_student_folder"])
@pytest.mark.parametrize("force", [False, True])
def test_out_never_is_contains_or_lies_in_a_source_folder(students, tmp_path, where, force, capsys):
    search = tmp_path / "search"
    _fake_search(search, students("ideal"))
    src_args = [str(search), "--member", "knee"]
    if where in ("student_folder", "inside_student_folder", "above_student_folder"):
        src = _distilled_folder(students, tmp_path / "runs" / "r1")
        src_args = [str(src)]
    out = {"search": search, "students": search / "students", "trials": search / "students" / "trials",
           "inside_search": search / "bundle", "student_folder": tmp_path / "runs" / "r1",
           "inside_student_folder": tmp_path / "runs" / "r1" / "bundle", "above_student_folder": tmp_path / "runs"}[where]
    before = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*"))
    argv = ["export", *src_args, "--out", str(out)] + (["--force"] if force else [])
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and f"--out {out}" in err
    assert ("search folder" in err) or ("folder of the student" in err)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == before


def test_bundle_beside_a_plain_student_file_is_allowed(students, tmp_path):
    src = tmp_path / "ideal.pt"
    shutil.copy(students("ideal"), src)
    out = export_student(src, tmp_path / "bundle")  # a plain folder (not a distill --out one): beside is fine
    assert (out / "export.json").is_file()
    with pytest.raises(ConfigError, match="is the folder of the student"):
        export_student(src, tmp_path, force=True)


def test_failed_export_leaves_nothing(students, tmp_path, monkeypatch):
    from codesign.export import onnx_graph

    def boom(*a, **k):
        raise ConfigError("no ONNX today")

    monkeypatch.setattr(onnx_graph, "float_model", boom)
    with pytest.raises(ConfigError, match="no ONNX today"):
        export_student(students("none"), tmp_path / "b")
    assert list(tmp_path.iterdir()) == []


def test_dictionary_without_onnx_form_is_refused():
    from types import SimpleNamespace

    from codesign.export.onnx_graph import check_exportable

    with pytest.raises(ConfigError, match="dictionary 'fourier' has no ONNX form"):
        check_exportable(SimpleNamespace(dictionary=SimpleNamespace(name="fourier")))


# --------------------------------------------------------------------------- damaged bundles
def _flip(path: Path, at: int = 200) -> None:
    data = bytearray(path.read_bytes())
    data[min(at, len(data) - 1)] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.fixture
def bundle(students, tmp_path):
    return export_student(students("fpga"), tmp_path / "b")


@pytest.mark.parametrize("name", ["model.onnx", "frontend.npz", "device/layer.npz", "model.qonnx.onnx"])
def test_damaged_file_is_a_one_line_error(bundle, name):
    _flip(bundle / name)
    with pytest.raises(ConfigError) as info:
        load_export(bundle)
    msg = str(info.value)
    assert "\n" not in msg and name in msg and "damaged" in msg and "codesign export" in msg


def test_missing_file_is_a_one_line_error(bundle):
    (bundle / "frontend.npz").unlink()
    with pytest.raises(ConfigError, match=r"frontend\.npz: missing file of the export") as info:
        load_export(bundle)
    assert "\n" not in str(info.value)


def test_wrong_version_is_a_one_line_error(bundle):
    m = json.loads((bundle / "export.json").read_text())
    m["version"] = 3
    (bundle / "export.json").write_text(json.dumps(m))
    with pytest.raises(ConfigError, match=r"export\.json: schema 'codesign-export/1' version 3, but this codesign"):
        load_export(bundle)


def test_wrong_device_format_version_is_a_one_line_error(bundle):
    _rewrite(bundle, lambda m: m["device"]["native"].__setitem__("format", "fpga-fixed-point/7"))
    with pytest.raises(ConfigError, match=r"format 'fpga-fixed-point/7', expected 'fpga-fixed-point/1'.*re-export"):
        load_export(bundle)


def test_damaged_manifest_is_a_one_line_error(bundle):
    (bundle / "export.json").write_text('{"schema": "codesign-export/1", "vers')
    with pytest.raises(ConfigError, match=r"export\.json: damaged, not JSON"):
        load_export(bundle)


# --------------------------------------------------------------------------- tampered bundles
def _rewrite(bundle: Path, edit, redo_digest: bool = True) -> None:
    """Edit the manifest with ``edit(m)``, redo every checksum it lists and (``redo_digest``) export.sha256."""
    import hashlib

    m = json.loads((bundle / "export.json").read_text())
    edit(m)
    for name in m["files"]:
        data = (bundle / name).read_bytes()
        m["files"][name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    text = json.dumps(m, indent=2) + "\n"
    (bundle / "export.json").write_text(text)
    if redo_digest:
        (bundle / "export.sha256").write_text(hashlib.sha256(text.encode()).hexdigest() + "  export.json\n")


def _one_line(bundle: Path, *fragments: str, digest: str | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load_export(bundle, digest)
    msg = str(info.value)
    assert "\n" not in msg and "codesign export" in msg
    for fragment in fragments:
        assert fragment in msg, msg
    return msg


def test_hand_edited_manifest_is_refused(bundle):
    m = json.loads((bundle / "export.json").read_text())
    m["frontend"]["whiten"] = not m["frontend"]["whiten"]
    (bundle / "export.json").write_text(json.dumps(m, indent=2) + "\n")
    _one_line(bundle, "export.json: changed after export")


def test_consistent_whiten_flip_is_refused(bundle):
    _rewrite(bundle, lambda m: m["frontend"].__setitem__("whiten", not m["frontend"]["whiten"]))
    _one_line(bundle, "export.json", "frontend.whiten")


def test_consistent_rbf_width_change_is_caught_by_the_probe(students, tmp_path):
    out = export_student(students("rbf"), tmp_path / "b")
    _rewrite(out, lambda m: m["frontend"]["dictionary_state"].__setitem__(
        "sigma_", m["frontend"]["dictionary_state"]["sigma_"] * 3))
    _one_line(out, "probe.npz", "field logits")


def test_consistent_matrix_tamper_is_caught_by_the_probe(bundle):
    with np.load(bundle / "matrix.npz") as f:
        matrix = f["matrix"] * 1.5
    np.savez(bundle / "matrix.npz", matrix=matrix)
    _rewrite(bundle, lambda m: None)  # its SHA-256, the manifest's digest: all redone
    _one_line(bundle, "probe.npz", "front end and matrix.npz")


@pytest.mark.parametrize("name, field, value, caught_by", [
    ("fpga", "input_bits", 3, "field layer_logits"),  # quantization: the nominal layer changes
    ("crossbar", "read_noise", 0.5, "field device.config.read_noise is 0.5"),  # the files hold their config
    ("photonic", "phase_noise_rad", 0.3, "field device.config.phase_noise_rad is 0.3"),
])
def test_consistent_device_config_edit_is_refused(students, tmp_path, name, field, value, caught_by):
    out = export_student(students(name), tmp_path / "b")
    _rewrite(out, lambda m: m["device"]["config"].__setitem__(field, value))
    _one_line(out, caught_by)


@pytest.mark.parametrize("field, value", [("onnx", "../other/model.onnx"), ("onnx", "/tmp/model.onnx"),
                                          ("native", "/abs/device"), ("native", "../device")])
def test_paths_outside_the_files_list_are_refused(bundle, field, value):
    def edit(m):
        if field == "onnx":
            m["onnx"]["file"] = value
        else:
            m["device"]["native"]["folder"] = value
    _rewrite(bundle, edit)
    _one_line(bundle, "export.json: field " + ("onnx.file" if field == "onnx" else "device.native.folder"), value)


def test_fully_consistent_rewrite_needs_the_digest_kept_apart(students, bundle):
    from codesign.export import manifest_digest

    kept = manifest_digest(bundle)
    assert load_export(bundle, kept).manifest["device"]["config"]["weight_bits"] == 4
    _rewrite(bundle, lambda m: m["metrics"].__setitem__("test_accuracy", 1.0))  # nothing the probe sees
    assert load_export(bundle).manifest["metrics"]["test_accuracy"] == 1.0  # undetectable from the bundle alone
    _one_line(bundle, "is not the digest", digest="sha256:" + kept)


@pytest.mark.parametrize("damage", ["flip", "missing", "version"])
def test_cli_reports_a_damaged_bundle_in_one_line(bundle, capsys, damage):
    if damage == "flip":
        _flip(bundle / "model.onnx")
    elif damage == "missing":
        (bundle / "matrix.npz").unlink()
    else:
        m = json.loads((bundle / "export.json").read_text())
        m["schema"] = "codesign-export/2"
        (bundle / "export.json").write_text(json.dumps(m))
    code = main(["export", str(bundle), "--verify"])
    out, err = capsys.readouterr()
    assert code == 2
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert err.startswith("codesign: error: ")
    assert {"flip": "model.onnx: damaged", "missing": "matrix.npz: missing",
            "version": "schema 'codesign-export/2'"}[damage] in err


# --------------------------------------------------------------------------- command line
def test_cli_exports_and_verifies(students, tmp_path, capsys):
    out = tmp_path / "b"
    code = main(["export", str(students("fpga")), "--out", str(out), "--verify"])
    text = capsys.readouterr().out
    assert code == 0, text
    assert "verify: all checks pass" in text
    for row in ("front end", "nominal matrix", "hw accuracy", "onnx", "qonnx"):
        assert any(line.startswith(row) and " pass " in line for line in text.splitlines()), row
    code = main(["export", str(out), "--verify", "--qonnx-rows", "50", "--student", str(students("fpga"))])
    text = capsys.readouterr().out
    assert code == 0 and "50/50 rows identical" in text and "(first 50 of 360 rows)" in text


@pytest.mark.parametrize("other, failing", [("photonic", "nominal matrix"), ("rbf", "front end")])
def test_cli_verify_against_another_student_fails(students, tmp_path, capsys, other, failing):
    out = tmp_path / "b"
    export_student(students("ideal"), out)
    code = main(["export", str(out), "--verify", "--student", str(students(other))])
    text = capsys.readouterr().out
    assert code == 1 and "verify: FAILED" in text
    assert any(line.startswith(failing) and " FAIL " in line for line in text.splitlines()), text
    assert any(line.startswith("student file") and " n/a " in line for line in text.splitlines())


def test_cli_user_errors(students, tmp_path, capsys):
    cases = [
        (["export", str(students("none"))], "give --out DIR"),
        (["export", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "o")], "no such student file"),
        (["export", str(students("none")), "--out", str(tmp_path / "o"), "--member", "knee"], "not a folder"),
    ]
    for argv, message in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1


def _fake_search(folder: Path, student: Path) -> None:
    """A search folder as `codesign search` leaves it, with one completed trial."""
    (folder / "students" / "trials").mkdir(parents=True)
    (folder / "search.json").write_text(json.dumps({"dataset": "digits"}))
    record = {"trial": 4, "status": "completed", "ray_trial_id": "ab12_00004", "config": {},
              "metrics": {"hw_accuracy": 0.9, "cost": 1.0}}
    (folder / "trials.jsonl").write_text(json.dumps(record) + "\n")
    shutil.copy(student, folder / "students" / "trials" / "ab12_00004.pt")
    shutil.copy(student, folder / "students" / "knee.pt")


@pytest.mark.parametrize("member", ["knee", "4", "ab12_00004"])
def test_cli_exports_a_search_member(students, tmp_path, capsys, member):
    search = tmp_path / "search"
    _fake_search(search, students("ideal"))
    out = tmp_path / "b"
    assert main(["export", str(search), "--member", member, "--out", str(out)]) == 0
    m = json.loads((out / "export.json").read_text())
    assert m["source"]["member"] == member
    expected = "knee.pt" if member == "knee" else "ab12_00004.pt"
    assert Path(m["source"]["student"]).name == expected


@pytest.mark.parametrize("member, message", [(None, "give --member"), ("cost", "cost.pt: missing"),
                                             ("9", "no trial with that number")])
def test_cli_search_member_errors(students, tmp_path, capsys, member, message):
    search = tmp_path / "search"
    _fake_search(search, students("ideal"))
    argv = ["export", str(search), "--out", str(tmp_path / "b")] + ([] if member is None else ["--member", member])
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


# --------------------------------------------------------------------------- source file and chip instances
def test_manifest_names_the_source_file_without_its_folder(students, tmp_path):
    import hashlib

    src = students("none")
    out = export_student(src, tmp_path / "b")
    text = (out / "export.json").read_text()
    m = json.loads(text)
    assert m["source"] == {"student": "none.pt", "sha256": hashlib.sha256(src.read_bytes()).hexdigest(), "member": None}
    assert str(src.parent) not in text and str(tmp_path) not in text and str(Path.home()) not in text


def test_verify_finds_the_student_beside_the_bundle_or_asks_for_it(students, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(students("ideal"), run / "student.pt")
    out = export_student(run / "student.pt", run / "export")
    report = verify_export(out)  # student.pt beside the bundle, same SHA-256
    assert report.ok and report.student == run / "student.pt" and _checks(report)["student file"].passed is True
    (run / "student.pt").write_bytes(students("none").read_bytes())  # same name, another file
    with pytest.raises(ConfigError, match=r"give the student it was exported from .*--student FILE.*'student\.pt'"):
        verify_export(out)
    assert main(["export", str(out), "--verify"]) == 2
    err = capsys.readouterr().err
    assert "--student FILE" in err and len(err.strip().splitlines()) == 1


def test_instance_of_a_device_without_chip_state_is_redrawn_from_its_seed(students, digits, tmp_path, capsys):
    """The crossbar's format holds no chip: --instance records the seed, the chip is its seed's draw
    (PCA on the device too, at seed + PCA_SEED_OFFSET), and --verify compares it with the student's."""
    from codesign.distill import PCA_SEED_OFFSET, pca_device_layer
    from codesign.export.bundle import layer_logits

    _needs_native("crossbar_pca")
    src, out = students("crossbar_pca"), tmp_path / "b"
    code = main(["export", str(src), "--out", str(out), "--instance", "3", "--eval-time", "1d", "--verify"])
    text = capsys.readouterr().out
    assert code == 0, text
    row = next(line for line in text.splitlines() if line.startswith("exported chip"))
    assert " pass " in row and "max |diff| 0 " in row and "re-drawn from the seed" in row and "t 86400 s" in row
    inst = json.loads((out / "export.json").read_text())["device"]["instance"]
    assert (inst["seed"], inst["pca_seed"], inst["t_inference_s"]) == (3, 3 + PCA_SEED_OFFSET, 86400.0)
    exp = load_export(out)
    assert exp.instance_seed == 3 and not exp.chip_from_files
    assert (exp.chip.instance_seed, exp.pca_chip.instance_seed) == (3, 3 + PCA_SEED_OFFSET)
    assert exp.layer.instance_seed is None and exp.pca_layer.instance_seed is None  # nominal
    st = load_student(src)
    layer, pca = st.device_layer(), pca_device_layer(st.device(), st.pipeline)
    layer.draw_instance(3, 86400.0)
    pca.draw_instance(3 + PCA_SEED_OFFSET, 86400.0)
    chip = exp.chip_logits(digits.x_test)
    assert torch.equal(chip, layer_logits(st.pipeline, layer, pca, digits.x_test))
    assert not torch.equal(chip, exp.logits(digits.x_test))  # a chip, not the nominal device


def test_instance_user_errors(students, tmp_path, capsys):
    with pytest.raises(ConfigError, match="ran on no device"):
        export_student(students("none"), tmp_path / "a", instance=3)
    with pytest.raises(ConfigError, match="expected a chip seed"):
        export_student(students("ideal"), tmp_path / "a", instance=-1)
    with pytest.raises(ConfigError, match="give --instance too"):
        export_student(students("ideal"), tmp_path / "a", t_inference_s=60.0)
    assert not (tmp_path / "a").exists()
    out = export_student(students("ideal"), tmp_path / "b")
    with pytest.raises(ConfigError, match="holds no hardware instance.*--instance SEED"):
        load_export(out).chip_logits(np.zeros((1, 64), np.float32))
    assert main(["export", str(out), "--verify", "--instance", "2"]) == 2
    assert "no --out, --member, --instance or --eval-time" in capsys.readouterr().err
    assert main(["export", str(students("ideal")), "--out", str(tmp_path / "c"), "--instance", "1",
                 "--eval-time", "soon"]) == 2
    assert "eval-time='soon'" in capsys.readouterr().err
