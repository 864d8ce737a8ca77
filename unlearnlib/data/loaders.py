"""Batches of an in-memory image dataset, normalised and (optionally) augmented on the device."""

from __future__ import annotations

import math
import weakref
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from .datasets import DatasetSpec

_CONSTANTS: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}


def _mean_std(spec: DatasetSpec, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The normalisation constants of ``spec`` on ``device``, built once per dataset and device (on CUDA, building
    them per batch cost two blocking host-to-device copies a batch)."""
    key = (spec.name, tuple(spec.mean), tuple(spec.std), str(device))
    if key not in _CONSTANTS:
        _CONSTANTS[key] = (torch.tensor(spec.mean, device=device).view(1, -1, 1, 1),
                           torch.tensor(spec.std, device=device).view(1, -1, 1, 1))
    return _CONSTANTS[key]


def normalise(x_uint8: torch.Tensor, spec: DatasetSpec) -> torch.Tensor:
    x = x_uint8.float().div_(255.0)
    mean, std = _mean_std(spec, x.device)
    return (x - mean) / std


_ON_DEVICE: dict[tuple[int, str], torch.Tensor] = {}


def _same_device(t: torch.Tensor, device: torch.device) -> bool:
    return t.device.type == device.type and (device.index is None or t.device.index == device.index)


def on_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``t`` on ``device``: itself when it is there, else one copy per tensor and device, kept while ``t`` lives (the
    labels of a dataset are copied to the GPU once, not once per batch)."""
    if _same_device(t, device):
        return t
    key = (id(t), str(device))
    if key not in _ON_DEVICE:
        _ON_DEVICE[key] = t.to(device)
        weakref.finalize(t, _ON_DEVICE.pop, key, None)
    return _ON_DEVICE[key]


def augment(x_uint8: torch.Tensor, kind: str, generator: torch.Generator, padding: int = 4) -> torch.Tensor:
    """Batch version of RandomCrop(size, padding) [+ RandomHorizontalFlip], zero padding as torchvision."""
    if kind == "none":
        return x_uint8
    if kind not in ("crop", "crop_flip"):
        raise ValueError(f"unknown augmentation {kind!r}; valid: none, crop, crop_flip")
    b, _, h, w = x_uint8.shape
    padded = F.pad(x_uint8, (padding, padding, padding, padding))
    # the draws come from ``generator`` on its own device (a loader's generator lives on the loader's device: no
    # host round trip on CUDA; on the CPU the same calls as before, so the same numbers)
    g = generator.device
    dy = torch.randint(0, 2 * padding + 1, (b,), generator=generator, device=g).to(x_uint8.device)
    dx = torch.randint(0, 2 * padding + 1, (b,), generator=generator, device=g).to(x_uint8.device)
    rows = (dy[:, None] + torch.arange(h, device=x_uint8.device))[:, :, None]  # b,h,1
    cols = (dx[:, None] + torch.arange(w, device=x_uint8.device))[:, None, :]  # b,1,w
    bidx = torch.arange(b, device=x_uint8.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[bidx, rows, cols].permute(0, 3, 1, 2)  # b,c,h,w
    if kind == "crop_flip":
        flip = (torch.rand(b, generator=generator, device=g) < 0.5).to(x_uint8.device)
        out = torch.where(flip[:, None, None, None], out.flip(-1), out)
    return out.contiguous()


class Loader:
    """Iterates ``(x, y)`` batches over ``indices`` of one in-memory split.

    ``x`` is normalised float32 on ``device``; with ``augment=True`` the dataset's training
    augmentation is applied per batch. Every read is counted in ``reads``, so a contract test can
    check that a method declared retain-free never touches its retain loader; every sample drawn (through
    :meth:`batch`, which iteration uses too) is counted in ``drawn``, shared with the loaders derived from this one
    (:meth:`with_options`, :meth:`subset`), so the harness measures a call's passes over the data it handed over.

    Iterating makes no host-device synchronisation on CUDA: the indices, the labels (one copy per dataset), the
    epoch's permutation and the augmentation draws are on ``device`` (its generator is a generator of that device,
    seeded with ``seed``). On the CPU the draws and numbers are the ones of a CPU generator, as always.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, indices: np.ndarray, spec: DatasetSpec, *,
                 batch_size: int = 256, shuffle: bool = False, augment: bool = False, seed: int = 0,
                 device: str | torch.device = "cpu", name: str = "") -> None:
        self.images, self.labels_all = images, labels
        self.indices = np.asarray(indices, dtype=np.int64)
        self.spec = spec
        self.batch_size = int(batch_size)
        self.shuffle, self.augment = shuffle, augment
        self.device = torch.device(device)
        self.name = name
        self.generator = torch.Generator(device=self.device).manual_seed(int(seed))
        self.reads = 0
        self._drawn = [0]  # one counter shared by this loader and every loader derived from it

    @property
    def drawn(self) -> int:
        """Samples drawn through :meth:`batch` from this loader and the loaders derived from it."""
        return self._drawn[0]

    @property
    def indices(self) -> np.ndarray:
        return self._indices

    @indices.setter
    def indices(self, value: np.ndarray) -> None:
        self._indices = value
        self._indices_dev: torch.Tensor | None = None  # built on first use, on the loader's device

    def _device_indices(self) -> torch.Tensor:
        if self._indices_dev is None:
            self._indices_dev = torch.as_tensor(self._indices, device=self.device)
        return self._indices_dev

    # -- size ----------------------------------------------------------------------------------
    def __len__(self) -> int:
        return math.ceil(len(self.indices) / self.batch_size)

    @property
    def num_samples(self) -> int:
        return len(self.indices)

    # -- reading -------------------------------------------------------------------------------
    @property
    def labels(self) -> torch.Tensor:
        """Labels of every sample, in loader order (CPU)."""
        self.reads += 1
        return self.labels_all[torch.as_tensor(self.indices)]

    def batch(self, positions: np.ndarray | torch.Tensor, *, augment: bool | None = None,
              generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The samples at ``positions`` (positions within this loader, not dataset indices): a numpy array, a list
        or a tensor (on the loader's device: no host round trip)."""
        self.reads += 1
        if isinstance(positions, torch.Tensor):
            idx = self._device_indices()[positions.to(self.device)]
        else:
            idx = torch.as_tensor(self.indices[np.asarray(positions, dtype=np.int64)]).to(self.device)
        self._drawn[0] += len(idx)  # a shape, not a value: no host-device synchronisation
        x = self.images[idx.to(self.images.device)].to(self.device, non_blocking=True)
        if self.augment if augment is None else augment:
            x = augment_batch(x, self.spec, generator or self.generator)
        return normalise(x, self.spec), on_device(self.labels_all, self.device)[idx]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.indices)
        dev = self.generator.device
        order = torch.randperm(n, generator=self.generator, device=dev) if self.shuffle else torch.arange(n, device=dev)
        for start in range(0, n, self.batch_size):
            yield self.batch(order[start:start + self.batch_size])

    def with_options(self, **kw) -> "Loader":
        """A copy with some options changed (batch_size, shuffle, augment, seed, device, name); counted as a
        read, like :meth:`subset`, so reads through a derived loader show in ``reads``."""
        self.reads += 1
        opts = dict(batch_size=self.batch_size, shuffle=self.shuffle, augment=self.augment,
                    seed=int(self.generator.initial_seed()), device=self.device, name=self.name)
        opts.update(kw)
        out = Loader(self.images, self.labels_all, self.indices, self.spec, **opts)
        out._drawn = self._drawn
        return out

    def subset(self, positions: np.ndarray, **kw) -> "Loader":
        """A loader over some of this loader's samples (positions within this loader)."""
        out = self.with_options(**kw)  # counts as a read
        out.indices = self.indices[np.asarray(positions, dtype=np.int64)]
        return out

    def __repr__(self) -> str:
        return (f"Loader({self.name or 'unnamed'}: {self.num_samples} samples, batch {self.batch_size}, "
                f"shuffle={self.shuffle}, augment={self.augment})")


def augment_batch(x_uint8: torch.Tensor, spec: DatasetSpec, generator: torch.Generator) -> torch.Tensor:
    return augment(x_uint8, spec.augment, generator, padding=spec.crop_padding)
