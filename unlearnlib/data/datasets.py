"""Dataset registry over torchvision's loaders, with lookup of an existing copy before any download.

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
    locate: Callable[[Path], Path | None]
    # builds (train, test) torchvision datasets from such a root
    build: Callable[[Path, bool], tuple[object, object]]
    system_names: tuple[str, ...] = ()  # folder names used by OS packages (Debian: fashion-mnist)
    augment: str = "crop_flip"  # the CIFAR recipe: RandomCrop(size, padding=4) + RandomHorizontalFlip
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
    if train_x.shape[1:] != (spec.channels, spec.size, spec.size):
        raise ValueError(f"dataset {name!r}: expected images of shape "
                         f"{(spec.channels, spec.size, spec.size)}, found {tuple(train_x.shape[1:])}")
    return ImageData(spec, train_x, train_y, test_x, test_y, source=source)
