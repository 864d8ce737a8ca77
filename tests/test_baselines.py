"""SCRUB, SSD, SalUn, random labels, bad teacher, l1-sparse, ZRF: known answers on hand-made cases, and the
evaluation pitfalls these methods are known for (pitfalls 2 and 4, SCRUB's "score the student"). The behaviour
on real data (each one forgets Fashion-MNIST's class 7) is in ``test_behaviour.py``."""

from __future__ import annotations

import copy
import dataclasses
import math

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from unlearnlib.data import Loader
from unlearnlib.methods import METHODS, bad_teacher, l1_sparse, random_labels, salun, scrub, ssd
from unlearnlib.methods.common import distill_kl, incompetent_teacher, mixed_batches
from unlearnlib.metrics import MetricConfig
from unlearnlib.metrics import zrf as zrf_metric
from unlearnlib.models import build_model
from unlearnlib.train import TrainConfig, fit, make_optimizer, make_scheduler


def _tiny_model(name: str = "vgg11_bn", classes: int = 3) -> nn.Module:
    torch.manual_seed(0)
    return build_model(name, num_classes=classes, in_channels=1, width=2)


def _changed(a: dict, b: dict) -> bool:
    return any(not torch.equal(a[k], b[k]) for k in a if a[k].is_floating_point())


# ----------------------------------------------------------------------------------------------
# train.fit extensions: multistep decay, after_step


def test_multistep_matches_scrubs_decay_rule():
    # SCRUB's util.adjust_learning_rate: during epoch e (1-based) lr = lr0 * 0.1 ** #(milestones < e)
    cfg = TrainConfig(lr=1.0, scheduler="multistep", lr_milestones=(2, 4), lr_decay=0.1, epochs=6)
    opt = make_optimizer([nn.Parameter(torch.zeros(1))], cfg)
    sched = make_scheduler(opt, cfg)
    seen = []
    for e in range(1, 7):
        seen.append(opt.param_groups[0]["lr"])
        assert seen[-1] == pytest.approx(0.1 ** sum(e > m for m in (2, 4)))
        opt.step()  # one (empty) epoch, then the epoch-end step, as fit does
        sched.step()
    assert seen == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])


def test_after_step_runs_after_every_optimiser_step():
    model = nn.Linear(2, 1)
    calls = []
    data = [(torch.randn(4, 2), torch.zeros(4, dtype=torch.long))] * 3
    cfg = TrainConfig(epochs=2, lr=0.1, scheduler="none", optimizer="sgd")

    def after(m, opt, step):
        calls.append((step, torch.is_grad_enabled(), m.weight.detach().clone()))

    fit(model, lambda: iter(data), cfg, loss_fn=lambda m, b: m(b[0]).pow(2).mean(), after_step=after, progress=False)
    assert [c[0] for c in calls] == [1, 2, 3, 4, 5, 6]
    assert not any(c[1] for c in calls)  # called under no_grad: it may edit weights in place
    assert torch.equal(calls[-1][2], model.weight.detach())  # after the step, before the next


# ----------------------------------------------------------------------------------------------
# shared pieces


def test_mixed_batches_cover_every_sample_once(tiny_problem):
    retain, forget = tiny_problem.loaders()
    torch.manual_seed(0)
    seen = {0: [], 1: []}
    for _x, y, part, index in mixed_batches([(forget, np.arange(forget.num_samples)),
                                             (retain, np.array([0, 3, 5]))], 7, False)():
        for p, i in zip(part.tolist(), index.tolist(), strict=True):
            seen[p].append(i)
        assert (y[part == 0] == 0).all() and (y[part == 1] != 0).all()  # forget class 0
    assert sorted(seen[0]) == list(range(forget.num_samples)) and sorted(seen[1]) == [0, 1, 2]


