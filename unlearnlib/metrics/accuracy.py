"""Accuracies as Kodge et al. pool them: micro-accuracy over all samples of the retain classes
(not a mean of per-class accuracies), and over all samples of the forget classes."""

from __future__ import annotations

import numpy as np
import torch


def forget_retain_accuracy(logits: torch.Tensor, labels: torch.Tensor, forget_classes) -> tuple[float, float]:
    """(forget accuracy, retain accuracy) in percent; NaN for an empty group."""
    pred = logits.argmax(1)
    is_forget = torch.isin(labels, torch.as_tensor(list(forget_classes), dtype=labels.dtype))
    correct = (pred == labels)

    def pct(mask: torch.Tensor) -> float:
        n = int(mask.sum())
        return float("nan") if n == 0 else 100.0 * int(correct[mask].sum()) / n

    return pct(is_forget), pct(~is_forget)


def class_accuracy(logits: torch.Tensor, labels: torch.Tensor, num_classes: int) -> np.ndarray:
    """Per-class accuracy in percent (NaN for classes without samples)."""
    pred = logits.argmax(1)
    out = np.full(num_classes, np.nan)
    for c in range(num_classes):
        m = labels == c
        if int(m.sum()):
            out[c] = 100.0 * float((pred[m] == c).float().mean())
    return out


def true_class_probability(logits: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    """softmax probability of each sample's true label (float64)."""
    p = torch.softmax(logits.double(), dim=1)
    return p.gather(1, labels.view(-1, 1)).squeeze(1).numpy()
