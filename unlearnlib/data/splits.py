"""Forget / retain / test splits as seeded index arrays, saved with every run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch


@dataclass(frozen=True)
class Split:
    """Index arrays into the train and test sets of one dataset for one forget scenario."""

    kind: str  # "class" (class-wise forgetting); later kinds: "random", "backdoor", "subclass"
    forget_classes: tuple[int, ...]
    forget_train: np.ndarray
    retain_train: np.ndarray
    forget_test: np.ndarray
    retain_test: np.ndarray

    @property
    def tag(self) -> str:
        """Short identifier of the scenario, e.g. ``class3`` or ``class0+2``."""
        return f"{self.kind}{'+'.join(str(c) for c in self.forget_classes)}"

    def arrays(self, prefix: str = "") -> dict[str, np.ndarray]:
        return {
            f"{prefix}forget_train": self.forget_train,
            f"{prefix}retain_train": self.retain_train,
            f"{prefix}forget_test": self.forget_test,
            f"{prefix}retain_test": self.retain_test,
            f"{prefix}forget_classes": np.asarray(self.forget_classes, dtype=np.int64),
        }


def stratified_subset(labels: torch.Tensor | np.ndarray, n: int | None, seed: int) -> np.ndarray:
    """Sorted indices of a seeded class-stratified subset of about ``n`` samples (all if ``n`` is None)."""
    labels = np.asarray(labels)
    if n is None or n >= len(labels):
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    per_class = max(1, n // len(classes))
    picked = [rng.permutation(np.flatnonzero(labels == c))[:per_class] for c in classes]
    return np.sort(np.concatenate(picked))


def class_split(train_labels, test_labels, forget_classes, train_pool: np.ndarray | None = None,
                test_pool: np.ndarray | None = None) -> Split:
    """Class-wise forgetting: every train sample of the forget classes is forgotten.

    ``train_pool``/``test_pool`` restrict the split to a subset (the ``cpu``/``smoke`` profiles use a
    stratified subset of Fashion-MNIST). Indices stay in dataset order, which matters for methods that
    take "the first k samples per class" (Deep Unlearning).
    """
    train_labels, test_labels = np.asarray(train_labels), np.asarray(test_labels)
    forget = tuple(sorted(int(c) for c in forget_classes))
    num_classes = int(max(train_labels.max(), test_labels.max())) + 1
    bad = [c for c in forget if not 0 <= c < num_classes]
    if bad or not forget:
        raise ValueError(f"forget_classes {list(forget_classes)} invalid: each must be in 0..{num_classes - 1}")
    tr = np.arange(len(train_labels)) if train_pool is None else np.asarray(train_pool)
    te = np.arange(len(test_labels)) if test_pool is None else np.asarray(test_pool)
    tr_f = np.isin(train_labels[tr], forget)
    te_f = np.isin(test_labels[te], forget)
    return Split("class", forget, tr[tr_f], tr[~tr_f], te[te_f], te[~te_f])


def save_splits(path: Path, splits: dict[str, Split], pools: dict[str, np.ndarray]) -> None:
    arrays: dict[str, np.ndarray] = {}
    for tag, s in splits.items():
        arrays.update(s.arrays(prefix=f"{tag}/"))
    for name, arr in pools.items():
        arrays[f"pool/{name}"] = np.asarray(arr)
    with open(path, "wb") as fh:
        np.savez_compressed(fh, **arrays)
