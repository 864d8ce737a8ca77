r"""SalUn (Fan, Liu, Zhang, Wei, Wong, Liu; "SalUn: Empowering Machine Unlearning via Gradient-based Weight
Saliency in Both Image Classification and Generation", ICLR 2024).

1. **Mask.** With the original model in eval mode, :math:`g = |\sum_{b} \nabla_\theta(-\mathrm{CE}_b)|` over the
   forget batches; all elements of all parameters are ranked together (one global ranking) and the top fraction
   ``sparsity`` gets :math:`m = 1`, the rest :math:`m = 0` ([SAL] ``generate_mask.py:14-82``).
2. **Random-label unlearning with hard-masked updates**: the random-label fine-tuning of
   :mod:`unlearnlib.methods.random_labels` (SalUn's CIFAR-10 schedule: each epoch the forget set with fresh
   uniform labels for every batch, then the retain set, as separate SGD steps), where every step multiplies the
   gradients by :math:`m` and, after the optimiser step, puts the :math:`m = 0` coordinates back to the original
   value and zeroes them in the momentum buffer (PR #33), so that :math:`\theta_u = m\odot\theta + (1-m)\odot\theta_o`
   exactly, under weight decay and momentum (evaluation pitfall 2).

``variant="upstream_leak"`` reproduces the code behind every published SalUn number (before PR #33, Feb 2026;
issue #32): gradients masked, nothing restored, so weight decay and momentum move the masked weights.

BatchNorm running statistics are buffers, not parameters: they are not masked (as upstream). The ranking covers every
parameter of any architecture (on the ViT: LayerNorm, the positions and the class token, as BatchNorm's affine
parameters on a CNN).

Sources ([SAL] = OPTML-Group/Unlearn-Saliency@a6e89fd, ``Classification/``): ``generate_mask.py`` (mask),
``unlearn/RL.py:109-176`` (CIFAR-10 schedule, ``_apply_mask_to_grads``, ``_restore_masked_params``),
``unlearn/impl.py:68-97`` and ``arg_parser.py:69-78`` (SGD 0.9, wd 5e-4, batch 256, 10 epochs, milestones
91/136 never reached), ``README.md`` (CIFAR-10 random 10%: ``--unlearn_lr 0.013``, ``mask/with_0.5.pt``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..train import Optimizer, Scheduler
from . import PaperSetting, register_method
from .random_labels import LabelPolicy, Relabel, RLConfig, Schedule, relabel_fit, relabel_steps


@dataclass
class Config(RLConfig):
    """SalUn: [SAL] README CIFAR-10 random-forgetting command and the parser defaults it relies on."""

    sparsity: float = 0.5  # [SAL] README: --mask_path mask/with_0.5.pt (top 50% of elements updated). The paper's
    #                        own default is UNCONFIRMED; generate_mask.py writes masks for 0.1 .. 1.0
    mask_batch_size: int = 256  # [SAL] generate_mask.py: one pass over the forget loader (batch_size 256)
    # "paper": hard mask, masked weights restored after every step and their momentum zeroed (PR #33) |
    variant: Literal["paper", "upstream_leak"] = "paper"  # "upstream_leak": gradients masked only (issue #32)
    label_policy: LabelPolicy = "any"  # [SAL] RL.py:125 torch.randint(0, num_classes): the true class included
    #                                    (whether the paper requires y' != y is UNCONFIRMED)
    relabel: Relabel = "per_batch"  # [SAL] RL.py:125: fresh labels for every forget batch (CIFAR-10 branch)
    schedule: Schedule = "sequential"  # [SAL] RL.py:123-140, 142-176 (@a6e89fd): all forget batches, then all retain
    optimizer: Optimizer = "sgd"  # [SAL] impl.py:68 torch.optim.SGD
    lr: float = 0.013  # [SAL] README: CIFAR-10 random 10% --unlearn_lr 0.013 (class-wise lr UNCONFIRMED)
    momentum: float = 0.9  # [SAL] arg_parser.py --momentum 0.9
    weight_decay: float = 5e-4  # [SAL] arg_parser.py --weight_decay 5e-4
    nesterov: bool = False  # torch.optim.SGD default
    epochs: int = 10  # [SAL] README --unlearn_epochs 10
    batch_size: int = 256  # [SAL] arg_parser.py --batch_size 256
    scheduler: Scheduler = "none"  # [SAL] MultiStepLR(91, 136) is never reached in 10 epochs: constant lr
    augment: bool = True  # [SAL] unlearning loaders use the training transform (crop, flip)

    def check(self) -> None:
        """Ranges and cross-field rules, checked when the YAML loads."""
        super().check()
        _validate(self)


def _validate(cfg: Config) -> None:
    if not 0.0 <= cfg.sparsity <= 1.0 or cfg.mask_batch_size < 1:
        raise ValueError(f"salun: sparsity {cfg.sparsity} must be in [0, 1] and mask_batch_size >= 1")


def saliency_mask(model: nn.Module, forget, sparsity: float, batch_size: int, augment: bool) -> dict[str, torch.Tensor]:
    """[SAL] ``save_gradient_ratio``: |sum over forget batches of grad(-CE)| with the model in eval mode, one
    global ranking over all elements of all parameters, the top ``int(N * sparsity)`` set to True. Ties are
    broken by position (stable sort); upstream's ``argsort`` is not stable."""
    was_training = model.training
    model.eval()
    params = {k: p for k, p in model.named_parameters() if p.requires_grad}
    acc = {k: torch.zeros_like(p) for k, p in params.items()}
    with torch.enable_grad():
        for start in range(0, forget.num_samples, batch_size):
            x, y = forget.batch(np.arange(start, min(start + batch_size, forget.num_samples)), augment=augment)
            loss = -F.cross_entropy(model(x), y)
            grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
            for (k, _), g in zip(params.items(), grads, strict=True):
                if g is not None:
                    acc[k] += g.detach()
    model.train(was_training)
    flat = torch.cat([v.abs().flatten() for v in acc.values()])
    k = int(len(flat) * sparsity)
    keep = torch.zeros(len(flat), dtype=torch.bool, device=flat.device)
    keep[torch.argsort(flat, descending=True, stable=True)[:k]] = True
    out, start = {}, 0
    for name, v in acc.items():
        out[name] = keep[start:start + v.numel()].view_as(v)
        start += v.numel()
    return out


