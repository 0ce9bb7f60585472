"""What one whole inference costs: PCA projection, lifting, conversions and the matrix K.

An inference of a student is ``x -> z = P (x - mu) -> psi(z) -> standardise -> K psi``. Each
stage runs somewhere, and this module prices each where it runs, on the same terms for every
device:

* ``pca``: the ``r x D`` projection (whitening folded into P) plus ``r`` adds for the mean
  offset. It runs on the digital host by default (``pca_placement="host"``), or on the device
  (``"device"``: a second matrix of the device, its noise simulated too; the offset stays on
  the host);
* ``lift``: the dictionary's arithmetic (:meth:`~codesign.dictionaries.Dictionary.lift_ops`) on
  the digital host, or, with ``device_lift`` (``--lift-placement device``), the device's own
  price of its nonlinear primitive (:meth:`~codesign.devices.lifts.Lift.cost`: its projection,
  converters and periphery; its converters land in the ``conversion`` stage, its held power is
  held as K's is) and nothing on the host;
* ``conversion``: the device's converters (its :attr:`~codesign.devices.base.Device.conversion_keys`
  components: DACs, modulators, detectors, ADCs) for every matrix it runs;
* ``matrix``: the rest of the device's cost of ``K`` (``C x F``).

The standardisation costs nothing: ``K ((psi - m) / s) = (K / s) psi - K (m / s)``, and the
constant term lands on the weight of the constant feature, so it is folded into ``K``.

The digital host is :class:`~codesign.devices.ideal.IdealDevice`'s cost model
(:mod:`codesign.devices.digital`: Horowitz's 45 nm per-operation energies and SRAM reads):
``host_datapath`` sets its number format (default :data:`~codesign.devices.digital.DEFAULT_HOST_DATAPATH`,
int8), and the feature pipeline simulates the same format (:func:`codesign.features.host_quantize`).

Stages run one after the other: the latency is their sum. The host's MAC units are counted
once, in the first stage that runs on the host. The device's converters' area and latency are
reported inside its stage (devices price them together); the conversion stage carries their
energy. A design the device cannot build (:meth:`~codesign.devices.base.Device.feasibility`
of each matrix, and :meth:`~codesign.devices.base.Device.shared_resources` of the matrices it
holds together: an FPGA part's LUTs, BRAM18s and DSPs for K's and the lift's MVAUs, a crossbar
chip's tiles) is reported with its reasons and no price.

Held power (issue 26): every ``*_static_mw`` component of the device's cost is charged for the
time it is held per inference in the ``operating_mode``: ``latency`` (the default, one inference
at a time) holds it for the whole latency, host stages included; ``stream`` for the pipeline's
initiation interval, the slowest of the host's MAC array (its stages in turn) and each device
matrix (its ``interval_ns``). Each component's energy lands in the stage of its matrix (the
``conversion`` stage where its dynamic part is a conversion), so stages still sum to the totals.
The device's power at that rate (dynamic energy / interval + held power) is checked against its
limits (:meth:`~codesign.devices.base.Device.power_feasibility`): a design above one is priced
and reported infeasible with the reason. The digital host has no held power here: Horowitz's
45 nm table gives no leakage figure for it.
"""

from __future__ import annotations

from typing import Any, Mapping

from .devices import Device
from .devices.base import DEFAULT_OPERATING_MODE, OPERATING_MODES, required_cost_check, shared_budget_reasons
from .devices.digital import DATAPATHS, DEFAULT_HOST_DATAPATH, digital_cost, matvec_ops
from .devices.ideal import IdealDevice
from .dictionaries import Dictionary
from .errors import check_choice
from .opcounts import OpCounts

#: Where the PCA projection may run.
PCA_PLACEMENTS = ("host", "device")
#: The stages of an inference, in order.
STAGES = ("pca", "lift", "conversion", "matrix")
#: Totals every priced cost carries.
TOTAL_KEYS = ("energy_pj", "latency_ns", "area_mm2")
#: Held-power figures every priced stage carries too (``energy_pj`` = dynamic + static).
STATIC_KEYS = ("dynamic_energy_pj", "static_power_mw", "static_energy_pj")


def host_device(datapath: str = DEFAULT_HOST_DATAPATH) -> IdealDevice:
    """The digital host: a 64-MAC array at 1 GHz in ``datapath`` (the ideal device's defaults)."""
    check_choice("host_datapath", datapath, DATAPATHS)
    return IdealDevice(datapath=datapath)


def _split(costs: Mapping[str, float], conversion_keys: tuple[str, ...]) -> tuple[float, float]:
    conversion = sum(float(costs[k]) for k in conversion_keys if k in costs)
    return float(costs["energy_pj"]) - conversion, conversion


