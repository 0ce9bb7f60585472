"""Image augmentation: batched, per-sample, seeded transformations of flattened images.

Two users:

* built-in teachers train on augmented minibatches (:func:`teacher_augmentation` names the
  recipe of each data set: small affine maps for digits, flips and crops for clothes);
* the student's *teacher-labelled augmentation* (``--augment NAME[,NAME] --augment-copies N``):
  every training image gets ``N`` transformed copies, the teacher labels each copy (its logits
  are the copy's soft targets), and the copies are lifted by the feature pipeline fitted on the
  original images (:func:`augmented_features`), chunk by chunk.

Transformations (:data:`TRANSFORMS`), composed in the order given:

* ``shift``: translation by up to +-2 px in each direction;
* ``rotate``: rotation by up to +-10 degrees;
* ``affine``: rotation +-10 degrees, translation +-2 px and scaling by 0.92-1.08 at once (the
  recipe of the issue's check and of the ``cnn`` teacher on digits);
* ``elastic``: elastic deformation (Simard et al. 2003: a random displacement field smoothed by
  a Gaussian of sigma 4 px, scaled to at most ~1.5 px);
* ``flip``: horizontal mirror of half of the images;
* ``crop``: a random square window of 86-100 % of the side, resized back to the full image;
* ``mixup``: ``lam x_i + (1 - lam) x_j`` with a random partner ``j`` and ``lam = max(u, 1 - u)``,
  ``u ~ Beta(0.4, 0.4)``, so that image ``i`` dominates. Its hard label (the cross-entropy term
  of ``kd``, and the only target of ``labels``) is the dominant image's label; the teacher's
  logits on the mixed image are its soft targets. Taking the dominant label keeps ``labels``
  free of the teacher, which is what that baseline is for.

Every transformation is drawn per sample (one batch holds many different maps), which is why
they are written with ``affine_grid``/``grid_sample`` rather than ``torchvision.transforms.v2``
(whose random transforms draw one set of parameters per call, shared by a whole batch).

Label preservation: mirrored digits are other symbols (2, 3, 4, 7...), so ``flip`` is refused
on ``digits`` and ``mnist``; rotations, scaling and elastic deformation of clothes are allowed
but warned about (in the issue's check they lowered Fashion-MNIST students by ~0.5-1 point).

Randomness: copies are drawn in blocks of :data:`BLOCK` rows, each block seeded by
``(seed, copy, block)``; any chunking of the rows in multiples of ``BLOCK`` gives the same
images bit for bit.
"""

from __future__ import annotations

import math
import warnings
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .errors import ConfigError, check_range

#: Named transformations of ``--augment`` (module docstring).
TRANSFORMS = ("shift", "rotate", "affine", "elastic", "flip", "crop", "mixup")
#: Data sets of handwritten digits (``flip`` is refused on them: a mirrored digit is another symbol).
DIGIT_DATASETS = ("digits", "mnist")
#: Transformations that are not label-preserving for clothes the way they are for digits (warned).
DIGIT_ONLY = ("rotate", "affine", "elastic")
#: Rows per independently seeded block of augmented copies.
BLOCK = 1024
#: Largest ``--augment-copies``.
MAX_COPIES = 32

SHIFT_PX = 2.0  # translation bound, pixels (at 28x28; scaled with the image side)
ROTATE_DEG = 10.0  # rotation bound, degrees
SCALE = 0.08  # affine scale bound: 1 +- SCALE
ELASTIC_SIGMA = 4.0  # smoothing of the displacement field, pixels (Simard et al. 2003 use 4)
ELASTIC_ALPHA = 1.5  # largest displacement after smoothing, pixels
CROP_MIN = 0.86  # smallest crop window, share of the image side
MIXUP_BETA = 0.4  # Beta(a, a) of mixup's weight (Zhang et al. 2018 use 0.2-0.4)


