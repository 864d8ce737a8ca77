"""Dataset loaders on small files written in the datasets' real on-disk formats, batch loaders, splits."""

from __future__ import annotations

import gzip
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from unlearnlib.data import (
    DATASETS,
    DatasetNotAvailableError,
    Loader,
    augment,
    class_split,
    load_dataset,
    normalise,
    save_splits,
    stratified_subset,
)
from unlearnlib.data.splits import Split
from unlearnlib.registry import UnknownNameError

# ----------------------------------------------------------------------------------------------
# writers for the real formats


class _Py2Pickler(pickle._Pickler):
    """Writes ``bytes`` as Python 2 ``str`` (BINSTRING), as the original CIFAR pickles do: loaded with
    ``encoding='bytes'`` the keys are b'data', b'labels'; with ``encoding='latin1'`` (torchvision) 'data'."""

    dispatch = dict(pickle._Pickler.dispatch)

    def _save_py2_str(self, obj: bytes) -> None:
        n = len(obj)
        if n < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([n]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", n) + obj)
        self.memoize(obj)

    dispatch[bytes] = _save_py2_str


def _dump_py2(obj, path: Path) -> None:
    with open(path, "wb") as fh:
        _Py2Pickler(fh, protocol=2).dump(obj)


def _rand_rows(rng, n: int) -> np.ndarray:
    return rng.integers(0, 256, (n, 3072), dtype=np.uint8)


def write_cifar10(root: Path, n_per_batch: int = 4, n_test: int = 3, seed: int = 0) -> dict:
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    datas, labels = [], []
    for i in range(1, 6):
        x = _rand_rows(rng, n_per_batch)
        y = [int(v) for v in rng.integers(0, 10, n_per_batch)]
        datas.append(x)
        labels += y
        _dump_py2({b"batch_label": b"training batch %d of 5" % i, b"labels": y, b"data": x,
                   b"filenames": [b"img%d.png" % j for j in range(n_per_batch)]}, d / f"data_batch_{i}")
    tx, ty = _rand_rows(rng, n_test), [int(v) for v in rng.integers(0, 10, n_test)]
    _dump_py2({b"batch_label": b"testing batch 1 of 1", b"labels": ty, b"data": tx,
               b"filenames": [b"t%d.png" % j for j in range(n_test)]}, d / "test_batch")
    _dump_py2({b"label_names": [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse",
                                b"ship", b"truck"], b"num_cases_per_batch": n_per_batch, b"num_vis": 3072},
              d / "batches.meta")
    return {"train_x": np.concatenate(datas), "train_y": labels, "test_x": tx, "test_y": ty}


def write_cifar100(root: Path, n_train: int = 6, n_test: int = 4, seed: int = 1) -> dict:
    d = root / "cifar-100-python"
    d.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        x = _rand_rows(rng, n)
        fine = [int(v) for v in rng.integers(0, 100, n)]
        _dump_py2({b"filenames": [b"f.png"] * n, b"batch_label": split.encode(), b"fine_labels": fine,
                   b"coarse_labels": [v // 5 for v in fine], b"data": x}, d / split)
        out[f"{split}_x"], out[f"{split}_y"] = x, fine
    _dump_py2({b"fine_label_names": [b"c%d" % i for i in range(100)],
               b"coarse_label_names": [b"s%d" % i for i in range(20)]}, d / "meta")
    return out


def idx_images(images: np.ndarray) -> bytes:
    n, h, w = images.shape
    return struct.pack(">iiii", 2051, n, h, w) + images.astype(np.uint8).tobytes()


def idx_labels(labels: np.ndarray) -> bytes:
    return struct.pack(">ii", 2049, len(labels)) + labels.astype(np.uint8).tobytes()


def mnist_like(n_train: int = 12, n_test: int = 5, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test).astype(np.uint8),
    }


def write_idx(folder: Path, arrays: dict, gz: bool) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, arr in arrays.items():
        blob = idx_images(arr) if arr.ndim == 3 else idx_labels(arr)
        if gz:
            with gzip.open(folder / f"{name}.gz", "wb") as fh:
                fh.write(blob)
        else:
            (folder / name).write_bytes(blob)


# ----------------------------------------------------------------------------------------------
# (a) CIFAR


def test_py2_pickle_writer_matches_the_real_cifar_format(tmp_path):
    _dump_py2({b"data": np.zeros((1, 3072), np.uint8), b"labels": [3]}, tmp_path / "b")
    raw = pickle.loads((tmp_path / "b").read_bytes(), encoding="bytes")
    assert set(raw) == {b"data", b"labels"}
    assert set(pickle.loads((tmp_path / "b").read_bytes(), encoding="latin1")) == {"data", "labels"}


def test_cifar10_loads_from_local_copy(isolated_env):
    root = Path(isolated_env["UNLEARNLIB_DATA"])
    ref = write_cifar10(root)
    data = load_dataset("cifar10", download=False)
    assert data.train_x.shape == (20, 3, 32, 32) and data.train_x.dtype == torch.uint8
    assert data.test_x.shape == (3, 3, 32, 32) and data.test_x.dtype == torch.uint8
    assert data.train_y.tolist() == ref["train_y"]  # batches 1..5 in order
    assert data.test_y.tolist() == ref["test_y"]
    assert data.train_y.dtype == torch.long
    # the raw rows are channel-major (1024 R, 1024 G, 1024 B), each row-major 32x32
    expected = torch.from_numpy(ref["train_x"].reshape(-1, 3, 32, 32))
    assert torch.equal(data.train_x, expected)
    assert torch.equal(data.test_x, torch.from_numpy(ref["test_x"].reshape(-1, 3, 32, 32)))
    # named by its root variable, never by this machine's absolute path (it is printed into the book)
    assert data.source == "$UNLEARNLIB_DATA; not byte-identical to the official files (md5 differs: a re-encoded " \
                          "or partial copy)"


def test_cifar10_pixel_lands_in_the_right_channel_and_position(isolated_env):
    root = Path(isolated_env["UNLEARNLIB_DATA"])
    write_cifar10(root)
    # overwrite sample 2 of data_batch_3 (dataset index 2*4+2 = 10) with a single marked pixel
    path = root / "cifar-10-batches-py" / "data_batch_3"
    entry = pickle.loads(path.read_bytes(), encoding="bytes")
    x = entry[b"data"].copy()
    x[2] = 0
    c, r, col = 1, 5, 17  # green channel, row 5, column 17
    x[2, c * 1024 + r * 32 + col] = 201
    entry[b"data"] = x
    _dump_py2(entry, path)
    data = load_dataset("cifar10", download=False)
    img = data.train_x[10]
    assert int(img[c, r, col]) == 201
    assert int(img.sum()) == 201  # nowhere else: not transposed, not in another channel
    assert int(img[0, r, col]) == 0 and int(img[1, col, r]) == 0


def test_cifar100_loads_fine_labels(isolated_env):
    root = Path(isolated_env["UNLEARNLIB_DATA"])
    ref = write_cifar100(root)
    data = load_dataset("cifar100", download=False)
    assert data.train_x.shape == (6, 3, 32, 32) and data.train_x.dtype == torch.uint8
    assert data.test_x.shape == (4, 3, 32, 32)
    assert data.train_y.tolist() == ref["train_y"]
    assert data.test_y.tolist() == ref["test_y"]
    assert torch.equal(data.train_x, torch.from_numpy(ref["train_x"].reshape(-1, 3, 32, 32)))
    assert data.spec.num_classes == 100


def test_cifar10_found_under_dataset_subfolder(isolated_env):
    # <UNLEARNLIB_DATA>/cifar10/cifar-10-batches-py is the second place looked in
    root = Path(isolated_env["UNLEARNLIB_DATA"]) / "cifar10"
    ref = write_cifar10(root)
    data = load_dataset("cifar10", download=False)
    assert data.train_y.tolist() == ref["train_y"]


class _Payload:
    """A pickle that creates ``path`` when it is loaded: what a crafted data file would do with os.system."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.mark.parametrize("name, file", [("cifar10", "cifar-10-batches-py/data_batch_2"),
                                        ("cifar10", "cifar-10-batches-py/test_batch"),
                                        ("cifar10", "cifar-10-batches-py/batches.meta"),
                                        ("cifar100", "cifar-100-python/train"),
                                        ("cifar100", "cifar-100-python/meta")])
def test_a_crafted_cifar_pickle_runs_nothing_and_is_named(isolated_env, tmp_path, name, file):
    root = Path(isolated_env["UNLEARNLIB_DATA"])
    (write_cifar10 if name == "cifar10" else write_cifar100)(root)
    pwned = tmp_path / "pwned"
    with open(root / file, "wb") as fh:  # the payload inside a dict, where a batch's 'data' would be
        pickle.dump({"data": _Payload(pwned), "labels": [0]}, fh, protocol=2)
    with pytest.raises(DatasetNotAvailableError) as exc:
        load_dataset(name, download=False)
    assert not pwned.exists()  # the payload never ran
    msg = str(exc.value)
    assert str(root / file) in msg and "refused: it asks for io.open" in msg
    assert "three ways" in msg and "UNLEARNLIB_DATA" in msg  # how to replace it


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize("damage, why", [
    (lambda d: _truncate(d / "data_batch_4"), "not a readable CIFAR pickle (UnpicklingError: pickle data was trunc"),
    (lambda d: (d / "data_batch_4").write_bytes(b"\x00" * 6), "not a readable CIFAR pickle"),
    (lambda d: (d / "data_batch_4").write_bytes(b""), "(EOFError: Ran out of input)"),
    (lambda d: (d / "data_batch_4").unlink(), "missing"),
    (lambda d: _dump_py2({b"data": np.zeros((2, 3072), np.float32), b"labels": [1, 2]}, d / "data_batch_4"),
     "uint8 rows of 3072"),
    (lambda d: _dump_py2({b"data": np.zeros((2, 3072), np.uint8), b"labels": [1]}, d / "data_batch_4"),
     "'labels' list of 2 integers"),
    (lambda d: _dump_py2([1, 2, 3], d / "data_batch_4"), "not a CIFAR batch"),
], ids=["truncated", "garbage", "empty", "missing", "float-pixels", "short-labels", "not-a-dict"])
def test_a_damaged_cifar_copy_is_one_clear_error_naming_the_file(isolated_env, damage, why):
    root = Path(isolated_env["UNLEARNLIB_DATA"])
    write_cifar10(root)
    damage(root / "cifar-10-batches-py")
    with pytest.raises(DatasetNotAvailableError) as exc:
        load_dataset("cifar10", download=False)
    msg = str(exc.value)
    assert f"the file {root / 'cifar-10-batches-py' / 'data_batch_4'} is damaged" in msg and why in msg
    assert "Replace it" in msg and "three ways" in msg


@pytest.mark.parametrize("protocol", [2, 5])
def test_cifar_re_encoded_by_python3_loads_and_is_not_called_official(isolated_env, protocol):
    """A copy pickled again by Python 3 and numpy 2 (str keys, numpy._core globals, _codecs/_frombuffer)."""
    root = Path(isolated_env["UNLEARNLIB_DATA"])
    ref = write_cifar10(root)
    d = root / "cifar-10-batches-py"
    for f in d.iterdir():
        entry = pickle.loads(f.read_bytes(), encoding="latin1")
        entry["batch_label"] = entry.get("batch_label", "").encode()  # a bytes value: _codecs.encode at protocol 2
        f.write_bytes(pickle.dumps(entry, protocol=protocol))
    data = load_dataset("cifar10", download=False)
    assert data.train_y.tolist() == ref["train_y"]
    assert torch.equal(data.train_x, torch.from_numpy(ref["train_x"].reshape(-1, 3, 32, 32)))
    assert "not byte-identical to the official files" in data.source


def test_cifar_files_matching_torchvisions_md5_list_are_called_official(isolated_env, monkeypatch):
    import hashlib

    from unlearnlib.data import datasets as ds

    root = Path(isolated_env["UNLEARNLIB_DATA"])
    write_cifar10(root)
    d = root / "cifar-10-batches-py"
    md5 = {f.name: hashlib.md5(f.read_bytes()).hexdigest() for f in d.iterdir()}
    monkeypatch.setattr(ds._LocalCIFAR10, "train_list", [[f"data_batch_{i}", md5[f"data_batch_{i}"]]
                                                         for i in range(1, 6)])
    monkeypatch.setattr(ds._LocalCIFAR10, "test_list", [["test_batch", md5["test_batch"]]])
    monkeypatch.setattr(ds._LocalCIFAR10, "meta", {"filename": "batches.meta", "key": "label_names",
                                                   "md5": md5["batches.meta"]})
    assert load_dataset("cifar10", download=False).source == "$UNLEARNLIB_DATA; the official files (md5 verified)"


def write_svhn(root: Path, n: dict | None = None, seed: int = 0) -> dict:
    """train_32x32.mat / test_32x32.mat as the SVHN site ships them: X (32, 32, 3, N) uint8, y (N, 1) in 1..10."""
    import scipy.io

    rng = np.random.default_rng(seed)
    out = {}
    for split, k in (n or {"train": 5, "test": 3}).items():
        x = rng.integers(0, 256, (32, 32, 3, k), dtype=np.uint8)
        y = rng.integers(1, 11, (k, 1)).astype(np.uint8)
        y[0] = 10  # the digit 0
        scipy.io.savemat(root / f"{split}_32x32.mat", {"X": x, "y": y})
        out[split] = (x, y)
    return out


def test_svhn_loads_from_local_copy_and_a_truncated_file_is_one_clear_error(isolated_env):
    root = Path(isolated_env["UNLEARNLIB_DATA"])
    ref = write_svhn(root)
    data = load_dataset("svhn", download=False)
    x, y = ref["train"]
    assert data.train_x.shape == (5, 3, 32, 32) and data.test_x.shape == (3, 3, 32, 32)
    assert torch.equal(data.train_x, torch.from_numpy(np.transpose(x, (3, 2, 0, 1)).copy()))
    assert data.train_y.tolist() == [0 if v == 10 else int(v) for v in y[:, 0]]
    assert data.source.startswith("$UNLEARNLIB_DATA; not byte-identical")
    _truncate(root / "test_32x32.mat")
    with pytest.raises(DatasetNotAvailableError) as exc:
        load_dataset("svhn", download=False)
    msg = str(exc.value)
    assert f"the file {root / 'test_32x32.mat'} is damaged" in msg and "not a readable SVHN .mat file" in msg
    assert "three ways" in msg


def test_data_sources_name_no_absolute_path(isolated_env):
    """The source is printed into the notebooks and so into the published book: no user name, no layout."""
    import sklearn

    digits = load_dataset("digits", download=False)
    assert str(Path(sklearn.__file__).parent) not in digits.source
    assert "(sklearn/datasets/data/digits.csv.gz)" in digits.source
    write_cifar10(Path(isolated_env["UNLEARNLIB_DATA"]) / "cifar10")
    cifar = load_dataset("cifar10", download=False)
    assert cifar.source.startswith("$UNLEARNLIB_DATA/cifar10;") and isolated_env["UNLEARNLIB_DATA"] not in cifar.source


# ----------------------------------------------------------------------------------------------
# (b) idx files


def test_fashion_mnist_debian_flat_gz_layout(isolated_env):
    sysdir = Path(isolated_env["UNLEARNLIB_SYSTEM_DATA"]) / "fashion-mnist"
    arrays = mnist_like()
    write_idx(sysdir, arrays, gz=True)
    data = load_dataset("fashion_mnist", download=False)
    assert data.train_x.shape == (12, 1, 28, 28) and data.train_x.dtype == torch.uint8
    assert data.test_x.shape == (5, 1, 28, 28)
    assert torch.equal(data.train_x[:, 0], torch.from_numpy(arrays["train-images-idx3-ubyte"]))
    assert torch.equal(data.test_x[:, 0], torch.from_numpy(arrays["t10k-images-idx3-ubyte"]))
    assert data.train_y.tolist() == arrays["train-labels-idx1-ubyte"].tolist()
    assert data.test_y.tolist() == arrays["t10k-labels-idx1-ubyte"].tolist()
    assert data.source == "$UNLEARNLIB_SYSTEM_DATA/fashion-mnist" and str(sysdir) not in data.source
    # the decompressed copy torchvision reads goes to the cache root, not next to the read-only source
    prepared = Path(isolated_env["UNLEARNLIB_CACHE"]) / "datasets" / "fashionmnist" / "FashionMNIST" / "raw"
    assert (prepared / "train-images-idx3-ubyte").exists()
    assert sorted(p.name for p in sysdir.iterdir()) == sorted(f"{n}.gz" for n in arrays)


def test_fashion_mnist_pixel_position(isolated_env):
    sysdir = Path(isolated_env["UNLEARNLIB_SYSTEM_DATA"]) / "fashion-mnist"
    arrays = mnist_like()
    arrays["train-images-idx3-ubyte"][:] = 0
    arrays["train-images-idx3-ubyte"][7, 3, 20] = 77  # row 3, column 20
    write_idx(sysdir, arrays, gz=True)
    data = load_dataset("fashion_mnist", download=False)
    assert int(data.train_x[7, 0, 3, 20]) == 77
    assert int(data.train_x.sum()) == 77


def test_mnist_torchvision_raw_layout(isolated_env):
    raw = Path(isolated_env["UNLEARNLIB_DATA"]) / "MNIST" / "raw"
    arrays = mnist_like(n_train=9, n_test=4, seed=3)
    write_idx(raw, arrays, gz=False)
    data = load_dataset("mnist", download=False)
    assert data.train_x.shape == (9, 1, 28, 28) and data.test_x.shape == (4, 1, 28, 28)
    assert torch.equal(data.train_x[:, 0], torch.from_numpy(arrays["train-images-idx3-ubyte"]))
    assert data.train_y.tolist() == arrays["train-labels-idx1-ubyte"].tolist()
    assert data.test_y.tolist() == arrays["t10k-labels-idx1-ubyte"].tolist()
    # nothing prepared: torchvision's own layout is read in place
    assert not (Path(isolated_env["UNLEARNLIB_CACHE"]) / "datasets").exists()


def test_mnist_copy_is_not_taken_for_fashion_mnist(isolated_env):
    raw = Path(isolated_env["UNLEARNLIB_DATA"]) / "MNIST" / "raw"
    write_idx(raw, mnist_like(), gz=False)
    with pytest.raises(DatasetNotAvailableError):
        load_dataset("fashion_mnist", download=False)


# ----------------------------------------------------------------------------------------------
# (c) nothing available, (d) unknown name


@pytest.mark.parametrize("name", ["cifar10", "fashion_mnist"])
def test_missing_dataset_without_download(isolated_env, name):
    with pytest.raises(DatasetNotAvailableError) as exc:
        load_dataset(name, download=False)
    msg = str(exc.value)
    assert repr(name) in msg
    assert "UNLEARNLIB_DATA" in msg
    assert isolated_env["UNLEARNLIB_DATA"] in msg  # says where it looked
    assert not any(Path(isolated_env["UNLEARNLIB_DATA"]).iterdir())  # and wrote nothing


def test_unknown_dataset_lists_valid_names():
    with pytest.raises(UnknownNameError) as exc:
        load_dataset("imagenet", download=False)
    msg = str(exc.value)
    assert "'imagenet'" in msg
    for valid in ("cifar10", "cifar100", "digits", "fashion_mnist", "mnist", "svhn"):
        assert valid in msg
    assert isinstance(exc.value, KeyError)
    assert DATASETS.names() == sorted(["cifar10", "cifar100", "digits", "fashion_mnist", "mnist", "svhn"])


# ----------------------------------------------------------------------------------------------
# (e) Loader


@pytest.fixture
def images():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (37, 1, 8, 8), generator=g, dtype=torch.uint8)
    y = torch.arange(37) % 3
    return x, y


def test_loader_batches_and_len(images, make_spec):
    x, y = images
    spec = make_spec()
    loader = Loader(x, y, np.arange(37), spec, batch_size=16)
    batches = list(loader)
    assert len(loader) == 3 == len(batches)
    assert [b[0].shape for b in batches] == [(16, 1, 8, 8), (16, 1, 8, 8), (5, 1, 8, 8)]
    assert all(b[0].dtype == torch.float32 and b[1].dtype == torch.long for b in batches)
    assert torch.equal(torch.cat([b[1] for b in batches]), y)  # shuffle=False: dataset order
    assert loader.num_samples == 37


def test_loader_normalises_with_mean_and_std(images, make_spec):
    x, y = images
    spec = make_spec(mean=0.25, std=0.5)
    xb, yb = Loader(x, y, np.array([4, 9]), spec, batch_size=8).batch([0, 1])
    expected = (x[[4, 9]].double() / 255.0 - 0.25) / 0.5
    torch.testing.assert_close(xb.double(), expected, rtol=0, atol=1e-6)
    assert yb.tolist() == y[[4, 9]].tolist()
    # one pixel by hand
    v = int(x[9, 0, 2, 3])
    assert float(xb[1, 0, 2, 3]) == pytest.approx((v / 255 - 0.25) / 0.5, abs=1e-6)


def test_normalise_per_channel(make_spec):
    spec = make_spec(channels=3)
    spec = type(spec)(**{**spec.__dict__, "mean": (0.0, 0.5, 1.0), "std": (1.0, 0.5, 0.25)})
    x = torch.full((1, 3, 2, 2), 255, dtype=torch.uint8)
    out = normalise(x, spec)
    assert out[0, :, 0, 0].tolist() == pytest.approx([1.0, 1.0, 0.0])


def test_loader_shuffle_is_seeded(images, make_spec):
    x, y = images
    spec = make_spec()
    idx = np.arange(37)

    def order(seed):
        return torch.cat([b[1] for b in Loader(x, torch.arange(37), idx, spec, batch_size=10, shuffle=True,
                                                 seed=seed)]).tolist()

    assert order(3) == order(3)
    assert order(3) != order(4)
    assert sorted(order(3)) == list(range(37))
    assert order(3) != list(range(37))
    # two epochs of one loader differ (the generator advances), and both are permutations
    loader = Loader(x, torch.arange(37), idx, spec, batch_size=10, shuffle=True, seed=3)
    e1 = torch.cat([b[1] for b in loader]).tolist()
    e2 = torch.cat([b[1] for b in loader]).tolist()
    assert e1 == order(3) and e1 != e2 and sorted(e2) == list(range(37))


def test_loader_indices_subset(images, make_spec):
    x, y = images
    idx = np.array([30, 2, 17])
    xb, yb = next(iter(Loader(x, y, idx, make_spec(), batch_size=8)))
    assert yb.tolist() == y[idx].tolist()
    torch.testing.assert_close(xb, normalise(x[idx], make_spec()))


def test_augment_crop_flip_keeps_shape_and_changes_pixels(images, make_spec):
    x, y = images
    spec = make_spec(augment="crop_flip")
    plain = Loader(x, y, np.arange(37), spec, batch_size=37, augment=False)
    aug = Loader(x, y, np.arange(37), spec, batch_size=37, augment=True, seed=5)
    xp, _ = next(iter(plain))
    xa, ya = next(iter(aug))
    assert xa.shape == xp.shape == (37, 1, 8, 8)
    assert ya.tolist() == y.tolist()
    changed = (xa != xp).flatten(1).any(1)
    assert changed.sum() >= 30  # P(no shift and no flip) = 1/162 per image
    # same seed -> same augmentation
    xa2, _ = next(iter(Loader(x, y, np.arange(37), spec, batch_size=37, augment=True, seed=5)))
    assert torch.equal(xa, xa2)


def test_augment_is_a_padded_crop_of_the_image():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(1, 256, (64, 2, 6, 6), generator=g, dtype=torch.uint8)  # no zeros in the image
    out = augment(x, "crop", g, padding=2)
    assert out.shape == x.shape and out.dtype == torch.uint8
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(64):  # each output is some 6x6 window of the zero-padded image, same for all channels
        hits = [(dy, dx) for dy in range(5) for dx in range(5)
                if torch.equal(out[i], padded[i, :, dy:dy + 6, dx:dx + 6])]
        assert hits, i
    assert torch.equal(augment(x, "none", g), x)
    with pytest.raises(ValueError, match="valid: none, crop, crop_flip"):
        augment(x, "rotate", g)


def test_loader_reads_counter(images, make_spec):
    x, y = images
    loader = Loader(x, y, np.arange(37), make_spec(), batch_size=16)
    assert loader.reads == 0
    _ = len(loader), loader.num_samples, repr(loader)
    assert loader.reads == 0  # metadata is not a read
    list(loader)
    assert loader.reads == 3
    loader.batch([0])
    assert loader.reads == 4
    _ = loader.labels
    assert loader.reads == 5
    loader.subset(np.array([0, 1]))
    assert loader.reads == 6


def test_loader_derived_copies_count_as_reads(images, make_spec):
    # a method that reads through a derived loader (with_options) must still show up in `reads`,
    # or the methods' reads_retain/reads_forget contract cannot be checked
    x, y = images
    loader = Loader(x, y, np.arange(37), make_spec(), batch_size=16)
    derived = loader.with_options(batch_size=4, shuffle=True)
    list(derived)
    assert loader.reads > 0
    assert derived.batch_size == 4 and derived.shuffle and derived.num_samples == 37


# ----------------------------------------------------------------------------------------------
# splits


@pytest.fixture
def labels():
    rng = np.random.default_rng(0)
    return np.repeat(np.arange(10), 50)[rng.permutation(500)]


def test_class_split(labels):
    test_labels = np.arange(200) % 10
    pool = np.sort(np.random.default_rng(1).choice(500, 300, replace=False))
    tpool = np.arange(0, 200, 3)
    sp = class_split(labels, test_labels, [7, 2], pool, tpool)
    assert sp.forget_classes == (2, 7) and sp.tag == "class2+7"
    for f, r, p, lab in ((sp.forget_train, sp.retain_train, pool, labels),
                         (sp.forget_test, sp.retain_test, tpool, test_labels)):
        assert len(np.intersect1d(f, r)) == 0
        assert np.array_equal(np.sort(np.concatenate([f, r])), np.sort(p))
        assert set(lab[f]) == {2, 7}
        assert not np.isin(lab[r], [2, 7]).any()
        assert np.all(np.diff(f) > 0) and np.all(np.diff(r) > 0)  # dataset order kept
    assert len(sp.forget_train) == int(np.isin(labels[pool], [2, 7]).sum())


def test_class_split_keeps_pool_order_and_defaults_to_everything(labels):
    sp = class_split(labels, labels, [0])
    assert len(sp.forget_train) == 50 and len(sp.retain_train) == 450
    assert np.array_equal(sp.forget_train, np.flatnonzero(labels == 0))
    with pytest.raises(ValueError, match="0..9"):
        class_split(labels, labels, [10])
    with pytest.raises(ValueError):
        class_split(labels, labels, [])


def test_stratified_subset(labels):
    sub = stratified_subset(labels, 100, seed=0)
    assert len(sub) == 100 and len(np.unique(sub)) == 100
    assert np.bincount(labels[sub], minlength=10).tolist() == [10] * 10
    assert np.all(np.diff(sub) > 0)
    assert np.array_equal(sub, stratified_subset(labels, 100, seed=0))
    assert not np.array_equal(sub, stratified_subset(labels, 100, seed=1))
    assert np.array_equal(stratified_subset(labels, None, seed=0), np.arange(500))
    assert np.array_equal(stratified_subset(labels, 10_000, seed=0), np.arange(500))
    assert np.array_equal(stratified_subset(torch.as_tensor(labels), 100, seed=0), sub)


def test_save_splits_round_trip(tmp_path, labels):
    pool = stratified_subset(labels, 200, seed=0)
    splits = {s.tag: s for s in (class_split(labels, labels, c, pool, pool) for c in ([0], [3, 5]))}
    path = tmp_path / "splits.npz"
    save_splits(path, splits, {"train": pool, "test": np.arange(7)})
    with np.load(path) as z:
        keys = set(z.files)
        for tag, s in splits.items():
            for name, arr in s.arrays().items():
                assert np.array_equal(z[f"{tag}/{name}"], arr), (tag, name)
        assert np.array_equal(z["pool/train"], pool)
        assert np.array_equal(z["pool/test"], np.arange(7))
    assert keys == {f"{t}/{n}" for t in splits for n in Split.arrays(splits[t])} | {"pool/train", "pool/test"}
    with np.load(path) as z:
        assert z["class3+5/forget_classes"].tolist() == [3, 5]


def test_env_roots_are_isolated(isolated_env):
    # guard for the whole suite: the library's roots point into tmp, never into the repository
    from unlearnlib import paths

    for fn in (paths.data_root, paths.cache_root, paths.results_root):
        assert not str(fn()).startswith(str(paths.REPO_ROOT))
    assert os.environ["UNLEARNLIB_SYSTEM_DATA"] == isolated_env["UNLEARNLIB_SYSTEM_DATA"]
