"""What bounds the distillation engine's speed-up over Adam: FLOPs, product rates, and fewer passes.

Issue 14 asks the engine (ridge warm start + whitened full-batch L-BFGS) to be 5x faster than
Adam (batch 256, 15 epochs) at MNIST r=40 degree 2 and 4x at r=20 degree 3, in each pass
precision. This script measures, in one run, what stands between the two:

1. **FLOPs.** One engine evaluation multiplies the N x F features by the C x F matrix and
   its gradient by the features again: 4 N F C flops. One Adam epoch does the same two
   products on minibatches of 256 rows. A fit of E evaluations therefore does E / 15 times
   the work of Adam's 15 epochs; the engine can only be faster by running its products faster.
2. **Rates** (GFLOP/s, same run, same precision): a square 2048 x 2048 GEMM (what this
   machine's BLAS reaches on a well-shaped product), the pass's two products alone in the
   engine's fused blocks, the engine's whole pass (:func:`codesign.students.kd_loss_and_grad`),
   and Adam's whole epoch (its products, loss, backward and step).
3. **Where a fit's time goes**: its passes (timed inside the fit) and everything else (feature
   check, Gram of 10,000 rows, Cholesky, warm start, pass copy, optimiser, float32 final loss).
4. **The bound**: Adam's seconds over the fit's pass seconds alone, the speed-up the engine
   would have if everything outside its passes took no time; and the pass rate the goal needs
   with the rest as measured.
5. **Fewer passes** (the other way to the goal): L-BFGS capped at k iterations (no loss stop)
   against the default loss stop, fitted on the first 50,000 training rows and scored on the
   last 10,000 (a validation split; the test set is not used), with Adam on the same rows.

    python experiments/engine_limits.py --data-root ../shared/data                 # this CPU
    python experiments/engine_limits.py --data-root ../shared/data --emulate-avx2  # as a CPU without bf16
    python experiments/engine_limits.py --smoke-test --out -                      # digits, seconds

Writes what it prints to --out (default experiments/engine_limits.md, or engine_limits_avx2.md
with --emulate-avx2). Time it on a quiet machine; all ratios are from one run.
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_distill import (AVX2_CAPS, adam_baseline, copy_bandwidth, cpu_line, restart_with_avx2_caps,  # noqa: E402
                           run_teed)  # (same folder, not a package)

import codesign.students as students  # noqa: E402
from codesign.data import load_dataset  # noqa: E402
from codesign.features import build_features  # noqa: E402
from codesign.losses import KDTargets  # noqa: E402
from codesign.students import (FitConfig, LinearStudent, PassTargets, accuracy, fused_rows, kd_loss_and_grad,  # noqa: E402
                               pass_copy, warm_start)
from codesign.teachers import get_teacher  # noqa: E402

T, ALPHA, C = 2.0, 0.9, 10
SETTINGS = {"d2": ("r=40, degree 2", 40, 2, 5.0), "d3": ("r=20, degree 3", 20, 3, 4.0)}
#: Iteration caps of the fewer-passes table (the default loss stop is added to them).
CAPS = (4, 6, 8, 10, 12, 15, 20)


def med(fn, repeats):
    """Median seconds of ``fn()`` over ``repeats`` calls after one untimed call, and the last call's result."""
    out = fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


class PassClock:
    """Times every call of the engine's pass inside a fit (patches the module's function)."""

    def __enter__(self):
        self.seconds, self.calls = 0.0, 0
        self._orig = students.kd_loss_and_grad

        def timed(*a, **k):
            t0 = time.perf_counter()
            out = self._orig(*a, **k)
            self.seconds += time.perf_counter() - t0
            self.calls += 1
            return out

        students.kd_loss_and_grad = timed
        return self

    def __exit__(self, *exc):
        students.kd_loss_and_grad = self._orig


def fit(psi, y, tl, dtype, **kw):
    return LinearStudent(FitConfig(method="kd", temperature=T, alpha=ALPHA, pass_dtype=dtype, **kw)).fit(psi, y, tl, n_classes=C)


