"""Benchmark of the distillation engine against the usual solvers, side by side in one run.

For each feature setting on MNIST (MLP teacher, seed 0) it times and scores:

  (a) codesign's engine: ridge warm start + whitened full-batch L-BFGS, loss-based stop;
  (b) minibatch Adam, batch 256, lr 1e-3, 15 epochs (same KD loss, zero init);
  (c) full-batch L-BFGS, 100 iterations (torch.optim.LBFGS, strong Wolfe, zero init);
  (d) scikit-learn LogisticRegression (labels only, lbfgs) on the same features;
  (e) ridge least squares on the teacher's logits (the warm start alone, for reference);

then hardware-aware training through every installed device at its defaults against the
`ideal` device for the same number of minibatch steps, and the --max-memory guard on a
degree-3 setting with more than 10,000 features. Prints wall time, peak memory (resident-set
growth during a second, untimed call, sampled every 2 ms) and test accuracy, and the ratios.

    python experiments/bench_distill.py --data-root ../shared/data            # CPU
    python experiments/bench_distill.py --data-root DATA --torch-device cuda  # a GPU
    python experiments/bench_distill.py --smoke-test                          # digits, seconds

Features and teacher outputs are built once per setting before any timing starts.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch

from codesign.data import load_dataset
from codesign.errors import ResourceError
from codesign.features import FeaturePipeline, build_features, format_bytes, parse_memory
from codesign.dictionaries import create_dictionary
from codesign.losses import KDTargets, kd_loss
from codesign.students import FitConfig, LinearStudent, accuracy, fit_through_device, warm_start
from codesign.teachers import get_teacher

T, ALPHA = 2.0, 0.9


class PeakRSS:
    """Peak growth of the process's resident set while the block runs (a 2 ms sampler)."""

    def __enter__(self):
        self.base = self.peak = self._rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, self._rss())

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())
        self.growth = self.peak - self.base


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, dev):
    """(result, seconds, peak RSS growth, peak GPU bytes) of ``fn()``.

    The time comes from a first call with nothing else running; the memory from a second call
    watched by the sampler thread (whose polling would otherwise slow the timed call: it
    competes for the GIL and for one of the two cores).
    """
    sync(dev)
    t0 = time.perf_counter()
    out = fn()
    sync(dev)
    secs = time.perf_counter() - t0
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    with PeakRSS() as mem:
        fn()
        sync(dev)
    gpu = torch.cuda.max_memory_allocated() if dev.type == "cuda" else None
    return out, secs, mem.growth, gpu


def adam_baseline(psi, targets, C, epochs, dev, seed=0):
    g = torch.Generator().manual_seed(seed)
    K = torch.zeros(C, psi.shape[1], device=dev, requires_grad=True)
    opt = torch.optim.Adam([K], lr=1e-3)
    N = psi.shape[0]
    for _ in range(epochs):
        perm = torch.randperm(N, generator=g).to(dev)
        for i in range(0, N, 256):
            idx = perm[i : i + 256]
            opt.zero_grad(set_to_none=True)
            kd_loss(psi[idx] @ K.T, targets.subset(idx)).backward()
            opt.step()
    return K.detach()


def lbfgs_baseline(psi, targets, C, iters, dev):
    K = torch.zeros(C, psi.shape[1], device=dev, requires_grad=True)
    opt = torch.optim.LBFGS([K], lr=1, max_iter=iters, tolerance_grad=0, tolerance_change=0,
                            history_size=20, line_search_fn="strong_wolfe")
    evals = [0]

    def closure():
        opt.zero_grad()
        loss = kd_loss(psi @ K.T, targets)
        loss.backward()
        evals[0] += 1
        return loss

    opt.step(closure)
    return K.detach(), evals[0]


def sklearn_baseline(psi, y, max_iter):
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = LogisticRegression(max_iter=max_iter).fit(psi.cpu().numpy(), y.cpu().numpy())
    return clf


