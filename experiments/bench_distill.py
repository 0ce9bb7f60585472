"""Benchmark of the distillation engine against the usual solvers, side by side in one run.

First a STREAM-like copy bandwidth (a torch copy between two 512 MiB float32 arrays, best of
five; bytes read plus bytes written over the time, as STREAM counts) sets the floor of one
loss-and-gradient pass: the bytes of the feature matrix in the pass precision, read twice
(forward product and gradient product), over that bandwidth.

For each feature setting on MNIST (MLP teacher, seed 0) it times and scores:

  (a) codesign's engine: ridge warm start + whitened full-batch L-BFGS, loss-based stop, with
      the pass precision left at ``auto`` and forced to ``float32`` and to ``bfloat16``
      (median of --fit-repeats fits each), and the engine's pass alone in each precision
      (median of 11) against the floor and against the two bare BLAS products;
  (b) minibatch Adam, batch 256, lr 1e-3, 15 epochs (same KD loss, zero init);
  (c) full-batch L-BFGS, 100 iterations (torch.optim.LBFGS, strong Wolfe, zero init);
  (d) scikit-learn LogisticRegression (labels only, lbfgs) on the same features;
  (e) ridge least squares on the teacher's logits (the warm start alone, for reference);

then hardware-aware training through every installed device at its defaults against the
`ideal` device for the same number of minibatch steps, and the --max-memory guard on a
degree-3 setting with more than 10,000 features. Prints wall time, peak memory (resident-set
growth during a second, untimed call, sampled every 2 ms) and test accuracy, and the ratios.

    python experiments/bench_distill.py --data-root ../shared/data            # CPU
    python experiments/bench_distill.py --data-root ../shared/data --emulate-avx2  # as a CPU without bf16
    python experiments/bench_distill.py --data-root DATA --torch-device cuda  # a GPU
    python experiments/bench_distill.py --smoke-test                          # digits, seconds

Features and teacher outputs are built once per setting before any timing starts. Everything
printed is also written to --out (default experiments/bench_distill.md; none for
--smoke-test unless given), with the command line, so the committed file is this script's own.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import statistics
import sys
import threading
import time
from pathlib import Path

import torch

from codesign.data import load_dataset
from codesign.errors import ResourceError
from codesign.features import FeaturePipeline, build_features, format_bytes, parse_memory
from codesign.dictionaries import create_dictionary
from codesign.losses import KDTargets, kd_loss
from codesign.pass_precision import CANDIDATES, calibration_rows
from codesign.students import (FitConfig, LinearStudent, PassTargets, accuracy, fit_through_device, kd_loss_and_grad,
                               pass_copy, resolve_pass_dtype, warm_start)
from codesign.teachers import get_teacher

T, ALPHA = 2.0, 0.9
#: Environment that caps the instruction sets at AVX2, as on a CPU without native bfloat16
#: (oneDNN's bfloat16 products then take its slow path: 45x slower than float32 here).
AVX2_CAPS = {"ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}


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


def timed(fn, dev, repeats=1):
    """(result, seconds, peak RSS growth, peak GPU bytes) of ``fn()``.

    The time is the median of ``repeats`` calls with nothing else running; the memory comes
    from one more call watched by the sampler thread (whose polling would otherwise slow the
    timed calls: it competes for the GIL and for one of the two cores).
    """
    times = []
    for _ in range(repeats):
        sync(dev)
        t0 = time.perf_counter()
        out = fn()
        sync(dev)
        times.append(time.perf_counter() - t0)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    with PeakRSS() as mem:
        fn()
        sync(dev)
    gpu = torch.cuda.max_memory_allocated() if dev.type == "cuda" else None
    return out, statistics.median(times), mem.growth, gpu


def median_ms(fn, dev, repeats):
    """Median wall time of ``fn()`` in ms over ``repeats`` calls, after one untimed call."""
    fn()
    times = []
    for _ in range(repeats):
        sync(dev)
        t0 = time.perf_counter()
        fn()
        sync(dev)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def copy_bandwidth(dev, mib=512, repeats=5):
    """STREAM-like copy bandwidth in bytes/s: ``b.copy_(a)`` of two ``mib`` MiB float32 arrays, best of
    ``repeats``; bytes read plus bytes written (2 x the array) over the time, as STREAM's Copy counts."""
    a = torch.ones(mib << 18, device=dev)
    b = torch.empty_like(a)
    best = float("inf")
    for _ in range(repeats + 1):  # the first copy also faults b's pages in: not counted
        sync(dev)
        t0 = time.perf_counter()
        b.copy_(a)
        sync(dev)
        best = min(best, time.perf_counter() - t0) if _ else float("inf")
    del a, b
    return 2 * (mib << 20) / best


