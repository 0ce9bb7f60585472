"""The export bundle: a saved student as files a chip, a colleague or onnxruntime can read.

:func:`export_student` writes, into a fresh folder (atomically: a temp folder beside it, then a
rename):

* ``export.json``: the manifest (:data:`SCHEMA`), every other file listed with its SHA-256;
* ``frontend.npz``: the feature pipeline as arrays (PCA, dictionary, standardisation);
* ``matrix.npz``: the nominal matrix the ONNX graph multiplies by (K, or the device layer's
  noise-free effective matrix);
* ``model.onnx``: the whole float inference, pixels to logits (:mod:`.onnx_graph`);
* ``model.qonnx.onnx`` (FPGA students): the same with the fixed-point layer as QONNX ``Quant`` nodes;
* ``device/`` (devices with an ``export_format``): the layer in the device's own terms
  (:meth:`codesign.devices.Device.export_layer`); ``device_pca/`` too when the PCA projection
  ran on the device.

With ``instance=SEED`` (``codesign export --instance SEED``) the device layer is exported with
hardware instance (chip) ``SEED`` drawn, so that a device format that carries chip-specific
state writes that chip's (the example plugin's fault map); the manifest records the seed and
:func:`load_export` restores that chip as :attr:`ExportedModel.chip`. A fault map belongs to one
chip: without ``instance`` none is exported. The ONNX graph and ``matrix.npz`` stay nominal.

:func:`load_export` reads a bundle back from its files alone (:class:`ExportedModel`);
:func:`verify_export` compares it with the student it came from (:class:`VerifyReport`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import numbers
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from .. import __version__
from ..artifacts import SavedStudent, load_student
from ..data import class_names, load_dataset
from ..devices import get_device_class
from ..devices.base import Device, DeviceLayer
from ..devices.verdict import require_device
from ..distill import (PCA_SEED_OFFSET, hardware_accuracy, hardware_accuracy_with_lift, hardware_accuracy_with_pca,
                       pca_device_layer)
from ..cache import DISK_FULL, disk_full
from ..errors import CodesignError, ConfigError
from ..features import FeaturePipeline
from . import hls, onnx_graph

#: Schema of ``export.json``; :data:`VERSION` is its version number.
SCHEMA = "codesign-export/1"
#: 2: ``export.sha256`` (the manifest's digest) and ``probe.npz`` (logits on fixed inputs) added.
VERSION = 2
MANIFEST = "export.json"
#: The manifest's SHA-256, beside it (:func:`manifest_digest`).
DIGEST_FILE = "export.sha256"
FRONTEND, MATRIX, ONNX, QONNX = "frontend.npz", "matrix.npz", "model.onnx", "model.qonnx.onnx"
#: Fixed probe inputs and the logits the bundle gave on them when written (:func:`check_probe`).
PROBE = "probe.npz"
PROBE_ROWS, PROBE_SEED = 32, 0
#: Largest |logit difference| on the probe, relative to max(1, largest |logit|): the matrix path
#: (float32, any BLAS) and the device layer's nominal path (quantized: a code may round the other way).
PROBE_RTOL, PROBE_LAYER_RTOL = 1e-4, 1e-3
DEVICE_DIR, DEVICE_PCA_DIR = "device", "device_pca"
#: Members of a search folder besides a trial number or Ray trial id.
SEARCH_TARGETS = ("knee", "accuracy", "cost")
#: Metrics copied into the manifest's ``metrics`` section when the student has them.
METRIC_KEYS = (
    "teacher", "teacher_test_accuracy", "method", "seed", "scored_on", "val_accuracy", "test_accuracy",
    "train_accuracy", "hw_draws", "eval_time_s", "protocol", "device_preset", "device_preset_file", "hw_accuracy_mean",
    "hw_accuracy_std", "hw_accuracy_worst", "search_target", "search_trial", "val_hw_accuracy",
    "test_hw_accuracy", "test_hw_accuracy_std", "test_hw_accuracy_worst", "test_float_accuracy", "test_scored_with",
)
#: A top-2 logit gap below this share of the larger logit counts as a tie in the ONNX check.
TIE_RELATIVE = 1e-5
FIX = "re-export the student with `codesign export`"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _json(value: Any) -> Any:
    """``value`` as plain JSON data (numpy scalars and tuples converted)."""
    return json.loads(json.dumps(value, default=lambda o: o.item() if hasattr(o, "item") else str(o)))


# --------------------------------------------------------------------------- front end
def frontend_arrays(pipeline: FeaturePipeline) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """``(arrays, section)``: ``frontend.npz``'s arrays and the manifest's ``frontend`` section."""
    pca, d = pipeline.pca_, pipeline.dictionary
    arrays: dict[str, np.ndarray] = {
        "pca_mean": pca.mean_.astype(np.float32),
        "pca_components": pca.components_.astype(np.float32),
        "pca_explained_variance": pca.explained_variance_.astype(np.float32),
        "pca_explained_variance_ratio": pca.explained_variance_ratio_.astype(np.float32),
        "pca_scale": (np.sqrt(pca.explained_variance_) if pca.whiten else np.ones_like(pca.explained_variance_)).astype(np.float32),
        "feature_mean": pipeline.mean_.numpy().astype(np.float32),
        "feature_std": pipeline.std_.numpy().astype(np.float32),
    }
    state: dict[str, Any] = {}
    for key, value in d.state_dict().items():
        if isinstance(value, (np.ndarray, torch.Tensor)):
            name = f"{d.name}_{key.strip('_')}"
            arr = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
            arrays[name] = arr
            state[key] = {"__tensor__": name, "dtype": str(arr.dtype)} if isinstance(value, torch.Tensor) else {"__ndarray__": name}
        else:
            state[key] = _json(value)
    if d.name == "monomial":
        arrays["monomial_exponents"] = onnx_graph.monomial_exponents(d, pipeline.rank)
    meaning = {
        "pca_mean": "[D] float32: training mean of the pixels",
        "pca_components": "[r, D] float32: orthonormal principal directions, largest variance first",
        "pca_explained_variance": "[r] float32: variance of each PCA score on the training set",
        "pca_explained_variance_ratio": "[r] float32: share of the total variance per component",
        "pca_scale": "[r] float32: divisor of each score (sqrt of its variance when whitened, else 1)",
        "feature_mean": "[F] float32: training mean of each lifted column (column 0: 0)",
        "feature_std": "[F] float32: training standard deviation of each lifted column (column 0, constant columns: 1)",
        "monomial_exponents": "[F, r] int32: exponent of each PCA score in each lifted column",
        "rbf_centers": "[n, r] float32: Gaussian centres c_j (k-means on the training scores)",
        "rff_weights": "[n, r] float32: random Fourier frequencies w_j, N(0, 1 / sigma^2) from the seed",
        "rff_phases": "[n] float32: random Fourier phases u_j, uniform in [0, 2 pi) from the seed",
    }
    section = {
        "file": FRONTEND,
        "rank": pipeline.rank,
        "whiten": bool(pca.whiten),
        "n_features": pipeline.n_features,
        "seed": pipeline.seed,
        "dictionary": d.name,
        "dictionary_params": _json(d.params()),
        "dictionary_state": state,
        "arrays": {k: {"shape": list(v.shape), "dtype": str(v.dtype), "meaning": meaning.get(k, "dictionary state")}
                   for k, v in arrays.items()},
        "formula": "z = (x - pca_mean) @ pca_components.T / pca_scale; psi = lift(z) (column 0 = 1); "
                   "features = (psi - feature_mean) / feature_std",
        "lift": _lift_text(d),
        # the host's number format (issue 26): the PCA and the lift as the host computes them
        "host": {
            "datapath": pipeline.host_datapath,
            "scales": dict(pipeline.host_scales_),
            "arithmetic": "fp32: the formula in float32. int8: x, the whitened weights (per row, their abs-max) "
                          "and z and features (per tensor, scales['z'], scales['psi']) are symmetric int8 codes "
                          "q = clip(round_half_even(v / (scale / 127)), -128, 127), values q * scale / 127; "
                          "z = x_q @ W_q.T - W_q @ pca_mean accumulated exactly (scales['x'] for x). fp16: the "
                          "same values rounded to half precision. The ONNX graph computes exactly this.",
        },
    }
    return arrays, section


def _lift_text(d) -> str:
    if d.name == "monomial":
        return ("monomial: psi = [1, z, every product of degree 2..d in graded order]; column c is "
                "prod_i z_i ** monomial_exponents[c, i]")
    if d.name == "rbf":
        return ("rbf: psi = [1, z, exp(-|z - rbf_centers[j]|^2 / (2 sigma^2)) for each centre j], "
                "sigma = dictionary_state.sigma_")
    if hasattr(d, "lift_class"):  # a device-native lift (codesign.device_lifts)
        return (f"{d.name}: psi = [1, z, phi(z)], phi = {d.lift_class.description}; W = dictionary_state "
                "lift_weights_ ([m, r]), u = lift_offsets_ where used. model.onnx computes phi exactly (noise off); "
                "on the device, phi carries the device's noise and quantisation (codesign.devices.lifts)")
    if d.name == "rff":
        return ("rff: psi = [1, z, cos(z @ rff_weights.T + rff_phases)]; sigma = dictionary_state.sigma_ "
                "(bandwidth x the median distance between training scores) is the width the weights were drawn for")
    return f"{d.name}: see its dictionary plugin"


def pipeline_from(folder: Path, section: Mapping[str, Any]) -> FeaturePipeline:
    """Rebuild the feature pipeline from ``frontend.npz`` and the manifest's ``frontend`` section."""
    from ..devices.base import read_export_arrays

    names = ("pca_mean", "pca_components", "pca_explained_variance", "pca_explained_variance_ratio",
             "feature_mean", "feature_std")
    arrays = read_export_arrays(folder / FRONTEND, names)
    try:
        def walk(v: Any) -> Any:
            if isinstance(v, dict) and "__ndarray__" in v:
                return arrays[v["__ndarray__"]]
            if isinstance(v, dict) and "__tensor__" in v:
                return torch.from_numpy(np.array(arrays[v["__tensor__"]]))
            return v

        state = {
            "rank": int(section["rank"]),
            "dictionary": section["dictionary"],
            "dictionary_params": dict(section["dictionary_params"]),
            "dictionary_state": {k: walk(v) for k, v in dict(section["dictionary_state"]).items()},
            "pca": {"rank": int(section["rank"]), "whiten": bool(section["whiten"]), "mean_": arrays["pca_mean"],
                    "components_": arrays["pca_components"], "explained_variance_": arrays["pca_explained_variance"],
                    "explained_variance_ratio_": arrays["pca_explained_variance_ratio"]},
            "mean_": arrays["feature_mean"], "std_": arrays["feature_std"], "seed": int(section.get("seed", 0)),
            # bundles written before issue 26 have no host section: their front end is fp32
            "host_datapath": str((section.get("host") or {}).get("datapath", "fp32")),
            "host_scales": dict((section.get("host") or {}).get("scales") or {}),
        }
        pipe = FeaturePipeline.from_state_dict(state)
    except CodesignError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"{folder / FRONTEND}: does not match the manifest's frontend section "
                          f"({type(exc).__name__}: {exc}); {FIX}") from None
    n = pipe.n_features
    if arrays["feature_mean"].shape != (n,) or arrays["pca_components"].shape[0] != pipe.rank:
        raise ConfigError(f"{folder / FRONTEND}: array shapes do not fit rank {pipe.rank} and {n} features; {FIX}")
    return pipe


