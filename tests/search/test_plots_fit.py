"""Every text of a plot lies inside its figure: long legend labels, titles, dataset paths and the
knee's label are moved or wrapped, never cut off (search/plots.py: keep_texts_inside)."""

from __future__ import annotations

import pytest

from codesign.search import plots

LONG = "a-very-long-device-plugin-name-from-a-third-party-package"


def _summary(device=LONG, dataset="/data/projects/" + "deeply/nested/" * 6 + "measurements.csv", n=6, trial0=0):
    front = []
    for i in range(n):
        front.append({
            "trial": trial0 + i, "cost": 10.0 * 2 ** i, "val_hw_accuracy": 0.5 + 0.08 * i,
            "test_hw_accuracy": 0.49 + 0.08 * i,
            "describe": "monomial(degree=3), r=48, pca on device, " + ", ".join(f"field_{k}=value_{k}" for k in range(8)),
            "config": {"dictionary": "monomial", "pca_rank": 48, "monomial": {"degree": 3},
                       "device": {f"field_{k}": k for k in range(8)}, "pca_placement": "device"},
            "costs": {"pca_energy_pj": 1.0 * 2 ** i, "lift_energy_pj": 2.0, "conversion_energy_pj": 3.0,
                      "matrix_energy_pj": 4.0 * 2 ** i},
        })
    points = [{"trial": p["trial"], "cost": p["cost"], "hw_accuracy": p["val_hw_accuracy"], "feasible": True,
               "on_front": True} for p in front]
    points.append({"trial": 99, "cost": 900.0, "hw_accuracy": 0.3, "feasible": False, "on_front": False})
    return {"dataset": dataset, "device": device, "protocol": "aware", "method": "kd", "teacher": "pkg.module:factory",
            "cost_key": "energy_pj", "points": points, "front": front, "knee": front[n - 2]["trial"],
            "constraints": {"max_cost": 500.0, "min_accuracy": None}, "n_trials": 40, "n_completed": 38,
            "n_failed": 1, "n_infeasible": 1}


@pytest.fixture
def figures(monkeypatch):
    """The figures the plot functions write, captured after they are saved."""
    seen = []
    save = plots._save

    def keep(fig, path):
        seen.append(fig)
        return save(fig, path)

    monkeypatch.setattr(plots, "_save", keep)
    return seen


@pytest.mark.parametrize("case", ["single", "several", "title", "breakdown"])
def test_every_text_lies_inside_the_figure(case, figures, tmp_path):
    one, two = _summary(), _summary(device=LONG + "-second", trial0=50)
    if case == "single":
        plots.plot_fronts([one], tmp_path / "p.png")
    elif case == "several":
        plots.plot_fronts([one, two], tmp_path / "p.png", labels=[LONG * 2, LONG * 3])
    elif case == "title":
        plots.plot_fronts([one], tmp_path / "p.png", title=" ".join(["a long custom title"] * 12))
    else:
        plots.plot_breakdown([one, two], tmp_path / "p.png", labels=[LONG * 3, "b"])
    (fig,) = figures
    assert plots.texts_outside(fig) == []
    assert (tmp_path / "p.png").stat().st_size > 10_000 and (tmp_path / "p.pdf").is_file()


def test_without_the_fix_these_texts_run_off(figures, tmp_path, monkeypatch):
    """The check can fail: with keep_texts_inside disabled, the same figures lose text off their edges."""
    monkeypatch.setattr(plots, "keep_texts_inside", lambda fig: None)
    plots.plot_fronts([_summary()], tmp_path / "a.png", labels=[LONG * 3])
    plots.plot_fronts([_summary()], tmp_path / "b.png", title=" ".join(["a long custom title"] * 12))
    assert all(plots.texts_outside(fig) for fig in figures)


def test_the_knee_label_slides_back_inside(tmp_path):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4, 3), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1])
    note = ax.annotate("knee: a label of some length", xy=(0.9, 0.9), xytext=(0.95, 0.5), textcoords="axes fraction",
                       bbox={"boxstyle": "round"})
    assert plots.texts_outside(fig)
    plots.keep_texts_inside(fig)
    assert plots.texts_outside(fig) == [] and note.xyann[0] < 0.95 and note.get_text() == "knee: a label of some length"
