"""Dataset registry over torchvision's loaders, with lookup of an existing copy before any download, and
scikit-learn's bundled 8x8 digits (no file to find, nothing to download).

Images are kept in memory as a uint8 tensor (N, C, H, W); normalisation and augmentation are applied
per batch by :class:`unlearnlib.data.loaders.Loader`, on the device, which is much faster than
per-image PIL transforms and identical in effect.
"""

from __future__ import annotations

import gzip
import os
import pickle
import shutil
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torchvision
from torchvision.datasets.utils import check_integrity

from ..paths import cache_root, data_root, shown, system_data_dirs
from ..registry import Registry

DATASETS = Registry("dataset")


class DatasetNotAvailableError(RuntimeError):
    """No local copy of a dataset was found and it could not be downloaded."""


def _no_copy(_candidate: Path) -> Path | None:
    return None


def _no_build(_root: Path, _download: bool) -> tuple[object, object]:
    raise RuntimeError("this dataset is not built from files (see DatasetSpec.bundled)")


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    num_classes: int
    channels: int
    size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    classes: tuple[str, ...]
    # returns a torchvision root holding the dataset in torchvision's layout, or None
    locate: Callable[[Path], Path | None] = _no_copy
    # builds (train, test) torchvision datasets from such a root
    build: Callable[[Path, bool], tuple[object, object]] = _no_build
    system_names: tuple[str, ...] = ()  # folder names used by OS packages (Debian: fashion-mnist)
    augment: str = "crop_flip"  # the CIFAR recipe: RandomCrop(size, padding=4) + RandomHorizontalFlip
    crop_padding: int = 4  # RandomCrop's zero padding, pixels (crop and crop_flip)
    # a dataset that ships inside a package: returns the whole ImageData; locate/build/download unused
    bundled: Callable[["DatasetSpec"], "ImageData"] | None = None
    notes: str = ""


@dataclass
class ImageData:
    """A whole dataset in memory: uint8 images, integer labels, and its spec."""

    spec: DatasetSpec
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    source: str = ""
    meta: dict = field(default_factory=dict)

    def summary(self) -> dict:
        return {
            "dataset": self.spec.name,
            "train images": len(self.train_y),
            "test images": len(self.test_y),
            "classes": self.spec.num_classes,
            "shape": f"{self.spec.channels}x{self.spec.size}x{self.spec.size}",
            "source": self.source,
        }


# ---------------------------------------------------------------------------------------------
# MNIST family (idx files). torchvision wants <root>/<ClassName>/raw/<file> uncompressed.

_IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def _mnist_locator(folder: str) -> Callable[[Path], Path | None]:
    def locate(candidate: Path) -> Path | None:
        # 1. torchvision's own layout
        if all((candidate / folder / "raw" / f).exists() for f in _IDX_FILES):
            return candidate
        # 2. a flat folder with the four files, plain or gzipped (Debian's dataset packages)
        for flat in (candidate, candidate / folder):
            found = {}
            for f in _IDX_FILES:
                for name in (f, f + ".gz"):
                    if (flat / name).exists():
                        found[f] = flat / name
                        break
            if len(found) == len(_IDX_FILES):
                prepared = cache_root() / "datasets" / folder.lower()
                raw = prepared / folder / "raw"
                raw.mkdir(parents=True, exist_ok=True)
                for f, src in found.items():
                    dst = raw / f
                    if dst.exists() and dst.stat().st_mtime >= src.stat().st_mtime:
                        continue
                    tmp = dst.with_name(f".{dst.name}.tmp{os.getpid()}")  # processes may prepare it at once
                    opener = gzip.open if src.suffix == ".gz" else open
                    with opener(src, "rb") as fin, open(tmp, "wb") as fout:
                        shutil.copyfileobj(fin, fout)
                    tmp.replace(dst)
                return prepared
        return None

    return locate


def _mnist_builder(cls: type) -> Callable[[Path, bool], tuple[object, object]]:
    def build(root: Path, download: bool) -> tuple[object, object]:
        return (
            cls(str(root), train=True, download=download),
            cls(str(root), train=False, download=download),
        )

    return build


# ---------------------------------------------------------------------------------------------
# CIFAR (pickled batches) and SVHN (.mat). A local copy is read without running anything it contains: the batches
# are unpickled by a restricted Unpickler that can build only what a CIFAR batch holds (dicts, lists, strings,
# numbers, numpy arrays), and every file's layout is checked. A crafted file is refused before any of it runs; a
# damaged, truncated or foreign file is one DatasetNotAvailableError naming it. torchvision's md5 list is not
# required, so a copy re-encoded locally (or the tests' small files in the real format) loads; it is compared
# (``official``), and the source says whether the files are the official ones. Downloads stay torchvision's,
# md5-checked.


