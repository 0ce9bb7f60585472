"""Searches on a Ray cluster of three nodes on this machine, and a new user's first search.

The cluster (a head and two worker nodes, one CPU each, ``ray.cluster_utils.Cluster``) lives in a
helper process of its own, never in the test process: the session's Ray (``ray_session``) may be
up there, and one process holds one Ray. The helper speaks one JSON line per command on its
stdin/stdout (``remove <node id>``; end of input shuts the cluster down), and removes only the
processes of the nodes it started (no ``ray stop``, which would stop every Ray on the machine).
The cluster has token authentication on, with a token of its own passed in the environment
(``RAY_AUTH_TOKEN``) to the helper and to the search (none of the user's ``~/.ray`` is needed).
Trials of the test device ``held`` (a plugin written here) wait at their start while a gate file
exists and say which node they run on: the tests release them once trials are running on two nodes,
or once a node running one has been removed, so that nothing depends on timing.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from codesign.search import outputs

pytestmark = pytest.mark.slow

TINY = ["--dataset", "digits", "--ranks", "4", "24", "--space", "centers=16:48", "--hw-draws", "2", "--quiet"]

CLUSTER_HELPER = textwrap.dedent(
    """
    import json, os, signal, sys
    from ray.cluster_utils import Cluster


    def descendants(root):  # the processes below root (from /proc: the workers a raylet started)
        parent = {}
        for d in os.listdir("/proc"):
            try:
                with open(f"/proc/{d}/stat") as fh:
                    parent[int(d)] = int(fh.read().rsplit(")", 1)[1].split()[1])
            except (ValueError, OSError, IndexError):
                continue
        found, todo = [], [root]
        while todo:
            p = todo.pop()
            kids = [c for c, pp in parent.items() if pp == p]
            found += kids
            todo += kids
        return found


    import ray._common.utils, ray._private.utils

    # Cluster records its address in /tmp/ray/ray_current_cluster, where any ray.init() without an
    # address on this machine (another search, another test run) would find and join it: not this one
    ray._private.utils.write_ray_address = lambda *args, **kwargs: None
    ray._common.utils.reset_ray_address = lambda *args, **kwargs: None

    temp_dir = sys.argv[1]
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "temp_dir": temp_dir,
                                                           "include_dashboard": False})
    nodes = {cluster.head_node.node_id: cluster.head_node}
    workers = []
    for _ in range(2):
        node = cluster.add_node(num_cpus=1, temp_dir=temp_dir)
        nodes[node.node_id] = node
        workers.append(node.node_id)
    cluster.wait_for_nodes()
    print(json.dumps({"address": cluster.address, "head": cluster.head_node.node_id, "workers": workers}),
          flush=True)
    try:
        for line in sys.stdin:
            cmd, arg, how = (line.split() + ["", ""])[:3]
            if cmd == "remove":  # "remove <node id> [kill]"
                node = nodes[arg]
                if how == "kill":  # as in a crash of its machine: the node and its workers, SIGKILL at once
                    raylet = node.all_processes["raylet"][0].process.pid
                    for pid in descendants(raylet):
                        try:
                            os.kill(pid, signal.SIGKILL)
                        except ProcessLookupError:
                            pass
                cluster.remove_node(node, allow_graceful=how != "kill")
                print(json.dumps({"removed": arg}), flush=True)
    finally:
        cluster.shutdown()
    """
)


HELD_PLUGIN = "codesign_search_helddev"
HELD_SOURCE = textwrap.dedent(
    """
    \"\"\"Test plugin ``held``: the ideal device, whose trials wait while ``$CODESIGN_TEST_GATE/hold`` exists.

    A trial that waits first writes ``$CODESIGN_TEST_GATE/running-<node id>-<pid>``: the test sees
    which nodes are running a trial right now, and can take one of them away mid-trial.
    \"\"\"
    import os
    import time

    from codesign.devices.ideal import IdealDevice


    def _hold():
        gate = os.environ.get("CODESIGN_TEST_GATE")
        if not gate or not os.path.exists(os.path.join(gate, "hold")):
            return
        import ray

        if ray._private.worker.global_worker.mode != ray.WORKER_MODE:  # the driver never waits
            return
        node = ray.get_runtime_context().get_node_id()
        open(os.path.join(gate, f"running-{node}-{os.getpid()}"), "w").close()
        deadline = time.time() + 120
        while os.path.exists(os.path.join(gate, "hold")) and time.time() < deadline:
            time.sleep(0.05)


    class HeldDevice(IdealDevice):
        name = "held"
        description = "test plugin: the ideal device, whose trials wait on a gate file"

        def layer(self, in_features, out_features):
            _hold()
            return super().layer(in_features, out_features)
    """
)


@pytest.fixture(scope="module")
def held_site(tmp_path_factory) -> Path:
    """A site folder holding the ``held`` device plugin (module + dist-info entry point)."""
    site = tmp_path_factory.mktemp("held-site")
    (site / f"{HELD_PLUGIN}.py").write_text(HELD_SOURCE)
    info = site / "codesign_search_helddev-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: codesign-search-helddev\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[codesign.devices]\nheld = {HELD_PLUGIN}:HeldDevice\n")
    return site


class LocalCluster:
    """A head and two worker nodes (one CPU each) in a helper process; see the module docstring."""

    def __init__(self, env: dict[str, str], workdir: Path) -> None:
        self.env = env
        # a short folder: Ray's unix sockets live under it, and their paths may not exceed 107 bytes
        self.temp_dir = tempfile.mkdtemp(prefix="cs-ray-", dir="/tmp")
        self.errfile = workdir / "cluster.stderr"
        self._err = open(self.errfile, "w")
        self.proc = subprocess.Popen([sys.executable, "-c", CLUSTER_HELPER, self.temp_dir], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self._err, text=True, env=env,
                                     start_new_session=True)
        line = self.proc.stdout.readline()  # blocks until the three nodes are up (or the helper died)
        if not line:
            self.close()
            pytest.fail("the Ray cluster did not start: " + self.errfile.read_text()[-3000:])
        info = json.loads(line)
        self.address, self.head, self.workers = info["address"], info["head"], info["workers"]
        self.removed: list[str] = []

    def remove(self, node_id: str, crash: bool = False) -> None:
        self.proc.stdin.write(f"remove {node_id}{' kill' if crash else ''}\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line and json.loads(line) == {"removed": node_id}, self.errfile.read_text()[-3000:]
        self.removed.append(node_id)

    def close(self) -> None:
        try:
            if self.proc.stdin and not self.proc.stdin.closed:
                self.proc.stdin.close()  # the helper shuts its cluster down at end of input
            self.proc.wait(timeout=60)
        except (subprocess.TimeoutExpired, OSError):
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        finally:
            self._err.close()
            shutil.rmtree(self.temp_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster_env(codesign_cache) -> dict[str, str]:
    """Environment of the cluster and of the search run against it: token auth with a token of its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32))
    return env