# --------------------------------------------------------------------------- writing
def _device_of(st: SavedStudent) -> Device | None:
    return None if st.device_name is None else st.device()


def _nominal_matrix(st: SavedStudent, layer: DeviceLayer | None) -> np.ndarray:
    if layer is None:
        return st.K.detach().numpy().astype(np.float32)
    layer.eval()
    with torch.no_grad():
        return layer.effective_matrix().detach().cpu().numpy().astype(np.float32)


def _export_device_layer(device: Device, layer: DeviceLayer, folder: Path) -> dict[str, Any]:
    folder.mkdir()
    try:
        section = device.export_layer(layer, folder)
    except CodesignError:
        raise
    except OSError as exc:
        if exc.errno in DISK_FULL:  # a full disk is the disk's, not the plugin's: said as such
            raise
        raise ConfigError(f"device {device.name!r} failed to export its layer: {type(exc).__name__}: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - a plugin's own error, reported with its name
        raise ConfigError(f"device {device.name!r} failed to export its layer: {type(exc).__name__}: {exc}") from exc
    if not isinstance(section, dict) or section.get("format") != device.export_format or not isinstance(section.get("files"), list):
        raise ConfigError(f"device {device.name!r}: export_layer must return {{'format': {device.export_format!r}, "
                          "'files': [...]}}")
    for name in section["files"]:
        if not (folder / name).is_file():
            raise ConfigError(f"device {device.name!r}: export_layer lists {name!r} but wrote no such file")
    return _json(section)


#: Files a search folder always holds (:mod:`codesign.search.outputs`): a folder with one of them
#: is a search's, and export neither writes into nor replaces it.
SEARCH_MARKERS = ("search.json", "trials.jsonl")
#: What ``codesign distill --out DIR`` writes beside ``student.pt``.
DISTILL_OUTPUTS = ("metrics.json", "config.toml")


def _is_search_folder(folder: Path) -> bool:
    return any((folder / name).is_file() for name in SEARCH_MARKERS)


def _inside(a: Path, b: Path) -> bool:
    """Whether ``a`` is ``b`` or lies inside it (both resolved)."""
    return a == b or b in a.parents


def _protected_folders(src: Path) -> list[tuple[Path, str, bool]]:
    """``(folder, what, nothing inside)`` that an export of the student ``src`` must not be or contain
    (and, where ``nothing inside``, not lie inside).

    The student's own folder (a bundle may lie inside it only when it is a plain folder, not one
    ``codesign distill --out`` wrote: ``codesign export student.pt --out bundle`` keeps the
    bundle beside its student, where ``--verify`` looks for it), and every search folder above
    the student file (a search's ``students/trials/ID.pt``, ``students/knee.pt``).
    """
    src = src.resolve()
    # a folder `codesign distill --out` wrote: nothing may be written inside it either
    written = any((src.parent / name).is_file() for name in DISTILL_OUTPUTS)
    out = [(src.parent, f"the folder of the student it exports ({src.name})", written)]
    for parent in src.parents:
        if _is_search_folder(parent):
            out.append((parent, "a search folder", True))
    return out


def _bundle_files(out: Path) -> tuple[set[str], str]:
    """``(relative paths, why not)``: what a previous bundle in ``out`` wrote ('' if it is one)."""
    mpath = out / MANIFEST
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return set(), f"no {MANIFEST}"
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return set(), f"{MANIFEST} is not a codesign export manifest"
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(manifest, dict) or not str(manifest.get("schema", "")).startswith("codesign-export/") \
            or not isinstance(files, dict):
        return set(), f"{MANIFEST} is not a codesign export manifest"
    return {str(k) for k in files} | {MANIFEST, DIGEST_FILE}, ""


def _check_out(out: Path, force: bool, src: Path | None = None) -> None:
    """Refuse an ``--out`` export would lose the user's files in (checked before any work).

    ``out`` must not be, contain or lie inside the student's folder or a search folder; a
    non-empty ``out`` needs ``force``, and ``force`` replaces only a previous bundle: a folder
    holding exactly the files its ``export.json`` lists (and that manifest).
    """
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: exists and is not a folder; give a new folder name")
    res = out.resolve()
    if src is not None:
        for folder, what, no_inside in _protected_folders(src):
            if (no_inside and _inside(res, folder)) or _inside(folder, res):
                rel = "is" if res == folder else ("lies inside" if _inside(res, folder) else "contains")
                raise ConfigError(f"--out {out}: {rel} {what} {folder}; export writes a new folder of its own: "
                                  "give --out a folder outside it")
    if not (out.is_dir() and any(out.iterdir())):
        return
    if not force:
        raise ConfigError(f"--out {out}: folder is not empty; give a new folder, or --force to replace a previous "
                          "export in it")
    listed, why = _bundle_files(out)
    if why:
        raise ConfigError(f"--out {out}: --force replaces only a previous export, and this folder holds none "
                          f"({why}); give a new folder name")
    present = {p.relative_to(out).as_posix() for p in out.rglob("*") if not p.is_dir() or not any(p.iterdir())}
    dirs = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_dir()}
    parents = {Path(f).parent.as_posix() for f in listed} | {p for f in listed for p in
                                                            (q.as_posix() for q in Path(f).parents)}
    other = sorted(p for p in present if p not in listed and not (p in dirs and p in parents))
    searches = sorted({Path(p).parent.as_posix() for p in other if Path(p).name in SEARCH_MARKERS})
    if searches:
        raise ConfigError(f"--out {out}: contains a search folder ({out / searches[0]}); --force replaces only a "
                          "previous export: give a new folder name")
    if other:
        shown = ", ".join(other[:5]) + (f" and {len(other) - 5} more" if len(other) > 5 else "")
        raise ConfigError(f"--out {out}: --force replaces only a previous export, and this folder also holds "
                          f"{shown}, which no export wrote; move them away or give a new folder name")


