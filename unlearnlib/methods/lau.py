r"""Layer Attack Unlearning (LAU; Kim, Lee, Woo, AAAI 2024, arXiv 2312.16823): a RECONSTRUCTION.

No official code exists and the paper's full text was not at hand; what is known (abstract, the Figure 2
caption, a third-party re-implementation, a later paper using LAU as a baseline, a related patent) is in
``shared/papers/layer_attack_unlearning.md``. Every free choice below is a :class:`Config` field marked
UNCONFIRMED with where its default comes from. Source tags: [ABS] abstract, [FIG2] Figure 2 caption,
[DSDA] the ICML 2025 paper that runs LAU as a baseline, [3P-IMPL] ``cryingInitial/donjae-lab``
``methods/lau.py`` (commit d9422dd) and its ``main.py``/``methods/method.py``, [INFER] our reading.

The model is split into a frozen feature extractor :math:`f` (everything up to ``model.penultimate``) and
the classification layer :math:`h` (``model.head``); only :math:`h` changes [ABS][FIG2]. On the ViT, :math:`f` ends
with the class token after the final LayerNorm (signed features: the [3P-IMPL] clamp to [0, 1] below, an option
made for non-negative ReLU features, cuts them far more than a CNN's) and :math:`h` is its linear head. Only forget data
is used [DSDA]. With the backbone in eval mode, the forget features :math:`z = f(x)` are computed once.

Each epoch the teacher :math:`h_T` becomes a frozen copy of the student :math:`h`. Each step, for a batch
:math:`(z, y)`:

* **Partial-PGD** (attack the classification layer only): :math:`z_{adv}` maximises
  :math:`\mathrm{CE}(h_T(z'), y)` over the ``pgd_norm`` ball of radius ``pgd_eps`` around :math:`z`,
  ``pgd_iters`` steps of size ``pgd_step`` (sign of the gradient for L-inf, normalised gradient for L2),
  each followed by the Euclidean projection onto the ball. For a linear head the CE is convex in
  :math:`z`, so every projected step is an ascent step: the teacher's CE never decreases.
* **unlearned mask** :math:`m`: the student still predicts the true label (not yet forgotten);
* targets :math:`\text{hard} = m\,?\,\arg\max h_T(z_{adv}) : \arg\max h(z)` and
  :math:`\text{soft} = m\,?\,\mathrm{softmax}(h_T(z_{adv})/T) : \mathrm{softmax}(\mathrm{sg}(h(z))/T)`;
* loss :math:`(1-\alpha)\,\mathrm{CE}(h(z), \text{hard}) + \alpha T^2\,
  \mathrm{KL}(\text{soft}\,\|\,\mathrm{softmax}(h(z)/T))` (KL averaged over samples).

Training stops once no forget sample is predicted as its label (checked after every epoch through
:func:`unlearnlib.train.fit`'s ``stop`` hook). Nothing assumes a single forget class: the mask, the attack
and the stopping rule use each sample's own label, so random-sample forgetting runs unchanged.

``third_party_config()`` gives the [3P-IMPL] behaviour (backbone BatchNorm in train mode, so its running
statistics drift; features clamped to [0, 1] during the attack; softmax applied twice to the KD target;
KL with element-mean reduction) to explain discrepancies; the clean reading is the default.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..trace import trace
from ..train import Optimizer, Scheduler, TrainConfig, fit
from . import PaperSetting, batches, capped, register_method

FEATURE_CHUNK = 512  # forget images per forward pass when the features are computed (memory only)


@dataclass
class Config(TrainConfig):
    """LAU hyperparameters. The optimiser fields are TrainConfig's; only the head's parameters are optimised."""

    # --- optimiser and schedule (TrainConfig fields, LAU's values) -----------------------------------------
    epochs: int = 3  # UNCONFIRMED: [3P-IMPL] hard-codes unlearn_epochs = 3 (its CLI value is ignored)
    optimizer: Optimizer = "sgd"  # UNCONFIRMED: no paper value; [3P-IMPL] uses the framework's (CLI default adam,
    #                         or sgd with momentum 0.9 and weight decay 5e-4)
    lr: float = 0.01  # UNCONFIRMED: [3P-IMPL] main.py --lr default; the brief says sweep it on validation
    momentum: float = 0.9  # UNCONFIRMED: [3P-IMPL] sgd branch (methods/method.py)
    weight_decay: float = 0.0  # UNCONFIRMED: clean reading; [3P-IMPL] sgd uses 5e-4 (it only reaches the head)
    nesterov: bool = False  # UNCONFIRMED: [3P-IMPL] plain torch.optim.SGD (no nesterov)
    batch_size: int = 64  # UNCONFIRMED: the paper does not state it ([3P-IMPL] docstring); main.py default 64
    scheduler: Scheduler = "none"  # UNCONFIRMED: [3P-IMPL] constant learning rate
    augment: bool = False  # UNCONFIRMED: [3P-IMPL] train_forget_test_loader (test-time transforms, no
    #                        augmentation). True: one augmented draw of each forget image, made once
    shuffle: bool = True  # UNCONFIRMED: [3P-IMPL] forget DataLoader(shuffle=True)

    # --- knowledge distillation ----------------------------------------------------------------------------
    temperature: float = 4.0  # UNCONFIRMED: [3P-IMPL] T = 4, docstring "Softmax Temp: 4 best"
    kd_alpha: float = 0.5  # UNCONFIRMED: [3P-IMPL] alpha = 0.5, docstring "KD alpha: 0.5 best for CIFAR-10"
    # "softmax": softmax(teacher/T) [INFER, brief's clean reading] |
    #   "double_softmax": softmax(softmax(teacher)/T), [3P-IMPL]'s (likely) bug
    kd_target: Literal["softmax", "double_softmax"] = "softmax"
    # "batchmean": KL summed over classes, mean over samples [INFER] |
    #   "mean": element mean, i.e. also / #classes, [3P-IMPL] nn.KLDivLoss()
    kd_reduction: Literal["batchmean", "mean"] = "batchmean"

    # --- Partial-PGD (feature space, against the teacher head) ---------------------------------------------
    pgd_norm: Literal["linf", "l2"] = "linf"  # UNCONFIRMED: [3P-IMPL] opt='original' (L-inf); "l2" also in [3P-IMPL]
    pgd_eps: float = 0.3  # UNCONFIRMED: [3P-IMPL] pgd_attack eps=0.3, not from the paper
    pgd_step: float = 0.4  # UNCONFIRMED: [3P-IMPL] alpha=0.4 (docstring "PGD alpha: 0.4 to 0.6"); a step
    #                        larger than eps only means the first step reaches the ball's boundary
    pgd_iters: int = 40  # UNCONFIRMED: [3P-IMPL] iters=40
    pgd_random_start: bool = False  # UNCONFIRMED: [3P-IMPL] starts at the clean features
    # "step": attack each batch, as the brief's pseudo-code | "epoch": attack every
    #   forget sample once per epoch (same result when the teacher only changes per
    #   epoch, the backbone is in eval mode and there is no random start; cheaper)
    pgd_every: Literal["step", "epoch"] = "step"
    feature_clamp: bool = False  # [3P-IMPL] clamps the attacked features to [0, 1] (distorts ReLU features > 1)

    # --- structure -----------------------------------------------------------------------------------------
    # "eval": frozen, BN statistics fixed, features computed once [brief] |
    #   "train": [3P-IMPL]'s model.train(): BN uses batch statistics and its
    #   running statistics drift on forget data, dropout is active; features
    #   recomputed every step (the stopping rule still uses eval-mode features)
    backbone_mode: Literal["eval", "train"] = "eval"
    # UNCONFIRMED: [3P-IMPL] re-copies the student at each epoch | "never"
    teacher_refresh: Literal["epoch", "never"] = "epoch"
    stop_at_remembered: float | None = 0.0  # UNCONFIRMED: stop once the fraction of forget samples still
    #                              predicted as their label is <= this (0: none left); None: never stop early.
    #                              [3P-IMPL] checks only the current batch, at the start of each epoch
    check_every: int | None = None  # also check the stopping rule every this many steps (None: after each epoch)


# [3P-IMPL] quirks (brief, "Known upstream deviations", rows 1, 4, 6): explains discrepancies, not the default

    def check(self) -> None:
        """Ranges and cross-field rules, checked when the YAML loads."""
        super().check()
        _validate(self)
THIRD_PARTY = dict(backbone_mode="train", feature_clamp=True, kd_target="double_softmax", kd_reduction="mean")

def third_party_config(**overrides) -> Config:
    """The [3P-IMPL] behaviour (donjae-lab methods/lau.py): BN train mode, [0, 1] clamp, double softmax."""
    return Config(**{**THIRD_PARTY, **overrides})


def _validate(cfg: Config) -> None:
    if cfg.backbone_mode == "train" and cfg.pgd_every == "epoch":
        raise ValueError("lau: pgd_every='epoch' needs backbone_mode='eval' (in train mode the features change "
                         "every step)")
    if cfg.pgd_eps < 0 or cfg.pgd_step < 0 or cfg.pgd_iters < 0:
        raise ValueError("lau: pgd_eps, pgd_step and pgd_iters must be >= 0")
    if not 0.0 <= cfg.kd_alpha <= 1.0 or cfg.temperature <= 0:
        raise ValueError("lau: kd_alpha must be in [0, 1] and temperature > 0")


# ---------------------------------------------------------------------------------------------------------
# Partial-PGD


def _project(delta: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    """Euclidean projection of per-sample perturbations (rows) onto the ``norm`` ball of radius eps."""
    if norm == "linf":
        return delta.clamp(-eps, eps)
    n = delta.flatten(1).norm(dim=1).clamp_min(1e-12)
    return delta * (eps / n).clamp(max=1.0).view(-1, *([1] * (delta.dim() - 1)))


def partial_pgd(head: nn.Module, z: torch.Tensor, y: torch.Tensor, *, eps: float, step: float, iters: int,
                norm: str = "linf", random_start: bool = False, clamp: bool = False) -> torch.Tensor:
    """Adversarial features for ``head`` (no pixels): maximise CE(head(z'), y) over ||z' - z|| <= eps.

    Each iteration takes a step of size ``step`` along sign(grad) (L-inf) or grad/||grad|| (L2) and
    projects onto the ball around ``z``; ``clamp`` then clips to [0, 1] as [3P-IMPL] does (which can leave
    the ball when features exceed 1). ``head``'s parameters get no gradient. Returns a detached tensor.
    """
    if norm not in ("linf", "l2"):
        raise ValueError(f"pgd norm {norm!r}; valid: linf, l2")
    z = z.detach()
    x = z.clone()
    if random_start:
        if norm == "linf":
            x = z + (torch.rand_like(z) * 2 - 1) * eps
        else:
            d = torch.randn_like(z)
            r = eps * torch.rand(z.shape[0], device=z.device, dtype=z.dtype) ** (1.0 / max(z[0].numel(), 1))
            x = z + d / d.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (z.dim() - 1))) * \
                r.view(-1, *([1] * (z.dim() - 1)))
        if clamp:
            x = x.clamp(0.0, 1.0)
    with torch.enable_grad():
        for _ in range(iters):
            x.requires_grad_(True)
            loss = F.cross_entropy(head(x), y, reduction="sum")  # sum: per-sample gradients, batch-size free
            (g,) = torch.autograd.grad(loss, x)
            with torch.no_grad():
                if norm == "linf":
                    direction = g.sign()
                else:
                    gn = g.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (g.dim() - 1)))
                    direction = g / gn
                x = z + _project(x.detach() + step * direction - z, eps, norm)
                if clamp:
                    x = x.clamp(0.0, 1.0)
    return x.detach()


# ---------------------------------------------------------------------------------------------------------
# the loss


def unlearned_mask(student_logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """True where the student still predicts the true label (the sample is not yet forgotten)."""
    return student_logits.argmax(1) == y


def lau_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, y: torch.Tensor, *, temperature: float,
             kd_alpha: float, kd_target: str = "softmax", kd_reduction: str = "batchmean") -> torch.Tensor:
    """(1 - a) CE(s, hard) + a T^2 KL(soft || softmax(s/T)), targets mixed through the unlearned mask.

    Where the mask is set, the targets are the teacher's (on adversarial features); elsewhere the student's
    own (detached) prediction, so those samples are held where they are (their KD gradient is zero).
    """
    s = student_logits
    t = teacher_logits.detach()
    m = unlearned_mask(s, y)
    hard = torch.where(m, t.argmax(1), s.argmax(1)).detach()
    T = float(temperature)
    if kd_target == "softmax":
        soft = torch.where(m[:, None], F.softmax(t / T, 1), F.softmax(s.detach() / T, 1))
    elif kd_target == "double_softmax":  # [3P-IMPL]: Z = softmax(logits), then softmax(Z / T) again
        soft = F.softmax(torch.where(m[:, None], F.softmax(t, 1), F.softmax(s.detach(), 1)) / T, 1)
    else:
        raise ValueError(f"kd_target {kd_target!r}; valid: softmax, double_softmax")
    kl = F.kl_div(F.log_softmax(s / T, 1), soft, reduction="none")  # soft * (log soft - log p_s), per element
    if kd_reduction == "batchmean":
        kd = kl.sum(1).mean()
    elif kd_reduction == "mean":
        kd = kl.mean()
    else:
        raise ValueError(f"kd_reduction {kd_reduction!r}; valid: batchmean, mean")
    return (1.0 - kd_alpha) * F.cross_entropy(s, hard) + kd_alpha * T * T * kd


# ---------------------------------------------------------------------------------------------------------
# the method


class _ForgetFeatures:
    """Penultimate features of the forget set, in loader order. Eval mode: computed once, no grad."""

    def __init__(self, model: nn.Module, forget, cfg: Config) -> None:
        self.model, self.forget, self.cfg = model, forget, cfg
        self.n = forget.num_samples
        self.z: torch.Tensor | None = None
        self.y: torch.Tensor | None = None
        if cfg.backbone_mode == "eval":
            self.z, self.y = self.compute()

    @torch.no_grad()
    def compute(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All forget features with the backbone in eval mode (mode restored afterwards)."""
        was = self.model.training
        self.model.eval()
        zs, ys = [], []
        try:
            for start in range(0, self.n, FEATURE_CHUNK):
                x, y = self.forget.batch(np.arange(start, min(start + FEATURE_CHUNK, self.n)),
                                         augment=self.cfg.augment)
                zs.append(self.model.penultimate(x))
                ys.append(y)
        finally:
            self.model.train(was)
        return torch.cat(zs), torch.cat(ys)

    def clean(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Eval-mode features of every forget sample (the deployed model's view)."""
        if self.z is not None:
            return self.z, self.y
        return self.compute()

    def batch(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Features of a training batch: cached (eval) or a train-mode forward pass ([3P-IMPL], BN drift)."""
        if self.z is not None:
            idx = positions.to(self.z.device)
            return self.z[idx], self.y[idx]
        x, y = self.forget.batch(positions.numpy(), augment=self.cfg.augment)
        self.model.train()  # fit already did; explicit because the drift is the point of this mode
        with torch.no_grad():
            return self.model.penultimate(x), y


# the setting of its defaults: CIFAR-10 class forgetting (LAU's Table 1; 5,000 forget images)
PAPER_SETTING = PaperSetting("CIFAR-10 class forgetting", 45_000, 5_000, "LAU (AAAI 2024) Table 1")


def steps(cfg: Config, n_retain: int, n_forget: int) -> int:
    """The most optimiser steps of a call (its stopping rule may end it earlier): every epoch, the forget set in
    batches."""
    return capped(cfg, cfg.epochs * batches(n_forget, cfg.batch_size))


@register_method("lau", Config, reads_retain=False, setting=PAPER_SETTING, steps=steps)
def unlearn(model: nn.Module, *, retain, forget, cfg: Config, device) -> nn.Module:
    """Layer Attack Unlearning: only the classification layer learns, distilled from a Partial-PGD teacher."""
    head = model.head
    model.eval()  # the backbone stays in eval mode (BN statistics fixed) unless backbone_mode == "train"
    feats = _ForgetFeatures(model, forget, cfg)
    teacher = copy.deepcopy(head).requires_grad_(False).eval()
    state = {"steps": 0, "epoch_targets": None}

    def attack(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        z_adv = partial_pgd(teacher, z, y, eps=cfg.pgd_eps, step=cfg.pgd_step, iters=cfg.pgd_iters,
                            norm=cfg.pgd_norm, random_start=cfg.pgd_random_start, clamp=cfg.feature_clamp)
        with torch.no_grad():
            return teacher(z_adv)

    @torch.no_grad()
    def remembered() -> float:
        z, y = feats.clean()
        return float(unlearned_mask(head(z), y).float().mean()) if len(y) else 0.0

    def batches():
        """One epoch: refresh the teacher, log what is still remembered, (attack), yield position batches."""
        if cfg.teacher_refresh == "epoch":
            teacher.load_state_dict(head.state_dict())
        trace("remembered", remembered(), state["steps"])
        if cfg.pgd_every == "epoch":
            z, y = feats.clean()
            state["epoch_targets"] = attack(z, y)
            trace("pgd_flipped", float((state["epoch_targets"].argmax(1) != y).float().mean()), state["steps"])
        order = torch.randperm(feats.n) if cfg.shuffle else torch.arange(feats.n)
        for start in range(0, feats.n, cfg.batch_size):
            yield order[start:start + cfg.batch_size]

    def loss_fn(_model: nn.Module, positions: torch.Tensor) -> torch.Tensor:
        z, y = feats.batch(positions)
        if cfg.pgd_every == "epoch":
            t = state["epoch_targets"][positions.to(z.device)]
        else:
            t = attack(z, y)
        state["steps"] += 1
        return lau_loss(head(z), t, y, temperature=cfg.temperature, kd_alpha=cfg.kd_alpha,
                        kd_target=cfg.kd_target, kd_reduction=cfg.kd_reduction)

    stop = None
    if cfg.stop_at_remembered is not None:
        def stop(_model: nn.Module, _step: int) -> bool:
            return remembered() <= cfg.stop_at_remembered

    if feats.n:
        fit(model, batches, cfg, loss_fn=loss_fn, params=list(head.parameters()), stop=stop,
            check_every=cfg.check_every or 2**62, desc="lau")
        trace("remembered", remembered(), state["steps"])
    model.eval()
    return model


__all__ = ["Config", "THIRD_PARTY", "third_party_config", "partial_pgd", "lau_loss", "unlearned_mask", "unlearn"]
