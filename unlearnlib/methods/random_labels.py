r"""Random labels (RL): fine-tune on the forget samples relabelled at random, together with the retain set.

The baseline goes back to Graves, Nagisetty, Ganesh ("Amnesiac Machine Learning", AAAI 2021: "unlearning" by
relabelling). Its two common implementations differ in every choice, so each is a set of config values:

* ``amnesiac`` (the default; [SSD] ``forget_*_strategies.py`` ``amnesiac``, "implementation from
  vikram2000b/bad-teaching-unlearning", and [BT] ``CIFARSuper20_Rocket_Unlearn.ipynb`` cells 21-23): every
  forget sample gets one random *wrong* label, drawn once (``label_policy="other"``, ``relabel="once"``: uniform
  over the classes other than the sample's own label; for one forget class that is "all classes but the forget
  class", as upstream); the relabelled forget set and the whole retain set are shuffled together
  (``schedule="mixed"``); Adam, lr 1e-4, 3 epochs, batch 128, no augmentation.
* ``optml`` (SalUn's RL with an all-ones mask; [SAL] ``Classification/unlearn/RL.py:109-176``, the CIFAR-10/SVHN
  branch): each epoch one pass over the forget set with fresh uniform labels over *all* classes for every batch
  (``label_policy="any"``, ``relabel="per_batch"``), then one pass over the retain set, as separate SGD steps
  (``schedule="sequential"``); SGD momentum 0.9, wd 5e-4, batch 256, 10 epochs, constant lr, training
  augmentation. :func:`optml_config` returns it; its lr is not in the repository (UNCONFIRMED).
  The CIFAR-100 branch (lines 51-107): labels drawn once per epoch, forget and retain shuffled together
  (``schedule="mixed"``, ``relabel="per_epoch"``).

Graves's own notebook ([AM] ``Unlearning Tester - CIFAR100.ipynb``: the whole training set, the target class
relabelled, Adam resumed from training, 10 epochs) needs the training run's optimiser state; not reproduced.

Every label is drawn with torch's global generator (the harness seeds it). The loop is :func:`unlearnlib.train.fit`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..trace import trace
from ..train import AfterStep, Optimizer, Scheduler, TrainConfig, fit
from . import PaperSetting, batches, capped, register_method
from .common import mixed_batches, random_any_labels, random_other_labels

LabelPolicy = Literal["other", "any"]
Relabel = Literal["once", "per_epoch", "per_batch"]
Schedule = Literal["mixed", "sequential"]


@dataclass
class RLConfig(TrainConfig):
    """The random-label fine-tuning shared by random labels and SalUn (defaults: the ``amnesiac`` variant)."""

    # "other": uniform over the classes other than the sample's own label ([SSD]/[BT] amnesiac) | "any": uniform
    label_policy: LabelPolicy = "other"  # over all classes, the true one included ([SAL] RL.py torch.randint)
    relabel: Relabel = "once"  # [SSD]/[BT]: labels drawn once | [SAL] per_epoch (CIFAR-100), per_batch (CIFAR-10)
    schedule: Schedule = "mixed"  # mixed: forget + retain shuffled together ([SSD], [SAL] CIFAR-100) |
    #                               sequential: each epoch all forget batches, then all retain batches ([SAL] CIFAR-10)
    forget_weight: float = 1.0  # weight of the relabelled-forget CE ([SAL] issue #21: alpha = 1 in Eq. 6)
    optimizer: Optimizer = "adam"  # [SSD] amnesiac -> fit_one_unlearning_cycle: torch.optim.Adam
    lr: float = 1e-4  # [SSD] amnesiac lr=0.0001 ([BT] cell 23 the same)
    weight_decay: float = 0.0  # [SSD] Adam(model.parameters(), lr=lr): no weight decay
    epochs: int = 3  # [SSD] fit_one_unlearning_cycle(3, ...)
    batch_size: int = 128  # [SSD] DataLoader(unlearning_trainset, 128, shuffle=True) ([BT]: 256)
    nesterov: bool = False
    scheduler: Scheduler = "none"  # constant lr
    augment: bool = False  # [SSD] datasets.py transform_unlearning: no augmentation

    def check(self) -> None:
        """Ranges and cross-field rules, checked when the YAML loads."""
        super().check()
        _validate(self)


@dataclass
class Config(RLConfig):
    """Random labels, the ``amnesiac`` variant ([SSD] / [BT]); ``optml_config()`` gives SalUn's RL."""


OPTML = dict(label_policy="any", relabel="per_batch", schedule="sequential", optimizer="sgd", lr=0.01, momentum=0.9,
             weight_decay=5e-4, nesterov=False, epochs=10, batch_size=256, scheduler="none", augment=True)
# [SAL] unlearn/impl.py:68-97 + arg_parser.py:69-78 (SGD 0.9, wd 5e-4, batch 256, 10 epochs, milestones 91/136
# never reached); lr 0.01 = the --unlearn_lr default (the value for plain RL is UNCONFIRMED); loaders with the
# training augmentation