def _stage(runs_on: str, energy: float, latency: float, area: float, interval: float | None = None) -> dict[str, Any]:
    """A stage's dynamic figures; :func:`inference_cost` adds its held (static) power after."""
    return {"runs_on": runs_on, "energy_pj": energy, "dynamic_energy_pj": energy, "static_power_mw": 0.0,
            "static_energy_pj": 0.0, "latency_ns": latency, "area_mm2": area,
            "interval_ns": latency if interval is None else interval}


def static_components(costs: Mapping[str, float], conversion_keys: tuple[str, ...]) -> dict[str, tuple[str, float]]:
    """``{component: (stage, power_mw)}`` of a device cost's held power (keys ``*_static_mw``).

    A component ``X_static_mw`` whose dynamic part ``X_pj`` is a conversion is held in the
    ``conversion`` stage, every other one in ``matrix``. A device that reports
    ``static_power_mw`` without components gets one component, ``device``.
    """
    comps = {}
    for key, value in costs.items():
        if key.endswith("_static_mw"):
            name = key[: -len("_static_mw")]
            comps[name] = ("conversion" if f"{name}_pj" in conversion_keys else "matrix", float(value))
    total = float(costs.get("static_power_mw", 0.0))
    if not comps and total:
        comps["device"] = ("matrix", total)
    return comps


