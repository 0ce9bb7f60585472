"""Screenshot optuna-dashboard's view of a finished search (its Pareto front).

Builds the search's Optuna study from its ``trials.jsonl`` and ``front.json`` with the code a
search itself uses (:func:`codesign.search.study.write_study`) into a temporary SQLite file (the
search folder is left as it is), starts ``optuna-dashboard`` on a free loopback port, takes a
screenshot of the study's page with headless Chromium and stops both::

    python experiments/search/dashboard/screenshot.py                       # the committed MNIST search
    python experiments/search/dashboard/screenshot.py --search DIR -o x.png  # any search folder

Needs optuna-dashboard (``pip install -e .[test]``) and Chromium (``apt-get install chromium``).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
DEFAULT_SEARCH = ROOT / "experiments/search/results/analog_crossbar"


def build_study(search: Path, db: Path, name: str = "codesign") -> int:
    """Write the search's study into the SQLite file ``db``; return its trial count."""
    from codesign.search import outputs
    from codesign.search.config import SearchConfig
    from codesign.search.runner import RUNTIME_KEYS, annotate
    from codesign.search.study import search_token, write_study

    s = outputs.load_search(search)
    if s["front"] is None:
        raise SystemExit(f"{search}: no front.json (the search has not finished)")
    opts = {k: v for k, v in (s["search"].get("options") or {}).items() if k not in RUNTIME_KEYS}
    records = s["records"]
    annotate(records, SearchConfig.from_options(opts))  # feasible / on_front, as the search has them
    return write_study(f"sqlite:///{db}", name, search_token(s["search"]), records, s["front"],
                       s["search"].get("space"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_json(url: str, proc: subprocess.Popen, timeout: float = 60):
    deadline = time.time() + timeout
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"optuna-dashboard exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                return json.loads(resp.read())
        except OSError:
            if time.time() > deadline:
                raise SystemExit(f"optuna-dashboard did not answer at {url}") from None
            time.sleep(0.3)


def screenshot(url: str, png: Path, chromium: str, size: str = "1400,1000", budget_ms: int = 15000) -> None:
    """The page as it first renders (Chromium's own ``--screenshot``; no interaction)."""
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        cmd = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--screenshot={png}", f"--window-size={size}",
               f"--virtual-time-budget={budget_ms}", url]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)


CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars"]


