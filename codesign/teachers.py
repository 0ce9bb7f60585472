"""Teacher networks: built-in architectures trained and cached, or the user's own network.

Built-in architectures (a small registry, timm-style):

* ``mlp``: 784-256-256-10 ReLU (reaches >= 98% on MNIST), widths configurable;
* ``mlp-narrow``: the predecessor paper's 784-20-20-20-20-20-10 ReLU network;
* ``resnet18``: torchvision's ResNet-18 with a 1-channel 3x3 stride-1 stem for 1x28x28 input;
* ``cnn``: three conv3x3-BN-ReLU-maxpool blocks (32, 64, 128 channels) and a linear head,
  trained with the augmentation suited to its data set (``codesign.augment``: small affine maps
  for digits, flips and crops for clothes); 99.3-99.5% on MNIST, ~92% on Fashion-MNIST in a few
  CPU minutes per epoch.

A trained teacher and its logits on the train and test sets are cached under
``<cache>/teachers/<hash>/`` keyed by data set (and a fingerprint of its contents),
architecture, widths, seed, epochs and optimiser settings, so each is computed once.

A user's own pre-trained network is either a TorchScript file (``--teacher net.pt``) or an
importable factory plus a state dict (``--teacher pkg.module:factory --teacher-weights w.pt``).
It receives pixels in [0, 1], as images ``[n, c, h, w]`` or, if that fails, flattened
``[n, c*h*w]``, and must return ``[n, n_classes]`` logits.
"""

from __future__ import annotations

import importlib
import json
import math
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from .cache import atomic_save_npz, atomic_torch_save, atomic_write_json, cache_root, stable_hash
from .augment import parse_augment, teacher_augmentation, transform_images
from .data import Dataset
from .errors import ConfigError, TeacherError, check_choice, check_range
from .log import get_logger
from .progress import progress

log = get_logger(__name__)

# --------------------------------------------------------------------------- architectures


def _mlp(n_inputs: int, n_classes: int, widths: tuple[int, ...]) -> nn.Module:
    layers: list[nn.Module] = [nn.Flatten()]
    prev = n_inputs
    for w in widths:
        layers += [nn.Linear(prev, w), nn.ReLU()]
        prev = w
    layers.append(nn.Linear(prev, n_classes))
    return nn.Sequential(*layers)


def _resnet18(image_shape: tuple[int, int, int], n_classes: int) -> nn.Module:
    from torchvision.models import resnet18

    net = resnet18(weights=None, num_classes=n_classes)
    # 28x28 inputs: a 3x3 stride-1 stem on one channel; the max-pool is kept so layer1 runs at
    # 14x14, which keeps CPU training affordable (layer4 ends at 2x2 before global pooling).
    net.conv1 = nn.Conv2d(image_shape[0], 64, kernel_size=3, stride=1, padding=1, bias=False)
    return _Unflatten(net, image_shape)