def inference_cost(
    device: Device,
    *,
    n_inputs: int,
    rank: int,
    dictionary: Dictionary,
    n_classes: int,
    pca_placement: str = "host",
    host_datapath: str = DEFAULT_HOST_DATAPATH,
    operating_mode: str = DEFAULT_OPERATING_MODE,
    device_lift: Any = None,
) -> dict[str, Any]:
    """The cost of one inference of a student on ``device``, stage by stage.

    Args:
        device: runs the matrix K (and the PCA projection if ``pca_placement="device"``).
        n_inputs: D, the data set's input size.
        rank: the PCA rank r.
        dictionary: the lift (its :meth:`~codesign.dictionaries.Dictionary.lift_ops` and
            ``n_features(rank)``, the constant feature included).
        n_classes: C, the rows of K.
        pca_placement: ``"host"`` or ``"device"``.
        host_datapath: number format of the digital host (``fp32``, ``fp16``, ``int32``, ``int8``).
        operating_mode: ``"latency"`` (one inference at a time: held power charged for the whole
            latency) or ``"stream"`` (inferences pipelined: charged for the initiation interval);
            :data:`~codesign.devices.base.OPERATING_MODES`.
        device_lift: a fitted :class:`~codesign.devices.lifts.Lift` with ``device`` attached:
            the lift runs on the device (``placement["lift"] == "device"``), priced by it; None:
            the dictionary's arithmetic on the host.

    Returns:
        ``energy_pj`` (dynamic + static), ``dynamic_energy_pj``, ``static_energy_pj``,
        ``static_power_mw``, ``latency_ns`` (stages one after another), ``interval_ns`` (the
        time between inferences in ``operating_mode``: the latency, or the pipeline's initiation
        interval), ``pipeline_interval_ns`` (the slowest of the host's MAC array and the
        device's matrices), ``power_mw`` (average power at that rate), ``device_power_mw`` (the
        device's part, checked by :meth:`~codesign.devices.base.Device.power_feasibility`),
        ``area_mm2`` (totals; None when infeasible), ``static`` (``{component: {stage,
        power_mw, energy_pj}}``: every held component, its energy its power times
        ``interval_ns``), ``feasible`` and ``infeasible`` (the reasons), ``stages``
        (``{stage: {runs_on, energy_pj, dynamic_energy_pj, static_power_mw, static_energy_pj,
        latency_ns, interval_ns, area_mm2}}``, parts summing to the totals; None when
        infeasible), ``shared_resources`` (with the PCA or the lift on the device too: the
        budgets its matrices share, :meth:`~codesign.devices.base.Device.shared_resources`,
        ``{}`` otherwise or for a device without shared budgets; a total above a budget makes
        the design infeasible, the reason naming the resource, each matrix's count, the total
        and the budget), ``placement``, ``host``, ``operating_mode``, ``lift_ops``, ``device`` (the
        device's own cost of K: its counts, and its energies when feasible) and, with the PCA
        on the device, ``pca_device``.
    """
    check_choice("pca_placement", pca_placement, PCA_PLACEMENTS)
    check_choice("operating_mode", operating_mode, OPERATING_MODES)
    host = host_device(host_datapath)
    hc = host.config
    n_features = dictionary.n_features(rank)
    conv = tuple(type(device).conversion_keys)

    reasons = [f"matrix K ({n_classes} x {n_features}): {r}" for r in device.feasibility(n_features, n_classes)]
    k_cost = device.cost(n_features, n_classes)
    required_cost_check(device, k_cost, (n_features, n_classes))  # a plugin's cost without latency_ns is refused, not guessed
    pca_dev = None
    if pca_placement == "device":
        reasons += [f"PCA projection ({rank} x {n_inputs}): {r}" for r in device.feasibility(n_inputs, rank)]
        pca_dev = device.cost(n_inputs, rank)
        required_cost_check(device, pca_dev, (n_inputs, rank))
    lift_dev = None
    if device_lift is not None:
        reasons += [f"lift {device_lift.name} ({rank} -> {device_lift.n_outputs(rank)}): {r}"
                    for r in device_lift.feasibility(rank)]
        lift_dev = device_lift.cost(rank)
        required_cost_check(device, lift_dev, None)
        lift_ops = OpCounts()
    else:
        lift_ops = dictionary.lift_ops(rank)
    shared: dict[str, Any] = {}
    if pca_dev is not None or lift_dev is not None:  # several matrices on one device: their budgets add up
        on_device = {f"matrix K ({n_classes} x {n_features})": k_cost}
        if pca_dev is not None:
            on_device[f"PCA projection ({rank} x {n_inputs})"] = pca_dev
        if lift_dev is not None:
            on_device[f"lift {device_lift.name} ({rank} -> {device_lift.n_outputs(rank)})"] = lift_dev
        shared = device.shared_resources(on_device)
        reasons += [f"together: {r}" for r in shared_budget_reasons(shared)]
    out: dict[str, Any] = {
        "placement": {"pca": pca_placement, "lift": "host" if lift_dev is None else "device", "conversion": "device",
                      "matrix": "device"},
        "shared_resources": shared,
        "host": {"datapath": hc.datapath, "clock_mhz": hc.clock_mhz, "macs_per_cycle": hc.macs_per_cycle},
        "operating_mode": operating_mode,
        "lift_ops": lift_ops.as_dict(),
        "n_features": n_features,
    }
    counts = {k: v for k, v in k_cost.items() if not k.endswith("_pj") and k not in TOTAL_KEYS}
    if reasons:
        return {"energy_pj": None, "latency_ns": None, "area_mm2": None, "feasible": False,
                "infeasible": reasons, "stages": None, **out, "device": counts}

    units_mm2 = digital_cost(OpCounts(), hc.datapath, hc.clock_mhz, hc.macs_per_cycle)["area_mm2"]  # the MAC array
    stages: dict[str, dict[str, Any]] = {}
    conversion = 0.0
    if pca_placement == "host":
        c = digital_cost(matvec_ops(n_inputs, rank) + OpCounts(adds=rank), hc.datapath, hc.clock_mhz, hc.macs_per_cycle)
        stages["pca"] = _stage("host", c["energy_pj"], c["latency_ns"], c["area_mm2"])
        host_busy = c["latency_ns"]
    else:
        offset = digital_cost(OpCounts(adds=rank, inputs=rank, outputs=rank), hc.datapath, hc.clock_mhz,
                              hc.macs_per_cycle)
        matrix, conv_pca = _split(pca_dev, conv)
        conversion += conv_pca
        stages["pca"] = _stage(
            "device", matrix + offset["energy_pj"], float(pca_dev["latency_ns"]) + offset["latency_ns"],
            float(pca_dev["area_mm2"]) + offset["area_mm2"],  # the offset's adds run on the host's units
            interval=float(pca_dev.get("interval_ns", pca_dev["latency_ns"])))
        host_busy = offset["latency_ns"]
    if lift_dev is None:
        lift = digital_cost(lift_ops, hc.datapath, hc.clock_mhz, hc.macs_per_cycle)
        lift_area = lift["area_mm2"] - units_mm2  # the host's MAC array is counted once, in the pca stage
        stages["lift"] = _stage("host", lift["energy_pj"], lift["latency_ns"], lift_area)
        host_busy += lift["latency_ns"]
    else:
        lift_conv_keys = tuple(device_lift.conversion_keys())
        matrix_lift, conv_lift = _split(lift_dev, lift_conv_keys)
        conversion += conv_lift
        stages["lift"] = _stage("device", matrix_lift, float(lift_dev["latency_ns"]), float(lift_dev["area_mm2"]),
                                interval=float(lift_dev.get("interval_ns", lift_dev["latency_ns"])))
    matrix, conv_k = _split(k_cost, conv)
    conversion += conv_k
    k_interval = float(k_cost.get("interval_ns", k_cost["latency_ns"]))
    stages["conversion"] = _stage("device", conversion, 0.0, 0.0, interval=0.0)
    stages["matrix"] = _stage("device", matrix, float(k_cost["latency_ns"]), float(k_cost["area_mm2"]),
                              interval=k_interval)

    # the time base: stages one after another (latency), or a pipeline whose slowest unit --
    # the host's MAC array running its stages in turn, or one of the device's matrices, each on
    # its own tiles -- sets the initiation interval
    latency = sum(s["latency_ns"] for s in stages.values())
    pipeline = max([host_busy, k_interval] + ([stages["pca"]["interval_ns"]] if pca_dev is not None else [])
                   + ([stages["lift"]["interval_ns"]] if lift_dev is not None else []))
    held_ns = latency if operating_mode == "latency" else pipeline
    held: dict[str, dict[str, Any]] = {}
    for costs, default_stage in ((k_cost, None), (pca_dev, "pca"), (lift_dev, "lift")):
        if costs is None:
            continue
        keys = tuple(device_lift.conversion_keys()) if default_stage == "lift" else conv
        for name, (stage, power) in static_components(costs, keys).items():
            stage = default_stage or stage
            key = name if name not in held else f"{default_stage}_{name}"
            held[key] = {"stage": stage, "power_mw": power, "energy_pj": power * held_ns}
            stages[stage]["static_power_mw"] += power
            stages[stage]["static_energy_pj"] += power * held_ns
            stages[stage]["energy_pj"] += power * held_ns
    totals = {k: sum(s[k] for s in stages.values()) for k in TOTAL_KEYS}
    totals["latency_ns"] = latency
    static_mw = sum(s["static_power_mw"] for s in stages.values())
    device_stages = [s for name, s in stages.items() if s["runs_on"] == "device"]
    device_power = sum(s["dynamic_energy_pj"] for s in device_stages) / held_ns + sum(
        s["static_power_mw"] for s in device_stages)  # pJ / ns = mW
    device_area = sum(s["area_mm2"] for s in device_stages)
    timing = {
        "interval_ns": held_ns, "pipeline_interval_ns": pipeline,
        "dynamic_energy_pj": sum(s["dynamic_energy_pj"] for s in stages.values()),
        "static_power_mw": static_mw, "static_energy_pj": static_mw * held_ns,
        "power_mw": totals["energy_pj"] / held_ns, "device_power_mw": device_power, "static": held,
    }
    # a design above a power limit is priced (its power is the reason) but infeasible
    power_reasons = [f"at the {operating_mode} rate (one inference every {held_ns:.4g} ns): {r}"
                     for r in device.power_feasibility(device_power, device_area)]
    result = {**totals, **timing, "feasible": not power_reasons, "infeasible": power_reasons, "stages": stages,
              **out, "matrix_energy_per_mac_pj": stages["matrix"]["energy_pj"] / (n_features * n_classes), "device": dict(k_cost)}
    if pca_dev is not None:
        result["pca_device"] = dict(pca_dev)
    if lift_dev is not None:
        result["lift_device"] = dict(lift_dev)
    return result


