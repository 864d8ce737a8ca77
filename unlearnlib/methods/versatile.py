r"""Fast yet versatile machine unlearning (Chen, Zhang, Mi, Huang, Li; Neural Networks 190, 2025): a
RECONSTRUCTION.

The paper is not open access, its text was not at hand, and no code is known. Its abstract (summarised in
``shared/papers/versatile_unlearning.md``) says: fine-tune the model until the distribution of its
predictions on the forgotten data matches its predictions on unseen third-party data; it works for backdoor
triggers, whole classes and data subsets. Every free choice is a :class:`Config` field marked UNCONFIRMED
with the reason for its default. Source tags: [ABS] the abstract, [BRIEF] the brief, [GAN] the authors'
precursor "Machine unlearning via GAN" (arXiv 2111.11869) as described by [JOS] the 2025 survey,
[EVAL] ``shared/evaluation.md``, [INFER] our reading.

Notation: :math:`p_\theta(x)` the softmax output, :math:`D_f` forget, :math:`D_u` unseen (never trained on),
:math:`D_r` retain. The representation :math:`\phi(p)` fed to the discriminator / divergence is ``input``:
``softmax`` (the full vector), ``sorted`` (sorted descending: label-free confidence profile) or
``softmax_label`` (the vector and the one-hot label, a label-aware membership attacker).

**V-ADV** (``interpretation="adv"``, default [BRIEF], the form of [GAN]): a small MLP discriminator
:math:`g:\phi\mapsto[0,1]` ("was this output produced on forgotten data?") alternates with the model. Each
call of the loss closure handed to :func:`unlearnlib.train.fit`

1. takes ``disc_steps`` optimiser steps of the *discriminator* (its own Adam) on
   :math:`\mathrm{BCE}(g(\phi_f), 1) + \mathrm{BCE}(g(\phi_u), 0)`, the outputs computed by the model in eval
   mode without gradients (the attacker queries the deployed model). The discriminator is not the model:
   its small update lives inside the loss closure, and ``fit`` only ever optimises the model;
2. returns the model's loss :math:`\mathrm{BCE}(g(\phi_f), 0) + \beta\,\mathrm{CE}(f_\theta(x_r), y_r)`
   (non-saturating generator loss: forgotten outputs should look unseen; the discriminator's parameters are
   frozen for this term), the forget and retain images in *one* train-mode forward pass so that BatchNorm
   never normalises a single-class forget batch on its own.

Before the first model step the discriminator is warmed up for ``disc_warmup`` steps on the original
model's (eval-mode) outputs, so the statistic starts from a real attacker, not a random one.

**V-DIV** (``interpretation="div"``): the model's loss is an explicit divergence between the forget batch's
outputs (train mode, with gradients) and an unseen batch's outputs (eval mode, no gradients: the target
distribution does not move), plus the same retain term. ``divergence="kl"`` (default [BRIEF]):
:math:`\mathrm{KL}(\bar\phi_u \,\|\, \bar\phi_f)` between batch-mean vectors (mass-covering: forgotten
outputs must put mass wherever unseen outputs do); ``divergence="mmd"``: the biased squared MMD between the
two sets of vectors, Gaussian kernels at 0.5, 1 and 2 times the median pairwise distance (or ``mmd_sigma``).

Stopping (``stop_rule``, checked every ``check_every`` steps, after each epoch and once before the first
step, on fixed samples of at most ``stat_samples`` forget and unseen images, eval mode, no augmentation; it
must pass ``patience`` consecutive checks): ``auto`` = ``disc_acc`` for adv (the discriminator's balanced
accuracy on forget vs unseen, :math:`|acc - 0.5| <` ``disc_tol``) and ``divergence`` for div (the divergence
over the whole samples :math:`<` ``div_tol``); ``mia`` (the loss-LR CV attack of [EVAL] §5.3) and
``acc_gap`` are options for both. ``epochs``/``max_steps`` are the maximum (an epoch = ``epoch_steps``
steps, by default one pass over the forget set). Every check logs ``stop_statistic``, ``disc_acc`` (adv),
``divergence``, ``forget_acc``, ``unseen_acc`` and ``mia_acc`` with :func:`unlearnlib.trace.trace`.

Scenarios: nothing assumes one class. Class forgetting: with unseen data from every class, the forgotten
class's outputs are pushed toward the unseen mixture, so its accuracy falls far below the original's (and
toward 0 when the harness restricts unseen data to the retain classes, ``split.unseen_classes: retain``).
Random subset: the memorised confidence falls to the unseen level. Backdoor: the forget set is the triggered
training images with the target label; their (target-class) outputs are pushed toward clean unseen outputs,
which breaks the trigger. With ``input="softmax_label"`` the forget labels (the target label for backdoor
samples) go to the discriminator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..attacks import loss_lr_cv_mia
from ..trace import trace
from ..train import Optimizer, PatienceStop, Scheduler, TrainConfig, fit
from . import batches, capped, register_method
from .lightweight import GapMonitor, logits_at


@dataclass
class Config(TrainConfig):
    """Fast yet versatile unlearning. No value below is from the paper (its text was not available): every
    default is UNCONFIRMED, chosen as stated, and must be reported with the results."""

    interpretation: Literal["adv", "div"] = "adv"  # UNCONFIRMED: adv | div. adv: the brief's default, the form of [GAN]
    # UNCONFIRMED: softmax | sorted | softmax_label; the brief's default (full softmax).
    #   Measured (Fashion-MNIST, VGG-11-BN w8): label-free softmax unlearns a class (100 -> 0 %)
    #   and a backdoor (ASR 95.7 -> 2.2 %, stopped at step 150) but on 300 random samples the
    #   original already reads 0.54-0.55 (within tolerance) and nothing changes; softmax_label
    #   there stops at forget 85 % (unseen 84 %, retrain 81 %), but when every forget sample
    #   has one label (class, backdoor) the label alone separates (0.94) and it never stops.
    #   So: softmax for class/backdoor scenarios, softmax_label for random subsets
    input: Literal["softmax", "sorted", "softmax_label"] = "softmax"
    log_scale: bool = False  # UNCONFIRMED: True: the discriminator / MMD see log-probabilities (the same
    #                          information, differently conditioned). Measured (Fashion-MNIST, 300 random
    #                          forget samples, held-out discriminator accuracy after 500-2000 steps): 0.53-0.55
    #                          (log) vs 0.55-0.56 (probabilities) for softmax, 0.55-0.59 vs 0.58-0.60 with the
    #                          label: no gain, so the brief's plain softmax. KL of batch means always uses
    #                          probabilities
    beta: float = 1.0  # UNCONFIRMED: weight of the retain cross-entropy term (0: forget/unseen data only)

    # --- model optimiser (TrainConfig fields) --------------------------------------------------------------
    epochs: int = 50  # UNCONFIRMED: the maximum number of epochs (the stop rule usually ends it earlier)
    epoch_steps: int | None = None  # steps per epoch; None: one pass over the forget set. fit also checks the
    #                                 stop rule after every epoch, so tiny forget sets want a larger value
    optimizer: Optimizer = "adam"  # UNCONFIRMED: Adam, as usual for adversarial (GAN-style) training
    lr: float = 1e-4  # UNCONFIRMED: small, so the model moves slower than the discriminator
    momentum: float = 0.9  # unused by Adam
    weight_decay: float = 0.0  # UNCONFIRMED
    batch_size: int = 64  # UNCONFIRMED: forget, unseen and retain images per step (each)
    scheduler: Scheduler = "none"  # UNCONFIRMED: constant learning rate
    augment: bool = True  # UNCONFIRMED: the dataset's training augmentation on the retain batches only; forget
    #                       and unseen images are never augmented (their outputs are what is compared)

    # --- V-ADV discriminator ------------------------------------------------------------------------------
    disc_hidden: int = 64  # UNCONFIRMED: two hidden layers of this width ("a small MLP" [BRIEF])
    disc_lr: float = 1e-3  # UNCONFIRMED: Adam, betas (0.5, 0.999) as in DCGAN
    disc_steps: int = 1  # UNCONFIRMED: discriminator steps per model step
    disc_warmup: int = 500  # UNCONFIRMED: discriminator steps on the original's (cached) outputs before the first
    #                         model step; cheap (no model forward). Held-out accuracy measured 0.52-0.55 after
    #                         200 steps, 0.55-0.60 after 500 (random forgetting, see log_scale)

    # --- V-DIV ------------------------------------------------------------------------------------------------
    # UNCONFIRMED: kl (batch-mean vectors, the brief's default) | mmd. Measured: backdoor
    #   ASR 95.7 -> 8.6 % (kl, 120 steps) / 9.4 % (mmd, 90 steps); class 100 -> 0.3 / 2.3 %
    #   (200 steps, the maximum); random subsets: batch means already match, stops at once
    divergence: Literal["kl", "mmd"] = "kl"
    mmd_sigma: float | None = None  # None: kernels at 0.5, 1, 2 x the median pairwise distance

    # --- stopping ---------------------------------------------------------------------------------------------
    # UNCONFIRMED: auto (disc_acc for adv, divergence for div) | disc_acc | divergence
    #   | mia | acc_gap. "The attacker can no longer separate the two" [BRIEF][GAN]
    stop_rule: Literal["auto", "disc_acc", "divergence", "mia", "acc_gap"] = "auto"
    disc_tol: float = 0.03  # UNCONFIRMED: |balanced accuracy - 0.5| below this. About 1.7 standard errors on
    #                         300 forget + 500 unseen samples; 0.05 stopped random forgetting with forget accuracy
    #                         still 5 points above unseen accuracy (the original reads only 0.54-0.58)
    div_tol: float = 0.02  # UNCONFIRMED: KL of means over 300 vs 1000 samples of one distribution is ~0.01
    mia_tol: float = 3.0  # UNCONFIRMED: as lightweight (percentage points of the loss-LR MIA around 50)
    acc_gap_tol: float = 0.03  # UNCONFIRMED: as lightweight
    patience: int = 2  # UNCONFIRMED: consecutive checks that must pass
    check_every: int = 10  # UNCONFIRMED
    stat_samples: int = 1000  # UNCONFIRMED: forget and unseen images (each) the statistics use
    mia_splits: int = 10  # [EVAL] §5.3
    stat_seed: int = 0  # seeds the statistic's samples and the attack's splits (not training)

    def check(self) -> None:
        """Ranges and cross-field rules, checked when the YAML loads."""
        super().check()
        _validate(self)


LOG_FLOOR = -20.0  # log-probabilities below this are clipped (log_scale features)

def _validate(cfg: Config) -> None:
    if cfg.interpretation == "div" and cfg.divergence == "kl" and cfg.input == "softmax_label":
        raise ValueError("versatile: divergence='kl' compares probability vectors; use input softmax or sorted "
                         "(or divergence='mmd')")
    if cfg.stop_rule == "disc_acc" and cfg.interpretation != "adv":
        raise ValueError("versatile: stop_rule='disc_acc' needs interpretation='adv' (div has no discriminator)")
    if cfg.beta < 0 or cfg.disc_steps < 0 or cfg.disc_warmup < 0:
        raise ValueError("versatile: beta, disc_steps and disc_warmup must be >= 0")
    if cfg.epoch_steps is not None and cfg.epoch_steps < 1:
        raise ValueError("versatile: epoch_steps must be >= 1 (or None)")
    if cfg.check_every < 1 or cfg.patience < 1 or cfg.stat_samples < 1:
        raise ValueError("versatile: check_every, patience and stat_samples must be >= 1")


def rule_of(cfg: Config) -> str:
    if cfg.stop_rule != "auto":
        return cfg.stop_rule
    return "disc_acc" if cfg.interpretation == "adv" else "divergence"


# ---------------------------------------------------------------------------------------------------------
# representations, discriminator, divergences


def represent(logits: torch.Tensor, labels: torch.Tensor, kind: str, num_classes: int,
              log_scale: bool = False) -> torch.Tensor:
    """phi(p): the softmax vector, sorted descending, or concatenated with the one-hot label;
    ``log_scale``: log-probabilities (floored at LOG_FLOOR) instead of probabilities (same order)."""
    p = F.log_softmax(logits.float(), 1).clamp_min(LOG_FLOOR) if log_scale else F.softmax(logits.float(), 1)
    if kind == "softmax":
        return p
    if kind == "sorted":
        return p.sort(1, descending=True).values
    if kind == "softmax_label":
        return torch.cat([p, F.one_hot(labels, num_classes).to(p.dtype)], 1)
    raise ValueError(f"input {kind!r}; valid: softmax, sorted, softmax_label")


def discriminator(in_dim: int, hidden: int) -> nn.Module:
    """g: phi -> logit of "produced on forgotten data"."""
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                         nn.Linear(hidden, 1))


def disc_loss(disc: nn.Module, phi_f: torch.Tensor, phi_u: torch.Tensor) -> torch.Tensor:
    """BCE(g(phi_f), 1) + BCE(g(phi_u), 0)."""
    lf, lu = disc(phi_f).squeeze(1), disc(phi_u).squeeze(1)
    return (F.binary_cross_entropy_with_logits(lf, torch.ones_like(lf))
            + F.binary_cross_entropy_with_logits(lu, torch.zeros_like(lu)))


@torch.no_grad()
def disc_accuracy(disc: nn.Module, phi_f: torch.Tensor, phi_u: torch.Tensor) -> float:
    """Balanced accuracy: mean of the hit rates on forget (label 1) and unseen (label 0) outputs."""
    if not len(phi_f) or not len(phi_u):
        return float("nan")
    hit_f = (disc(phi_f).squeeze(1) > 0).float().mean()
    hit_u = (disc(phi_u).squeeze(1) <= 0).float().mean()
    return float((hit_f + hit_u) / 2)


def kl_of_means(phi_u: torch.Tensor, phi_f: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """KL(mean phi_u || mean phi_f) between batch-mean probability vectors (unseen is the target)."""
    pu = phi_u.mean(0).clamp_min(eps)
    pf = phi_f.mean(0).clamp_min(eps)
    pu, pf = pu / pu.sum(), pf / pf.sum()
    return (pu * (pu.log() - pf.log())).sum()


def mmd2(a: torch.Tensor, b: torch.Tensor, sigma: float | None = None) -> torch.Tensor:
    """Biased squared MMD between rows of a and b, sum of Gaussian kernels (bandwidths 0.5, 1, 2 x sigma;
    sigma = median pairwise distance of the pooled rows, detached, when None)."""
    x = torch.cat([a, b])
    d2 = torch.cdist(x, x).pow(2)
    if sigma is None:
        with torch.no_grad():
            off = d2[~torch.eye(len(x), dtype=torch.bool, device=x.device)]
            sigma = float(off.median().clamp_min(1e-12).sqrt()) if off.numel() else 1.0
    k = sum(torch.exp(-d2 / (2 * (s * sigma) ** 2)) for s in (0.5, 1.0, 2.0))
    n = len(a)
    return k[:n, :n].mean() + k[n:, n:].mean() - 2 * k[:n, n:].mean()


def divergence(phi_f: torch.Tensor, phi_u: torch.Tensor, kind: str, sigma: float | None = None) -> torch.Tensor:
    if kind == "kl":
        return kl_of_means(phi_u, phi_f)
    if kind == "mmd":
        return mmd2(phi_f, phi_u, sigma)
    raise ValueError(f"divergence {kind!r}; valid: kl, mmd")


# ---------------------------------------------------------------------------------------------------------
# the method


class _Cycle:
    """Batches of positions from shuffled passes over n samples (reshuffled when a pass runs out)."""

    def __init__(self, n: int, bs: int) -> None:
        self.n, self.bs = n, bs
        self.order, self.at = None, 0

    def next(self) -> np.ndarray:
        if self.order is None or self.at >= self.n:
            self.order, self.at = torch.randperm(self.n).numpy(), 0
        pos = self.order[self.at:self.at + self.bs]
        self.at += self.bs
        return pos


class _Batches:
    """One epoch = ``epoch_steps`` steps (default: one shuffled pass over the forget set); each forget batch
    comes with a random unseen batch and the next retain batch (forget and retain are cycled). Positions are
    drawn from the global torch RNG."""

    def __init__(self, forget, unseen, retain, cfg: Config) -> None:
        self.forget, self.unseen, self.retain, self.cfg = forget, unseen, retain, cfg
        bs = cfg.batch_size
        self.f = _Cycle(forget.num_samples, bs)
        self.r = _Cycle(retain.num_samples, bs) if retain.num_samples else None
        self.steps = cfg.epoch_steps or math.ceil(forget.num_samples / bs)

    def __call__(self):
        bs = self.cfg.batch_size
        for _ in range(self.steps):
            xf, yf = self.forget.batch(self.f.next(), augment=False)
            u_pos = torch.randint(0, self.unseen.num_samples, (min(bs, self.unseen.num_samples),)).numpy()
            xu, yu = self.unseen.batch(u_pos, augment=False)
            r = None
            if self.cfg.beta > 0 and self.r is not None:
                r = self.retain.batch(self.r.next(), augment=self.cfg.augment)
            yield (xf, yf), (xu, yu), r


class _Objective:
    """The pieces of one call: the representation phi, the discriminator (adv) with its warm-up and updates, the
    stop rule's check (``passes``) and the loss handed to :func:`fit`. Built in the order the RNG is drawn in."""

    def __init__(self, model: nn.Module, forget, monitor: GapMonitor, cfg: Config, rule: str) -> None:
        self.cfg, self.rule, self.monitor = cfg, rule, monitor
        self.num_classes = int(logits_at(model, forget, np.arange(1))[0].shape[1])
        self.disc = self.disc_opt = None
        if cfg.interpretation == "adv":
            in_dim = self.num_classes * (2 if cfg.input == "softmax_label" else 1)
            self.disc = discriminator(in_dim, cfg.disc_hidden).to(next(model.parameters()).device)
            self.disc_opt = torch.optim.Adam(self.disc.parameters(), lr=cfg.disc_lr, betas=(0.5, 0.999))
            self.warm_up(model)
            self.disc.requires_grad_(False)
        self.tol = {"disc_acc": cfg.disc_tol, "divergence": cfg.div_tol, "mia": cfg.mia_tol,
                    "acc_gap": cfg.acc_gap_tol}[rule]

    def phi(self, logits: torch.Tensor, labels: torch.Tensor, for_divergence: bool = False) -> torch.Tensor:
        """The representation; KL of batch means always sees probabilities (never log_scale)."""
        cfg = self.cfg
        kl = cfg.divergence == "kl" and (for_divergence or cfg.interpretation == "div")
        return represent(logits, labels, cfg.input, self.num_classes, cfg.log_scale and not kl)

    def disc_update(self, phi_f: torch.Tensor, phi_u: torch.Tensor) -> None:
        self.disc.requires_grad_(True)
        self.disc_opt.zero_grad(set_to_none=True)
        disc_loss(self.disc, phi_f, phi_u).backward()
        self.disc_opt.step()
        self.disc.requires_grad_(False)

    def warm_up(self, model: nn.Module) -> None:
        """The discriminator learns to tell the original's forget outputs from its unseen outputs."""
        if not self.cfg.disc_warmup:
            return
        zf, yf, zu, yu = self.monitor.outputs(model)
        pf, pu = self.phi(zf, yf), self.phi(zu, yu)
        bs = self.cfg.batch_size
        for _ in range(self.cfg.disc_warmup):
            i = torch.randint(0, len(pf), (min(bs, len(pf)),))
            j = torch.randint(0, len(pu), (min(bs, len(pu)),))
            self.disc_update(pf[i], pu[j])

    def passes(self, m: nn.Module, step: int) -> bool:
        """The stop rule's statistic at this check (every statistic traced); True when it is within tolerance."""
        cfg = self.cfg
        zf, yf, zu, yu = self.monitor.outputs(m)
        lf = F.cross_entropy(zf, yf, reduction="none").cpu().double().numpy()
        lu = F.cross_entropy(zu, yu, reduction="none").cpu().double().numpy()
        div = divergence(self.phi(zf, yf, True), self.phi(zu, yu, True), cfg.divergence, cfg.mmd_sigma)
        stats = {"divergence": float(div),
                 "forget_acc": float((zf.argmax(1) == yf).float().mean()),
                 "unseen_acc": float((zu.argmax(1) == yu).float().mean()),
                 "mia_acc": loss_lr_cv_mia(lf, lu, n_splits=cfg.mia_splits, seed=cfg.stat_seed)}
        if self.disc is not None:
            stats["disc_acc"] = disc_accuracy(self.disc, self.phi(zf, yf), self.phi(zu, yu))
        value = {"disc_acc": lambda: abs(stats["disc_acc"] - 0.5), "divergence": lambda: stats["divergence"],
                 "mia": lambda: abs(stats["mia_acc"] - 50.0),
                 "acc_gap": lambda: abs(stats["forget_acc"] - stats["unseen_acc"])}[self.rule]()
        trace("stop_statistic", value, step)
        for k, v in stats.items():
            trace(k, v, step)
        return bool(value < self.tol)  # NaN never passes

    def loss(self, m: nn.Module, batch) -> torch.Tensor:
        (xf, yf), (xu, yu), r = batch
        disc, cfg = self.disc, self.cfg
        with torch.no_grad():  # the deployed view: eval mode, no gradients
            m.eval()
            zu = m(xu)
            zf_eval = m(xf) if disc is not None and cfg.disc_steps else None
            m.train()
        phi_u = self.phi(zu, yu)
        if disc is not None:
            for _ in range(cfg.disc_steps):  # the discriminator's own optimiser step(s); fit never sees it
                self.disc_update(self.phi(zf_eval, yf), phi_u)
        x = xf if r is None else torch.cat([xf, r[0]])
        z = m(x)
        phi_f = self.phi(z[:len(xf)], yf)
        if disc is not None:
            lg = disc(phi_f).squeeze(1)
            loss = F.binary_cross_entropy_with_logits(lg, torch.zeros_like(lg))  # "looks unseen"
        else:
            loss = divergence(phi_f, phi_u, cfg.divergence, cfg.mmd_sigma)
        if r is not None:
            loss = loss + cfg.beta * F.cross_entropy(z[len(xf):], r[1])
        return loss