def test_incompetent_teacher_is_seeded_random_and_leaves_the_global_rng_alone():
    model = _tiny_model()
    torch.manual_seed(123)
    a = incompetent_teacher(model, seed=5)
    after_a = torch.rand(1)
    torch.manual_seed(999)
    b = incompetent_teacher(model, seed=5)
    torch.manual_seed(123)
    assert torch.equal(torch.rand(1), after_a)  # drawing the teacher did not consume global randomness
    sa, sb, so = a.state_dict(), b.state_dict(), model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)  # same seed: the same network, whatever the RNG state
    assert all(not torch.equal(sa[k], so[k]) for k in so if k.endswith("weight") and so[k].dim() > 1)  # T_d != theta_o
    c = incompetent_teacher(model, seed=6)
    assert _changed(c.state_dict(), sa)
    assert not a.training and not any(p.requires_grad for p in a.parameters())


# ----------------------------------------------------------------------------------------------
# SCRUB


def test_scrub_distance_is_teacher_to_student_kl_times_t_squared():
    s = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 0.0]])
    t = torch.tensor([[0.0, 1.0, 0.0], [3.0, -1.0, 0.0]])
    tau = 4.0
    ps, pt = F.softmax(s / tau, 1), F.softmax(t / tau, 1)
    want = float((pt * (pt.log() - ps.log())).sum(1).mean()) * tau ** 2
    reverse = float((ps * (ps.log() - pt.log())).sum(1).mean()) * tau ** 2
    got = float(distill_kl(s, t, tau))
    assert got == pytest.approx(want, rel=1e-6)
    assert abs(got - reverse) > 1e-3 * abs(want)  # the direction matters on this case


def test_scrub_epochs_are_max_then_min_for_msteps_epochs(tiny_problem):
    retain, forget = tiny_problem.loaders()
    cfg = dataclasses.replace(scrub.Config(), msteps=1, forget_batch_size=8, batch_size=16)
    epoch = scrub.scrub_batches(retain, forget, cfg)
    first = [p for p, _ in epoch()]
    second = [p for p, _ in epoch()]
    assert first == ["max"] * 3 + ["min"] * 3  # 20 forget / 8, 40 retain / 16
    assert second == ["min"] * 3


def test_scrub_returns_and_trains_the_student_not_a_teacher_copy(tiny_problem, monkeypatch):
    # pitfall (deep_unlearning.md 4): upstream scored the teacher's copy, i.e. the original. SCRUB must return the
    # model it was handed, trained; its teacher is the original, frozen, and is never returned
    model = _tiny_model()
    original = {k: v.clone() for k, v in model.state_dict().items()}
    teachers = []
    real = scrub.frozen_copy

    def spy(m):
        teachers.append(real(m))
        return teachers[-1]

    monkeypatch.setattr(scrub, "frozen_copy", spy)
    retain, forget = tiny_problem.loaders()
    cfg = dataclasses.replace(scrub.Config(), epochs=2, batch_size=16, forget_batch_size=16, lr=0.05)
    torch.manual_seed(0)
    out = METHODS.get("scrub")(model, retain=retain, forget=forget, cfg=cfg, device="cpu")
    assert out is model and len(teachers) == 1 and out is not teachers[0]
    assert _changed(out.state_dict(), original)  # a method returning the teacher copy would fail here
    t = teachers[0].state_dict()
    assert all(torch.equal(t[k], original[k]) for k in original)  # the teacher stayed the original


def test_scrub_smoothing_is_refused_past_the_weight_average_start():
    with pytest.raises(ValueError, match="swa_start"):
        scrub._validate(dataclasses.replace(scrub.Config(), smoothing=0.5, epochs=11))


# ----------------------------------------------------------------------------------------------
# SSD


def test_ssd_importance_is_the_mean_of_squared_batch_mean_gradients():
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    batches = [(torch.randn(4, 3), torch.tensor([0, 1, 1, 0])), (torch.randn(2, 3), torch.tensor([1, 1]))]
    got = ssd.importance(model, batches)
    want = {k: torch.zeros_like(p) for k, p in model.named_parameters()}
    for x, y in batches:
        model.zero_grad()
        F.cross_entropy(model(x), y).backward()
        for k, p in model.named_parameters():
            want[k] += p.grad.pow(2) / len(batches)
    for k in want:
        torch.testing.assert_close(got[k], want[k])