def parse_augment(value) -> tuple[str, ...]:
    """``"shift,rotate"``, ``["shift", "rotate"]`` or ``"none"`` -> a tuple of known names."""
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else list(value)
    names: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise ConfigError(f"augment={value!r}: expected names such as shift,rotate (one of: {', '.join(TRANSFORMS)})")
        names += [n.strip().lower() for n in item.split(",") if n.strip()]
    if names in (["none"], ["off"]):
        return ()
    for n in names:
        if n not in TRANSFORMS:
            raise ConfigError(f"augment={n!r} is not a transformation; use one or more of {', '.join(TRANSFORMS)} "
                              "(comma-separated)")
    if len(set(names)) != len(names):
        raise ConfigError(f"augment={','.join(names)} names a transformation twice; give each once")
    return tuple(names)


def check_augment(names: Sequence[str], dataset: str) -> None:
    """Refuse transformations that change the label on ``dataset``; warn about doubtful ones."""
    names = parse_augment(list(names))
    if dataset in DIGIT_DATASETS and "flip" in names:
        raise ConfigError(f"augment=flip on {dataset}: a mirrored digit is another symbol (2, 3, 4, 7...); "
                          "for digits use shift, rotate, affine, elastic or mixup")
    doubtful = [n for n in names if n in DIGIT_ONLY]
    if dataset not in DIGIT_DATASETS and doubtful:
        warnings.warn(f"augment={','.join(doubtful)} on {dataset}: rotations, scaling and elastic deformation are "
                      "not label-preserving for every data set (they lowered Fashion-MNIST students); "
                      "flip, shift and crop are the clothes recipe", stacklevel=2)


def teacher_augmentation(dataset: str) -> tuple[str, ...]:
    """The augmentation a built-in convolutional teacher trains with on ``dataset``."""
    return ("affine",) if dataset in DIGIT_DATASETS else ("flip", "crop")


# --------------------------------------------------------------------------- transforms


