"""The whole inference as an ONNX graph: pixels -> PCA -> lift -> standardise -> K -> logits.

:func:`frontend_nodes` writes the feature pipeline (:class:`~codesign.features.FeaturePipeline`)
as standard ONNX operators, step for step as ``FeaturePipeline.transform`` computes it:

* PCA: ``z = (x - mean) @ components.T``, then ``z / sqrt(explained_variance)`` when whitened
  (``Sub``, ``MatMul``, ``Div``);
* the lift, column 0 the constant 1 (``Pow(x[:, :1], 0)``, ``[N, 1]``):

  - ``monomial``: ``[1, z, degree-2 block, ...]``, each degree-k block the degree-(k-1) block
    gathered at the parent indices times ``z`` gathered at the variable indices (``Gather`` on
    axis 1, ``Mul``) -- products, never logarithms, so negative scores are exact;
  - ``rbf``: ``[1, z, exp(-|z - c_j|^2 / (2 sigma^2))]`` with the squared distances expanded
    as ``|z|^2 - 2 z c^T + |c|^2``, clamped at 0 (the form ``torch.cdist`` uses for more than
    25 points), then ``Mul`` by ``-1 / (2 sigma^2)`` and ``Exp``;
  - ``rff``: ``[1, z, cos(z @ W.T + u)]`` (``MatMul``, ``Add``, ``Cos``), ``W`` and ``u`` the
    fitted dictionary's draws;

* standardisation: ``(psi - mean) / std`` (``Sub``, ``Div``).

:func:`float_model` adds ``logits = features @ M.T`` (``MatMul``) with ``M`` the nominal
matrix; :func:`qonnx_model` instead adds the FPGA layer's fixed-point datapath as QONNX
``Quant`` nodes (input, per-row weights, output), the graph brevitas's QONNX export writes for
the matrix layer (:func:`codesign.devices.fpga_fixed_point.export_qonnx`).

Both graphs take ``pixels`` (float32 ``[N, D]``, as :func:`codesign.load_dataset` returns them)
and return ``logits`` (float32 ``[N, C]``); the batch dimension is symbolic (``N``), and the
standardised features are the named intermediate tensor ``features``.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from ..errors import ConfigError

#: ONNX operator set of the graphs (onnxruntime >= 1.13 and QONNX run it).
OPSET = 17
#: IR version written (readable by onnx >= 1.12 and onnxruntime >= 1.13).
IR_VERSION = 8
#: Domain of QONNX's custom ops (``Quant``), as brevitas's QONNX export writes it.
QONNX_DOMAIN = "qonnx.custom_op.general"
#: Names of the graph's input, intermediate features and output.
INPUT, FEATURES, OUTPUT = "pixels", "features", "logits"
#: Dictionaries :func:`frontend_nodes` can write.
SUPPORTED_DICTIONARIES = ("monomial", "rbf", "rff")


class _Graph:
    """Nodes and initializers under construction, with unique names."""

    def __init__(self) -> None:
        from onnx import helper, numpy_helper

        self.helper, self.numpy_helper = helper, numpy_helper
        self.nodes: list = []
        self.inits: list = []
        self._n = 0

    def const(self, name: str, value: np.ndarray) -> str:
        self.inits.append(self.numpy_helper.from_array(np.asarray(value), name))
        return name

    def op(self, op_type: str, inputs: list[str], output: str | None = None, domain: str = "", **attrs: Any) -> str:
        self._n += 1
        out = output or f"{op_type.lower()}_{self._n}"
        self.nodes.append(self.helper.make_node(op_type, inputs, [out], name=f"{op_type}_{self._n}",
                                                domain=domain, **attrs))
        return out


def check_exportable(pipeline) -> None:
    """Raise ``ConfigError`` unless :func:`frontend_nodes` can write ``pipeline``'s dictionary."""
    name = pipeline.dictionary.name
    if name not in SUPPORTED_DICTIONARIES and not hasattr(pipeline.dictionary, "onnx_columns"):
        raise ConfigError(f"dictionary {name!r} has no ONNX form; the export writes the built-in dictionaries "
                          f"({', '.join(SUPPORTED_DICTIONARIES)}) only")