def test_ssd_dampens_only_selected_elements_and_never_scales_up():
    model = nn.Linear(4, 1, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, -2.0, 3.0, 4.0]]))
    imp_d = {"weight": torch.tensor([[1.0, 1.0, 1.0, 0.0]])}
    imp_f = {"weight": torch.tensor([[5.0, 20.0, 100.0, 0.0]])}
    counts = ssd.dampen(model, imp_d, imp_f, alpha=10.0, lam=4.0)
    # 5 <= 10: untouched; 20 > 10: x min(4*1/20, 1) = 0.2; 100 > 10: x 0.04; I_f = I_D = 0: untouched
    torch.testing.assert_close(model.weight.detach(), torch.tensor([[1.0, -0.4, 0.12, 4.0]]))
    assert counts == {"weight": 2}
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, -2.0, 3.0, 4.0]]))
    ssd.dampen(model, imp_d, imp_f, alpha=10.0, lam=1000.0)  # lam * I_D / I_f > 1: capped at 1, never larger
    torch.testing.assert_close(model.weight.detach(), torch.tensor([[1.0, -2.0, 3.0, 4.0]]))


def test_ssd_full_set_order_is_retain_by_class_then_forget():
    labels = torch.tensor([2, 1, 2, 1, 3])
    pairs = ssd.full_order(labels, 2, is_class=True, order="auto")
    assert pairs == [("r", 1), ("r", 3), ("r", 0), ("r", 2), ("r", 4), ("f", 0), ("f", 1)]
    torch.manual_seed(0)
    shuffled = ssd.full_order(labels, 2, is_class=True, order="shuffled")
    assert sorted(shuffled) == sorted(pairs) and shuffled != pairs


def test_ssd_touches_only_selected_parameters(tiny_problem):
    # on the tiny problem: every changed element shrank toward 0 (|theta_u| <= |theta_o|), same sign
    model = _tiny_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    retain, forget = tiny_problem.loaders()
    cfg = dataclasses.replace(ssd.Config(), selection_weighting=1.0, batch_size=8)
    torch.manual_seed(0)
    out = METHODS.get("ssd")(model, retain=retain, forget=forget, cfg=cfg, device="cpu").state_dict()
    moved = 0
    for k, v in before.items():
        if not v.is_floating_point():
            continue
        if "running" in k:
            assert torch.equal(out[k], v), k  # eval mode throughout: BatchNorm statistics untouched
            continue
        assert (out[k].abs() <= v.abs()).all() and (out[k] * v >= 0).all(), k
        moved += int((out[k] != v).sum())
    assert moved > 0


# ----------------------------------------------------------------------------------------------
# SalUn (pitfall 2) and random labels


def test_salun_mask_is_one_global_ranking_of_forget_gradient_magnitudes(make_spec):
    # a linear model on one forget batch: |grad(-CE)| known; the top half over weight AND bias together
    torch.manual_seed(0)
    spec_images = torch.randint(0, 255, (6, 1, 2, 2), dtype=torch.uint8)
    spec = make_spec(num_classes=2, channels=1, size=2)
    forget = Loader(spec_images, torch.zeros(6, dtype=torch.long), np.arange(6), spec, batch_size=6)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    with torch.no_grad():
        model[1].bias.copy_(torch.tensor([5.0, -5.0]))  # large bias gradient: the bias ranks first
    mask = salun.saliency_mask(model, forget, 0.5, 256, augment=False)
    x, y = forget.batch(np.arange(6), augment=False)
    model.zero_grad()
    (-F.cross_entropy(model(x), y)).backward()
    g = torch.cat([model[1].weight.grad.abs().flatten(), model[1].bias.grad.abs().flatten()])
    top = set(torch.argsort(g, descending=True)[:5].tolist())  # int(10 * 0.5) = 5 of 10 elements
    got = torch.cat([mask["1.weight"].flatten(), mask["1.bias"].flatten()])
    assert set(torch.nonzero(got).flatten().tolist()) == top
    assert int(got.sum()) == 5


def _masked_coordinates_unchanged(before: dict, after: nn.Module, mask: dict) -> list[str]:
    """Names of parameters whose masked-out (m = 0) coordinates changed, bit for bit."""
    bad = []
    for k, p in after.named_parameters():
        if not torch.equal(p.detach()[~mask[k]], before[k][~mask[k]]):
            bad.append(k)
    return bad