def optml_config(**overrides) -> Config:
    """SalUn's RL baseline (all-ones mask), CIFAR-10 schedule."""
    return Config(**{**OPTML, **overrides})


def _validate(cfg: RLConfig) -> None:
    if cfg.epochs < 0 or cfg.batch_size < 1 or cfg.forget_weight < 0:
        raise ValueError("random labels: epochs must be >= 0, batch_size >= 1, forget_weight >= 0")


def draw_labels(y: torch.Tensor, num_classes: int, policy: str) -> torch.Tensor:
    if policy == "other":
        return random_other_labels(y, num_classes)
    if policy == "any":
        return random_any_labels(y, num_classes)
    raise ValueError(f"label_policy {policy!r}; valid: other, any")


def relabel_batches(retain, forget, cfg: RLConfig):
    """A callable for ``fit``: each epoch, ``(x, y, is_forget)`` batches with the forget labels replaced by random
    ones, in the order ``cfg.schedule`` gives. Shuffling and labels use torch's global generator."""
    num_classes = forget.spec.num_classes
    f_parts = [(forget, np.arange(forget.num_samples))]
    r_parts = [(retain, np.arange(retain.num_samples))]
    # (batches, which part of them is the forget set: None for a retain-only pass)
    if cfg.schedule == "mixed":
        passes = [(mixed_batches(f_parts + r_parts, cfg.batch_size, cfg.augment), 0)]
    elif cfg.schedule == "sequential":
        passes = [(mixed_batches(f_parts, cfg.batch_size, cfg.augment), 0),
                  (mixed_batches(r_parts, cfg.batch_size, cfg.augment), None)]
    else:
        raise ValueError(f"schedule {cfg.schedule!r}; valid: mixed, sequential")
    if cfg.relabel not in ("once", "per_epoch", "per_batch"):
        raise ValueError(f"relabel {cfg.relabel!r}; valid: once, per_epoch, per_batch")
    state: dict = {"labels": None}

    def epoch():
        if cfg.relabel == "per_epoch" or (cfg.relabel == "once" and state["labels"] is None):
            state["labels"] = draw_labels(forget.labels, num_classes, cfg.label_policy)
        for one_pass, forget_part in passes:
            for x, y, part, index in one_pass():
                is_f = part == forget_part if forget_part is not None else torch.zeros_like(part, dtype=torch.bool)
                if bool(is_f.any()):
                    y = y.clone()
                    if cfg.relabel == "per_batch":
                        y[is_f] = draw_labels(y[is_f], num_classes, cfg.label_policy)
                    else:
                        y[is_f] = state["labels"][index[is_f.cpu()]].to(y.device)
                yield x, y, is_f

    return epoch


def relabel_loss(cfg: RLConfig):
    """CE on the (relabelled) batch; forget samples weighted by ``forget_weight`` (1: plain CE, as upstream)."""
    step = {"n": 0}

    def loss(model: nn.Module, batch) -> torch.Tensor:
        x, y, is_f = batch
        per = F.cross_entropy(model(x), y, reduction="none")
        if cfg.forget_weight != 1.0:
            per = torch.where(is_f, cfg.forget_weight * per, per)
        out = per.mean()
        trace("loss", out, step["n"])
        step["n"] += 1
        return out

    return loss


def relabel_fit(model: nn.Module, retain, forget, cfg: RLConfig, *, after_step: AfterStep | None = None,
                desc: str = "random labels") -> nn.Module:
    fit(model, relabel_batches(retain, forget, cfg), cfg, loss_fn=relabel_loss(cfg), after_step=after_step,
        desc=desc)
    model.eval()
    return model


# the yardstick setting for its defaults ([SSD]'s amnesiac runs on CIFAR-100/20 classes, [SAL]'s RL on CIFAR-10)
PAPER_SETTING = PaperSetting("CIFAR-10 class forgetting", 45_000, 5_000, "[SSD] amnesiac defaults at CIFAR-10 size")


def relabel_steps(cfg: RLConfig, n_retain: int, n_forget: int) -> int:
    """Optimiser steps of :func:`relabel_fit`: every epoch, forget and retain shuffled together ("mixed") or the
    forget batches then the retain batches ("sequential")."""
    per_epoch = (batches(n_forget + n_retain, cfg.batch_size) if cfg.schedule == "mixed"
                 else batches(n_forget, cfg.batch_size) + batches(n_retain, cfg.batch_size))
    return capped(cfg, cfg.epochs * per_epoch)


@register_method("random_labels", Config, setting=PAPER_SETTING, steps=relabel_steps)
def unlearn(model: nn.Module, *, retain, forget, cfg: Config, device) -> nn.Module:
    """Random labels: fine-tune on the forget samples with random (by default wrong) labels, plus the retain set."""
    return relabel_fit(model, retain, forget, cfg)


__all__ = ["Config", "RLConfig", "OPTML", "optml_config", "draw_labels", "relabel_batches", "relabel_loss",
           "relabel_fit", "unlearn"]