class _DamagedFile(Exception):
    """A dataset file that exists but cannot be used; load_dataset turns it into a DatasetNotAvailableError."""

    def __init__(self, path: Path, why: str):
        super().__init__(f"{path}: {why}")
        self.path, self.why = Path(path), why


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """``_codecs.encode`` as Python 3's protocol-2 pickles use it for bytes, restricted to latin-1."""
    if encoding.lower().replace("-", "").replace("_", "") not in ("latin1", "iso88591", "l1"):
        raise _Refused(f"refused: _codecs.encode with encoding {encoding!r}; nothing in the file was run")
    return text.encode("latin1")


def _numpy_globals() -> dict[tuple[str, str], object]:
    """The callables a pickled numpy array needs, under the module names numpy 1.x and 2.x pickle them with."""
    try:
        from numpy._core import multiarray, numeric  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray, numeric
    out: dict[tuple[str, str], object] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
    for mod in ("numpy.core", "numpy._core"):
        out[(f"{mod}.multiarray", "_reconstruct")] = multiarray._reconstruct
        out[(f"{mod}.multiarray", "scalar")] = multiarray.scalar
        out[(f"{mod}.numeric", "_frombuffer")] = numeric._frombuffer
    return out


_ALLOWED_GLOBALS = {**_numpy_globals(), ("_codecs", "encode"): _latin1_encode,
                    ("builtins", "bytes"): bytes, ("__builtin__", "bytes"): bytes}


class _Refused(pickle.UnpicklingError):
    pass


class _BatchUnpickler(pickle.Unpickler):
    """Builds dicts, lists, strings, numbers and numpy arrays only: any other global (``os.system``,
    ``builtins.eval``, a class with a ``__reduce__``) is refused before it is called."""

    def find_class(self, module: str, name: str) -> object:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise _Refused(f"refused: it asks for {module}.{name}, which a CIFAR file never holds; nothing in the "
                           f"file was run") from None


def _unpickle(path: Path) -> object:
    try:
        with open(path, "rb") as fh:
            return _BatchUnpickler(fh, encoding="latin1").load()
    except FileNotFoundError:
        raise _DamagedFile(path, "missing (the copy is incomplete)") from None
    except _Refused as exc:
        raise _DamagedFile(path, str(exc)) from None
    except Exception as exc:  # EOFError (truncated), UnpicklingError (refused or garbled), ValueError, ...
        raise _DamagedFile(path, f"not a readable CIFAR pickle ({type(exc).__name__}: {exc})") from None


def _read_cifar_batch(path: Path, label_key: str, num_classes: int) -> tuple[np.ndarray, list[int]]:
    """(rows of 3072 uint8, labels) of one CIFAR batch file, its layout checked."""
    entry = _unpickle(path)
    data = entry.get("data") if isinstance(entry, dict) else None
    labels = entry.get(label_key) if isinstance(entry, dict) else None
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2 and data.shape[1] == 3072):
        raise _DamagedFile(path, "not a CIFAR batch: no 'data' array of uint8 rows of 3072 pixels")
    if not (isinstance(labels, list) and len(labels) == len(data)
            and all(type(v) is int and 0 <= v < num_classes for v in labels)):
        raise _DamagedFile(path, f"not a CIFAR batch: no {label_key!r} list of {len(data)} integers in "
                                 f"0..{num_classes - 1}")
    return data, labels


def _read_cifar_meta(path: Path, key: str) -> list[str]:
    entry = _unpickle(path)
    names = entry.get(key) if isinstance(entry, dict) else None
    if not (isinstance(names, list) and names and all(isinstance(n, str) for n in names)):
        raise _DamagedFile(path, f"not CIFAR metadata: no {key!r} list of class names")
    return names


class _LocalCIFAR10(torchvision.datasets.CIFAR10):
    """torchvision's CIFAR-10 (its file list, its md5-checked download) with the files read by
    :func:`_read_cifar_batch` instead of ``pickle.load``."""

    label_key, num_classes = "labels", 10

    def __init__(self, root: str, train: bool = True, download: bool = False) -> None:
        torchvision.datasets.VisionDataset.__init__(self, root)
        self.train = train
        if download:
            self.download()  # torchvision's: skipped when every file matches its md5
        folder = Path(self.root) / self.base_folder
        files = self.train_list if train else self.test_list
        batches = [_read_cifar_batch(folder / name, self.label_key, self.num_classes) for name, _ in files]
        self.data = np.vstack([x for x, _ in batches]).reshape(-1, 3, 32, 32).transpose((0, 2, 3, 1))  # N, H, W, C
        self.targets = [v for _, y in batches for v in y]
        self.classes = _read_cifar_meta(folder / self.meta["filename"], self.meta["key"])
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}
        checked = [*files, (self.meta["filename"], self.meta["md5"])]
        self.official = all(check_integrity(str(folder / name), md5) for name, md5 in checked)