@pytest.mark.parametrize("variant", ["paper", "upstream_leak"])
def test_salun_masked_weights_stay_bit_identical_under_weight_decay_and_momentum(tiny_problem, monkeypatch, variant):
    # pitfall 2 (Unlearn-Saliency issue #32): with weight decay and momentum on, the paper's hard mask keeps every
    # m = 0 coordinate exactly at the original value; the leaky upstream variant moves them, and the check catches it
    model = _tiny_model()
    before = {k: p.detach().clone() for k, p in model.named_parameters()}
    masks = []
    real = salun.saliency_mask
    monkeypatch.setattr(salun, "saliency_mask", lambda *a, **kw: masks.append(real(*a, **kw)) or masks[-1])
    retain, forget = tiny_problem.loaders()
    cfg = dataclasses.replace(salun.Config(), variant=variant, epochs=2, batch_size=16, lr=0.05, momentum=0.9,
                              weight_decay=5e-2, sparsity=0.3)
    torch.manual_seed(0)
    out = METHODS.get("salun")(model, retain=retain, forget=forget, cfg=cfg, device="cpu")
    mask = masks[0]
    assert 0 < sum(int(m.sum()) for m in mask.values()) < sum(m.numel() for m in mask.values())
    leaked = _masked_coordinates_unchanged(before, out, mask)
    if variant == "paper":
        assert leaked == []
        # and the salient coordinates did train
        assert any(not torch.equal(p.detach()[mask[k]], before[k][mask[k]]) for k, p in out.named_parameters())
    else:
        assert leaked, "the leaky variant should move masked weights through weight decay and momentum"
    assert not any(getattr(p, "_backward_hooks", None) for p in out.parameters())  # gradient hooks removed


def test_random_labels_other_policy_never_keeps_the_label():
    torch.manual_seed(0)
    y = torch.arange(10).repeat(100)
    new = random_labels.draw_labels(y, 10, "other")
    assert not (new == y).any()
    counts = torch.bincount(new[y == 3], minlength=10)
    assert counts[3] == 0 and (counts[[0, 1, 2, 4, 5, 6, 7, 8, 9]] > 0).all()  # every other class occurs
    anyl = random_labels.draw_labels(y, 10, "any")
    assert (anyl == y).any()  # SalUn's labels may equal the true class


@pytest.mark.parametrize("schedule", ["mixed", "sequential"])
@pytest.mark.parametrize("relabel", ["once", "per_epoch", "per_batch"])
def test_random_labels_relabel_only_forget_samples(tiny_problem, schedule, relabel):
    retain, forget = tiny_problem.loaders()  # forget = class 0, retain = classes 1, 2
    cfg = dataclasses.replace(random_labels.Config(), schedule=schedule, relabel=relabel, batch_size=8)
    torch.manual_seed(0)
    epoch = random_labels.relabel_batches(retain, forget, cfg)
    xs, ys = retain.batch(np.arange(retain.num_samples), augment=False)
    true = {float(x.sum()): int(y) for x, y in zip(xs, ys, strict=True)}
    for _ in range(2):
        n_f = n_r = 0
        flags = []
        for x, y, is_f in epoch():
            assert (y[is_f] != 0).all()  # "other": a forget sample (class 0) never keeps its class
            # retain samples keep their true labels (images are distinct: their sum identifies them here)
            assert all(true[float(xi.sum())] == int(yi) for xi, yi in zip(x[~is_f], y[~is_f], strict=True))
            n_f += int(is_f.sum())
            n_r += int((~is_f).sum())
            flags.append(is_f)
        assert (n_f, n_r) == (20, 40)
        if schedule == "sequential":  # all forget batches first, then retain
            seq = torch.cat(flags)
            assert seq[:20].all() and not seq[20:].any()


