"""Pieces shared by the distillation and relabelling baselines (SCRUB, bad teacher, random labels, SalUn, SSD).

Nothing here is registered. Every random draw uses torch's global generator (seeded by the harness) or an
explicit seed, so a method stays deterministic under a seed.
"""

from __future__ import annotations

import copy
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..models.common import incompetent_teacher


def frozen_copy(model: nn.Module) -> nn.Module:
    """A teacher: a deep copy of ``model``, in eval mode, with no parameter requiring a gradient."""
    teacher = copy.deepcopy(model)
    teacher.eval()
    teacher.requires_grad_(False)
    return teacher


def distill_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    r"""SCRUB's distance (RepDistiller ``DistillKL``): :math:`\tau^2\,\mathrm{KL}(p_T \,\|\, p_S)` with
    :math:`p = \mathrm{softmax}(z/\tau)`, summed over classes and averaged over the batch. Teacher -> student:
    the expectation is under the teacher's distribution."""
    log_ps = F.log_softmax(student_logits / temperature, dim=1)
    pt = F.softmax(teacher_logits / temperature, dim=1)
    return F.kl_div(log_ps, pt, reduction="sum") * temperature ** 2 / student_logits.shape[0]


def class_major(labels: np.ndarray) -> np.ndarray:
    """Positions sorted by class, dataset order within a class (how SSD's class-wise lists are built)."""
    return np.argsort(np.asarray(labels), kind="stable")


def mixed_batches(parts: Sequence[tuple[object, np.ndarray]], batch_size: int, augment: bool, *,
                  shuffle: bool = True) -> Callable[[], Iterator[tuple[torch.Tensor, ...]]]:
    """A callable for :func:`unlearnlib.train.fit`: each epoch, the samples of every ``(loader, positions)``
    part, shuffled together with torch's global generator (or in the given order, ``shuffle=False``), cut into
    batches of ``batch_size`` (the last one smaller). Yields ``(x, y, part, index)``: sample ``i`` is element
    ``index[i]`` of part ``part[i]``'s ``positions`` (bad teacher's forget flag; random labels' fixed labels)."""
    sizes = [len(p) for _, p in parts]
    offsets = np.cumsum([0, *sizes])
    n = int(offsets[-1])

    def epoch() -> Iterator[tuple[torch.Tensor, ...]]:
        order = torch.randperm(n).numpy() if shuffle else np.arange(n)
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            xs, ys, tags, where = [], [], [], []
            for k, (loader, positions) in enumerate(parts):
                mine = idx[(idx >= offsets[k]) & (idx < offsets[k + 1])] - offsets[k]
                if len(mine):
                    x, y = loader.batch(np.asarray(positions)[mine], augment=augment)
                    xs.append(x)
                    ys.append(y)
                    tags.append(torch.full((len(mine),), k, dtype=torch.long, device=y.device))
                    where.append(torch.as_tensor(mine, dtype=torch.long))
            yield torch.cat(xs), torch.cat(ys), torch.cat(tags), torch.cat(where)

    return epoch


def random_other_labels(y: torch.Tensor, num_classes: int, exclude: torch.Tensor | None = None) -> torch.Tensor:
    """Uniform random labels in [0, num_classes) that differ from ``exclude`` (default: ``y`` itself), drawn with
    torch's global generator on the CPU: shift by a uniform offset in 1..C-1 modulo C."""
    ref = (y if exclude is None else exclude).cpu()
    offset = torch.randint(1, num_classes, ref.shape)
    return ((ref + offset) % num_classes).to(y.device)


def random_any_labels(y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Uniform random labels in [0, num_classes), the true class included (SalUn's ``torch.randint``)."""
    return torch.randint(0, num_classes, y.shape).to(y.device)


__all__ = ["frozen_copy", "incompetent_teacher", "distill_kl", "class_major", "mixed_batches",
           "random_other_labels", "random_any_labels"]