def flat_cost(cost: Mapping[str, Any]) -> dict[str, float]:
    """One flat ``{key: float}`` of a :func:`inference_cost` result, for tables and CSV columns.

    The totals, ``interval_ns``, ``power_mw`` and the held-power totals (:data:`STATIC_KEYS`),
    ``<stage>_energy_pj`` / ``_latency_ns`` / ``_area_mm2`` / ``_static_energy_pj`` per stage,
    ``<component>_static_pj`` per held component, and the device's own counts and energy
    components of K (its ``energy_pj``, ``latency_ns`` and ``area_mm2`` are those of the
    ``conversion`` and ``matrix`` stages together, so they are left out). An infeasible design
    the device cannot build has no price: only its counts (one above a power limit is priced).
    """
    flat: dict[str, float] = {}
    if cost.get("energy_pj") is not None:  # priced (a design above a power limit is priced too)
        flat.update({k: float(cost[k]) for k in TOTAL_KEYS})
        for name, stage in (cost.get("stages") or {}).items():
            for k in TOTAL_KEYS + ("static_energy_pj",):
                if k in stage:
                    flat[f"{name}_{k}"] = float(stage[k])
        for name, held in (cost.get("static") or {}).items():
            flat[f"{name}_static_pj"] = float(held["energy_pj"])
    for key, entry in (cost.get("shared_resources") or {}).items():
        flat[f"shared_{key}"] = float(entry["used"])
    for k in ("interval_ns", "pipeline_interval_ns", "power_mw", "device_power_mw") + STATIC_KEYS:
        if cost.get(k) is not None:
            flat[k] = float(cost[k])
    for k, v in (cost.get("device") or {}).items():
        if k not in TOTAL_KEYS and k not in flat:
            flat[k] = float(v)
    return flat


__all__ = ["PCA_PLACEMENTS", "STAGES", "STATIC_KEYS", "static_components", "flat_cost", "host_device", "inference_cost"]