def test_random_labels_once_keeps_each_samples_label_across_epochs(tiny_problem):
    retain, forget = tiny_problem.loaders()
    cfg = dataclasses.replace(random_labels.Config(), relabel="once", batch_size=8)
    torch.manual_seed(0)
    state = {}

    def labels_of_epoch(epoch):
        out = {}
        for x, y, is_f in epoch():
            for xi, yi in zip(x[is_f], y[is_f], strict=True):
                out[float(xi.sum())] = int(yi)  # images are distinct: their sum identifies them here
        return out

    epoch = random_labels.relabel_batches(retain, forget, cfg)
    state["a"], state["b"] = labels_of_epoch(epoch), labels_of_epoch(epoch)
    assert state["a"] == state["b"] and len(state["a"]) > 1


# ----------------------------------------------------------------------------------------------
# bad teacher, ZRF (pitfall 4)


def test_bad_teacher_loss_known_answer():
    s = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    good = torch.tensor([[2.0, 0.0], [0.0, 0.0]])
    bad = torch.tensor([[0.0, 0.0], [5.0, 0.0]])
    is_f = torch.tensor([False, True])
    q = torch.stack([F.softmax(good[0], 0), F.softmax(bad[1], 0)])
    logp = F.log_softmax(s, 1)
    total = float((q * (q.log() - logp)).sum())
    got = bad_teacher.unlearner_loss(s, is_f, good, bad, 1.0, "mean")
    assert float(got) == pytest.approx(total / 4)  # PyTorch's "mean": the sum over B x C elements / (2 x 2)
    assert float(bad_teacher.unlearner_loss(s, is_f, good, bad, 1.0, "batchmean")) == pytest.approx(total / 2)


def test_bad_teacher_uses_the_seeded_incompetent_teacher_and_30_percent_of_retain(tiny_problem, monkeypatch):
    model = _tiny_model()
    seen = {}
    real_mixed = bad_teacher.mixed_batches

    def spy(parts, *a, **kw):
        seen["parts"] = [(len(p)) for _, p in parts]
        return real_mixed(parts, *a, **kw)

    monkeypatch.setattr(bad_teacher, "mixed_batches", spy)
    real_teacher = bad_teacher.incompetent_teacher
    monkeypatch.setattr(bad_teacher, "incompetent_teacher",
                        lambda m, seed: seen.setdefault("teacher", real_teacher(m, seed)))
    retain, forget = tiny_problem.loaders()
    cfg = dataclasses.replace(bad_teacher.Config(), teacher_seed=3, batch_size=16)
    torch.manual_seed(0)
    METHODS.get("bad_teacher")(copy.deepcopy(model), retain=retain, forget=forget, cfg=cfg, device="cpu")
    assert seen["parts"] == [20, int(0.3 * 40)]
    want = incompetent_teacher(model, 3).state_dict()
    assert all(torch.equal(v, want[k]) for k, v in seen["teacher"].state_dict().items())


def test_js_divergence_known_answers():
    p = torch.tensor([[1.0, 0.0], [0.5, 0.5], [0.9, 0.1]], dtype=torch.float64)
    q = torch.tensor([[0.0, 1.0], [0.5, 0.5], [0.5, 0.5]], dtype=torch.float64)
    js = zrf_metric.js_divergence(p, q)
    # disjoint supports: ln 2; identical: 0; [0.9, 0.1] vs uniform, by hand (m = [0.7, 0.3]):
    third = 0.5 * (0.9 * np.log(0.9 / 0.7) + 0.1 * np.log(0.1 / 0.3)) + 0.5 * (0.5 * np.log(0.5 / 0.7)
                                                                                + 0.5 * np.log(0.5 / 0.3))
    np.testing.assert_allclose(js.numpy(), [math.log(2), 0.0, third], rtol=1e-12)
    np.testing.assert_allclose(zrf_metric.js_divergence(q, p).numpy(), js.numpy())  # symmetric
    assert zrf_metric.zrf_score(p, q) == pytest.approx(1 - (math.log(2) + third) / 3)


