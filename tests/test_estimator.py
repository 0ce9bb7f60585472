"""codesign.KoopmanStudent: scikit-learn's estimator checks, every one run, and the pipeline behind it."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from codesign import KoopmanStudent
from codesign.errors import ConfigError

pytestmark = pytest.mark.usefixtures("one_thread")


def _array_api_check_in_a_subprocess(estimator, check) -> None:
    """scikit-learn's array-API check needs ``SCIPY_ARRAY_API=1`` before SciPy is imported (it skips
    itself otherwise); setting it in this process would change SciPy for every other test, so the check
    runs in a fresh interpreter with it set."""
    params = {k: v for k, v in estimator.get_params().items()}
    code = (
        "from sklearn.utils.estimator_checks import check_array_api_input\n"
        "from codesign import KoopmanStudent\n"
        f"check_array_api_input('KoopmanStudent', KoopmanStudent(**{params!r}), **{dict(check.keywords)!r})\n"
        "print('ok')\n")
    env = {**os.environ, "SCIPY_ARRAY_API": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-3000:]


# Two students: without a teacher (labels), and distilled from the built-in mlp teacher trained on each
# check's data (two epochs: the checks' data sets are tiny, and each one trains its own teacher).
@parametrize_with_checks([KoopmanStudent(pca_rank=4, method="labels"),
                          KoopmanStudent(pca_rank=4, teacher_epochs=2)])
def test_sklearn_estimator_checks(estimator, check):
    if getattr(check, "func", check).__name__ == "check_array_api_input":
        _array_api_check_in_a_subprocess(estimator, check)
    else:
        check(estimator)


@pytest.fixture(scope="module")
def digits_split():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    return train_test_split(X / 16.0, y, test_size=0.25, random_state=0)


def test_kd_student_matches_run_distill_and_beats_labels(digits_split):
    X_tr, X_te, y_tr, y_te = digits_split
    kd = KoopmanStudent(pca_rank=12, teacher_epochs=20).fit(X_tr, y_tr)
    assert kd.pca_rank_ == 12 and kd.coef_.shape == (10, 91) and kd.n_features_in_ == 64
    assert kd.fit_metrics_["method"] == "kd" and kd.fit_metrics_["teacher_test_accuracy"] > 0.95
    assert kd.score(X_te, y_te) > 0.93
    proba = kd.predict_proba(X_te)
    np.testing.assert_allclose(proba.sum(1), 1.0, atol=1e-12)
    np.testing.assert_array_equal(kd.classes_[proba.argmax(1)], kd.predict(X_te))
    # the estimator is run_distill: its float logits are the saved student's, to float32 rounding
    st = kd.saved_student()
    np.testing.assert_allclose(st.logits(X_te.astype(np.float32)).numpy(), kd.decision_function(X_te), atol=1e-4)


def test_given_teacher_logits_and_string_labels(digits_split):
    X_tr, X_te, y_tr, y_te = digits_split
    names = np.array(list("abcdefghij"))
    rng = np.random.default_rng(0)
    logits = np.eye(10)[y_tr] * 5 + rng.normal(0, 0.1, (len(y_tr), 10))  # a confident, right teacher
    st = KoopmanStudent(pca_rank=10).fit(X_tr, names[y_tr], teacher_logits=logits)
    assert st.fit_metrics_["teacher"] == "given logits" and list(st.classes_) == list(names)
    assert set(st.predict(X_te)) <= set(names) and st.score(X_te, names[y_te]) > 0.9
    with pytest.raises(ValueError, match=r"teacher_logits has shape \[1347, 3\]; expected \[n_samples, n_classes\]"):
        KoopmanStudent().fit(X_tr, y_tr, teacher_logits=logits[:, :3])


def test_device_evaluation_cost_save_and_export(digits_split, tmp_path):
    from codesign import load_student

    X_tr, X_te, y_tr, y_te = digits_split
    st = KoopmanStudent(pca_rank=8, method="labels", device="photonic_mzi", hw_draws=2).fit(X_tr, y_tr)
    accs = st.hw_accuracy(X_te, y_te)
    assert len(accs) == 2 and all(0.8 < a <= 1.0 for a in accs)
    assert st.hw_score(X_te, y_te) == pytest.approx(np.mean(accs))
    assert st.cost_["energy_pj"] > 0 and st.fit_metrics_["device"] == "photonic_mzi"
    saved = load_student(st.save(tmp_path / "student.pt"))
    assert saved.hw_accuracy(X_te, y_te, 2, 0, st.fit_metrics_["eval_time_s"]) == accs
    bundle = st.export(tmp_path / "bundle")
    assert (tmp_path / "bundle" / "export.json").is_file()
    agree = (bundle.predict(X_te.astype(np.float32)) == st.predict(X_te)).mean()
    assert agree > 0.97
    with pytest.raises(ConfigError, match="hw_accuracy needs a device"):
        KoopmanStudent(pca_rank=4, method="labels").fit(X_tr, y_tr).hw_accuracy(X_te, y_te)


def test_bad_parameters_are_config_errors_at_fit(digits_split):
    X_tr, _, y_tr, _ = digits_split
    with pytest.raises(ConfigError, match="method='svm'"):
        KoopmanStudent(method="svm").fit(X_tr, y_tr)
    with pytest.raises(ConfigError, match="teacher='cnn' is convolutional and needs images"):
        KoopmanStudent(teacher="cnn").fit(X_tr, y_tr)


def test_grid_search_and_pipeline(digits_split):
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import MinMaxScaler

    X_tr, X_te, y_tr, y_te = digits_split
    grid = GridSearchCV(make_pipeline(MinMaxScaler(), KoopmanStudent(method="labels")),
                        {"koopmanstudent__pca_rank": [2, 10]}, cv=2).fit(X_tr[:600], y_tr[:600])
    assert grid.best_params_ == {"koopmanstudent__pca_rank": 10} and grid.score(X_te, y_te) > 0.9


def test_device_lift_placement_fits_scores_and_clones(digits_split, tmp_path):
    from sklearn.base import clone

    from codesign import load_student

    X_tr, X_te, y_tr, y_te = digits_split
    st = KoopmanStudent(pca_rank=8, method="labels", device="analog_crossbar", lift_placement="device",
                        dictionary="relu", dictionary_params={"features": 64}, hw_draws=2).fit(X_tr, y_tr)
    assert st.get_params()["lift_placement"] == "device"
    assert st.fit_metrics_["lift_placement"] == "device"
    assert st.fit_metrics_["dictionary"] == "analog_crossbar.relu(features=64)"
    assert st.coef_.shape == (10, 1 + 8 + 64)
    assert st.score(X_te, y_te) > 0.93  # measured 0.956 (the exact ReLU features)
    accs = st.hw_accuracy(X_te, y_te)  # the lift's noise and ADC in every draw: measured 0.931, 0.920
    assert len(accs) == 2 and all(0.88 < a < st.score(X_te, y_te) for a in accs) and accs[0] != accs[1]
    assert load_student(st.save(tmp_path / "student.pt")).hw_accuracy(X_te, y_te, 2, 0,
                                                                     st.fit_metrics_["eval_time_s"]) == accs
    # the lift is priced on the device, not the host
    assert st.cost_["placement"]["lift"] == "device" and st.cost_["stages"]["lift"]["runs_on"] == "device"
    assert st.cost_["lift_device"]["lift_features"] == 64.0
    twin = clone(st)
    assert twin.get_params() == st.get_params() and not hasattr(twin, "coef_")
    with pytest.raises(ConfigError, match=r"lift_placement='chip': expected one of host, device"):
        KoopmanStudent(method="labels", device="analog_crossbar", lift_placement="chip").fit(X_tr, y_tr)
    with pytest.raises(ConfigError, match=r"lift_placement='device' computes the lift on a device: give --device"):
        KoopmanStudent(method="labels", lift_placement="device").fit(X_tr, y_tr)
    with pytest.raises(ConfigError, match=r"device 'analog_crossbar' cannot compute the dictionary 'cosine'.*relu"):
        KoopmanStudent(method="labels", device="analog_crossbar", lift_placement="device",
                       dictionary="cosine").fit(X_tr, y_tr)
