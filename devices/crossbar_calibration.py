"""Calibrating the analog crossbar to measured conductances (issue 32).

Measurement format (CSV, one row per read; see :data:`COLUMNS`): ``device_id`` (any text or
integer), ``g_target_uS`` (the conductance the device was programmed to, microsiemens: one per
device), ``t_s`` (seconds since the end of programming, >= 0), ``read_index`` (optional: the
repeated read at that time) and ``g_read_uS`` (the conductance read, microsiemens). Every device
needs at least two reads at every time it was read (repeated reads), and at least
:data:`MIN_DEVICES` devices; two or more distinct times identify the drift.

What is fitted, to the fields :mod:`codesign.devices.analog_crossbar`'s noise model has
(conductances in units of ``g_max``, the largest programmed target):

* ``g_max_us``: the largest target conductance of the file;
* ``prog_noise_model`` and ``prog_noise``: the programming error of each device is its
  conductance extrapolated to ``t = 0`` (its drift fitted through its read means) less its target;
  its std against the target is fitted, by maximum likelihood with each device's extrapolation
  error as known extra variance, with each of the model's shapes (aihwkit's PCM polynomial and
  its Wan et al. 2022 ReRAM quartic) scaled to ``prog_noise`` at ``g_max/2``; the shape with the
  higher likelihood is chosen (the model holds no free polynomial: the notes give both fits);
* ``drift_model`` (``pcm`` or ``constant``) and, for ``constant``, ``drift_nu`` and
  ``drift_nu_std``: each device's drift exponent is the slope of ``ln`` of its read means against
  ``ln((t + t0) / t0)``; aihwkit's PCM law (``mu`` and ``sigma`` against ``ln g``, fixed
  coefficients) and a constant ``N(drift_nu, drift_nu_std)`` (moments, less the slopes'
  estimation variance) are compared by AIC. The free fit ``mu(g) = a ln g + b`` is reported in the
  notes and drawn; the model's PCM law has fixed coefficients, so it is not a config field;
* ``read_noise`` (aihwkit's 1/f coefficient ``Q_s`` at ``g_max``) and ``w_noise`` (per-read
  noise, a constant std): the variance of the repeated reads of a device at one time is
  ``(Q_s(g_prog) F(t) g(t))^2 + w_noise^2`` in the model (``Q_s ~ g^-0.65``, ``F(t) =
  sqrt(ln((t + t0 + t_read) / (2 t_read)))``, the 1/f noise drawn afresh for each read, as
  aihwkit's ``drift_analog_weights(t)`` draws it at each call); a non-negative weighted least
  squares fit of the two variances;
* ``stuck_off_fraction``: devices with a target of at least 0.2 ``g_max`` that read below a
  quarter of it at every time, over those devices; ``stuck_on_fraction``: devices with a target of
  at most 0.4 ``g_max`` whose extrapolated conductance is above 0.8 ``g_max``, over those devices.

Devices with a target below :data:`MIN_LEVEL` ``g_max`` (where the model clips at 0) and stuck
devices are left out of the noise and drift fits. Held at their defaults (not identifiable from
these measurements): the levels (``bits_per_cell``), the drift law's coefficients, the periphery
(output noise, IR drop, converters) and every cost field.

Uncertainty: a bootstrap over devices (:data:`BOOTSTRAP` resamples of the devices, every step
refitted); the standard error is the resamples' standard deviation.

:meth:`CrossbarCalibrator.generate` draws measurements from the device's own model: an
:class:`~codesign.devices.analog_crossbar.AnalogCrossbarLayer` programmed with the targets draws
the stuck devices, programming errors and drift exponents of one instance (its own noise
streams), read at each time; each read adds the 1/f noise with the model's functions
(:func:`~codesign.devices.analog_crossbar.read_noise_relative`,
:func:`~codesign.devices.analog_crossbar.read_time_factor`), clipped at 0 as the model does, and
``w_noise``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from .analog_crossbar import (
    PROG_NOISE_MODELS,
    READ_NOISE_EXPONENT,
    READ_NOISE_FLOOR,
    T0_S,
    AnalogCrossbarConfig,
    AnalogCrossbarDevice,
    drift_nu_mean,
    drift_nu_std,
    prog_noise_std,
    read_noise_relative,
    read_time_factor,
)
from .calibration import (
    CalibrationFit,
    Calibrator,
    Column,
    MeasurementError,
    Measurements,
)
from .measurement_csv import read_csv_table, write_csv_table, write_figure

COLUMNS = (
    Column("device_id", "1", "identifier of the device (text or integer); one target per device"),
    Column("g_target_uS", "uS", "conductance the device was programmed to (its level), microsiemens"),
    Column("t_s", "s", "time since the end of programming at the read, seconds (>= 0)"),
    Column("read_index", "1", "index of the repeated read at that time (0, 1, ...)", required=False),
    Column("g_read_uS", "uS", "conductance read, microsiemens"),
)
#: Fewest devices a fit takes.
MIN_DEVICES = 50
#: Devices with a target below this fraction of g_max are left out of the noise and drift fits.
MIN_LEVEL = 0.1
#: Stuck-off candidates: targets of at least this fraction of g_max; stuck when every read mean
#: is below ``STUCK_OFF_RATIO`` times the target.
STUCK_OFF_MIN_TARGET, STUCK_OFF_RATIO = 0.2, 0.25
#: Stuck-on candidates: targets of at most this fraction; stuck when the extrapolated conductance
#: is above ``STUCK_ON_LEVEL``.
STUCK_ON_MAX_TARGET, STUCK_ON_LEVEL = 0.4, 0.8
#: Programming errors further than this many standard deviations from the fit are left out of it.
OUTLIER_Z = 5.0
#: Bootstrap resamples of the devices for the standard errors.
BOOTSTRAP = 50
#: Plausible largest target conductance, uS (PCM ~25 uS, ReRAM 40-200 uS); outside: a unit error.
G_MAX_PLAUSIBLE_US = (0.01, 5000.0)
#: :meth:`CrossbarCalibrator.generate`'s defaults: 1000 devices read at 1 s, 1 h and 1 day, 8 reads each.
DEFAULT_DEVICES, DEFAULT_TIMES_S, DEFAULT_READS = 1000, (1.0, 3600.0, 86400.0), 8


def _log_time(t: np.ndarray) -> np.ndarray:
    """``ln((t + t0) / t0)``: the drift's log time (``g(t) = g_prog exp(-nu * this)``)."""
    return np.log((np.asarray(t, dtype=np.float64) + T0_S) / T0_S)


