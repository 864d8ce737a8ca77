r"""ZRF, the Zero Retrain Forgetting score (Chundawat, Tarun, Mandal, Kankanhalli, AAAI 2023):

.. math::  \mathrm{ZRF} = 1 - \frac{1}{n_f} \sum_{x \in D_f} \mathrm{JS}\big(p_u(x),\, p_{T_d}(x)\big),\qquad
           \mathrm{JS}(p, q) = \tfrac12 \mathrm{KL}(p \,\|\, m) + \tfrac12 \mathrm{KL}(q \,\|\, m),\ m = \tfrac{p+q}{2}

with :math:`T_d` the incompetent (randomly initialised) teacher and natural logarithms (JS in [0, ln 2], so ZRF in
[1 - ln 2, 1]; 1: the model answers on the forget set like a random network). The JS divergence is the true one,
per sample, then averaged (evaluation pitfall 4): the [BT]/[SSD]/SUPREME helper computes
``F.kl_div(log p, m)`` with the default ``mean`` reduction, i.e. KL(m || p) averaged over all elements (scaled by
1 / #classes), which is not the divergence the paper defines.

:math:`T_d` is the bad-teacher method's own incompetent teacher: the model's architecture re-initialised by
:func:`unlearnlib.models.common.incompetent_teacher` from the seed ``metrics.zrf_teacher_seed`` (default: bad
teacher's ``teacher_seed`` default, 0), so a bad-teacher run is scored against the very network it distilled from.
The forget set is the forget *training* samples (test-time transform). Needs the model: NaN without a
:class:`~unlearnlib.metrics.evaluation.ModelContext` (the original's row).
"""

from __future__ import annotations

import numpy as np
import torch

from ..data.splits import Split
from ..models.common import incompetent_teacher
from .evaluation import Evaluation
from .spec import register_metric


def js_divergence(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Per-sample Jensen-Shannon divergence (natural log) between the rows of two probability matrices, in
    float64; 0 log 0 = 0."""
    p, q = p.double(), q.double()
    m = (p + q) / 2

    def kl(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.where(a > 0, a * (torch.log(a) - torch.log(b)), torch.zeros_like(a)).sum(1)

    return 0.5 * kl(p, m) + 0.5 * kl(q, m)


def zrf_score(p_model: torch.Tensor, p_teacher: torch.Tensor) -> float:
    """1 - mean over samples of JS(p_model, p_teacher)."""
    if len(p_model) == 0:
        return float("nan")
    return float(1.0 - js_divergence(p_model, p_teacher).mean())


# needs the model (its architecture, for the teacher): not computed for the original
@register_metric("zrf", label="ZRF score", unit="", needs={"models"}, on_original=False)
def zrf(ev: Evaluation, split: Split, cfg, ctx) -> float:
    """ZRF: 1 - mean Jensen-Shannon divergence to a seeded incompetent teacher on the forget samples."""
    if ctx is None or ctx.forget is None or ctx.model is None:
        return float("nan")
    from ..train import predict_logits

    seed = cfg.zrf_teacher_seed
    loader = ctx.forget.with_options(shuffle=False, augment=False)
    teacher = incompetent_teacher(ctx.model, seed)
    t_logits, t_labels = predict_logits(teacher, loader)
    m_logits, m_labels = ev.train(np.asarray(loader.indices))
    if not torch.equal(t_labels.cpu(), m_labels.cpu()):
        raise ValueError("zrf: the forget loader and the evaluation disagree on the forget samples")
    return zrf_score(torch.softmax(m_logits.double(), 1), torch.softmax(t_logits.double(), 1))

__all__ = ["js_divergence", "zrf_score"]