def steps(cfg: Config, n_retain: int, n_forget: int) -> int:
    """The most optimiser steps of the model in a call (its stopping rule usually ends it earlier): ``epochs`` of
    ``epoch_steps`` (one pass over the forget set). The discriminator's steps are another optimiser's."""
    return capped(cfg, cfg.epochs * (cfg.epoch_steps or batches(n_forget, cfg.batch_size)))


@register_method("versatile", Config, needs_unseen=True, steps=steps)
def unlearn(model: nn.Module, *, retain, forget, unseen, cfg: Config, device) -> nn.Module:
    """Fast yet versatile unlearning: fine-tune until outputs on forget data look like outputs on unseen data."""
    rule = rule_of(cfg)
    monitor = GapMonitor(forget, unseen, samples=cfg.stat_samples, seed=cfg.stat_seed, mia_splits=cfg.mia_splits)
    if not forget.num_samples or not unseen.num_samples:
        model.eval()
        return model
    objective = _Objective(model, forget, monitor, cfg, rule)
    stopper = PatienceStop(objective.passes, cfg.patience)
    if stopper.check(model, 0):
        trace("stopped_by_rule", 1.0, 0)
    else:
        history = fit(model, _Batches(forget, unseen, retain, cfg), cfg, loss_fn=objective.loss, stop=stopper,
                      check_every=cfg.check_every, desc=f"versatile {cfg.interpretation}")
        trace("stopped_by_rule", float(history.stopped_early), history.steps)  # 0: the rule never ended it
        if not history.stopped_early:  # ended at the maximum: log where it ended
            stopper.check(model, history.steps)
    model.eval()
    return model


__all__ = ["Config", "represent", "discriminator", "disc_loss", "disc_accuracy", "kl_of_means", "mmd2",
           "divergence", "unlearn"]
