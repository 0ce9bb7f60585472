"""hls4ml hand-off of an FPGA student: its trained layer as an HLS project, checked bit for bit.

``codesign export STUDENT --out DIR --hls4ml`` writes ``DIR/hls4ml/``, an hls4ml project (Vitis
or Vivado HLS backend) of the student's fixed-point layer K, with every precision taken from the
trained layer (:meth:`~codesign.devices.fpga_fixed_point.FPGAFixedPointLayer.fixed_point`):

* input ``ap_fixed<A, A + e_in, AP_RND_CONV, AP_SAT>``: the input quantizer (step 1 of
  ``integer_forward``: round half to even, saturate to ``A`` signed bits, radix point ``2^e_in``);
* weights ``ap_fixed<W', W' + e_lo>`` with ``W' = W + (e_hi - e_lo)``: hls4ml's ``Dense`` has one
  weight type per layer, so the per-row power-of-two exponents ``e_w[j]`` (``e_lo`` to ``e_hi``)
  are folded into one type that holds every row's codes exactly;
* accumulator ``ap_fixed`` wide enough that no product or sum is rounded (step 3);
* result ``ap_fixed<B, B + e_out, AP_RND_CONV, AP_SAT>``: the requantizer (step 4: the cast of
  the accumulator rounds half to even at ``2^e_out`` and saturates to ``B`` signed bits).

So the HLS project computes exactly ``integer_forward``'s codes; :func:`check_project` compiles
its C simulation (hls4ml's ``compile``, g++ and the ``ap_fixed`` headers hls4ml ships) and
compares them on every row given. The host keeps what precedes the layer (PCA, standardisation,
the dictionary lift, all in ``frontend.npz`` / ``model.onnx``) and the argmax after it.
"""

from __future__ import annotations

import contextlib
import io
import math
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from ..errors import ConfigError

#: hls4ml backends the hand-off writes (both Xilinx/AMD HLS flows; Vitis is hls4ml's current one)
BACKENDS = ("Vitis", "Vivado")
#: the project's folder inside the bundle and its top function
HLS_DIR = "hls4ml"
PROJECT = "codesign_student"
#: the pip extra that installs hls4ml
EXTRA = 'pip install -e ".[hls4ml]"'


def _hls4ml():
    try:
        import hls4ml
    except ImportError:
        raise ConfigError(f"--hls4ml needs the hls4ml package; install it with `{EXTRA}`") from None
    return hls4ml


def available() -> bool:
    """True if hls4ml can be imported (the optional extra ``hls4ml`` is installed)."""
    try:
        import hls4ml  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass(frozen=True)
class Precisions:
    """The ``ap_fixed`` types of the HLS layer, derived from the trained layer's radix points."""

    input: str
    weight: str
    accum: str
    result: str

    @classmethod
    def of(cls, fp: Mapping[str, Any], n_in: int) -> "Precisions":
        """From :meth:`FPGAFixedPointLayer.fixed_point`'s bits and exponents for ``n_in`` inputs."""
        a, w, b = int(fp["input_bits"]), int(fp["weight_bits"]), int(fp["output_bits"])
        e_in, e_out = int(fp["input_exponent"]), int(fp["output_exponent"])
        e_w = np.asarray(fp["weight_exponents"], dtype=np.int64).reshape(-1)
        e_lo, e_hi = int(e_w.min()), int(e_w.max())
        w_all = w + (e_hi - e_lo)  # every row's codes, shifted to the common radix point 2^e_lo
        # |a * w| < 2^(a-1) * 2^(w_all-1); a sum of n_in of them needs ceil(log2 n_in) more bits, plus the sign
        acc = a + w_all + max(1, math.ceil(math.log2(max(n_in, 2))))
        return cls(
            input=f"ap_fixed<{a},{a + e_in},AP_RND_CONV,AP_SAT>",
            weight=f"ap_fixed<{w_all},{w_all + e_lo}>",
            accum=f"ap_fixed<{acc},{acc + e_in + e_lo}>",
            result=f"ap_fixed<{b},{b + e_out},AP_RND_CONV,AP_SAT>",
        )