def bench_setting(name, ds, teacher, rank, dictionary, params, dev, args, rows):
    t0 = time.perf_counter()
    feats = build_features(ds.x_train, ds.x_test, rank, dictionary, params)
    psi, psi_t = feats.train.to(dev), feats.test.to(dev)
    print(f"\n## {name}: pca_rank={rank}, {feats.pipeline.dictionary.describe()}, "
          f"F={feats.pipeline.n_features}, features built in {time.perf_counter() - t0:.1f} s", flush=True)
    y = torch.from_numpy(ds.y_train).to(dev)
    yt = torch.from_numpy(ds.y_test).to(dev)
    tl = torch.from_numpy(teacher.train_logits).to(dev)
    C = ds.n_classes
    targets = KDTargets(tl, y, T, ALPHA)

    def ours():
        return LinearStudent(FitConfig(method="kd", temperature=T, alpha=ALPHA)).fit(psi, y, tl, n_classes=C)

    ours()  # warm-up (CUDA/cuSOLVER initialisation, BLAS thread pools): not what we measure
    results = {}
    st, secs, mem, gpu = timed(ours, dev)
    results["(a) codesign engine"] = (secs, accuracy(psi_t @ st.K_.T, yt), mem, gpu, f"{st.info_.iterations} it / {st.info_.loss_evals} evals")
    K, secs, mem, gpu = timed(lambda: adam_baseline(psi, targets, C, args.adam_epochs, dev), dev)
    results[f"(b) Adam b256 lr1e-3 {args.adam_epochs} ep"] = (secs, accuracy(psi_t @ K.T, yt), mem, gpu, f"{args.adam_epochs * ((psi.shape[0] + 255) // 256)} steps")
    (K, ev), secs, mem, gpu = timed(lambda: lbfgs_baseline(psi, targets, C, args.lbfgs_iters, dev), dev)
    results[f"(c) full-batch L-BFGS {args.lbfgs_iters} it"] = (secs, accuracy(psi_t @ K.T, yt), mem, gpu, f"{ev} evals")
    if not args.skip_sklearn:
        clf, secs, mem, gpu = timed(lambda: sklearn_baseline(psi, y, args.sklearn_iters), torch.device("cpu"))
        acc = float((clf.predict(psi_t.cpu().numpy()) == ds.y_test).mean())
        results[f"(d) sklearn LogisticRegression (labels, CPU)"] = (secs, acc, mem, None, f"{int(clf.n_iter_.max())} it")
    ws, secs, mem, gpu = timed(lambda: warm_start(psi, tl, 1e-3), dev)
    results["(e) ridge least squares (warm start)"] = (secs, accuracy(psi_t @ ws.K.T, yt), mem, gpu, "")
    base = results[f"(b) Adam b256 lr1e-3 {args.adam_epochs} ep"][0]
    print(f"| solver | fit s | test acc % | peak RSS growth | {'peak GPU mem | ' if dev.type == 'cuda' else ''}work | Adam time / this |")
    print(f"|---|---|---|---|{'---|' if dev.type == 'cuda' else ''}---|---|")
    for k, (secs, acc, mem, gpu, work) in results.items():
        g = (f"{format_bytes(gpu)} | " if gpu is not None else "(CPU) | ") if dev.type == "cuda" else ""
        print(f"| {k} | {secs:.2f} | {acc * 100:.2f} | {format_bytes(mem)} | {g}{work} | {base / secs:.2f}x |", flush=True)
        rows.append((name, k, secs, acc, mem))
    return feats