def _cnn(image_shape: tuple[int, int, int], n_classes: int, widths: tuple[int, ...]) -> nn.Module:
    """``len(widths)`` blocks of conv3x3 (padding 1) -> BatchNorm -> ReLU -> 2x2 max-pool, then
    dropout and one linear layer on the flattened maps (28x28 -> 14 -> 7 -> 3 with three blocks)."""
    layers: list[nn.Module] = []
    c, h, w = image_shape
    for width in widths:
        layers += [nn.Conv2d(c, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
        if min(h, w) >= 2:
            layers.append(nn.MaxPool2d(2))
            h, w = h // 2, w // 2
        c = width
    layers += [nn.Flatten(), nn.Dropout(0.25), nn.Linear(c * h * w, n_classes)]
    return _Unflatten(nn.Sequential(*layers), image_shape)


class _Unflatten(nn.Module):
    """Accept flattened pixels and reshape them for a convolutional network."""

    def __init__(self, net: nn.Module, image_shape: tuple[int, int, int]) -> None:
        super().__init__()
        self.net = net
        self.image_shape = tuple(image_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.reshape(x.shape[0], *self.image_shape))


@dataclass(frozen=True)
class TeacherConfig:
    """How a built-in teacher is built and trained.

    Attributes:
        arch: ``mlp``, ``mlp-narrow``, ``resnet18`` or ``cnn``.
        widths: hidden widths for ``mlp``, channel widths of the blocks for ``cnn`` (ignored by
            the others).
        epochs: training epochs.
        batch_size: minibatch size.
        lr: Adam learning rate (cosine-decayed to 0 over the run).
        seed: seeds initialisation and shuffling.
        augment: transformations applied to each training minibatch (``codesign.augment``
            names; each sample its own draw); empty: none.
    """

    arch: str = "mlp"
    widths: tuple[int, ...] = (256, 256)
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    seed: int = 0
    augment: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.arch not in ARCHITECTURES:
            raise TeacherError(
                f"unknown teacher architecture {self.arch!r}; built-in: {', '.join(ARCHITECTURES)} "
                "(or give a TorchScript file or module:factory)"
            )
        check_range("epochs", self.epochs, 1, 1000, integer=True)
        check_range("batch_size", self.batch_size, 1, 1 << 20, integer=True)
        check_range("lr", self.lr, 1e-8, 10.0)
        check_range("seed", self.seed, 0, 2**31 - 1, integer=True)
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        for w in self.widths:
            check_range("widths", w, 1, 1 << 16, integer=True)
        object.__setattr__(self, "augment", parse_augment(list(self.augment)))

    def key_dict(self) -> dict:
        """The fields that key the cache (``augment`` only when set, so older entries stay valid)."""
        d = asdict(self)
        if not d["augment"]:
            del d["augment"]
        else:
            d["augment"] = list(d["augment"])
        return d


def _images(ds: Dataset, arch: str) -> tuple[int, int, int]:
    """The image shape of ``ds``, or a clear error for vectors (a convolutional teacher needs images)."""
    if ds.image_shape is None:
        raise ConfigError(f"teacher={arch!r} is convolutional and needs images, but {ds.name} holds vectors "
                          f"({ds.n_inputs} features per sample); use the mlp (or mlp-narrow) teacher, or give the data "
                          "an image shape (shape=CxHxW)")
    return ds.image_shape


ARCHITECTURES: dict[str, Callable[[Dataset, TeacherConfig], nn.Module]] = {
    "mlp": lambda ds, cfg: _mlp(ds.n_inputs, ds.n_classes, cfg.widths),
    "mlp-narrow": lambda ds, cfg: _mlp(ds.n_inputs, ds.n_classes, (20, 20, 20, 20, 20)),
    "resnet18": lambda ds, cfg: _resnet18(_images(ds, "resnet18"), ds.n_classes),
    "cnn": lambda ds, cfg: _cnn(_images(ds, "cnn"), ds.n_classes, cfg.widths),
}
#: Default epochs per architecture when the user gives none.
DEFAULT_EPOCHS = {"mlp": 10, "mlp-narrow": 20, "resnet18": 3, "cnn": 5}
#: ``cnn`` epochs per data set where they differ from :data:`DEFAULT_EPOCHS` (clothes need more).
CNN_EPOCHS = {"fashion-mnist": 8}
#: Channel widths of the ``cnn`` teacher's blocks.
CNN_WIDTHS = (32, 64, 128)


def default_config(arch: str, seed: int = 0, epochs: int | None = None, n_train: int = 60000,
                   dataset: str | None = None) -> TeacherConfig:
    """The default training recipe for ``arch`` on ``n_train`` samples of ``dataset``.

    Small data sets (digits: 1437 training images) get more epochs, so that every teacher
    sees at least ~4000 minibatches (capped at 100 epochs). ``cnn`` trains with the
    augmentation of its data set (:func:`codesign.augment.teacher_augmentation`).
    """
    if epochs is None:
        epochs = CNN_EPOCHS.get(dataset, DEFAULT_EPOCHS["cnn"]) if arch == "cnn" else DEFAULT_EPOCHS.get(arch, 10)
        if arch != "resnet18":  # the cnn learns faster per step: 2000 minibatches at least
            steps = 2000 if arch == "cnn" else 4000
            epochs = min(100, max(epochs, math.ceil(steps * 128 / max(n_train, 1))))
    kwargs: dict = {"lr": 1e-3, "batch_size": 128}
    if arch == "resnet18":
        kwargs = {"lr": 2e-3, "batch_size": 128}
    if arch == "cnn":
        kwargs = {"lr": 3e-3, "batch_size": 128, "widths": CNN_WIDTHS,
                  "augment": teacher_augmentation(dataset or "mnist")}
    return TeacherConfig(arch=arch, epochs=epochs, seed=seed, **kwargs)


# --------------------------------------------------------------------------- teacher object


@dataclass
class Teacher:
    """A classifier plus its cached logits on the train and test sets.

    Attributes:
        name: architecture name or the user's file / factory.
        model: the network (eval mode).
        train_logits: ``[n_train, n_classes]`` float32.
        test_logits: ``[n_test, n_classes]`` float32.
        info: provenance (config, cache key, accuracy, training time).
    """

    name: str
    model: nn.Module | None
    train_logits: np.ndarray
    test_logits: np.ndarray
    info: dict = field(default_factory=dict)

    def test_accuracy(self, ds: Dataset) -> float:
        return float((self.test_logits.argmax(1) == ds.y_test).mean())


def predict_logits(model: nn.Module, x: np.ndarray, device: str = "cpu", batch: int = 2048) -> np.ndarray:
    """``model``'s float32 logits on the rows of ``x`` (numpy), ``batch`` rows at a time, in eval mode."""
    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(x), batch):
            xb = torch.from_numpy(x[i : i + batch]).to(device)
            out.append(model(xb).float().cpu())
    return torch.cat(out).numpy()


def train_teacher(ds: Dataset, cfg: TeacherConfig, torch_device: str = "cpu", verbose: bool = False) -> nn.Module:
    """Train a built-in teacher on ``ds`` (Adam, cosine schedule, cross-entropy)."""
    gen = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    model = ARCHITECTURES[cfg.arch](ds, cfg).to(torch_device)
    x = torch.from_numpy(ds.x_train)
    y = torch.from_numpy(ds.y_train)
    steps_per_epoch = math.ceil(len(x) / cfg.batch_size)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    total = cfg.epochs * steps_per_epoch
    if total >= 4:
        # the warm-up takes 10 % of the steps, and at least 2 (OneCycleLR divides by its length: a tiny
        # data set, e.g. 142 wine rows x 5 epochs = 10 steps, would make it 0); unchanged from 20 steps on
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=total,
                                                    pct_start=min(0.5, max(0.1, 2.0 / total)))
    else:  # too few steps for a schedule: the constant rate
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
    loss_fn = nn.CrossEntropyLoss()
    aug_gen = torch.Generator().manual_seed(cfg.seed + 1)  # the augmentation's own stream
    model.train()
    for _ in progress(range(cfg.epochs), desc=f"teacher {cfg.arch}", enabled=verbose):
        perm = torch.randperm(len(x), generator=gen)
        for i in range(steps_per_epoch):
            idx = perm[i * cfg.batch_size : (i + 1) * cfg.batch_size]
            xb, yb = x[idx], y[idx]
            if cfg.augment:  # on the CPU, per sample, before the batch moves to the device
                xb = transform_images(xb.reshape(len(xb), *ds.image_shape), cfg.augment, aug_gen)[0].reshape(len(xb), -1)
            xb, yb = xb.to(torch_device), yb.to(torch_device)
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(xb), yb)
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    return model.cpu()