def monomial_levels(dictionary) -> list[tuple[np.ndarray, np.ndarray]]:
    """The monomial dictionary's ``(parent, variable)`` index pairs, one per degree >= 2."""
    return [(p.numpy().astype(np.int64), v.numpy().astype(np.int64)) for p, v in dictionary._levels]


def monomial_exponents(dictionary, rank: int) -> np.ndarray:
    """``[F, r]`` int32: the exponent of each PCA score in each lifted column (column 0: all zero)."""
    rows = [np.zeros(rank, np.int32)]
    prev = [np.eye(rank, dtype=np.int32)[i] for i in range(rank)]
    rows += prev
    for parent, var in monomial_levels(dictionary):
        block = [prev[p] + np.eye(rank, dtype=np.int32)[v] for p, v in zip(parent, var)]
        rows += block
        prev = block
    return np.stack(rows)


def frontend_nodes(g: _Graph, pipeline) -> str:
    """Add the pipeline's nodes to ``g`` reading :data:`INPUT`; returns :data:`FEATURES`."""
    check_exportable(pipeline)
    pca, d = pipeline.pca_, pipeline.dictionary
    fmt = getattr(pipeline, "host_datapath", "fp32")
    if fmt == "fp32":
        z = g.op("Sub", [INPUT, g.const("pca_mean", pca.mean_.astype(np.float32))])
        z = g.op("MatMul", [z, g.const("pca_components_t", np.ascontiguousarray(pca.components_.T, dtype=np.float32))])
        if pca.whiten:
            z = g.op("Div", [z, g.const("pca_scale", np.sqrt(pca.explained_variance_).astype(np.float32))], "pca_scores")
    elif fmt == "int8":  # FeaturePipeline._scores: integer codes, an accumulator exact in float32
        p = pipeline.host_int8_projection()
        x = _int8_codes(g, INPUT, pipeline.host_scales_.get("x", 1.0), "host_input")
        z = g.op("MatMul", [x, g.const("pca_weight_codes_t", np.ascontiguousarray(p["w_codes"].numpy().T))],
                 "pca_accumulator")
        z = g.op("Add", [g.op("Mul", [z, g.const("pca_gain", p["gain"].numpy())]),
                         g.const("pca_bias", p["bias"].numpy())])
        z = _host_format(g, z, fmt, pipeline.host_scales_["z"], "pca_scores")
    else:  # fp16: inputs and weights rounded to half precision
        w, b = pipeline.host_weights()
        x = _host_format(g, INPUT, fmt, pipeline.host_scales_.get("x", 1.0), "host_input")
        z = g.op("MatMul", [x, g.const("pca_weights_t", np.ascontiguousarray(w.numpy().T, dtype=np.float32))])
        z = g.op("Add", [z, g.const("pca_bias", b.numpy().astype(np.float32))])
        z = _host_format(g, z, fmt, pipeline.host_scales_["z"], "pca_scores")
    # the constant column, [N, 1]: the first pixel to the power 0 (1 for every value, 0 and NaN
    # included), so that its shape follows from static shape inference, as QONNX's executor needs
    first = g.op("Gather", [INPUT, g.const("first_column", np.array([0], np.int64))], axis=1)
    ones = g.op("Pow", [first, g.const("zero_exponent", np.array(0.0, np.float32))], "constant_column")
    columns = [ones, z]
    if hasattr(d, "onnx_columns"):  # a device-native lift: its exact math, noise off (codesign.device_lifts)
        columns.append(d.onnx_columns(g, z))
    elif d.name == "monomial":
        prev = z
        for k, (parent, var) in enumerate(monomial_levels(d), start=2):
            a = g.op("Gather", [prev, g.const(f"monomial_parent_{k}", parent)], axis=1)
            b = g.op("Gather", [z, g.const(f"monomial_variable_{k}", var)], axis=1)
            prev = g.op("Mul", [a, b], f"monomial_degree_{k}")
            columns.append(prev)
    elif d.name == "rff":  # dictionaries.fourier_features: cos(z @ W.T + u)
        w = np.ascontiguousarray(d.weights_.numpy().astype(np.float32).T)
        arg = g.op("Add", [g.op("MatMul", [z, g.const("rff_weights_t", w)]),
                           g.const("rff_phases", d.phases_.numpy().astype(np.float32))], "rff_arguments")
        columns.append(g.op("Cos", [arg], "rff_features"))
    else:  # rbf
        c = d.centers_.numpy().astype(np.float32)
        z2 = g.op("ReduceSum", [g.op("Mul", [z, z]), g.const("axis1", np.array([1], np.int64))], keepdims=1)
        zc = g.op("MatMul", [z, g.const("rbf_centers_t", np.ascontiguousarray(c.T))])
        d2 = g.op("Add", [g.op("Sub", [z2, g.op("Mul", [zc, g.const("two", np.array(2.0, np.float32))])]),
                          g.const("rbf_center_sq", (c.astype(np.float64) ** 2).sum(1).astype(np.float32)[None, :])])
        d2 = g.op("Max", [d2, g.const("zero", np.array(0.0, np.float32))], "rbf_sq_distances")
        coef = np.array(-0.5 / d.sigma_**2, np.float32)
        columns.append(g.op("Exp", [g.op("Mul", [d2, g.const("rbf_coef", coef)])], "rbf_features"))
    psi = g.op("Concat", columns, "lifted", axis=1)
    psi = g.op("Sub", [psi, g.const("feature_mean", pipeline.mean_.numpy().astype(np.float32))])
    if fmt == "fp32":
        return g.op("Div", [psi, g.const("feature_std", pipeline.std_.numpy().astype(np.float32))], FEATURES)
    psi = g.op("Div", [psi, g.const("feature_std", pipeline.std_.numpy().astype(np.float32))])
    return _host_format(g, psi, fmt, pipeline.host_scales_["psi"], FEATURES)