def export_student(student: str | os.PathLike, out: str | os.PathLike, *, force: bool = False,
                   member: str | None = None, instance: int | None = None,
                   t_inference_s: float | None = None, hls4ml: str | None = None) -> Path:
    """Export the saved student at ``student`` into the folder ``out``; returns ``out``.

    Args:
        student: a ``student.pt`` written by ``codesign distill --out`` or a search.
        out: the bundle's folder; it must not exist or be empty, unless ``force``.
        force: replace a non-empty ``out``.
        member: recorded in the manifest (the search member the student was picked as).
        instance: export hardware instance (chip) ``instance`` of the device layer: it is
            drawn (``draw_instance(instance, t)``) before the device writes its files, so a
            format that carries chip-specific state (a fault map) writes that chip's; the
            manifest's ``device.instance`` records the seed. None: no chip, nominal files only.
        t_inference_s: with ``instance``: the time since programming the chip is read at, s
            (default: the time of the student's test-set hardware score).
        hls4ml: also write the FPGA layer as an hls4ml project with this backend (``Vitis`` or
            ``Vivado``) into ``hls4ml/`` (:func:`codesign.export.hls.write_project`).

    Raises:
        ConfigError: an unreadable student, a folder that cannot be written, a dictionary
            without an ONNX form, a device whose export fails, or ``instance`` on a student
            without a device.
    """
    src = Path(student)
    st = load_student(src)
    onnx_graph.check_exportable(st.pipeline)
    require_device(st.device_name, command="export")  # the contract, at first use (cached)
    if instance is not None:
        if isinstance(instance, bool) or not isinstance(instance, numbers.Integral) or instance < 0:
            raise ConfigError(f"--instance {instance!r}: expected a chip seed, an integer >= 0")
        if st.device_name is None:
            raise ConfigError(f"--instance {instance}: the student {src.name} ran on no device, so there is no chip "
                              "to export; leave --instance out")
    elif t_inference_s is not None:
        raise ConfigError("--eval-time applies to the chip of --instance SEED; give --instance too")
    out = Path(out).expanduser()
    _check_out(out, force, src)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.export-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        try:
            _write_bundle(st, src, tmp, member, instance, t_inference_s, hls4ml)
        except OSError as exc:
            if exc.errno not in DISK_FULL:
                raise
            written = sum(p.stat().st_size for p in tmp.rglob("*") if p.is_file())
            raise disk_full(out.parent, None, f"the export {out.name}: {written} bytes were written before the disk "
                                              "filled, it needs more than that") from None
        if out.exists():
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            os.rename(out, old)
            os.rename(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _draw_chip(st: SavedStudent, layer: DeviceLayer, pca_layer: DeviceLayer | None, seed: int,
               t_inference_s: float | None) -> dict[str, Any]:
    """Draw chip ``seed`` on ``layer`` (and ``pca_layer``, as the hardware scores do); its manifest section."""
    if t_inference_s is None:
        t_inference_s = _draw_settings(st.metrics)[2]
    nominal_t = layer.t_inference_s
    layer.draw_instance(int(seed), t_inference_s)
    if pca_layer is not None:
        pca_layer.draw_instance(int(seed) + PCA_SEED_OFFSET, layer.t_inference_s)
    return {
        "seed": int(seed), "t_inference_s": layer.t_inference_s,
        "pca_seed": None if pca_layer is None else int(seed) + PCA_SEED_OFFSET,
        "nominal_t_inference_s": nominal_t,
        "meaning": "the device files were written with hardware instance (chip) `seed` of the layer drawn "
                   "(draw_instance(seed, t_inference_s); the PCA layer's, where on the device, is pca_seed), "
                   "so they record the chip's read time: state that belongs to that chip (e.g. a fault map) is "
                   "in them where the device's format carries it, else the chip is re-drawn from the seed; "
                   "codesign.load_export restores it as ExportedModel.chip. model.onnx, matrix.npz and "
                   "ExportedModel.layer stay nominal (noise-free), read at nominal_t_inference_s",
    }


def _write_bundle(st: SavedStudent, src: Path, folder: Path, member: str | None, instance: int | None = None,
                  t_inference_s: float | None = None, hls4ml: str | None = None) -> None:
    m = st.metrics
    device = _device_of(st)
    layer = st.device_layer() if device is not None else None
    matrix = _nominal_matrix(st, layer)  # before any chip is drawn: noise-free
    pca_layer = pca_device_layer(device, st.pipeline) if device is not None and m.get("pca_placement") == "device" else None
    if pca_layer is not None:
        pca_layer.set_inference_time(layer.t_inference_s)
    chip = None if instance is None else _draw_chip(st, layer, pca_layer, instance, t_inference_s)
    arrays, front = frontend_arrays(st.pipeline)
    np.savez(folder / FRONTEND, **arrays)
    np.savez(folder / MATRIX, matrix=matrix)
    import onnx

    onnx.save(onnx_graph.float_model(st.pipeline, matrix), str(folder / ONNX))
    qonnx_section = None
    if layer is not None and hasattr(layer, "fixed_point"):
        fp = layer.fixed_point()
        onnx.save(onnx_graph.qonnx_model(st.pipeline, fp), str(folder / QONNX))
        qonnx_section = {
            "file": QONNX, "opset": onnx_graph.OPSET, "domain": onnx_graph.QONNX_DOMAIN,
            "input": {"name": onnx_graph.INPUT, "shape": ["N", int(st.pipeline.pca_.mean_.shape[0])], "dtype": "float32"},
            "output": {"name": onnx_graph.OUTPUT, "shape": ["N", int(matrix.shape[0])], "dtype": "float32",
                       "meaning": f"dequantized logits: integer output codes times 2^{fp['output_exponent']}"},
            "input_bits": fp["input_bits"], "weight_bits": fp["weight_bits"], "output_bits": fp["output_bits"],
            "input_exponent": fp["input_exponent"], "output_exponent": fp["output_exponent"],
            "run_with": "qonnx.core.onnx_exec.execute_onnx (set the batch dimension first), or "
                        "codesign.export.onnx_graph.run_qonnx",
        }
    device_section: dict[str, Any] | None = None
    if device is not None:
        fmt = type(device).export_format
        device_section = {
            "name": st.device_name, "config": _json(st.device_config), "preset": m.get("device_preset"),
            "preset_file": m.get("device_preset_file"), "protocol": m.get("protocol"), "export_format": fmt, "native": None, "native_pca": None,
            "instance": chip,
        }
        if fmt is None:
            device_section["note"] = (f"device {st.device_name!r} has no native export format; the bundle holds the "
                                      "ONNX graph of its nominal matrix and the front end"
                                      + ("" if chip is None else "; the chip seed is recorded, but no device files "
                                         "hold or restore it"))
        else:
            device_section["native"] = {"folder": DEVICE_DIR, **_export_device_layer(device, layer, folder / DEVICE_DIR)}
            if pca_layer is not None:
                device_section["native_pca"] = {
                    "folder": DEVICE_PCA_DIR, "seed_offset": PCA_SEED_OFFSET,
                    **_export_device_layer(device, pca_layer, folder / DEVICE_PCA_DIR)}
    hls_section = None
    if hls4ml is not None:
        hls_section = hls.student_project(layer, pca_layer, st.device_config, folder / hls.HLS_DIR, hls4ml)
    n_inputs = int(st.pipeline.pca_.mean_.shape[0])
    probe_x = probe_inputs(st.pipeline)
    probe = {"x": probe_x, "logits": _matrix_logits(st.pipeline, matrix, probe_x)}
    if layer is not None:
        nominal = st.device_layer()
        nominal_pca = None if pca_layer is None else pca_device_layer(device, st.pipeline)
        if nominal_pca is not None:
            nominal_pca.set_inference_time(nominal.t_inference_s)
        probe["draw_logits"] = _draw_logits(st.pipeline, nominal, nominal_pca, probe_x)
        probe["layer_logits"] = layer_logits(st.pipeline, nominal, nominal_pca, probe_x).numpy().astype(np.float32)
    np.savez(folder / PROBE, **probe)
    files: dict[str, dict[str, Any]] = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            files[p.relative_to(folder).as_posix()] = {"sha256": _sha256(p), "bytes": p.stat().st_size}
    manifest = {
        "schema": SCHEMA,
        "version": VERSION,
        "codesign_version": __version__,
        # the file's name only: a path would put the user's folders into a bundle they share
        "source": {"student": src.name, "sha256": _sha256(src), "member": member},
        "dataset": {
            "name": m.get("dataset"), "n_inputs": n_inputs, "n_classes": int(matrix.shape[0]),
            "classes": list(m.get("classes") or class_names(m.get("dataset"))) or None,
            "input": "float32 [N, D] pixels in [0, 1], flattened row by row, as codesign.load_dataset returns them",
        },
        "pca_rank": st.pipeline.rank,
        "dictionary": st.pipeline.dictionary.name,
        "dictionary_params": _json(st.pipeline.dictionary.params()),
        "n_features": st.pipeline.n_features,
        "pca_placement": m.get("pca_placement", "host"),
        "lift_placement": m.get("lift_placement", "host"),
        "device": device_section,
        "metrics": _json({k: m[k] for k in METRIC_KEYS if k in m}),
        "frontend": front,
        "matrix": {"file": MATRIX, "array": "matrix", "shape": list(matrix.shape), "dtype": "float32",
                   "meaning": "K" if layer is None else "the device layer's nominal (noise-free) effective matrix"},
        "onnx": {
            "file": ONNX, "opset": onnx_graph.OPSET, "ir_version": onnx_graph.IR_VERSION,
            "input": {"name": onnx_graph.INPUT, "shape": ["N", n_inputs], "dtype": "float32"},
            "output": {"name": onnx_graph.OUTPUT, "shape": ["N", int(matrix.shape[0])], "dtype": "float32"},
            "features": onnx_graph.FEATURES,
            "computes": "logits = features(pixels) @ matrix.T with the host PCA, float32, no device noise",
        },
        "qonnx": qonnx_section,
        "probe": {"file": PROBE, "rows": PROBE_ROWS, "seed": PROBE_SEED,
                  "meaning": "x: fixed inputs near the training data (PCA mean plus seeded Gaussian scores); logits: "
                             "the front end and matrix.npz on them (what model.onnx computes); layer_logits: the "
                             "nominal device layer's; draw_logits: its chip `seed` (draw_instance(seed), read at the "
                             "layer's time; the PCA layer's chip seed + seed_offset). load_export recomputes them from the files and refuses a "
                             "bundle whose settings or arrays give other logits"},
        **({"hls4ml": hls_section} if hls_section is not None else {}),
        "files": files,
    }
    text = json.dumps(manifest, indent=2) + "\n"
    (folder / MANIFEST).write_text(text, encoding="utf-8")
    (folder / DIGEST_FILE).write_text(f"{hashlib.sha256(text.encode()).hexdigest()}  {MANIFEST}\n", encoding="utf-8")


def manifest_digest(path: str | os.PathLike) -> str:
    """The bundle's digest: SHA-256 of its ``export.json``, which lists every other file's SHA-256.

    ``codesign export`` prints it; keep it apart from the bundle and give it back
    (``load_export(path, digest=...)``, ``codesign export DIR --verify --digest HEX``) to detect
    a bundle rewritten consistently (files, checksums, probe and digest file all redone).
    """
    return _sha256(Path(path).expanduser() / MANIFEST)


def probe_inputs(pipeline: FeaturePipeline) -> np.ndarray:
    """``[PROBE_ROWS, D]`` fixed inputs near the training data: the PCA mean plus seeded Gaussian
    scores of each component's variance, clipped to the pixel range [0, 1]."""
    pca = pipeline.pca_
    rng = np.random.default_rng(PROBE_SEED)
    scores = rng.standard_normal((PROBE_ROWS, len(pca.explained_variance_))) * np.sqrt(pca.explained_variance_)
    return np.clip(pca.mean_ + scores @ pca.components_, 0.0, 1.0).astype(np.float32)


def _draw_logits(pipeline: FeaturePipeline, layer: DeviceLayer, pca_layer: DeviceLayer | None,
                 x: np.ndarray) -> np.ndarray:
    """Logits of chip ``PROBE_SEED`` of ``layer`` (its PCA layer's chip as the hardware scores draw it),
    read at the layer's time: every config field that changes a noisy prediction changes them.

    Draws on copies: a forward pass can leave state in a layer (the analog crossbar's PCA layer
    does) that later draws see."""
    import copy

    layer, pca_layer = copy.deepcopy(layer), copy.deepcopy(pca_layer)
    layer.draw_instance(PROBE_SEED, layer.t_inference_s)
    if pca_layer is not None:
        pca_layer.draw_instance(PROBE_SEED + PCA_SEED_OFFSET, layer.t_inference_s)
    return layer_logits(pipeline, layer, pca_layer, x).numpy().astype(np.float32)


def _matrix_logits(pipeline: FeaturePipeline, matrix: np.ndarray, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return (pipeline.transform(x) @ torch.from_numpy(np.asarray(matrix, np.float32)).T).numpy().astype(np.float32)


# --------------------------------------------------------------------------- reading
def _plain_relative(name: Any) -> bool:
    """Whether ``name`` is a relative path inside the bundle (no ``..``, not absolute, no drive)."""
    if not isinstance(name, str) or not name or "\\" in name or ":" in name:
        return False
    p = Path(name)
    return not p.is_absolute() and ".." not in p.parts and p.parts[:1] != ("~",)


def _named_paths(manifest: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """``(field, path)`` of every file the manifest names outside its ``files`` list."""
    out: list[tuple[str, Any]] = []
    for key in ("frontend", "matrix", "onnx", "qonnx", "probe"):
        section = manifest.get(key)
        if section is None and key == "qonnx":
            continue
        if not isinstance(section, dict):
            out.append((key, section))
            continue
        out.append((f"{key}.file", section.get("file")))
    dev = manifest.get("device")
    if isinstance(dev, dict):
        for key, fixed in (("native", DEVICE_DIR), ("native_pca", DEVICE_PCA_DIR)):
            native = dev.get(key)
            if native is None:
                continue
            folder = native.get("folder") if isinstance(native, dict) else None
            if folder != fixed:
                out.append((f"device.{key}.folder", f"{folder}/ (expected {fixed}/)"))
                continue
            names = native.get("files")
            if not isinstance(names, list) or not names:
                out.append((f"device.{key}.files", names))
                continue
            out += [(f"device.{key}.files", f"{fixed}/{n}" if isinstance(n, str) and _plain_relative(n) else n)
                    for n in names]
    return out


def _check_digest(folder: Path, expected: str | None) -> None:
    """``export.json`` against ``export.sha256`` (and against ``expected``, a digest kept apart)."""
    dpath = folder / DIGEST_FILE
    try:
        recorded = dpath.read_text(encoding="utf-8").split()[0]
    except FileNotFoundError:
        raise ConfigError(f"{dpath}: missing file of the export (the manifest's digest); {FIX}") from None
    except (OSError, UnicodeDecodeError, IndexError):
        raise ConfigError(f"{dpath}: damaged, no digest in it; {FIX}") from None
    actual = _sha256(folder / MANIFEST)
    if actual != recorded:
        raise ConfigError(f"{folder / MANIFEST}: changed after export (its SHA-256 differs from {DIGEST_FILE}); {FIX}")
    if expected is not None:
        want = str(expected).strip().lower().removeprefix("sha256:")
        if want != actual:
            raise ConfigError(f"{folder / MANIFEST}: digest {actual[:16]}... is not the digest {want[:16]}... given: "
                              f"the bundle was rewritten after that export; {FIX}")


def read_manifest(path: str | os.PathLike, digest: str | None = None) -> tuple[Path, dict[str, Any]]:
    """``(folder, manifest)`` of the bundle at ``path``, every listed file checked by SHA-256.

    The manifest itself is checked against ``export.sha256`` (and against ``digest``, a
    :func:`manifest_digest` kept apart from the bundle, when given); every path it names
    (``onnx.file``, the device folders' files...) must be in its ``files`` list, relative and
    inside the bundle.

    Raises:
        ConfigError: one line naming the file (and the field): no bundle, unreadable or
            wrong-version ``export.json``, a manifest changed after export, a path outside the
            bundle or its list, a missing file, or a file whose checksum differs (damaged).
    """
    folder = Path(path).expanduser()
    if folder.is_file() and folder.name == MANIFEST:
        folder = folder.parent
    mpath = folder / MANIFEST
    if not mpath.is_file():
        raise ConfigError(f"{mpath}: missing; {folder} is not a codesign export (write one with `codesign export`)")
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{mpath}: damaged, not JSON ({type(exc).__name__} at {getattr(exc, 'pos', '?')}); {FIX}") from None
    if not isinstance(manifest, dict) or not str(manifest.get("schema", "")).startswith("codesign-export/"):
        raise ConfigError(f"{mpath}: not a codesign export manifest (schema {manifest.get('schema') if isinstance(manifest, dict) else None!r})")
    if manifest.get("schema") != SCHEMA or manifest.get("version") != VERSION:
        raise ConfigError(f"{mpath}: schema {manifest.get('schema')!r} version {manifest.get('version')!r}, but this "
                          f"codesign ({__version__}) reads {SCHEMA} version {VERSION}; {FIX} or use the codesign "
                          "version that wrote it")
    _check_digest(folder, digest)
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise ConfigError(f"{mpath}: lists no files; {FIX}")
    for name, info in files.items():
        p = folder / name
        if not _plain_relative(name):
            raise ConfigError(f"{mpath}: field files, name {name!r} points outside the bundle; {FIX}")
    for fld, name in _named_paths(manifest):
        if not isinstance(name, str) or not _plain_relative(name) or name not in files:
            raise ConfigError(f"{mpath}: field {fld} is {name!r}, not a file of the bundle's `files` list "
                              f"(relative, inside the bundle); {FIX}")
    for name, info in files.items():
        p = folder / name
        if not p.is_file():
            raise ConfigError(f"{p}: missing file of the export; {FIX}")
        if not isinstance(info, dict) or _sha256(p) != info.get("sha256"):
            raise ConfigError(f"{p}: damaged (its SHA-256 differs from the one in {MANIFEST}); {FIX}")
    return folder, manifest


@dataclass
class ExportedModel:
    """A student re-imported from its export bundle's files (:func:`load_export`).

    Attributes:
        path: the bundle's folder.
        manifest: ``export.json``.
        pipeline: the feature pipeline rebuilt from ``frontend.npz``.
        matrix: ``[C, F]`` nominal matrix from ``matrix.npz`` (the ONNX graph's).
        device: the device (from the manifest's name and config), or None.
        layer: the device layer rebuilt by ``load_layer_export`` (no K), or None (no device,
            or a device without a native format).
        pca_layer: the PCA projection's device layer, where it ran on the device.
        onnx_path: ``model.onnx``.
        qonnx_path: ``model.qonnx.onnx`` (FPGA students) or None.
        chip: the exported hardware instance (``codesign export --instance SEED``): a second
            rebuilt layer with chip ``SEED`` drawn, its chip-specific state (a fault map) read
            from the device files where the format carries it; None without an instance.
            ``layer`` stays nominal: drawing other seeds on it never uses the files' chip.
        pca_chip: the PCA layer of that chip, where the PCA projection ran on the device.
        chip_from_files: True if the device's loader restored the chip from its files, False
            if it was re-drawn from the seed (a format without chip-specific state).

    ``layer`` and ``pca_layer`` are nominal (no instance drawn); :meth:`hw_accuracy` draws
    seeded instances on them, :meth:`chip_logits` reads the exported chip.
    """

    path: Path
    manifest: dict
    pipeline: FeaturePipeline
    matrix: torch.Tensor
    device: Device | None
    layer: DeviceLayer | None
    pca_layer: DeviceLayer | None
    onnx_path: Path
    qonnx_path: Path | None
    chip: DeviceLayer | None = None
    pca_chip: DeviceLayer | None = None
    chip_from_files: bool = False

    @property
    def instance_seed(self) -> int | None:
        """Seed of the exported chip (``device.instance.seed`` of the manifest), or None."""
        inst = (self.manifest.get("device") or {}).get("instance")
        return None if inst is None else int(inst["seed"])

    def features(self, x: np.ndarray) -> torch.Tensor:
        """Standardised lifted features of pixels ``x`` (host PCA)."""
        return self.pipeline.transform(np.asarray(x, dtype=np.float32))

    def logits(self, x: np.ndarray) -> torch.Tensor:
        """Nominal logits of pixels ``x``: front end, then the device layer (noise-free) or the matrix."""
        if self.layer is None:
            with torch.no_grad():
                return self.features(x) @ self.matrix.T
        return layer_logits(self.pipeline, self.layer, self.pca_layer, x)

    def chip_logits(self, x: np.ndarray) -> torch.Tensor:
        """Logits of pixels ``x`` on the exported chip (:attr:`chip`): front end, then the chip's layer(s)."""
        if self.chip is None:
            raise ConfigError(f"{self.path}: holds no hardware instance; export one with `codesign export STUDENT "
                              "--out DIR --instance SEED`" + ("" if self.instance_seed is None else
                                                              " (this device has no native format to restore it)"))
        return layer_logits(self.pipeline, self.chip, self.pca_chip, x)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Predicted classes of pixels ``x`` (argmax of :meth:`logits`)."""
        return self.logits(x).argmax(1).numpy()

    def hw_accuracy(self, x: np.ndarray, y: np.ndarray, draws: int, seed: int,
                    t_inference_s: float | None = None) -> list[float]:
        """Accuracy over ``draws`` seeded hardware instances of the rebuilt layer(s), as
        :meth:`codesign.SavedStudent.hw_accuracy` measures it."""
        if self.layer is None:
            raise ConfigError(f"{self.path}: holds no device layer to draw instances of "
                              "(no device, or a device without a native export format)")
        labels = torch.as_tensor(np.asarray(y))
        if hasattr(self.pipeline.dictionary, "device_lift") and self.device is not None:
            # the device lift, rebuilt from frontend.npz's lift parameters, simulated with its noise
            lift_layer = self.pipeline.dictionary.device_lift(self.device).layer()
            return hardware_accuracy_with_lift(self.layer, lift_layer, self.pipeline, np.asarray(x, np.float32), labels,
                                               draws, seed, t_inference_s, pca_layer=self.pca_layer)
        if self.pca_layer is not None:
            return hardware_accuracy_with_pca(self.layer, self.pca_layer, self.pipeline, np.asarray(x, np.float32),
                                              labels, draws, seed, t_inference_s)
        return hardware_accuracy(self.layer, self.features(x), labels, draws, seed, t_inference_s)

    def onnx_logits(self, x: np.ndarray) -> np.ndarray:
        """``model.onnx`` run in onnxruntime on pixels ``x``."""
        return onnx_graph.run_float(self.onnx_path, x)[0]

    def run_qonnx(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """``model.qonnx.onnx`` run with QONNX's executor: every tensor (``logits``, ``features``...)."""
        if self.qonnx_path is None:
            raise ConfigError(f"{self.path}: has no QONNX graph (only FPGA students get one)")
        return onnx_graph.run_qonnx(self.qonnx_path, x)


def layer_logits(pipeline: FeaturePipeline, layer: DeviceLayer, pca_layer: DeviceLayer | None,
                 x: np.ndarray) -> torch.Tensor:
    """Logits of pixels ``x`` through the front end and ``layer`` in its current mode (eval).

    With ``pca_layer`` the projection runs on it and the host adds the mean offset and lifts,
    as :func:`codesign.distill.hardware_accuracy_with_pca` does; else the host PCA.
    """
    with torch.no_grad():
        layer.eval()
        if pca_layer is not None:
            pca_layer.eval()
            _, offset = pipeline.projection()
            return layer(pipeline.lift(pca_layer(torch.as_tensor(np.asarray(x, np.float32))) + offset))
        return layer(pipeline.transform(np.asarray(x, dtype=np.float32)))


def _restore_chip(chip: DeviceLayer, instance: Mapping[str, Any], key: str, folder: Path) -> bool:
    """Make ``chip`` (a freshly loaded layer) hold the manifest's instance; True if its files restored it."""
    seed, t = instance[key], float(instance["t_inference_s"])
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"{folder / MANIFEST}: device.instance.{key} is {seed!r}, not an integer; {FIX}")
    if chip.instance_seed is None:  # the format stores no chip state: the chip is its seed's draw
        chip.draw_instance(seed, t)
        return False
    if chip.instance_seed != seed:
        raise ConfigError(f"{folder}: the device files hold chip {chip.instance_seed}, the manifest names chip "
                          f"{seed}; {FIX}")
    chip.set_inference_time(t)
    return True


def _load_native(device: Device, folder: Path, section: Any) -> DeviceLayer:
    try:
        layer = device.load_layer_export(folder, section)
    except CodesignError:
        raise
    except Exception as exc:  # noqa: BLE001 - a plugin's own error, one line with its name
        raise ConfigError(f"{folder}: device {device.name!r} could not rebuild its layer "
                          f"({type(exc).__name__}: {exc}); {FIX}") from None
    return layer.eval()


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        try:
            return float(a) == float(b)
        except (TypeError, ValueError):
            return False
    return a == b


def _check_single_truth(folder: Path, manifest: Mapping[str, Any], pipeline: FeaturePipeline,
                        matrix: np.ndarray) -> None:
    """Settings the manifest repeats agree with the arrays and sections that use them."""
    mpath = folder / MANIFEST
    front = manifest["frontend"]
    pairs = [("pca_rank", manifest.get("pca_rank"), front.get("rank")),
             ("dictionary", manifest.get("dictionary"), front.get("dictionary")),
             ("dictionary_params", manifest.get("dictionary_params"), front.get("dictionary_params")),
             ("n_features", manifest.get("n_features"), pipeline.n_features),
             ("matrix.shape", manifest["matrix"].get("shape"), list(matrix.shape))]
    for name, a, b in pairs:
        if not _same(a, b):
            raise ConfigError(f"{mpath}: field {name} is {a!r}, but the front end and arrays say {b!r}; {FIX}")
    from ..devices.base import read_export_arrays

    scale = read_export_arrays(folder / FRONTEND, ("pca_scale",))["pca_scale"]
    var = pipeline.pca_.explained_variance_
    whitened = np.allclose(scale, np.sqrt(var), rtol=1e-5) and not np.allclose(scale, 1.0)
    if bool(front.get("whiten")) != bool(whitened) and not np.allclose(np.sqrt(var), 1.0):
        raise ConfigError(f"{mpath}: field frontend.whiten is {front.get('whiten')!r}, but {FRONTEND}'s pca_scale "
                          f"says {bool(whitened)}; {FIX}")


def _check_layer_config(folder: Path, device: Device, layer: DeviceLayer | None, what: str) -> None:
    """The device files' config (the layer's) equals the manifest's ``device.config``."""
    got = getattr(layer, "config", None)
    if layer is None or got is None or not dataclasses.is_dataclass(got):
        return
    want, have = dataclasses.asdict(device.config), dataclasses.asdict(got)
    for key in sorted(set(want) | set(have)):
        if not _same(_json(want.get(key)), _json(have.get(key))):
            raise ConfigError(f"{folder / MANIFEST}: field device.config.{key} is {want.get(key)!r}, but the device "
                              f"files ({what}/) hold {have.get(key)!r}; {FIX}")


def check_probe(exp: "ExportedModel") -> None:
    """Recompute the logits on ``probe.npz``'s fixed inputs from the rebuilt bundle and compare.

    Catches a setting or array changed after export with the checksums redone (a flipped
    whitening flag, a scaled RBF width, a matrix and its SHA-256 both replaced): the logits
    recorded when the bundle was written no longer come out. Not caught: a bundle rewritten
    wholly consistently, probe included (check the digest kept apart, or ``--verify``).
    """
    from ..devices.base import read_export_arrays

    ppath = exp.path / PROBE
    names = ("x", "logits") + (("layer_logits", "draw_logits") if exp.layer is not None else ())
    arrays = read_export_arrays(ppath, names)
    x = np.asarray(arrays["x"], np.float32)
    checks = [("logits", "front end and matrix.npz", lambda: _matrix_logits(exp.pipeline, exp.matrix.numpy(), x),
               PROBE_RTOL),
              ("logits", "model.onnx", lambda: exp.onnx_logits(x), PROBE_RTOL)]
    if exp.layer is not None:
        import copy

        # on copies: a forward pass may leave state in a layer (a cached read) that the seeded draws see
        layer, pca = copy.deepcopy(exp.layer), copy.deepcopy(exp.pca_layer)
        checks.append(("layer_logits", "nominal device layer",
                       lambda: layer_logits(exp.pipeline, layer, pca, x).numpy(), PROBE_LAYER_RTOL))
        if "draw_logits" in arrays:
            checks.append(("draw_logits", f"device layer's chip {PROBE_SEED} (device.config)",
                           lambda: _draw_logits(exp.pipeline, exp.layer, exp.pca_layer, x),
                           PROBE_LAYER_RTOL))
    for key, what, compute, rtol in checks:
        ref = np.asarray(arrays[key], np.float64)
        try:
            got = np.asarray(compute(), np.float64)
        except CodesignError:
            raise
        except Exception as exc:  # noqa: BLE001 - a damaged graph or layer: one line
            raise ConfigError(f"{ppath}: the {what} could not run on the probe ({type(exc).__name__}: {exc}); {FIX}") from None
        diff = float(np.abs(got - ref).max()) if got.shape == ref.shape else float("inf")
        if not diff <= rtol * max(1.0, float(np.abs(ref).max())):
            raise ConfigError(f"{ppath}: field {key}: the {what} give logits {diff:.3g} away from those recorded at "
                              f"export, on the probe's {len(x)} fixed inputs: a setting or file was changed after "
                              f"export; {FIX}")


def load_export(path: str | os.PathLike, digest: str | None = None) -> ExportedModel:
    """Re-import an export bundle from its files alone (no student file, no K for device layers).

    Args:
        path: the bundle's folder (or its ``export.json``).
        digest: the bundle's :func:`manifest_digest` as printed by ``codesign export``, kept apart
            from it: the bundle must still be that export (catches a consistent rewrite).

    Raises:
        ConfigError: one line naming the file and field: missing, damaged (checksum), a
            manifest changed after export or naming a path outside its ``files``, wrong schema
            version, a setting that disagrees with the files, probe logits that no longer come
            out, or a device that cannot rebuild its layer.
    """
    folder, manifest = read_manifest(path, digest)
    try:
        pipeline = pipeline_from(folder, manifest["frontend"])
        from ..devices.base import read_export_arrays

        matrix = read_export_arrays(folder / MATRIX, ("matrix",))["matrix"]
        dev_section = manifest.get("device")
        device = layer = pca_layer = chip = pca_chip = None
        from_files = False
        if dev_section is not None:
            cls = get_device_class(dev_section["name"])
            device = cls(cls.Config.from_dict(dict(dev_section["config"] or {})))
            instance = dev_section.get("instance")
            if dev_section.get("native") is not None:
                native = dev_section["native"]
                layer = _load_native(device, folder / native["folder"], native)
                if instance is not None:  # the chip: a second copy, so that `layer` stays nominal
                    chip = _load_native(device, folder / native["folder"], native)
                    from_files = _restore_chip(chip, instance, "seed", folder)
                if dev_section.get("native_pca") is not None:
                    pn = dev_section["native_pca"]
                    pca_layer = _load_native(device, folder / pn["folder"], pn)
                    if instance is not None:
                        pca_chip = _load_native(device, folder / pn["folder"], pn)
                        _restore_chip(pca_chip, instance, "pca_seed", folder)
                for nominal in (layer, pca_layer):
                    if nominal is not None and nominal.instance_seed is not None:
                        nominal.clear_instance()
                    if nominal is not None and instance is not None:  # the files hold the chip's read time
                        nominal.set_inference_time(float(instance["nominal_t_inference_s"]))
        qonnx = manifest.get("qonnx")
        _check_single_truth(folder, manifest, pipeline, matrix)
        if device is not None:
            _check_layer_config(folder, device, layer, DEVICE_DIR)
            _check_layer_config(folder, device, pca_layer, DEVICE_PCA_DIR)
        exp = ExportedModel(folder, manifest, pipeline, torch.from_numpy(matrix), device, layer, pca_layer,
                            folder / manifest["onnx"]["file"], None if qonnx is None else folder / qonnx["file"],
                            chip, pca_chip, from_files)
        check_probe(exp)
        return exp
    except CodesignError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"{folder / MANIFEST}: damaged manifest ({type(exc).__name__}: {exc}); {FIX}") from None


# --------------------------------------------------------------------------- verifying
@dataclass
class Check:
    """One row of the verification table; ``passed`` None means not applicable."""

    name: str
    passed: bool | None
    value: str
    detail: str = ""


@dataclass
class VerifyReport:
    """What :func:`verify_export` measured; ``ok`` unless a check failed."""

    path: Path
    student: Path
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.passed is not False for c in self.checks)

    def table(self) -> str:
        """The checks as an aligned text table."""
        rows = [("check", "result", "value", "detail")] + [
            (c.name, {True: "pass", False: "FAIL", None: "n/a"}[c.passed], c.value, c.detail) for c in self.checks]
        widths = [max(len(r[i]) for r in rows) for i in range(3)]
        return "\n".join(f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}".rstrip() for r in rows)

    def as_dict(self) -> dict:
        return {"path": str(self.path), "student": str(self.student), "ok": self.ok,
                "checks": [dataclasses.asdict(c) for c in self.checks]}