def get_teacher(
    spec: str,
    ds: Dataset,
    *,
    seed: int = 0,
    epochs: int | None = None,
    weights: str | None = None,
    cache_dir: str | None = None,
    torch_device: str = "cpu",
    verbose: bool = False,
) -> Teacher:
    """A teacher for ``ds`` from a spec: a built-in architecture, a TorchScript file, or
    ``module:factory`` (with ``weights``, a state-dict file). Logits are cached.
    """
    check_torch_device(torch_device)
    if spec in ARCHITECTURES:
        return _builtin_teacher(default_config(spec, seed, epochs, len(ds.y_train), ds.name), ds, cache_dir,
                                torch_device, verbose)
    if ":" in spec and not Path(spec).exists():
        model = _factory_teacher(spec, weights)
    else:
        model = _torchscript_teacher(spec)
    return user_teacher(model, ds, name=spec, torch_device=torch_device)


def check_torch_device(torch_device: str) -> None:
    """Refuse, before any training, a torch device that is unknown or absent on this machine."""
    check_choice("torch_device", str(torch_device).split(":")[0], ("cpu", "cuda"))
    if str(torch_device).startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"torch_device={torch_device!r} but PyTorch sees no CUDA device here; use --torch-device cpu")


def _cached_teacher(cfg: TeacherConfig, ds: Dataset, folder: Path, model: nn.Module) -> Teacher:
    """A teacher from its cache folder; raises on anything damaged or not what it claims.

    Distillation needs only the cached logits; the weights are loaded when present (a teacher
    trained on a GPU machine may come back with its logits alone). Weights are read with
    ``weights_only=True`` and the logits without pickles: a cache entry cannot run code.
    """
    if (folder / "model.pt").is_file():
        model.load_state_dict(torch.load(folder / "model.pt", map_location="cpu", weights_only=True))
    else:
        model = None
    with np.load(folder / "outputs.npz", allow_pickle=False) as outs:
        train, test = outs["train"], outs["test"]
    n_classes = ds.n_classes
    if train.shape != (len(ds.y_train), n_classes) or test.shape != (len(ds.y_test), n_classes):
        raise ValueError(f"logits of shape {train.shape}/{test.shape}, expected ({len(ds.y_train)}/{len(ds.y_test)}, "
                         f"{n_classes})")
    if not (np.isfinite(train).all() and np.isfinite(test).all()):
        raise ValueError("non-finite logits")
    info = json.loads((folder / "info.json").read_text())
    if not isinstance(info, dict):
        raise ValueError("info.json is not an object")
    info["cached"] = True
    return Teacher(cfg.arch, model.eval() if model is not None else None, train, test, info)


