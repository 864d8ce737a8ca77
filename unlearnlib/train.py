"""THE training loop. Used by the original model, retrain and every loss-based unlearning method.

A caller supplies the data (a :class:`~unlearnlib.data.Loader` or any callable returning an iterable
of batches per epoch) and, optionally, a loss ``loss_fn(model, batch) -> Tensor``; the default is
cross-entropy on ``(x, y)`` batches. Methods never write their own loop.
"""

from __future__ import annotations

import contextlib
import math
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Literal

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from .schema import KEY_IF_SET, ConfigError, check_range

Batch = Any
LossFn = Callable[[nn.Module, Batch], torch.Tensor]
Optimizer = Literal["sgd", "adam"]
Scheduler = Literal["plateau", "cosine", "multistep", "onecycle", "none"]
AfterStep = Callable[[nn.Module, torch.optim.Optimizer, int], None]


@dataclass
class TrainConfig:
    """Optimiser and schedule. Defaults: Kodge et al.'s CIFAR recipe (analysis/shadow_train.py)."""

    epochs: int = 350  # upstream 350 epochs
    max_steps: int | None = None  # stop after this many optimiser steps (None: run all epochs)
    optimizer: Optimizer = "sgd"  # sgd | adam
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = True
    batch_size: int = 64
    scheduler: Scheduler = "plateau"  # plateau | cosine | multistep | onecycle | none; upstream: ReduceLROnPlateau
    #                                   on the training loss. onecycle (Smith & Topin 2019, the fast-CIFAR recipes'):
    #                                   stepped after every optimiser step, linear from lr / onecycle_div up to lr over
    #                                   the first onecycle_pct_start of the steps, then linear down to
    #                                   lr / (onecycle_div * onecycle_final_div); momentum constant
    plateau_factor: float = 0.5
    plateau_patience: int = 10
    lr_milestones: tuple[int, ...] = ()  # multistep: lr x lr_decay after each of these epochs (1-based: during
    #                                      epoch e the lr is lr * lr_decay ** #(milestones < e), as SCRUB's helper)
    lr_decay: float = 0.1  # multistep
    onecycle_pct_start: float = field(default=0.25, metadata=KEY_IF_SET)  # onecycle: share of steps rising
    onecycle_div: float = field(default=25.0, metadata=KEY_IF_SET)  # onecycle: first lr = lr / this (torch's default)
    onecycle_final_div: float = field(default=1e4, metadata=KEY_IF_SET)  # onecycle: last lr = first lr / this
    # cross-entropy against (1 - e) one-hot + e / classes (Szegedy et al. 2016) in fit's default loss (0: none)
    label_smoothing: float = field(default=0.0, metadata=KEY_IF_SET)
    grad_clip_value: float | None = None  # clip each gradient element to [-v, v] (UNSIR's recipe uses 0.1)
    grad_clip_norm: float | None = None
    augment: bool = True  # the dataset's training augmentation
    # speed options for CUDA (they also run on the CPU); off by default so the numerics are the paper's float32 ones
    channels_last: bool = False  # model and 4-d inputs in channels_last memory format during fit/predict_logits
    bf16: bool = False  # bfloat16 autocast of the forward pass and loss (weights, gradients, optimiser stay float32)

    def check(self) -> None:
        """Ranges (called when the YAML loads; a method's Config extends it)."""
        check_range(self, "epochs", "plateau_patience", ge=0)
        check_range(self, "max_steps", ge=1, optional=True)
        check_range(self, "batch_size", ge=1)
        check_range(self, "lr", "lr_decay", gt=0)
        check_range(self, "momentum", ge=0, lt=1)
        check_range(self, "weight_decay", ge=0)
        check_range(self, "plateau_factor", gt=0, lt=1)
        check_range(self, "lr_milestones", ge=1)
        check_range(self, "grad_clip_value", "grad_clip_norm", gt=0, optional=True)
        check_range(self, "onecycle_pct_start", gt=0, lt=1)
        check_range(self, "onecycle_div", "onecycle_final_div", ge=1)
        check_range(self, "label_smoothing", ge=0, lt=1)


