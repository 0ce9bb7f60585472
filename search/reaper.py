"""Ends the Ray processes a codesign command started when the command ends, even after ``kill -9``.

A local Ray (``ray.init(address="local")``) starts a GCS server, a raylet, their agents
(``ray::DashboardAgent``, ``ray::RuntimeEnvAgent``), a log monitor and worker processes. After
``ray.shutdown()`` they end; after the driver is killed (``kill -9``, the OOM killer) they are
reparented and notice only by polling: measured on Ray 2.52, the two agents stayed 60-90 s.

:func:`start` (called by ``search.runner.init_ray`` right after it starts a local Ray) spawns
this file as a small watchdog in a session of its own, holding the read end of a pipe from the
driver. While the driver lives it records, every :data:`POLL_S` seconds, the driver's
descendant processes (pid and start time, read from ``/proc``); when the pipe closes (the driver
ended, however) it sends SIGTERM to every recorded process still alive with the same start
time, then SIGKILL after :data:`GRACE_S` seconds. It never touches a process that was not the
driver's descendant (a reused pid has another start time). Linux only (``/proc``); elsewhere
nothing is started.

Run as a script (``python reaper.py DRIVER_PID``), it imports nothing from codesign.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

POLL_S = 0.5
GRACE_S = 3.0


def _stat(pid: int) -> tuple[int, int] | None:
    """``(ppid, start time in clock ticks)`` of ``pid`` from ``/proc``, or None if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[1]), int(fields[19])
    except (OSError, ValueError, IndexError):
        return None


def descendants(root: int) -> dict[int, int]:
    """``{pid: start time}`` of every descendant of ``root``."""
    children: dict[int, list[int]] = {}
    starts: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _stat(int(entry))
            if st is not None:
                children.setdefault(st[0], []).append(int(entry))
                starts[int(entry)] = st[1]
    out, todo = {}, [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in out:
                out[child] = starts[child]
                todo.append(child)
    return out


def _alive(recorded: dict[int, int]) -> dict[int, int]:
    return {pid: t for pid, t in recorded.items() if (st := _stat(pid)) is not None and st[1] == t}


def watch(driver: int, pipe_fd: int = 0) -> int:
    """Record the driver's descendants until ``pipe_fd`` closes; then end those still alive.

    Returns the number of processes it had to end.
    """
    me = os.getpid()
    recorded: dict[int, int] = {}
    while True:
        ready, _, _ = select.select([pipe_fd], [], [], POLL_S)
        if ready and not os.read(pipe_fd, 4096):
            break  # EOF: the driver is gone
        recorded.update({p: t for p, t in descendants(driver).items() if p != me})
        if _stat(driver) is None:
            break
    left = _alive(recorded)
    for pid in left:
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            pass
    deadline = time.monotonic() + GRACE_S
    while _alive(left) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in _alive(left):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    return len(left)


def start() -> subprocess.Popen | None:
    """Spawn the watchdog for this process (Linux); None where ``/proc`` is missing.

    The driver keeps the write end of the pipe open for its whole life; the kernel closes it
    when the driver ends, however it ends.
    """
    if not Path("/proc/self/stat").is_file():
        return None
    read_fd, write_fd = os.pipe()
    try:
        proc = subprocess.Popen([sys.executable, "-I", __file__, str(os.getpid())], stdin=read_fd,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                                close_fds=True)
    except OSError:
        os.close(read_fd)
        os.close(write_fd)
        return None
    os.close(read_fd)
    os.set_inheritable(write_fd, False)  # Ray's processes must not hold it open
    proc._codesign_pipe = write_fd  # type: ignore[attr-defined]  - kept open while the driver lives
    return proc


if __name__ == "__main__":  # pragma: no cover - run as the watchdog process
    watch(int(sys.argv[1]))
