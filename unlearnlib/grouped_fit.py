"""Training N models at once: N single models packed into one :class:`~unlearnlib.models.grouped.GroupedNet`,
trained by THE training loop (:func:`unlearnlib.train.fit`) on their own batches, and unpacked.

Each member keeps everything it would have alone: its initialisation (the caller builds each single model
exactly as it would for one training), its data order and augmentation draws (its own loader, with its own seed,
iterated in lockstep with the others), and its optimiser: the loss is the sum of the members' losses, so each
member's gradient is its own, and the element-wise optimisers (SGD with momentum, Nesterov and weight decay;
Adam) on the grouped parameters are N separate optimisers. What does not decompose per member is refused with
the reason (:func:`recipe_reason`): clipping by the gradient norm (the norm over every member at once), and the
plateau scheduler once it could act (it steps on the epoch's summed loss, the members' sum, not each one's).
"""

from __future__ import annotations

from typing import Iterator, Sequence

import torch
import torch.nn as nn

from .models.grouped import GROUPABLE, GroupedNet, grouped_cross_entropy
from .train import FitHistory, TrainConfig, fit, run_speed


def recipe_reason(cfg: TrainConfig) -> str | None:
    """None when ``fit`` on a grouped network equals N separate ``fit`` calls under ``cfg``; else why not."""
    if cfg.grad_clip_norm is not None:
        return "grad_clip_norm clips by the norm over all parameters, i.e. over all members together"
    # ReduceLROnPlateau lowers the lr after more than `patience` bad epochs: the first step sets the best loss, so
    # the lr can first change for epoch patience + 3; up to patience + 2 epochs it never acts and summing is exact
    if cfg.scheduler == "plateau" and cfg.epochs > cfg.plateau_patience + 2:
        return (f"the plateau scheduler (patience {cfg.plateau_patience}, {cfg.epochs} epochs) steps on the "
                f"epoch's loss, which for a grouped network is the members' sum, not each member's")
    return None


def group_reason(model: str, cfg: TrainConfig) -> str | None:
    """None when ``model`` trained under ``cfg`` can be trained as a grouped network; else why not."""
    if model not in GROUPABLE:
        return f"model {model!r} is not supported by the grouped network (supported: {', '.join(GROUPABLE)})"
    return recipe_reason(cfg)


class MemberBatches:
    """N loaders iterated in lockstep: each step yields ``(x, y)`` with ``x[j], y[j]`` member ``j``'s own batch (its
    loader's order and augmentation draws, as if iterated alone). The loaders must have equal lengths and batch
    sizes (the same data, each with its own seed)."""

    def __init__(self, loaders: Sequence) -> None:
        if not loaders:
            raise ValueError("MemberBatches: no loaders given")
        sizes = {(len(ld), ld.num_samples, ld.batch_size) for ld in loaders}
        if len(sizes) != 1:
            raise ValueError(f"MemberBatches: the members' loaders differ in (batches, samples, batch size): "
                             f"{sorted(sizes)}; grouped members train on the same data")
        self.loaders = list(loaders)

    def __len__(self) -> int:
        return len(self.loaders[0])

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for batches in zip(*self.loaders, strict=True):
            yield torch.stack([b[0] for b in batches]), torch.stack([b[1] for b in batches])


# the grouped network's memory format in the harness (part of the grouped members' cell keys): channels_last ran the
# grouped ResNet-18 step (16 members, width 8, 8x8 digits) 10-20 % faster on one CPU thread in interleaved checks on
# a busy machine; benchmarks/grouped.py measures both formats (its grouped and grouped_cl rows) for the final word
CHANNELS_LAST = True


def fit_members(models: Sequence[nn.Module], loaders: Sequence, cfg: TrainConfig, *, desc: str = "grouped",
                progress: bool = True, channels_last: bool = CHANNELS_LAST,
                speed: str = "exact") -> tuple[list[nn.Module], FitHistory]:
    """Train ``models`` (N single models, one architecture, each initialised as it would be alone) on their own
    ``loaders`` as one grouped network; returns the trained members (new single models of the same class, eval
    mode, on the models' device, default memory format) and the grouped fit's history (its losses are the members'
    sums). ``channels_last``: the grouped network's memory format (same values). ``speed``: the run's speed switch
    (:func:`~unlearnlib.train.run_speed`: ``fast`` trains the grouped network under bf16 autocast, as every cell)."""
    if len(models) != len(loaders):
        raise ValueError(f"fit_members: {len(models)} models but {len(loaders)} loaders")
    reason = recipe_reason(cfg)
    if reason is not None:
        raise ValueError(f"fit_members: this recipe cannot be trained as a grouped network: {reason}")
    net = GroupedNet.from_members(models, channels_last=channels_last)
    with run_speed(net, speed):
        history = fit(net, MemberBatches(loaders), cfg, loss_fn=grouped_cross_entropy, desc=desc, progress=progress)
    return [net.member(i).eval() for i in range(net.n)], history