def cpu_line():
    """The CPU's model and whether it has native bfloat16 dot products (flags), for the header."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                k, _, v = line.partition(":")
                if k.strip() == "model name" and model in ("", platform.machine(), platform.processor()):
                    model = v.strip()
                elif k.strip() == "flags" and not flags:
                    flags = set(v.split())
    except OSError:
        pass
    bf16 = sorted(f for f in flags if "bf16" in f)
    try:
        cap = torch.backends.cpu.get_cpu_capability()
    except Exception:  # noqa: BLE001
        cap = "?"
    return f"cpu: {model}; native bfloat16: {', '.join(bf16) if bf16 else 'no'}; torch CPU capability {cap}"


def bench_passes(psi, tl, y, K, C, dev, bandwidth, args):
    """The engine's loss-and-gradient pass in each precision against the floor and the bare products."""
    prep = PassTargets(KDTargets(tl, y, T, ALPHA), C)
    N, F = psi.shape
    print(f"\nOne loss-and-gradient pass over the {N} x {F} features at the warm start (median of {args.pass_repeats}); "
          f"floor = 2 reads of the matrix in the pass precision (forward and gradient products) / copy bandwidth "
          f"{bandwidth / 1e9:.1f} GB/s; BLAS products = the forward and gradient GEMMs alone on the whole matrix:")
    print("| pass dtype | bytes read (2 reads) | floor ms | pass ms | pass / floor | BLAS products ms | pass / products |")
    print("|---|---|---|---|---|---|---|")
    out = {}
    for name in CANDIDATES:
        p = pass_copy(psi, name)
        nbytes = 2 * p.numel() * p.element_size()
        floor = nbytes / bandwidth * 1e3
        ms = median_ms(lambda: kd_loss_and_grad(p, K, prep), dev, args.pass_repeats)
        Kp, G = K.to(p.dtype), torch.zeros(C, N, device=dev, dtype=p.dtype)
        blas = median_ms(lambda: (Kp @ p.T, G @ p), dev, args.pass_repeats)
        print(f"| {name} | {format_bytes(nbytes)} | {floor:.1f} | {ms:.1f} | {ms / floor:.2f}x | {blas:.1f} | {ms / blas:.2f}x |",
              flush=True)
        out[name] = (ms, floor)
        del p
    return out


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


def bench_setting(name, ds, teacher, rank, dictionary, params, dev, args, rows, bandwidth):
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

    def ours(pass_dtype):
        return lambda: LinearStudent(FitConfig(method="kd", temperature=T, alpha=ALPHA, pass_dtype=pass_dtype)).fit(
            psi, y, tl, n_classes=C)

    K0 = warm_start(psi, tl, 1e-3).K
    choice = resolve_pass_dtype(psi, PassTargets(targets, C), K0, "auto", recalibrate=not args.cached_precision)
    if choice.ms:
        how = (f"{'calibrated now' if choice.source == 'measured' else choice.source}: one pass over the first "
               f"{calibration_rows(*psi.shape)} rows took " + ", ".join(f"{k} {v:.2f} ms" for k, v in choice.ms.items())
               + " of CPU time; the faster wins, float32 on a tie")
    else:
        how = f"{choice.source}: too few features to time"
    print(f"pass precision auto: {choice.dtype} ({how})", flush=True)
    ours("auto")()  # warm-up (CUDA/cuSOLVER initialisation, BLAS thread pools; the pass calibration if not cached)
    results = {}
    engine = {}
    for pd in ("auto", "float32", "bfloat16"):
        st, secs, mem, gpu = timed(ours(pd), dev, args.fit_repeats)
        ex = st.info_.extra
        label = f"(a) codesign engine, pass {pd}" + (f" -> {ex['pass_dtype']} ({ex['pass_dtype_source']})" if pd == "auto" else "")
        results[label] = (secs, accuracy(psi_t @ st.K_.T, yt), mem, gpu, f"{st.info_.iterations} it / {st.info_.loss_evals} evals")
        engine[pd] = (secs, results[label][1], ex)
    adam_label = f"(b) Adam b256 lr1e-3 {args.adam_epochs} ep"
    K, secs, mem, gpu = timed(lambda: adam_baseline(psi, targets, C, args.adam_epochs, dev), dev, args.fit_repeats)
    results[adam_label] = (secs, accuracy(psi_t @ K.T, yt), mem, gpu, f"{args.adam_epochs * ((psi.shape[0] + 255) // 256)} steps")
    (K, ev), secs, mem, gpu = timed(lambda: lbfgs_baseline(psi, targets, C, args.lbfgs_iters, dev), dev)
    results[f"(c) full-batch L-BFGS {args.lbfgs_iters} it"] = (secs, accuracy(psi_t @ K.T, yt), mem, gpu, f"{ev} evals")
    if not args.skip_sklearn:
        clf, secs, mem, gpu = timed(lambda: sklearn_baseline(psi, y, args.sklearn_iters), torch.device("cpu"))
        acc = float((clf.predict(psi_t.cpu().numpy()) == ds.y_test).mean())
        results[f"(d) sklearn LogisticRegression (labels, CPU)"] = (secs, acc, mem, None, f"{int(clf.n_iter_.max())} it")
    ws, secs, mem, gpu = timed(lambda: warm_start(psi, tl, 1e-3), dev)
    results["(e) ridge least squares (warm start)"] = (secs, accuracy(psi_t @ ws.K.T, yt), mem, gpu, "")
    base = results[adam_label][0]
    print(f"Fit seconds: median of {args.fit_repeats} call(s) for (a) and (b), one call for the others.")
    print(f"| solver | fit s | test acc % | peak RSS growth | {'peak GPU mem | ' if dev.type == 'cuda' else ''}work | Adam time / this |")
    print(f"|---|---|---|---|{'---|' if dev.type == 'cuda' else ''}---|---|")
    for k, (secs, acc, mem, gpu, work) in results.items():
        g = (f"{format_bytes(gpu)} | " if gpu is not None else "(CPU) | ") if dev.type == "cuda" else ""
        print(f"| {k} | {secs:.2f} | {acc * 100:.2f} | {format_bytes(mem)} | {g}{work} | {base / secs:.2f}x |", flush=True)
        rows.append((name, k, secs, acc, mem))
    passes = bench_passes(psi, tl, y, ws.K, C, dev, bandwidth, args) if args.pass_repeats else {}
    return feats, {"engine": engine, "adam": base, "passes": passes}