class _LocalCIFAR100(torchvision.datasets.CIFAR100):
    label_key, num_classes = "fine_labels", 100
    __init__ = _LocalCIFAR10.__init__


class _LocalSVHN(torchvision.datasets.SVHN):
    """torchvision's SVHN (its md5-checked download) with the .mat file read and checked here: a damaged copy is one
    clear error naming it. ``scipy.io.loadmat`` runs no code from the file (MATLAB v5 data only)."""

    def __init__(self, root: str, split: str = "train", download: bool = False) -> None:
        import scipy.io

        torchvision.datasets.VisionDataset.__init__(self, root)
        self.split = split
        self.url, self.filename, self.file_md5 = self.split_list[split]
        path = Path(self.root) / self.filename
        if download and not path.exists():
            self.download()
        if not path.exists():
            raise _DamagedFile(path, "missing (the copy is incomplete)")
        try:
            mat = scipy.io.loadmat(str(path))
            x, y = mat["X"], mat["y"]
        except Exception as exc:  # truncated: ValueError/OSError/TypeError from scipy; KeyError: not SVHN
            raise _DamagedFile(path, f"not a readable SVHN .mat file ({type(exc).__name__}: {exc})") from None
        if not (isinstance(x, np.ndarray) and x.dtype == np.uint8 and x.ndim == 4 and x.shape[:3] == (32, 32, 3)
                and isinstance(y, np.ndarray) and y.size == x.shape[3] and np.isin(y, np.arange(1, 11)).all()):
            raise _DamagedFile(path, "not an SVHN file: expected X (32, 32, 3, N) uint8 and y of N labels 1..10")
        self.data = np.transpose(x, (3, 2, 0, 1))
        self.labels = y.astype(np.int64).reshape(-1)
        np.place(self.labels, self.labels == 10, 0)  # SVHN stores the digit 0 as label 10
        self.official = check_integrity(str(path), self.file_md5)


def _folder_locator(*relpaths: str) -> Callable[[Path], Path | None]:
    def locate(candidate: Path) -> Path | None:
        if all((candidate / r).exists() for r in relpaths):
            return candidate
        return None

    return locate


def _cifar_builder(cls: type) -> Callable[[Path, bool], tuple[object, object]]:
    def build(root: Path, download: bool) -> tuple[object, object]:
        return (
            cls(str(root), train=True, download=download),
            cls(str(root), train=False, download=download),
        )

    return build


def _svhn_build(root: Path, download: bool) -> tuple[object, object]:
    return (
        _LocalSVHN(str(root), split="train", download=download),
        _LocalSVHN(str(root), split="test", download=download),
    )


_CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
_FMNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot")
_CIFAR_MEAN, _CIFAR_STD = (0.491, 0.482, 0.447), (0.247, 0.243, 0.262)  # upstream class_forgetting utils.py

DATASETS.register("cifar10", DatasetSpec(
    name="cifar10", num_classes=10, channels=3, size=32, mean=_CIFAR_MEAN, std=_CIFAR_STD,
    classes=_CIFAR10_CLASSES, system_names=("cifar10", "cifar-10"),
    locate=_folder_locator("cifar-10-batches-py/data_batch_1", "cifar-10-batches-py/test_batch"),
    build=_cifar_builder(_LocalCIFAR10)))
DATASETS.register("cifar100", DatasetSpec(
    name="cifar100", num_classes=100, channels=3, size=32, mean=(0.507, 0.487, 0.441), std=(0.267, 0.256, 0.276),
    classes=tuple(str(i) for i in range(100)), system_names=("cifar100", "cifar-100"),
    locate=_folder_locator("cifar-100-python/train", "cifar-100-python/test"),
    build=_cifar_builder(_LocalCIFAR100)))
DATASETS.register("svhn", DatasetSpec(
    name="svhn", num_classes=10, channels=3, size=32, mean=(0.438, 0.444, 0.473), std=(0.198, 0.201, 0.197),
    classes=tuple(str(i) for i in range(10)), system_names=("svhn",), augment="crop",
    locate=_folder_locator("train_32x32.mat", "test_32x32.mat"), build=_svhn_build,
    notes="no horizontal flip for digits"))
