"""Logits gathered once per model state, and the named metrics computed from them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..data.splits import Split
from . import METRICS
from .accuracy import forget_retain_accuracy, true_class_probability
from .mia import svc_mia_kodge


@dataclass
class MetricConfig:
    metrics: tuple[str, ...] = ("test_forget_acc", "test_retain_acc", "train_forget_acc", "train_retain_acc",
                                "mia_svc")
    mia_max_train: int | None = None  # cap per SVC training group (None = all, as upstream)
    seed: int = 0


@dataclass
class Evaluation:
    """Logits of one model on the test pool, the train pool (test-time transform) and, optionally, the
    train pool with the training augmentation (for upstream-parity MIA features). Indices are dataset
    indices; ``*_pos`` maps a dataset index to its row."""

    test_idx: np.ndarray
    test_logits: torch.Tensor
    test_labels: torch.Tensor
    train_idx: np.ndarray
    train_logits: torch.Tensor
    train_labels: torch.Tensor
    train_aug_logits: torch.Tensor | None = None

    def rows(self, pool_idx: np.ndarray, wanted: np.ndarray) -> np.ndarray:
        pos = np.searchsorted(pool_idx, wanted)
        if len(wanted) and (pos.max() >= len(pool_idx) or not np.array_equal(pool_idx[pos], wanted)):
            raise ValueError("split indices are not all in the evaluated pool")
        return pos

    def test(self, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        r = torch.as_tensor(self.rows(self.test_idx, idx))
        return self.test_logits[r], self.test_labels[r]

    def train(self, idx: np.ndarray, augmented: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        r = torch.as_tensor(self.rows(self.train_idx, idx))
        logits = self.train_aug_logits if augmented else self.train_logits
        if logits is None:
            raise ValueError("augmented train logits were not gathered")
        return logits[r], self.train_labels[r]


def _acc(ev: Evaluation, split: Split, which: str, group: str) -> float:
    if which == "test":
        idx = np.concatenate([split.forget_test, split.retain_test])
        logits, labels = ev.test(np.sort(idx))
    else:
        idx = np.concatenate([split.forget_train, split.retain_train])
        logits, labels = ev.train(np.sort(idx))
    f, r = forget_retain_accuracy(logits, labels, split.forget_classes)
    return f if group == "forget" else r


for _which in ("test", "train"):
    for _group in ("forget", "retain"):
        METRICS.register(f"{_which}_{_group}_acc",
                         lambda ev, split, cfg, w=_which, g=_group: _acc(ev, split, w, g))


def _mia(ev: Evaluation, split: Split, cfg: MetricConfig, augmented: bool) -> float:
    pr = true_class_probability(*ev.train(split.retain_train, augmented))
    pf = true_class_probability(*ev.train(split.forget_train, augmented))
    pt = true_class_probability(*ev.test(split.forget_test))
    return svc_mia_kodge(pr, pf, pt, max_train=cfg.mia_max_train, seed=cfg.seed)


# test-time transforms for every feature (evaluation.md pitfall 11)
METRICS.register("mia_svc", lambda ev, split, cfg: _mia(ev, split, cfg, augmented=False))
# upstream parity: retain/forget train features through the training augmentation
METRICS.register("mia_svc_augmented", lambda ev, split, cfg: _mia(ev, split, cfg, augmented=True))


def compute_metrics(ev: Evaluation, split: Split, cfg: MetricConfig) -> dict[str, float]:
    return {name: float(METRICS.get(name)(ev, split, cfg)) for name in cfg.metrics}
