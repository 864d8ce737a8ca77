"""Known-answer tests for the per-example forgetting scores (unlearnlib.metrics.forgetting).

Reference numbers for the NeurIPS-2023 ε and F come from running google-deepmind/unlearning_evaluation's
metric.py (commit ffae0fff4c3e9523b22618c47df6c26e4eebe0df) on the arrays the seeded recipes below generate, on the
CPU: its ``.cuda()`` calls removed and its ``assert thr_eps`` (which raises "truth value of an array with more than
one element is ambiguous" as soon as more than one rule survives) replaced by ``assert len(thr_eps)``; ε from
``_get_epsilons`` on the positive/negative split of ``compute_forget_score_from_confs``, F from the latter. Only the
numbers are committed, not its code. Upstream computes rates and ε in float32, hence the 1e-6 tolerance on ε.
"""

from __future__ import annotations

import ast
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.special import logsumexp

from unlearnlib.metrics import forgetting as fg

MODULE = Path(fg.__file__)


# ---------------------------------------------------------------------------------------------------------------
# recipes of the reference arrays (do not change: the numbers below were computed from exactly these)
# ---------------------------------------------------------------------------------------------------------------

def case_a() -> tuple[np.ndarray, np.ndarray]:
    """N = 16, n = 12: same distribution (0, 1), shifts, narrower/wider unlearned (8, 9), a peaky unlearned
    sample (10: range ratio < 0.01 -> guard), perfect separation (11)."""
    rng = np.random.default_rng(2023)
    N, n = 16, 12
    shift = np.array([0, 0, 0.25, 0.5, 1, 1.5, 2, 3, -1, -2, 0, 8])
    scale_u = np.array([1, 1, 1, 1, 1, 1, 1, 1, 0.5, 2, 0.005, 1])
    retrained = rng.standard_normal((N, n))
    unlearned = shift + scale_u * rng.standard_normal((N, n))
    return unlearned, retrained


def case_b() -> tuple[np.ndarray, np.ndarray]:
    """N = 32, n = 16: per-example location and spread, heavy-tailed (t_3) shifted unlearned samples."""
    rng = np.random.default_rng(7)
    N, n = 32, 16
    mu = rng.normal(3.0, 3.0, size=n)
    sigma = rng.uniform(0.3, 3.0, size=n)
    retrained = mu + sigma * rng.standard_normal((N, n))
    unlearned = mu + rng.uniform(-1, 4, size=n) + sigma * rng.standard_t(3, size=(N, n))
    return unlearned, retrained


def case_logits() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(11)
    logits = (rng.standard_normal((6, 5)) * 4).astype(np.float32)
    labels = np.array([0, 1, 2, 3, 4, 0])
    return logits, labels


# reference outputs of metric.py at ffae0fff4c3e9523b22618c47df6c26e4eebe0df (see the module docstring), printed
# with repr(): ε are float32 values, F is a sum of 2^-k points over n
REF_A_EPS = [1.7917327880859375, 1.6094058752059937, 1.6094058752059937, 1.7917327880859375, 2.0794215202331543,
             2.397880792617798, 2.564937114715576, 2.7080395221710205, 2.6390459537506104, 2.397880792617798, 50.0,
             50.0]
REF_A_F = 0.06510416666666667
REF_B_EPS = [1.386214256286621, 1.7917060852050781, 3.1354804039001465, 2.1971888542175293, 1.7917060852050781,
             2.564924716949463, 2.3978662490844727, 3.1780405044555664, 3.1354804039001465, 2.1971888542175293,
             1.6093738079071045, 2.564924716949463, 2.0794014930725098, 2.3978662490844727, 2.564924716949463,
             2.484879970550537]
REF_B_F = 0.0712890625
# compute_logit_scaled_confidence(case_logits()) (float32 logits, as a model returns them)
REF_LOGIT_CONF = [-5.762531771981472, -0.75402115603956, -3.547486129790637, -4.511306243316515, -9.281984853538583,
                  -3.5360479283925765]


# ---------------------------------------------------------------------------------------------------------------
# module hygiene
# ---------------------------------------------------------------------------------------------------------------

def test_module_imports_only_numpy_scipy_and_stdlib():
    tree = ast.parse(MODULE.read_text())
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "no relative imports (the module must stand alone)"
            roots.add(node.module.split(".")[0])
    assert roots <= {"__future__", "math", "functools", "numpy", "scipy"}, roots


