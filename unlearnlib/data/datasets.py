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

from ..paths import cache_root, data_root, system_data_dirs
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
# CIFAR (pickled batches) and SVHN (.mat). torchvision checks md5 sums of every file before use;
# we check presence for local copies (so a copy written by our tests in the real format loads) and
# keep torchvision's checksummed download for fetching.


class _LocalCIFAR10(torchvision.datasets.CIFAR10):
    def _check_integrity(self) -> bool:
        base = Path(self.root) / self.base_folder
        return all((base / name).exists() for name, _ in self.train_list + self.test_list)

    def _load_meta(self) -> None:  # torchvision md5-checks the meta file too; presence is enough here
        path = Path(self.root) / self.base_folder / self.meta["filename"]
        if not path.exists():
            raise RuntimeError(f"dataset metadata file {path} not found")
        with open(path, "rb") as fh:
            self.classes = pickle.load(fh, encoding="latin1")[self.meta["key"]]
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}


class _LocalCIFAR100(torchvision.datasets.CIFAR100):
    _check_integrity = _LocalCIFAR10._check_integrity
    _load_meta = _LocalCIFAR10._load_meta


class _LocalSVHN(torchvision.datasets.SVHN):
    def _check_integrity(self) -> bool:
        return (Path(self.root) / self.filename).exists()


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
    file = Path(sklearn.datasets.__file__).parent / "data" / "digits.csv.gz"
    source = (f"scikit-learn {sklearn.__version__} load_digits ({file}); "
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


def _how_to_provide(spec: DatasetSpec) -> str:
    names = " or ".join(f"/usr/share/datasets/{n}" for n in spec.system_names[:1])
    extra = ""
    if spec.name == "fashion_mnist":
        extra = " (Debian: `apt-get install dataset-fashion-mnist`)"
    return (
        f"dataset {spec.name!r} was not found locally and could not be downloaded. Provide it in one of "
        f"three ways: (1) set UNLEARNLIB_DATA to a folder holding it in torchvision's layout, "
        f"(2) put it under {data_root()} (torchvision layout), or (3) install it system-wide at "
        f"{names}{extra}; with internet access it is downloaded into {data_root()} automatically. "
        f"Looked in: {', '.join(str(p) for p in candidate_roots(spec))}"
    )


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
            train, test = spec.build(root, False)
            source = str(cand)
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
        except Exception as exc:  # offline, DNS failure, HTTP error, bad archive
            raise DatasetNotAvailableError(f"{_how_to_provide(spec)}. Download error: {exc}") from None
        finally:
            socket.setdefaulttimeout(old)
        source = f"downloaded to {root}"
    train_x, train_y = _to_uint8_nchw(train)
    test_x, test_y = _to_uint8_nchw(test)
    _check_shape(name, spec, train_x)
    return ImageData(spec, train_x, train_y, test_x, test_y, source=source)


def _check_shape(name: str, spec: DatasetSpec, train_x: torch.Tensor) -> None:
    if train_x.shape[1:] != (spec.channels, spec.size, spec.size):
        raise ValueError(f"dataset {name!r}: expected images of shape "
                         f"{(spec.channels, spec.size, spec.size)}, found {tuple(train_x.shape[1:])}")