def _resample(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _uniform(n: int, bound: float, gen: torch.Generator) -> torch.Tensor:
    return (torch.rand(n, generator=gen) * 2 - 1) * bound


def _affine(x: torch.Tensor, gen: torch.Generator, deg: float, shift_px: float, scale: float) -> torch.Tensor:
    n, _, h, w = x.shape
    angle = _uniform(n, math.radians(deg), gen)
    s = 1.0 + _uniform(n, scale, gen)
    # affine_grid maps output to input coordinates in [-1, 1]: a shift of p pixels is 2p/side
    tx = _uniform(n, shift_px * 2 / 28, gen)
    ty = _uniform(n, shift_px * 2 / 28, gen)
    cos, sin = torch.cos(angle) / s, torch.sin(angle) / s
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
    return _resample(x, theta)


def _shift(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    return _affine(x, gen, 0.0, SHIFT_PX, 0.0)


def _rotate(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    return _affine(x, gen, ROTATE_DEG, 0.0, 0.0)


def _affine_all(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    return _affine(x, gen, ROTATE_DEG, SHIFT_PX, SCALE)


def _gaussian_kernel(sigma: float) -> torch.Tensor:
    r = int(math.ceil(3 * sigma))
    t = torch.arange(-r, r + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


def _elastic(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    n, _, h, w = x.shape
    sigma = ELASTIC_SIGMA * h / 28
    disp = torch.rand(n * 2, 1, h, w, generator=gen) * 2 - 1
    k = _gaussian_kernel(sigma)
    pad = len(k) // 2
    disp = F.conv2d(F.pad(disp, (pad, pad, 0, 0), mode="reflect" if w > pad else "replicate"), k.view(1, 1, 1, -1))
    disp = F.conv2d(F.pad(disp, (0, 0, pad, pad), mode="reflect" if h > pad else "replicate"), k.view(1, 1, -1, 1))
    disp = disp.view(n, 2, h, w)
    peak = disp.abs().amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12)
    disp = disp / peak * (ELASTIC_ALPHA * h / 28)  # pixels
    identity = torch.eye(2, 3).expand(n, 2, 3)
    grid = F.affine_grid(identity, [n, 1, h, w], align_corners=False)
    grid = grid + torch.stack([disp[:, 0] * 2 / w, disp[:, 1] * 2 / h], dim=-1)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _flip(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    mask = torch.rand(x.shape[0], generator=gen) < 0.5
    return torch.where(mask[:, None, None, None], x.flip(-1), x)


def _crop(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    n = x.shape[0]
    side = CROP_MIN + torch.rand(n, generator=gen) * (1 - CROP_MIN)  # window side / image side
    # the window's centre stays inside the image: offset up to (1 - side) in [-1, 1] coordinates
    cx = (torch.rand(n, generator=gen) * 2 - 1) * (1 - side)
    cy = (torch.rand(n, generator=gen) * 2 - 1) * (1 - side)
    zero = torch.zeros(n)
    theta = torch.stack([torch.stack([side, zero, cx], 1), torch.stack([zero, side, cy], 1)], 1)
    return _resample(x, theta)


_IMAGE_TRANSFORMS: dict[str, Callable[[torch.Tensor, torch.Generator], torch.Tensor]] = {
    "shift": _shift, "rotate": _rotate, "affine": _affine_all, "elastic": _elastic, "flip": _flip, "crop": _crop,
}


def mixup(x: torch.Tensor, labels: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Mix each image with a random partner of the same batch; the dominant image's label is kept."""
    n = x.shape[0]
    partner = torch.randint(0, n, (n,), generator=gen)
    beta = torch.distributions.Beta(MIXUP_BETA, MIXUP_BETA)
    # Beta sampling through the global generator would break determinism: draw it by inversion
    # of a seeded uniform on a fine grid of the Beta CDF instead.
    u = torch.rand(n, generator=gen)
    grid = torch.linspace(1e-4, 1 - 1e-4, 4097)
    cdf = torch.cumsum(beta.log_prob(grid).exp(), 0)
    cdf = cdf / cdf[-1]
    lam = grid[torch.searchsorted(cdf, u).clamp_max(len(grid) - 1)]
    lam = torch.maximum(lam, 1 - lam)
    out = lam.view(n, *([1] * (x.ndim - 1))) * x + (1 - lam).view(n, *([1] * (x.ndim - 1))) * x[partner]
    return out, labels


def transform_images(x: torch.Tensor, names: Sequence[str], gen: torch.Generator,
                     labels: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Apply ``names`` in order to images ``x`` ``[n, c, h, w]`` (each sample its own draw).

    Returns the images (clamped to [0, 1], the pixel range of every data set) and the labels
    (changed by nothing: mixup keeps the dominant image's label).
    """
    if x.ndim != 4:
        raise ConfigError(f"augmentation needs images [n, c, h, w], got shape {tuple(x.shape)}")
    x = x.float()
    for name in names:
        if name == "mixup":
            x, labels = mixup(x, labels if labels is not None else torch.zeros(len(x), dtype=torch.long), gen)
        else:
            x = _IMAGE_TRANSFORMS[name](x, gen)
    return x.clamp_(0.0, 1.0), labels


def block_generator(seed: int, copy: int, block: int) -> torch.Generator:
    """The generator of block ``block`` of copy ``copy`` (independent of any chunking)."""
    mixed = np.random.SeedSequence([int(seed), int(copy), int(block), 0xA06]).generate_state(1)[0]
    return torch.Generator().manual_seed(int(mixed))


def augment_rows(x: np.ndarray, labels: np.ndarray, image_shape: Sequence[int], names: Sequence[str],
                 seed: int, copy: int, start: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Copy ``copy`` of flattened rows ``x`` (rows ``start...`` of the training set), seeded per block.

    ``start`` must be a multiple of :data:`BLOCK` (rows are drawn in whole blocks). Mixup
    partners come from the same block.
    """
    if start % BLOCK:
        raise ConfigError(f"augment_rows: start={start} must be a multiple of BLOCK={BLOCK}")
    out = np.empty((len(x), x.shape[1]), dtype=np.float32)
    ys = np.array(labels, copy=True)
    for i in range(0, len(x), BLOCK):
        gen = block_generator(seed, copy, (start + i) // BLOCK)
        xb = torch.from_numpy(np.ascontiguousarray(x[i : i + BLOCK], dtype=np.float32)).reshape(-1, *image_shape)
        yb = torch.from_numpy(np.asarray(labels[i : i + BLOCK]))
        xt, yt = transform_images(xb, names, gen, yb)
        out[i : i + BLOCK] = xt.reshape(len(xb), -1).numpy()
        ys[i : i + BLOCK] = yt.numpy()
    return out, ys


def augmented_features(
    x_train: np.ndarray,
    y_train: np.ndarray,
    image_shape: Sequence[int],
    names: Sequence[str],
    copies: int,
    seed: int,
    *,
    label_fn: Callable[[np.ndarray], np.ndarray],
    lift_fn: Callable[[np.ndarray], torch.Tensor],
    n_features: int,
    chunk_rows: int = 8 * BLOCK,
    original: tuple[torch.Tensor, np.ndarray] | None = None,
) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """The lifted features, hard labels and teacher logits of ``copies`` augmented copies.

    Rows are laid out copy by copy: row ``c * N + i`` is copy ``c`` of training image ``i``.
    With ``original = (features [N, F], teacher logits [N, C])`` of the untransformed images,
    those come first (copy 0) and the augmented copies follow (``(1 + copies) N`` rows), so
    that the caller never concatenates two large matrices.
    Each chunk of ``chunk_rows`` images is transformed, labelled by ``label_fn`` (flattened
    images -> ``[n, C]`` logits) and lifted by ``lift_fn`` (the pipeline fitted on the original
    images) straight into the preallocated output, so that the only full-size array is the
    result (the caller checks it against ``--max-memory`` first).

    Returns:
        ``(features [copies*N, F] float32, labels [copies*N], teacher logits [copies*N, C])``.
    """
    check_range("augment_copies", copies, 1, MAX_COPIES, integer=True)
    if chunk_rows % BLOCK:
        raise ConfigError(f"chunk_rows={chunk_rows} must be a multiple of {BLOCK}")
    names = parse_augment(list(names))
    if not names:
        raise ConfigError("augmented_features needs at least one transformation (augment=shift,...)")
    n = len(x_train)
    first = 0 if original is None else 1
    total = (first + copies) * n
    feats = torch.empty(total, n_features, dtype=torch.float32)
    labels = np.empty(total, dtype=np.int64)
    logits: np.ndarray | None = None
    if original is not None:
        o_feats, o_logits = original
        if tuple(o_feats.shape) != (n, n_features) or len(o_logits) != n:
            raise ConfigError(f"original features {tuple(o_feats.shape)} / logits {tuple(np.shape(o_logits))} do not "
                              f"match {n} training rows of {n_features} features")
        feats[:n] = o_feats
        labels[:n] = y_train
        logits = np.empty((total, o_logits.shape[1]), dtype=np.float32)
        logits[:n] = o_logits
    for c in range(copies):
        for i in range(0, n, chunk_rows):
            xa, ya = augment_rows(x_train[i : i + chunk_rows], y_train[i : i + chunk_rows], image_shape, names,
                                  seed, c, i)
            t = np.asarray(label_fn(xa), dtype=np.float32)
            if logits is None:
                logits = np.empty((total, t.shape[1]), dtype=np.float32)
            rows = slice((first + c) * n + i, (first + c) * n + i + len(xa))
            logits[rows] = t
            labels[rows] = ya
            feats[rows] = lift_fn(xa)
    assert logits is not None
    if not np.isfinite(logits).all():
        raise ConfigError("the teacher's logits on augmented copies hold NaN or Inf; check the teacher")
    return feats, labels, logits