def _student_matrix(st: SavedStudent) -> tuple[np.ndarray, DeviceLayer | None]:
    layer = st.device_layer() if st.device_name is not None else None
    return _nominal_matrix(st, layer), layer


def _draw_settings(m: Mapping[str, Any]) -> tuple[int, int, float | None, float | None, str]:
    """``(draws, seed, t, stored test mean or None, where)`` of the student's test-set hardware score."""
    scored = m.get("test_scored_with")
    if isinstance(scored, dict) and m.get("test_hw_accuracy") is not None:
        return (int(scored["hw_draws"]), int(scored["seed"]), scored.get("eval_time_s"), float(m["test_hw_accuracy"]),
                "test_hw_accuracy")
    stored = m.get("hw_accuracy_mean") if m.get("scored_on", "test") == "test" else None
    return int(m.get("hw_draws", 5)), int(m.get("seed", 0)), m.get("eval_time_s"), stored, "hw_accuracy_mean"


def _find_source(folder: Path, source: Mapping[str, Any]) -> Path:
    """The student file a bundle names (file name only): in the current folder or beside the bundle,
    with the recorded SHA-256."""
    name = Path(str(source.get("student"))).name
    for candidate in (Path(name), folder.parent / name):
        if candidate.is_file() and _sha256(candidate) == source.get("sha256"):
            return candidate
    raise ConfigError(f"{folder}: give the student it was exported from (`codesign export {folder} --verify "
                      f"--student FILE`): the manifest records only its name {name!r} and SHA-256, and no such "
                      "file is in the current folder or beside the bundle")