def _builtin_teacher(cfg: TeacherConfig, ds: Dataset, cache_dir, torch_device: str, verbose: bool) -> Teacher:
    # every byte of both splits (the cached entry holds the test logits too)
    key_obj = {"dataset": ds.name, "data": ds.fingerprint, **cfg.key_dict()}
    key = stable_hash(key_obj)
    folder = cache_root(cache_dir) / "teachers" / f"{ds.slug}-{cfg.arch}-s{cfg.seed}-{key}"
    model = ARCHITECTURES[cfg.arch](ds, cfg)
    if (folder / "outputs.npz").is_file() and (folder / "info.json").is_file():
        try:
            teacher = _cached_teacher(cfg, ds, folder, model)
            log.debug("teacher %s on %s from the cache: %s", cfg.arch, ds.name, folder)
            return teacher
        except Exception as exc:  # noqa: BLE001 - a damaged entry is rebuilt, never trusted
            warnings.warn(f"teacher cache entry {folder} could not be read ({type(exc).__name__}: {exc}); "
                          "training the teacher again", stacklevel=2)
            (folder / "info.json").unlink(missing_ok=True)
    if verbose:
        log.info("training the %s teacher on %s (%d samples, %d epochs; cached in %s afterwards)",
                 cfg.arch, ds.name, len(ds.y_train), cfg.epochs, folder)
    else:
        log.debug("training the %s teacher on %s (%d samples, %d epochs) into %s", cfg.arch, ds.name,
                  len(ds.y_train), cfg.epochs, folder)
    t0 = time.perf_counter()
    model = train_teacher(ds, cfg, torch_device, verbose)
    seconds = time.perf_counter() - t0
    train_logits = predict_logits(model, ds.x_train, "cpu")
    test_logits = predict_logits(model, ds.x_test, "cpu")
    info = {
        **key_obj,
        "key": key,
        "train_seconds": round(seconds, 2),
        "test_accuracy": float((test_logits.argmax(1) == ds.y_test).mean()),
        "torch_device": torch_device,
    }
    atomic_torch_save(folder / "model.pt", model.state_dict())
    atomic_save_npz(folder / "outputs.npz", train=train_logits, test=test_logits)
    atomic_write_json(folder / "info.json", info)  # written last: its presence marks a complete entry
    info["cached"] = False
    return Teacher(cfg.arch, model, train_logits, test_logits, info)