def configure_device(device: str | torch.device) -> None:
    """Per-process settings for computing on ``device``: on CUDA, ``torch.backends.cudnn.benchmark`` (cuDNN times
    the convolution algorithms for each new input shape once and keeps the fastest; the shapes of a run are
    fixed, so every later step gains). Nothing changes on the CPU. Call it once per process before computing."""
    if torch.device(device).type == "cuda":
        torch.backends.cudnn.benchmark = True


def _device_type(model: nn.Module) -> str:
    p = next(iter(model.parameters()), None)
    return p.device.type if p is not None else "cpu"


def _to_channels_last(_module: nn.Module, args: tuple) -> tuple:
    return tuple(a.contiguous(memory_format=torch.channels_last) if isinstance(a, torch.Tensor) and a.dim() == 4
                 else a for a in args)


@contextlib.contextmanager
def speed_options(model: nn.Module, channels_last: bool = False, bf16: bool = False) -> Iterator[
        Callable[[], contextlib.AbstractContextManager]]:
    """While inside: the model (and every 4-d input it is called with) in channels_last memory format. Yields a
    factory of the context to wrap each forward pass in: bfloat16 autocast when ``bf16``, else a no-op. The
    model's memory format is restored afterwards (its values, state dict and checkpoints are the same either
    way)."""
    handle = None
    if channels_last:
        model.to(memory_format=torch.channels_last)
        handle = model.register_forward_pre_hook(_to_channels_last)
    device_type = _device_type(model)
    try:
        yield ((lambda: torch.autocast(device_type=device_type, dtype=torch.bfloat16)) if bf16
               else contextlib.nullcontext)
    finally:
        if handle is not None:
            handle.remove()
            model.to(memory_format=torch.contiguous_format)


# a run's speed switch (``speed:`` in a profile): exact = float32, the papers' numerics; fast = bfloat16 autocast and
# channels_last for every cell of the run (originals, retrains, every method call, every evaluation), a declared
# deviation that makes speed-ups compare like with like
SPEEDS = {"exact": {"channels_last": False, "bf16": False}, "fast": {"channels_last": True, "bf16": True}}


@contextlib.contextmanager
def run_speed(model: nn.Module, speed: str) -> Iterator[None]:
    """One unit of a run's work (training an original, a method call, an evaluation) at the run's ``speed``:
    ``exact`` changes nothing; ``fast`` puts ``model`` (and every 4-d input it is called with) in channels_last
    and autocasts every forward pass inside to bfloat16, whatever model runs it (fit runs its backward passes
    outside the autocast). Afterwards ``model`` is in its ordinary format again; a model a method returned in its
    place goes through :func:`plain_format`."""
    if speed not in SPEEDS:
        raise ValueError(f"speed {speed!r}; valid: {', '.join(SPEEDS)}")
    opts = SPEEDS[speed]
    if not any(opts.values()):
        yield
        return
    with speed_options(model, **opts) as autocast, autocast():
        yield


def plain_format(model: nn.Module) -> nn.Module:
    """``model`` without the channels_last input hook and in the ordinary memory format (a copy made inside
    :func:`run_speed` carries both); values unchanged."""
    for key, hook in list(model._forward_pre_hooks.items()):
        if hook is _to_channels_last:
            del model._forward_pre_hooks[key]
    return model.to(memory_format=torch.contiguous_format)


def make_optimizer(params: Iterable[torch.nn.Parameter], cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                               nesterov=cfg.nesterov and cfg.momentum > 0)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}; valid: sgd, adam")


def make_scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig, total_steps: int | None = None):
    """The learning-rate schedule; ``total_steps`` (the optimiser steps of the whole fit) is needed by onecycle."""
    if cfg.scheduler == "onecycle":
        if not total_steps:
            raise ConfigError("scheduler: onecycle needs the number of steps in advance: data with a length "
                              "(a Loader) or max_steps")
        return torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=cfg.lr, total_steps=total_steps, pct_start=cfg.onecycle_pct_start, anneal_strategy="linear",
            cycle_momentum=False, div_factor=cfg.onecycle_div, final_div_factor=cfg.onecycle_final_div)
    if cfg.scheduler == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=cfg.plateau_factor,
                                                          patience=cfg.plateau_patience)
    if cfg.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, cfg.epochs))
    if cfg.scheduler == "multistep":
        return torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(cfg.lr_milestones), gamma=cfg.lr_decay)
    if cfg.scheduler == "none":
        return None
    raise ValueError(f"unknown scheduler {cfg.scheduler!r}; valid: plateau, cosine, multistep, onecycle, none")