DATASETS.register("mnist", DatasetSpec(
    name="mnist", num_classes=10, channels=1, size=28, mean=(0.1307,), std=(0.3081,),
    classes=tuple(str(i) for i in range(10)), system_names=("mnist",), augment="crop",
    locate=_mnist_locator("MNIST"), build=_mnist_builder(torchvision.datasets.MNIST),
    notes="no horizontal flip for digits"))
DATASETS.register("fashion_mnist", DatasetSpec(
    name="fashion_mnist", num_classes=10, channels=1, size=28, mean=(0.2860,), std=(0.3530,),
    classes=_FMNIST_CLASSES, system_names=("fashion-mnist", "fashion_mnist"),
    locate=_mnist_locator("FashionMNIST"), build=_mnist_builder(torchvision.datasets.FashionMNIST)))


# ---------------------------------------------------------------------------------------------
# scikit-learn's digits: the 1797-image test set of the UCI "Optical Recognition of Handwritten Digits"
# data, 8x8 images of counts 0..16 (4x4 blocks of a 32x32 bitmap), in sklearn/datasets/data/digits.csv.gz.
# It has no train/test split of its own; ours is fixed, seeded and class-stratified (digits_split).

DIGITS_SPLIT_SEED = 0


def digits_pixels(counts: np.ndarray) -> np.ndarray:
    """Counts 0..16 to uint8 0..255: ``(255 * v + 8) // 16``, i.e. round(255 v / 16) with halves rounded up
    (0 -> 0, 1 -> 16, 8 -> 128, 15 -> 239, 16 -> 255); exact integer arithmetic, one-to-one."""
    v = np.asarray(counts)
    iv = v.astype(np.int64)
    if not np.array_equal(iv, v) or iv.min() < 0 or iv.max() > 16:
        raise ValueError("digits pixel counts must be integers in 0..16")
    return ((255 * iv + 8) // 16).astype(np.uint8)


def digits_split(labels: np.ndarray, seed: int = DIGITS_SPLIT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) indices into load_digits()'s order, each sorted (dataset order kept).

    Per class c in 0..9, in class order, one ``np.random.RandomState(seed)`` permutes the indices of class c
    and the first ``(n_c + 2) // 4`` (round(n_c / 4), halves up) go to the test set. RandomState's stream is
    frozen by NumPy's compatibility policy (NEP 19), and nothing else draws from it, so the split is the
    same on every machine and numpy version and independent of any global RNG. Seed 0: 1346 train, 451 test.
    """
    labels = np.asarray(labels)
    rs = np.random.RandomState(seed)
    test = []
    for c in range(int(labels.max()) + 1):
        idx = np.flatnonzero(labels == c)
        test.append(rs.permutation(idx)[:(len(idx) + 2) // 4])
    test_idx = np.sort(np.concatenate(test))
    return np.setdiff1d(np.arange(len(labels)), test_idx), test_idx


def _load_digits(spec: DatasetSpec) -> ImageData:
    import sklearn  # a dependency of the suite; imported here only, it takes a second
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.from_numpy(digits_pixels(bunch.images)).unsqueeze(1)  # N, 1, 8, 8
    labels = torch.as_tensor(bunch.target, dtype=torch.long)
    train, test = digits_split(bunch.target)
    tr, te = torch.as_tensor(train), torch.as_tensor(test)
    source = (f"scikit-learn {sklearn.__version__} load_digits (sklearn/datasets/data/digits.csv.gz); "
              f"seeded stratified split {len(train)}/{len(test)}, seed {DIGITS_SPLIT_SEED}")
    return ImageData(spec, images[tr].contiguous(), labels[tr], images[te].contiguous(), labels[te], source=source,
                     meta={"train_indices": train, "test_indices": test, "split_seed": DIGITS_SPLIT_SEED})


# mean and std (population) of pixel/255 over the 1346 train images
DATASETS.register("digits", DatasetSpec(
    name="digits", num_classes=10, channels=1, size=8, mean=(0.3063,), std=(0.3767,),
    classes=tuple(str(i) for i in range(10)), augment="crop", crop_padding=1, bundled=_load_digits,
    notes="scikit-learn's 8x8 digits, bundled (never downloaded); counts 0..16 mapped to 0..255; fixed seeded "
          "stratified split; mean/std of the train split; crop with 1-pixel padding, no flip"))


def candidate_roots(spec: DatasetSpec) -> list[Path]:
    """Where an existing copy is looked for, in order: $UNLEARNLIB_DATA (or ./data), then OS packages."""
    roots = [data_root(), data_root() / spec.name]
    for sysdir in system_data_dirs():
        roots += [sysdir / n for n in spec.system_names]
    return roots


def _three_ways(spec: DatasetSpec) -> str:
    names = " or ".join(f"/usr/share/datasets/{n}" for n in spec.system_names[:1])
    extra = ""
    if spec.name == "fashion_mnist":
        extra = " (Debian: `apt-get install dataset-fashion-mnist`)"
    return (
        f"Provide it in one of three ways: (1) set UNLEARNLIB_DATA to a folder holding it in torchvision's layout, "
        f"(2) put it under {data_root()} (torchvision layout), or (3) install it system-wide at "
        f"{names}{extra}; with internet access it is downloaded into {data_root()} automatically."
    )


def _how_to_provide(spec: DatasetSpec) -> str:
    return (
        f"dataset {spec.name!r} was not found locally and could not be downloaded. {_three_ways(spec)} "
        f"Looked in: {', '.join(str(p) for p in candidate_roots(spec))}"
    )


def _damaged(spec: DatasetSpec, bad: _DamagedFile) -> DatasetNotAvailableError:
    return DatasetNotAvailableError(
        f"dataset {spec.name!r}: the file {bad.path} is damaged or not in the dataset's format: {bad.why}. "
        f"Replace it with an intact copy, or remove the folder {bad.path.parent} so that another copy is used or "
        f"the dataset is downloaded again. {_three_ways(spec)}")


def _provenance(train: object, test: object) -> str:
    """'; official files (md5 verified)' when torchvision's md5 list matches every file read, else says it does
    not; '' for datasets torchvision does not checksum on read."""
    official = [getattr(ds, "official", None) for ds in (train, test)]
    if None in official:
        return ""
    return ("; the official files (md5 verified)" if all(official)
            else "; not byte-identical to the official files (md5 differs: a re-encoded or partial copy)")


def _to_uint8_nchw(ds: object) -> tuple[torch.Tensor, torch.Tensor]:
    data = ds.data  # type: ignore[attr-defined]
    if isinstance(data, np.ndarray):
        data = torch.from_numpy(data)
    if data.ndim == 3:  # MNIST: N, H, W
        data = data.unsqueeze(1)
    elif data.shape[-1] in (1, 3) and data.shape[1] not in (1, 3):  # CIFAR: N, H, W, C
        data = data.permute(0, 3, 1, 2)
    labels = getattr(ds, "targets", None)
    if labels is None:
        labels = ds.labels  # type: ignore[attr-defined]  # SVHN
    return data.contiguous().to(torch.uint8), torch.as_tensor(np.asarray(labels), dtype=torch.long)


def load_dataset(name: str, *, download: bool = True) -> ImageData:
    """Load a registered dataset, from an existing copy if one is found, else by download."""
    spec: DatasetSpec = DATASETS.get(name)
    if spec.bundled is not None:
        data = spec.bundled(spec)
        _check_shape(name, spec, data.train_x)
        return data
    for cand in candidate_roots(spec):
        if not cand.exists():
            continue
        root = spec.locate(cand)
        if root is not None:
            try:
                train, test = spec.build(root, False)
            except _DamagedFile as bad:
                raise _damaged(spec, bad) from None
            source = shown(cand)  # printed into the notebook: no absolute path of this machine
            break
    else:
        if not download:
            raise DatasetNotAvailableError(_how_to_provide(spec))
        root = data_root()
        root.mkdir(parents=True, exist_ok=True)
        old = socket.getdefaulttimeout()
        socket.setdefaulttimeout(30)
        try:
            train, test = spec.build(root, True)
        except _DamagedFile as bad:
            raise _damaged(spec, bad) from None
        except Exception as exc:  # offline, DNS failure, HTTP error, bad archive
            raise DatasetNotAvailableError(f"{_how_to_provide(spec)}. Download error: {exc}") from None
        finally:
            socket.setdefaulttimeout(old)
        source = f"downloaded to {shown(root)}"
    source += _provenance(train, test)
    train_x, train_y = _to_uint8_nchw(train)
    test_x, test_y = _to_uint8_nchw(test)
    _check_shape(name, spec, train_x)
    return ImageData(spec, train_x, train_y, test_x, test_y, source=source)


def _check_shape(name: str, spec: DatasetSpec, train_x: torch.Tensor) -> None:
    if train_x.shape[1:] != (spec.channels, spec.size, spec.size):
        raise ValueError(f"dataset {name!r}: expected images of shape "
                         f"{(spec.channels, spec.size, spec.size)}, found {tuple(train_x.shape[1:])}")
