"""Co-design search (Ray Tune + Optuna), Pareto fronts and plots.

* :mod:`search.space` -- dictionary family, PCA rank and a device's ``search_space()`` as an
  Optuna define-by-run space (nothing device-specific: plugins are searchable by name);
* :mod:`search.objective` -- the pure, seeded objective (config dict -> metrics), no Ray;
* :mod:`search.runner` -- the Ray Tune driver: ``OptunaSearch`` on two objectives, trial log,
  resume, progress, test-set scoring of the front, outputs (the only module that knows Ray);
* :mod:`search.pareto` -- the front and its knee; :mod:`search.plots` -- the figures;
  :mod:`search.outputs` -- trials.csv, front.csv/json/md, atomically;
* :mod:`search.cli` -- ``codesign search`` and ``codesign pareto``.
"""

from .pareto import knee_point, pareto_front

__all__ = ["knee_point", "pareto_front"]