def _torchscript_teacher(path: str) -> nn.Module:
    p = Path(path)
    if not p.is_file():
        raise TeacherError(
            f"teacher {path!r}: not a built-in architecture ({', '.join(ARCHITECTURES)}) "
            "and no such TorchScript file; for a factory use module:function with --teacher-weights"
        )
    try:
        with warnings.catch_warnings():
            # TorchScript is deprecated upstream but is the portable format users have.
            warnings.filterwarnings("ignore", message=".*torch.jit.load.*deprecated", category=FutureWarning)
            return torch.jit.load(str(p), map_location="cpu").eval()
    except Exception as exc:
        raise TeacherError(f"teacher {path!r}: not a loadable TorchScript file ({type(exc).__name__}: {exc})") from None


def _factory_teacher(spec: str, weights: str | None) -> nn.Module:
    module_name, _, attr = spec.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise TeacherError(f"teacher {spec!r}: cannot import factory ({exc})") from None
    try:
        model = factory()
    except Exception as exc:
        raise TeacherError(f"teacher {spec!r}: calling the factory failed ({type(exc).__name__}: {exc})") from None
    if not isinstance(model, nn.Module):
        raise TeacherError(f"teacher {spec!r}: the factory returned {type(model).__name__}, not a torch.nn.Module")
    if weights is None:
        raise TeacherError(f"teacher {spec!r}: a factory teacher needs --teacher-weights FILE (a state dict)")
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except Exception as exc:
        raise TeacherError(f"teacher weights {weights!r}: cannot load into {spec} ({type(exc).__name__}: {exc})") from None
    return model.eval()


def user_teacher(model: nn.Module, ds: Dataset, *, name: str = "user", torch_device: str = "cpu") -> Teacher:
    """Wrap a user's pre-trained network: check it, then compute its logits once."""
    for pname, p in list(model.named_parameters()) + list(model.named_buffers()):
        if p.is_floating_point() and not torch.isfinite(p).all():
            raise TeacherError(f"teacher {name!r}: parameter {pname} holds NaN or Inf values")
    model = model.eval()
    call = _input_adapter(model, ds, name)
    wrapped = _Adapter(model, call, ds.image_shape)
    train_logits = predict_logits(wrapped, ds.x_train, "cpu")
    test_logits = predict_logits(wrapped, ds.x_test, "cpu")
    for split, out in (("train", train_logits), ("test", test_logits)):
        if not np.isfinite(out).all():
            raise TeacherError(f"teacher {name!r}: its outputs on the {split} set hold NaN or Inf")
    info = {"teacher": name, "test_accuracy": float((test_logits.argmax(1) == ds.y_test).mean())}
    return Teacher(name, wrapped, train_logits, test_logits, info)


class _Adapter(nn.Module):
    def __init__(self, model: nn.Module, mode: str, image_shape: tuple[int, int, int] | None) -> None:
        super().__init__()
        self.model, self.mode = model, mode
        self.image_shape = tuple(image_shape) if image_shape is not None else None

    def forward(self, x):
        if self.mode == "image":
            return self.model(x.reshape(x.shape[0], *self.image_shape))
        return self.model(x)


def _input_adapter(model: nn.Module, ds: Dataset, name: str) -> str:
    """Find whether ``model`` takes images or flat vectors, and check its output width."""
    errors = []
    for mode in ("image", "flat") if ds.is_image else ("flat",):
        x = torch.from_numpy(ds.x_train[:2])
        if mode == "image":
            x = x.reshape(2, *ds.image_shape)
        try:
            with torch.no_grad():
                out = model(x)
        except Exception as exc:
            errors.append(f"{mode} input {tuple(x.shape)}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
            continue
        if not isinstance(out, torch.Tensor) or out.ndim != 2:
            raise TeacherError(f"teacher {name!r}: expected a [n, {ds.n_classes}] tensor of logits, got {getattr(out, 'shape', type(out).__name__)}")
        if out.shape[1] != ds.n_classes:
            raise TeacherError(
                f"teacher {name!r} outputs {out.shape[1]} values per sample but {ds.name} has "
                f"{ds.n_classes} classes; give a network whose last layer has {ds.n_classes} outputs"
            )
        return mode
    raise TeacherError(
        f"teacher {name!r} accepts neither {ds.name} images nor flattened pixels: " + "; ".join(errors)
        if ds.is_image else f"teacher {name!r} does not accept {ds.name}'s vectors [n, {ds.n_inputs}]: " + "; ".join(errors)
    )