def rates(psi, tl, y, dtype, repeats):
    """GFLOP/s of a square GEMM, of the pass's products in fused blocks, and of the whole pass."""
    p = pass_copy(psi, dtype)
    N, F = p.shape
    flops = 4 * N * F * C
    A = torch.randn(2048, 2048).to(p.dtype)
    square = 2 * 2048**3 / med(lambda: A @ A, repeats)[0]
    K = warm_start(psi, tl, 1e-3).K.float().contiguous()
    Kp, rows = K.to(p.dtype), fused_rows(F, p.element_size())
    G = torch.randn(C, rows).to(p.dtype)

    def products():
        for i in range(0, N, rows):
            b = p[i : i + rows]
            Kp @ b.T
            G[:, : b.shape[0]] @ b

    prep = PassTargets(KDTargets(tl, y, T, ALPHA), C)
    t_products = med(products, repeats)[0]
    t_pass = med(lambda: kd_loss_and_grad(p, K, prep), repeats)[0]
    return {"square": square, "products": flops / t_products, "pass": flops / t_pass}


def split(psi, y, tl, dtype, repeats):
    """Median fit seconds and the seconds spent in its passes (medians over ``repeats`` fits)."""
    fit(psi, y, tl, dtype)  # warm-up (thread pools; the cached pass-precision choice is not used: dtype is forced)
    total, inside, last = [], [], None
    for _ in range(repeats):
        with PassClock() as clock:
            t0 = time.perf_counter()
            last = fit(psi, y, tl, dtype)
            total.append(time.perf_counter() - t0)
        inside.append(clock.seconds)
    return statistics.median(total), statistics.median(inside), last


def adam_seconds(psi, y, tl, epochs, repeats):
    targets = KDTargets(tl, y, T, ALPHA)
    times, K = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        K = adam_baseline(psi, targets, C, epochs, torch.device("cpu"))
        times.append(time.perf_counter() - t0)
    return statistics.median(times), K


