"""Baselines that fit the shared training loop: retrain, finetune, NegGrad, NegGrad+.

Hyperparameters for the baselines in Kodge et al.'s tables are not in the upstream repository
(no baseline scripts were shipped): the defaults below are UNCONFIRMED and recorded as such in each
paper YAML.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..models.common import reinitialise
from ..train import Scheduler, TrainConfig, fit
from . import batches, capped, register_method


@dataclass
class RetrainConfig(TrainConfig):
    """Retrain from scratch on the retain set with the paper's training recipe (filled in by the harness)."""


def retain_epochs_steps(cfg: TrainConfig, n_retain: int, n_forget: int) -> int:
    """Optimiser steps of retrain and fine-tune: every epoch, one pass over the retain set in batches."""
    return capped(cfg, cfg.epochs * batches(n_retain, cfg.batch_size))


@register_method("retrain", RetrainConfig, reads_forget=False, trains_from_scratch=True, steps=retain_epochs_steps)
def retrain(model: nn.Module, *, retain, forget, cfg: RetrainConfig, device) -> nn.Module:
    """Retrain from scratch on the retain set (the gold standard), every module re-initialised."""
    reinitialise(model)
    fit(model, retain.with_options(batch_size=cfg.batch_size, shuffle=True, augment=cfg.augment), cfg,
        desc="retrain")
    return model


@dataclass
class FinetuneConfig(TrainConfig):
    """Fine-tune on the retain set (Golatkar et al. 2020's "Fine-tune"); values UNCONFIRMED for Kodge et al."""

    epochs: int = 10  # UNCONFIRMED: upstream --epochs-or-steps default 350 is not what the tables used
    lr: float = 0.01  # UNCONFIRMED
    scheduler: Scheduler = "none"


@register_method("finetune", FinetuneConfig, reads_forget=False, steps=retain_epochs_steps)
def finetune(model: nn.Module, *, retain, forget, cfg: FinetuneConfig, device) -> nn.Module:
    """Fine-tune the original on the retain set (catastrophic forgetting of the forget set)."""
    fit(model, retain.with_options(batch_size=cfg.batch_size, shuffle=True, augment=cfg.augment), cfg,
        desc="finetune")
    return model


def _forget_accuracy(model: nn.Module, forget) -> float:
    correct = total = 0
    for x, y in forget.with_options(shuffle=False, augment=False, batch_size=512):
        correct += int((model(x).argmax(1) == y).sum())
        total += len(y)
    return correct / max(total, 1)


@dataclass
class NegGradConfig(TrainConfig):
    """Gradient ascent on forget batches (upstream class_forgetting ``unlearn_naive``, `grad_ascent`):
    ascent continues while any forget sample is still classified correctly, checked every
    ``check_every`` (upstream --log-interval = 100) steps, for at most ``max_steps`` steps."""

    epochs: int = 1000  # bounded by max_steps
    max_steps: int | None = 350  # upstream --epochs-or-steps default; UNCONFIRMED for the tables
    lr: float = 0.01  # UNCONFIRMED
    scheduler: Scheduler = "none"
    weight_decay: float = 0.0
    grad_clip_norm: float | None = 1.0  # upstream: optional (--grad-norm-clip); ours on for stability, UNCONFIRMED
    check_every: int = 100  # upstream --log-interval
    stop_at_forget_acc: float = 0.0  # ascent stops once forget-set accuracy <= this


@dataclass
class NegGradPlusConfig(NegGradConfig):
    """NegGrad+ (Kodge et al.'s "Stable Ascent", upstream `grad_ascent_descent`): every step, descent on a
    retain batch plus, while forget samples are still classified correctly, ascent on a forget batch."""

    forget_weight: float = 1.0  # loss = CE(retain) - forget_weight * CE(forget); upstream 1.0


def _naive(model: nn.Module, retain, forget, cfg: NegGradConfig, descent: bool, desc: str) -> nn.Module:
    """Shared by NegGrad and NegGrad+ (upstream ``unlearn_naive``)."""
    f = forget.with_options(batch_size=cfg.batch_size, shuffle=True, augment=cfg.augment)
    state = {"ascent": True}

    def check(m: nn.Module, step: int) -> bool:
        state["ascent"] = _forget_accuracy(m, forget) > cfg.stop_at_forget_acc
        return not state["ascent"] and not descent  # NegGrad ends when nothing is left to ascend

    if descent:
        r = retain.with_options(batch_size=cfg.batch_size, shuffle=True, augment=cfg.augment)
        forever = itertools.chain.from_iterable(itertools.repeat(f))

        def batches():
            return zip(r, forever, strict=False)

        def loss(m: nn.Module, pair) -> torch.Tensor:
            (xr, yr), (xf, yf) = pair
            out = F.cross_entropy(m(xr), yr)
            if state["ascent"]:
                out = out - cfg.forget_weight * F.cross_entropy(m(xf), yf)
            return out

        fit(model, batches, cfg, loss_fn=loss, stop=check, check_every=cfg.check_every, desc=desc)
    else:
        fit(model, f, cfg, loss_fn=lambda m, b: -F.cross_entropy(m(b[0]), b[1]), stop=check,
            check_every=cfg.check_every, desc=desc)
    return model


def neggrad_steps(cfg: NegGradConfig, n_retain: int, n_forget: int) -> int:
    """The most optimiser steps of NegGrad (its stopping rule may end it earlier): the forget set in batches every
    epoch, up to ``max_steps``."""
    return capped(cfg, cfg.epochs * batches(n_forget, cfg.batch_size))


def neggrad_plus_steps(cfg: NegGradPlusConfig, n_retain: int, n_forget: int) -> int:
    """Optimiser steps of NegGrad+: one per retain batch every epoch (the forget batches cycle beside them), up to
    ``max_steps``."""
    return capped(cfg, cfg.epochs * batches(n_retain, cfg.batch_size))


@register_method("neggrad", NegGradConfig, reads_retain=False, steps=neggrad_steps)
def neggrad(model: nn.Module, *, retain, forget, cfg: NegGradConfig, device) -> nn.Module:
    """Gradient ascent on the forget set, stopped once no forget sample is classified correctly."""
    return _naive(model, retain, forget, cfg, descent=False, desc="neggrad")


@register_method("neggrad_plus", NegGradPlusConfig, steps=neggrad_plus_steps)
def neggrad_plus(model: nn.Module, *, retain, forget, cfg: NegGradPlusConfig, device) -> nn.Module:
    """Each step: descent on a retain batch, plus ascent on a forget batch while any forget sample is right."""
    return _naive(model, retain, forget, cfg, descent=True, desc="neggrad+")