def cross_entropy(model: nn.Module, batch: Batch) -> torch.Tensor:
    x, y = batch
    return F.cross_entropy(model(x), y)


def smoothed_cross_entropy(smoothing: float) -> LossFn:
    """fit's default loss with label smoothing ``smoothing`` (``TrainConfig.label_smoothing``)."""
    def loss(model: nn.Module, batch: Batch) -> torch.Tensor:
        x, y = batch
        return F.cross_entropy(model(x), y, label_smoothing=smoothing)

    return loss


@dataclass
class FitHistory:
    epoch_loss: list[float]
    steps: int
    stopped_early: bool


def fit(model: nn.Module, data: Any, cfg: TrainConfig, *, loss_fn: LossFn = cross_entropy,
        params: Iterable[torch.nn.Parameter] | None = None,
        stop: Callable[[nn.Module, int], bool] | None = None, check_every: int = 100,
        desc: str = "train", progress: bool = True, after_step: AfterStep | None = None) -> FitHistory:
    """Train ``model`` in place.

    data:     a Loader, or a callable returning an iterable of batches (called once per epoch).
    loss_fn:  maps (model, batch) to the scalar to *minimise* (ascent methods return a negated loss).
    params:   the parameters to optimise (default: all that require grad).
    stop:     ``stop(model, step) -> bool`` checked every ``check_every`` steps and after each epoch (at most
              once per step), with the model in eval mode and no gradients; True ends training (NegGrad's
              "no forget sample correct"). :class:`PatienceStop` makes one from a per-check rule.
    after_step: ``after_step(model, optimizer, step)`` called right after every optimiser step (``step`` = steps
              done so far), e.g. to restore hard-masked weights and their momentum (SalUn).
    """
    opt = make_optimizer(params if params is not None else [p for p in model.parameters() if p.requires_grad],
                         cfg)
    total = _total_steps(data, cfg)
    sched = make_scheduler(opt, cfg, total)
    if loss_fn is cross_entropy and getattr(cfg, "label_smoothing", 0.0):
        loss_fn = smoothed_cross_entropy(cfg.label_smoothing)
    batches_of = data if callable(data) else (lambda: data)
    bar = tqdm(total=total, desc=desc, disable=not progress, file=sys.stderr, leave=False,
               mininterval=1.0, dynamic_ncols=True)
    loop = _Loop(model, cfg, opt, loss_fn, stop, check_every, after_step, desc, bar)
    try:
        with speed_options(model, getattr(cfg, "channels_last", False), getattr(cfg, "bf16", False)) as autocast:
            loop.run(batches_of, sched, autocast)
    finally:
        bar.close()
    model.eval()
    if not all(math.isfinite(v) for v in loop.history.epoch_loss):
        raise FloatingPointError(f"{desc}: non-finite loss")
    return loop.history


def _total_steps(data: Any, cfg: TrainConfig) -> int | None:
    """The progress bar's length: the epochs' batches, capped at ``max_steps`` (None when unknown)."""
    total = len(data) * cfg.epochs if hasattr(data, "__len__") else None
    if cfg.max_steps is not None:
        total = min(total, cfg.max_steps) if total else cfg.max_steps
    return total


def _step_scheduler(sched: Any, running: float) -> None:
    if isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau):
        sched.step(running)  # upstream steps on the summed training loss of the epoch
    elif sched is not None and not isinstance(sched, torch.optim.lr_scheduler.OneCycleLR):  # onecycle: per step
        sched.step()


