"""Session-wide fixtures: a private cache folder, the embedded digits set, one digits teacher.

Kept small on purpose: tests/devices/ and tests/search/ add their own conftests.
"""

from __future__ import annotations

import importlib.util
from contextlib import contextmanager
from pathlib import Path

import pytest

#: the repository's experiments/ folder (scripts, not a package)
EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


def _import_experiment(relative: str):
    path = EXPERIMENTS / relative
    spec = importlib.util.spec_from_file_location(f"experiment_{path.stem}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="session")
def experiment_script():
    """``experiment_script("dir/script.py")`` imports ``experiments/dir/script.py`` as a module
    (its functions, without running its main)."""
    return _import_experiment


@contextmanager
def single_thread():
    """Run torch on one thread: small networks train several times faster than on two
    contended threads of a shared 2-core machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture
def one_thread():
    """Function-scoped :func:`single_thread` for tests that train a teacher."""
    with single_thread():
        yield


@pytest.fixture(scope="session", autouse=True)
def one_thread_session():
    """Torch on one thread for the whole session, and ``OMP_NUM_THREADS=1`` / ``MKL_NUM_THREADS=1``
    for every process a test starts (CLI runs, notebook kernels, search drivers; Ray's trial
    workers run one thread already). On a loaded 2-core machine two spinning OpenMP threads
    are several times slower than one, even at MNIST size (measured here, load ~9:
    tests/devices/test_fpga_reference.py 134 s on two threads, 52 s on one; the
    quickstart-digits notebook's cells 42-137 s on two, 14 s on one)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OMP_NUM_THREADS", "1")
        mp.setenv("MKL_NUM_THREADS", "1")
        with single_thread():
            yield


@pytest.fixture(scope="session", autouse=True)
def codesign_cache(tmp_path_factory):
    """Point ``CODESIGN_CACHE`` at a temporary folder so no test writes to ``~/.cache``."""
    path = tmp_path_factory.mktemp("codesign-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CODESIGN_CACHE", str(path))
        yield path


@pytest.fixture(scope="session")
def digits():
    """scikit-learn's bundled 8x8 digits (1437 train / 360 test), as a :class:`Dataset`."""
    from codesign.data import load_dataset

    return load_dataset("digits")


@pytest.fixture(scope="session")
def digits_teacher(digits, codesign_cache):
    """The default built-in ``mlp`` teacher on digits, seed 0 (trained once, ~3 s, then cached).

    It lives in the session cache, so every CLI run with ``--teacher mlp --seed 0`` reuses it.
    """
    from codesign.teachers import get_teacher

    with single_thread():
        return get_teacher("mlp", digits, seed=0)