def _host_format(g: _Graph, t: str, fmt: str, scale: float, name: str) -> str:
    """``t`` through the host's number format, as :func:`codesign.features.host_quantize` does:
    ``Cast`` to float16 and back, or int8 codes as float ops -- ``Div`` by the step ``scale / 127``,
    ``Round`` (half to even), ``Clip`` to ``[-128, 127]``, ``Mul`` by the step: the arithmetic of
    ``QuantizeLinear`` / ``DequantizeLinear``, written out so that onnxruntime's QDQ fusion (an
    integer MatMul with its own rounding) does not change what the host computes."""
    if fmt == "fp16":
        return g.op("Cast", [g.op("Cast", [t], to=10)], name, to=1)  # FLOAT16 = 10, FLOAT = 1
    if fmt != "int8":
        raise ConfigError(f"host_datapath={fmt!r} has no ONNX form here (int32 codes exceed float32's 24-bit "
                          "mantissa); export a student whose host is fp32, fp16 or int8")
    codes = _int8_codes(g, t, scale, name)
    return g.op("Mul", [codes, f"{name}_step"], name)


def _int8_codes(g: _Graph, t: str, scale: float, name: str) -> str:
    """int8 codes of ``t`` as floats (``Div`` by the step, ``Round``, ``Clip``); the step is the
    constant ``<name>_step``, :func:`codesign.features.host_step`."""
    from ..features import host_step

    step = g.const(f"{name}_step", host_step("int8", scale).numpy())
    codes = g.op("Round", [g.op("Div", [t, step])])
    return g.op("Clip", [codes, g.const(f"{name}_min", np.array(-128.0, np.float32)),
                         g.const(f"{name}_max", np.array(127.0, np.float32))], f"{name}_codes")


def _model(g: _Graph, n_inputs: int, n_classes: int, name: str, qonnx: bool):
    h = g.helper
    import onnx

    graph = h.make_graph(
        g.nodes, name,
        [h.make_tensor_value_info(INPUT, onnx.TensorProto.FLOAT, ["N", n_inputs])],
        [h.make_tensor_value_info(OUTPUT, onnx.TensorProto.FLOAT, ["N", n_classes])],
        g.inits,
    )
    opsets = [h.make_opsetid("", OPSET)] + ([h.make_opsetid(QONNX_DOMAIN, 2)] if qonnx else [])
    model = h.make_model(graph, opset_imports=opsets, producer_name="codesign", ir_version=IR_VERSION)
    if not qonnx:
        onnx.checker.check_model(model, full_check=True)
    return model