def start_search(cluster: LocalCluster, out: Path, samples: int, errfile: Path, device: str = "ideal") -> subprocess.Popen:
    args = ["search", *TINY, "--device", device, "--samples", str(samples), "--out", str(out),
            "--address", cluster.address]
    with open(errfile, "w") as err:
        return subprocess.Popen([sys.executable, "-m", "codesign.cli", *args], stdout=subprocess.DEVNULL,
                                stderr=err, env=cluster.env, start_new_session=True)


def finish(proc: subprocess.Popen, errfile: Path, timeout: float) -> None:
    try:
        rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        pytest.fail(f"the search did not finish in {timeout:.0f} s: " + errfile.read_text()[-3000:])
    assert rc == 0, errfile.read_text()[-3000:]


def test_trials_run_on_several_nodes(held_cluster, split_teacher, tmp_path):
    cluster, gate = held_cluster, held_cluster.gate
    out = tmp_path / "cluster"
    errfile = tmp_path / "search.stderr"
    N = 6
    (gate / "hold").touch()  # trials wait after their start: the next ones must go to the other nodes
    proc = start_search(cluster, out, N, errfile, device="held")
    try:
        deadline = time.time() + 240
        while len({p.name.split("-")[1] for p in gate.glob("running-*")}) < 2:
            assert proc.poll() is None, errfile.read_text()[-3000:]
            assert time.time() < deadline, "trials did not start on two nodes: " + errfile.read_text()[-3000:]
            time.sleep(0.05)
        (gate / "hold").unlink()
        finish(proc, errfile, 300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    records = outputs.TrialLog(out / "trials.jsonl").read()
    assert len(records) == N and all(r["status"] == "completed" for r in records)
    nodes = {r["metrics"]["node_id"] for r in records}
    assert nodes <= {cluster.head, *cluster.workers}
    assert len(nodes) > 1, f"every trial ran on node {nodes}"
    print("trials per node:", {n[:8]: sum(r["metrics"]["node_id"] == n for r in records) for n in nodes})
    front = json.loads((out / "front.json").read_text())
    assert front["n_trials"] == N and front["front"]
    for p in front["front"]:  # each front member's student, wherever its trial ran
        assert (out / p["student"]).is_file(), p
    for target in ("accuracy", "cost", "knee"):
        assert (out / "students" / f"{target}.pt").is_file()
    rows = outputs.read_csv(out / "trials.csv")
    assert {r["node_id"] for r in rows} == nodes


@pytest.fixture(scope="module")
def module_cluster(cluster_env, held_site, tmp_path_factory):
    """The three-node cluster, with the ``held`` plugin on every node's PYTHONPATH and a gate folder.

    Started once for this module's three searches (a start took 10-14 s of each test): the
    several-nodes test runs on all three nodes, then each node-loss test takes away a worker
    the earlier tests left (the stopped one the first worker, the crashed one the second).
    """
    workdir = tmp_path_factory.mktemp("held-cluster")
    gate = workdir / "gate"
    gate.mkdir()
    env = dict(cluster_env, CODESIGN_TEST_GATE=str(gate))
    env["PYTHONPATH"] = str(held_site) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    cluster = LocalCluster(env, workdir)
    cluster.gate = gate
    try:
        yield cluster
    finally:
        (gate / "hold").unlink(missing_ok=True)
        cluster.close()


@pytest.fixture
def held_cluster(module_cluster):
    """:func:`module_cluster` with an empty gate folder (no trial held, none seen running)."""
    for path in module_cluster.gate.iterdir():
        path.unlink()
    try:
        yield module_cluster
    finally:
        (module_cluster.gate / "hold").unlink(missing_ok=True)


@pytest.mark.parametrize("crash", [False, True], ids=["stopped", "crashed"])
def test_a_node_lost_midway_fails_its_trial_and_the_search_completes(held_cluster, split_teacher, tmp_path, crash):
    cluster, gate = held_cluster, held_cluster.gate
    out = tmp_path / "lossy"
    errfile = tmp_path / "search.stderr"
    N = 6
    victim = next(w for w in cluster.workers if w not in cluster.removed)  # a worker still in the cluster
    (gate / "hold").touch()  # trials wait (after their start) until the node is gone
    proc = start_search(cluster, out, N, errfile, device="held")
    log = outputs.TrialLog(out / "trials.jsonl")
    try:
        deadline = time.time() + 240
        while not list(gate.glob(f"running-{victim}-*")):
            assert proc.poll() is None, errfile.read_text()[-3000:]
            assert time.time() < deadline, "no trial started on the worker node: " + errfile.read_text()[-3000:]
            time.sleep(0.05)
        assert log.read() == []  # every trial is held: nothing finished yet
        cluster.remove(victim, crash)  # a trial is running there right now
        (gate / "hold").unlink()
        finish(proc, errfile, 300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    records = log.read()
    assert len(records) == N, [r["status"] for r in records]  # no trial lost silently
    assert [r["trial"] for r in records] == list(range(N))
    assert all(r["status"] in ("completed", "failed", "infeasible") for r in records)
    failed = [r for r in records if r["status"] == "failed"]
    assert failed, "the trial on the removed node was not recorded as failed"
    for r in failed:
        assert r["error"] and r["metrics"] == {}
        assert not r["error"].startswith("trial failed (no error text")  # Ray's reason, e.g. "the actor's node
        # was terminated" (stopped) or "The actor ... is unavailable: ... Socket closed" (crashed)
    completed = [r for r in records if r["status"] == "completed"]
    assert len(completed) == N - len(failed) and all(r["metrics"]["node_id"] != victim for r in completed)
    front = json.loads((out / "front.json").read_text())
    assert front["n_trials"] == N and front["n_failed"] == len(failed) and not front["interrupted"]
    for p in front["front"]:
        assert (out / p["student"]).is_file(), p
    print("failed on the lost node:", [r["error"] for r in failed])


def test_a_new_users_search_prints_no_ray_auth_notice(split_teacher, tmp_path):
    """A first search on a fresh account (no ``~/.ray``, no RAY_* variables) starts its own Ray:
    no word about Ray's token authentication on stderr, and the authentication stays on."""
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env["HOME"] = str(home)
    out = tmp_path / "first"
    proc = subprocess.run([sys.executable, "-m", "codesign.cli", "search", *TINY[:-1], "--samples", "2", "--cpus", "1",
                           "--out", str(out)], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "authentication" not in proc.stderr.lower() and "RAY_AUTH_MODE" not in proc.stderr, proc.stderr
    assert "search " in proc.stderr  # the progress still speaks (not --quiet)
    assert (home / ".ray" / "auth_token").is_file()  # Ray made its token: authentication is on
    assert len(outputs.TrialLog(out / "trials.jsonl").read()) == 2


def test_the_auth_notice_filter_drops_that_notice_only():
    import logging

    from codesign.search import runner

    class Keep(logging.Handler):
        def __init__(self):
            super().__init__(logging.DEBUG)
            self.msgs: list[str] = []

        def emit(self, record):
            self.msgs.append(record.getMessage())

    logger = logging.getLogger(runner._RAY_AUTH_LOGGER)
    keep, level = Keep(), logger.level
    logger.addHandler(keep)
    logger.setLevel(logging.INFO)
    try:
        with runner._without_ray_auth_notice():
            logger.warning("Token authentication is enabled for this Ray cluster. Set RAY_AUTH_MODE=disabled ...")
            logger.warning("Token authentication is disabled for this Ray cluster. Anyone with network access ...")
            logger.info("Generated new authentication token and saved to ...")
        logger.warning("Token authentication is enabled for this Ray cluster. (outside codesign's own start)")
    finally:
        logger.removeHandler(keep)
        logger.setLevel(level)
    assert len(keep.msgs) == 3, keep.msgs
    assert "disabled" in keep.msgs[0] and "Generated" in keep.msgs[1] and "outside" in keep.msgs[2]
    assert runner._drop_ray_auth_notice not in logger.filters
