"""Per-example forgetting scores from stored logits: NeurIPS-2023 ε / F, U-LiRA, KLOM.

Pure functions on numpy arrays (numpy and scipy only, no torch, no device): the inputs are the per-model outputs a
run saved, stacked on a leading *model* axis. Definitions follow ``shared/evaluation.md`` §2-§4; each function names
its source. Layout everywhere: ``(N, n)`` = N models x n examples (the same n examples, in the same order, on both
sides of a comparison).

Which N goes where (the reason for the *floor* functions): every score here is a finite-sample statistic of two
N-sample distributions, so two samples of the *same* distribution do not score the ideal value at small N
(F < 1, KLOM > 0, U-LiRA best-threshold accuracy > 0.5). Report each score beside its floor computed at the same N:

* :func:`forgetting_quality_floor` - F of one retrain sample against a second, independent retrain sample;
* :func:`klom_floor` - KLOM of one oracle sample against a second, independent oracle sample.

The NeurIPS F comes in two variants that differ only in which models the caller stacks (``evaluation.md`` §2,
caveat): *conditional* (one original, N unlearning seeds; challenge-faithful, meaningful for stochastic methods only,
since a deterministic method gives N identical outputs and hits the peakiness guard, ε = 50) and *marginal* (N
originals trained with different seeds, each unlearned once). Label which one a number is.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from scipy import stats

__all__ = [
    "DELTA", "EPSILON_CAP", "NUM_THRESHOLDS_PER_UNIT", "CONFIDENCE_GUARD", "POOLED_VARIANCE_BELOW",
    "logit_confidence", "per_example_epsilon", "forgetting_quality", "forget_score", "forgetting_quality_floor",
    "neurips_score", "ulira", "klom", "klom_floor", "summarize",
]

# NeurIPS-2023 challenge constants (google-deepmind/unlearning_evaluation, metric.py)
DELTA = 1e-5
EPSILON_CAP = 50.0
NUM_THRESHOLDS_PER_UNIT = 100
_BUFFER = 2.0  # double-threshold family: search +-2 around the peaky sample (metric.py, ``buffer``)
_PEAKY_RATIO = 0.01  # peakiness guard: (smaller range) / (larger range) below this -> ε = cap
CONFIDENCE_GUARD = 1e-45  # added inside both logs of the logit-scaled confidence (metric.py, LiRA's score.py)
# U-LiRA: pooled (fixed) variance when either side has fewer models than this (see :func:`ulira`)
POOLED_VARIANCE_BELOW = 32


# ---------------------------------------------------------------------------------------------------------------
# logit-scaled confidence = margin
# ---------------------------------------------------------------------------------------------------------------

def logit_confidence(logits, labels, *, guard: float | None = CONFIDENCE_GUARD) -> np.ndarray:
    """Logit-scaled confidence φ = ln p_y − ln Σ_{j≠y} p_j of the true class; the same number is KLOM's margin.

    Definitions: NeurIPS-2023 ``compute_logit_scaled_confidence`` (google-deepmind/unlearning_evaluation,
    metric.py, adapted from LiRA, tensorflow/privacy research/mi_lira_2021/score.py); KLOM's margin
    m = z_y − logsumexp_{j≠y} z_j (Georgiev et al. 2024, App. E.1; EasyDUB ``get_margins_from_multimodel_logits``).
    The two are equal: p_j = e^{z_j} / Σ_k e^{z_k}, so ln p_y − ln Σ_{j≠y} p_j = z_y − ln Σ_{j≠y} e^{z_j}.

    Args:
        logits: ``(n, C)`` for one model or ``(N, n, C)`` for N models (any float dtype; computed in float64).
        labels: ``(n,)`` true labels (shared by all models), or an array broadcastable to the leading shape.
        guard: ``1e-45`` (default) reproduces the challenge's computation: float64, subtract the row max, softmax,
            ``ln(p_y + 1e-45) − ln(Σ_{j≠y} p_j + 1e-45)``; the guard bounds φ to about ±103.6 (= ln 1e-45) and moves
            values by less than 0.03 while |φ| ≤ 100 (KLOM's clip). ``None`` or ``0`` gives the exact margin
            z_y − logsumexp_{j≠y} z_j (EasyDUB's formula), unbounded, ``-inf`` only when C = 1.

    Returns:
        float64 array of shape ``logits.shape[:-1]``: ``(n,)`` or ``(N, n)``.

    Deviation from the challenge code, on purpose: it subtracts the max and exponentiates in the input dtype
    (float32 logits -> float32 exp) before casting to float64, and it modifies its input in place. Here the logits
    are cast to float64 first and never modified, so values differ from it by float32 rounding (~1e-6).
    """
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim < 2:
        raise ValueError(f"logits must be (n, C) or (N, n, C), got shape {z.shape}")
    y = np.asarray(labels)
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be integers, got dtype {y.dtype}")
    y = np.broadcast_to(y, z.shape[:-1])
    if y.size and (y.min() < 0 or y.max() >= z.shape[-1]):
        raise ValueError(f"labels must lie in [0, {z.shape[-1]})")
    true_mask = np.zeros(z.shape, dtype=bool)
    np.put_along_axis(true_mask, y[..., None], True, axis=-1)
    z_y = np.take_along_axis(z, y[..., None], axis=-1)[..., 0]
    if guard:
        shifted = z - z.max(axis=-1, keepdims=True)
        p = np.exp(shifted)
        p /= p.sum(axis=-1, keepdims=True)
        p_true = np.take_along_axis(p, y[..., None], axis=-1)[..., 0]
        p_wrong = np.where(true_mask, 0.0, p).sum(axis=-1)
        return np.log(p_true + guard) - np.log(p_wrong + guard)
    others = np.where(true_mask, -np.inf, z)
    m = others.max(axis=-1, keepdims=True)
    finite_m = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore"):
        lse = np.log(np.exp(others - finite_m).sum(axis=-1)) + finite_m[..., 0]
    return z_y - lse


# ---------------------------------------------------------------------------------------------------------------
# NeurIPS-2023 per-example ε and forgetting quality F
# ---------------------------------------------------------------------------------------------------------------

def _as_model_by_example(a, name: str) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"{name} must be (N models, n examples), got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} has non-finite values")
    return a


def _two_sides(a, b, names: tuple[str, str], min_models: int, why: str) -> tuple[np.ndarray, np.ndarray]:
    """Both ``(N, n)`` arrays checked: finite, the same examples, at least ``min_models`` models on each side."""
    a, b = _as_model_by_example(a, names[0]), _as_model_by_example(b, names[1])
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"{names[0]} has {a.shape[1]} examples, {names[1]} {b.shape[1]}")
    if min(a.shape[0], b.shape[0]) < min_models:
        raise ValueError(why)
    return a, b


@lru_cache(maxsize=64)
def _epsilon_table(n_pos: int, n_neg: int, delta: float) -> np.ndarray:
    """ε of a decision rule as a function of (true positives a, false positives b): ``table[a, b]``.

    FPR = b/n_neg, FNR = (n_pos − a)/n_pos. Both 0 -> +inf (perfect separation); exactly one 0 -> NaN (the rule is
    discarded: too few samples); otherwise max(0, max(ln(1−δ−FPR) − ln FNR, ln(1−δ−FNR) − ln FPR)), where a log of
    a negative number (FPR or FNR = 1) leaves the other term (NaN if both are).
    """
    a = np.arange(n_pos + 1, dtype=np.float64)[:, None]
    b = np.arange(n_neg + 1, dtype=np.float64)[None, :]
    fpr = b / n_neg
    fnr = (n_pos - a) / n_pos
    with np.errstate(divide="ignore", invalid="ignore"):
        t1 = np.log(1 - delta - fpr) - np.log(fnr)
        t2 = np.log(1 - delta - fnr) - np.log(fpr)
        eps = np.fmax(t1, t2)  # NaN only where both are NaN
    eps = np.where(eps < 0, 0.0, eps)  # clip below at 0; NaN stays NaN
    fpr_zero, fnr_zero = (b == 0), (a == n_pos)
    eps = np.where(fpr_zero & fnr_zero, np.inf, np.where(fpr_zero ^ fnr_zero, np.nan, eps))
    eps.setflags(write=False)
    return eps


def _grid_count_le(start: np.ndarray, stop: np.ndarray, num: int, v: np.ndarray) -> np.ndarray:
    """``c[j, i] = #{k : g_jk <= v_i}`` for the rows ``g_j = np.linspace(start_j, stop_j, num)`` (num >= 2), without
    building them: numpy's linspace is g_jk = k * step_j + start_j for k < num − 1 and g_j,num−1 = stop_j, with
    step_j = (stop_j − start_j) / (num − 1); the largest such k <= v is estimated by division and then settled by
    evaluating that very expression at the neighbours (the estimate is off by at most one)."""
    start, stop = start[:, None], stop[:, None]
    step = (stop - start) / (num - 1)
    v = v[None, :]
    k = np.clip(np.floor((v - start) / step), -1, num - 2)
    for _ in range(2):  # settle: k = max{k in [0, num − 2] : k * step + start <= v}, or −1
        up = (k < num - 2) & ((k + 1) * step + start <= v)
        down = (k >= 0) & (k * step + start > v)
        k = k + up - down
    return (k + 1).astype(np.int64) + (stop <= v)


def _epsilon_one(pos: np.ndarray, neg: np.ndarray, delta: float) -> float:
    """ε of one example (before the final clip), given the positive (larger-median) and negative samples;
    the peakiness guard is handled by the caller. Every rule of both families is evaluated, exactly; see
    :func:`_epsilon_one_grid` for the same computation written out rule by rule."""
    pos_sorted, neg_sorted = np.sort(pos), np.sort(neg)
    # single threshold: predict positive iff φ >= t, t on the pooled [min, max] at 100 per unit
    lo = min(pos_sorted[0], neg_sorted[0])
    hi = max(pos_sorted[-1], neg_sorted[-1])
    t = np.linspace(lo, hi, int(np.ceil((hi - lo) * NUM_THRESHOLDS_PER_UNIT)))
    tp = len(pos) - np.searchsorted(pos_sorted, t, side="left")
    fp = len(neg) - np.searchsorted(neg_sorted, t, side="left")
    single = _epsilon_table(len(pos), len(neg), delta)[tp, fp]

    # double threshold: predict the peakier (smaller-range) sample iff t_L <= φ <= t_R; ties in range -> the
    # negative sample is the peaky one (metric.py swaps when pos range >= neg range)
    if np.ptp(pos) >= np.ptp(neg):
        peaky, other = neg_sorted, pos_sorted
    else:
        peaky, other = pos_sorted, neg_sorted
    width = peaky[-1] - peaky[0]
    r_min = peaky[0] + width - _BUFFER
    r_max = peaky[-1] + _BUFFER
    right = np.linspace(r_min, r_max, num=int(np.ceil((r_max - r_min) * NUM_THRESHOLDS_PER_UNIT)))
    n_left = int(np.ceil(2 * _BUFFER * NUM_THRESHOLDS_PER_UNIT))
    # a rule (t_L, t_R) counts #(φ <= t_R) − #(φ < t_L) of each sample (0 if t_L > t_R). Along one row of t_L
    # (fixed t_R) the counts only change at data points: with the pooled sorted sample v_1 <= ... <= v_M and
    # c_i = #{t_L in the row : t_L <= v_i}, the rules of the row see exactly the "#pooled below t_L" values i
    # with c_i < c_{i+1} (c_0 = 0, c_{M+1} = n_left), so each distinct rule outcome is evaluated once.
    pooled = np.concatenate([peaky, other])
    order = np.argsort(pooled, kind="stable")
    v = pooled[order]
    cum_peaky = np.concatenate([[0], np.cumsum(order < len(peaky))])  # peaky among the i smallest, i = 0..M
    c = _grid_count_le(right - width - _BUFFER, right - width + _BUFFER, n_left, v)  # (n_right, M)
    edges = np.concatenate([np.zeros((len(right), 1), np.int64), c, np.full((len(right), 1), n_left)], axis=1)
    seen = edges[:, :-1] < edges[:, 1:]  # (n_right, M + 1): "i pooled values below t_L" occurs in the row
    upto_peaky = np.searchsorted(peaky, right, side="right")[:, None]
    upto_other = np.searchsorted(other, right, side="right")[:, None]
    a = np.maximum(upto_peaky - cum_peaky[None, :], 0)
    b = np.maximum(upto_other - (np.arange(len(v) + 1) - cum_peaky)[None, :], 0)
    table = _epsilon_table(len(peaky), len(other), delta)
    double = table[a[seen], b[seen]]

    best = max(np.nanmax(single, initial=-np.inf), np.nanmax(double, initial=-np.inf))
    if best == -np.inf:  # no rule survived (upstream: AssertionError)
        same_point_mass = np.ptp(pos) == 0 and np.ptp(neg) == 0 and pos[0] == neg[0]
        return 0.0 if same_point_mass else float("nan")
    return float(best)


def _epsilon_one_grid(pos: np.ndarray, neg: np.ndarray, delta: float) -> float:
    """:func:`_epsilon_one` written out rule by rule, as upstream: both threshold grids built and every rule
    counted (about 160k double-threshold rules; several times slower). Kept to test the fast path against."""
    pos_sorted, neg_sorted = np.sort(pos), np.sort(neg)
    lo = min(pos_sorted[0], neg_sorted[0])
    hi = max(pos_sorted[-1], neg_sorted[-1])
    t = np.linspace(lo, hi, int(np.ceil((hi - lo) * NUM_THRESHOLDS_PER_UNIT)))
    tp = (pos[:, None] >= t[None, :]).sum(axis=0)
    fp = (neg[:, None] >= t[None, :]).sum(axis=0)
    single = _epsilon_table(len(pos), len(neg), delta)[tp, fp]
    if np.ptp(pos) >= np.ptp(neg):
        peaky, other = neg, pos
    else:
        peaky, other = pos, neg
    width = peaky.max() - peaky.min()
    r_min = peaky.min() + width - _BUFFER
    r_max = peaky.max() + _BUFFER
    right = np.linspace(r_min, r_max, num=int(np.ceil((r_max - r_min) * NUM_THRESHOLDS_PER_UNIT)))
    n_left = int(np.ceil(2 * _BUFFER * NUM_THRESHOLDS_PER_UNIT))
    left = np.concatenate([np.linspace(tr - width - _BUFFER, tr - width + _BUFFER, num=n_left) for tr in right])
    right = np.repeat(right, n_left)

    def inside(x):
        return ((left[None, :] <= x[:, None]) & (x[:, None] <= right[None, :])).sum(axis=0)

    double = _epsilon_table(len(peaky), len(other), delta)[inside(peaky), inside(other)]
    best = max(np.nanmax(single, initial=-np.inf), np.nanmax(double, initial=-np.inf))
    if best == -np.inf:
        same_point_mass = np.ptp(pos) == 0 and np.ptp(neg) == 0 and pos[0] == neg[0]
        return 0.0 if same_point_mass else float("nan")
    return float(best)


def per_example_epsilon(unlearned, retrained, delta: float = DELTA) -> np.ndarray:
    """Per-example ε lower bound of the NeurIPS-2023 Machine Unlearning Challenge (``evaluation.md`` §2, steps 3-6).

    Source: google-deepmind/unlearning_evaluation, metric.py (``compute_forget_score_from_confs`` /
    ``_get_epsilons`` and the single/double threshold rate functions), reproduced rule for rule:

    1. positive class per example = the sample with the larger median (retrained on a strict ``>``, else unlearned);
    2. peakiness guard: if (smaller range)/(larger range) < 0.01 (range = max − min), ε = 50 and stop;
    3. single-threshold rules: predict positive iff φ ≥ t, t on ``ceil(100 (max − min))`` evenly spaced points
       from the pooled min to the pooled max;
    4. double-threshold rules: predict the peakier (smaller-range) sample iff t_L ≤ φ ≤ t_R; t_R on
       ``ceil(100 * span)`` points from ``peaky.min + range − 2`` to ``peaky.max + 2``; for each t_R, 400 values of
       t_L from ``t_R − range − 2`` to ``t_R − range + 2`` (``np.linspace`` in float64, as upstream, bit for bit);
    5. per rule: FPR = FNR = 0 -> ∞; exactly one of them 0 -> rule discarded; otherwise
       max(0, ln(1−δ−FPR) − ln FNR, ln(1−δ−FNR) − ln FPR);
    6. ε = max over the surviving rules, clipped to [0, 50] (so perfect separation gives 50).

    Every rule is evaluated exactly, but not one by one: along a row of t_L values the counts change only at data
    points, so each distinct outcome of a row is scored once (same result as the rule-by-rule
    ``_epsilon_one_grid``, which the tests check; about 1 ms per example instead of ~10).

    Differences from the upstream code:

    * rates and ε in float64 (upstream: float32 rates and logs, so its ε carry ~1e-7 relative rounding);
    * single-threshold grid in float64 (``np.linspace``): upstream's ``torch.linspace`` returns the default dtype,
      float32, so its thresholds are rounded to float32 (< 4e-6 for |φ| ≤ 50) and computed differently by the CPU
      and the CUDA kernel; a count can differ only for a confidence that close to a threshold (the rounded end
      points give rules that score 0 or are discarded either way);
    * an example where no rule survives stops upstream (``assert thr_eps`` fails); here ε = 0 if both samples are
      the same point mass (identical distributions; e.g. confidences saturated at the guard under every model),
      NaN otherwise. That assertion also raises, wrongly, whenever *more than one* rule survives (the truth value
      of a numpy array), i.e. on essentially every input: upstream runs only with it fixed;
    * the two samples may have different N (upstream needs equal N).

    Args:
        unlearned: ``(N_u, n)`` logit-scaled confidences (:func:`logit_confidence`) of the n forget examples under
            N_u unlearned models.
        retrained: ``(N_r, n)`` the same under N_r retrained models.
        delta: δ of (ε, δ)-unlearning (challenge: 1e-5).

    Returns:
        ``(n,)`` float64 ε per example in [0, 50] (NaN where no rule survives, see above).
    """
    u, r = _two_sides(unlearned, retrained, ("unlearned", "retrained"), 1, "need at least one model on each side")
    retrain_is_positive = np.median(r, axis=0) > np.median(u, axis=0)
    u_range, r_range = np.ptp(u, axis=0), np.ptp(r, axis=0)
    pos_range = np.where(retrain_is_positive, r_range, u_range)
    neg_range = np.where(retrain_is_positive, u_range, r_range)
    largest = np.where(pos_range > neg_range, pos_range, neg_range)
    smallest = np.where(pos_range > neg_range, neg_range, pos_range)
    with np.errstate(divide="ignore", invalid="ignore"):
        peaky = smallest / largest < _PEAKY_RATIO  # 0/0 = NaN -> False, as upstream
    eps = np.full(u.shape[1], EPSILON_CAP)
    for i in np.flatnonzero(~peaky):
        pos, neg = (r[:, i], u[:, i]) if retrain_is_positive[i] else (u[:, i], r[:, i])
        eps[i] = _epsilon_one(pos, neg, float(delta))
    return np.clip(eps, 0.0, EPSILON_CAP)


def forgetting_quality(eps, n_models: int) -> float:
    """NeurIPS-2023 forgetting quality F from per-example ε (``evaluation.md`` §2, step 7).

    Bucket k = [0.5 k, 0.5 k + 0.5) earns 2^−k points; buckets exist while their upper edge ≤ ⌈ln(N − 1)⌉
    (N = 512: 14 buckets, ε ≥ 7 earns 0; N = 32: ⌈ln 31⌉ = 4, 8 buckets; N = 2: none, F = 0). F = mean points over
    the examples, in [0, 1]. Source: metric.py ``compute_forget_score_from_confs``, where N is the number of
    *unlearned* models.

    Args:
        eps: per-example ε (:func:`per_example_epsilon`).
        n_models: N, the number of unlearned models the ε came from.

    Returns:
        F (NaN if any ε is NaN; upstream would have stopped before).
    """
    e = np.asarray(eps, dtype=np.float64).ravel()
    if e.size == 0:
        raise ValueError("no examples")
    if np.isnan(e).any():
        return float("nan")
    if n_models < 2:
        return 0.0
    n_buckets = int(2 * math.ceil(math.log(n_models - 1)))  # upper edges 0.5, 1.0, ..., ⌈ln(N−1)⌉
    k = np.floor(2 * np.maximum(e, 0.0))  # e < 0.5 (k + 1)  <=>  k = floor(2 e), exactly (2 e is exact)
    points = np.where(k < n_buckets, np.exp2(-np.minimum(k, 1074.0)), 0.0)
    return float(points.mean())


def forget_score(unlearned, retrained, delta: float = DELTA) -> float:
    """F of unlearned vs retrained confidences, ``(N, n)`` each: :func:`forgetting_quality` of
    :func:`per_example_epsilon`, with N = the number of unlearned models (upstream
    ``compute_forget_score_from_confs``)."""
    u = np.asarray(unlearned)
    return forgetting_quality(per_example_epsilon(u, retrained, delta), u.shape[0])


def forgetting_quality_floor(retrained, retrained_independent, delta: float = DELTA) -> float:
    """Retrain-vs-retrain F at the same N: the value a perfect unlearning method (an exact retrain) scores.

    Identical distributions do not score F = 1 at small N: ε is a maximum over ~160k rules, and with N models a
    rule with FPR = 1/N and TPR = k/N already gives ε = ln k. Two samples of one Gaussian per example score
    F ≈ 0.15-0.18 at N = 16 and 32 (median ε ≈ 1.4-1.6); the floor, not 1, is the reference value at such N.
    Compare the F of an unlearning method, computed from N unlearned and N retrained models, with this floor
    computed from **two independent retrain samples of that same N each** (so 2N retrained models in all):
    ``retrained`` may be the very sample used against the unlearned models, ``retrained_independent`` must be N
    further retrains (other seeds), never a split of the first sample (that would halve N and change the bucket
    cap ⌈ln(N − 1)⌉ as well as the noise).

    Args:
        retrained: ``(N, n)`` confidences of N retrained models (the first argument plays "unlearned").
        retrained_independent: ``(N, n)`` confidences of N other, independently trained retrained models.

    Returns:
        F of ``retrained`` vs ``retrained_independent``.
    """
    a, b = np.asarray(retrained), np.asarray(retrained_independent)
    if a.shape != b.shape:
        raise ValueError(f"the floor needs two retrain samples of the same N and examples: {a.shape} vs {b.shape}")
    return forget_score(a, b, delta)


def neurips_score(forget_quality: float, ra_u, ra_r, ta_u, ta_r) -> float:
    """Final NeurIPS-2023 score F × (RA_u / RA_r) × (TA_u / TA_r) (google-deepmind/unlearning_evaluation, main.py).

    Each accuracy may be a number or the per-model accuracies (retain RA, test TA; unlearned u, retrained r), which
    are averaged over the models first, as upstream. Units cancel (percent or fraction, but the same for u and r).
    """
    return float(forget_quality) * (float(np.mean(ra_u)) / float(np.mean(ra_r))) * (
        float(np.mean(ta_u)) / float(np.mean(ta_r)))


# ---------------------------------------------------------------------------------------------------------------
# U-LiRA
# ---------------------------------------------------------------------------------------------------------------

def _loo_moments(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-example mean and unbiased variance of x ``(K, n)``: full sample, and leaving out each model in turn
    (``(K, n)``: row m = statistics of the other K − 1 models). Centred first, so large |φ| loses no precision."""
    k = x.shape[0]
    mean = x.mean(axis=0)
    d = x - mean
    ss = (d * d).sum(axis=0)
    var = ss / (k - 1)
    loo_mean_d = -d / (k - 1)  # mean of the others, relative to the full mean
    loo_ss = ss - d * d - (k - 1) * loo_mean_d ** 2  # Σ over the others of (x − their mean)²
    loo_var = np.maximum(loo_ss, 0.0) / (k - 2)
    return mean, var, mean + loo_mean_d, loo_var


def _gauss_logpdf(x, mean, var):
    return -0.5 * (np.log(2 * np.pi * var) + (x - mean) ** 2 / var)


def _roc_points(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(FPR, TPR) of "predict positive iff score ≥ t" at every distinct score t, plus (0, 0)."""
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], labels[order]
    last_of_value = np.r_[np.flatnonzero(np.diff(s) != 0), len(s) - 1]
    tp = np.cumsum(y)[last_of_value]
    fp = np.cumsum(~y)[last_of_value]
    return np.r_[0.0, fp / max((~y).sum(), 1)], np.r_[0.0, tp / max(y.sum(), 1)]


def ulira(phi_unlearned, phi_never_seen, *, pooled: bool | None = None, fprs=(0.01, 0.001),
          var_floor: float = 1e-30) -> dict[str, float]:
    """U-LiRA, the per-example unlearning likelihood-ratio attack (Hayes, Shumailov, Triantafillou, Khalifa,
    Papernot 2024, arXiv 2403.01218, adapting LiRA, Carlini et al. 2022; ``evaluation.md`` §3).

    For example x, the attacker fits N(μ_u, σ_u²) to φ(x) under models that trained on x and then unlearned it, and
    N(μ_o, σ_o²) to φ(x) under models that never saw x; a target (model, x) with confidence φ scores
    ln Λ = ln N(φ; μ_u, σ_u²) − ln N(φ; μ_o, σ_o²) and is called "unlearned" when Λ > 1.

    Evaluation, leave-one-out over models: every model in turn is the target; the Gaussians of its side are fitted
    on the *other* models of that side (the other side uses all its models), so no target is in its own fit. All
    N_u × n unlearned and N_o × n never-seen pairs are scored; accuracies are balanced (mean of TPR and TNR), so the
    two sides may have different N.

    Variance: per example (mean and unbiased variance of each example's φ), or **pooled**: one σ² per side shared
    by all examples, the mean over examples of the per-example unbiased variances (the pooled within-example
    variance; each example keeps its own mean). ``pooled=None`` pools when either side has fewer than
    ``POOLED_VARIANCE_BELOW`` = 32 models. Source of the choice: LiRA's released code offers ``fix_variance``
    (tensorflow/privacy research/mi_lira_2021/plot.py) and its README reports that with 16 shadow models "the fixed
    variance variants perform best"; LeakPro's LiRA switches to a fixed variance below 32 shadow models per side (64
    in all), citing the LiRA paper; ``evaluation.md`` §3 asks for K ≥ 64 with a fixed-variance option for small K.
    (LiRA's code estimates its fixed σ as the std of *all* in-scores, between-example spread included, and uses it
    for both sides; the pooled within-example variance used here is the estimate of the same shared per-example
    noise without that spread.) Zero-variance examples are harmless when pooled; per example, variances are
    floored at ``var_floor`` (LiRA adds 1e-30 to σ), so nothing is NaN.

    Args:
        phi_unlearned: ``(N_u, n)`` φ (:func:`logit_confidence`) of n examples under N_u models that trained on them
            and unlearned them.
        phi_never_seen: ``(N_o, n)`` φ of the same examples under N_o models that never trained on them.
        pooled: shared variance (True), per-example variance (False), or by N (None).
        fprs: false-positive rates at which to report the TPR.
        var_floor: lower bound on every fitted variance.

    Returns:
        ``accuracy``: balanced accuracy of the Λ > 1 rule (ideal 0.5); ``accuracy_best``: best balanced accuracy
        over all thresholds (LiRA's ``sweep``; ≥ 0.5 by construction, above it at small N even for identical
        distributions); ``auc`` (ideal 0.5); ``tpr_at_fpr_<α>`` for each α in ``fprs``: the largest TPR among
        thresholds with FPR ≤ α (ideal ≈ α; LiRA's plot.py takes FPR < α); ``pooled_variance``: 1.0 or 0.0.
    """
    u, o = _two_sides(phi_unlearned, phi_never_seen, ("phi_unlearned", "phi_never_seen"), 3,
                      "leave-one-out variance needs at least 3 models per side")
    if pooled is None:
        pooled = min(u.shape[0], o.shape[0]) < POOLED_VARIANCE_BELOW
    mu_u, var_u, loo_mu_u, loo_var_u = _loo_moments(u)
    mu_o, var_o, loo_mu_o, loo_var_o = _loo_moments(o)
    if pooled:  # one variance per side (per left-out model for LOO fits), shared across examples
        var_u, var_o = np.full_like(var_u, var_u.mean()), np.full_like(var_o, var_o.mean())
        loo_var_u = np.broadcast_to(loo_var_u.mean(axis=1, keepdims=True), loo_var_u.shape)
        loo_var_o = np.broadcast_to(loo_var_o.mean(axis=1, keepdims=True), loo_var_o.shape)
    floor = float(var_floor)
    var_u, var_o, loo_var_u, loo_var_o = (np.maximum(v, floor) for v in (var_u, var_o, loo_var_u, loo_var_o))
    # target = an unlearned model: its side's fit leaves it out
    score_u = _gauss_logpdf(u, loo_mu_u, loo_var_u) - _gauss_logpdf(u, mu_o, var_o)
    # target = a never-seen model
    score_o = _gauss_logpdf(o, mu_u, var_u) - _gauss_logpdf(o, loo_mu_o, loo_var_o)
    scores = np.concatenate([score_u.ravel(), score_o.ravel()])
    labels = np.concatenate([np.ones(score_u.size, dtype=bool), np.zeros(score_o.size, dtype=bool)])
    fpr, tpr = _roc_points(scores, labels)
    out = {
        "accuracy": 0.5 * (float((score_u > 0).mean()) + float((score_o <= 0).mean())),
        "accuracy_best": float(np.max(0.5 * (tpr + 1.0 - fpr))),
        "auc": _auc(score_u.ravel(), score_o.ravel()),
    }
    for a in fprs:
        out[f"tpr_at_fpr_{a:g}"] = float(tpr[fpr <= a].max())
    out["pooled_variance"] = float(bool(pooled))
    return out


def _auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """ROC AUC = P(score_pos > score_neg) + ½ P(tie) (Mann-Whitney U / (n_pos n_neg), average ranks for ties)."""
    ranks = stats.rankdata(np.concatenate([pos, neg]))
    n1, n0 = len(pos), len(neg)
    return float((ranks[:n1].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


# ---------------------------------------------------------------------------------------------------------------
# KLOM
# ---------------------------------------------------------------------------------------------------------------

def klom(unlearned, oracle, bins: int = 20, clip: float = 100.0, floor: float = 1e-5, *,
         easydub_digitize: bool = False) -> np.ndarray:
    """KLOM(x) = KL(P_unlearned ‖ P_oracle) of the margin distributions, per example (``evaluation.md`` §4).

    Source: Georgiev et al. 2024, *Attribute-to-Delete* (arXiv 2410.23232, App. E.1), estimator of EasyDUB
    (RoyRin/data-unlearning-bench, unlearning_bench/eval.py ``compute_binned_KL_div``, commit eb261f9):

    1. clip both samples to [−clip, clip];
    2. ``bins`` equal bins over the joint range [min, max] of the two samples (max = min + 1 if they are equal);
    3. bin probabilities p (unlearned), q (oracle); where p > 0, q is floored at ``floor`` (1e-5);
    4. KL(p ‖ q) = Σ p_i ln(p_i / q_i) after renormalising both to sum 1 (``scipy.stats.entropy``, as upstream;
       the floor makes q sum to slightly more than 1 before that).

    One correction by default: EasyDUB bins with ``np.digitize`` and counts bins 1..bins only, so samples equal to
    the joint maximum fall outside every bin and are dropped (an unlearned sample entirely at the maximum, e.g.
    margins clipped at +100 above every oracle, then has no mass and KLOM is NaN). Here the last bin is closed, as in
    ``np.histogram``; ``easydub_digitize=True`` reproduces EasyDUB exactly, dropped samples and NaN included.

    Args:
        unlearned: ``(N_u, n)`` margins (:func:`logit_confidence`, either ``guard``) of n examples under N_u
            unlearned models (N originals, each unlearned once).
        oracle: ``(N_o, n)`` margins under N_o oracle (retrained) models.

    Returns:
        ``(n,)`` KLOM per example, ≥ 0 (0 for identical samples). See :func:`klom_floor` for the value of two
        oracle samples.
    """
    p_arr = np.clip(_as_model_by_example(unlearned, "unlearned"), -clip, clip)
    q_arr = np.clip(_as_model_by_example(oracle, "oracle"), -clip, clip)
    n = p_arr.shape[1]
    if q_arr.shape[1] != n:
        raise ValueError(f"unlearned has {n} examples, oracle {q_arr.shape[1]}")
    lo = np.minimum(p_arr.min(axis=0), q_arr.min(axis=0))
    hi = np.maximum(p_arr.max(axis=0), q_arr.max(axis=0))
    hi = np.where(lo >= hi, lo + 1, hi)
    edges = np.linspace(lo, hi, bins + 1, axis=1)  # (n, bins + 1)

    def counts(x: np.ndarray) -> np.ndarray:
        # np.digitize(x, edges): number of edges <= x, in 1..bins+1 (bins+1 = at the last edge)
        idx = (x[:, :, None] >= edges[None, :, :]).sum(axis=2)
        if not easydub_digitize:
            idx = np.minimum(idx, bins)
        flat = (np.arange(n)[None, :] * (bins + 2) + idx).ravel()
        return np.bincount(flat, minlength=n * (bins + 2)).reshape(n, bins + 2)[:, 1:bins + 1].astype(np.float64)

    cp, cq = counts(p_arr), counts(q_arr)
    with np.errstate(divide="ignore", invalid="ignore"):
        tp, tq = cp.sum(axis=1, keepdims=True), cq.sum(axis=1, keepdims=True)
        p = np.where(tp > 0, cp / tp, 0.0)
        q = np.where(tq > 0, cq / tq, 0.0)
        q_safe = np.where(p > 0, np.maximum(q, floor), q)
        return stats.entropy(p, q_safe, axis=1)


def klom_floor(oracle, oracle_independent, **kwargs) -> np.ndarray:
    """Oracle-vs-oracle KLOM per example: :func:`klom` of one oracle sample against a second, independent one.

    The histogram KL of two finite samples of the *same* distribution is > 0 (plug-in bias and noise, larger for
    fewer models per side), so it is the value an exact retrain would score. Pass two samples of the same N as the
    unlearned-vs-oracle comparison (2N oracles in all; ``oracle`` may be the sample used against the unlearned
    models, ``oracle_independent`` must be N further oracles, not a split of it). ``kwargs`` as for :func:`klom`.
    """
    a, b = np.asarray(oracle), np.asarray(oracle_independent)
    if a.shape != b.shape:
        raise ValueError(f"the floor needs two oracle samples of the same N and examples: {a.shape} vs {b.shape}")
    return klom(a, b, **kwargs)


# ---------------------------------------------------------------------------------------------------------------
# reporting
# ---------------------------------------------------------------------------------------------------------------

def summarize(values) -> dict[str, float]:
    """Numbers for a table from per-example values (ε, KLOM, ...): ``mean``, ``median``, ``p95`` (95th percentile,
    linear interpolation), NaN-propagating (a NaN example makes every number NaN, so it cannot go unnoticed)."""
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size == 0:
        raise ValueError("no values")
    return {"mean": float(v.mean()), "median": float(np.median(v)), "p95": float(np.percentile(v, 95))}
