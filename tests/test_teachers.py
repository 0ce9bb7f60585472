"""Teachers: the built-in MLP and its cache, TorchScript and factory teachers, their errors."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest
import torch
from torch import nn

from codesign.errors import ConfigError, TeacherError
from codesign.teachers import TeacherConfig, default_config, get_teacher, user_teacher

pytestmark = [
    pytest.mark.usefixtures("one_thread"),  # small tensors: one thread is fastest on a shared machine
    pytest.mark.filterwarnings("ignore:.*torch.jit.*deprecated:FutureWarning"),  # the user's side of TorchScript
]


def train_linear(ds, out=10, steps=150, seed=0) -> nn.Module:
    """A quickly trained flat-input linear classifier (~95% on digits)."""
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Flatten(), nn.Linear(ds.n_inputs, out))
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    x, y = torch.from_numpy(ds.x_train), torch.from_numpy(ds.y_train)
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    return net.eval()


class FlatOnly(nn.Module):
    """Refuses image-shaped input: the flat fallback must be used."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2:
            raise ValueError("flat input only")
        return self.net(x)


# --------------------------------------------------------------------------- built-in


def test_builtin_mlp_trains_on_digits(digits_teacher, digits):
    t = digits_teacher
    assert t.name == "mlp"
    assert t.train_logits.shape == (1437, 10) and t.test_logits.shape == (360, 10)
    assert t.train_logits.dtype == np.float32
    assert t.test_accuracy(digits) > 0.95
    assert t.info["test_accuracy"] == pytest.approx(t.test_accuracy(digits))
    assert t.info["epochs"] == 100 and list(t.info["widths"]) == [256, 256] and t.info["seed"] == 0
    # The cached logits are the model's.
    with torch.no_grad():
        logits = t.model(torch.from_numpy(digits.x_test)).numpy()
    assert np.allclose(logits, t.test_logits, atol=1e-5)


def test_builtin_teacher_cache(digits, tmp_path):
    first = get_teacher("mlp", digits, seed=3, epochs=2, cache_dir=tmp_path)
    assert first.info["cached"] is False
    (folder,) = (tmp_path / "teachers").iterdir()
    assert folder.name.startswith("digits-mlp-s3-")
    assert {p.name for p in folder.iterdir()} == {"model.pt", "outputs.npz", "info.json"}
    assert json.loads((folder / "info.json").read_text())["key"] == first.info["key"]

    second = get_teacher("mlp", digits, seed=3, epochs=2, cache_dir=tmp_path)
    assert second.info["cached"] is True
    assert np.array_equal(second.train_logits, first.train_logits)
    assert np.array_equal(second.test_logits, first.test_logits)
    for a, b in zip(first.model.state_dict().values(), second.model.state_dict().values()):
        assert torch.equal(a, b)
    # A cache entry with its logits alone (no weights) still serves distillation.
    (folder / "model.pt").unlink()
    third = get_teacher("mlp", digits, seed=3, epochs=2, cache_dir=tmp_path)
    assert third.model is None and np.array_equal(third.train_logits, first.train_logits)


def test_cache_key_changes_with_seed_and_epochs(digits, tmp_path):
    a = get_teacher("mlp", digits, seed=0, epochs=1, cache_dir=tmp_path)
    b = get_teacher("mlp", digits, seed=1, epochs=1, cache_dir=tmp_path)
    c = get_teacher("mlp", digits, seed=0, epochs=2, cache_dir=tmp_path)
    assert len({a.info["key"], b.info["key"], c.info["key"]}) == 3
    assert not b.info["cached"] and not c.info["cached"]
    assert len(list((tmp_path / "teachers").iterdir())) == 3
    assert not np.allclose(a.train_logits, b.train_logits)


def test_training_is_seeded(digits, tmp_path):
    a = get_teacher("mlp-narrow", digits, seed=5, epochs=1, cache_dir=tmp_path / "a")
    b = get_teacher("mlp-narrow", digits, seed=5, epochs=1, cache_dir=tmp_path / "b")
    assert not b.info["cached"]
    assert np.array_equal(a.train_logits, b.train_logits)


def test_default_epochs_for_small_data():
    assert default_config("mlp", n_train=1437).epochs == 100
    assert default_config("mlp", n_train=60000).epochs == 10
    assert default_config("mlp", epochs=4).epochs == 4


