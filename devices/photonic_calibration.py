"""Calibrating the photonic MZI mesh (``photonic_mzi``) to a characterised chip (issue 32).

:class:`PhotonicMZICalibrator` reads the per-MZI characterisation a photonics lab makes of a
programmed mesh (set and measured phases, repeated; extinction ratios of a phase sweep;
insertion losses) and fits the config fields of
:class:`~codesign.devices.photonic_mzi.PhotonicMZIConfig` that model those effects:
``phase_noise_rad``, ``thermal_crosstalk`` (with ``crosstalk_calibrated``), ``bs_error``,
``insertion_loss_db``, and the phase DAC's ``phase_bits`` and ``phase_quantization``. Its
:meth:`~PhotonicMZICalibrator.generate` draws such measurements from the device's own noise
model (:meth:`PhotonicMZILayer.realized_phases`), so recovery is testable
(``tests/devices/test_photonic_calibration.py``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from .calibration import CalibrationFit, Calibrator, Column, MeasurementError, Measurements
from .clements import mesh_layout
from .measurement_csv import read_csv_table, write_csv_table, write_figure

TWO_PI = 2 * math.pi
#: Realistic defaults of :meth:`PhotonicMZICalibrator.generate`: one 16-mode mesh has 120 MZIs
#: (the brief's sample count), each read 20 times.
DEFAULT_MZIS = 120
DEFAULT_READS = 20
#: Fewest MZIs and reads :meth:`PhotonicMZICalibrator.read` accepts: 10 MZIs give the loss and
#: coupler spread to ~25 %, 3 reads per MZI are the fewest that separate a static offset from
#: the read-to-read noise (2 degrees of freedom).
MIN_MZIS, MIN_READS = 10, 3
#: Fewest neighbour pairs x reads for the crosstalk fit; below it the crosstalk is held.
MIN_PAIR_SAMPLES = 50
#: Phases set on a DAC grid are recognised up to this many bits, within this tolerance (rad):
#: 16-bit steps are 9.6e-5 rad; a file written with 6 decimals is 5e-7 rad off the grid.
MAX_GRID_BITS, GRID_TOL_RAD = 16, 2e-6
#: Measurement set-up assumed by :meth:`PhotonicMZICalibrator.generate` (not model
#: parameters): a power meter repeatable to 0.01 dB between reads, an extinction-ratio floor
#: of 60 dB (stray light and detector dark power 1e-6 of the input), and an MZI-to-MZI spread
#: of the insertion loss of 0.05 dB (assumed: the model itself has one loss for every MZI).
LOSS_READ_NOISE_DB, ER_FLOOR, LOSS_SPREAD_DB = 0.01, 1e-6, 0.05
#: Bootstrap resamples of the uncertainties.
N_BOOT = 200


class PhotonicMZICalibrator(Calibrator):
    """Fits ``photonic_mzi`` to a per-MZI characterisation of a programmed mesh.

    **Measurement file**: one CSV row per MZI per read (a read = the whole mesh programmed
    and every MZI measured once; repeat it, e.g. 20 times). MZIs are named by their place in
    the rectangular (Clements) mesh: ``mesh`` (which mesh of the chip), ``mzi_column`` (the
    mesh column, 0 = first the light meets) and ``mzi_mode`` (the upper of the two waveguides
    it couples); MZIs of one column at modes ``m`` and ``m + 2`` are neighbours (adjacent
    heaters). Phases are in radians in ``[0, 2 pi]``; ``theta_set_rad`` / ``phi_set_rad`` are
    the phases the DAC codes nominally give (on the DAC grid: the fit reads ``phase_bits`` and
    ``phase_quantization`` off it), ``*_meas_rad`` the phases extracted from the MZI's
    transmission (e.g. fitting its fringe). The extinction ratios come from a sweep of
    ``theta`` (maximum over minimum power of each output port), the insertion loss from input
    and output power of the MZI alone (grating or fibre coupling de-embedded).

    **Fit** (every field the data identifies; the rest are held at their defaults and named
    in the notes):

    * ``phase_bits``, ``phase_quantization``: the coarsest DAC grid (uniform in phase or in
      heater voltage, up to 16 bits) that holds every set phase;
    * ``thermal_crosstalk``, ``crosstalk_calibrated``: the residual ``meas - set`` (wrapped)
      is regressed on the sum of the neighbours' set phases: a slope more than 5 standard
      errors above 0 means the programmed phases leak (``crosstalk_calibrated=False``,
      crosstalk = the slope); otherwise only the errors leak and the crosstalk ``c`` follows
      from the correlation ``rho`` of neighbours' read-to-read deviations,
      ``rho = 2c / (1 + c^2 n)`` (``n``: mean number of neighbours), as the model's
      ``err + c * (err @ neighbours)`` gives;
    * ``phase_noise_rad``: the read-to-read variance of the residual of each MZI (its own
      static offset removed), divided by ``1 + c^2 n``;
    * ``bs_error``: each MZI's extinction ratios give its couplers' angles
      ``kappa = pi/4 + eps`` through ``ER_cross = sin^2(k1+k2) / sin^2(k1-k2)`` and
      ``ER_bar = cos^2(k1-k2) / cos^2(k1+k2)``; ``bs_error`` is the RMS deviation of the split
      ratio ``sin^2(kappa) - 0.5`` over all couplers (its sign is not observable, its
      spread is what the model draws);
    * ``insertion_loss_db``: the mean loss over MZIs.

    **Uncertainty**: one standard error, from a jackknife over reads (leave one read out) for
    ``phase_noise_rad`` and ``thermal_crosstalk`` (reads are independent draws of one chip;
    a bootstrap over reads underestimated the crosstalk's spread by half, since it repeats
    reads whose per-MZI mean the estimator removes) and from a bootstrap (200 resamples)
    over MZIs for ``bs_error`` and ``insertion_loss_db``. Checked on 40 chips generated with
    the defaults (a 16-mode mesh, 120 MZIs x 20 reads): the crosstalk's spread over chips was
    0.011 against a mean jackknife error of 0.008 (the jackknife of this ratio estimator is
    ~25 % low at 20 reads; read it as a lower bound), the phase noise's 9.0e-5 rad against
    1.1e-4, ``bs_error``'s 2.3e-4 against 2.3e-4. The lab's own phase-readout
    noise is part of the fitted phase noise; an extinction-ratio floor biases ``bs_error``
    up for well-balanced couplers.
    """

    device = "photonic_mzi"
    description = ("per-MZI set and measured phases (repeated reads), extinction ratios and insertion loss -> "
                   "phase_noise_rad, thermal_crosstalk, bs_error, insertion_loss_db, phase_bits")
    columns = (
        Column("mesh", "1", "index of the mesh on the chip (0, 1, ...)"),
        Column("mzi_column", "1", "mesh column of the MZI (0 = first column the light meets)"),
        Column("mzi_mode", "1", "upper waveguide the MZI couples; mode m and m+2 in a column are neighbours"),
        Column("read", "1", "repeat index: all MZIs of one read were programmed and measured together"),
        Column("theta_set_rad", "rad", "internal phase the DAC code sets (nominal, on the DAC grid), [0, 2 pi]"),
        Column("theta_meas_rad", "rad", "internal phase measured (e.g. from the MZI's fringe), [0, 2 pi]"),
        Column("phi_set_rad", "rad", "external phase the DAC code sets, [0, 2 pi]", required=False),
        Column("phi_meas_rad", "rad", "external phase measured, [0, 2 pi]", required=False),
        Column("er_bar_db", "dB", "extinction ratio of the bar port over a theta sweep (max/min power)",
               required=False),
        Column("er_cross_db", "dB", "extinction ratio of the cross port over a theta sweep", required=False),
        Column("loss_db", "dB", "insertion loss of the MZI alone, P_in - P_out (coupling de-embedded)",
               required=False),
    )
    fields = ("phase_noise_rad", "thermal_crosstalk", "crosstalk_calibrated", "bs_error", "insertion_loss_db",
              "phase_bits", "phase_quantization")

    #: Recovery at 120 MZIs x 20 reads (tests/devices/test_photonic_calibration.py): phase noise
    #: 5 %, coupler error 15 %, loss 0.02 dB, crosstalk 0.025 absolute (its jackknife error is
    #: ~25 % low, see above), the DAC grid and the crosstalk's calibration exactly.
    tolerances = {"phase_noise_rad": (0.0, 0.05), "thermal_crosstalk": (0.025, 0.0), "crosstalk_calibrated": (0.0, 0.0),
                  "bs_error": (0.0, 0.15), "insertion_loss_db": (0.02, 0.0), "phase_bits": (0.0, 0.0),
                  "phase_quantization": (0.0, 0.0)}
    #: A noisier chip with a voltage DAC of 6 bits, which ``check_device`` recovers besides the default.
    perturbed = {"phase_noise_rad": 0.03, "thermal_crosstalk": 0.12, "bs_error": 0.02, "insertion_loss_db": 0.8,
                 "phase_bits": 6, "phase_quantization": "voltage"}

    _INTEGER = ("mesh", "mzi_column", "mzi_mode", "read")
    _PAIRS = (("theta_set_rad", "theta_meas_rad"), ("phi_set_rad", "phi_meas_rad"), ("er_bar_db", "er_cross_db"))

    # ------------------------------------------------------------------ read / write
    def read(self, path: Path) -> Measurements:
        """Read and check a measurement CSV (columns: :attr:`columns`)."""
        data = read_csv_table(path, self.columns, integer=self._INTEGER)
        self._check(data, str(path))
        return data

    def write(self, data: Measurements, path: Path) -> None:
        """Write ``data`` as the CSV :meth:`read` reads (atomically)."""
        write_csv_table(data, self.columns, path)

    def _check(self, data: Measurements, where: str) -> None:
        """One-line :class:`MeasurementError` for wrong units, incomplete pairs or too few samples."""
        for a, b in self._PAIRS:
            if (a in data) != (b in data):
                have, lack = (a, b) if a in data else (b, a)
                raise MeasurementError(f"{where}: column {have} without {lack}; give both or neither")
        for name in ("mesh", "mzi_column", "mzi_mode", "read"):
            if np.any(np.asarray(data[name]) < 0):
                raise MeasurementError(f"{where}: column {name} has negative values; indices start at 0")
        for name in ("theta_set_rad", "theta_meas_rad", "phi_set_rad", "phi_meas_rad"):
            if name not in data:
                continue
            v = np.asarray(data[name], dtype=float)
            if v.max() > TWO_PI + 1e-3 or v.min() < -1e-3:
                hint = ("they look like degrees (up to 360): divide by 180/pi"
                        if v.min() >= -1e-3 and v.max() <= 360.0 + 1e-3 else "wrap them into [0, 2 pi)")
                raise MeasurementError(f"{where}: column {name} spans [{v.min():.4g}, {v.max():.4g}], outside "
                                       f"[0, 2 pi] rad; {hint}")
        if "loss_db" in data:
            v = np.asarray(data["loss_db"], dtype=float)
            if v.min() < -0.5:
                raise MeasurementError(f"{where}: column loss_db goes down to {v.min():.3g} dB; the insertion loss "
                                       "is P_in - P_out in dB, positive: flip the sign if you gave the transmission")
            if v.max() > 10.0:
                raise MeasurementError(f"{where}: column loss_db reaches {v.max():.3g} dB for one MZI (the model "
                                       "allows 0..10 dB); de-embed the fibre/grating coupling, or give dB not linear")
        for name in ("er_bar_db", "er_cross_db"):
            if name not in data:
                continue
            v = np.asarray(data[name], dtype=float)
            if v.min() < 0:
                raise MeasurementError(f"{where}: column {name} has negative values ({v.min():.3g}); the "
                                       "extinction ratio is max/min power in dB, >= 0")
            if v.max() > 100.0:
                raise MeasurementError(f"{where}: column {name} reaches {v.max():.4g}, above 100 dB: a linear "
                                       "ratio? give 10 log10(P_max / P_min)")
        keys = self._keys(data)
        n_mzi = len(np.unique(keys))
        if n_mzi < MIN_MZIS:
            raise MeasurementError(f"{where}: {n_mzi} MZIs, too few to fit; measure at least {MIN_MZIS} "
                                   f"(e.g. a 16-mode mesh's 120)")
        rows = np.stack([keys, np.asarray(data["read"])], 1)
        if len(np.unique(rows, axis=0)) != len(rows):
            raise MeasurementError(f"{where}: an MZI appears twice in one read; give each (mesh, mzi_column, "
                                   "mzi_mode, read) once")
        reads = np.bincount(np.unique(keys, return_inverse=True)[1])
        if reads.min() < MIN_READS:
            raise MeasurementError(f"{where}: some MZIs have {reads.min()} read(s); repeat every measurement at "
                                   f"least {MIN_READS} times (e.g. 20) to separate noise from static offsets")

    @staticmethod
    def _keys(data: Measurements) -> np.ndarray:
        """One integer per MZI: (mesh, column, mode) packed."""
        return (np.asarray(data["mesh"], np.int64) * 1_000_000 + np.asarray(data["mzi_column"], np.int64) * 1000
                + np.asarray(data["mzi_mode"], np.int64))

    # ------------------------------------------------------------------ generate
    def generate(self, config: Any, seed: int = 0, size: int | None = None) -> Measurements:
        """Characterisation of ``config``'s chip drawn from its own noise model.

        Meshes of ``config.block_size`` modes (whole meshes, at least ``size`` MZIs, default
        120) are programmed with random DAC codes (the config's ``phase_bits`` and
        ``phase_quantization``) and read :data:`DEFAULT_READS` times: each read is a fresh
        instance of :meth:`PhotonicMZILayer.realized_phases` (phase noise, quantisation and
        thermal crosstalk as the layer computes them); the couplers (``bs_error``) are those of
        the first instance, fixed for the chip, and give the extinction ratios; the loss is
        ``insertion_loss_db`` with an assumed per-MZI spread and power-meter noise
        (:data:`LOSS_SPREAD_DB`, :data:`LOSS_READ_NOISE_DB`).
        """
        import torch

        from .base import Mode
        from .registry import get_device_class

        cfg = config
        k = cfg.block_size
        m = mesh_layout(k).n_mzi
        n_mesh = -(-(size or DEFAULT_MZIS) // m)
        n_tiles = -(-n_mesh // 2)  # a tile has two meshes (U and V^T)
        layer = get_device_class(self.device)(cfg).layer(k, k * n_tiles)
        rng = np.random.default_rng(seed)
        levels = 2**cfg.phase_bits

        def codes(span: float, shape: tuple[int, ...]) -> np.ndarray:
            """Phases of random DAC codes whose level lies in [0, span]."""
            voltage = cfg.phase_quantization == "voltage"
            top = math.floor(levels * math.sqrt(span / TWO_PI) if voltage else levels * span / TWO_PI)
            n = rng.integers(0, min(top, levels - 1) + 1, size=shape)
            return TWO_PI * (n / levels) ** 2 if voltage else TWO_PI * n / levels

        # theta in [0, pi] and phi in [0, 2 pi), as clements.decompose programs them
        theta_set = codes(math.pi, (2 * n_tiles, m))
        phi_set = codes(TWO_PI, (2 * n_tiles, m))
        with torch.no_grad():
            layer.theta.copy_(torch.from_numpy(theta_set))
            layer.phi.copy_(torch.from_numpy(phi_set))
        layout = mesh_layout(k)
        col_of = np.concatenate([np.full(n, c) for c, (_, n) in enumerate(layout.columns)])
        mode_of = np.concatenate([first + 2 * np.arange(n) for first, n in layout.columns])
        theta_meas, phi_meas = [], []
        kappas = None
        for r in range(DEFAULT_READS):
            layer.draw_instance(int(seed) * 10_007 + r + 1)
            with torch.no_grad():
                ph = layer.realized_phases(Mode.INSTANCE)
            theta_meas.append(np.mod(ph["theta"].numpy()[:n_mesh], TWO_PI))
            phi_meas.append(np.mod(ph["phi"].numpy()[:n_mesh], TWO_PI))
            if kappas is None:
                if ph["kappa1"] is None:
                    kappas = (np.full((n_mesh, m), math.pi / 4),) * 2
                else:
                    kappas = (ph["kappa1"].numpy()[:n_mesh], ph["kappa2"].numpy()[:n_mesh])
        k1, k2 = kappas
        er_cross = 10 * np.log10((np.sin(k1 + k2) ** 2 + ER_FLOOR) / (np.sin(k1 - k2) ** 2 + ER_FLOOR))
        er_bar = 10 * np.log10((np.cos(k1 - k2) ** 2 + ER_FLOOR) / (np.cos(k1 + k2) ** 2 + ER_FLOOR))
        loss_mzi = cfg.insertion_loss_db + LOSS_SPREAD_DB * rng.standard_normal((n_mesh, m))
        rows = DEFAULT_READS * n_mesh * m
        mesh_idx = np.repeat(np.arange(n_mesh), m)
        out = {
            "mesh": np.tile(mesh_idx, DEFAULT_READS),
            "mzi_column": np.tile(col_of, DEFAULT_READS * n_mesh),
            "mzi_mode": np.tile(mode_of, DEFAULT_READS * n_mesh),
            "read": np.repeat(np.arange(DEFAULT_READS), n_mesh * m),
            "theta_set_rad": np.tile(theta_set[:n_mesh].ravel(), DEFAULT_READS),
            "theta_meas_rad": np.concatenate([t.ravel() for t in theta_meas]),
            "phi_set_rad": np.tile(phi_set[:n_mesh].ravel(), DEFAULT_READS),
            "phi_meas_rad": np.concatenate([p.ravel() for p in phi_meas]),
            "er_bar_db": np.tile(er_bar.ravel(), DEFAULT_READS),
            "er_cross_db": np.tile(er_cross.ravel(), DEFAULT_READS),
            "loss_db": np.clip(np.tile(loss_mzi.ravel(), DEFAULT_READS)
                               + LOSS_READ_NOISE_DB * rng.standard_normal(rows), 0.0, None),
        }
        return out

    # ------------------------------------------------------------------ fit
    def fit(self, data: Measurements) -> CalibrationFit:
        """Fit :attr:`fields` (see the class docstring for the estimators and uncertainties)."""
        self._check(data, "measurements")
        g = _Grid(data)
        rng = np.random.default_rng(0)
        overrides: dict[str, Any] = {}
        uncertainty: dict[str, float] = {}
        notes: list[str] = []
        held: list[str] = []

        grid = _dac_grid(np.concatenate([g.set[kind][np.isfinite(g.set[kind])] for kind in g.kinds]))
        if grid is None:
            held += ["phase_bits", "phase_quantization"]
            notes.append(f"set phases lie on no DAC grid of <= {MAX_GRID_BITS} bits: phase_bits and "
                         "phase_quantization held; give the DAC codes' nominal phases in *_set_rad")
        else:
            overrides["phase_bits"], overrides["phase_quantization"] = grid[0], grid[1]

        est = _phase_fit(g, np.arange(g.n_read))
        # jackknife over reads: leave each read out once
        jack = np.array([_phase_fit(g, np.delete(np.arange(g.n_read), r))[:2] for r in range(g.n_read)])
        jse = np.sqrt((g.n_read - 1) / g.n_read * ((jack - jack.mean(0)) ** 2).sum(0))
        sigma, c, calibrated, beta_z = est
        overrides["phase_noise_rad"] = float(sigma)
        uncertainty["phase_noise_rad"] = float(jse[0])
        if g.n_pair_samples < MIN_PAIR_SAMPLES and calibrated:
            held += ["thermal_crosstalk", "crosstalk_calibrated"]
            notes.append(f"{g.n_pair_samples} neighbour-pair reads (< {MIN_PAIR_SAMPLES}): thermal_crosstalk held; "
                         "measure whole mesh columns")
        else:
            overrides["thermal_crosstalk"] = float(c)
            uncertainty["thermal_crosstalk"] = float(jse[1])
            overrides["crosstalk_calibrated"] = bool(calibrated)
            notes.append("crosstalk: " + ("only the phase errors leak to neighbours (crosstalk_calibrated=True); "
                                          f"slope on the neighbours' set phases {beta_z:.1f} SE" if calibrated else
                                          f"the programmed phases leak to neighbours ({beta_z:.1f} SE): "
                                          "crosstalk_calibrated=False"))

        if g.er is not None:
            q = g.er  # per-MZI mean squared split-ratio deviation
            overrides["bs_error"] = float(math.sqrt(q.mean()))
            bq = [math.sqrt(q[rng.integers(0, len(q), len(q))].mean()) for _ in range(N_BOOT)]
            uncertainty["bs_error"] = float(np.std(bq, ddof=1))
        else:
            held.append("bs_error")
        if g.loss is not None:
            overrides["insertion_loss_db"] = float(g.loss.mean())
            bl = [g.loss[rng.integers(0, len(g.loss), len(g.loss))].mean() for _ in range(N_BOOT)]
            uncertainty["insertion_loss_db"] = float(np.std(bl, ddof=1))
        else:
            held.append("insertion_loss_db")
        if held:
            notes.append(f"held (no data for them): {', '.join(held)}")
        notes.append("not identified by this characterisation, held: detector_noise, receiver and laser fields, "
                     "heater_p_pi_mw and the *_scale cost factors")
        if "insertion_loss_db" in overrides:  # the model's range
            overrides["insertion_loss_db"] = float(np.clip(overrides["insertion_loss_db"], 0.0, 10.0))
        return CalibrationFit(
            device=self.device,
            overrides=overrides,
            uncertainty=uncertainty,
            samples={"mzis": g.n_mzi, "reads": g.n_read, "rows": int(len(np.asarray(data["read"]))),
                     "neighbour_pair_reads": g.n_pair_samples},
            notes=tuple(notes),
        )

    # ------------------------------------------------------------------ plot
    def plot(self, data: Measurements, fit: CalibrationFit, path: Path) -> None:
        """Four panels: read-to-read phase deviations against the fitted Gaussian, neighbours'
        deviations against the fitted correlation, coupler split deviations against
        ``bs_error``, per-MZI losses against ``insertion_loss_db``."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        g = _Grid(data)
        ov = fit.overrides
        fig = Figure(figsize=(10, 7.5))
        FigureCanvasAgg(fig)
        axes = fig.subplots(2, 2)
        sigma = ov.get("phase_noise_rad")
        c = ov.get("thermal_crosstalk", 0.0)
        dev = np.concatenate([g.dev(kind, np.arange(g.n_read), ov.get("crosstalk_calibrated", True) is False,
                                    c).ravel() for kind in g.kinds])
        dev = dev[np.isfinite(dev)]
        ax = axes[0, 0]
        ax.hist(dev, bins=60, density=True, color="0.7", label="measured - set (own mean removed)")
        if sigma:
            s_eff = sigma * math.sqrt(1 + c**2 * g.mean_neighbours)
            x = np.linspace(dev.min(), dev.max(), 200)
            ax.plot(x, np.exp(-0.5 * (x / s_eff) ** 2) / (s_eff * math.sqrt(TWO_PI)), "C0",
                    label=f"model: sigma={sigma:.3g} rad, crosstalk {c:.3g}")
        ax.set(xlabel="phase deviation (rad)", ylabel="density", title="phase noise")
        ax.legend(fontsize=7)
        ax = axes[0, 1]
        a, b = g.pair_deviations(ov.get("crosstalk_calibrated", True) is False, c)
        if len(a):
            ax.plot(a, b, ".", ms=2, alpha=0.4, color="0.5", label="neighbour pairs, same read")
            lim = np.percentile(np.abs(np.concatenate([a, b])), 99.5)
            rho = 2 * c / (1 + c**2 * g.mean_neighbours)
            ax.plot([-lim, lim], [-rho * lim, rho * lim], "C1", label=f"model: correlation {rho:.3g}")
            ax.set(xlim=(-lim, lim), ylim=(-lim, lim))
        ax.set(xlabel="deviation of MZI (rad)", ylabel="deviation of its neighbour (rad)", title="thermal crosstalk")
        ax.legend(fontsize=7)
        ax = axes[1, 0]
        if g.split is not None:
            ax.hist(g.split, bins=30, density=True, color="0.7", label="|split ratio - 0.5| per coupler")
            bs = ov.get("bs_error")
            if bs:
                x = np.linspace(0, g.split.max() * 1.1, 200)
                ax.plot(x, 2 * np.exp(-0.5 * (x / bs) ** 2) / (bs * math.sqrt(TWO_PI)), "C2",
                        label=f"model: half-normal, bs_error={bs:.3g}")
            ax.legend(fontsize=7)
        ax.set(xlabel="split-ratio deviation", ylabel="density", title="couplers (from extinction ratios)")
        ax = axes[1, 1]
        if g.loss is not None:
            ax.hist(g.loss, bins=30, color="0.7", label="per-MZI loss (mean of reads)")
            ax.axvline(ov.get("insertion_loss_db", np.nan), color="C3",
                       label=f"model: {ov.get('insertion_loss_db', float('nan')):.3g} dB per MZI")
            ax.legend(fontsize=7)
        ax.set(xlabel="insertion loss (dB)", ylabel="MZIs", title="insertion loss")
        fig.suptitle(f"photonic_mzi calibration: {g.n_mzi} MZIs x {g.n_read} reads")
        fig.tight_layout()
        write_figure(fig, Path(path))