def _chip_check(st: SavedStudent, exp: ExportedModel, instance: Mapping[str, Any], x: np.ndarray,
                y: np.ndarray) -> Check:
    """``exported chip``: the bundle's chip against the student's layer with the same chip drawn."""
    seed, t = int(instance["seed"]), float(instance["t_inference_s"])
    if exp.chip is None:
        return Check("exported chip", None, "-", f"chip {seed} recorded; device {st.device_name!r} has no native "
                                                 "format to restore it from")
    original = st.device_layer()
    original.draw_instance(seed, t)
    pca = None
    if exp.pca_chip is not None:
        pca = pca_device_layer(st.device(), st.pipeline)
        pca.draw_instance(int(instance["pca_seed"]), t)
    ref, got = layer_logits(st.pipeline, original, pca, x), exp.chip_logits(x)
    if ref.shape != got.shape:
        return Check("exported chip", False, "shapes differ", f"student {list(ref.shape)}, exported {list(got.shape)}")
    labels = torch.as_tensor(np.asarray(y))
    acc = float((got.argmax(1) == labels).float().mean())
    acc_ref = float((ref.argmax(1) == labels).float().mean())
    source = "read from the device files" if exp.chip_from_files else "re-drawn from the seed (the format holds none)"
    return Check("exported chip", bool(torch.equal(ref, got)), f"max |diff| {float((got - ref).abs().max()):.3g}",
                 f"chip {seed} at t {t:g} s, its state {source}; {len(labels)} test rows, accuracy {acc:.6f} "
                 f"(student's layer with chip {seed}: {acc_ref:.6f})")


