"""The ONNX and QONNX graphs of the export (codesign.export.onnx_graph), and one MNIST student.

The float graph must compute the feature pipeline as ``FeaturePipeline.transform`` does (negative
PCA scores included: products, never logarithms), the QONNX graph must give the integer codes of
the FPGA layer's quantized path, and its layer part the same codes as brevitas's own QONNX export
of the layer. The MNIST test (skipped without ``$CODESIGN_DATA/mnist``) is the issue's acceptance
figure: an ideal student of rank 40, degree 2, agrees with ``load_student`` on every test image.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from codesign.devices import create_device
from codesign.export import onnx_graph
from codesign.features import build_features

#: the cache set when the module was imported (the session fixture swaps in an empty one later)
REAL_CACHE = os.environ.get("CODESIGN_CACHE")


def _mnist_root() -> Path | None:
    env = os.environ.get("CODESIGN_DATA")
    return Path(env) if env and (Path(env) / "mnist").is_dir() else None


@pytest.fixture(scope="module")
def feats(digits):
    return {
        "monomial3": build_features(digits.x_train, digits.x_test, 12, "monomial", {"degree": 3}),
        "rbf": build_features(digits.x_train, digits.x_test, 9, "rbf", {"centers": 40}),
        "rff": build_features(digits.x_train, digits.x_test, 10, "rff", {"features": 300, "bandwidth": 0.7}, seed=3),
    }


@pytest.mark.parametrize("which", ["monomial3", "rbf", "rff"])
def test_float_graph_computes_the_pipeline(feats, digits, tmp_path, which):
    f = feats[which]
    assert (f.pipeline.pca_.transform(digits.x_test) < 0).any()  # negative scores are exercised
    k = torch.randn(10, f.pipeline.n_features, generator=torch.Generator().manual_seed(0)).numpy()
    model = onnx_graph.float_model(f.pipeline, k)
    onnx.checker.check_model(model, full_check=True)
    ops = {n.op_type for n in model.graph.node}
    assert not ops & {"Log", "Abs", "Sign"}
    assert ("Exp" in ops) == (which == "rbf") and ("Cos" in ops) == (which == "rff")
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    logits, got = onnx_graph.run_float(path, digits.x_test, ("logits", "features"))
    ref = f.test.numpy()
    assert got.shape == ref.shape and logits.shape == (len(ref), 10)
    assert np.abs(got - ref).max() <= 1e-5 * max(1.0, np.abs(ref).max())
    assert np.array_equal(got[:, 0], np.ones(len(ref), np.float32))
    assert np.abs(logits - ref @ k.T).max() < 1e-3


def test_monomial_exponents_match_the_lift(feats):
    f = feats["monomial3"]
    e = onnx_graph.monomial_exponents(f.pipeline.dictionary, 12)
    z = torch.randn(5, 12, generator=torch.Generator().manual_seed(1))
    expected = f.pipeline.dictionary.transform(z).numpy()
    from_exponents = np.prod(z.numpy()[:, None, :] ** e[None, :, :], axis=2)
    assert e.shape == (455, 12) and np.allclose(from_exponents, expected, rtol=1e-5, atol=1e-6)


def _fpga_layer(train: torch.Tensor, k: np.ndarray, bits=(4, 6, 8)):
    dev = create_device("fpga_fixed_point", {"weight_bits": bits[0], "input_bits": bits[1], "output_bits": bits[2]})
    layer = dev.layer(k.shape[1], k.shape[0])
    layer.load_matrix(torch.from_numpy(k))
    layer.eval()
    with torch.no_grad():
        layer(train)  # calibrates the radix points
    return layer


def test_qonnx_graph_gives_the_layer_integer_codes(feats, digits, tmp_path):
    f = feats["monomial3"]
    k = (torch.randn(10, f.pipeline.n_features, generator=torch.Generator().manual_seed(2)) * 0.1).numpy()
    layer = _fpga_layer(f.train, k)
    fp = layer.fixed_point()
    model = onnx_graph.qonnx_model(f.pipeline, fp)
    quants = [n for n in model.graph.node if n.op_type == "Quant"]
    assert len(quants) == 3 and all(n.domain == "qonnx.custom_op.general" for n in quants)
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    assert (inits["input_bits"], inits["weight_bits"], inits["output_bits"]) == (6, 4, 8)
    assert inits["input_scale"] == 2.0 ** fp["input_exponent"]
    path = tmp_path / "q.onnx"
    onnx.save(model, str(path))
    ctx = onnx_graph.run_qonnx(path, digits.x_test)
    codes_graph = ctx["logits"] / 2.0 ** fp["output_exponent"]
    assert np.array_equal(codes_graph, np.round(codes_graph))
    codes, scale = layer.integer_forward(torch.from_numpy(ctx["features"]))
    assert float(scale) == 2.0 ** fp["output_exponent"]
    assert np.array_equal(codes_graph.astype(np.int64), codes.numpy())
    assert len(np.unique(codes.numpy())) > 20  # a real spread of output levels, not all saturated


def test_qonnx_layer_part_equals_brevitas_export(feats, digits, tmp_path):
    """Our Quant nodes and brevitas's QONNX export of the same layer give the same codes."""
    from codesign.devices.fpga_fixed_point import execute_qonnx, export_qonnx

    f = feats["rbf"]
    k = (torch.randn(10, f.pipeline.n_features, generator=torch.Generator().manual_seed(3)) * 0.2).numpy()
    layer = _fpga_layer(f.train, k, bits=(5, 8, 8))
    fp = layer.fixed_point()
    onnx.save(onnx_graph.qonnx_model(f.pipeline, fp), str(tmp_path / "ours.onnx"))
    ctx = onnx_graph.run_qonnx(tmp_path / "ours.onnx", digits.x_test)
    theirs = execute_qonnx(export_qonnx(layer, tmp_path / "brevitas.onnx"), torch.from_numpy(ctx["features"]))
    assert np.array_equal(ctx["logits"], theirs.numpy())