def test_zrf_is_not_the_upstream_mean_reduced_kl():
    # pitfall 4: SSD / SUPREME / bad-teaching compute 0.5 * kl_div(log p, m) + 0.5 * kl_div(log q, m) with the
    # default "mean" reduction, i.e. KL(m || p) averaged over every element; the true per-sample JS differs
    p = torch.tensor([[0.9, 0.05, 0.05], [0.2, 0.7, 0.1]])
    q = torch.tensor([[0.1, 0.1, 0.8], [0.3, 0.3, 0.4]])
    m = (p + q) / 2
    # F.kl_div(input, target, reduction="mean") = sum(target * (log target - input)) / numel
    upstream = 0.5 * F.kl_div(p.log(), m, reduction="sum") / m.numel() + 0.5 * F.kl_div(q.log(), m,
                                                                                      reduction="sum") / m.numel()
    ours = zrf_metric.js_divergence(p, q).mean()
    assert abs(float(ours) - float(upstream)) > 0.05
    assert float(ours) <= math.log(2)


def test_zrf_teacher_is_bad_teachers_teacher():
    assert MetricConfig().zrf_teacher_seed == bad_teacher.Config().teacher_seed


def test_zrf_metric_on_a_model_context(tiny_problem):
    from unlearnlib.data.splits import Split  # noqa: F401  (the metric only reads split.forget_train)
    from unlearnlib.metrics import METRICS, Evaluation, MetricConfig, ModelContext, metric_spec, model_metrics
    from unlearnlib.train import predict_logits

    assert "zrf" in model_metrics() and not metric_spec("zrf").on_original
    model = _tiny_model().eval()
    retain, forget = tiny_problem.loaders()
    idx = np.sort(np.concatenate([retain.indices, forget.indices]))
    ev_loader = Loader(tiny_problem.images, tiny_problem.labels, idx, tiny_problem.spec, batch_size=64)
    logits, labels = predict_logits(model, ev_loader)
    ev = Evaluation(np.zeros(0, np.int64), torch.empty(0), torch.empty(0, dtype=torch.long), idx, logits, labels)
    split = type("S", (), {"forget_train": forget.indices})()
    ctx = ModelContext(model, model, forget=forget)
    got = METRICS.get("zrf")(ev, split, MetricConfig(), ctx)
    t = incompetent_teacher(model, 0)
    pt = torch.softmax(predict_logits(t, forget)[0].double(), 1)
    pm = torch.softmax(predict_logits(model, forget)[0].double(), 1)
    assert got == pytest.approx(1 - float(zrf_metric.js_divergence(pm, pt).mean()))
    assert 1 - math.log(2) <= got <= 1
    assert math.isnan(METRICS.get("zrf")(ev, split, MetricConfig(), None))  # the original's row: no model


# ----------------------------------------------------------------------------------------------
# l1-sparse


def test_l1_gamma_decays_linearly_per_epoch():
    cfg = dataclasses.replace(l1_sparse.Config(), gamma=1e-3, epochs=4)
    assert [l1_sparse.l1_gamma(e, cfg) for e in range(4)] == pytest.approx([1e-3, 7.5e-4, 5e-4, 2.5e-4])
    cfg = dataclasses.replace(cfg, no_l1_epochs=2)
    assert [l1_sparse.l1_gamma(e, cfg) for e in range(4)] == pytest.approx([1e-3, 5e-4, 0, 0])


def test_l1_norm_sums_every_parameter_and_the_method_refuses_no_gamma(tiny_problem):
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(-0.5)
    assert float(l1_sparse.l1_norm(model).detach()) == pytest.approx(0.5 * (4 + 2 + 2 + 2))  # weights, biases, BN
    retain, forget = tiny_problem.loaders()
    with pytest.raises(ValueError, match="gamma"):
        METHODS.get("l1_sparse")(_tiny_model(), retain=retain, forget=forget,
                                 cfg=dataclasses.replace(l1_sparse.Config(), gamma=0.0), device="cpu")


def test_l1_penalty_shrinks_weights_more_than_plain_finetuning(tiny_problem):
    def run(gamma):
        model = _tiny_model()
        retain, forget = tiny_problem.loaders()
        cfg = dataclasses.replace(l1_sparse.Config(), gamma=gamma, epochs=2, batch_size=16)
        torch.manual_seed(0)
        out = METHODS.get("l1_sparse")(model, retain=retain, forget=forget, cfg=cfg, device="cpu")
        return float(l1_sparse.l1_norm(out).detach())

    assert run(1e-2) < run(1e-9)
