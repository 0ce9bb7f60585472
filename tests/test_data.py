"""Data loading: digits, the IDX reader, the MNIST folder search and its errors."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pytest

from codesign.data import candidate_dirs, load_dataset, read_idx
from codesign.errors import ConfigError, DataError

pytestmark = pytest.mark.usefixtures("one_thread")  # small tensors: one thread is fastest on a shared machine


def idx_bytes(a: np.ndarray) -> bytes:
    """Encode ``a`` (uint8) as an IDX file."""
    assert a.dtype == np.uint8
    header = bytes([0, 0, 0x08, a.ndim]) + np.array(a.shape, dtype=">u4").tobytes()
    return header + a.tobytes()


def write_idx(path: Path, a: np.ndarray, gz: bool) -> Path:
    raw = idx_bytes(a)
    path.write_bytes(gzip.compress(raw) if gz else raw)
    return path


def write_fake_mnist(folder: Path, n_train=6, n_test=4, hw=(4, 5), gz=True, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, *hw), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, *hw), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    for stem, a in arrays.items():
        write_idx(folder / (stem + (".gz" if gz else "")), a, gz)
    return arrays


# --------------------------------------------------------------------------- digits


def test_digits_shapes_and_ranges(digits):
    assert digits.name == "digits"
    assert digits.x_train.shape == (1437, 64) and digits.x_test.shape == (360, 64)
    assert digits.y_train.shape == (1437,) and digits.y_test.shape == (360,)
    assert digits.x_train.dtype == np.float32 and digits.y_train.dtype == np.int64
    for x in (digits.x_train, digits.x_test):
        assert x.min() == 0.0 and x.max() == 1.0
    assert set(np.unique(digits.y_train)) == set(range(10))
    assert set(np.unique(digits.y_test)) == set(range(10))
    assert digits.n_classes == 10 and digits.n_inputs == 64
    assert digits.image_shape == (1, 8, 8)
    # Pixels are sklearn's 0..16 counts scaled by 1/16.
    assert np.allclose(digits.x_train * 16, np.round(digits.x_train * 16))


def test_digits_split_is_fixed(digits):
    again = load_dataset("digits")
    assert np.array_equal(again.x_test, digits.x_test) and np.array_equal(again.y_train, digits.y_train)
    # Every 5th sample is test: the split is the index pattern, not a random draw.
    from sklearn.datasets import load_digits

    bunch = load_digits()
    assert np.allclose(digits.x_test, bunch.data[::5] / 16.0)
    assert np.array_equal(digits.y_test, bunch.target[::5])
    assert np.bincount(digits.y_test, minlength=10).min() >= 20


def test_unknown_dataset_is_config_error():
    with pytest.raises(ConfigError, match="dataset='cifar'.*digits, mnist, fashion-mnist"):
        load_dataset("cifar")


# --------------------------------------------------------------------------- read_idx


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_round_trip(tmp_path, gz):
    a = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    path = write_idx(tmp_path / ("a.idx.gz" if gz else "a.idx"), a, gz)
    out = read_idx(path)
    assert out.shape == (2, 3, 4) and out.dtype == np.uint8
    assert np.array_equal(out, a)


def test_read_idx_one_dimensional(tmp_path):
    labels = np.array([3, 1, 4, 1, 5], dtype=np.uint8)
    assert np.array_equal(read_idx(write_idx(tmp_path / "l", labels, False)), labels)


def test_read_idx_big_endian_int32(tmp_path):
    a = np.array([[1, -2], [70000, 3]], dtype=">i4")
    raw = bytes([0, 0, 0x0C, 2]) + np.array([2, 2], dtype=">u4").tobytes() + a.tobytes()
    (tmp_path / "i").write_bytes(raw)
    assert read_idx(tmp_path / "i").tolist() == [[1, -2], [70000, 3]]


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_truncated_data(tmp_path, gz):
    raw = idx_bytes(np.zeros((3, 4, 4), dtype=np.uint8))[:-5]
    path = tmp_path / ("t.gz" if gz else "t")
    path.write_bytes(gzip.compress(raw) if gz else raw)
    with pytest.raises(DataError, match="truncated") as err:
        read_idx(path)
    assert str(path) in str(err.value)
    assert "48 bytes" in str(err.value) and "holds 43" in str(err.value)


def test_read_idx_truncated_header(tmp_path):
    path = tmp_path / "h"
    path.write_bytes(bytes([0, 0, 8, 3]) + b"\x00\x00\x00\x02")  # 3 dims announced, 1 given
    with pytest.raises(DataError, match="truncated"):
        read_idx(path)


def test_read_idx_truncated_gzip_stream(tmp_path):
    blob = gzip.compress(idx_bytes(np.arange(200, dtype=np.uint8).reshape(10, 20)))
    path = tmp_path / "cut.gz"
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DataError, match="truncated"):
        read_idx(path)


@pytest.mark.parametrize("head", [b"\x01\x00\x08\x01", b"\x00\x00\x42\x01", b"PK\x03\x04", b"\x00"])
def test_read_idx_bad_magic(tmp_path, head):
    path = tmp_path / "bad"
    path.write_bytes(head + b"\x00" * 12)
    with pytest.raises(DataError, match="bad magic"):
        read_idx(path)


def test_read_idx_missing_file(tmp_path):
    with pytest.raises(DataError, match="cannot read"):
        read_idx(tmp_path / "nope")


def test_read_idx_plain_file_named_gz(tmp_path):
    path = write_idx(tmp_path / "x.gz", np.zeros((2, 2), dtype=np.uint8), gz=False)
    with pytest.raises(DataError, match="cannot read"):
        read_idx(path)


# --------------------------------------------------------------------------- folder search


@pytest.mark.parametrize("layout", ["mnist", "mnist_flat", "MNIST/raw"])
@pytest.mark.parametrize("gz", [True, False])
def test_load_idx_dataset_from_layouts(tmp_path, layout, gz):
    folder = tmp_path if layout == "mnist_flat" else tmp_path / layout
    arrays = write_fake_mnist(folder, gz=gz)
    ds = load_dataset("mnist", tmp_path)
    assert ds.x_train.shape == (6, 20) and ds.x_test.shape == (4, 20)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int64
    assert ds.image_shape == (1, 4, 5)
    assert np.allclose(ds.x_train * 255, arrays["train-images-idx3-ubyte"].reshape(6, 20))
    assert np.array_equal(ds.y_test, arrays["t10k-labels-idx1-ubyte"])
    assert ds.source == str(folder)


def test_load_idx_dataset_root_from_env(tmp_path, monkeypatch):
    write_fake_mnist(tmp_path / "fashion-mnist")
    monkeypatch.setenv("CODESIGN_DATA", str(tmp_path))
    ds = load_dataset("fashion-mnist")
    assert ds.classes[0] == "T-shirt/top" and ds.n_classes == 10
    assert len(ds.y_train) == 6


def test_load_idx_dataset_label_count_mismatch(tmp_path):
    write_fake_mnist(tmp_path / "mnist")
    write_idx(tmp_path / "mnist" / "train-labels-idx1-ubyte.gz", np.zeros(5, dtype=np.uint8), True)
    with pytest.raises(DataError, match=r"mnist train: images \(6, 4, 5\) and labels \(5,\) do not match"):
        load_dataset("mnist", tmp_path)


def test_missing_data_root_lists_where_it_looked(tmp_path):
    root = tmp_path / "nonexistent"
    with pytest.raises(DataError) as err:
        load_dataset("mnist", root)
    msg = str(err.value)
    for folder in candidate_dirs("mnist", root):
        assert str(folder) in msg
    assert str(root / "mnist") in msg and str(root / "MNIST" / "raw") in msg
    assert "--data-root" in msg and "CODESIGN_DATA" in msg


def test_missing_files_without_root(monkeypatch):
    monkeypatch.delenv("CODESIGN_DATA", raising=False)
    with pytest.raises(DataError, match="no data root given"):
        load_dataset("mnist")


def test_fashion_also_looks_in_debian_folder(tmp_path):
    from codesign.data import DEBIAN_FASHION

    dirs = candidate_dirs("fashion-mnist", tmp_path)
    assert dirs[-1] == DEBIAN_FASHION
    assert tmp_path / "fashion_mnist" in dirs and tmp_path / "FashionMNIST" / "raw" in dirs


def test_one_missing_file_is_not_enough(tmp_path):
    write_fake_mnist(tmp_path / "mnist")
    (tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="not found"):
        load_dataset("mnist", tmp_path)


# --------------------------------------------------------------------------- real MNIST


def _real_root() -> Path | None:
    env = os.environ.get("CODESIGN_DATA")
    if env and (Path(env) / "mnist").is_dir():
        return Path(env)
    return None


@pytest.mark.skipif(_real_root() is None, reason="CODESIGN_DATA does not hold mnist/")
def test_real_mnist_canonical_shapes():
    ds = load_dataset("mnist", _real_root())
    assert ds.x_train.shape == (60000, 784) and ds.y_train.shape == (60000,)
    assert ds.x_test.shape == (10000, 784) and ds.y_test.shape == (10000,)
    assert ds.image_shape == (1, 28, 28)
    assert abs(float(ds.x_train.mean()) - 0.1307) < 5e-4
    assert abs(float(ds.x_train.std()) - 0.3081) < 5e-4
    assert np.bincount(ds.y_train).tolist()[:2] == [5923, 6742]
    assert ds.x_train.min() == 0.0 and ds.x_train.max() == 1.0
