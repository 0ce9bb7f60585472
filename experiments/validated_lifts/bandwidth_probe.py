"""Validation-only probe of the rff bandwidth (and PCA rank) on one data set: ridge least squares on
the one-hot labels, fitted on the selection split's fit rows, scored on its validation rows
(codesign.selection.selection_split, seed 0). The test split is never read.

    python experiments/validated_lifts/bandwidth_probe.py fashion-mnist
"""
import sys, time, numpy as np, torch
from codesign.data import load_dataset
from codesign.features import FeaturePipeline
from codesign.dictionaries import create_dictionary
from codesign.selection import selection_split, SELECT_SHARE
torch.set_num_threads(1)
name = sys.argv[1]
ds = load_dataset(name)
fit, val = selection_split(len(ds.y_train), SELECT_SHARE, 0)
y = torch.from_numpy(ds.y_train).long()
Y = torch.nn.functional.one_hot(y, 10).double()
for r in (50, 100):
    for bw in (0.5, 0.75, 1.0, 1.5):
        t0 = time.time()
        pipe = FeaturePipeline(r, create_dictionary("rff", features=2000, bandwidth=bw), None, 0)
        pipe.fit(ds.x_train[fit])
        P = pipe.transform(ds.x_train).double()
        Pf, Pv = P[fit], P[val]
        G = Pf.T @ Pf
        res = []
        for lam in (1e-3, 1e-2, 1e-1, 1.0):
            K = torch.linalg.solve(G + lam * len(fit) * torch.eye(G.shape[0], dtype=G.dtype), Pf.T @ Y[fit])
            res.append(f"l2={lam:g}:{100*float(((Pv @ K).argmax(1) == y[val]).double().mean()):.2f}")
        print(name, f"r={r} bw={bw} sigma={pipe.dictionary.sigma_:.2f}", " ".join(res), f"{time.time()-t0:.0f}s", flush=True)