def test_teacher_config_validation():
    with pytest.raises(TeacherError, match="unknown teacher architecture 'vgg'.*mlp, mlp-narrow, resnet18"):
        TeacherConfig(arch="vgg")
    with pytest.raises(ConfigError, match="epochs"):
        TeacherConfig(epochs=0)
    with pytest.raises(ConfigError, match="widths"):
        TeacherConfig(widths=(0,))


# --------------------------------------------------------------------------- the user's teachers


@pytest.fixture
def linear_net(digits):
    return train_linear(digits)


@pytest.mark.parametrize("how", ["script", "trace"])
def test_torchscript_teacher(digits, linear_net, tmp_path, how):
    ts = torch.jit.script(linear_net) if how == "script" else torch.jit.trace(linear_net, torch.zeros(2, 64))
    path = tmp_path / "net.pt"
    ts.save(str(path))
    t = get_teacher(str(path), digits)
    with torch.no_grad():
        ref = linear_net(torch.from_numpy(digits.x_test)).numpy()
    assert np.allclose(t.test_logits, ref, atol=1e-5)
    assert t.test_accuracy(digits) > 0.9
    assert t.info["teacher"] == str(path)


def test_flat_input_fallback(digits, linear_net):
    t = user_teacher(FlatOnly(linear_net), digits)
    with torch.no_grad():
        ref = linear_net(torch.from_numpy(digits.x_train)).numpy()
    assert np.allclose(t.train_logits, ref, atol=1e-5)


def test_image_input_is_tried_first(digits):
    seen = []

    class Conv(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 10, 8)

        def forward(self, x):
            seen.append(tuple(x.shape[1:]))
            return self.conv(x).flatten(1)

    t = user_teacher(Conv(), digits)
    assert seen[0] == (1, 8, 8) and set(seen) == {(1, 8, 8)}
    assert t.test_logits.shape == (360, 10)