def test_fixed_point_round_trip_keeps_the_layer(feats, digits):
    f = feats["monomial3"]
    k = (torch.randn(10, f.pipeline.n_features, generator=torch.Generator().manual_seed(4)) * 0.1).numpy()
    layer = _fpga_layer(f.train, k, bits=(3, 5, 10))
    fp = layer.fixed_point()
    dev = create_device("fpga_fixed_point", {"weight_bits": 3, "input_bits": 5, "output_bits": 10})
    again = dev.layer(k.shape[1], k.shape[0])
    again.load_fixed_point(fp["weight_codes"], fp["weight_exponents"], fp["input_exponent"], fp["output_exponent"])
    again.eval()
    with torch.no_grad():
        assert torch.equal(again(f.test), layer(f.test))
    assert torch.equal(again.effective_matrix(), layer.effective_matrix())


# --------------------------------------------------------------------------- MNIST acceptance
@pytest.mark.slow
@pytest.mark.skipif(_mnist_root() is None, reason="CODESIGN_DATA does not hold mnist/")
def test_mnist_ideal_student_onnx_agrees_on_every_test_image(tmp_path):
    """ONNX of an ideal MNIST student (r=40, degree 2) vs ``load_student`` on all 10,000 test images."""
    from codesign.artifacts import load_student, save_student
    from codesign.data import load_dataset
    from codesign.distill import DistillConfig, run_distill
    from codesign.export import export_student, load_export, verify_export

    cfg = DistillConfig(dataset="mnist", data_root=str(_mnist_root()), pca_rank=40, device="ideal",
                        cache_dir=REAL_CACHE, hw_draws=1)
    save_student(tmp_path / "student.pt", run_distill(cfg))
    out = export_student(tmp_path / "student.pt", tmp_path / "bundle")
    ds = load_dataset("mnist", _mnist_root())
    st = load_student(tmp_path / "student.pt")
    ref = st.logits(ds.x_test).numpy()
    got = load_export(out).onnx_logits(ds.x_test)
    top2 = np.sort(ref, axis=1)[:, -2:]
    tie = (top2[:, 1] - top2[:, 0]) <= 1e-5 * np.abs(top2).max(1)
    differ = got.argmax(1) != ref.argmax(1)
    print(f"MNIST r=40 degree 2 ideal: {int(differ.sum())} of {len(ref)} ONNX predictions differ, "
          f"{int((differ & ~tie).sum())} outside ties; max |logit diff| {np.abs(got - ref).max():.3g}")
    assert len(ref) == 10_000 and int((differ & ~tie).sum()) == 0
    report = verify_export(out, data_root=_mnist_root())
    print(report.table())
    assert report.ok


@pytest.mark.parametrize("host", ["int8", "fp16"])
def test_a_host_format_is_simulated_and_exported(digits, tmp_path, host):
    """Issue 26: a host other than fp32 is simulated (the features change) and the ONNX front end
    computes the same features (int8 codes by Round and Clip, Cast for fp16)."""
    ref = build_features(digits.x_train, digits.x_test, 8, "monomial", {"degree": 2})
    f = build_features(digits.x_train, digits.x_test, 8, "monomial", {"degree": 2}, host_datapath=host)
    diff = np.abs(f.test.numpy() - ref.test.numpy())
    assert diff.max() > 1e-4  # the host's format reaches the features
    if host == "int8":  # every standardised feature on the int8 grid of the calibrated range
        step = f.pipeline.host_scales_["psi"] / 127
        codes = f.test.numpy() / step
        assert np.abs(codes - np.round(codes)).max() < 1e-3 and np.abs(codes).max() <= 128
    k = torch.randn(10, f.pipeline.n_features, generator=torch.Generator().manual_seed(0)).numpy()
    model = onnx_graph.float_model(f.pipeline, k)
    onnx.checker.check_model(model, full_check=True)
    ops = {n.op_type for n in model.graph.node}
    assert ({"Round", "Clip"} <= ops) == (host == "int8") and ("Cast" in ops) == (host == "fp16")
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    (got,) = onnx_graph.run_float(path, digits.x_test, ("features",))
    if host == "int8":  # integer codes, an accumulator exact in float32: bit for bit
        assert np.array_equal(got, f.test.numpy())
    else:  # fp16 rounding after float32 sums in another order: a code boundary may move one step
        assert (np.abs(got - f.test.numpy()) > 1e-4).mean() < 1e-3
