"""Forget / retain / test splits as seeded index arrays, saved with every run.

Scenario kinds:

- ``class``: every training sample of the forget classes is forgotten (test split by class too);
- ``random``: a seeded random subset of the training pool is forgotten;
- ``backdoor``: a seeded fraction of the training pool (non-target classes) carries a patch trigger and
  the target label; the original is trained on that poisoned set, and the poisoned samples are forgotten.

A held-out "unseen" set (training images never used to train anything) can be split off the pool for
methods and metrics that compare the forget data with third-party data.

The YAML's ``split:`` (:class:`SplitConfig`, a list of :class:`ScenarioConfig`) says which scenarios a run has;
the harness draws them with the functions below.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from ..schema import SEED_MAX, ConfigError, check_range

ScenarioKind = Literal["class", "random", "backdoor"]
SCENARIO_KINDS: tuple[str, ...] = typing.get_args(ScenarioKind)
TriggerLocation = Literal["bottom_right", "top_left"]


# ----------------------------------------------------------------------------------------------
# the schema of a run's scenarios (a paper YAML's ``settings.split``)


@dataclass
class ScenarioConfig:
    kind: ScenarioKind
    classes: list[int] = field(default_factory=list)  # class: the classes forgotten together
    fraction: float = 0.1  # random: share of the training pool forgotten; backdoor: share poisoned
    target: int = 0  # backdoor: the label the trigger maps to
    trigger_size: int = 3  # backdoor: side of the square patch, pixels
    trigger_value: int = 255  # backdoor: uint8 value of the patch
    trigger_location: TriggerLocation = "bottom_right"

    def check(self) -> None:
        if self.kind not in SCENARIO_KINDS:  # a ScenarioConfig made in code (SplitConfig.all_scenarios)
            raise ConfigError(f"kind: {self.kind!r}; valid: {', '.join(SCENARIO_KINDS)}")
        check_range(self, "classes", "target", ge=0)
        if len(set(self.classes)) != len(self.classes):
            raise ConfigError(f"classes: {self.classes} names a class twice; give each class once")
        if self.kind == "class" and not self.classes:
            raise ConfigError("classes: a class scenario needs at least one class")
        check_range(self, "fraction", gt=0, lt=1)
        check_range(self, "trigger_size", ge=1)
        check_range(self, "trigger_value", ge=0, le=255)


@dataclass
class SplitConfig:
    forget: list[list[int]] = field(default_factory=list)  # shorthand: one class scenario per entry
    scenarios: list[ScenarioConfig] = field(default_factory=list)
    unseen: int = 0  # held-out training images never used for training ("unseen third-party data")
    unseen_classes: Literal["all", "retain"] = "all"  # class scenarios: all (unseen keeps the forget classes) | retain
    seed: int = 0  # seeds the choice of random / poisoned samples (fixed across training seeds)

    def all_scenarios(self) -> list[ScenarioConfig]:
        return [ScenarioConfig("class", classes=list(c)) for c in self.forget] + list(self.scenarios)

    def check(self) -> None:
        for i, classes in enumerate(self.forget):
            try:
                ScenarioConfig("class", classes=list(classes)).check()
            except ConfigError as e:
                raise ConfigError(f"forget[{i}]: {str(e).split(': ', 1)[1]}") from None
        check_range(self, "unseen", ge=0)
        check_range(self, "seed", ge=0, le=SEED_MAX)


# ----------------------------------------------------------------------------------------------
# index arrays


@dataclass(frozen=True)
class Trigger:
    """A square patch of constant value stamped on each image (BadNets-style)."""

    size: int = 3
    value: int = 255  # uint8 pixel value in every channel
    location: TriggerLocation = "bottom_right"

    def apply(self, images: torch.Tensor) -> torch.Tensor:
        """A copy of uint8 images (N, C, H, W) with the patch stamped."""
        out = images.clone()
        s = self.size
        if self.location == "bottom_right":
            out[..., -s:, -s:] = self.value
        elif self.location == "top_left":
            out[..., :s, :s] = self.value
        else:
            raise ValueError(f"trigger location {self.location!r}; valid: bottom_right, top_left")
        return out


@dataclass(frozen=True)
class Split:
    """Index arrays into the train and test sets of one dataset for one forget scenario."""

    kind: ScenarioKind
    forget_classes: tuple[int, ...]
    forget_train: np.ndarray
    retain_train: np.ndarray
    forget_test: np.ndarray
    retain_test: np.ndarray
    name: str = ""
    unseen: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    target: int | None = None  # backdoor: the label the trigger maps to
    trigger: Trigger | None = None

    @property
    def tag(self) -> str:
        """Short identifier of the scenario, e.g. ``class3``, ``class0+2``, ``random10pct``, ``backdoor``."""
        if self.name:
            return self.name
        return f"{self.kind}{'+'.join(str(c) for c in self.forget_classes)}"

    def arrays(self, prefix: str = "") -> dict[str, np.ndarray]:
        out = {
            f"{prefix}forget_train": self.forget_train,
            f"{prefix}retain_train": self.retain_train,
            f"{prefix}forget_test": self.forget_test,
            f"{prefix}retain_test": self.retain_test,
            f"{prefix}forget_classes": np.asarray(self.forget_classes, dtype=np.int64),
            f"{prefix}unseen": self.unseen,
        }
        if self.target is not None:
            out[f"{prefix}backdoor_target"] = np.asarray([self.target], dtype=np.int64)
        return out


def stratified_subset(labels: torch.Tensor | np.ndarray, n: int | None, seed: int,
                      among: np.ndarray | None = None) -> np.ndarray:
    """Sorted indices of a seeded class-stratified subset of about ``n`` samples (all if ``n`` is None).
    ``among`` restricts the choice to those indices."""
    labels = np.asarray(labels)
    pool = np.arange(len(labels)) if among is None else np.asarray(among)
    if n is None or n >= len(pool):
        return np.sort(pool)
    rng = np.random.default_rng(seed)
    classes = np.unique(labels[pool])
    per_class = max(1, n // len(classes))
    picked = [rng.permutation(pool[labels[pool] == c])[:per_class] for c in classes]
    return np.sort(np.concatenate(picked))


def class_split(train_labels, test_labels, forget_classes, train_pool: np.ndarray | None = None,
                test_pool: np.ndarray | None = None, unseen: np.ndarray | None = None) -> Split:
    """Class-wise forgetting: every train sample of the forget classes is forgotten.

    ``train_pool``/``test_pool`` restrict the split to a subset (the ``cpu``/``smoke`` profiles use a
    stratified subset of Fashion-MNIST). Indices stay in dataset order, which matters for methods that
    take "the first k samples per class" (Deep Unlearning, UNSIR).
    """
    train_labels, test_labels = np.asarray(train_labels), np.asarray(test_labels)
    forget = tuple(sorted(int(c) for c in forget_classes))
    num_classes = int(max(train_labels.max(), test_labels.max())) + 1
    bad = [c for c in forget if not 0 <= c < num_classes]
    if bad or not forget:
        raise ValueError(f"forget classes {list(forget_classes)} invalid: each must be in 0..{num_classes - 1}")
    tr = np.arange(len(train_labels)) if train_pool is None else np.asarray(train_pool)
    te = np.arange(len(test_labels)) if test_pool is None else np.asarray(test_pool)
    tr_f = np.isin(train_labels[tr], forget)
    te_f = np.isin(test_labels[te], forget)
    return Split("class", forget, tr[tr_f], tr[~tr_f], te[te_f], te[~te_f],
                 unseen=_empty() if unseen is None else np.asarray(unseen))


def random_split(train_pool: np.ndarray, test_pool: np.ndarray, fraction: float, seed: int,
                 unseen: np.ndarray | None = None) -> Split:
    """Random-sample forgetting: a seeded ``fraction`` of the training pool is forgotten."""
    if not 0 < fraction < 1:
        raise ValueError(f"random forgetting fraction {fraction} must be in (0, 1)")
    pool = np.asarray(train_pool)
    rng = np.random.default_rng(seed)
    n = max(1, int(round(fraction * len(pool))))
    forget = np.sort(rng.choice(pool, n, replace=False))
    retain = np.setdiff1d(pool, forget)
    return Split("random", (), forget, retain, _empty(), np.asarray(test_pool),
                 name=f"random{fraction * 100:g}pct", unseen=_empty() if unseen is None else np.asarray(unseen))


def backdoor_split(train_labels, train_pool: np.ndarray, test_pool: np.ndarray, *, target: int, fraction: float,
                   trigger: Trigger, seed: int, unseen: np.ndarray | None = None) -> Split:
    """Backdoor: a seeded ``fraction`` of the pool's non-target samples is poisoned (trigger + target label).

    The poisoned samples are the forget set; the retain set is the clean rest of the pool. The test split
    keeps every test image (clean accuracy); the attack success rate is measured on triggered copies of
    the non-target test images.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"backdoor poison fraction {fraction} must be in (0, 1)")
    labels = np.asarray(train_labels)
    pool = np.asarray(train_pool)
    candidates = pool[labels[pool] != target]
    rng = np.random.default_rng(seed)
    n = max(1, int(round(fraction * len(pool))))
    if n > len(candidates):
        raise ValueError(f"backdoor fraction {fraction} needs {n} non-target samples, the pool has {len(candidates)}")
    poisoned = np.sort(rng.choice(candidates, n, replace=False))
    retain = np.setdiff1d(pool, poisoned)
    return Split("backdoor", (), poisoned, retain, _empty(), np.asarray(test_pool),
                 name=f"backdoor{fraction * 100:g}pct", unseen=_empty() if unseen is None else np.asarray(unseen),
                 target=int(target), trigger=trigger)


def poison(images: torch.Tensor, labels: torch.Tensor, split: Split) -> tuple[torch.Tensor, torch.Tensor]:
    """The training set as the original model of a backdoor scenario sees it (copies; others unchanged)."""
    if split.kind != "backdoor":
        return images, labels
    x, y = images.clone(), labels.clone()
    idx = torch.as_tensor(split.forget_train, device=x.device)
    x[idx] = split.trigger.apply(x[idx])
    y[torch.as_tensor(split.forget_train)] = split.target
    return x, y


def _empty() -> np.ndarray:
    return np.zeros(0, dtype=np.int64)


def save_splits(path: Path, splits: dict[str, Split], pools: dict[str, np.ndarray]) -> None:
    arrays: dict[str, np.ndarray] = {}
    for tag, s in splits.items():
        arrays.update(s.arrays(prefix=f"{tag}/"))
    for name, arr in pools.items():
        arrays[f"pool/{name}"] = np.asarray(arr)
    with open(path, "wb") as fh:
        np.savez_compressed(fh, **arrays)