# ---------------------------------------------------------------------- estimators
class _Grid:
    """The measurements as ``[MZI, read]`` grids (NaN where an MZI missed a read)."""

    def __init__(self, data: Measurements) -> None:
        keys = PhotonicMZICalibrator._keys(data)
        ukeys, mzi = np.unique(keys, return_inverse=True)
        ureads, read = np.unique(np.asarray(data["read"]), return_inverse=True)
        self.n_mzi, self.n_read = len(ukeys), len(ureads)
        self.kinds = [k for k in ("theta", "phi") if f"{k}_set_rad" in data]
        self.set: dict[str, np.ndarray] = {}
        self.res: dict[str, np.ndarray] = {}
        self.nb_sum: dict[str, np.ndarray] = {}
        for kind in self.kinds:
            s = np.full((self.n_mzi, self.n_read), np.nan)
            meas = s.copy()
            s[mzi, read] = np.asarray(data[f"{kind}_set_rad"], float)
            meas[mzi, read] = np.asarray(data[f"{kind}_meas_rad"], float)
            self.set[kind] = s
            self.res[kind] = np.mod(meas - s + math.pi, TWO_PI) - math.pi  # wrapped into [-pi, pi)
        # neighbours: same mesh and column, modes m and m + 2
        index = {int(key): i for i, key in enumerate(ukeys)}
        pairs = [(i, index[int(key) + 2]) for i, key in enumerate(ukeys) if int(key) + 2 in index]
        self.pairs = np.array(pairs, dtype=np.int64).reshape(-1, 2)
        counts = np.bincount(self.pairs.ravel(), minlength=self.n_mzi)
        self.mean_neighbours = float(counts.mean())
        for kind in self.kinds:
            wrapped = np.mod(self.set[kind], TWO_PI)
            nb = np.zeros_like(wrapped)
            np.add.at(nb, self.pairs[:, 0], wrapped[self.pairs[:, 1]])
            np.add.at(nb, self.pairs[:, 1], wrapped[self.pairs[:, 0]])
            self.nb_sum[kind] = nb
        self.n_pair_samples = int(len(self.pairs) * self.n_read * len(self.kinds))
        self.er = self.split = None
        if "er_bar_db" in data:
            eb = _per_mzi(mzi, np.asarray(data["er_bar_db"], float), self.n_mzi)
            ec = _per_mzi(mzi, np.asarray(data["er_cross_db"], float), self.n_mzi)
            d1, d2 = _coupler_deviations(eb, ec)
            self.er = (d1**2 + d2**2) / 2
            self.split = np.abs(np.concatenate([d1, d2]))
        self.loss = _per_mzi(mzi, np.asarray(data["loss_db"], float), self.n_mzi) if "loss_db" in data else None

    def dev(self, kind: str, reads: np.ndarray, leak: bool, c: float) -> np.ndarray:
        """Read-to-read deviations ``[MZI, len(reads)]``: the residual less the programmed
        phases' leak (``leak``) and less each MZI's own mean over the reads."""
        r = self.res[kind][:, reads] - (c * self.nb_sum[kind][:, reads] if leak else 0.0)
        return r - np.nanmean(r, axis=1, keepdims=True)

    def pair_deviations(self, leak: bool, c: float) -> tuple[np.ndarray, np.ndarray]:
        """Deviations of neighbour pairs in the same read (all kinds), for the plot."""
        a, b = [], []
        for kind in self.kinds:
            d = self.dev(kind, np.arange(self.n_read), leak, c)
            a.append(d[self.pairs[:, 0]].ravel())
            b.append(d[self.pairs[:, 1]].ravel())
        a_, b_ = np.concatenate(a), np.concatenate(b)
        ok = np.isfinite(a_) & np.isfinite(b_)
        return a_[ok], b_[ok]


