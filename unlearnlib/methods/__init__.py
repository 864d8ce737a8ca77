"""Unlearning methods, registered by name.

Every method has the same signature::

    @register_method("name", Config)
    def unlearn(model, *, retain: Loader, forget: Loader, cfg: Config, device) -> nn.Module

- ``retain``/``forget`` are keyword-only so they can never be swapped silently;
- ``Config`` is a dataclass whose defaults are the method's own paper's values;
- a method does not seed, time, evaluate, write files or pick the device: the harness does;
- loss-based methods hand a loss to :func:`unlearnlib.train.fit`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch.nn as nn

from ..registry import Registry
from ..schema import check_instance, from_dict, to_dict

METHODS = Registry("method")


@dataclass(frozen=True)
class PaperSetting:
    """The setting a method's defaults were published for, declared next to its ``Config``: with the method's
    ``steps`` function it gives the optimiser steps its defaults take there, so that a table can say "17 steps here;
    about 548 in its paper's setting" instead of blaming the method for a smaller protocol."""

    what: str  # e.g. "CIFAR-10 class forgetting"
    retain: int  # retain-set size
    forget: int  # forget-set size
    source: str = ""  # where the setting is from (paper section, upstream file)

    def describe(self) -> str:
        return f"{self.what}, {self.retain:,} retain / {self.forget:,} forget"


def no_steps(cfg: Any, n_retain: int, n_forget: int) -> int:
    """The step count of a weight edit: no optimiser step, whatever the sizes."""
    return 0


def batches(n: int, batch_size: int) -> int:
    """Mini-batches of one pass over ``n`` samples (the last one smaller)."""
    return -(-int(n) // int(batch_size)) if n > 0 else 0


def capped(cfg: Any, steps: int) -> int:
    """``steps`` under the config's ``max_steps`` cap (a TrainConfig's), if it has one."""
    cap = getattr(cfg, "max_steps", None)
    return min(steps, cap) if cap is not None else steps


@dataclass(frozen=True)
class MethodSpec:
    name: str
    fn: Callable[..., nn.Module]
    Config: type
    reads_retain: bool = True  # False: the method never touches its retain loader (checked by a contract test)
    reads_forget: bool = True  # False: zero-glance methods never touch the forget loader
    needs_unseen: bool = False  # True: also called with ``unseen=`` (held-out data never used in training)
    trains_from_scratch: bool = False  # retrain: cached like the original, timing reused from the cache
    # the scenario kinds the method is defined for (data.splits.SCENARIO_KINDS); a run leaves it out of the others
    # (its table says so) instead of calling it where it cannot work
    scenarios: tuple[str, ...] = ("class", "random", "backdoor")
    summary: str = ""
    # the setting its defaults were published for, and steps(cfg, n_retain, n_forget): the optimiser steps a call
    # with ``cfg`` takes on sets of those sizes (a stopping rule's maximum where one may end it earlier). None: not
    # declared (tables then give the steps of this run alone)
    setting: PaperSetting | None = None
    steps: Callable[[Any, int, int], int] | None = None

    def config(self, opts: dict[str, Any] | None, train: Any = None, where: str = "") -> Any:
        """The method's ``Config`` from a YAML mapping of options (types, choices and its ``check()``); a method
        that trains from scratch inherits the paper's training recipe ``train`` (a ``TrainConfig``), field by
        field, under its own options."""
        opts = dict(opts or {})
        if self.trains_from_scratch and train is not None:
            opts = {**to_dict(train), **opts}
        return from_dict(self.Config, opts, where or f"methods.{self.name}")

    def __call__(self, model: nn.Module, *, retain, forget, cfg, device, unseen=None) -> nn.Module:
        check_instance(cfg, f"methods.{self.name}")  # a typo in a choice fails here too, not deep in the method
        if self.needs_unseen:
            if unseen is None:
                raise ValueError(f"method {self.name!r} needs an unseen (held-out) loader")
            return self.fn(model, retain=retain, forget=forget, unseen=unseen, cfg=cfg, device=device)
        return self.fn(model, retain=retain, forget=forget, cfg=cfg, device=device)


def register_method(name: str, config: type, **flags) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    def add(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        doc = (fn.__doc__ or "").strip().splitlines()
        METHODS.register(name, MethodSpec(name, fn, config, summary=doc[0] if doc else "", **flags))
        return fn

    return add


def base_method(name: str) -> str:
    """A run may configure variants of one method: ``deep_unlearning@no_aug`` is ``deep_unlearning`` with its
    own options, reported under the full name."""
    return name.split("@", 1)[0]


def method_spec(name: str) -> MethodSpec:
    """The registered method of a configured name or variant (``deep_unlearning@no_aug`` -> ``deep_unlearning``'s
    spec); an unknown name raises the registry's error listing the valid ones."""
    return METHODS.get(base_method(name))


def expected_steps(name: str, cfg: Any, n_retain: int, n_forget: int) -> int | None:
    """The optimiser steps a call of method ``name`` with ``cfg`` takes on a retain set of ``n_retain`` and a forget
    set of ``n_forget`` samples (its declared ``steps``; None where it declares none)."""
    spec = method_spec(name)
    return None if spec.steps is None else int(spec.steps(cfg, int(n_retain), int(n_forget)))


def forget_classes_from_retain(retain_labels, num_classes: int) -> list[int]:
    """The classes absent from the retain labels: the forgotten classes of a class-forgetting split (empty for
    random-sample forgetting, where every class keeps retain samples)."""
    import torch

    present = set(int(c) for c in torch.unique(torch.as_tensor(retain_labels)).tolist())
    return sorted(set(range(num_classes)) - present)


def _import_all() -> None:
    """Importing a module registers its methods: every module in this package is imported."""
    import importlib
    import pkgutil

    for mod in sorted(m.name for m in pkgutil.iter_modules(__path__)):
        importlib.import_module(f"{__name__}.{mod}")


_import_all()

__all__ = ["METHODS", "MethodSpec", "PaperSetting", "base_method", "method_spec", "register_method",
           "forget_classes_from_retain", "expected_steps", "no_steps", "batches", "capped"]
