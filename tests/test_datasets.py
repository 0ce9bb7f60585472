"""codesign.datasets: every source (npz, CSV, image folders, torchvision on disk, tabular, plugins),
the bad-data errors, the content hash, and distillation end to end on each source."""

from __future__ import annotations

import numpy as np
import pytest

from codesign.cli import main
from codesign.datasets import (Dataset, check_dataset_spec, list_datasets, load_dataset, make_dataset,
                               register_dataset, seeded_split)
from codesign.datasets.registry import REGISTRY
from codesign.errors import ConfigError, DataError

pytestmark = pytest.mark.usefixtures("one_thread")


def blobs(n=60, d=6, k=3, seed=0):
    """``n`` samples of ``k`` well-separated Gaussian classes in ``d`` dimensions."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % k
    centres = rng.normal(0, 4, (k, d))
    return (centres[y] + rng.normal(0, 0.5, (n, d))).astype(np.float32), y.astype(np.int64)


def write_npz(path, **arrays):
    np.savez(path, **arrays)
    return path


def split_npz(tmp_path, name="data.npz", **extra):
    x, y = blobs()
    return write_npz(tmp_path / name, x_train=x[:45], y_train=y[:45], x_test=x[45:], y_test=y[45:], **extra)


def write_csv(path, header, rows):
    lines = ([",".join(header)] if header else []) + [",".join(str(c) for c in r) for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def tabular_rows(n=60, seed=0, names=("a", "b", "c")):
    x, y = blobs(n, 4, len(names), seed)
    return [[*(f"{v:.4f}" for v in row), names[c]] for row, c in zip(x, y)]


def write_images(folder, classes=("cat", "dog"), per_class=6, size=(6, 5), mode="L", seed=0):
    from PIL import Image

    rng = np.random.default_rng(seed)
    for i, c in enumerate(classes):
        (folder / c).mkdir(parents=True, exist_ok=True)
        for j in range(per_class):
            base = np.full(size, 40 + 150 * i // max(len(classes) - 1, 1), dtype=np.uint8)
            noise = rng.integers(0, 60, size, dtype=np.uint8)
            a = base + noise
            if mode == "RGB":
                a = np.stack([a, a // 2, 255 - a], -1)
            Image.fromarray(a, mode).save(folder / c / f"{j}.png")
    return folder


# --------------------------------------------------------------------------- sources


def test_npz_with_classes_and_images(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.random((20, 4, 5)).astype(np.float32)
    y = np.arange(20) % 2
    path = write_npz(tmp_path / "img.npz", x_train=x[:14], y_train=y[:14], x_test=x[14:], y_test=y[14:],
                     classes=np.array(["no", "yes"]))
    ds = load_dataset(str(path))
    assert ds.name == str(path) and ds.image_shape == (1, 4, 5) and ds.is_image
    assert ds.x_train.shape == (14, 20) and ds.x_train.dtype == np.float32 and ds.y_test.dtype == np.int64
    assert ds.classes == ("no", "yes") and ds.n_classes == 2
    np.testing.assert_array_equal(ds.x_train, x[:14].reshape(14, -1))
    # channels-last colour images are moved to channels-first
    xc = rng.random((12, 6, 7, 3)).astype(np.float32)
    path = write_npz(tmp_path / "rgb.npz", x_train=xc[:8], y_train=np.arange(8) % 2, x_test=xc[8:], y_test=np.arange(4) % 2)
    ds = load_dataset(str(path))
    assert ds.image_shape == (3, 6, 7)
    np.testing.assert_array_equal(ds.x_train[0].reshape(3, 6, 7), np.moveaxis(xc[0], 2, 0))


def test_npz_vectors_image_shape_key_and_seeded_xy_split(tmp_path):
    x, y = blobs(40, 6)
    ds = load_dataset(str(split_npz(tmp_path, image_shape=np.array([1, 2, 3]))))
    assert ds.image_shape == (1, 2, 3)
    vec = load_dataset(str(split_npz(tmp_path, "vec.npz")))
    assert vec.image_shape is None and not vec.is_image and vec.n_inputs == 6
    path = write_npz(tmp_path / "xy.npz", x=x, y=y)
    a, b = load_dataset(f"{path}:test=0.25,seed=3"), load_dataset(f"{path}:test=0.25,seed=4")
    assert len(a.y_test) == 10 and len(a.y_train) == 30
    assert np.bincount(a.y_test).tolist() == [4, 3, 3] or sorted(np.bincount(a.y_test).tolist()) == [3, 3, 4]
    assert not np.array_equal(a.x_test, b.x_test)
    np.testing.assert_array_equal(load_dataset(f"{path}:test=0.25,seed=3").x_test, a.x_test)


def test_seeded_split_is_stratified():
    y = np.array([0] * 50 + [1] * 10)
    train, test = seeded_split(len(y), y, 0.2, seed=0)
    assert len(test) == 12 and np.bincount(y[test]).tolist() == [10, 2]
    assert not set(train) & set(test) and len(train) + len(test) == 60


def test_one_csv_with_named_label_column(tmp_path):
    path = write_csv(tmp_path / "t.csv", ["f1", "f2", "species", "f3"],
                     [[r[0], r[1], r[4], r[2]] for r in tabular_rows()])
    ds = load_dataset(str(path))
    assert ds.classes == ("a", "b", "c") and ds.n_inputs == 3 and ds.image_shape is None
    assert len(ds.y_train) == 48 and len(ds.y_test) == 12  # 20% of each class, seeded
    # standardised with the training split's statistics
    np.testing.assert_allclose(ds.x_train.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(ds.x_train.std(0), 1, atol=1e-4)
    # the one column of names is the label by default; label= names it explicitly
    ds2 = load_dataset(f"{path}:label=species,scale=none,test=0.5")
    assert len(ds2.y_test) == 30 and ds2.x_train.std() > 1.5


def test_csv_without_header_last_column_and_integer_codes(tmp_path):
    rows = [[*r[:4], {"a": 1, "b": 2, "c": 3}[r[4]]] for r in tabular_rows()]
    ds = load_dataset(str(write_csv(tmp_path / "n.csv", None, rows)))
    assert ds.classes == ("1", "2", "3") and ds.n_inputs == 4 and set(ds.y_train) == {0, 1, 2}


def test_csv_pair_train_and_test(tmp_path):
    rows = tabular_rows()
    tr = write_csv(tmp_path / "train.csv", ["x1", "x2", "x3", "x4", "label"], rows[:40])
    te = write_csv(tmp_path / "test.csv", ["x1", "x2", "x3", "x4", "label"], rows[40:])
    ds = load_dataset(f"{tr},{te}")
    assert len(ds.y_train) == 40 and len(ds.y_test) == 20 and ds.classes == ("a", "b", "c")
    with pytest.raises(ConfigError, match="two files are the split already"):
        load_dataset(f"{tr},{te}:test=0.3")


def test_image_folder_with_train_and_test(tmp_path):
    write_images(tmp_path / "imgs" / "train", per_class=5)
    write_images(tmp_path / "imgs" / "test", per_class=2, seed=1)
    ds = load_dataset(str(tmp_path / "imgs"))
    assert ds.classes == ("cat", "dog") and ds.image_shape == (1, 6, 5)
    assert len(ds.y_train) == 10 and len(ds.y_test) == 4
    assert 0.0 <= ds.x_train.min() and ds.x_train.max() <= 1.0
    assert ds.x_train[ds.y_train == 1].mean() > ds.x_train[ds.y_train == 0].mean() + 0.4


def test_image_folder_split_rgb_and_resize(tmp_path):
    write_images(tmp_path / "flat", classes=("a", "b", "c"), per_class=5, mode="RGB")
    ds = load_dataset(str(tmp_path / "flat"))
    assert ds.image_shape == (3, 6, 5) and len(ds.y_test) == 3 and len(ds.y_train) == 12
    small = load_dataset(f"{tmp_path / 'flat'}:size=4x4")
    assert small.image_shape == (3, 4, 4)


def test_tabular_builtins():
    for name, shape, k in (("wine", 13, 3), ("breast_cancer", 30, 2), ("iris", 4, 3)):
        ds = load_dataset(name)
        assert ds.n_inputs == shape and ds.n_classes == k and ds.image_shape is None
        assert len(ds.y_test) == pytest.approx(0.2 * (len(ds.y_train) + len(ds.y_test)), abs=k)
    assert {"wine", "breast_cancer", "iris", "digits"} <= set(list_datasets())


def test_torchvision_class_from_a_local_root(tmp_path):
    from tests.test_data import idx_bytes

    raw = tmp_path / "KMNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for stem, a in {"train-images-idx3-ubyte": rng.integers(0, 256, (12, 28, 28), dtype=np.uint8),
                    "train-labels-idx1-ubyte": (np.arange(12) % 10).astype(np.uint8),
                    "t10k-images-idx3-ubyte": rng.integers(0, 256, (5, 28, 28), dtype=np.uint8),
                    "t10k-labels-idx1-ubyte": (np.arange(5) % 10).astype(np.uint8)}.items():
        (raw / stem).write_bytes(idx_bytes(a))
    ds = load_dataset("torchvision:KMNIST", tmp_path)
    assert ds.image_shape == (1, 28, 28) and len(ds.y_train) == 12 and len(ds.y_test) == 5
    assert ds.n_classes == 10 and ds.classes[1] == "ki" and ds.x_train.max() <= 1.0
    with pytest.raises(DataError, match=r"torchvision:FashionMNIST: not found under .*never downloads"):
        load_dataset("torchvision:FashionMNIST", tmp_path)
    with pytest.raises(ConfigError, match="has no data set class 'NoSuch'"):
        load_dataset("torchvision:NoSuch", tmp_path)


class _EntryPoint:
    def __init__(self, name, value, obj):
        self.name, self.value, self.obj = name, value, obj

    def load(self):
        return self.obj


def _toy_loader(root, scale="1"):
    x, y = blobs(30, 5)
    return make_dataset("toy", x[:20] * float(scale), y[:20], x[20:] * float(scale), y[20:], where="toy plugin")


def test_entry_point_and_registered_loaders(monkeypatch):
    monkeypatch.setattr(REGISTRY, "_eps", {"toy": _EntryPoint("toy", "tests:_toy_loader", _toy_loader)})
    monkeypatch.setattr(REGISTRY, "loaded", {})
    monkeypatch.setattr(REGISTRY, "registered", {})
    assert "toy" in list_datasets()
    check_dataset_spec("toy")
    ds = load_dataset("toy:scale=2")
    assert ds.n_inputs == 5 and ds.source == "toy plugin"
    np.testing.assert_allclose(ds.x_train, 2 * load_dataset("toy").x_train)
    register_dataset("mine", lambda root: _toy_loader(root))
    assert load_dataset("mine").n_classes == 3
    with pytest.raises(ConfigError, match="that name is installed"):
        register_dataset("toy", _toy_loader)
    with pytest.raises(ConfigError, match="built-in"):
        register_dataset("wine", _toy_loader)


def test_unknown_name_lists_what_is_accepted():
    with pytest.raises(ConfigError, match=r"dataset='cifar' is not one of digits, mnist, fashion-mnist, wine.*"
                                          r"torchvision:CLASS.*\.npz"):
        check_dataset_spec("cifar")
    check_dataset_spec("not/yet/there.csv")  # a path is checked when it is loaded, not before
    with pytest.raises(ConfigError, match=r"'wine:label=x': unknown option\(s\) label; this loader takes test, seed, scale"):
        load_dataset("wine:label=x")
    with pytest.raises(ConfigError, match=r"test='2' must be a share"):
        load_dataset("iris:test=2")


# --------------------------------------------------------------------------- bad data: one line, the file, the fix


def _bad_npz(tmp_path, **changes):
    x, y = blobs()
    arrays = dict(x_train=x[:45], y_train=y[:45], x_test=x[45:], y_test=y[45:])
    arrays.update(changes)
    return str(write_npz(tmp_path / "bad.npz", **arrays))


def _nan(tmp_path):
    x, _ = blobs()
    x = x[:45].copy()
    x[3, 2] = np.nan
    return _bad_npz(tmp_path, x_train=x)


def _inf(tmp_path):
    x, _ = blobs()
    x = x[45:].copy()
    x[0, 0] = np.inf
    return _bad_npz(tmp_path, x_test=x)


def _lengths(tmp_path):
    return _bad_npz(tmp_path, y_train=blobs()[1][:40])


def _out_of_range(tmp_path):
    return _bad_npz(tmp_path, classes=np.array(["a", "b"]))  # labels 0..2, two names


def _negative(tmp_path):
    y = blobs()[1][:45].copy()
    y[0] = -1
    return _bad_npz(tmp_path, y_train=y)


def _single_class(tmp_path):
    return _bad_npz(tmp_path, y_train=np.zeros(45, np.int64))


def _string_inputs(tmp_path):
    return _bad_npz(tmp_path, x_train=np.array([["1.0", "x"]] * 45))


def _float_labels(tmp_path):
    return _bad_npz(tmp_path, y_train=blobs()[1][:45] + 0.5)


def _missing_key(tmp_path):
    return str(write_npz(tmp_path / "bad.npz", x_train=blobs()[0]))


def _csv_text_cell(tmp_path):
    rows = tabular_rows()
    rows[5][1] = "n/a"
    return str(write_csv(tmp_path / "bad.csv", ["a", "b", "c", "d", "label"], rows))


def _csv_empty_cell(tmp_path):
    rows = tabular_rows()
    rows[7][0] = ""
    return str(write_csv(tmp_path / "bad.csv", ["a", "b", "c", "d", "label"], rows))


def _csv_ragged(tmp_path):
    rows = tabular_rows()
    rows[3] = rows[3][:3]
    return str(write_csv(tmp_path / "bad.csv", ["a", "b", "c", "d", "label"], rows))


def _mixed_sizes(tmp_path):
    from PIL import Image

    folder = write_images(tmp_path / "bad", per_class=3)
    Image.fromarray(np.zeros((9, 9), np.uint8), "L").save(folder / "dog" / "big.png")
    return str(folder)


def _no_images(tmp_path):
    for c in ("a", "b"):
        (tmp_path / "bad" / c).mkdir(parents=True)
        (tmp_path / "bad" / c / "notes.txt").write_text("no images here")
    return str(tmp_path / "bad")


def _no_class_folders(tmp_path):
    (tmp_path / "bad").mkdir()
    return str(tmp_path / "bad")


BAD = {
    "nan": (_nan, r"bad\.npz: x_train holds 1 NaN or inf value\(s\) \(first at row 3, column 2\); remove or impute"),
    "inf": (_inf, r"bad\.npz: x_test holds 1 NaN or inf"),
    "lengths": (_lengths, r"bad\.npz: x_train has 45 rows but y_train has 40 labels; give one label per sample"),
    "label-out-of-range": (_out_of_range, r"bad\.npz: labels out of range: found label 2 but only 2 classes"),
    "negative-label": (_negative, r"bad\.npz: labels out of range \(found -1\)"),
    "single-class": (_single_class, r"bad\.npz: y_train holds a single class \('0'\); .*at least two classes"),
    "string-inputs": (_string_inputs, r"bad\.npz: x_train has dtype <U3, not numbers"),
    "float-labels": (_float_labels, r"bad\.npz: y_train holds non-integer values"),
    "missing-key": (_missing_key, r"bad\.npz: no y_train, x_test, y_test \(it holds x_train\)"),
    "csv-text": (_csv_text_cell, r"bad\.csv: row 7, b: 'n/a' is not a number; features must be numeric"),
    "csv-empty": (_csv_empty_cell, r"bad\.csv: 1 empty, NaN or inf cell\(s\) \(first at row 9, a\)"),
    "csv-ragged": (_csv_ragged, r"bad\.csv: row 5 has 3 cells, the header 5"),
    "mixed-sizes": (_mixed_sizes, r"big\.png: image of size 9x9, but .* is 5x6; resize them to one size or pass size=HxW"),
    "no-images": (_no_images, r"bad: holds no images .* in its class folders"),
    "no-class-folders": (_no_class_folders, r"bad: no class folders; lay images out as"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_data_is_one_line_naming_the_file(case, tmp_path, capsys):
    make, pattern = BAD[case]
    spec = make(tmp_path)
    with pytest.raises(DataError, match=pattern) as info:
        load_dataset(spec)
    assert "\n" not in str(info.value)
    # the CLI prints it as one line, exit 2, before any teacher is trained
    assert main(["distill", "--dataset", spec, "--pca-rank", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "bad" in err


def test_missing_path_and_unreadable_npz(tmp_path):
    with pytest.raises(DataError, match=r"nope\.npz: no such file or folder"):
        load_dataset(str(tmp_path / "nope.npz"))
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match=r"junk\.npz: not a readable \.npz file"):
        load_dataset(str(tmp_path / "junk.npz"))


# --------------------------------------------------------------------------- identity


def test_content_hash_changes_with_the_data_and_keys_the_caches(tmp_path, monkeypatch):
    path = split_npz(tmp_path)
    a = load_dataset(str(path))
    assert a.fingerprint == load_dataset(str(path)).fingerprint and len(a.fingerprint) == 16
    x, y = blobs()
    x = x.copy()
    x[50, 0] += 1.0  # one test value changes
    write_npz(path, x_train=x[:45], y_train=y[:45], x_test=x[45:], y_test=y[45:])
    b = load_dataset(str(path))  # the memo notices the new file
    assert b.fingerprint != a.fingerprint
    from codesign.teachers import get_teacher

    cache = tmp_path / "cache"
    ta, tb = (get_teacher("mlp", ds, epochs=1, cache_dir=cache, verbose=False) for ds in (a, b))
    assert ta.info["key"] != tb.info["key"]  # the teacher cache holds test logits: keyed by the test split too
    assert len(list((cache / "teachers").iterdir())) == 2
    from codesign.features import cached_features

    for ds in (a, b, a):  # the feature and PCA caches are keyed by the content hash too: two entries, one reused
        cached_features(ds.x_train, ds.x_test, 2, "monomial", {"degree": 2}, cache_dir=cache, data_key=ds.fingerprint)
    assert len(list((cache / "features").iterdir())) == 2 and len(list((cache / "pca").iterdir())) == 2


# --------------------------------------------------------------------------- end to end

TINY = ["--pca-rank", "3", "--teacher-epochs", "60", "--json"]  # 60 steps on these tiny sets: instant


def _distill(capsys, *args):
    import json

    assert main(["distill", *args, *TINY]) == 0
    return json.loads(capsys.readouterr().out)


def test_distill_on_npz_images_folder_wine_and_csv(tmp_path, capsys):
    m = _distill(capsys, "--dataset", str(split_npz(tmp_path)))
    assert m["dataset"].endswith("data.npz") and m["test_accuracy"] >= 0.9  # separated blobs
    write_images(tmp_path / "imgs", per_class=6)
    m = _distill(capsys, "--dataset", str(tmp_path / "imgs"), "--device", "ideal", "--hw-draws", "1")
    assert m["test_accuracy"] == 1.0 and m["hw_accuracy_mean"] == 1.0
    m = _distill(capsys, "--dataset", "wine")
    assert m["test_accuracy"] >= 0.85
    csv = write_csv(tmp_path / "t.csv", ["a", "b", "c", "d", "label"], tabular_rows(90))
    m = _distill(capsys, "--dataset", str(csv), "--method", "labels")
    assert m["test_accuracy"] >= 0.9


def test_vectors_refuse_cnn_and_augmentation(capsys):
    assert main(["distill", "--dataset", "iris", "--teacher", "cnn", "--pca-rank", "2"]) == 2
    assert "teacher='cnn' is convolutional and needs images, but iris holds vectors" in capsys.readouterr().err
    assert main(["distill", "--dataset", "iris", "--augment", "shift", "--pca-rank", "2"]) == 2
    assert "iris holds vectors, not images" in capsys.readouterr().err


def test_saved_student_and_export_carry_the_class_names(tmp_path, capsys):
    import json

    from codesign import load_export

    csv = write_csv(tmp_path / "t.csv", ["a", "b", "c", "d", "species"], tabular_rows(90, names=("oak", "elm", "ash")))
    assert main(["distill", "--dataset", str(csv), "--method", "labels", "--pca-rank", "3", "--out",
                 str(tmp_path / "run")]) == 0
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["classes"] == ["ash", "elm", "oak"]
    assert main(["export", str(tmp_path / "run" / "student.pt"), "--out", str(tmp_path / "bundle")]) == 0
    assert load_export(tmp_path / "bundle").manifest["dataset"]["classes"] == ["ash", "elm", "oak"]