class HardMask:
    """Gradient masking (hooks on the parameters) and, for the paper variant, an ``after_step`` for ``fit`` that
    restores the masked coordinates to the original weights and zeroes them in the optimiser's momentum buffer."""

    def __init__(self, model: nn.Module, mask: dict[str, torch.Tensor], restore: bool) -> None:
        self.params = dict(model.named_parameters())
        self.mask = mask
        self.restore = restore
        self.theta0 = {k: self.params[k].detach().clone() for k in mask}
        self.hooks = [self.params[k].register_hook(lambda g, m=m: g * m.to(g.dtype)) for k, m in mask.items()]

    def after_step(self, model: nn.Module, optimizer: torch.optim.Optimizer, step: int) -> None:
        if not self.restore:
            return
        for k, m in self.mask.items():
            p = self.params[k]
            p.copy_(torch.where(m, p, self.theta0[k]))
            state = optimizer.state.get(p)
            if state and state.get("momentum_buffer") is not None:
                state["momentum_buffer"].mul_(m.to(p.dtype))

    def remove(self) -> None:
        for h in self.hooks:
            h.remove()
        self.hooks = []


# the setting of its defaults: [SAL] README, CIFAR-10 random 10 % forgetting (45,000 retain / 5,000 forget)
PAPER_SETTING = PaperSetting("CIFAR-10 random 10 % forgetting", 45_000, 5_000, "[SAL] README")


@register_method("salun", Config, setting=PAPER_SETTING, steps=relabel_steps)
def unlearn(model: nn.Module, *, retain, forget, cfg: Config, device) -> nn.Module:
    """SalUn: random-label fine-tuning of only the forget-salient weights (gradient-magnitude mask, hard-masked)."""
    mask = saliency_mask(model, forget, cfg.sparsity, cfg.mask_batch_size, cfg.augment)
    hard = HardMask(model, mask, restore=cfg.variant == "paper")
    try:
        relabel_fit(model, retain, forget, cfg, after_step=hard.after_step, desc="salun")
    finally:
        hard.remove()
    return model


__all__ = ["Config", "HardMask", "saliency_mask", "unlearn"]
