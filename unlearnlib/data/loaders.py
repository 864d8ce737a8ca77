"""Batches of an in-memory image dataset, normalised and (optionally) augmented on the device."""

from __future__ import annotations

import math
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from .datasets import DatasetSpec


def normalise(x_uint8: torch.Tensor, spec: DatasetSpec) -> torch.Tensor:
    x = x_uint8.float().div_(255.0)
    mean = torch.tensor(spec.mean, device=x.device).view(1, -1, 1, 1)
    std = torch.tensor(spec.std, device=x.device).view(1, -1, 1, 1)
    return (x - mean) / std


def augment(x_uint8: torch.Tensor, kind: str, generator: torch.Generator, padding: int = 4) -> torch.Tensor:
    """Batch version of RandomCrop(size, padding) [+ RandomHorizontalFlip], zero padding as torchvision."""
    if kind == "none":
        return x_uint8
    if kind not in ("crop", "crop_flip"):
        raise ValueError(f"unknown augmentation {kind!r}; valid: none, crop, crop_flip")
    b, _, h, w = x_uint8.shape
    padded = F.pad(x_uint8, (padding, padding, padding, padding))
    dy = torch.randint(0, 2 * padding + 1, (b,), generator=generator).to(x_uint8.device)
    dx = torch.randint(0, 2 * padding + 1, (b,), generator=generator).to(x_uint8.device)
    rows = (dy[:, None] + torch.arange(h, device=x_uint8.device))[:, :, None]  # b,h,1
    cols = (dx[:, None] + torch.arange(w, device=x_uint8.device))[:, None, :]  # b,1,w
    bidx = torch.arange(b, device=x_uint8.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[bidx, rows, cols].permute(0, 3, 1, 2)  # b,c,h,w
    if kind == "crop_flip":
        flip = (torch.rand(b, generator=generator) < 0.5).to(x_uint8.device)
        out = torch.where(flip[:, None, None, None], out.flip(-1), out)
    return out.contiguous()


class Loader:
    """Iterates ``(x, y)`` batches over ``indices`` of one in-memory split.

    ``x`` is normalised float32 on ``device``; with ``augment=True`` the dataset's training
    augmentation is applied per batch. Every read is counted in ``reads``, so a contract test can
    check that a method declared retain-free never touches its retain loader; every sample drawn (through
    :meth:`batch`, which iteration uses too) is counted in ``drawn``, shared with the loaders derived from this one
    (:meth:`with_options`, :meth:`subset`), so the harness measures a call's passes over the data it handed over.
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
        self.generator = torch.Generator().manual_seed(int(seed))
        self.reads = 0
        self._drawn = [0]  # one counter shared by this loader and every loader derived from it

    @property
    def drawn(self) -> int:
        """Samples drawn through :meth:`batch` from this loader and the loaders derived from it."""
        return self._drawn[0]

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
        """The samples at ``positions`` (positions within this loader, not dataset indices)."""
        self.reads += 1
        idx = torch.as_tensor(self.indices[np.asarray(positions, dtype=np.int64)])
        self._drawn[0] += len(idx)
        x = self.images[idx].to(self.device, non_blocking=True)
        if self.augment if augment is None else augment:
            x = augment_batch(x, self.spec, generator or self.generator)
        return normalise(x, self.spec), self.labels_all[idx].to(self.device)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.indices)
        order = torch.randperm(n, generator=self.generator).numpy() if self.shuffle else np.arange(n)
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