def test_module_loads_without_torch_or_methods():
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('forgetting', {str(MODULE)!r})\n"
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
        "m.per_example_epsilon([[0.0, 1.0], [1.0, 0.5], [2.0, 0.0]], [[0.5, 1.0], [1.5, 0.0], [0.0, 2.0]])\n"
        "bad = [k for k in sys.modules if k == 'torch' or k.startswith(('torch.', 'unlearnlib'))]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# ---------------------------------------------------------------------------------------------------------------
# logit_confidence (= KLOM margin)
# ---------------------------------------------------------------------------------------------------------------

def test_logit_confidence_hand_values():
    # z = (2, 1, 0): φ_0 = 2 − ln(e + 1) = 0.686738312..., φ_2 = 0 − ln(e² + e) = −(1 + ln(e + 1)) = −2.313261687...
    z = np.array([[2.0, 1.0, 0.0], [2.0, 1.0, 0.0], [0.0, 0.0, 5.0]])
    phi = fg.logit_confidence(z, np.array([0, 2, 0]))
    ln_e1 = math.log(math.e + 1)
    # row 3: z = (0, 0, 5), y = 0: 0 − ln(1 + e^5)
    np.testing.assert_allclose(phi, [2 - ln_e1, -(1 + ln_e1), -math.log(1 + math.exp(5))], rtol=1e-12)
    assert phi.dtype == np.float64
    # two equal logits: p_y = 1/2 = Σ_{j≠y} p_j -> 0
    assert fg.logit_confidence(np.array([[3.0, 3.0]]), np.array([1]))[0] == pytest.approx(0.0, abs=1e-15)


def test_logit_confidence_extreme_logits_guard_and_margin():
    z = np.array([[1e4, 0.0, 0.0], [1e4, 0.0, 0.0], [3e38, -3e38, 0.0]], dtype=np.float32)
    y = np.array([0, 1, 1])
    phi = fg.logit_confidence(z, y)
    assert np.all(np.isfinite(phi))
    cap = -math.log(1e-45)  # 103.616...: p_wrong underflows to 0, the guard bounds φ
    np.testing.assert_allclose(phi, [cap, -cap, -cap], rtol=1e-12)
    # exact margin z_y − logsumexp_{j≠y} z_j (guard off): unbounded, still finite
    m = fg.logit_confidence(z, y, guard=None)
    big = float(np.float32(3e38))
    np.testing.assert_allclose(m, [1e4 - math.log(2), -1e4, -big - big], rtol=1e-12)  # row 3: −3e38 − lse(3e38, 0)