def verify_export(path: str | os.PathLike, student: str | os.PathLike | None = None, *,
                  data_root: str | os.PathLike | None = None, qonnx_rows: int | None = None,
                  digest: str | None = None) -> VerifyReport:
    """Re-import the bundle at ``path`` from its files alone and compare it with ``student``.

    Checks, on the student's data set's test split:

    * ``front end``: the rebuilt pipeline's features equal the student's (max abs diff);
    * ``nominal matrix``: the rebuilt layer's (or ``matrix.npz``'s) noise-free effective matrix
      equals the student's, and so does the ONNX graph's ``matrix.npz``;
    * ``hw accuracy``: the accuracies over the student's seeded draws (its seed, draw count and
      evaluation time) equal the original layer's, draw for draw, and their mean the stored
      test-set figure where the student has one;
    * ``onnx``: ``model.onnx`` in onnxruntime predicts the student's nominal classes on every
      test image, ties aside (top-2 logits of the student within :data:`TIE_RELATIVE`);
    * ``qonnx`` (FPGA): the QONNX executor's integer output codes equal ``integer_forward`` of
      the student's trained layer on the graph's own features, on every test row (or the first
      ``qonnx_rows``);
    * ``exported chip`` (bundles written with ``instance``): the rebuilt chip
      (:attr:`ExportedModel.chip`, e.g. with the fault map read from the files) gives exactly
      the logits of the student's layer with the same chip drawn, on every test row.

    Args:
        path: the bundle.
        student: the student file it was exported from (default: the file of the manifest's
            ``source`` name and SHA-256 in the current folder or beside the bundle).
        data_root: where MNIST-like data sets are read from (default ``$CODESIGN_DATA``).
        qonnx_rows: rows of the test set the QONNX executor runs on (None: all).
        digest: the bundle's digest printed at export (:func:`load_export`).
    """
    exp = load_export(path, digest)
    m_src = exp.manifest["source"]
    spath = Path(student).expanduser() if student is not None else _find_source(exp.path, m_src)
    st = load_student(spath)
    report = VerifyReport(exp.path, spath)
    add = report.checks.append
    same_file = spath.is_file() and _sha256(spath) == m_src.get("sha256")
    add(Check("student file", True if same_file else None, "same" if same_file else "other",
              "the file the bundle was exported from (SHA-256)" if same_file
              else f"not the file the bundle was exported from ({m_src.get('student')})"))
    ds = load_dataset(exp.manifest["dataset"]["name"], data_root)
    x, y = ds.x_test, ds.y_test
    n = len(y)

    f_st = st.features(x)
    f_exp = exp.features(x)
    if f_st.shape != f_exp.shape:
        add(Check("front end", False, "shapes differ", f"student features {list(f_st.shape)}, exported "
                  f"{list(f_exp.shape)}: not this student's export (nothing further compared)"))
        return report
    diff = float((f_st - f_exp).abs().max())
    add(Check("front end", diff <= 1e-6 * max(1.0, float(f_st.abs().max())), f"max |diff| {diff:.3g}",
              f"{n} test rows x {f_st.shape[1]} features"))

    m_st, layer_st = _student_matrix(st)
    m_exp = exp.matrix.numpy() if exp.layer is None else _nominal_matrix(st, exp.layer)
    if m_st.shape != m_exp.shape or m_st.shape != tuple(exp.matrix.shape):
        add(Check("nominal matrix", False, "shapes differ", f"student {list(m_st.shape)}, exported "
                  f"{list(m_exp.shape)}: not this student's export (nothing further compared)"))
        return report
    scale = max(1.0, float(np.abs(m_st).max()))
    d_layer = float(np.abs(m_exp - m_st).max())
    d_file = float(np.abs(exp.matrix.numpy() - m_st).max())
    src = "rebuilt device layer" if exp.layer is not None else "matrix.npz"
    add(Check("nominal matrix", max(d_layer, d_file) <= 1e-6 * scale, f"max |diff| {d_layer:.3g}",
              f"{src} vs the student's; matrix.npz (ONNX) {d_file:.3g}"))

    if st.device_name is None:
        add(Check("hw accuracy", None, "-", "the student has no device"))
    elif exp.layer is None:
        add(Check("hw accuracy", None, "-", f"device {st.device_name!r} has no native export format"))
    else:
        draws, seed, t, stored, key = _draw_settings(st.metrics)
        orig = st.hw_accuracy(x, y, draws, seed, t)
        again = exp.hw_accuracy(x, y, draws, seed, t)
        same = orig == again
        mean = float(np.mean(again))
        detail = f"{draws} draws, seed {seed}, t {t if t is not None else 'default'} s; student re-scored {np.mean(orig):.6f}"
        ok = same
        if stored is not None:
            ok = ok and abs(mean - stored) <= 1e-9
            detail += f"; stored {key} {stored:.6f}"
        else:
            detail += f"; stored figure is on the {st.metrics.get('scored_on')} split (not compared)"
        add(Check("hw accuracy", ok, f"{mean:.6f}", detail + ("" if same else "; DRAWS DIFFER: " + f"{orig} vs {again}")))

    instance = (exp.manifest.get("device") or {}).get("instance")
    if instance is not None:
        add(_chip_check(st, exp, instance, x, y))

    ref = (f_st @ torch.from_numpy(m_st).T).numpy()
    got = exp.onnx_logits(x)
    top2 = np.sort(ref, axis=1)[:, -2:]
    tie = (top2[:, 1] - top2[:, 0]) <= TIE_RELATIVE * np.maximum(np.abs(top2).max(1), 1e-30)
    differ = got.argmax(1) != ref.argmax(1)
    n_diff, n_real = int(differ.sum()), int((differ & ~tie).sum())
    add(Check("onnx", n_real == 0, f"{n - n_diff}/{n} agree",
              f"{n_diff} disagreements, {n_real} outside ties; max |logit diff| {float(np.abs(got - ref).max()):.3g}"))

    if exp.qonnx_path is not None:
        rows = n if qonnx_rows is None else min(int(qonnx_rows), n)
        ctx = exp.run_qonnx(x[:rows])
        e_out = exp.manifest["qonnx"]["output_exponent"]
        codes_graph = np.round(ctx[onnx_graph.OUTPUT].astype(np.float64) / 2.0**e_out).astype(np.int64)
        feats_graph = torch.from_numpy(np.asarray(ctx[onnx_graph.FEATURES], np.float32))
        codes_layer, _ = layer_st.integer_forward(feats_graph)
        bad = int((torch.from_numpy(codes_graph) != codes_layer).any(1).sum())
        codes_host, _ = layer_st.integer_forward(f_st[:rows])
        host_rows = int((torch.from_numpy(codes_graph) != codes_host).any(1).sum())
        add(Check("qonnx", bad == 0, f"{rows - bad}/{rows} rows identical",
                  f"integer codes vs the student layer's integer_forward on the graph's features"
                  f"{'' if rows == n else f' (first {rows} of {n} rows)'}; on the host's features {host_rows} rows differ"))
    if exp.manifest.get("hls4ml") and layer_st is not None:
        add(Check("hls4ml", *hls.verify(exp.path, exp.manifest["hls4ml"], layer_st, f_st)))
    return report


__all__: Sequence[str] = (
    "Check", "ExportedModel", "SCHEMA", "VERSION", "VerifyReport", "check_probe", "export_student", "layer_logits",
    "load_export", "manifest_digest", "probe_inputs", "read_manifest", "verify_export",
)
