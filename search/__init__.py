"""Co-design search (Ray Tune + Optuna), Pareto fronts and plots.

* :mod:`codesign.search.space` -- dictionary family, PCA rank and a device's ``search_space()`` as an
  Optuna define-by-run space (nothing device-specific: plugins are searchable by name);
* :mod:`codesign.search.objective` -- the pure, seeded objective (config dict -> metrics), no Ray;
* :mod:`codesign.search.runner` -- the Ray Tune driver: ``OptunaSearch`` on two objectives, trial log,
  resume, progress, test-set scoring of the front, outputs (the only module that starts Ray);
* :mod:`codesign.search.asha` -- multi-fidelity for aware searches: rungs over the aware steps and the
  two-objective successive-halving rule (a Tune scheduler built on first use);
* :mod:`codesign.search.pareto` -- the front and its knee; :mod:`codesign.search.plots` -- the figures;
  :mod:`codesign.search.outputs` -- trials.csv, front.csv/json/md, atomically;
* :mod:`codesign.search.config` -- :class:`SearchConfig`, the typed settings of a search;
* :mod:`codesign.search.report` -- ``codesign pareto``: fronts of finished searches, plotted.

The command line itself lives in :mod:`codesign.cli`.
"""

if __name__ != "codesign.search":
    # This folder sits at the repository root but installs as ``codesign.search``. Run from the root,
    # ``import search`` would otherwise load a second copy of it under a generic name, whose
    # classes are not the installed ones (isinstance checks and registries would disagree).
    raise ModuleNotFoundError(
        f"No module named {__name__!r}: this folder is the package 'codesign.search'; import that instead",
        name=__name__,
    )


from .config import SearchConfig
from .objective import run_trial
from .outputs import load_search
from .pareto import knee_point, pareto_front
from .plots import plot_breakdown, plot_fronts
from .report import pareto_command
from .runner import run_search

__all__ = ["SearchConfig", "knee_point", "load_search", "pareto_command", "pareto_front", "plot_breakdown",
           "plot_fronts", "run_search", "run_trial"]