def _np(fn, g: np.ndarray, *args: Any) -> np.ndarray:
    """One of the model's torch functions on a numpy array (float64)."""
    return fn(torch.as_tensor(np.asarray(g, dtype=np.float64)), *args).numpy()


def _normal_ml(y: np.ndarray, e2: np.ndarray) -> tuple[float, float, float]:
    """Maximum likelihood ``(mean, std, log-likelihood)`` of ``y_i ~ N(mean, std^2 + e2_i)`` (each
    value with its own known estimation variance), values further than :data:`OUTLIER_Z`
    standard deviations from a first fit left out (the log-likelihood scaled back to every value)."""
    from scipy.optimize import minimize_scalar

    def profile(s: float, y: np.ndarray, e2: np.ndarray) -> tuple[float, float]:
        """``(mean, nll)`` at std ``s``: the mean is the weighted mean (closed form)."""
        s2 = s * s + e2
        mean = float(np.sum(y / s2) / np.sum(1.0 / s2))
        return mean, 0.5 * float(np.sum(np.log(2 * np.pi * s2) + (y - mean) ** 2 / s2))

    keep = np.ones(len(y), bool)
    for _ in range(2):
        yk, ek = y[keep], e2[keep]
        hi = max(float(np.std(yk)) * 3, 1e-6)
        res = minimize_scalar(lambda s: profile(s, yk, ek)[1], bounds=(0.0, min(hi, 1.0)), method="bounded",
                              options={"xatol": 1e-7})
        s = float(res.x)
        mean, nll = profile(s, yk, ek)
        keep = np.abs(y - mean) <= OUTLIER_Z * np.sqrt(s * s + e2)
    return mean, s, -nll / max(len(yk), 1) * len(y)


