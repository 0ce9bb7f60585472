"""Linear students: EDMD against numpy, L-BFGS fits on digits, the stopping rule, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from codesign.errors import ConfigError, NumericalError
from codesign.features import build_features
from codesign.losses import KDTargets, kd_loss
from codesign.students import AWARE_STEPS, FitConfig, LinearStudent, fit_through_device

pytestmark = pytest.mark.usefixtures("one_thread")  # small tensors: one thread is fastest on a shared machine


@pytest.fixture(scope="module")
def small():
    rng = np.random.default_rng(0)
    psi = np.c_[np.ones(60), rng.standard_normal((60, 7))].astype(np.float32)
    logits = rng.standard_normal((60, 4)).astype(np.float32) * 2
    labels = logits.argmax(1)
    return torch.from_numpy(psi), torch.from_numpy(labels), torch.from_numpy(logits)


@pytest.fixture(scope="module")
def lifted(digits):
    """r=10, d=2 monomial features of digits (66 columns)."""
    return build_features(digits.x_train, digits.x_test, 10, "monomial", {"degree": 2})


@pytest.fixture(scope="module")
def data(digits, digits_teacher):
    return (torch.from_numpy(digits.y_train), torch.from_numpy(digits.y_test),
            torch.from_numpy(digits_teacher.train_logits))


def fit(method, psi, y, t, **kw):
    return LinearStudent(FitConfig(method=method, **kw)).fit(psi, y, t)


# --------------------------------------------------------------------------- naive (EDMD)


@pytest.mark.parametrize("target", ["logits", "probs"])
def test_naive_equals_numpy_lstsq(small, target):
    psi, y, t = small
    s = fit("naive", psi, y, t, naive_target=target)
    rhs = t.double().numpy() if target == "logits" else torch.softmax(t.double(), 1).numpy()
    ref, *_ = np.linalg.lstsq(psi.double().numpy(), rhs, rcond=None)
    assert s.K_.shape == (4, 8) and s.K_.dtype == torch.float32
    assert np.allclose(s.K_.numpy(), ref.T, atol=1e-5)
    assert s.info_.extra["naive_target"] == target


def test_naive_condition_number(small):
    psi, y, t = small
    s = fit("naive", psi, y, t)
    G = psi.double().numpy().T @ psi.double().numpy() / 60
    assert s.info_.condition_number > 1
    assert s.info_.condition_number == pytest.approx(np.linalg.cond(G), rel=1e-6)
    assert s.info_.as_dict()["condition_number"] == s.info_.condition_number


def test_naive_rank_deficient_features_use_the_pseudo_inverse(small):
    psi, y, t = small
    dup = torch.cat([psi, psi[:, 1:2]], 1)  # a repeated column: G is singular
    s = fit("naive", dup, y, t, naive_target="logits")
    assert s.info_.condition_number > 1e8
    # Same predictions as the full-rank fit: the minimum-norm solution splits the weight.
    assert torch.allclose(s.logits(dup), fit("naive", psi, y, t, naive_target="logits").logits(psi), atol=1e-4)
    assert torch.allclose(s.K_[:, 1], s.K_[:, -1], atol=1e-5)


def test_naive_condition_number_grows_with_degree(digits, data):
    y, _, t = data
    conds = []
    for degree in (1, 2, 3):
        f = build_features(digits.x_train, digits.x_test, 8, "monomial", {"degree": degree})
        conds.append(fit("naive", f.train, y, t).info_.condition_number)
    assert conds[0] < conds[1] < conds[2]
    assert conds[0] == pytest.approx(1.0, abs=1e-3)  # standardised, decorrelated PCA scores


# --------------------------------------------------------------------------- L-BFGS fits on digits


def test_labels_and_kd_reach_high_accuracy(lifted, data):
    y, y_test, t = data
    for method in ("labels", "kd"):
        s = fit(method, lifted.train, y, t)
        assert s.accuracy(lifted.test, y_test) > 0.95, method
        assert s.accuracy(lifted.train, y) > 0.98, method
        assert s.K_.shape == (10, 66) and torch.isfinite(s.K_).all()
        assert s.info_.final_loss is not None and s.info_.iterations > 0


@pytest.mark.parametrize("rank", [5, 10])
def test_kd_beats_naive_on_digits(digits, data, rank):
    y, y_test, t = data
    f = build_features(digits.x_train, digits.x_test, rank, "monomial", {"degree": 2})
    naive = fit("naive", f.train, y, t).accuracy(f.test, y_test)
    kd = fit("kd", f.train, y, t).accuracy(f.test, y_test)
    assert kd > naive + 0.01, (kd, naive)


def test_kd_student_mimics_the_teacher(lifted, data, digits_teacher):
    y, _, t = data
    s = fit("kd", lifted.train, y, t)
    agree = (s.logits(lifted.test).argmax(1).numpy() == digits_teacher.test_logits.argmax(1)).mean()
    assert agree > 0.95


def test_final_loss_is_the_reported_objective(lifted, data):
    y, _, t = data
    s = fit("kd", lifted.train, y, t, temperature=3.0, alpha=0.6)
    manual = kd_loss(lifted.train @ s.K_.T, KDTargets(t, y, 3.0, 0.6))
    assert s.info_.final_loss == pytest.approx(float(manual), rel=1e-5)
    s = fit("labels", lifted.train, y, t)
    assert s.config.l2 == 1e-4 and s.config.effective_alpha == 0.0
    manual = kd_loss(lifted.train @ s.K_.T, KDTargets(None, y, 2.0, 0.0)) + 0.5e-4 * s.K_.square().sum()
    assert s.info_.final_loss == pytest.approx(float(manual), rel=1e-5)


def test_lbfgs_stopping_rule_stops_early(lifted, data):
    y, _, t = data
    default = fit("kd", lifted.train, y, t)  # tol 5e-3, max_iter 200
    assert 0 < default.info_.iterations < 200
    tight = fit("kd", lifted.train, y, t, tol=1e-5)
    assert tight.info_.iterations > default.info_.iterations
    assert tight.info_.final_loss <= default.info_.final_loss
    # Each extra iteration of the tight fit gained less than tol (relative) on average.
    gain = (default.info_.final_loss - tight.info_.final_loss) / tight.info_.final_loss
    assert gain < 5e-3 * (tight.info_.iterations - default.info_.iterations)


@pytest.mark.parametrize("max_iter", [1, 3, 7])
def test_lbfgs_iteration_cap(lifted, data, max_iter):
    y, _, t = data
    s = fit("kd", lifted.train, y, t, tol=0.0, max_iter=max_iter)
    assert s.info_.iterations == max_iter


def test_warm_start_from_a_solution_needs_few_iterations(lifted, data):
    y, _, t = data
    first = fit("kd", lifted.train, y, t)
    again = LinearStudent(FitConfig(method="kd")).fit(lifted.train, y, t, init=first.K_)
    assert again.info_.iterations < first.info_.iterations
    assert again.info_.final_loss <= first.info_.final_loss * (1 + 1e-4)


def test_fits_are_deterministic(lifted, data):
    y, _, t = data
    a = fit("kd", lifted.train, y, t)
    b = fit("kd", lifted.train, y, t)
    assert torch.equal(a.K_, b.K_)


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize("kwargs,match", [
    ({"alpha": 1.5}, r"alpha=1\.5 is out of range: allowed \[0\.0, 1\.0\]"),
    ({"alpha": -0.1}, "alpha"),
    ({"temperature": 0}, "temperature=0"),
    ({"temperature": float("nan")}, "temperature"),
    ({"method": "ridge"}, "method='ridge': expected one of kd, labels, naive"),
    ({"max_iter": 0}, "max_iter"),
    ({"naive_target": "soft"}, "naive_target"),
    ({"l2": -1.0}, "l2"),
    ({"aware_steps": -1}, "aware_steps=-1"),
    ({"aware_steps": 2.5}, "aware_steps=2.5: expected an integer"),
    ({"device_epochs": -1}, "device_epochs=-1"),
])
def test_fit_config_validation(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        FitConfig(**kwargs)


def test_fit_config_defaults():
    assert FitConfig().l2 == 0.0 and FitConfig(method="labels").l2 == 1e-4
    assert FitConfig(method="labels", alpha=0.9).effective_alpha == 0.0
    assert FitConfig(method="kd", alpha=0.9).effective_alpha == 0.9


@pytest.mark.parametrize("method", ["kd", "labels", "naive"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_features(small, method, bad):
    psi, y, t = small
    psi = psi.clone()
    psi[5, 3] = bad
    with pytest.raises(NumericalError, match="NaN or Inf"):
        fit(method, psi, y, t)


@pytest.mark.parametrize("method", ["kd", "labels"])
def test_overflowing_features_are_numerical_error(small, method):
    psi, y, t = small
    with pytest.raises(NumericalError):
        fit(method, psi * 1e20, y, t)


def test_teacher_required(small):
    psi, y, _ = small
    for method in ("kd", "naive"):
        with pytest.raises(ConfigError, match="needs teacher outputs"):
            fit(method, psi, y, None)
    assert fit("labels", psi, y, None).K_.shape == (4, 8)


def test_row_count_mismatches(small):
    psi, y, t = small
    with pytest.raises(ConfigError, match="60 rows but labels have 59"):
        fit("kd", psi, y[:-1], t)
    with pytest.raises(ConfigError, match="teacher outputs have 59 rows"):
        fit("kd", psi, y, t[:-1])
    with pytest.raises(ConfigError, match=r"\[n_samples, n_features\]"):
        fit("kd", psi[0], y, t)


def test_fused_loss_and_gradient_match_autograd():
    # The engine's closed-form, blocked pass must equal autograd on the same loss.
    from codesign.losses import KDTargets, kd_loss
    from codesign.students import kd_loss_and_grad

    g = torch.Generator().manual_seed(0)
    psi = torch.randn(5000, 40, generator=g)
    labels = torch.randint(0, 7, (5000,), generator=g)
    teacher = torch.randn(5000, 7, generator=g) * 3
    K = (torch.randn(7, 40, generator=g) * 0.1).requires_grad_(True)
    for alpha in (0.0, 0.5, 1.0):
        targets = KDTargets(teacher if alpha > 0 else None, labels, 2.5, alpha)
        K.grad = None
        loss = kd_loss(psi @ K.T, targets) + 0.5 * 1e-3 * K.square().sum()
        loss.backward()
        value, grad = kd_loss_and_grad(psi, K.detach(), targets, l2=1e-3, rows=777)
        assert abs(value - float(loss.detach())) < 1e-5 * max(1.0, abs(value))
        assert torch.allclose(grad, K.grad, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("T, alpha", [(1.0, 0.5), (3.0, 0.9), (1.0, 0.0), (0.5, 1.0)])
def test_fused_pass_with_prepared_targets_and_default_blocks(T, alpha):
    # PassTargets (what lbfgs_fit prepares once) and the default block size give the same
    # value and gradient as autograd, T = 1 included (both softmaxes then coincide).
    from codesign.students import PassTargets, kd_loss_and_grad

    g = torch.Generator().manual_seed(1)
    psi = torch.randn(3000, 30, generator=g)
    labels = torch.randint(0, 10, (3000,), generator=g)
    teacher = torch.randn(3000, 10, generator=g) * 4
    K = (torch.randn(10, 30, generator=g) * 0.3).requires_grad_(True)
    targets = KDTargets(teacher if alpha > 0 else None, labels, T, alpha)
    kd_loss(psi @ K.T, targets).backward()
    value, grad = kd_loss_and_grad(psi, K.detach(), PassTargets(targets, 10))
    assert value == pytest.approx(float(kd_loss(psi @ K.detach().T, targets)), rel=1e-5)
    assert torch.allclose(grad, K.grad, atol=1e-6, rtol=1e-4)


def test_fused_pass_in_bfloat16_is_close_to_float32():
    from codesign.students import kd_loss_and_grad

    g = torch.Generator().manual_seed(2)
    psi = torch.randn(4000, 50, generator=g)
    targets = KDTargets(torch.randn(4000, 10, generator=g) * 3, torch.randint(0, 10, (4000,), generator=g), 2.0, 0.9)
    K = torch.randn(10, 50, generator=g) * 0.2
    v32, g32 = kd_loss_and_grad(psi, K, targets)
    v16, g16 = kd_loss_and_grad(psi.bfloat16(), K, targets)
    assert g16.dtype == torch.float32
    assert v16 == pytest.approx(v32, rel=1e-2)
    assert float((g16 - g32).norm() / g32.norm()) < 2e-2


# --------------------------------------------------------------------------- pass precision


def test_pass_dtype_config():
    assert FitConfig().pass_dtype == "auto"
    for dt in ("float32", "bfloat16"):
        assert FitConfig(pass_dtype=dt).pass_dtype == dt
    with pytest.raises(ConfigError, match="pass_dtype='float16': expected one of auto, float32, bfloat16"):
        FitConfig(pass_dtype="float16")


def test_pass_dtype_is_reported(lifted, data):
    y, yt, t = data
    s = fit("kd", lifted.train, y, t)
    # digits' 1437 x 66 matrix is below the calibration threshold: float32, no timing
    assert s.info_.extra["pass_dtype"] == "float32" and s.info_.extra["pass_dtype_source"] == "small"
    b = fit("kd", lifted.train, y, t, pass_dtype="bfloat16")
    assert b.info_.extra == {"pass_dtype": "bfloat16", "pass_dtype_source": "forced"}
    assert abs(b.accuracy(lifted.test, yt) - s.accuracy(lifted.test, yt)) < 0.02


def test_auto_pass_dtype_is_measured_once_per_machine(tmp_path, monkeypatch):
    from codesign import pass_precision as pp

    monkeypatch.setenv("CODESIGN_CACHE", str(tmp_path))
    pp.forget()
    g = torch.Generator().manual_seed(3)
    psi = torch.randn(2200, 1000, generator=g)  # 2.2M elements: above SMALL_ELEMENTS
    psi[:, 0] = 1.0
    teacher = psi @ (torch.randn(10, 1000, generator=g) * 0.05).T
    labels = teacher.argmax(1)
    try:
        first = fit("kd", psi, labels, teacher, max_iter=3)
        assert first.info_.extra["pass_dtype_source"] == "measured"
        assert first.info_.extra["pass_dtype"] in ("float32", "bfloat16")
        assert set(first.info_.extra["pass_dtype_ms"]) == {"float32", "bfloat16"}
        assert (tmp_path / pp.FILE_NAME).is_file()
        second = fit("kd", psi, labels, teacher, max_iter=3)
        assert second.info_.extra["pass_dtype_source"] == "cached"
        assert second.info_.extra["pass_dtype"] == first.info_.extra["pass_dtype"]
    finally:
        pp.forget()


# --------------------------------------------------------------------------- features on disk


@pytest.fixture
def on_disk(tmp_path, lifted):
    path = tmp_path / "train.npy"
    np.save(path, lifted.train.numpy())
    return np.load(path, mmap_mode="r")


@pytest.mark.filterwarnings("ignore:The given NumPy array is not writable")
@pytest.mark.parametrize("method", ["kd", "labels", "naive"])
@pytest.mark.parametrize("pass_dtype", ["float32", "bfloat16"])
def test_disk_backed_features_fit_equals_in_memory(on_disk, lifted, data, monkeypatch, method, pass_dtype):
    import codesign.students as students

    monkeypatch.setattr(students, "CHUNK_ROWS", 300)  # several blocks of the copy, the checks, the final loss
    y, yt, t = data
    assert isinstance(on_disk, np.memmap) and not on_disk.flags.writeable
    ref = fit(method, lifted.train, y, t, pass_dtype=pass_dtype)
    for psi in (on_disk, torch.from_numpy(np.asarray(on_disk))):
        s = fit(method, psi, y, t, pass_dtype=pass_dtype)
        assert torch.equal(s.K_, ref.K_)
        assert s.info_.final_loss == ref.info_.final_loss
        assert s.info_.iterations == ref.info_.iterations
        assert s.accuracy(on_disk, y) == ref.accuracy(lifted.train, y)


def test_features_mapped_from_the_npz_cache_format(tmp_path, lifted, data):
    # np.savez (the feature cache's format) members are mapped, not read
    from codesign.cache import atomic_save_npz
    from codesign.students import memmap_npz

    y, _, t = data
    path = tmp_path / "features.npz"
    atomic_save_npz(path, train=lifted.train.numpy(), test=lifted.test.numpy(), other=np.arange(3))
    mm = memmap_npz(path, "train")
    assert isinstance(mm, np.memmap) and mm.shape == tuple(lifted.train.shape) and not mm.flags.writeable
    assert np.array_equal(mm, lifted.train.numpy())
    assert torch.equal(fit("kd", mm, y, t).K_, fit("kd", lifted.train, y, t).K_)
    with pytest.raises(ConfigError, match="no array 'missing'"):
        memmap_npz(path, "missing")
    np.savez_compressed(tmp_path / "c.npz", train=lifted.train.numpy())
    with pytest.raises(ConfigError, match="compressed"):
        memmap_npz(tmp_path / "c.npz", "train")


def test_pass_copy_never_duplicates_float32(on_disk, monkeypatch):
    import codesign.students as students
    from codesign.students import as_features, pass_copy

    monkeypatch.setattr(students, "CHUNK_ROWS", 100)
    psi = as_features(on_disk)
    assert psi.data_ptr() == on_disk.ctypes.data  # wrapped, not loaded
    assert pass_copy(psi, "float32") is psi
    b = pass_copy(psi, "bfloat16")
    assert b.dtype == torch.bfloat16 and torch.equal(b, psi.to(torch.bfloat16))


def test_feature_arrays_must_be_float32(on_disk):
    y = torch.zeros(on_disk.shape[0], dtype=torch.long)
    with pytest.raises(ConfigError, match="features are float64; the engine reads float32"):
        LinearStudent(FitConfig(method="labels")).fit(np.asarray(on_disk, dtype=np.float64), y)
    with pytest.raises(ConfigError, match="got list"):
        LinearStudent(FitConfig(method="labels")).fit([[1.0]], y)


def test_engine_memory_counts_what_a_fit_holds():
    from codesign.students import engine_memory

    mem = engine_memory(60000, 861, "bfloat16")
    assert mem["features (float32)"] == 60000 * 861 * 4 and mem["pass copy (bfloat16)"] == 60000 * 861 * 2
    disk = engine_memory(60000, 861, "bfloat16", disk_backed=True)
    assert "features (float32)" not in disk and disk["pass copy (bfloat16)"] == 60000 * 861 * 2
    f32 = engine_memory(60000, 861, "float32", disk_backed=True)
    assert "pass copy (bfloat16)" not in f32 and sum(f32.values()) < 60000 * 861 * 4 / 2


# --------------------------------------------------------------------------- hardware-aware training
class CountingLayer(torch.nn.Module):
    """A device layer stand-in: a float matrix that records every minibatch it sees."""

    def __init__(self) -> None:
        super().__init__()
        self.K = torch.nn.Parameter(torch.zeros(1, 1))
        self.batches: list[int] = []

    def load_matrix(self, K: torch.Tensor) -> None:
        self.K = torch.nn.Parameter(K.clone())

    def forward(self, psi: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.batches.append(psi.shape[0])
        return psi @ self.K.T


@pytest.mark.parametrize("kwargs, batches", [
    ({}, [60] * AWARE_STEPS),                          # default: steps, batch capped at the 60 rows
    ({"aware_steps": 7, "batch_size": 25}, [25, 25, 10, 25, 25, 10, 25]),  # steps run across passes
    ({"device_epochs": 2, "batch_size": 25}, [25, 25, 10] * 2),             # the old count, by passes
    ({"device_epochs": 5}, [60] * 5),                  # what the default did before: 5 steps on a small set
    ({"aware_steps": 0}, []),
])
def test_aware_training_counts_steps(small, kwargs, batches):
    psi, labels, logits = small
    layer = CountingLayer()
    info = fit_through_device(psi, labels, logits, layer, torch.zeros(4, psi.shape[1]), FitConfig(**kwargs))
    assert layer.batches == batches
    assert info.iterations == len(batches)


def test_aware_training_reads_each_minibatch_from_rows(small):
    """``rows(idx)`` replaces ``psi[idx]``: called once per step with that step's rows (a device lift
    recomputes them with fresh noise), and K trains on what it returns."""
    psi, labels, logits = small
    calls = []

    def rows(idx):
        calls.append(idx.clone())
        return psi[idx] * 2.0

    layer = CountingLayer()
    fit_through_device(psi, labels, logits, layer, torch.zeros(4, psi.shape[1]),
                       FitConfig(aware_steps=5, batch_size=25), rows=rows)
    assert [len(c) for c in calls] == [25, 25, 10, 25, 25] == layer.batches
    assert sorted(torch.cat(calls[:3]).tolist()) == list(range(60))  # one pass: every row once
    plain = CountingLayer()
    fit_through_device(psi, labels, logits, plain, torch.zeros(4, psi.shape[1]), FitConfig(aware_steps=5, batch_size=25))
    assert not torch.allclose(layer.K, plain.K)  # trained on the rows given, not on psi


def test_aware_training_learns_on_a_small_set(small):
    """The default step count trains a small set to a low loss (five steps did not)."""
    psi, _, _ = small
    logits = 2 * psi @ torch.randn(4, psi.shape[1], generator=torch.Generator().manual_seed(1)).T  # reachable
    labels = logits.argmax(1)
    targets = KDTargets(logits, labels, 2.0, 0.9)
    losses = {}
    for name, cfg in {"default": FitConfig(lr=0.05), "five": FitConfig(device_epochs=5, lr=0.05)}.items():
        layer = CountingLayer()
        fit_through_device(psi, labels, logits, layer, torch.zeros(4, psi.shape[1]), cfg)
        with torch.no_grad():
            losses[name] = float(kd_loss(layer(psi), targets))
    assert losses["default"] < 0.5 * losses["five"]


# --------------------------------------------------------------------------- Gram and warm start


@pytest.mark.parametrize("F", [7, 301, 905])
def test_blocked_upper_gram_equals_the_full_product(F):
    from codesign.students import GRAM_BLOCK, gram

    rng = np.random.default_rng(F)
    psi = torch.from_numpy(rng.standard_normal((3000, F)).astype(np.float32))
    y = torch.from_numpy(rng.standard_normal((3000, 3)).astype(np.float32))
    G, A = gram(psi, y, chunk=1024, exact=False)
    ref = psi.double().T @ psi.double() / 3000
    assert (F // GRAM_BLOCK > 1) == (F == 905)  # 905 columns are cut into 3 blocks
    assert torch.equal(G, G.T)
    assert torch.allclose(G, ref, rtol=0, atol=1e-5 * float(ref.diagonal().max()))
    assert torch.allclose(A, psi.double().T @ y.double() / 3000, atol=1e-5)


def test_one_ridged_factor_per_ridge_and_the_ladder(small):
    from codesign.students import GramCache

    psi = small[0]
    cache = GramCache()
    L = cache.factor(psi, 1e-3)
    assert cache.factor(psi, 1e-3) is L  # cached
    G = psi.double().T @ psi.double() / psi.shape[0]
    ridged = G + 1e-3 * float(G.diagonal().mean()) * torch.eye(8, dtype=torch.float64)
    assert torch.allclose(L @ L.T, ridged, atol=1e-5)
    # duplicated columns: singular Gram; the ridge ladder still factorises it
    dup = torch.cat([psi, psi[:, 1:2]], 1)
    L2 = GramCache().factor(dup, 0.0)
    assert torch.isfinite(L2).all() and L2.shape == (9, 9)


def test_lbfgs_takes_about_one_evaluation_per_iteration(lifted, data):
    y, _, t = data
    s = fit("kd", lifted.train, y, t)
    assert 5 <= s.info_.iterations < 200
    assert s.info_.iterations <= s.info_.loss_evals <= 1.25 * s.info_.iterations + 2
