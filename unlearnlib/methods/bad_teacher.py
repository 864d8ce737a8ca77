r"""Bad teacher (Chundawat, Tarun, Mandal, Kankanhalli; "Can Bad Teaching Induce Forgetting? Unlearning in Deep
Networks using an Incompetent Teacher", AAAI 2023).

The student (the model handed in, a copy of the original) is distilled from two frozen teachers in eval mode: the
*competent* teacher (a copy of the original) on retain samples and the *incompetent* teacher :math:`T_d` (the same
architecture, every module randomly re-initialised from ``teacher_seed``) on forget samples. The data are the
whole forget set (flag 1) and a random ``retain_fraction`` of the retain set (flag 0), shuffled together. With
:math:`q = \mathrm{softmax}(T_d(x)/\tau)` for flag 1 and :math:`\mathrm{softmax}(\theta_o(x)/\tau)` for flag 0,
the loss is :math:`\mathrm{KL}(q\,\|\,\mathrm{softmax}(S(x)/\tau))` with PyTorch's default ``mean`` reduction,
i.e. the sum over the batch and the classes divided by :math:`B\cdot C`, and no :math:`\tau^2` factor.

:math:`T_d` is built by :func:`unlearnlib.models.common.incompetent_teacher` from ``teacher_seed`` alone (CPU
draw in a forked RNG: the same on any device, whatever the run seed); the ZRF metric (``unlearnlib/metrics/zrf.py``)
builds its teacher with the same function and the same seed. The retain subset is drawn with torch's global
generator (seeded by the harness; upstream used Python's unseeded ``random.sample``).

Sources ([BT] = vikram2000b/bad-teaching-unlearning@f1aa988): ``unlearn.py:9-37`` (``UnlearnerLoss``,
``unlearning_step``), ``unlearn.py`` ``blindspot_unlearner`` (Adam, shuffled loader), ``dataset.py``
``UnLearningData`` (flags), ``CIFARSuper20_Rocket_Unlearn.ipynb`` cells 6, 15 (lr 1e-4, 1 epoch, batch 256,
tau 1, 30% of the retain set; transforms without augmentation); [SSD] ``forget_*_strategies.py`` ``blindspot``
(the same values; batch 128 for ViT). The paper's own wording of 30% / 1 epoch is UNCONFIRMED.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..trace import trace
from ..train import Optimizer, Scheduler, TrainConfig, fit
from . import PaperSetting, batches, capped, register_method
from .common import frozen_copy, incompetent_teacher, mixed_batches


@dataclass
class Config(TrainConfig):
    """Bad teacher: [BT] ``CIFARSuper20_Rocket_Unlearn.ipynb`` cells 6, 15 and ``unlearn.py``."""

    temperature: float = 1.0  # [BT] cell 15 KL_temperature = 1
    retain_fraction: float = 0.3  # [BT] cell 6 random.sample(retain_train, int(0.3 * len(...)))
    teacher_seed: int = 0  # ours: seed of the incompetent teacher's initialisation (upstream: unseeded). The ZRF
    #                        metric builds the same teacher from its own seed field (zrf_teacher_seed of the metric
    #                        config; 0 = this default when that field is absent): keep the two equal
    # [BT] unlearn.py:21 F.kl_div(student, target) default "mean": sum / (B * C) (PyTorch warns) |
    kl_reduction: Literal["mean", "batchmean"] = "mean"  # "batchmean": sum / B, the KL per sample
    optimizer: Optimizer = "adam"  # [BT] blindspot_unlearner: torch.optim.Adam(model.parameters(), lr=lr)
    lr: float = 1e-4  # [BT] cell 15 lr = 0.0001
    weight_decay: float = 0.0  # [BT] Adam without weight decay
    epochs: int = 1  # [BT] cell 15 epochs = 1
    batch_size: int = 256  # [BT] cell 15 batch_size = 256 ([SSD] blindspot: 256, 128 for ViT)
    nesterov: bool = False
    scheduler: Scheduler = "none"
    augment: bool = False  # [BT] dataset.py transforms: Resize + ToTensor + Normalize, no augmentation

    def check(self) -> None:
        """Ranges and cross-field rules, checked when the YAML loads."""
        super().check()
        _validate(self)


def _validate(cfg: Config) -> None:
    if not 0.0 <= cfg.retain_fraction <= 1.0 or cfg.temperature <= 0:
        raise ValueError("bad_teacher: retain_fraction must be in [0, 1] and temperature > 0")


def unlearner_loss(student_logits: torch.Tensor, is_forget: torch.Tensor, competent_logits: torch.Tensor,
                   incompetent_logits: torch.Tensor, temperature: float, reduction: str = "mean") -> torch.Tensor:
    """[BT] ``UnlearnerLoss``: KL(q || softmax(S / tau)), q the incompetent teacher's softmax for forget samples and
    the competent teacher's for retain samples; ``reduction="mean"`` divides the sum by B * C (upstream)."""
    f = is_forget.to(student_logits.dtype).unsqueeze(1)
    q = f * F.softmax(incompetent_logits / temperature, dim=1) + (1 - f) * F.softmax(competent_logits / temperature,
                                                                                     dim=1)
    kl = F.kl_div(F.log_softmax(student_logits / temperature, dim=1), q, reduction="sum")
    if reduction == "mean":  # PyTorch's default "mean", written out (its deprecation warning would fire every step)
        return kl / q.numel()
    if reduction == "batchmean":
        return kl / q.shape[0]
    raise ValueError(f"kl_reduction {reduction!r}; valid: mean, batchmean")


# the yardstick setting for its defaults (the suite's common one; [BT]'s notebooks forget CIFAR-Super20 and
# CIFAR-100 classes, whose retain sets are of the same order)
PAPER_SETTING = PaperSetting("CIFAR-10 class forgetting", 45_000, 5_000, "[BT] defaults (cell 15) at CIFAR-10 size")


def steps(cfg: Config, n_retain: int, n_forget: int) -> int:
    """Optimiser steps of a call: every epoch, the forget set and ``retain_fraction`` of the retain set shuffled
    together in batches."""
    return capped(cfg, cfg.epochs * batches(n_forget + int(cfg.retain_fraction * n_retain), cfg.batch_size))


@register_method("bad_teacher", Config, setting=PAPER_SETTING, steps=steps)
def unlearn(model: nn.Module, *, retain, forget, cfg: Config, device) -> nn.Module:
    """Bad teacher: distil from the original on retain samples and from a random network on forget samples."""
    competent = frozen_copy(model)
    incompetent = incompetent_teacher(model, cfg.teacher_seed)
    n_r = retain.num_samples
    subset = np.sort(torch.randperm(n_r)[:int(cfg.retain_fraction * n_r)].numpy())
    data = mixed_batches([(forget, np.arange(forget.num_samples)), (retain, subset)], cfg.batch_size, cfg.augment)
    step = {"n": 0}

    def batches():
        for x, _y, part, _ in data():
            yield x, part == 0

    def loss(student: nn.Module, batch) -> torch.Tensor:
        x, is_forget = batch
        with torch.no_grad():
            good, bad = competent(x), incompetent(x)
        out = unlearner_loss(student(x), is_forget, good, bad, cfg.temperature, cfg.kl_reduction)
        trace("loss", out, step["n"])
        step["n"] += 1
        return out

    fit(model, batches, cfg, loss_fn=loss, desc="bad teacher")
    model.eval()
    return model


__all__ = ["Config", "unlearner_loss", "unlearn"]