def _torch_model(codes: np.ndarray, exponents: np.ndarray) -> torch.nn.Module:
    """A bias-free ``Linear`` holding ``codes[j, i] * 2^exponents[j]`` (exact in float32)."""

    class StudentLayer(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = torch.nn.Linear(codes.shape[1], codes.shape[0], bias=False)

        def forward(self, x):
            return self.fc(x)

    model = StudentLayer()
    weight = codes.astype(np.float64) * np.power(2.0, exponents.astype(np.float64))[:, None]
    if not np.array_equal(weight.astype(np.float32).astype(np.float64), weight):
        raise ConfigError("the FPGA layer's weights are not exact in float32 (more than 24 significant bits); "
                          "hls4ml reads them from a float32 torch layer")
    with torch.no_grad():
        model.fc.weight.copy_(torch.from_numpy(weight.astype(np.float32)))
    return model.eval()


def reuse_factor(n_in: int, n_out: int, pe: int, simd: int) -> int:
    """hls4ml's ``ReuseFactor`` for FINN's folding: each of the ``pe * simd`` multipliers is used
    ``ceil(n_in / simd) * ceil(n_out / pe)`` times per product (1: fully parallel)."""
    return max(1, math.ceil(n_in / max(1, simd)) * math.ceil(n_out / max(1, pe)))


def write_project(layer, folder: Path, *, backend: str = "Vitis", device_config: Mapping[str, Any] | None = None
                  ) -> dict[str, Any]:
    """Write the hls4ml project of ``layer`` (an FPGA fixed-point layer) into ``folder``.

    Args:
        layer: a layer with ``fixed_point()`` (:class:`FPGAFixedPointLayer`), calibrated.
        folder: the project folder (created; must not exist).
        backend: ``Vitis`` or ``Vivado``.
        device_config: the device's configuration: its ``clock_mhz`` sets the project's clock
            period and ``pe``/``simd`` the reuse factor (FINN's folding).

    Returns:
        The manifest section (``export.json``'s ``hls4ml``).
    """
    if backend not in BACKENDS:
        raise ConfigError(f"--hls4ml-backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    if not hasattr(layer, "fixed_point"):
        raise ConfigError("--hls4ml converts an FPGA fixed-point layer; this student's device has none "
                          "(distil it with --device fpga_fixed_point)")
    hls4ml = _hls4ml()
    fp = layer.fixed_point()
    codes = fp["weight_codes"].numpy().astype(np.int64)
    e_w = np.asarray(fp["weight_exponents"].numpy(), dtype=np.int64)
    n_out, n_in = codes.shape
    prec = Precisions.of({**fp, "weight_exponents": e_w}, n_in)
    dev = dict(device_config or {})
    clock_mhz = float(dev.get("clock_mhz", 200.0))
    rf = reuse_factor(n_in, n_out, int(dev.get("pe", 1)), int(dev.get("simd", n_in)))
    strategy = "Latency" if rf == 1 else "Resource"
    model = _torch_model(codes, e_w)
    config = hls4ml.utils.config_from_pytorch_model(
        model, input_shape=(n_in,), granularity="name", backend=backend, default_precision=prec.accum,
        default_reuse_factor=rf)
    names = list(config["LayerName"])
    for name in names:
        lc = config["LayerName"][name]
        if name == "fc":
            lc["Precision"] = {"weight": prec.weight, "accum": prec.accum, "result": prec.result}
            lc["ReuseFactor"] = rf
            lc["Strategy"] = strategy
        else:  # the input layer
            lc["Precision"] = {"result": prec.input}
    config["Model"]["Strategy"] = strategy
    config["Model"]["ReuseFactor"] = rf
    folder = Path(folder)
    import logging
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.getLogger("hls4ml").setLevel(logging.ERROR)
        with contextlib.redirect_stdout(io.StringIO()):  # hls4ml prints its topology and reuse-factor notes
            hmodel = hls4ml.converters.convert_from_pytorch_model(
                model, output_dir=str(folder), project_name=PROJECT, backend=backend, hls_config=config,
                io_type="io_parallel", clock_period=round(1000.0 / clock_mhz, 6))
        rf_used = int(hmodel.graph["fc"].get_attr("reuse_factor"))  # hls4ml's nearest valid one
        # the project's hls4ml_config.yml must read back with yaml.safe_load (hls4ml's
        # link_existing_project): no pickled torch module, no Python tuples in it
        hmodel.config.config["PytorchModel"] = None
        hmodel.config.config["InputShape"] = [int(n_in)]
        with contextlib.redirect_stdout(io.StringIO()):
            hmodel.write()
    _set_output_dir(folder, ".")  # the temporary folder the bundle was written in is gone after the export
    return {
        "folder": HLS_DIR, "backend": backend, "project": PROJECT, "hls4ml_version": hls4ml.__version__,
        "io_type": "io_parallel", "strategy": strategy, "reuse_factor": rf_used,
        "reuse_factor_folding": rf, "clock_period_ns": round(1000.0 / clock_mhz, 6),
        "n_in": int(n_in), "n_out": int(n_out), "precisions": prec.__dict__,
        "output_exponent": int(fp["output_exponent"]),
        "stages": {
            "host": "PCA projection, standardisation and the dictionary lift (frontend.npz, model.onnx), the "
                    "input's conversion to the input type's bits, and the argmax over the outputs",
            "hls": "the layer K: input_t codes times the weight codes, exact accumulation, then the requantizer "
                   "(round half to even at 2^output_exponent, saturate to output_bits): integer_forward's codes",
        },
        "check": "codesign export BUNDLE --verify compiles the C simulation (hls4ml compile) and compares its "
                 "output codes with the student layer's integer_forward on every test row",
    }


def _set_output_dir(project: Path, value: str) -> None:
    """Point the project's ``hls4ml_config.yml`` ``OutputDir`` at ``value`` (hls4ml compiles there)."""
    import yaml

    path = Path(project) / "hls4ml_config.yml"
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    config["OutputDir"] = value
    path.write_text(yaml.safe_dump(config, sort_keys=True), encoding="utf-8")


def compile_project(project: Path, workdir: Path):
    """Copy the hls4ml ``project`` into ``workdir`` and compile its C simulation there (g++).

    The bundle's own files stay as written (their checksums hold). Returns hls4ml's linked
    model (``link_existing_project``), whose ``predict`` runs the compiled C++.
    """
    _hls4ml()
    from hls4ml.converters import link_existing_project

    work = Path(workdir) / "project"
    shutil.copytree(project, work)
    _set_output_dir(work, str(work))
    linked = link_existing_project(str(work))
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            linked.compile()
    except Exception as exc:  # noqa: BLE001 - g++ or hls4ml's build script failing: one line
        raise ConfigError(f"{project}: the hls4ml C simulation did not compile ({type(exc).__name__}: {exc}); "
                          "is g++ installed?") from exc
    return linked


def predict_codes(linked, features: np.ndarray, output_exponent: int) -> np.ndarray:
    """Run ``features`` (float32 ``[rows, n_in]``) through the compiled C simulation ``linked``;
    the output codes, int64 ``[rows, n_out]`` (outputs / ``2^output_exponent``, exact)."""
    features = np.ascontiguousarray(features, dtype=np.float32)
    with contextlib.redirect_stdout(io.StringIO()):
        out = linked.predict(features)
    out = np.asarray(out, dtype=np.float64).reshape(len(features), -1)
    codes = out / 2.0 ** int(output_exponent)
    if not np.array_equal(codes, np.round(codes)):
        raise ConfigError(f"the C simulation's outputs are not multiples of 2^{output_exponent}: not this layer's project")
    return codes.astype(np.int64)


def compare_codes(got: np.ndarray, layer, features: torch.Tensor) -> tuple[int, int, int]:
    """``(rows, rows identical, max |code difference|)`` of ``got`` vs ``layer.integer_forward(features)``."""
    ref, _ = layer.integer_forward(features)
    ref = ref.numpy()
    if got.shape != ref.shape:
        return len(ref), 0, -1
    same = int((got == ref).all(1).sum())
    return len(ref), same, int(np.abs(got - ref).max()) if len(ref) else 0


def student_project(layer, pca_layer, device_config: Mapping[str, Any] | None, folder: Path, backend: str
                    ) -> dict[str, Any]:
    """The bundle's hls4ml project of a student's layer (``export_student(..., hls4ml=BACKEND)``)."""
    if layer is None or not hasattr(layer, "fixed_point"):
        raise ConfigError("--hls4ml converts the layer of an FPGA student (distilled with --device fpga_fixed_point); "
                          "this student has no fixed-point layer")
    if pca_layer is not None:
        raise ConfigError("--hls4ml converts the layer K; this student also runs its PCA projection on the device "
                          "(--pca-placement device), which the hand-off does not convert: export without --hls4ml")
    return write_project(layer, folder, backend=backend, device_config=device_config)


def verify(bundle: Path, section: Mapping[str, Any], layer, features: torch.Tensor) -> tuple[bool | None, str, str]:
    """``(ok, value, detail)`` of the bundle's hls4ml check: C simulation vs ``integer_forward``
    on every row of ``features`` (ok None, not run, where hls4ml is not installed)."""
    if not available():
        return None, "-", f"hls4ml is not installed (`{EXTRA}`): the C simulation was not compiled"
    project = Path(bundle) / str(section.get("folder", HLS_DIR))
    with tempfile.TemporaryDirectory(prefix="codesign-hls-") as tmp:
        linked = compile_project(project, Path(tmp))
        got = predict_codes(linked, features.detach().cpu().numpy(), int(section["output_exponent"]))
    rows, same, worst = compare_codes(got, layer, features)
    return (same == rows, f"{same}/{rows} rows identical",
            f"{section.get('backend')} project compiled (C simulation, g++) vs the student layer's integer_forward; "
            f"max |code diff| {worst}")


__all__ = ["BACKENDS", "HLS_DIR", "PROJECT", "Precisions", "available", "compare_codes", "compile_project",
           "predict_codes", "reuse_factor",
           "student_project", "verify", "write_project"]