def check_targets(summary):
    """The issue-14 'Done when' lines, from this run's numbers."""
    goals = {"d2": (0.980, 5.0, 3.0), "d3": (0.978, 4.0, None)}
    print("\n## Targets (issue 14), from this run")
    for key, (acc_goal, speed_goal, floor_goal) in goals.items():
        if key not in summary:
            continue
        s = summary[key]
        for pd, (secs, acc, ex) in s["engine"].items():
            speed = s["adam"] / secs
            used = ex.get("pass_dtype", pd)
            line = (f"{key} pass {pd}{' -> ' + used if pd == 'auto' else ''}: acc {acc * 100:.2f}% (goal >= {acc_goal * 100:.1f}) "
                    f"{'ok' if acc >= acc_goal else 'MISSED'}; {speed:.2f}x Adam (goal >= {speed_goal:g}x) "
                    f"{'ok' if speed >= speed_goal else 'MISSED'}")
            if floor_goal and used in s["passes"]:
                ms, floor = s["passes"][used]
                line += (f"; pass {ms / floor:.2f}x the floor (goal <= {floor_goal:g}x) "
                         f"{'ok' if ms / floor <= floor_goal else 'MISSED'}")
            print(line)


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


class Tee:
    """Copies everything printed to stdout into a list (for --out)."""

    def __init__(self, stream):
        self.stream, self.parts = stream, []

    def write(self, text):
        self.parts.append(text)
        return self.stream.write(text)

    def flush(self):
        self.stream.flush()


MD_HEADER = """# Distillation benchmark on the {where} (CPU)

Written by `experiments/bench_distill.py` itself (the command is the first lines of the output).
Engine and Adam fit times are medians of {fit_repeats} call(s), the other solvers' one call; peak
memory comes from one more, untimed call. The pass table times the engine's loss-and-gradient
pass alone (median of {pass_repeats}) against the floor: two reads of the feature matrix in the
pass precision over the copy bandwidth measured at the start of the same run. All ratios are
from this one run; on a shared machine rerun it with nothing else running. Printed output
(stdout), unedited:

```
{body}```
"""


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
    p.add_argument("--repeats", type=int, default=3, help="runs per device of hardware-aware training")
    p.add_argument("--fit-repeats", type=int, default=3, help="timed fits of the engine and of Adam (median)")
    p.add_argument("--pass-repeats", type=int, default=11, help="timed passes per precision (median); 0 skips")
    p.add_argument("--cached-precision", action="store_true",
                   help="use this machine's cached pass-precision calibration instead of timing it again")
    p.add_argument("--bandwidth-mib", type=int, default=512, help="size of each array of the copy-bandwidth test")
    p.add_argument("--guard-memory", default="1G")
    p.add_argument("--settings", default="d2,d3,rbf")
    p.add_argument("--smoke-test", action="store_true")
    p.add_argument("--out", default=None, help="markdown file written with the output "
                   "(default experiments/bench_distill.md; none for --smoke-test; '-' for none)")
    p.add_argument("--where", default="2-core development machine", help="machine named in the markdown title")
    p.add_argument("--emulate-avx2", action="store_true",
                   help="run as a CPU without native bfloat16 would: restart with oneDNN, MKL and ATen capped at "
                   "AVX2 (ONEDNN_MAX_CPU_ISA, MKL_ENABLE_INSTRUCTIONS, ATEN_CPU_CAPABILITY); default --out "
                   "experiments/bench_distill_avx2.md")
    args = p.parse_args(argv)
    if args.emulate_avx2:
        restart_with_avx2_caps()
    default = "bench_distill_avx2.md" if args.emulate_avx2 else "bench_distill.md"
    out = args.out or (None if args.smoke_test else str(Path(__file__).with_name(default)))
    run_teed(run, args, out, lambda body: MD_HEADER.format(where=args.where, fit_repeats=args.fit_repeats,
                                                           pass_repeats=args.pass_repeats, body=body))