def bench_devices(feats, ds, teacher, dev, args):
    """Hardware-aware training per device vs the ideal device, same steps, same batch."""
    from codesign.devices import create_device, list_devices

    psi = feats.train.to(dev)
    y = torch.from_numpy(ds.y_train).to(dev)
    tl = torch.from_numpy(teacher.train_logits).to(dev)
    K0 = LinearStudent(FitConfig()).fit(psi, y, tl, n_classes=ds.n_classes).K_
    n_steps = args.device_steps
    batch = args.device_batch
    epochs = max(1, -(-n_steps * batch // psi.shape[0]))
    sub = psi[: min(psi.shape[0], n_steps * batch)]
    cfg = FitConfig(method="kd", device_epochs=1, batch_size=batch, lr=1e-3)
    print(f"\n## Hardware-aware training: {n_steps} Adam steps of batch {batch} on F={psi.shape[1]} "
          f"(median of {args.repeats} runs; ratio = device step / ideal step)")
    print("| device | s per step | ratio to ideal | hw test acc (1 draw, after the steps) |")
    print("|---|---|---|---|")
    times = {}
    for name in ["ideal"] + [d for d in list_devices() if d != "ideal"]:
        device = create_device(name)
        per = []
        for _ in range(args.repeats):
            layer = device.layer(psi.shape[1], ds.n_classes).to(dev)
            _, secs, _, _ = timed(lambda: fit_through_device(sub, y[: len(sub)], tl[: len(sub)], layer, K0, cfg), dev)
            per.append(secs / (-(-len(sub) // batch)))
        times[name] = statistics.median(per)
        layer.eval()
        layer.draw_instance(0)
        with torch.no_grad():
            acc = accuracy(layer(feats.test.to(dev)), torch.from_numpy(ds.y_test).to(dev))
        print(f"| {name} | {times[name] * 1e3:.2f} ms | {times[name] / times['ideal']:.2f}x | {acc * 100:.2f} |", flush=True)


def bench_memory_guard(ds, args):
    print("\n## --max-memory guard (degree 3, r=40: 12,341 features)")
    pipe = FeaturePipeline(40, create_dictionary("monomial", degree=3), max_memory=parse_memory(args.guard_memory))
    need = len(ds.x_train) * pipe.n_features * 4
    print(f"feature matrix needs {format_bytes(need)}; budget {args.guard_memory}:")
    try:
        pipe.fit(ds.x_train)
        print("  fitted within budget")
    except ResourceError as exc:
        print(f"  refused before allocating: {exc}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", default=None)
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--torch-device", default="cpu")
    p.add_argument("--adam-epochs", type=int, default=15)
    p.add_argument("--lbfgs-iters", type=int, default=100)
    p.add_argument("--sklearn-iters", type=int, default=100)
    p.add_argument("--skip-sklearn", action="store_true")
    p.add_argument("--device-steps", type=int, default=30)
    p.add_argument("--device-batch", type=int, default=4096)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--guard-memory", default="1G")
    p.add_argument("--settings", default="d2,d3,rbf")
    p.add_argument("--smoke-test", action="store_true")
    args = p.parse_args(argv)
    dev = torch.device(args.torch_device)
    settings = {"d2": ("r=40, degree 2", 40, "monomial", {"degree": 2}),
                "d3": ("r=20, degree 3", 20, "monomial", {"degree": 3}),
                "rbf": ("r=40, RBF 1000 centres", 40, "rbf", {"centers": 1000})}
    if args.smoke_test:
        args.dataset, args.adam_epochs, args.lbfgs_iters, args.sklearn_iters = "digits", 1, 5, 5
        args.device_steps, args.device_batch, args.repeats = 2, 256, 1
        settings = {"d2": ("r=10, degree 2", 10, "monomial", {"degree": 2}),
                    "rbf": ("r=10, RBF 20 centres", 10, "rbf", {"centers": 20})}
        args.settings = "d2,rbf"
    print(f"# bench_distill: {args.dataset}, MLP teacher seed 0, KD T={T} alpha={ALPHA}")
    print(f"command: python {' '.join(sys.argv)}")
    print(f"machine: {platform.machine()}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"device {torch.cuda.get_device_name() if dev.type == 'cuda' else 'cpu'}")
    ds = load_dataset(args.dataset, args.data_root)
    teacher = get_teacher("mlp", ds, seed=0, torch_device=args.torch_device)
    print(f"teacher test accuracy {teacher.test_accuracy(ds) * 100:.2f}%")
    rows, first = [], None
    for key in args.settings.split(","):
        label, rank, dictionary, params = settings[key]
        feats = bench_setting(label, ds, teacher, rank, dictionary, params, dev, args, rows)
        if first is None:
            first = feats
        else:
            del feats
    bench_devices(first, ds, teacher, dev, args)
    if not args.smoke_test:
        bench_memory_guard(ds, args)


if __name__ == "__main__":
    main()