def defer_reads(device: torch.device) -> bool:
    """Whether fit keeps the loss sum and the non-finite flag on the device and reads them only at an epoch's end,
    a stop check or the progress bar's update (CUDA: a read is a host-device synchronisation that drains the
    queue), rather than after every step (the CPU: a read costs nothing, and a non-finite loss stops training at
    the step it appears, before its backward pass). The numbers are the same either way."""
    return device.type != "cpu"


class _Running:
    """An epoch's summed loss (float64, added in step order: the same value as a Python float sum of each step's
    loss) and whether a step's loss was non-finite, both kept where the loss is."""

    def __init__(self) -> None:
        self.sum: torch.Tensor | None = None
        self.bad: torch.Tensor | None = None
        self.n = 0

    def add(self, loss: torch.Tensor) -> None:
        v = loss.detach().to(torch.float64)
        if self.sum is None:
            self.sum = torch.zeros((), dtype=torch.float64, device=v.device)
            self.bad = torch.zeros((), dtype=torch.bool, device=v.device)
        self.sum += v
        self.bad |= ~torch.isfinite(v)
        self.n += 1

    def value(self) -> float:
        return 0.0 if self.sum is None else float(self.sum)

    def finite(self) -> bool:
        return self.bad is None or not bool(self.bad)


class _Loop:
    """One :func:`fit` call: the optimiser step, the stop checks and the bookkeeping (steps, losses, the bar)."""

    def __init__(self, model: nn.Module, cfg: TrainConfig, opt: torch.optim.Optimizer, loss_fn: LossFn,
                 stop: Callable[[nn.Module, int], bool] | None, check_every: int, after_step: AfterStep | None,
                 desc: str, bar: tqdm) -> None:
        self.model, self.cfg, self.opt, self.loss_fn = model, cfg, opt, loss_fn
        self.stop, self.check_every, self.after_step, self.desc, self.bar = stop, check_every, after_step, desc, bar
        self.history = FitHistory([], 0, False)
        self.checked: int | None = None  # the step the stop hook last saw
        self.sched: Any = None  # stepped after every optimiser step when it is a OneCycleLR
        self.running = _Running()
        self.defer = defer_reads(torch.device(_device_type(model)))
        self.read_at = 0  # the step of the last check of the non-finite flag

    def run(self, batches_of: Callable[[], Iterable], sched: Any,
            autocast: Callable[[], contextlib.AbstractContextManager]) -> None:
        """Every epoch (the scheduler stepped after each) until the epochs, ``max_steps`` or the stop hook end it."""
        self.sched = sched if isinstance(sched, torch.optim.lr_scheduler.OneCycleLR) else None
        for _epoch in range(self.cfg.epochs):
            running = self.epoch(batches_of(), autocast)
            if self.history.stopped_early or self.at_max_steps() or self.stop_now():
                return
            _step_scheduler(sched, running)

    def epoch(self, batches: Iterable, autocast: Callable[[], contextlib.AbstractContextManager]) -> float:
        """One pass over ``batches`` (ended early by ``max_steps`` or the stop hook); returns the summed loss."""
        self.model.train()
        self.running = _Running()
        for batch in batches:
            self.step(batch, autocast)
            self.bar.update(1)
            if self.history.steps % 20 == 0 and not self.bar.disable:  # a read: on CUDA only with a visible bar
                self.bar.set_postfix(loss=f"{self.running.value() / self.running.n:.3f}",
                                     lr=f"{self.opt.param_groups[0]['lr']:.2g}")
            if self.at_max_steps() or (self.history.steps % self.check_every == 0 and self.stop_now()):
                break
        self.check_finite()  # the epoch's one read of the flag and the sum (CUDA)
        running, n = self.running.value(), self.running.n
        self.history.epoch_loss.append(running / max(n, 1))
        return running

    def check_finite(self) -> None:
        """Raise if a step's loss since the last check was non-finite (on CUDA: one read of the device flag)."""
        if self.running.n and not self.running.finite():
            raise FloatingPointError(f"{self.desc}: the loss became non-finite between steps {self.read_at} and "
                                     f"{self.history.steps}; lower the learning rate")
        self.read_at = self.history.steps

    def step(self, batch: Batch, autocast: Callable[[], contextlib.AbstractContextManager]) -> float:
        with autocast():  # the forward pass and loss only; backward runs outside, as autocast asks
            loss = self.loss_fn(self.model, batch)
        if not self.defer and not torch.isfinite(loss):
            raise FloatingPointError(f"{self.desc}: loss became {loss.item()} at step {self.history.steps}; "
                                     f"lower the learning rate")
        self.running.add(loss)
        self.opt.zero_grad(set_to_none=True)
        with _no_ambient_autocast(loss.device.type):  # a run's speed switch autocasts the whole call: not backward
            loss.backward()
        if self.cfg.grad_clip_value is not None:
            nn.utils.clip_grad_value_(self.model.parameters(), self.cfg.grad_clip_value)
        if self.cfg.grad_clip_norm is not None:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip_norm)
        self.opt.step()
        if self.sched is not None:
            self.sched.step()
        self.history.steps += 1
        if self.after_step is not None:
            with torch.no_grad():
                self.after_step(self.model, self.opt, self.history.steps)

    def at_max_steps(self) -> bool:
        return self.cfg.max_steps is not None and self.history.steps >= self.cfg.max_steps

    def stop_now(self) -> bool:
        """The stop hook at the current step, at most once per step (an epoch's end right after a check does not
        check again); True ends training."""
        if self.stop is None or self.checked == self.history.steps:
            return False
        self.check_finite()  # never run a stop rule on a model whose loss went non-finite
        self.checked = self.history.steps
        self.history.stopped_early = _check(self.stop, self.model, self.history.steps)
        return self.history.stopped_early