class Chromium:
    """Headless Chromium driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``:
    JSON messages ending in NUL on file descriptors 3 and 4; no websocket library needed)."""

    def __init__(self, chromium: str, width: int, height: int) -> None:
        r_in, w_in = os.pipe()
        r_out, w_out = os.pipe()

        def fds() -> None:  # the browser reads commands on fd 3 and writes answers on fd 4
            os.dup2(r_in, 100)
            os.dup2(w_out, 101)
            os.dup2(100, 3)
            os.dup2(101, 4)

        self.profile = tempfile.TemporaryDirectory(prefix="chromium-")
        self.proc = subprocess.Popen(
            [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={self.profile.name}", "--remote-debugging-pipe",
             f"--window-size={width},{height}", "about:blank"],
            preexec_fn=fds, pass_fds=(3, 4), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(r_in)
        os.close(w_out)
        self._w = os.fdopen(w_in, "wb", buffering=0)
        self._r = os.fdopen(r_out, "rb", buffering=0)
        self._buf, self._id, self.session = b"", 0, None
        self.width, self.height = width, height

    def send(self, method: str, params: dict | None = None, session: bool = True) -> dict:
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params or {}}
        if session and self.session:
            msg["sessionId"] = self.session
        self._w.write(json.dumps(msg).encode() + b"\0")
        while True:
            while b"\0" not in self._buf:
                chunk = self._r.read(1 << 20)
                if not chunk:
                    raise RuntimeError("chromium closed its DevTools pipe")
                self._buf += chunk
            line, _, self._buf = self._buf.partition(b"\0")
            answer = json.loads(line)
            if answer.get("id") == self._id:
                if "error" in answer:
                    raise RuntimeError(f"{method}: {answer['error']}")
                return answer["result"]

    def open(self, url: str) -> None:
        target = self.send("Target.createTarget", {"url": url}, session=False)["targetId"]
        self.session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True}, session=False)["sessionId"]
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": self.width, "height": self.height, "deviceScaleFactor": 1, "mobile": False})

    def eval(self, expression: str):
        return self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True})["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 30) -> None:
        deadline = time.time() + timeout
        while not self.eval(expression):
            if time.time() > deadline:
                raise SystemExit(f"the page never satisfied {expression!r}")
            time.sleep(0.2)

    def drag(self, x1: float, y1: float, x2: float, y2: float) -> None:
        self.send("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": x1, "y": y1})
        self.send("Input.dispatchMouseEvent", {"type": "mousePressed", "x": x1, "y": y1, "button": "left", "clickCount": 1})
        for i in range(1, 11):
            self.send("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": x1 + (x2 - x1) * i / 10,
                                                   "y": y1 + (y2 - y1) * i / 10, "button": "left", "buttons": 1})
        self.send("Input.dispatchMouseEvent", {"type": "mouseReleased", "x": x2, "y": y2, "button": "left", "clickCount": 1})
        self.send("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": 5, "y": self.height // 2})

    def png(self, path: Path) -> None:
        path.write_bytes(base64.b64decode(self.send("Page.captureScreenshot", {"format": "png"})["data"]))

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.send("Browser.close", session=False)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.profile.cleanup()


#: The Pareto-front plot of the study page (the first Plotly graph) and its axes, in page pixels.
_PLOT = "document.querySelector('.js-plotly-plot')"


def zoom(browser: Chromium, x: tuple[float, float], y: tuple[float, float]) -> None:
    """Zoom the dashboard's Pareto-front plot to ``x`` x ``y`` (data units) by dragging a box on it,
    in two steps (Plotly ignores a drag only a few pixels high)."""
    for top in (max(y[1], min(y[1] * 8, _axis_max(browser))), y[1]):
        x1, y1, x2, y2 = browser.eval(
            f"(()=>{{const gd={_PLOT}, L=gd._fullLayout, r=gd.getBoundingClientRect();"
            f"const X=v=>r.left+L._size.l+L.xaxis.d2p(v), Y=v=>r.top+L._size.t+L.yaxis.d2p(v);"
            f"return [X({x[0]}), Y({top}), X({x[1]}), Y({y[0]})]}})()")
        browser.drag(x1, y1, x2, y2)
        time.sleep(0.5)
    browser.eval("document.querySelectorAll('.plotly-notifier').forEach(n => n.remove())")  # "double-click to zoom out"


def _axis_max(browser: Chromium) -> float:
    return float(browser.eval(f"{_PLOT}._fullLayout.yaxis.range[1]"))


def pareto_view(url: str, png: Path, chromium: str, width: int, height: int,
                box: tuple[tuple[float, float], tuple[float, float]] | None) -> None:
    """Open the study page, wait for its plots, zoom the Pareto front to ``box``, save a PNG."""
    browser = Chromium(chromium, width, height)
    try:
        browser.open(url)
        browser.wait_for(f"{_PLOT} && {_PLOT}._fullLayout && {_PLOT}.querySelectorAll('.point').length > 0")
        time.sleep(1.0)  # let the other plots settle
        if box is not None:
            zoom(browser, *box)
        time.sleep(0.5)
        browser.png(png)
    finally:
        browser.close()


def front_box(search: Path) -> tuple[tuple[float, float], tuple[float, float]]:
    """A view around the search's front (front.json): accuracy and cost a little beyond it."""
    front = json.loads((search / "front.json").read_text())["front"]
    acc = [p["val_hw_accuracy"] for p in front]
    cost = [p["cost"] for p in front]
    span = max(acc) - min(acc) or 0.1
    return (min(acc) - 0.05 * span, max(acc) + 0.05 * span), (-0.03 * max(cost), 1.1 * max(cost))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--search", type=Path, default=DEFAULT_SEARCH, help="a finished search folder")
    ap.add_argument("-o", "--out", type=Path, default=HERE / "pareto-front.png", help="the PNG to write")
    ap.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    ap.add_argument("--window-size", default="1400,1000")
    ap.add_argument("--full", action="store_true",
                    help="the page as it first renders (every trial; Chromium's --screenshot) instead of zooming "
                         "the Pareto-front plot to the front")
    args = ap.parse_args(argv)

    dashboard = Path(sys.executable).parent / "optuna-dashboard"
    with tempfile.TemporaryDirectory(prefix="codesign-study-") as tmp:
        db = Path(tmp) / "study.db"
        n = build_study(args.search.resolve(), db)
        print(f"study 'codesign': {n} trials from {args.search}")
        port = _free_port()
        base = f"http://127.0.0.1:{port}"
        log = open(Path(tmp) / "dashboard.log", "w")
        cmd = [str(dashboard)] if dashboard.is_file() else ["optuna-dashboard"]
        proc = subprocess.Popen([*cmd, "--host", "127.0.0.1", "--port", str(port), f"sqlite:///{db}"],
                                stdout=log, stderr=subprocess.STDOUT)
        try:
            studies = _wait_json(f"{base}/api/studies", proc)["study_summaries"]
            study_id = next(s["study_id"] for s in studies if s["study_name"] == "codesign")
            detail = _wait_json(f"{base}/api/studies/{study_id}", proc)
            print(f"dashboard at {base}: {len(detail['trials'])} trials, {len(detail['best_trials'])} on the front")
            args.out.parent.mkdir(parents=True, exist_ok=True)
            page = f"{base}/dashboard/studies/{study_id}"
            if args.full:
                screenshot(page, args.out.resolve(), args.chromium, args.window_size)
            else:
                width, height = (int(v) for v in args.window_size.split(","))
                pareto_view(page, args.out.resolve(), args.chromium, width, height, front_box(args.search))
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
