r"""SSD: Selective Synaptic Dampening (Foster, Schoepf, Brintrup; "Fast Machine Unlearning Without Retraining
Through Selective Synaptic Dampening", AAAI 2024). One shot, no training.

With the model in eval mode, the importance of a dataset :math:`S` is the mean over its mini-batches of the
squared gradient of the batch-mean cross-entropy, element by element:

.. math::  I_S = \frac{1}{|\mathcal B|} \sum_{b \in \mathcal B} \big(\nabla_\theta\, \mathrm{CE}_b(\theta)\big)^2 .

:math:`I_f` is taken on the forget set and :math:`I_D` on the full training set :math:`D = D_r \cup D_f`
(upstream: ``ConcatDataset((retain, forget))``, not shuffled, so the batches run through the retain samples and
then the forget samples). Every element of every parameter (BatchNorm and the classifier included) with
:math:`I_f > \alpha I_D` is multiplied by :math:`\min(\lambda I_D / I_f, 1)`; the others are untouched, and no
parameter is ever scaled up.

Nothing depends on the architecture: on the ViT every element of the LayerNorm parameters, the positions, the
class token and the packed Q/K/V weight is selected and dampened by the same rule. SSD's own code halves alpha for
its ViT (``model_size_scaler`` 0.5: 5 for full-class forgetting, ``baselines.md`` 2b); Kodge et al.'s ``main.py``
``ssd_unlearn`` uses one alpha for every architecture, and so does this suite (``selection_weighting``).

The estimator squares *batch-mean* gradients, so its scale depends on the batch size, and alpha was tuned with it
(``baselines.md`` 2c): the batch sizes are the upstream ones.

Sources ([SSD] = if-loops/selective-synaptic-dampening@cdfdc0e, ``src/``): ``ssd.py:151-217``
(``calc_importance``, ``modify_weight``; exponent 1, lower bound 1), ``forget_full_class_strategies.py:646-685``
(``ssd_tuning``: eval mode, I_f then I_D), ``forget_full_class_main.py:159-177`` (alpha = 10, lambda = 1 for
ResNet18; forget loader and ``full_train_dl`` without shuffling; ``-b`` 64 in the experiment scripts),
``forget_random_main.py`` (``-b`` 128, retain in ``random_split`` order), ``datasets.py`` (unlearning
transform: no augmentation). The paper's own alpha/lambda per setting are UNCONFIRMED; the code's are used.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..diagnosis import Diagnosis, diagnose
from ..trace import trace
from . import PaperSetting, forget_classes_from_retain, no_steps, register_method
from .common import class_major


@dataclass
class Config:
    """SSD: [SSD] values for ResNet18 (``forget_full_class_main.py``, ``forget_random_main.py``)."""

    selection_weighting: float = 10.0  # alpha: [SSD] forget_full_class_main.py:177 "selection_weighting": 10
    #                                    (x 0.5 for ViT); the same for random forgetting (forget_random_main.py)
    dampening_constant: float = 1.0  # lambda: [SSD] forget_full_class_main.py:176 "dampening_constant": 1
    batch_size: int = 64  # class forgetting: [SSD] forget_full_class_main.py:58 parser default -b 64 (the
    #                       cifar100/cifar20_fullclass_exps.sh scripts pass no -b)
    batch_size_random: int = 128  # random forgetting (every class keeps retain samples): [SSD] forget_random_main.py
    #                               DataLoader(..., batch_size=128)
    # order of D's batches. "auto": [SSD], the retain samples then the forget samples (ConcatDataset, no shuffle),
    # the retain part by class for class forgetting (get_classwise_ds lists) and in random order for random
    # forgetting (random_split) | "class_major" / "random" / "dataset": that retain order, then the forget
    # samples | "shuffled": all of D shuffled together (sangamesh-kodge/class_forgetting main.py ssd_unlearn,
    # the SSD rows of Deep Unlearning's tables). Random draws: torch's global generator
    full_order: Literal["auto", "class_major", "random", "dataset", "shuffled"] = "auto"
    augment: bool = False  # [SSD] datasets.py transform_unlearning: ToTensor + Normalize only

    def check(self) -> None:
        """Ranges and cross-field rules, checked when the YAML loads."""
        _validate(self)


def _validate(cfg: Config) -> None:
    if cfg.selection_weighting < 0 or cfg.dampening_constant < 0 or cfg.batch_size < 1 or cfg.batch_size_random < 1:
        raise ValueError("ssd: selection_weighting and dampening_constant must be >= 0, batch sizes >= 1")


def importance(model: nn.Module, batches) -> dict[str, torch.Tensor]:
    """Mean over batches of the squared gradient of the batch-mean CE ([SSD] ``calc_importance``), per
    parameter name; the model stays in the mode it is in (SSD: eval)."""
    params = {k: p for k, p in model.named_parameters() if p.requires_grad}
    acc = {k: torch.zeros_like(p) for k, p in params.items()}
    n = 0
    for x, y in batches:
        loss = F.cross_entropy(model(x), y)
        grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
        for (k, _), g in zip(params.items(), grads, strict=True):
            if g is not None:
                acc[k] += g.detach().pow(2)
        n += 1
    return {k: v / max(n, 1) for k, v in acc.items()}


@torch.no_grad()
def dampen(model: nn.Module, imp_full: dict[str, torch.Tensor], imp_forget: dict[str, torch.Tensor],
           alpha: float, lam: float) -> dict[str, int]:
    """[SSD] ``modify_weight``: where I_f > alpha * I_D, theta *= min(lam * I_D / I_f, 1). Returns the number
    of dampened elements per parameter."""
    counts = {}
    for k, p in model.named_parameters():
        if k not in imp_forget:
            continue
        f, d = imp_forget[k], imp_full[k]
        selected = f > alpha * d
        factor = torch.where(selected, (lam * d / torch.where(selected, f, torch.ones_like(f))).clamp(max=1.0),
                             torch.ones_like(f))
        p.mul_(factor)
        counts[k] = int(selected.sum())
    return counts


def full_order(retain_labels: torch.Tensor, n_forget: int, is_class: bool, order: str) -> list[tuple[str, int]]:
    """The samples of D as (part, position) pairs: the retain samples (class-major, random or dataset order),
    then the forget samples in loader order; or all of them shuffled together ("shuffled")."""
    n_r = len(retain_labels)
    if order == "shuffled":
        pairs = [("r", i) for i in range(n_r)] + [("f", i) for i in range(n_forget)]
        return [pairs[i] for i in torch.randperm(len(pairs)).tolist()]
    if order == "auto":
        order = "class_major" if is_class else "random"
    if order == "class_major":
        r = class_major(retain_labels.numpy())
    elif order == "random":
        r = torch.randperm(n_r).numpy()
    elif order == "dataset":
        r = np.arange(n_r)
    else:
        raise ValueError(f"ssd full_order {order!r}; valid: auto, class_major, random, dataset, shuffled")
    return [("r", int(i)) for i in r] + [("f", i) for i in range(n_forget)]


def concat_batches(retain, forget, pairs: list[tuple[str, int]], batch_size: int, augment: bool):
    """Batches of ``batch_size`` over ``pairs`` in order; a batch may hold retain and forget samples (the batch
    that straddles the ConcatDataset boundary)."""
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start:start + batch_size]
        xs, ys = [], []
        for part, loader in (("r", retain), ("f", forget)):
            pos = np.array([i for p, i in chunk if p == part], dtype=np.int64)
            if len(pos):
                x, y = loader.batch(pos, augment=augment)
                xs.append(x)
                ys.append(y)
        yield torch.cat(xs), torch.cat(ys)


def loader_batches(loader, batch_size: int, augment: bool):
    for start in range(0, loader.num_samples, batch_size):
        yield loader.batch(np.arange(start, min(start + batch_size, loader.num_samples)), augment=augment)


# the setting of its defaults: [SSD] forget_full_class_main.py (CIFAR-100/20 full classes; CIFAR-10 at this size)
PAPER_SETTING = PaperSetting("CIFAR-10 class forgetting", 45_000, 5_000, "[SSD] forget_full_class_main.py")


@register_method("ssd", Config, setting=PAPER_SETTING, steps=no_steps)
def unlearn(model: nn.Module, *, retain, forget, cfg: Config, device) -> nn.Module:
    """Selective Synaptic Dampening: shrink weights far more important to the forget set than to all data."""
    retain_labels = retain.labels
    is_class = bool(forget_classes_from_retain(retain_labels, retain.spec.num_classes))
    bs = cfg.batch_size if is_class else cfg.batch_size_random
    model.eval()
    with torch.enable_grad():
        imp_f = importance(model, loader_batches(forget, bs, cfg.augment))
        pairs = full_order(retain_labels, forget.num_samples, is_class, cfg.full_order)
        imp_d = importance(model, concat_batches(retain, forget, pairs, bs, cfg.augment))
    counts = dampen(model, imp_d, imp_f, cfg.selection_weighting, cfg.dampening_constant)
    for step, c in enumerate(counts.values()):
        trace("dampened_by_parameter", c, step)  # step = parameter index
    selected, of = sum(counts.values()), sum(int(v.numel()) for v in imp_f.values())
    aligned = cfg.full_order != "shuffled" and not cfg.augment and len(retain_labels) % bs == 0
    diagnose(Diagnosis(selected, of, "" if selected else no_selection_reason(
        imp_d, imp_f, cfg.selection_weighting, pairs, bs, aligned)))
    model.eval()
    return model


def no_selection_reason(imp_full: dict[str, torch.Tensor], imp_forget: dict[str, torch.Tensor], alpha: float,
                        pairs: list[tuple[str, int]], batch_size: int, aligned: bool) -> str:
    """Why the rule I_f > alpha * I_D selected no weight, in terms of what the call computed: the largest ratio
    I_f / I_D, and the forget-only batches among D's. When D's last batches are the forget loader's own batches
    (same samples, order and batch size: the retain count a multiple of the batch size, no shuffling, no
    augmentation), I_D >= (N_f / N_D) * I_f holds element by element, so no weight can be selected once
    N_f / N_D >= 1 / alpha: a forget set of about 1 / alpha of the data or more."""
    ratio = max((float(torch.where(d > 0, f / d.clamp_min(1e-300), torch.where(f > 0, torch.inf, 0.0)).max())
                 for f, d in ((imp_forget[k], imp_full[k]) for k in imp_forget) if f.numel()), default=0.0)
    n_d = -(-len(pairs) // batch_size)
    only_f = sum(all(p == "f" for p, _ in pairs[i:i + batch_size]) for i in range(0, len(pairs), batch_size))
    share = sum(p == "f" for p, _ in pairs) / max(len(pairs), 1)
    head = (f"it dampens a weight only where I_f > α·I_D (α = {alpha:g}); the largest I_f/I_D of any weight was "
            f"{ratio:.3g}")
    if not only_f or only_f / n_d < 1 / alpha:
        return head + "."
    if aligned:
        return (f"{head}, and it cannot exceed α here: D's last {only_f} of {n_d} batches are the forget set's own "
                f"batches, so I_D ≥ ({only_f}/{n_d})·I_f in every weight and {only_f}/{n_d} ≥ 1/α (the forget set is "
                f"{100 * share:.0f} % of the data; about 1/α or more selects nothing).")
    return (f"{head}: {only_f} of D's {n_d} batches hold forget samples only ({only_f}/{n_d} ≥ 1/α; the forget set "
            f"is {100 * share:.0f} % of the data), so their squared gradients alone put I_D near ({only_f}/{n_d})·I_f "
            f"and I_f/I_D can pass α only through the difference between those batches and the forget loader's (none "
            f"when the retain count is a multiple of the batch size: then they are the same batches).")


__all__ = ["Config", "importance", "dampen", "full_order", "concat_batches", "no_selection_reason", "unlearn"]