def test_logit_confidence_equals_margin_in_normal_range():
    rng = np.random.default_rng(0)
    z = rng.normal(scale=5, size=(4, 7, 10))
    y = rng.integers(0, 10, size=7)
    phi = fg.logit_confidence(z, y)
    others = np.where(np.arange(10) == y[:, None], -np.inf, z)
    margin = np.take_along_axis(z, np.broadcast_to(y[:, None], (4, 7, 1)), axis=-1)[..., 0] - logsumexp(others, -1)
    np.testing.assert_allclose(phi, margin, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(fg.logit_confidence(z, y, guard=None), margin, rtol=1e-12, atol=1e-12)


def test_logit_confidence_model_axis():
    rng = np.random.default_rng(1)
    z = rng.normal(size=(3, 5, 4)).astype(np.float32)
    y = np.array([0, 1, 2, 3, 0])
    stacked = fg.logit_confidence(z, y)
    assert stacked.shape == (3, 5)
    for k in range(3):
        np.testing.assert_array_equal(stacked[k], fg.logit_confidence(z[k], y))
    z_before = z.copy()
    fg.logit_confidence(z, y)
    np.testing.assert_array_equal(z, z_before)  # the input is not modified (upstream subtracts in place)
    with pytest.raises(ValueError):
        fg.logit_confidence(z, np.array([0, 1, 2, 3, 4]))


def test_logit_confidence_matches_reference():
    logits, labels = case_logits()
    # upstream exponentiates float32 logits in float32: agreement to float32 rounding
    np.testing.assert_allclose(fg.logit_confidence(logits, labels), REF_LOGIT_CONF, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------------------------------
# NeurIPS-2023 ε and F
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("case, ref_eps, ref_f", [(case_a, "REF_A_EPS", "REF_A_F"), (case_b, "REF_B_EPS", "REF_B_F")])
def test_epsilon_and_f_match_reference(case, ref_eps, ref_f):
    unlearned, retrained = case()
    eps = fg.per_example_epsilon(unlearned, retrained)
    np.testing.assert_allclose(eps, globals()[ref_eps], rtol=1e-6, atol=1e-6)
    assert fg.forget_score(unlearned, retrained) == pytest.approx(globals()[ref_f], abs=1e-12)
    assert fg.forgetting_quality(eps, unlearned.shape[0]) == pytest.approx(globals()[ref_f], abs=1e-12)


def test_reference_case_a_regimes():
    eps = np.asarray(REF_A_EPS)
    assert eps[10] == 50.0  # peakiness guard
    assert eps[11] == 50.0  # perfect separation: ε = ∞, clipped to the cap
    assert eps[:2].max() < eps[6:8].min()  # same distribution << shifted by 2-3 σ


def test_fast_rule_counting_equals_rule_by_rule():
    # the shortcut of _epsilon_one (each distinct outcome of a row of t_L scored once) against every rule counted,
    # on continuous, rounded (ties) and grid-hitting confidences
    rng = np.random.default_rng(8)
    compared = 0
    for trial in range(30):
        n_models = (3, 5, 8, 16)[trial % 4]
        pos = rng.normal(rng.normal(), rng.choice([0.1, 0.5, 2.0]), size=n_models)
        neg = rng.normal(0.0, rng.choice([0.1, 0.5, 2.0]), size=n_models)
        if trial % 3 == 0:
            pos, neg = np.round(pos, 1), np.round(neg, 1)
        if trial % 5 == 0:
            neg[0] = pos[0] - 2.0  # a double-threshold grid value region: t_R - range - 2
        if np.median(neg) > np.median(pos):
            pos, neg = neg, pos
        ranges = sorted([np.ptp(pos), np.ptp(neg)])
        if ranges[1] == 0 or ranges[0] / ranges[1] < 0.01:
            continue
        assert fg._epsilon_one(pos, neg, fg.DELTA) == fg._epsilon_one_grid(pos, neg, fg.DELTA)
        compared += 1
    assert compared >= 20


def test_forgetting_quality_buckets_by_hand():
    # N = 512: ⌈ln 511⌉ = 7, 14 buckets; [0, .5) -> 1, [.5, 1) -> 1/2, [1, 1.5) -> 1/4, [6.5, 7) -> 2^-13, >= 7 -> 0
    eps = [0.0, 0.49, 0.5, 1.0, 6.99, 7.0, 50.0]
    assert fg.forgetting_quality(eps, 512) == pytest.approx((1 + 1 + 0.5 + 0.25 + 2 ** -13) / 7, abs=1e-15)
    # N = 16: ⌈ln 15⌉ = 3, 6 buckets: [2.5, 3) -> 2^-5, 3.0 -> 0
    assert fg.forgetting_quality([2.99, 3.0], 16) == pytest.approx(2 ** -5 / 2, abs=1e-15)
    assert fg.forgetting_quality([0.0, 0.1], 2) == 0.0  # ⌈ln 1⌉ = 0: no bucket at N = 2
    assert math.isnan(fg.forgetting_quality([0.0, float("nan")], 16))


def test_neurips_score_by_hand():
    # F × (RA_u / RA_r) × (TA_u / TA_r), per-model accuracies averaged first: 0.5 × (91/100) × (80/90)
    assert fg.neurips_score(0.5, [90, 92], 100, 80, [80, 100]) == pytest.approx(0.5 * 0.91 * 8 / 9, rel=1e-15)


def test_identical_samples_score_zero_and_f_one():
    _, retrained = case_b()
    eps = fg.per_example_epsilon(retrained, retrained)
    np.testing.assert_array_equal(eps, 0.0)  # every rule has TPR = FPR -> ε_rule <= 0
    assert fg.forget_score(retrained, retrained) == 1.0


def test_exact_retrain_scores_the_floor():
    rng = np.random.default_rng(5)
    N, n = 16, 60
    mu, sigma = rng.normal(0, 3, size=n), rng.uniform(0.5, 2, size=n)
    r1, r2, r3 = (mu + sigma * rng.standard_normal((N, n)) for _ in range(3))
    floor = fg.forgetting_quality_floor(r1, r2)
    # an exact-retrain "method" whose N outputs are the independent retrains: F equals the floor exactly (ε is
    # symmetric in its two arguments)
    assert fg.forget_score(r2, r1) == floor
    # a third sample of the retrain distribution: F within sampling noise of the floor. The floor is far below 1
    # at this N (about 0.17 at N = 16-32: the max over ~160k rules finds e.g. FPR = 1/N, TPR = 5/N, ε = ln 5)
    assert abs(fg.forget_score(r3, r1) - floor) < 0.1
    assert floor < 0.5
    eps = fg.per_example_epsilon(r3, r1)
    assert np.median(eps) < 2.0 and eps.max() < 5.0  # far from the cap
    with pytest.raises(ValueError):
        fg.forgetting_quality_floor(r1, r2[:8])  # the floor needs the same N on both sides


def test_unchanged_original_gets_large_epsilon():
    rng = np.random.default_rng(3)
    N, n = 32, 20
    retrained = rng.standard_normal((N, n))
    # the original memorised the forget set: confident, and (one original, N seeds of a no-op) nearly constant
    peaky = 12.0 + 1e-3 * rng.standard_normal((N, n))
    assert np.all(fg.per_example_epsilon(peaky, retrained) == fg.EPSILON_CAP)
    assert fg.forget_score(peaky, retrained) == 0.0
    # not peaky, but far away: perfect separation -> ∞ -> cap
    far = 10.0 + rng.standard_normal((N, n))
    assert np.all(fg.per_example_epsilon(far, retrained) == fg.EPSILON_CAP)
    assert fg.forget_score(far, retrained) == 0.0


def test_deterministic_method_hits_peakiness_guard():
    # N identical outputs (a deterministic method in the conditional variant), even placed exactly at the retrain
    # median: range 0 -> ratio 0 < 0.01 -> ε = 50 and F = 0 (evaluation.md §2 caveat)
    _, retrained = case_b()
    same = np.tile(np.median(retrained, axis=0), (retrained.shape[0], 1))
    assert np.all(fg.per_example_epsilon(same, retrained) == fg.EPSILON_CAP)
    assert fg.forget_score(same, retrained) == 0.0


def test_epsilon_edge_cases():
    # both samples one and the same point mass: no rule survives (upstream: AssertionError); here ε = 0
    assert fg.per_example_epsilon(np.full((8, 1), 2.5), np.full((8, 1), 2.5))[0] == 0.0
    # two different point masses: the guard sees 0/0 (not < 0.01), a single threshold separates them: cap
    assert fg.per_example_epsilon(np.full((8, 1), 2.5), np.full((8, 1), -1.0))[0] == fg.EPSILON_CAP
    # unequal N is allowed
    unlearned, retrained = case_a()
    eps = fg.per_example_epsilon(unlearned[:12], retrained)
    assert eps.shape == (12,) and np.all((eps >= 0) & (eps <= fg.EPSILON_CAP))
    with pytest.raises(ValueError):
        fg.per_example_epsilon(unlearned[:, :3], retrained)
    with pytest.raises(ValueError):
        fg.per_example_epsilon(np.full((4, 2), np.nan), retrained[:4, :2])


# ---------------------------------------------------------------------------------------------------------------
# U-LiRA
# ---------------------------------------------------------------------------------------------------------------

def _ulira_data(rng, N, n, shift):
    mu, sigma = rng.normal(0, 3, size=n), rng.uniform(0.5, 2, size=n)
    return mu + shift + sigma * rng.standard_normal((N, n)), mu + sigma * rng.standard_normal((N, n))


def test_ulira_identical_distributions_is_chance():
    u, o = _ulira_data(np.random.default_rng(0), 16, 300, 0.0)
    res = fg.ulira(u, o)
    assert res["pooled_variance"] == 1.0  # 16 < 32 per side
    assert abs(res["accuracy"] - 0.5) < 0.03
    assert abs(res["auc"] - 0.5) < 0.03
    assert res["tpr_at_fpr_0.01"] < 0.03
    assert res["accuracy_best"] >= 0.5


def test_ulira_well_separated_is_perfect():
    u, o = _ulira_data(np.random.default_rng(1), 16, 100, 8.0)
    for pooled in (True, False):
        res = fg.ulira(u, o, pooled=pooled)
        assert res["accuracy"] > 0.99 and res["auc"] > 0.999 and res["tpr_at_fpr_0.001"] > 0.9


def test_ulira_zero_variance_examples():
    u, o = _ulira_data(np.random.default_rng(2), 8, 40, 1.0)
    u[:, :5] = 3.0  # deterministic: the same φ under every model
    o[:, :5] = 3.0
    o[:, 5:10] = -2.0
    for pooled in (True, False):
        res = fg.ulira(u, o, pooled=pooled)
        assert all(np.isfinite(v) for v in res.values()), res


def test_ulira_leave_one_out_moments_by_brute_force():
    x = np.random.default_rng(4).normal(100, 1e-3, size=(6, 5))  # large offset: centring keeps the precision
    mean, var, loo_mean, loo_var = fg._loo_moments(x)
    np.testing.assert_allclose(var, x.var(axis=0, ddof=1), rtol=1e-9)
    for m in range(6):
        rest = np.delete(x, m, axis=0)
        np.testing.assert_allclose(loo_mean[m], rest.mean(axis=0), rtol=1e-14)
        np.testing.assert_allclose(loo_var[m], rest.var(axis=0, ddof=1), rtol=1e-7)


def test_ulira_pooling_switch_and_inputs():
    u, o = _ulira_data(np.random.default_rng(6), 32, 20, 0.5)
    assert fg.ulira(u, o)["pooled_variance"] == 0.0  # 32 per side: per-example variances
    assert fg.ulira(u[:31], o)["pooled_variance"] == 1.0
    with pytest.raises(ValueError):
        fg.ulira(u[:2], o)


# ---------------------------------------------------------------------------------------------------------------
# KLOM
# ---------------------------------------------------------------------------------------------------------------

def test_klom_identical_sets_are_zero():
    x = np.random.default_rng(0).normal(size=(20, 30))
    np.testing.assert_array_equal(fg.klom(x, x), 0.0)
    np.testing.assert_array_equal(fg.klom_floor(x, x), 0.0)


def test_klom_hand_computed():
    # 2 bins over the joint range [0, 10]: [0, 5), [5, 10]
    # u = (0, 0, 0, 10) -> p = (3/4, 1/4); oracle (0, 10, 10, 10) -> q = (1/4, 3/4)
    # KL = 3/4 ln 3 + 1/4 ln(1/3) = (1/2) ln 3 = 0.5493061443340549
    u = np.array([[0.0], [0.0], [0.0], [10.0]])
    q = np.array([[0.0], [10.0], [10.0], [10.0]])
    assert fg.klom(u, q, bins=2)[0] == pytest.approx(0.5 * math.log(3), rel=1e-14)
    # EasyDUB's np.digitize drops samples equal to the joint max: p = q = (1, 0) -> 0
    assert fg.klom(u, q, bins=2, easydub_digitize=True)[0] == 0.0
    # floor: u = (0, 0, 10, 10) -> p = (1/2, 1/2); oracle (0, 0, 0, 1) -> q = (1, 0) -> q_safe = (1, 1e-5),
    # renormalised to (1, 1e-5) / (1 + 1e-5): KL = ln(1 + 1e-5) + (1/2) ln(1/2) + (1/2) ln(1/2 / 1e-5)
    #                                            = ln(1 + 1e-5) + (1/2) ln 25000 = 5.063335551875...
    u2 = np.array([[0.0], [0.0], [10.0], [10.0]])
    q2 = np.array([[0.0], [0.0], [0.0], [1.0]])
    expected = math.log1p(1e-5) + 0.5 * math.log(25000)
    assert fg.klom(u2, q2, bins=2)[0] == pytest.approx(expected, rel=1e-12)


def test_klom_clipping_and_easydub_quirk():
    u = np.full((5, 1), 500.0)  # clipped to 100
    assert fg.klom(u, np.full((5, 1), 100.0))[0] == 0.0
    # unlearned all at +100 (the joint max), oracle all at 50: p = (0, ..., 0, 1), q = (1, 0, ..., 0) -> the last q
    # is floored to 1e-5 and renormalised: KL = ln((1 + 1e-5) / 1e-5) = ln 100001
    q = np.full((5, 1), 50.0)
    assert fg.klom(u, q)[0] == pytest.approx(math.log(100001), rel=1e-12)
    # EasyDUB drops every sample equal to the joint max: the unlearned sample has no mass left -> NaN
    assert math.isnan(fg.klom(u, q, easydub_digitize=True)[0])


def test_klom_disjoint_supports_are_large_and_floor_small():
    rng = np.random.default_rng(1)
    N, n = 32, 50
    oracle = rng.normal(-5, 1, size=(N, n))
    far = rng.normal(5, 1, size=(N, n))
    k_far = fg.klom(far, oracle)
    # all unlearned mass sits in bins where the oracle has none: each term p_i ln(p_i / 1e-5) -> about ln 1e5 = 11.5
    assert np.all(k_far > 9.0)
    floor = fg.klom_floor(oracle, rng.normal(-5, 1, size=(N, n)))
    assert np.all(floor >= 0) and 0 < floor.mean() < 2.0 < k_far.min()


# ---------------------------------------------------------------------------------------------------------------
# reporting
# ---------------------------------------------------------------------------------------------------------------

def test_summarize_by_hand():
    # p95 of 5 values: position 0.95 × 4 = 3.8 -> 4 + 0.8 × (100 − 4) = 80.8
    assert fg.summarize([1, 2, 3, 4, 100]) == pytest.approx({"mean": 22.0, "median": 3.0, "p95": 80.8})
    assert all(math.isnan(v) for v in fg.summarize([1.0, float("nan")]).values())