def test_factory_teacher(digits, linear_net, tmp_path, monkeypatch):
    (tmp_path / "my_factory_teacher.py").write_text(textwrap.dedent("""
        from torch import nn

        def build():
            return nn.Sequential(nn.Flatten(), nn.Linear(64, 10))

        def not_a_module():
            return 42
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(__import__("sys").modules, "my_factory_teacher", raising=False)
    weights = tmp_path / "w.pt"
    torch.save(linear_net.state_dict(), weights)

    t = get_teacher("my_factory_teacher:build", digits, weights=str(weights))
    with torch.no_grad():
        ref = linear_net(torch.from_numpy(digits.x_test)).numpy()
    assert np.allclose(t.test_logits, ref, atol=1e-5)

    with pytest.raises(TeacherError, match="needs --teacher-weights"):
        get_teacher("my_factory_teacher:build", digits)
    with pytest.raises(TeacherError, match="cannot import factory"):
        get_teacher("my_factory_teacher:nope", digits, weights=str(weights))
    with pytest.raises(TeacherError, match="cannot import factory"):
        get_teacher("no_such_module_xyz:build", digits, weights=str(weights))
    with pytest.raises(TeacherError, match="returned int, not a torch.nn.Module"):
        get_teacher("my_factory_teacher:not_a_module", digits, weights=str(weights))
    torch.save({"bogus": torch.zeros(1)}, tmp_path / "bad.pt")
    with pytest.raises(TeacherError, match="cannot load into my_factory_teacher:build"):
        get_teacher("my_factory_teacher:build", digits, weights=str(tmp_path / "bad.pt"))


def test_wrong_output_width(digits, tmp_path):
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 7))
    path = tmp_path / "seven.pt"
    torch.jit.script(net).save(str(path))
    with pytest.raises(TeacherError) as err:
        get_teacher(str(path), digits)
    msg = str(err.value)
    assert "outputs 7 values per sample" in msg and "has 10 classes" in msg


def test_non_matrix_output(digits):
    class Vec(nn.Module):
        def forward(self, x):
            return x.flatten(1).sum(1)

    with pytest.raises(TeacherError, match=r"expected a \[n, 10\] tensor"):
        user_teacher(Vec(), digits)


def test_nan_weights(digits):
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    with torch.no_grad():
        net[1].weight[2, 5] = float("nan")
    with pytest.raises(TeacherError, match=r"parameter 1\.weight holds NaN or Inf"):
        user_teacher(net, digits)


def test_nan_outputs(digits):
    class Log(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(64, 10)

        def forward(self, x):
            return torch.log(self.lin(x.flatten(1)))  # negative inputs -> NaN

    with pytest.raises(TeacherError, match="outputs on the train set hold NaN or Inf"):
        user_teacher(Log(), digits)


def test_teacher_that_accepts_nothing(digits):
    net = nn.Linear(10, 10)  # neither 1x8x8 images nor 64 flat pixels fit
    with pytest.raises(TeacherError) as err:
        user_teacher(net, digits, name="tiny")
    msg = str(err.value)
    assert "accepts neither digits images nor flattened pixels" in msg
    assert "(2, 1, 8, 8)" in msg and "(2, 64)" in msg
    assert "\n" not in msg  # one line, as the CLI prints it


def test_missing_or_broken_torchscript_file(digits, tmp_path):
    with pytest.raises(TeacherError, match="no such TorchScript file"):
        get_teacher(str(tmp_path / "missing.pt"), digits)
    bad = tmp_path / "junk.pt"
    bad.write_bytes(b"definitely not a zip archive")
    with pytest.raises(TeacherError, match="not a loadable TorchScript file"):
        get_teacher(str(bad), digits)


def test_loading_torchscript_emits_no_deprecation_noise(digits, linear_net, tmp_path):
    import warnings

    path = tmp_path / "net.pt"
    torch.jit.trace(linear_net, torch.zeros(2, 64)).save(str(path))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        get_teacher(str(path), digits)
    assert not [w for w in caught if "torch.jit.load" in str(w.message)]


def test_torch_device_is_checked_before_training(digits, tmp_path):
    with pytest.raises(ConfigError, match="torch_device='tpu': expected one of cpu, cuda"):
        get_teacher("mlp", digits, epochs=1, cache_dir=tmp_path, torch_device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="sees no CUDA device"):
            get_teacher("mlp", digits, epochs=1, cache_dir=tmp_path, torch_device="cuda")
    assert not (tmp_path / "teachers").exists()


# --------------------------------------------------------------------------- cnn


def test_cnn_architecture_and_shapes(digits):
    from codesign.data import Dataset
    from codesign.teachers import ARCHITECTURES, CNN_WIDTHS

    cfg = default_config("cnn", n_train=60000, dataset="mnist")
    assert cfg.widths == CNN_WIDTHS and cfg.augment == ("affine",) and cfg.epochs == 5
    fashion = default_config("cnn", n_train=60000, dataset="fashion-mnist")
    assert fashion.augment == ("flip", "crop") and fashion.epochs == 8
    net = ARCHITECTURES["cnn"](digits, default_config("cnn", n_train=1437, dataset="digits"))
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == list(CNN_WIDTHS)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in net.modules()) == 3
    assert net(torch.zeros(5, 64)).shape == (5, 10)  # flat 8x8 digits in, logits out
    mnist_like = Dataset(name="mnist", x_train=np.zeros((2, 784), np.float32), y_train=np.zeros(2, np.int64),
                         x_test=np.zeros((1, 784), np.float32), y_test=np.zeros(1, np.int64),
                         image_shape=(1, 28, 28), classes=tuple(map(str, range(10))), source="test")
    net28 = ARCHITECTURES["cnn"](mnist_like, cfg)
    assert net28(torch.zeros(3, 784)).shape == (3, 10)
    head = [m for m in net28.modules() if isinstance(m, nn.Linear)][-1]
    assert head.in_features == 128 * 3 * 3  # 28 -> 14 -> 7 -> 3


def test_cnn_trains_with_augmentation_and_is_cached(digits, one_thread):
    t = get_teacher("cnn", digits, seed=0, epochs=3)
    assert t.info["augment"] == ["affine"] and t.info["cached"] is False
    assert t.train_logits.shape == (1437, 10) and np.isfinite(t.train_logits).all()
    assert t.test_accuracy(digits) > 0.5  # 3 epochs of 12 steps: learning, not converged
    again = get_teacher("cnn", digits, seed=0, epochs=3)
    assert again.info["cached"] is True and again.model is not None
    assert np.array_equal(again.train_logits, t.train_logits)
    with torch.no_grad():
        assert np.allclose(again.model(torch.from_numpy(digits.x_test)).numpy(), t.test_logits, atol=1e-5)


def test_augment_stays_out_of_older_cache_keys():
    assert "augment" not in TeacherConfig().key_dict()  # mlp/resnet18 entries keep their keys
    assert TeacherConfig(arch="cnn", augment=("flip",)).key_dict()["augment"] == ["flip"]
    with pytest.raises(ConfigError, match="not a transformation"):
        TeacherConfig(arch="cnn", augment=("blur",))