def bench(key, ds, teacher, args):
    label, rank, degree, goal = SETTINGS[key]
    feats = build_features(ds.x_train, ds.x_test, rank, "monomial", {"degree": degree})
    psi = feats.train
    y, yt = torch.from_numpy(ds.y_train), torch.from_numpy(ds.y_test)
    tl = torch.from_numpy(teacher.train_logits)
    N, F = psi.shape
    print(f"\n## {label}: N={N}, F={F}, C={C}; goal {goal:g}x Adam")
    adam_s, K_adam = adam_seconds(psi, y, tl, args.adam_epochs, args.fit_repeats)
    adam_flops = args.adam_epochs * 4 * N * F * C
    print(f"Adam b256 lr1e-3 {args.adam_epochs} ep: {adam_s:.2f} s (median of {args.fit_repeats}), "
          f"{adam_flops / 1e9:.1f} GFLOP in its products, {adam_flops / adam_s / 1e9:.1f} GFLOP/s over the whole "
          f"run; test {accuracy(feats.test @ K_adam.T, yt) * 100:.2f}%")
    print("| pass dtype | square GEMM GFLOP/s | pass products GFLOP/s | whole pass GFLOP/s | fit s | evals | "
          "GFLOP (x Adam's) | s in passes | s outside | Adam s / fit s | Adam s / pass s (bound) | "
          "pass GFLOP/s the goal needs | test % |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for dtype in args.dtypes:
        r = rates(psi, tl, y, dtype, args.pass_repeats)
        total, inside, st = split(psi, y, tl, dtype, args.fit_repeats)
        evals = st.info_.loss_evals
        flops = evals * 4 * N * F * C
        budget = adam_s / goal - (total - inside)
        need = f"{flops / budget / 1e9:.0f}" if budget > 0 else "none suffices (the rest alone exceeds the goal)"
        print(f"| {dtype} | {r['square'] / 1e9:.0f} | {r['products'] / 1e9:.0f} | {r['pass'] / 1e9:.0f} | {total:.2f} | "
              f"{evals} | {flops / 1e9:.1f} ({flops / adam_flops:.2f}x) | {inside:.2f} | {total - inside:.2f} | "
              f"{adam_s / total:.2f}x | {adam_s / inside:.2f}x | {need} | "
              f"{accuracy(feats.test @ st.K_.T, yt) * 100:.2f} |", flush=True)
    del feats, psi
    fewer_passes(key, ds, teacher, args)


def fewer_passes(key, ds, teacher, args):
    """Validation accuracy and speed-up over Adam against L-BFGS iterations (first 50k rows fit, last 10k scored)."""
    label, rank, degree, goal = SETTINGS[key]
    n_fit = len(ds.y_train) - args.validation_rows
    feats = build_features(ds.x_train[:n_fit], ds.x_train[n_fit:], rank, "monomial", {"degree": degree})
    psi, pv = feats.train, feats.test
    y = torch.from_numpy(ds.y_train[:n_fit])
    yv = torch.from_numpy(ds.y_train[n_fit:])
    tl = torch.from_numpy(teacher.train_logits[:n_fit])
    adam_s, K_adam = adam_seconds(psi, y, tl, args.adam_epochs, 1)
    print(f"\nFewer passes, {label}: fitted on the first {n_fit} training rows (PCA and dictionary too), scored on "
          f"the last {args.validation_rows} (validation; no test rows); Adam {args.adam_epochs} ep on the same rows "
          f"{adam_s:.2f} s, validation {accuracy(pv @ K_adam.T, yv) * 100:.2f}%. Fit seconds: median of "
          f"{args.fit_repeats}.")
    print("| pass dtype | L-BFGS iterations | evals | fit s | Adam s / fit s | validation % |")
    print("|---|---|---|---|---|---|")
    for dtype in args.dtypes:
        runs = [(f"{k} (capped)", {"max_iter": k, "tol": 0.0}) for k in CAPS] + [("default loss stop", {})]
        for name, kw in runs:
            secs, st = med(lambda: fit(psi, y, tl, dtype, **kw), args.fit_repeats)
            print(f"| {dtype} | {name} | {st.info_.loss_evals} | {secs:.2f} | {adam_s / secs:.2f}x | "
                  f"{accuracy(pv @ st.K_.T, yv) * 100:.2f} |", flush=True)


MD_HEADER = """# Engine limits on the {where} (CPU{avx2})

Written by `experiments/engine_limits.py` itself (the command is the first lines of the output);
see the script's docstring for what each column measures. Printed output (stdout), unedited:

```
{body}```
"""


def run(args):
    print(f"# engine_limits: {args.dataset}, MLP teacher seed 0, KD T={T} alpha={ALPHA}")
    print(f"command: python experiments/engine_limits.py {args.command}")
    caps = [f"{k}={os.environ[k]}" for k in AVX2_CAPS if os.environ.get(k)]
    if caps:
        print(f"instruction sets capped ({' '.join(caps)}): this run stands for a CPU without native bfloat16")
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(cpu_line())
    print(f"copy bandwidth: {copy_bandwidth(torch.device('cpu')) / 1e9:.1f} GB/s (as bench_distill.py measures it)")
    ds = load_dataset(args.dataset, args.data_root)
    teacher = get_teacher("mlp", ds, seed=0)
    for key in args.settings:
        bench(key, ds, teacher, args)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", default=None)
    p.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    p.add_argument("--dtypes", nargs="+", default=None, choices=("float32", "bfloat16"),
                   help="pass precisions (default both; float32 only with --emulate-avx2, where bfloat16 runs "
                   "oneDNN's slow path)")
    p.add_argument("--adam-epochs", type=int, default=15)
    p.add_argument("--fit-repeats", type=int, default=3)
    p.add_argument("--pass-repeats", type=int, default=7)
    p.add_argument("--validation-rows", type=int, default=10000)
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--smoke-test", action="store_true", help="digits, one repeat, one Adam epoch: checks the script runs")
    p.add_argument("--emulate-avx2", action="store_true", help="restart with oneDNN, MKL and ATen capped at AVX2")
    p.add_argument("--where", default="2-core development machine")
    p.add_argument("--out", default=None, help="markdown file ('-' for none)")
    args = p.parse_args(argv)
    args.command = shlex.join(sys.argv[1:] if argv is None else argv)
    if args.emulate_avx2:
        restart_with_avx2_caps()
    if args.smoke_test:
        args.dataset, args.adam_epochs, args.fit_repeats, args.pass_repeats, args.validation_rows = "digits", 1, 1, 1, 300
    args.dtypes = args.dtypes or (["float32"] if args.emulate_avx2 else ["float32", "bfloat16"])
    out = args.out or str(HERE / ("engine_limits_avx2.md" if args.emulate_avx2 else "engine_limits.md"))
    run_teed(run, args, out, lambda body: MD_HEADER.format(where=args.where, body=body,
                                                           avx2=", capped at AVX2" if args.emulate_avx2 else ""))


if __name__ == "__main__":
    main()
