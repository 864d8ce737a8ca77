"""Shared fixtures: isolated data/cache/results roots, a tiny synthetic image problem, the real
Fashion-MNIST copy (Debian package ``dataset-fashion-mnist``) when it is installed."""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import pytest
import torch

from unlearnlib.data import DatasetSpec, Loader

# one intra-op thread: tiny tensors gain nothing from more, and OpenMP threads spinning against another
# process on a 2-core machine slow a tiny forward pass down a hundredfold
torch.set_num_threads(1)

SYSTEM_DATASETS = Path("/usr/share/datasets")


@contextlib.contextmanager
def env_vars(**values):
    """Environment variables set (as strings) for the block, restored after it: for code that must run inside a
    test's ``with`` (a run in another root, a second run after the first)."""
    with pytest.MonkeyPatch.context() as mp:
        for k, v in values.items():
            mp.setenv(k, str(v))
        yield
FMNIST_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
                "t10k-labels-idx1-ubyte.gz")


def isolated_roots(base: Path) -> dict[str, str]:
    """Fresh, empty roots for every path the library may write to or read datasets from."""
    roots = {
        "UNLEARNLIB_RESULTS": base / "results",
        "UNLEARNLIB_CACHE": base / "cache",
        "UNLEARNLIB_DATA": base / "data",
        "UNLEARNLIB_SYSTEM_DATA": base / "system",
    }
    for p in roots.values():
        p.mkdir(parents=True, exist_ok=True)
    return {k: str(v) for k, v in roots.items()}


@pytest.fixture(scope="session")
def make_roots():
    """Factory for a fresh set of isolated roots under a folder (for module/session-scoped fixtures)."""
    return isolated_roots


@pytest.fixture(autouse=True)
def isolated_env(tmp_path_factory, monkeypatch) -> dict[str, str]:
    """Every test starts with empty results/cache/data roots and no system datasets, all under tmp."""
    roots = isolated_roots(tmp_path_factory.mktemp("roots"))
    for k, v in roots.items():
        monkeypatch.setenv(k, v)
    return roots


def fmnist_available() -> bool:
    return all((SYSTEM_DATASETS / "fashion-mnist" / f).exists() for f in FMNIST_FILES)


@pytest.fixture(scope="session")
def fmnist_system_dir() -> Path:
    """/usr/share/datasets when the Debian Fashion-MNIST copy is installed; else the test is skipped."""
    if not fmnist_available():
        pytest.skip("real Fashion-MNIST not installed at /usr/share/datasets/fashion-mnist "
                    "(apt-get install dataset-fashion-mnist)")
    return SYSTEM_DATASETS


@pytest.fixture(scope="session")
def fmnist(fmnist_system_dir, tmp_path_factory):
    """The real Fashion-MNIST, loaded once per session (prepared copy in a session tmp cache)."""
    from unlearnlib.data import load_dataset

    base = tmp_path_factory.mktemp("fmnist_roots")
    roots = isolated_roots(base)
    roots["UNLEARNLIB_SYSTEM_DATA"] = str(fmnist_system_dir)
    with pytest.MonkeyPatch.context() as mp:
        for k, v in roots.items():
            mp.setenv(k, v)
        return load_dataset("fashion_mnist", download=False)


# ----------------------------------------------------------------------------------------------
# a tiny synthetic problem


def synthetic_spec(num_classes: int = 3, channels: int = 1, size: int = 8, augment: str = "crop_flip",
                   mean: float = 0.5, std: float = 0.25) -> DatasetSpec:
    return DatasetSpec(name="synthetic", num_classes=num_classes, channels=channels, size=size,
                       mean=(mean,) * channels, std=(std,) * channels,
                       classes=tuple(str(i) for i in range(num_classes)),
                       locate=lambda _p: None, build=lambda _p, _d: (None, None), augment=augment)


def synthetic_images(n: int, num_classes: int, channels: int, size: int, seed: int = 0):
    """uint8 images whose class shifts the mean brightness (learnable), labels cycling 0..C-1."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % num_classes
    noise = torch.randint(0, 120, (n, channels, size, size), generator=g)
    images = (noise + 60 * labels.view(-1, 1, 1, 1)).clamp(0, 255).to(torch.uint8)
    return images, labels.long()


class TinyProblem:
    """60 uint8 1x8x8 images, 3 classes; class 0 is forgotten."""

    def __init__(self, n: int = 60, num_classes: int = 3, channels: int = 1, size: int = 8, forget=(0,)):
        self.spec = synthetic_spec(num_classes, channels, size)
        self.images, self.labels = synthetic_images(n, num_classes, channels, size)
        is_f = np.isin(self.labels.numpy(), forget)
        self.forget_idx = np.flatnonzero(is_f)
        self.retain_idx = np.flatnonzero(~is_f)

    def loaders(self, batch_size: int = 16, **kw) -> tuple[Loader, Loader]:
        retain = Loader(self.images, self.labels, self.retain_idx, self.spec, batch_size=batch_size, seed=0,
                        name="retain", **kw)
        forget = Loader(self.images, self.labels, self.forget_idx, self.spec, batch_size=batch_size, seed=1,
                        name="forget", **kw)
        return retain, forget


@pytest.fixture
def tiny_problem() -> TinyProblem:
    return TinyProblem()


@pytest.fixture
def make_spec():
    """Factory for a synthetic DatasetSpec (no files behind it)."""
    return synthetic_spec
