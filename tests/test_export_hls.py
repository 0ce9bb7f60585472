"""The hls4ml hand-off (``codesign export --hls4ml``): the HLS project's C simulation, bit for bit.

A digits FPGA student is exported with ``--hls4ml``; its project's C simulation is compiled once
(hls4ml ``compile``: g++ and the ``ap_fixed`` headers hls4ml ships) and its integer output codes
must equal ``integer_forward`` of the trained layer on every digits test row, on inputs built to
saturate and to fall exactly half-way between two codes (round half to even), and must differ
from a layer with one weight code changed. ``--hls4ml --verify`` compiles again and passes, or
exits 1 when the simulation differs. The MNIST test (skipped without ``$CODESIGN_DATA/mnist``)
checks every MNIST test row for one trained student. Skipped without hls4ml (the extra).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("hls4ml", reason="the hls4ml extra is not installed (pip install -e '.[hls4ml]')")

from codesign.artifacts import load_student, save_student  # noqa: E402
from codesign.cli import main  # noqa: E402
from codesign.distill import DistillConfig, Workspace, run_distill  # noqa: E402
from codesign.export import export_student, load_export  # noqa: E402
from codesign.export import hls  # noqa: E402
from codesign.students import FitConfig  # noqa: E402

#: the cache set when the module was imported (the session fixture swaps in an empty one later):
#: the MNIST test reuses the cached MNIST teacher from there
REAL_CACHE = os.environ.get("CODESIGN_CACHE")


@pytest.fixture(scope="module")
def student(tmp_path_factory, digits_teacher):
    """A digits FPGA student (rank 10, degree 2, 4-bit weights, 6-bit inputs), saved."""
    path = tmp_path_factory.mktemp("hls") / "fpga.pt"
    result = run_distill(DistillConfig(pca_rank=10, device="fpga_fixed_point",
                                       device_overrides={"weight_bits": 4, "input_bits": 6}), Workspace(verbose=False))
    save_student(path, result)
    return path


@pytest.fixture(scope="module")
def compiled(student, tmp_path_factory):
    """``(bundle, linked C simulation, student layer)``: exported with --hls4ml, compiled once."""
    folder = tmp_path_factory.mktemp("hls-bundle")
    bundle = export_student(student, folder / "bundle", hls4ml="Vitis")
    section = json.loads((bundle / "export.json").read_text())["hls4ml"]
    linked = hls.compile_project(bundle / section["folder"], folder)
    return bundle, linked, load_student(student).device_layer()


def test_project_is_in_the_bundle_with_the_trained_precisions(compiled):
    bundle, _, layer = compiled
    manifest = json.loads((bundle / "export.json").read_text())
    section = manifest["hls4ml"]
    fp = layer.fixed_point()
    e_w = fp["weight_exponents"].numpy()
    spread = int(e_w.max() - e_w.min())
    assert section["backend"] == "Vitis" and section["hls4ml_version"]
    assert section["precisions"]["input"] == f"ap_fixed<6,{6 + fp['input_exponent']},AP_RND_CONV,AP_SAT>"
    assert section["precisions"]["weight"] == f"ap_fixed<{4 + spread},{4 + spread + int(e_w.min())}>"
    assert section["precisions"]["result"] == f"ap_fixed<8,{8 + fp['output_exponent']},AP_RND_CONV,AP_SAT>"
    # the project's files are listed with their checksums, so read_manifest catches a damaged one
    assert "hls4ml/firmware/codesign_student.cpp" in manifest["files"]
    defines = (bundle / "hls4ml" / "firmware" / "defines.h").read_text()
    p = section["precisions"]
    assert f"typedef {p['input'][:-1]},0> input_t;" in defines  # ap_fixed's fifth argument: saturation bits
    assert f"typedef {p['weight']} fc_weight_t;" in defines and f"typedef {p['accum']} fc_accum_t;" in defines
    assert f"typedef {p['result'][:-1]},0> result_t;" in defines
    assert "hls4ml_config.yml" in {p.name for p in (bundle / "hls4ml").iterdir()}


def test_csim_matches_integer_forward_on_every_digits_test_row(compiled, digits):
    bundle, linked, layer = compiled
    exp = load_export(bundle)
    feats = exp.features(digits.x_test)
    got = hls.predict_codes(linked, feats.numpy(), exp.manifest["hls4ml"]["output_exponent"])
    rows, same, worst = hls.compare_codes(got, layer, feats)
    assert (rows, same, worst) == (360, 360, 0)
    assert len(np.unique(got)) > 8  # real codes, not a constant


def test_csim_rounds_half_to_even_and_saturates_like_integer_forward(compiled):
    """Inputs far outside the range (saturation) and exactly between two input codes (ties)."""
    bundle, linked, layer = compiled
    fp = layer.fixed_point()
    n_in = fp["weight_codes"].shape[1]
    gen = torch.Generator().manual_seed(1)
    lsb = 2.0 ** fp["input_exponent"]
    ties = (torch.randint(-40, 40, (64, n_in), generator=gen).to(torch.float32) + 0.5) * lsb
    wide = torch.randn(64, n_in, generator=gen) * 50.0
    feats = torch.cat([ties, wide])
    ref, _ = layer.integer_forward(feats)
    got = hls.predict_codes(linked, feats.numpy(), fp["output_exponent"])
    assert np.array_equal(got, ref.numpy())
    lo, hi = -(2 ** 7), 2 ** 7 - 1  # 8 output bits: saturated rows reach the ends
    assert (got == lo).any() and (got == hi).any()


def test_comparison_fails_for_another_layer(compiled, digits):
    bundle, linked, layer = compiled
    exp = load_export(bundle)
    feats = exp.features(digits.x_test)
    other = exp.layer
    fp = other.fixed_point()
    codes = fp["weight_codes"].clone()
    i = int(feats.abs().mean(0).argmax())  # the busiest input: row 0's weight on it moved to the other end
    codes[0, i] = -7 if codes[0, i] >= 0 else 7  # 4-bit narrow range: +-7
    other.load_fixed_point(codes, fp["weight_exponents"], fp["input_exponent"], fp["output_exponent"])
    got = hls.predict_codes(linked, feats.numpy(), fp["output_exponent"])
    rows, same, worst = hls.compare_codes(got, other, feats)
    assert rows == 360 and same < 360 and worst >= 1


def test_cli_hls4ml_verify_passes_and_exits_1_when_the_simulation_differs(student, compiled, tmp_path, capsys,
                                                                          monkeypatch):
    assert main(["export", str(student), "--out", str(tmp_path / "b"), "--hls4ml", "--hls4ml-backend", "Vivado",
                 "--verify"]) == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.startswith("hls4ml"))
    assert "pass" in line and "360/360 rows identical" in line and "Vivado" in line
    assert json.loads((tmp_path / "b" / "export.json").read_text())["hls4ml"]["backend"] == "Vivado"

    real = hls.predict_codes

    def off_by_one(linked, features, e_out):  # a simulation that differs in one code of one row
        got = real(linked, features, e_out)
        got[3, 0] += 1
        return got

    monkeypatch.setattr(hls, "predict_codes", off_by_one)
    # the failing run needs no third compile of the same student's project: the module's C simulation
    # (checked equal to integer_forward above) stands in for it (one g++ build, ~5 s, saved)
    monkeypatch.setattr(hls, "compile_project", lambda project, workdir: compiled[1])
    assert main(["export", str(tmp_path / "b"), "--verify", "--student", str(student)]) == 1
    out = capsys.readouterr().out
    assert "359/360 rows identical" in out and "verify: FAILED" in out


def test_hls4ml_on_a_student_without_an_fpga_layer_is_one_line(tmp_path, capsys, digits_teacher):
    path = tmp_path / "ideal.pt"
    save_student(path, run_distill(DistillConfig(pca_rank=5, device="ideal"), Workspace(verbose=False)))
    assert main(["export", str(path), "--out", str(tmp_path / "b"), "--hls4ml"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--hls4ml converts the layer of an FPGA student" in err
    assert not (tmp_path / "b").exists()


# --------------------------------------------------------------------------- MNIST tier
def _mnist_root() -> Path | None:
    env = os.environ.get("CODESIGN_DATA")
    return Path(env) if env and (Path(env) / "mnist").is_dir() else None


@pytest.mark.slow
@pytest.mark.skipif(_mnist_root() is None, reason="CODESIGN_DATA does not hold mnist/")
def test_mnist_student_csim_matches_integer_forward_on_every_test_row(tmp_path):
    """One trained MNIST FPGA student (rank 20, degree 2, 8-bit, least squares): all 10,000 test rows, bit for bit."""
    from codesign.data import load_dataset

    root = _mnist_root()
    # the least-squares fit: the check is of the quantized layer, and kd's fit would add minutes to the MNIST tier
    result = run_distill(DistillConfig(dataset="mnist", data_root=str(root), pca_rank=20, device="fpga_fixed_point",
                                       fit=FitConfig(method="naive"), cache_dir=REAL_CACHE, hw_draws=1),
                         Workspace(verbose=False))
    save_student(tmp_path / "mnist.pt", result)
    bundle = export_student(tmp_path / "mnist.pt", tmp_path / "bundle", hls4ml="Vitis")
    linked = hls.compile_project(bundle / "hls4ml", tmp_path)
    exp = load_export(bundle)
    feats = exp.features(load_dataset("mnist", root).x_test)
    got = hls.predict_codes(linked, feats.numpy(), exp.manifest["hls4ml"]["output_exponent"])
    rows, same, worst = hls.compare_codes(got, load_student(tmp_path / "mnist.pt").device_layer(), feats)
    print(f"MNIST r=20 degree 2 fpga: {same}/{rows} rows identical, max |code diff| {worst}")
    assert (rows, same, worst) == (10_000, 10_000, 0)
