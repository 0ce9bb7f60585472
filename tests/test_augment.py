"""Teacher-labelled augmentation: transformations, determinism, chunking, the distill integration."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from codesign.augment import (
    BLOCK, TRANSFORMS, augment_rows, augmented_features, check_augment, parse_augment, teacher_augmentation,
    transform_images,
)
from codesign.distill import DistillConfig, run_distill
from codesign.errors import ConfigError
from codesign.students import FitConfig

pytestmark = pytest.mark.usefixtures("one_thread")


def blobs(n=64, side=28, seed=0) -> torch.Tensor:
    """Images of one bright 6x6 square each, at random places away from the border."""
    g = np.random.default_rng(seed)
    x = np.zeros((n, 1, side, side), np.float32)
    for i in range(n):
        r, c = g.integers(8, side - 14, size=2)
        x[i, 0, r : r + 6, c : c + 6] = 1.0
    return torch.from_numpy(x)


def centre(x: torch.Tensor) -> torch.Tensor:
    """Centre of mass ``[n, 2]`` (row, column) in pixels."""
    h, w = x.shape[-2:]
    m = x.sum(dim=(1, 2, 3))
    r = (x.sum(dim=(1, 3)) * torch.arange(h)).sum(1) / m
    c = (x.sum(dim=(1, 2)) * torch.arange(w)).sum(1) / m
    return torch.stack([r, c], 1)


@pytest.mark.parametrize("name", [n for n in TRANSFORMS if n != "mixup"])
def test_transforms_are_small_seeded_and_per_sample(name):
    x = blobs()
    a, _ = transform_images(x, [name], torch.Generator().manual_seed(1))
    b, _ = transform_images(x, [name], torch.Generator().manual_seed(1))
    c, _ = transform_images(x, [name], torch.Generator().manual_seed(2))
    assert a.shape == x.shape and a.dtype == torch.float32
    assert float(a.min()) >= 0 and float(a.max()) <= 1
    assert torch.equal(a, b)  # seeded: deterministic
    assert not torch.equal(a, c)
    moved = (centre(a) - centre(x)).abs()
    if name == "flip":  # exact mirror or untouched, about half each
        mirrored = [torch.equal(a[i], x[i].flip(-1)) for i in range(len(x))]
        same = [torch.equal(a[i], x[i]) for i in range(len(x))]
        assert all(m or s for m, s in zip(mirrored, same)) and 16 < sum(mirrored) < 48
        return
    # label-preserving size: the ink stays where it was to within a few pixels, and keeps its mass
    assert float(moved.max()) < {"shift": 2.1, "rotate": 2.5, "affine": 3.5, "elastic": 2.0, "crop": 2.6}[name]
    assert torch.allclose(a.sum(dim=(1, 2, 3)), x.sum(dim=(1, 2, 3)), rtol=0.35)
    # each sample its own draw: the displacements differ across the batch
    assert float(moved.std(0).max()) > 0.05


def test_mixup_keeps_the_dominant_label():
    x = blobs(32)
    y = torch.arange(32) % 10
    out, yo = transform_images(x, ["mixup"], torch.Generator().manual_seed(0), y)
    assert torch.equal(yo, y)
    # the image's own square keeps at least half its intensity: lam >= 0.5
    own = (out * x).sum(dim=(1, 2, 3)) / x.sum(dim=(1, 2, 3))
    assert float(own.min()) >= 0.5 - 1e-6


def test_rows_are_deterministic_and_independent_of_chunking(digits):
    x, y = digits.x_train[: 3 * BLOCK // 2], digits.y_train[: 3 * BLOCK // 2]
    names = ("affine", "elastic", "mixup")
    whole, yw = augment_rows(x, y, digits.image_shape, names, seed=5, copy=0)
    first, _ = augment_rows(x[:BLOCK], y[:BLOCK], digits.image_shape, names, seed=5, copy=0)
    second, _ = augment_rows(x[BLOCK:], y[BLOCK:], digits.image_shape, names, seed=5, copy=0, start=BLOCK)
    assert np.array_equal(whole, np.concatenate([first, second]))
    assert np.array_equal(yw, y)
    other, _ = augment_rows(x, y, digits.image_shape, names, seed=5, copy=1)
    assert not np.array_equal(whole, other)
    with pytest.raises(ConfigError, match="multiple of BLOCK"):
        augment_rows(x, y, digits.image_shape, names, seed=5, copy=0, start=3)


def test_chunked_features_equal_unchunked(digits):
    n = 2 * BLOCK + 100
    x = np.concatenate([digits.x_train, digits.x_train])[:n]
    y = np.concatenate([digits.y_train, digits.y_train])[:n]
    w = torch.from_numpy(np.random.default_rng(0).normal(size=(64, 10)).astype(np.float32))
    label = lambda a: (torch.from_numpy(a) @ w).numpy()  # noqa: E731
    lift = lambda a: torch.from_numpy(a[:, :7] * 2 + 1)  # noqa: E731
    kw = dict(label_fn=label, lift_fn=lift, n_features=7)
    orig = (torch.from_numpy(x[:, :7] * 2 + 1), label(x))
    a = augmented_features(x, y, digits.image_shape, ["shift", "rotate"], 2, 3, chunk_rows=BLOCK, original=orig, **kw)
    b = augmented_features(x, y, digits.image_shape, ["shift", "rotate"], 2, 3, chunk_rows=4 * BLOCK, original=orig, **kw)
    assert a[0].shape == (3 * n, 7)
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and np.array_equal(a[2], b[2])
    assert torch.equal(a[0][:n], orig[0]) and np.array_equal(a[1][:n], y)
    # the copies are labelled by the teacher on the transformed images
    imgs, _ = augment_rows(x[:BLOCK], y[:BLOCK], digits.image_shape, ("shift", "rotate"), 3, 1)
    assert np.allclose(a[2][2 * n : 2 * n + BLOCK], label(imgs))


def test_names_and_bad_inputs():
    assert parse_augment("shift, rotate") == ("shift", "rotate")
    assert parse_augment(["shift,crop", "mixup"]) == ("shift", "crop", "mixup")
    assert parse_augment("none") == () and parse_augment(None) == ()
    with pytest.raises(ConfigError, match="augment='blur' is not a transformation"):
        parse_augment("blur")
    with pytest.raises(ConfigError, match="twice"):
        parse_augment("shift,shift")
    with pytest.raises(ConfigError, match="mirrored digit"):
        check_augment(["flip"], "mnist")
    with pytest.warns(UserWarning, match="not label-preserving"):
        check_augment(["rotate"], "fashion-mnist")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_augment(["flip", "crop", "shift", "mixup"], "fashion-mnist")
    assert teacher_augmentation("mnist") == ("affine",) and teacher_augmentation("fashion-mnist") == ("flip", "crop")
    with pytest.raises(ConfigError, match="augmentation needs images"):
        transform_images(torch.zeros(3, 784), ["shift"], torch.Generator())
    with pytest.raises(ConfigError, match="mirrored digit"):
        DistillConfig(dataset="digits", augment="flip")
    with pytest.raises(ConfigError, match="augment_copies=0"):
        DistillConfig(dataset="digits", augment="shift", augment_copies=0)


def test_distill_with_augmentation(digits, digits_teacher):
    base = dict(dataset="digits", pca_rank=8, fit=FitConfig(method="labels"))
    plain = run_distill(DistillConfig(**base)).metrics
    aug = run_distill(DistillConfig(**base, augment="shift,rotate", augment_copies=2)).metrics
    n = len(digits.y_train)
    assert plain["train_rows"] == n and aug["train_rows"] == 3 * n
    assert aug["augment"] == ["shift", "rotate"] and aug["augment_copies"] == 2
    assert aug["test_accuracy"] > 0.85 and aug["test_accuracy"] != plain["test_accuracy"]
    again = run_distill(DistillConfig(**base, augment="shift,rotate", augment_copies=2)).metrics
    assert again["test_accuracy"] == aug["test_accuracy"]  # seeded
    # kd with auto on augmented rows: the selection splits original images
    m = run_distill(DistillConfig(dataset="digits", pca_rank=8, augment="shift", augment_copies=1,
                                  fit=FitConfig(temperature=2.0, alpha="auto"))).metrics
    assert m["kd_selection"]["fit_rows"] + m["kd_selection"]["val_rows"] == n


def test_augmentation_refuses_memory_it_does_not_have(digits, digits_teacher):
    from codesign.errors import ResourceError

    cfg = DistillConfig(dataset="digits", pca_rank=20, augment="shift", augment_copies=8, max_memory="8M")
    with pytest.raises(ResourceError, match="--max-memory"):
        run_distill(cfg)