def _per_mzi(mzi: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """Mean over reads of one value per row, per MZI."""
    return np.bincount(mzi, weights=values, minlength=n) / np.bincount(mzi, minlength=n)


def _coupler_deviations(er_bar_db: np.ndarray, er_cross_db: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split-ratio deviations ``sin^2(kappa) - 0.5`` of both couplers of each MZI (up to sign
    and order) from its extinction ratios ``ER_cross = sin^2(s)/sin^2(d)``,
    ``ER_bar = cos^2(d)/cos^2(s)`` with ``s = k1 + k2``, ``d = k1 - k2`` (solved by a few
    fixed-point steps, exact for ``ER > 1``)."""
    erb, erc = 10 ** (er_bar_db / 10), 10 ** (er_cross_db / 10)
    sin2_d, cos2_s = 1 / erc, 1 / erb
    for _ in range(8):
        sin2_d = (1 - cos2_s) / erc
        cos2_s = (1 - sin2_d) / erb
    d = np.arcsin(np.sqrt(np.clip(sin2_d, 0, 1)))
    e_sum = np.arcsin(np.sqrt(np.clip(cos2_s, 0, 1)))  # |k1 + k2 - pi/2|
    e1, e2 = (e_sum + d) / 2, (e_sum - d) / 2
    return 0.5 * np.sin(2 * e1), 0.5 * np.sin(2 * e2)


def _phase_fit(g: _Grid, reads: np.ndarray) -> tuple[float, float, bool, float]:
    """``(phase_noise_rad, thermal_crosstalk, crosstalk_calibrated, slope z-score)`` from the reads
    ``reads`` (indices, repeats allowed: the bootstrap)."""
    # does the programmed phases' heat leak? residual ~ a + beta * (neighbours' set phases)
    ys, xs = [], []
    for kind in g.kinds:
        y, x = g.res[kind][:, reads].ravel(), g.nb_sum[kind][:, reads].ravel()
        ok = np.isfinite(y)
        ys.append(y[ok])
        xs.append(x[ok])
    y, x = np.concatenate(ys), np.concatenate(xs)
    beta, z = 0.0, 0.0
    if len(g.pairs) and x.std() > 0:
        xc = x - x.mean()
        beta = float((xc * (y - y.mean())).sum() / (xc**2).sum())
        resid = y - y.mean() - beta * xc
        se = float(np.sqrt((resid**2).sum() / max(len(y) - 2, 1) / (xc**2).sum()))
        z = beta / se if se > 0 else 0.0
    leak = z > 5.0 and beta > 1e-3
    c_leak = float(np.clip(beta, 0.0, 0.5)) if leak else 0.0
    n = len(reads)
    corr = n / max(n - 1, 1)  # each MZI's own mean is removed: unbiased (co)variances
    var_sum = var_n = cov_sum = cov_n = 0.0
    for kind in g.kinds:
        d = g.dev(kind, reads, leak, c_leak)
        ok = np.isfinite(d)
        var_sum += float(np.sum(d[ok] ** 2))
        var_n += int(ok.sum())
        if len(g.pairs):
            p = d[g.pairs[:, 0]] * d[g.pairs[:, 1]]
            okp = np.isfinite(p)
            cov_sum += float(np.sum(p[okp]))
            cov_n += int(okp.sum())
    var = var_sum / max(var_n, 1) * corr
    if leak:
        c = c_leak
    elif cov_n and var > 0:
        rho = cov_sum / cov_n * corr / var
        nbar = g.mean_neighbours
        # rho = 2c / (1 + c^2 nbar): the root in [0, 1/sqrt(nbar)]
        c = 0.0 if rho <= 0 else float((1 - math.sqrt(max(1 - rho**2 * nbar, 0.0))) / (rho * nbar))
        c = min(c, 0.5)
    else:
        c = 0.0
    sigma = math.sqrt(max(var, 0.0) / (1 + c**2 * g.mean_neighbours))
    return sigma, c, not leak, z


def _dac_grid(phases: np.ndarray) -> tuple[int, str] | None:
    """``(bits, 'phase' | 'voltage')`` of the coarsest DAC grid holding every phase, or None."""
    x = np.mod(phases, TWO_PI)
    x = np.where(TWO_PI - x < GRID_TOL_RAD, 0.0, x)
    for bits in range(1, MAX_GRID_BITS + 1):
        n = 2**bits
        step = TWO_PI / n
        if np.all(np.abs(x - np.round(x / step) * step) < GRID_TOL_RAD):
            return bits, "phase"
        level = np.round(np.sqrt(x / TWO_PI) * n)
        if np.all(np.abs(TWO_PI * (level / n) ** 2 - x) < GRID_TOL_RAD):
            return bits, "voltage"
    return None
