"""The Ray processes codesign starts end with it, also after ``kill -9`` (``codesign.search.reaper``).

A stand-in driver starts the watchdog, then a process tree like Ray's (a child that ignores
SIGTERM, as Ray's agents are slow to, and a grandchild), and is killed with SIGKILL: the watchdog
must end the whole tree within its grace period, and touch nothing else.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="the watchdog reads /proc (Linux)")

REAPER = Path(__file__).resolve().parents[2] / "search" / "reaper.py"
DRIVER = textwrap.dedent("""
    import importlib.util, subprocess, sys, time
    spec = importlib.util.spec_from_file_location("reaper", sys.argv[1])  # codesign.search.reaper, alone
    reaper = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(reaper)
    reaper.start()
    stubborn = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"
    parent = ("import subprocess, sys, time; "
              f"subprocess.Popen([sys.executable, '-c', {stubborn!r}]); time.sleep(600)")
    kids = [subprocess.Popen([sys.executable, "-c", parent]), subprocess.Popen([sys.executable, "-c", stubborn])]
    print(" ".join(str(k.pid) for k in kids), flush=True)
    time.sleep(600)
""")


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_killed_driver_leaves_no_process_behind(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("reaper_under_test", REAPER)  # no Ray import: fast
    reaper = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(reaper)
    descendants = reaper.descendants

    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])  # not the driver's
    driver = subprocess.Popen([sys.executable, "-c", DRIVER, str(REAPER)], stdout=subprocess.PIPE, text=True,
                              start_new_session=True)
    try:
        kids = [int(p) for p in driver.stdout.readline().split()]
        deadline = time.time() + 20
        while len(descendants(driver.pid)) < 4 and time.time() < deadline:  # watchdog, 2 kids, 1 grandchild
            time.sleep(0.1)
        tree = [p for p in descendants(driver.pid)]
        assert set(kids) <= set(tree) and len(tree) >= 4
        time.sleep(1.0)  # the watchdog records every 0.5 s
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait()
        t0 = time.time()
        while any(_alive(p) for p in tree) and time.time() - t0 < 15:
            time.sleep(0.1)
        left = [p for p in tree if _alive(p)]
        assert not left, f"still alive {time.time() - t0:.1f} s after kill -9: {left}"
        assert time.time() - t0 < 10  # SIGTERM, then SIGKILL after reaper.GRACE_S (3 s)
        assert bystander.poll() is None  # nothing else was touched
    finally:
        for p in [driver.pid, *descendants(driver.pid)]:
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass
        bystander.kill()
        bystander.wait()