class CrossbarCalibrator(Calibrator):
    """Fits the analog crossbar's programming noise, drift, read noise and stuck devices (see the module)."""

    device: ClassVar[str] = "analog_crossbar"
    description: ClassVar[str] = (
        "target and read conductances of many devices at one or more times after programming, with repeated "
        "reads: programming noise against conductance, drift exponents, 1/f and per-read noise, stuck devices")
    columns: ClassVar[tuple[Column, ...]] = COLUMNS
    fields: ClassVar[tuple[str, ...]] = (
        "g_max_us", "prog_noise_model", "prog_noise", "drift_model", "drift_nu", "drift_nu_std", "read_noise",
        "w_noise", "stuck_off_fraction", "stuck_on_fraction")
    #: At 1000 devices x 3 times x 8 reads (tests/devices/test_crossbar_calibration.py).
    tolerances: ClassVar[dict[str, tuple[float, float]]] = {
        "g_max_us": (0.0, 1e-6),
        "prog_noise_model": (0.0, 0.0),
        "prog_noise": (0.002, 0.08),
        "drift_model": (0.0, 0.0),
        "drift_nu": (0.003, 0.1),
        "drift_nu_std": (0.003, 0.1),
        "read_noise": (0.0005, 0.1),
        "w_noise": (0.004, 0.1),
        "stuck_off_fraction": (0.006, 0.25),
        "stuck_on_fraction": (0.006, 0.25),
    }
    perturbed: ClassVar[dict[str, Any]] = {
        "g_max_us": 40.0, "prog_noise_model": "reram_wan2022", "prog_noise": 0.06, "read_noise": 0.015,
        "w_noise": 0.005, "drift_model": "constant", "drift_nu": 0.03, "drift_nu_std": 0.01,
        "stuck_off_fraction": 0.02, "stuck_on_fraction": 0.01,
    }

    # ------------------------------------------------------------------ files
    def read(self, path: Path) -> Measurements:
        """Read and check a measurement CSV (:data:`COLUMNS`); one-line :class:`MeasurementError` on a defect."""
        data = read_csv_table(path, COLUMNS, text=("device_id",), min_rows=2 * MIN_DEVICES)
        self._check(data, str(Path(path).expanduser()))
        return data

    def write(self, data: Measurements, path: Path) -> None:
        """Write ``data`` as the CSV :meth:`read` reads, atomically."""
        write_csv_table(data, COLUMNS, path, {"g_target_uS": ".6g", "t_s": "g", "g_read_uS": ".6g"})

    def _check(self, data: Measurements, where: str) -> None:
        """Units by range, one target per device, enough devices and repeated reads."""
        g_t, t, g_r = (np.asarray(data[k], dtype=np.float64) for k in ("g_target_uS", "t_s", "g_read_uS"))
        if (g_t < 0).any():
            i = int(np.flatnonzero(g_t < 0)[0])
            raise MeasurementError(f"{where}: g_target_uS {g_t[i]:g} at row {i + 2} is negative; targets are "
                                   "conductances >= 0 in microsiemens")
        g_max = float(g_t.max())
        lo, hi = G_MAX_PLAUSIBLE_US
        if g_max < lo:
            hint = " (they look like siemens: multiply by 1e6)" if 0 < g_max < 1e-3 else ""
            raise MeasurementError(f"{where}: the largest g_target_uS is {g_max:g}, below {lo:g} uS{hint}; give "
                                   "conductances in microsiemens")
        if g_max > hi:
            raise MeasurementError(f"{where}: the largest g_target_uS is {g_max:g}, above {hi:g} uS (nanosiemens? "
                                   "ohms?); give conductances in microsiemens")
        if (g_r < -g_max).any() or (g_r > 5 * g_max).any():
            bad = float(g_r[(g_r < -g_max) | (g_r > 5 * g_max)][0])
            raise MeasurementError(f"{where}: g_read_uS {bad:g} is far outside the targets' range 0..{g_max:g} uS; "
                                   "give the reads in microsiemens, as the targets")
        if (t < 0).any():
            raise MeasurementError(f"{where}: t_s {float(t.min()):g} is negative; give the time since the end of "
                                   "programming, seconds")
        if "read_index" in data:
            r = np.asarray(data["read_index"], dtype=np.float64)
            if (r < 0).any() or (r != np.round(r)).any():
                raise MeasurementError(f"{where}: read_index must be integers >= 0")
        ids, dev = np.unique(np.asarray(data["device_id"]).astype(str), return_inverse=True)
        if len(ids) < MIN_DEVICES:
            raise MeasurementError(f"{where}: {len(ids)} devices; the fit needs at least {MIN_DEVICES} (a realistic "
                                   f"measurement: {DEFAULT_DEVICES} devices)")
        spread = np.zeros(len(ids))
        np.maximum.at(spread, dev, g_t)
        low = np.full(len(ids), np.inf)
        np.minimum.at(low, dev, g_t)
        if (spread - low > 1e-6 * g_max).any():
            i = int(np.flatnonzero(spread - low > 1e-6 * g_max)[0])
            raise MeasurementError(f"{where}: device {ids[i]} has targets {low[i]:g} and {spread[i]:g} uS; give one "
                                   "g_target_uS per device_id")
        times, ti = np.unique(t, return_inverse=True)
        counts = np.bincount(dev * len(times) + ti, minlength=len(ids) * len(times)).reshape(len(ids), len(times))
        single = (counts == 1)
        if single.any():
            i, j = np.argwhere(single)[0]
            raise MeasurementError(f"{where}: device {ids[i]} has one read at t_s={times[j]:g}; the read noise needs at "
                                   "least 2 repeated reads of every device at every time it is read")

    # ------------------------------------------------------------------ generate
    def generate(self, config: AnalogCrossbarConfig, seed: int = 0, size: int | None = None,
                 times_s: tuple[float, ...] = DEFAULT_TIMES_S, reads: int = DEFAULT_READS) -> Measurements:
        """Measurements of ``size`` devices (default 1000) drawn from the crossbar model with ``config``.

        Targets are the config's ``2**bits_per_cell`` levels, drawn uniformly (one device at
        ``g_max``); one instance (seed ``seed``) of a layer holding them is read at each of
        ``times_s`` (default 1 s, 1 h, 1 day), ``reads`` times (default 8).
        """
        if not isinstance(config, AnalogCrossbarConfig):
            raise MeasurementError(f"the crossbar calibrator generates from an AnalogCrossbarConfig, not "
                                   f"{type(config).__name__}")
        n = int(size or DEFAULT_DEVICES)
        rng = np.random.default_rng(seed)
        L = 2**config.bits_per_cell - 1
        levels = rng.integers(0, L + 1, n)
        levels[0] = L  # the column's scale maps the largest target to g_max
        # one device per target: one pair, one slice; the 1/f noise is added per read below
        sim = config.replace({"read_noise": 0.0, "drift_compensation": False, "weight_slices": 1,
                              "devices_per_polarity": 1, "weight_scaling": "layer"})
        layer = AnalogCrossbarDevice(sim).layer(n, 1)
        layer.load_matrix(torch.as_tensor(levels / L, dtype=torch.float32)[None])
        layer.eval()

        def read_at(t: float) -> torch.Tensor:
            layer.draw_instance(seed, t_inference_s=t)
            with torch.no_grad():
                g, _ = layer.device_conductances()
            return g[0, 0, 0, 0].double()  # the positive polarity's devices

        g_prog = read_at(0.0)
        q = read_noise_relative(g_prog, config.read_noise)
        gen = torch.Generator().manual_seed(int(seed) * 7919 + 17)
        rows: dict[str, list[np.ndarray]] = {k: [] for k in ("device_id", "g_target_uS", "t_s", "read_index", "g_read_uS")}
        for t in times_s:
            g_t = read_at(float(t))
            std = g_t.abs() * q * read_time_factor(float(t))
            for r in range(reads):
                z = torch.randn(n, generator=gen, dtype=torch.float64)
                w = torch.randn(n, generator=gen, dtype=torch.float64)
                g_read = (g_t + std * z).clamp_min(0.0) + config.w_noise * w
                rows["device_id"].append(np.arange(n))
                rows["g_target_uS"].append(levels / L * config.g_max_us)
                rows["t_s"].append(np.full(n, float(t)))
                rows["read_index"].append(np.full(n, r))
                rows["g_read_uS"].append(g_read.numpy() * config.g_max_us)
        return {k: np.concatenate(v) for k, v in rows.items()}

    # ------------------------------------------------------------------ fit
    def _summaries(self, data: Measurements) -> dict[str, Any]:
        """Per device and time: read count, mean and variance (units of g_max), and each device's
        drift fitted through its means with equal weights (the first pass)."""
        g_t = np.asarray(data["g_target_uS"], dtype=np.float64)
        t = np.asarray(data["t_s"], dtype=np.float64)
        g_r = np.asarray(data["g_read_uS"], dtype=np.float64)
        ids, dev = np.unique(np.asarray(data["device_id"]).astype(str), return_inverse=True)
        times, ti = np.unique(t, return_inverse=True)
        D, T = len(ids), len(times)
        g_max = float(g_t.max())
        cell = dev * T + ti
        n = np.bincount(cell, minlength=D * T).reshape(D, T).astype(np.float64)
        s1 = np.bincount(cell, g_r / g_max, D * T).reshape(D, T)
        s2 = np.bincount(cell, (g_r / g_max) ** 2, D * T).reshape(D, T)
        with np.errstate(invalid="ignore", divide="ignore"):
            m = np.where(n > 0, s1 / np.maximum(n, 1), np.nan)
            v = np.where(n > 1, (s2 - n * m**2) / np.maximum(n - 1, 1), np.nan)
        target = np.zeros(D)
        target[dev] = g_t / g_max
        return {"ids": ids, "times": times, "n": n, "m": m, "v": np.maximum(v, 0.0), "g_target": target,
                "g_max_us": g_max, "x": _log_time(times)}

    @staticmethod
    def _drift_ls(m: np.ndarray, n: np.ndarray, w: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, ...]:
        """Per device, ``ln m = a - nu x`` by weighted least squares over its times: ``(a, nu, var_a,
        var_nu, ok)`` (ok: every read mean positive and two or more times)."""
        ok = (n > 0) & (m > 0)
        w = np.where(ok, w, 0.0)
        y = np.log(np.where(ok, m, 1.0))
        S0, S1, S2 = w.sum(1), (w * x).sum(1), (w * x * x).sum(1)
        Sy, Sxy = (w * y).sum(1), (w * x * y).sum(1)
        det = S0 * S2 - S1**2
        good = (ok.sum(1) >= 2) & (det > 1e-12 * np.maximum(S0 * S2, 1e-300))
        det = np.where(good, det, 1.0)
        slope = (S0 * Sxy - S1 * Sy) / det
        a = (S2 * Sy - S1 * Sxy) / det
        return a, -slope, S2 / det, S0 / det, good

    def fit(self, data: Measurements) -> CalibrationFit:
        """Fit :attr:`fields` (see the module docstring); standard errors by a bootstrap over devices."""
        self._check(data, "measurements")
        S = self._summaries(data)
        D = len(S["ids"])
        best, notes = self._fit_devices(S, np.arange(D), notes=True)
        rng = np.random.default_rng(0)
        boots = [self._fit_devices(S, rng.integers(0, D, D))[0] for _ in range(BOOTSTRAP)]
        uncertainty = {}
        for k, v in best.items():
            if isinstance(v, str) or k == "g_max_us":
                continue
            vals = [b[k] for b in boots if k in b and not isinstance(b[k], str)]
            if len(vals) > 1:
                uncertainty[k] = float(np.std(vals, ddof=1))
        chosen = [b for b in boots if b["prog_noise_model"] == best["prog_noise_model"]]
        drift = ("" if "drift_model" not in best else f", the drift model {best['drift_model']} in "
                 f"{sum(b.get('drift_model') == best['drift_model'] for b in boots)}")
        notes.append(f"standard errors: bootstrap over devices ({BOOTSTRAP} resamples); the programming-noise shape "
                     f"{best['prog_noise_model']} was chosen in {len(chosen)} of them{drift}")
        samples = {"devices": int(D), "times": int(len(S["times"])), "reads": int(S["n"].sum())}
        return CalibrationFit(self.device, best, uncertainty, samples, tuple(notes))

    def _fit_devices(self, S: dict[str, Any], idx: np.ndarray, notes: bool = False) -> tuple[dict[str, Any], list[str]]:
        """Every fitted field from the devices ``idx`` (a bootstrap resample, or all of them)."""
        from scipy.optimize import minimize_scalar, nnls

        out: dict[str, Any] = {"g_max_us": S["g_max_us"]}
        lines: list[str] = []
        n, m, v, g_T = S["n"][idx], S["m"][idx], S["v"][idx], S["g_target"][idx]
        x, times = S["x"], S["times"]
        multi = len(times) >= 2
        # -- first pass: each device's drift through its read means, equal weights per read
        if multi:
            a0, nu0, _, _, good0 = self._drift_ls(m, n, n, x[None, :])
            g0 = np.where(good0, np.exp(a0), np.nanmax(np.where(n > 0, m, np.nan), 1))
            # each device's conductance at each time from its drift line (smoother than its read
            # means, which carry the very read noise fitted below)
            g_line = np.where(good0[:, None], np.exp(a0[:, None] - nu0[:, None] * x[None, :]), m)
        else:
            held = _np(drift_nu_mean, g_T)
            g0 = m[:, 0] * np.exp(held * x[0])
            g_line = m
        g0 = np.nan_to_num(g0, nan=0.0)
        g_line = np.nan_to_num(g_line, nan=0.0)
        # -- stuck devices
        mmax = np.nanmax(np.where(n > 0, m, -np.inf), 1)
        off_cand = g_T >= STUCK_OFF_MIN_TARGET
        off = off_cand & (mmax < STUCK_OFF_RATIO * g_T)
        on_cand = g_T <= STUCK_ON_MAX_TARGET
        on = on_cand & ~off & (g0 > STUCK_ON_LEVEL)
        out["stuck_off_fraction"] = float(off.sum() / max(off_cand.sum(), 1))
        out["stuck_on_fraction"] = float(on.sum() / max(on_cand.sum(), 1))
        # devices of higher targets stuck on (not counted: not told apart from every target) are
        # left out of the fits too
        on_any = ~off & (g0 > STUCK_ON_LEVEL) & (g0 - g_T > STUCK_ON_LEVEL - STUCK_ON_MAX_TARGET)
        use = (g_T >= MIN_LEVEL) & ~off & ~on & ~on_any
        if use.sum() < 10:
            raise MeasurementError(f"{use.sum()} devices have a target of at least {MIN_LEVEL} g_max and are not stuck; "
                                   f"the fit needs at least 10 (program more devices to higher levels)")
        # -- read noise: var of repeated reads = q^2 (F(t) g(t) / g_prog^0.65)^2 + w^2
        F = np.array([read_time_factor(float(tt)) for tt in times])
        floor = np.maximum(np.maximum(g0, 1e-12) ** READ_NOISE_EXPONENT, READ_NOISE_FLOOR)
        xr = (F[None, :] * g_line / floor[:, None]) ** 2
        # stuck-off devices read w_noise alone (no conductance, no 1/f noise): they join with x = 0
        xr = np.where(off[:, None], 0.0, xr)
        cells = (use | off)[:, None] & (n > 1)
        A = np.stack([xr[cells], np.ones(int(cells.sum()))], 1)
        b, dof = v[cells], (n[cells] - 1)
        coef = nnls(A, b)[0]
        for _ in range(3):  # weights 1 / sd(s^2) = sqrt((n-1)/2) / v_pred
            pred = np.maximum(A @ coef, 1e-16)
            wt = np.sqrt(dof / 2.0) / pred
            coef = nnls(A * wt[:, None], b * wt)[0]
        q, w_noise = math.sqrt(coef[0]), math.sqrt(coef[1])
        out["read_noise"] = float(min(q, 1.0))
        out["w_noise"] = float(min(w_noise, 1.0))
        v_pred = np.maximum(q**2 * xr + w_noise**2, 1e-16)
        # -- second pass: drift weighted by the fitted read variance; each device's g_prog and nu
        if multi:
            a, nu, var_a, var_nu, good = self._drift_ls(m, n, n * m**2 / v_pred, x[None, :])
            g_prog, e2 = np.exp(a), np.exp(2 * a) * var_a
            use_d = use & good
        else:
            held = _np(drift_nu_mean, g_T)
            g_prog = m[:, 0] * np.exp(held * x[0])
            e2 = v_pred[:, 0] / n[:, 0] * np.exp(2 * held * x[0])
            use_d = use
        # -- programming noise: r ~ N(0, (p shape(g_T))^2 + e2), each of the model's shapes
        r, e2u, gu = g_prog[use_d] - g_T[use_d], e2[use_d], g_T[use_d]
        fits = {}
        for model in PROG_NOISE_MODELS:
            shape = _np(prog_noise_std, gu, 1.0, model)

            def nll(p: float, shape=shape) -> float:
                s2 = (p * shape) ** 2 + e2u
                return 0.5 * float(np.sum(np.log(s2) + r**2 / s2))

            res = minimize_scalar(nll, bounds=(0.0, 1.0), method="bounded", options={"xatol": 1e-7})
            # devices more than OUTLIER_Z standard deviations off (stuck, misprogrammed) are left out
            z = np.abs(r) / np.sqrt((res.x * shape) ** 2 + e2u)
            keep = z <= OUTLIER_Z
            r_k, e2_k, shape_k = r[keep], e2u[keep], shape[keep]

            def nll_k(p: float) -> float:
                s2 = (p * shape_k) ** 2 + e2_k
                return 0.5 * float(np.sum(np.log(s2) + r_k**2 / s2))

            res = minimize_scalar(nll_k, bounds=(0.0, 1.0), method="bounded", options={"xatol": 1e-7})
            fits[model] = (float(res.x), -float(res.fun) / max(int(keep.sum()), 1) * len(r), int((~keep).sum()))
        model = max(fits, key=lambda k: fits[k][1])
        out["prog_noise_model"] = model
        out["prog_noise"] = fits[model][0]
        if notes:
            lines.append("programming noise: " + "; ".join(
                f"{k} shape: {p:.4g} of g_max at g_max/2, log-likelihood {ll:.1f} ({o} outliers left out)"
                for k, (p, ll, o) in fits.items())
                + f" (chose {model}; {int(use_d.sum())} devices of target >= {MIN_LEVEL} g_max, not stuck)")
        # -- drift: aihwkit's PCM law (no free parameter) against a constant N(nu, std), by AIC
        if multi:
            nu_u, e_nu = nu[use_d], var_nu[use_d]
            mu_law, sd_law = _np(drift_nu_mean, gu), _np(drift_nu_std, gu)
            s2 = sd_law**2 + e_nu
            ok_pcm = np.abs(nu_u - mu_law) <= OUTLIER_Z * np.sqrt(s2)  # outliers left out, as for the constant
            ll_pcm = -0.5 * float(np.sum((np.log(2 * np.pi * s2) + (nu_u - mu_law) ** 2 / s2)[ok_pcm]))
            ll_pcm *= len(nu_u) / max(int(ok_pcm.sum()), 1)
            c_mean, c_std, ll_const = _normal_ml(nu_u, e_nu)
            aic_pcm, aic_const = -2 * ll_pcm, -2 * ll_const + 4
            if aic_pcm <= aic_const:
                out["drift_model"] = "pcm"
            else:
                out["drift_model"] = "constant"
                out["drift_nu"] = float(min(max(c_mean, 0.0), 1.0))
                out["drift_nu_std"] = float(min(c_std, 1.0))
            if notes:
                lg = np.log(gu)
                wts = 1.0 / (e_nu + c_std**2 + 1e-12)
                A2 = np.stack([lg, np.ones_like(lg)], 1) * np.sqrt(wts)[:, None]
                slope_ab = np.linalg.lstsq(A2, nu_u * np.sqrt(wts), rcond=None)[0]
                lines.append(f"drift: aihwkit's PCM law AIC {aic_pcm:.1f}, constant N({c_mean:.4g}, {c_std:.4g}) AIC "
                             f"{aic_const:.1f} (chose {out['drift_model']}); the data's own mean exponent "
                             f"nu(g) = {slope_ab[0]:.4g} ln(g/g_max) + {slope_ab[1]:.4g} (aihwkit: -0.0155 ln g + "
                             "0.0244; the model's law has fixed coefficients)")
        elif notes:
            lines.append(f"drift: one read time ({times[0]:g} s) cannot identify the drift; drift fields held, the "
                         "programmed conductance extrapolated with aihwkit's mean PCM drift")
        if notes:
            lines.append(f"read noise: 1/f Q_s at g_max {q:.4g}, per-read std {w_noise:.4g} of g_max, from "
                         f"{int(cells.sum())} (device, time) cells of repeated reads")
            lines.append(f"stuck: {int(off.sum())} of {int(off_cand.sum())} devices of target >= "
                         f"{STUCK_OFF_MIN_TARGET} g_max read below {STUCK_OFF_RATIO} of it (stuck off); "
                         f"{int(on.sum())} of {int(on_cand.sum())} of target <= {STUCK_ON_MAX_TARGET} g_max read "
                         f"above {STUCK_ON_LEVEL} g_max (stuck on)")
            lines.append(f"g_max_us: the largest target, {S['g_max_us']:g} uS; held: bits_per_cell, the periphery "
                         "(out_noise, IR drop, converters) and every cost field")
        return out, lines

    # ------------------------------------------------------------------ plot
    def plot(self, data: Measurements, fit: CalibrationFit, path: Path) -> None:
        """Four panels: programming error, drift exponents, read noise, read means over time."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        S = self._summaries(data)
        ov = {**{f: getattr(AnalogCrossbarConfig(), f) for f in self.fields}, **dict(fit.overrides)}
        g_max = S["g_max_us"]
        n, m, v, g_T, x, times = S["n"], S["m"], S["v"], S["g_target"], S["x"], S["times"]
        F = np.array([read_time_factor(float(t)) for t in times])
        q, w = ov["read_noise"], ov["w_noise"]
        fig, ax = plt.subplots(2, 2, figsize=(11, 8))
        levels = np.unique(g_T)
        big = levels[levels >= MIN_LEVEL]
        # (a) programming error
        mmax = np.nanmax(np.where(n > 0, m, -np.inf), 1)
        if len(times) >= 2:
            floor = np.maximum(np.maximum(mmax, 1e-12) ** READ_NOISE_EXPONENT, READ_NOISE_FLOOR)
            v_pred = np.maximum(q**2 * (F[None, :] * m / floor[:, None]) ** 2 + w**2, 1e-16)
            a, nu, var_a, var_nu, good = self._drift_ls(m, n, n * m**2 / v_pred, x[None, :])
            g_prog = np.exp(a)
        else:
            g_prog, nu, good = m[:, 0] * np.exp(_np(drift_nu_mean, g_T) * x[0]), None, np.ones(len(g_T), bool)
        ok = good & (np.abs(g_prog - g_T) < 0.3)
        sd = [np.std(g_prog[ok & (g_T == lv)] - lv) * g_max for lv in big]
        ax[0, 0].plot(big * g_max, sd, "o", label="data: std of (conductance at t = 0) - target")
        grid = np.linspace(0, 1, 101)
        for model in PROG_NOISE_MODELS:
            style = "-" if model == ov["prog_noise_model"] else ":"
            ax[0, 0].plot(grid * g_max, _np(prog_noise_std, grid, ov["prog_noise"], model) * g_max, style,
                          label=f"{model} shape at prog_noise={ov['prog_noise']:.3g}"
                          + (" (fitted)" if style == "-" else ""))
        ax[0, 0].set(xlabel="target conductance (uS)", ylabel="programming error std (uS)", title="programming noise")
        ax[0, 0].legend(fontsize=7)
        # (b) drift exponents
        if nu is not None:
            sel = ok & (g_T >= MIN_LEVEL)
            ax[0, 1].plot(g_T[sel] * g_max, nu[sel], ".", alpha=0.15, ms=3, label="devices")
            mean = [np.mean(nu[sel & (g_T == lv)]) for lv in big]
            sdv = [np.std(nu[sel & (g_T == lv)]) for lv in big]
            ax[0, 1].errorbar(big * g_max, mean, yerr=sdv, fmt="o", capsize=2, label="data: mean +- std per level")
            if ov["drift_model"] == "pcm":
                mu, s = _np(drift_nu_mean, grid[1:]), _np(drift_nu_std, grid[1:])
            else:
                mu, s = np.full(100, ov["drift_nu"]), np.full(100, ov["drift_nu_std"])
            ax[0, 1].plot(grid[1:] * g_max, mu, "-", label=f"model ({ov['drift_model']}) mean")
            ax[0, 1].fill_between(grid[1:] * g_max, mu - s, mu + s, alpha=0.2, label="model +- std")
            ax[0, 1].legend(fontsize=7)
        ax[0, 1].set(xlabel="target conductance (uS)", ylabel="drift exponent nu", title="drift")
        # (c) read noise
        floor = np.maximum(np.maximum(g_prog, 1e-12) ** READ_NOISE_EXPONENT, READ_NOISE_FLOOR)
        for j, t in enumerate(times):
            obs = [np.sqrt(np.nanmean(v[ok & (g_T == lv), j])) * g_max for lv in big]
            pred = [np.sqrt(np.nanmean(q**2 * (F[j] * m[ok & (g_T == lv), j] / floor[ok & (g_T == lv)]) ** 2 + w**2))
                    * g_max for lv in big]
            line = ax[1, 0].plot(big * g_max, obs, "o", label=f"data, t = {t:g} s")[0]
            ax[1, 0].plot(big * g_max, pred, "-", color=line.get_color())
        ax[1, 0].set(xlabel="target conductance (uS)", ylabel="std of repeated reads (uS)",
                     title=f"read noise (lines: read_noise={q:.3g}, w_noise={w:.3g})")
        ax[1, 0].legend(fontsize=7)
        # (d) read means over time
        tt = np.geomspace(max(times.min(), 1e-3), max(times.max(), 1.0), 50)
        for lv in big[:: max(1, len(big) // 5)]:
            sel = ok & (g_T == lv)
            line = ax[1, 1].plot(times, np.nanmean(m[sel], 0) * g_max, "o", label=f"target {lv * g_max:.3g} uS")[0]
            nu_m = float(_np(drift_nu_mean, np.array([lv]))[0]) if ov["drift_model"] == "pcm" else ov["drift_nu"]
            ax[1, 1].plot(tt, lv * g_max * np.exp(-nu_m * _log_time(tt)), "-", color=line.get_color())
        ax[1, 1].set(xscale="log", xlabel="time since programming (s)", ylabel="mean read (uS)",
                     title="drift of the read means (lines: model mean)")
        ax[1, 1].legend(fontsize=7)
        fig.suptitle(f"analog_crossbar calibration: {len(S['ids'])} devices; stuck off "
                     f"{ov['stuck_off_fraction']:.3%}, stuck on {ov['stuck_on_fraction']:.3%}", fontsize=10)
        fig.tight_layout()
        write_figure(fig, path)
        plt.close(fig)