def float_model(pipeline, matrix: np.ndarray, name: str = "codesign_student"):
    """The float inference ``pixels -> logits`` with ``logits = features @ matrix.T``, checked.

    Args:
        pipeline: a fitted :class:`~codesign.features.FeaturePipeline`.
        matrix: ``[C, F]`` float32, the student's K or a device layer's nominal effective matrix.
    """
    g = _Graph()
    feats = frontend_nodes(g, pipeline)
    g.op("MatMul", [feats, g.const("matrix_t", np.ascontiguousarray(np.asarray(matrix, np.float32).T))], OUTPUT)
    return _model(g, int(pipeline.pca_.mean_.shape[0]), int(matrix.shape[0]), name, qonnx=False)


def qonnx_model(pipeline, fixed_point: dict, name: str = "codesign_student_qonnx"):
    """The FPGA student's inference with its fixed-point layer as QONNX ``Quant`` nodes.

    ``features -> Quant(2^e_in, input_bits, signed, not narrow) -> MatMul(Quant(codes * 2^e_w,
    2^e_w per row, weight_bits, signed, narrow)) -> Quant(2^e_out, output_bits, signed, not
    narrow) -> logits``, rounding half to even (``rounding_mode=ROUND``), as brevitas exports
    the layer; ``logits / 2^e_out`` are the integer output codes.

    Args:
        pipeline: the fitted feature pipeline.
        fixed_point: :meth:`~codesign.devices.fpga_fixed_point.FPGAFixedPointLayer.fixed_point`.
    """
    g = _Graph()
    feats = frontend_nodes(g, pipeline)
    f32 = np.float32
    codes = fixed_point["weight_codes"].numpy().astype(np.float64)
    e_w = fixed_point["weight_exponents"].numpy().astype(np.float64)
    w_scale = np.power(2.0, e_w)
    quant = {"domain": QONNX_DOMAIN, "rounding_mode": "ROUND", "signed": 1}
    zero = g.const("quant_zero_point", np.array(0.0, f32))
    a = g.op("Quant", [feats, g.const("input_scale", np.array(2.0 ** fixed_point["input_exponent"], f32)), zero,
                       g.const("input_bits", np.array(fixed_point["input_bits"], f32))],
             "input_quant", narrow=0, **quant)
    w = g.op("Quant", [g.const("weight_t", np.ascontiguousarray((codes * w_scale[:, None]).T.astype(f32))),
                       g.const("weight_scale", w_scale[None, :].astype(f32)), zero,
                       g.const("weight_bits", np.array(fixed_point["weight_bits"], f32))],
             "weight_quant", narrow=1, **quant)
    acc = g.op("MatMul", [a, w], "accumulator")
    g.op("Quant", [acc, g.const("output_scale", np.array(2.0 ** fixed_point["output_exponent"], f32)), zero,
                   g.const("output_bits", np.array(fixed_point["output_bits"], f32))], OUTPUT, narrow=0, **quant)
    return _model(g, int(pipeline.pca_.mean_.shape[0]), int(codes.shape[0]), name, qonnx=True)


def run_float(path, x: np.ndarray, outputs: tuple[str, ...] = (OUTPUT,)) -> list[np.ndarray]:
    """Run a float graph in onnxruntime (CPU) on ``x``; returns the named outputs.

    ``features`` may be asked for too: it is added as a graph output of an in-memory copy.
    """
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(path))
    have = {o.name for o in model.graph.output}
    for name in outputs:
        if name not in have:
            model.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return sess.run(list(outputs), {INPUT: np.ascontiguousarray(x, dtype=np.float32)})


def run_qonnx(path, x: np.ndarray) -> dict[str, np.ndarray]:
    """Run a QONNX graph with QONNX's reference executor on ``x``.

    The batch dimension is set to ``len(x)`` and shapes re-inferred (QONNX's executor needs
    them); ``Quant`` runs in QONNX's numpy implementation, every other node in onnxruntime.

    Returns:
        Every tensor of the execution (``logits``, ``features``, ``accumulator``...).
    """
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.transformation.infer_shapes import InferShapes

    model = ModelWrapper(str(path))
    x = np.ascontiguousarray(x, dtype=np.float32)
    model.set_tensor_shape(INPUT, list(x.shape))
    model.set_tensor_shape(OUTPUT, [len(x), model.get_tensor_shape(OUTPUT)[1]])
    del model.graph.value_info[:]
    model = model.transform(InferShapes())
    with warnings.catch_warnings():  # qonnx re-checks shapes node by node; ours are static
        warnings.simplefilter("ignore")
        return execute_onnx(model, {INPUT: x}, return_full_exec_context=True)