def _no_ambient_autocast(device_type: str) -> contextlib.AbstractContextManager:
    """Autocast off for a backward pass when an enclosing autocast is on (a run's ``speed: fast`` wraps a whole
    method call in one: its forward passes run in bfloat16, its backward passes as autocast's documentation asks,
    outside)."""
    if device_type in ("cpu", "cuda") and torch.is_autocast_enabled(device_type):
        return torch.autocast(device_type=device_type, enabled=False)
    return contextlib.nullcontext()


class PatienceStop:
    """A stop hook for :func:`fit`: True once ``passes(model, step)`` held at ``patience`` consecutive checks.

    ``passes`` computes (and may trace) the rule's statistic for one check. A call at the step already checked
    returns the earlier answer without computing again. :meth:`check` runs one check outside ``fit`` (eval mode,
    no gradients): before the first step, or to log where a run that reached its maximum ended.
    """

    def __init__(self, passes: Callable[[nn.Module, int], bool], patience: int) -> None:
        if patience < 1:
            raise ValueError(f"patience must be >= 1, got {patience}")
        self.passes, self.patience = passes, patience
        self.n, self.step, self.done = 0, None, False

    def __call__(self, model: nn.Module, step: int) -> bool:
        if step == self.step:
            return self.done
        self.n = self.n + 1 if bool(self.passes(model, step)) else 0  # NaN statistics never pass upstream
        self.step, self.done = step, self.n >= self.patience
        return self.done

    def check(self, model: nn.Module, step: int) -> bool:
        return _check(self, model, step)


def _check(stop: Callable[[nn.Module, int], bool], model: nn.Module, step: int) -> bool:
    was_training = model.training
    model.eval()
    with torch.no_grad():
        done = bool(stop(model, step))
    model.train(was_training)
    return done


@torch.no_grad()
def predict_logits(model: nn.Module, loader: Iterable, progress: bool = False, desc: str = "eval",
                   cfg: TrainConfig | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (float32) and labels for every batch of ``loader`` (model in eval mode), on the CPU. ``cfg``: a
    training config whose ``channels_last``/``bf16`` options apply to these forward passes too."""
    model.eval()
    outs, ys = [], []
    with speed_options(model, getattr(cfg, "channels_last", False), getattr(cfg, "bf16", False)) as autocast:
        for x, y in tqdm(loader, desc=desc, disable=not progress, file=sys.stderr, leave=False):
            with autocast():
                out = model(x)
            outs.append(out.float().cpu())
            ys.append(y.cpu())
    if not outs:
        return torch.empty(0), torch.empty(0, dtype=torch.long)
    return torch.cat(outs), torch.cat(ys)