def restart_with_avx2_caps() -> None:
    """Start this script again with :data:`AVX2_CAPS` set, unless they are: the caps are read when
    torch loads its libraries, so they cannot be applied to a running process."""
    if any(os.environ.get(k) != v for k, v in AVX2_CAPS.items()):
        sys.stdout.flush()
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **AVX2_CAPS})


def run_teed(run, args, out, markdown) -> None:
    """``run(args)``, printing as it goes; then ``markdown(everything printed)`` is written to ``out``
    atomically (nothing when ``out`` is None or ``-``)."""
    tee = Tee(sys.stdout)
    sys.stdout = tee
    try:
        run(args)
    finally:
        sys.stdout = tee.stream
    if out and out != "-":
        from codesign.cache import atomic_write_text

        atomic_write_text(out, markdown("".join(tee.parts)))
        print(f"wrote {out}")


def run(args):
    dev = torch.device(args.torch_device)
    settings = {"d2": ("r=40, degree 2", 40, "monomial", {"degree": 2}),
                "d3": ("r=20, degree 3", 20, "monomial", {"degree": 3}),
                "rbf": ("r=40, RBF 1000 centres", 40, "rbf", {"centers": 1000})}
    if args.smoke_test:
        args.dataset, args.adam_epochs, args.lbfgs_iters, args.sklearn_iters = "digits", 1, 5, 5
        args.device_steps, args.device_batch, args.repeats = 2, 256, 1
        args.fit_repeats, args.pass_repeats, args.bandwidth_mib = 1, 3, 64
        settings = {"d2": ("r=10, degree 2", 10, "monomial", {"degree": 2}),
                    "rbf": ("r=10, RBF 20 centres", 10, "rbf", {"centers": 20})}
        args.settings = "d2,rbf"
    print(f"# bench_distill: {args.dataset}, MLP teacher seed 0, KD T={T} alpha={ALPHA}")
    env = [f"{k}={os.environ[k]}" for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS") if k in os.environ]
    print(f"command: {' '.join(env + ['python', shlex.join(sys.argv)])}")
    caps = [f"{k}={os.environ[k]}" for k in AVX2_CAPS if os.environ.get(k)]
    if caps:
        print(f"instruction sets capped ({' '.join(caps)}): this run stands for a CPU without native bfloat16")
    print(f"machine: {platform.machine()}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"device {torch.cuda.get_device_name() if dev.type == 'cuda' else 'cpu'}")
    print(cpu_line())
    bandwidth = copy_bandwidth(dev, args.bandwidth_mib)
    print(f"copy bandwidth: {bandwidth / 1e9:.1f} GB/s (torch copy of {args.bandwidth_mib} MiB float32, best of 5, "
          "read + write bytes as STREAM counts)", flush=True)
    ds = load_dataset(args.dataset, args.data_root)
    teacher = get_teacher("mlp", ds, seed=0, torch_device=args.torch_device)
    print(f"teacher test accuracy {teacher.test_accuracy(ds) * 100:.2f}%")
    rows, first, summary = [], None, {}
    for key in args.settings.split(","):
        label, rank, dictionary, params = settings[key]
        feats, summary[key] = bench_setting(label, ds, teacher, rank, dictionary, params, dev, args, rows, bandwidth)
        if first is None:
            first = feats
        else:
            del feats
    if not args.smoke_test:
        check_targets(summary)
    bench_devices(first, ds, teacher, dev, args)
    if not args.smoke_test:
        bench_memory_guard(ds, args)


if __name__ == "__main__":
    main()
