"""Fixtures of the search tests: one Ray start for the session, and a plugin device installed late.

The plugin (``brittle``, from ``plugin_device.py``) is installed the way a third-party package
is: a module and a ``*.dist-info`` folder with a ``codesign.devices`` entry point, put on
``PYTHONPATH`` *before* Ray starts so that trial processes see it too.
"""

from __future__ import annotations

import importlib
import logging
import os
import shutil
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
PLUGIN_MODULE = "codesign_search_testdev"


@pytest.fixture(scope="session")
def plugin_site(tmp_path_factory):
    """A site folder holding the ``brittle`` device plugin (module + dist-info entry point)."""
    site = tmp_path_factory.mktemp("plugin-site")
    shutil.copy(HERE / "plugin_device.py", site / f"{PLUGIN_MODULE}.py")
    info = site / "codesign_search_testdev-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: codesign-search-testdev\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[codesign.devices]\nbrittle = {PLUGIN_MODULE}:BrittleDevice\n"
                                        f"hopeless = {PLUGIN_MODULE}:HopelessDevice\n")
    return site


def env_with_plugin(site: Path) -> dict[str, str]:
    """``os.environ`` with the plugin folder on ``PYTHONPATH`` (for processes started from it)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(site) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


@pytest.fixture
def plugin_env(ray_session, plugin_site) -> dict[str, str]:
    """Environment for a subprocess that should see the plugin (and Ray's variables, e.g. its token)."""
    return env_with_plugin(plugin_site)


@pytest.fixture(scope="session")
def ray_session(codesign_cache, plugin_site):
    """Ray, started once for every search test (2 CPUs, no dashboard), shut down at the end.

    Ray's processes start with the plugin folder on ``PYTHONPATH``, so trials can load it; the
    variable is restored right away so that no other test's subprocess sees the plugin.
    """
    import ray

    started = not ray.is_initialized()
    if started:
        old = os.environ.get("PYTHONPATH")
        os.environ["PYTHONPATH"] = env_with_plugin(plugin_site)["PYTHONPATH"]
        try:  # (ray.init sets variables of its own, e.g. its auth token: restore only ours)
            ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
        finally:
            if old is None:
                os.environ.pop("PYTHONPATH", None)
            else:
                os.environ["PYTHONPATH"] = old
    yield ray
    if started:
        ray.shutdown()


@pytest.fixture(scope="module")
def brittle_plugin(plugin_site):
    """The ``brittle`` plugin installed in this process too (for one test module), then removed."""
    from codesign import devices

    sys.path.insert(0, str(plugin_site))
    importlib.invalidate_caches()
    devices.refresh()
    assert "brittle" in devices.list_devices()
    yield plugin_site
    sys.path.remove(str(plugin_site))
    sys.modules.pop(PLUGIN_MODULE, None)
    importlib.invalidate_caches()
    devices.refresh()


@pytest.fixture(scope="session")
def split_teacher(codesign_cache):
    """The digits ``mlp`` teacher on the search's validation split (0.1, seed 0), trained once.

    Trained on one thread: on a loaded 2-core machine two spinning OpenMP threads make this
    tiny network take minutes instead of seconds. Every search test (and the search run in a
    subprocess) then finds it in the session cache.
    """
    import torch

    from codesign.distill import DistillConfig, Workspace

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ws = Workspace()
        cfg = DistillConfig(validation=0.1, seed=0)
        return ws.teacher(cfg, ws.dataset(cfg))
    finally:
        torch.set_num_threads(threads)
