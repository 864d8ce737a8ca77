"""Known-answer tests for the metrics, with values computed by hand."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch
import torch.nn as nn

from unlearnlib.data import class_split
from unlearnlib.metrics import (
    METRICS,
    Evaluation,
    MetricConfig,
    Timer,
    compute_metrics,
    forget_retain_accuracy,
    loss_lr_cv_mia,
    speedup,
    svc_mia_kodge,
    true_class_probability,
    weight_distance,
)
from unlearnlib.registry import UnknownNameError


def logits_for(labels, preds, p_true, num_classes: int = 3) -> torch.Tensor:
    """Logits whose softmax gives probability ``p_true`` to the label and whose argmax is ``preds``."""
    rows = []
    for y, pr, p in zip(labels, preds, p_true, strict=True):
        probs = np.full(num_classes, 0.001)
        probs[y] = p
        if pr == y:
            others = [c for c in range(num_classes) if c != y]
            probs[others] = (1 - p) / len(others)
            assert p > probs[others].max()
        else:
            probs[pr] = 1 - p - 0.001 * (num_classes - 2)
            assert probs[pr] > p
        rows.append(np.log(probs))
    return torch.tensor(np.array(rows), dtype=torch.float32)


# ----------------------------------------------------------------------------------------------
# accuracy


def test_forget_retain_accuracy_is_pooled_not_per_class_mean():
    # forget class 0: 2 samples, 1 right -> 50 %.
    # retain: class 1 has 3 samples all right, class 2 has 1 sample wrong:
    #   pooled (micro) = 3/4 = 75 %, a per-class mean would be (100 + 0)/2 = 50 %.
    labels = torch.tensor([0, 0, 1, 1, 1, 2])
    preds = [0, 2, 1, 1, 1, 0]
    logits = torch.nn.functional.one_hot(torch.tensor(preds), 3).float()
    f, r = forget_retain_accuracy(logits, labels, [0])
    assert f == pytest.approx(50.0)
    assert r == pytest.approx(75.0)
    # two forget classes pooled together: class 0 (1/2) and class 2 (0/1) -> 1/3
    f2, r2 = forget_retain_accuracy(logits, labels, (0, 2))
    assert f2 == pytest.approx(100 / 3) and r2 == pytest.approx(100.0)


def test_forget_retain_accuracy_empty_group_is_nan():
    logits = torch.eye(3)  # predictions 0, 1, 2 for labels 1, 1, 2: two of three right
    f, r = forget_retain_accuracy(logits, torch.tensor([1, 1, 2]), [0])
    assert math.isnan(f) and r == pytest.approx(200 / 3)


def test_true_class_probability():
    logits = torch.tensor([[0.0, math.log(3.0)], [0.0, 0.0], [math.log(4.0), 0.0]], dtype=torch.float64)
    p = true_class_probability(logits, torch.tensor([1, 0, 1]))
    assert p.dtype == np.float64
    np.testing.assert_allclose(p, [0.75, 0.5, 0.2], rtol=1e-12)
    p3 = true_class_probability(torch.zeros(2, 3), torch.tensor([0, 2]))
    np.testing.assert_allclose(p3, [1 / 3, 1 / 3], rtol=1e-12)


# ----------------------------------------------------------------------------------------------
# SVC MIA (Deep Unlearning's)


RETAIN_P = np.linspace(0.9, 1.0, 50)  # retain-class train samples: confident (SVC label 1)
FORGET_P = np.linspace(0.0, 0.1, 50)  # forget-class train samples: not (SVC label 0)


def test_loss_lr_mia_is_chance_on_one_distribution_and_high_on_two():
    rng = np.random.default_rng(0)
    same = loss_lr_cv_mia(rng.exponential(1.0, 400), rng.exponential(1.0, 400), seed=0)
    apart = loss_lr_cv_mia(rng.exponential(0.05, 400), 1.0 + rng.exponential(1.0, 400), seed=0)
    assert abs(same - 50) < 8 and apart > 95  # percent
    # too few samples for a 10 % stratified test split with both groups: NaN (never "at chance"), no crash
    assert np.isnan(loss_lr_cv_mia(np.ones(5), np.ones(50)))
    assert not np.isnan(loss_lr_cv_mia(np.arange(6.0), np.arange(6.0) + 10))


def test_svc_mia_separable_all_with_forget_group():
    # every forget test sample looks like the forget-train group -> 100 (retrain-like)
    assert svc_mia_kodge(RETAIN_P, FORGET_P, np.array([0.02, 0.05, 0.08])) == 100.0


def test_svc_mia_separable_all_with_retain_group():
    # every forget test sample looks like the retain-train group -> 0 (original-like)
    assert svc_mia_kodge(RETAIN_P, FORGET_P, np.array([0.92, 0.97, 0.99])) == 0.0


def test_svc_mia_fraction():
    # 3 of 5 forget test samples fall on the forget-train side -> 60
    assert svc_mia_kodge(RETAIN_P, FORGET_P, np.array([0.02, 0.05, 0.95, 0.97, 0.01])) == pytest.approx(60.0)


def test_svc_mia_cap_is_seeded_and_rejects_empty_groups():
    rng = np.random.default_rng(0)
    r, f = rng.uniform(0.4, 1.0, 400), rng.uniform(0.0, 0.6, 400)
    t = rng.uniform(0, 1, 200)
    a = svc_mia_kodge(r, f, t, max_train=50, seed=3)
    assert a == svc_mia_kodge(r, f, t, max_train=50, seed=3)
    assert 0.0 <= a <= 100.0
    with pytest.raises(ValueError, match="non-empty"):
        svc_mia_kodge(r, np.array([]), t)


def test_loss_lr_cv_mia_known_answers():
    members = np.linspace(0.0, 0.1, 40)  # forget samples: low loss
    non = np.linspace(2.0, 3.0, 40)  # non-members: high loss -> perfectly separable
    assert loss_lr_cv_mia(members, non, seed=0) == pytest.approx(100.0)
    assert math.isnan(loss_lr_cv_mia(np.array([0.1]), non))


# ----------------------------------------------------------------------------------------------
# timing


def test_speedup():
    assert speedup(10.0, 2.0) == 5.0
    assert speedup(3.0, 12.0) == 0.25
    assert math.isnan(speedup(10.0, 0.0))
    assert math.isnan(speedup(10.0, float("nan")))


def test_timer_measures_the_block():
    t = Timer("cpu")
    assert math.isnan(t.seconds)
    with t:
        time.sleep(0.05)
    assert t.seconds >= 0.05
    assert t.seconds < 5.0
    with Timer(torch.device("cpu")) as t2:
        pass
    assert 0.0 <= t2.seconds < t.seconds


def test_weight_distance_known_answer():
    ref = nn.Sequential(nn.Linear(2, 1, bias=False), nn.Linear(1, 1, bias=False))
    model = nn.Sequential(nn.Linear(2, 1, bias=False), nn.Linear(1, 1, bias=False))
    with torch.no_grad():
        ref[0].weight.copy_(torch.tensor([[3.0, 4.0]]))  # norm 5
        model[0].weight.copy_(torch.tensor([[3.0, 9.0]]))  # diff (0, 5): relative 1.0
        ref[1].weight.fill_(2.0)
        model[1].weight.fill_(2.0)  # unchanged: 0
    d = weight_distance(model, ref)
    assert d["[0]"] == pytest.approx(1.0)
    assert d["[1]"] == pytest.approx(0.0)
    assert d[""] == pytest.approx(5.0 / math.sqrt(25.0 + 4.0))


# ----------------------------------------------------------------------------------------------
# registry and compute_metrics


CORE = {"test_forget_acc", "test_retain_acc", "forget_acc", "retain_acc", "mia_svc", "mia_svc_augmented"}


def test_metric_registry_names():
    assert CORE <= set(METRICS.names())
    from unlearnlib.config import load_paper

    for profile in ("paper", "cpu", "smoke"):  # every metric a profile asks for is registered
        assert set(load_paper("deep_unlearning", profile).settings.metrics.metrics) <= set(METRICS.names())
    with pytest.raises(UnknownNameError, match="valid metrics: .*mia_svc"):
        METRICS.get("accuracy")


@pytest.fixture
def hand_built():
    """Forget class 0, 3 classes. Dataset indices are not contiguous, so the pool->row mapping is exercised.

    test pool  : idx [2, 5, 7, 8, 11, 13, 17, 19], labels [0,0,0,0,1,1,1,2], preds [0,1,1,2,1,1,1,0]
                 -> forget 1/4 = 25 %, retain pooled 3/4 = 75 % (per-class mean would be 50 %), all 4/8 = 50 %
                 forget test p(true): [0.9, 0.03, 0.02, 0.04]
    train pool : idx [1, 3, 4, 6, 9, 12], labels [0,0,0,1,1,2]
                 forget train: p(true) 0.03..0.05, all wrong -> 0 %; retain train: p 0.9..0.95, right -> 100 %
    SVC MIA    : forget test samples with p ~0.03 join the forget-train group: 3/4 -> 75
    augmented  : the two groups swapped -> only the p=0.9 sample joins the forget group: 1/4 -> 25
    """
    test_idx = np.array([2, 5, 7, 8, 11, 13, 17, 19])
    test_y = [0, 0, 0, 0, 1, 1, 1, 2]
    test_logits = logits_for(test_y, [0, 1, 1, 2, 1, 1, 1, 0], [0.9, 0.03, 0.02, 0.04, 0.8, 0.8, 0.8, 0.1])
    train_idx = np.array([1, 3, 4, 6, 9, 12])
    train_y = [0, 0, 0, 1, 1, 2]
    train_logits = logits_for(train_y, [1, 2, 1, 1, 1, 2], [0.03, 0.05, 0.04, 0.9, 0.92, 0.95])
    aug_logits = logits_for(train_y, [0, 0, 0, 0, 0, 0], [0.9, 0.92, 0.95, 0.03, 0.05, 0.04])
    ev = Evaluation(test_idx, test_logits, torch.tensor(test_y), train_idx, train_logits, torch.tensor(train_y),
                    aug_logits)
    # full label arrays of the (imaginary) dataset, -1 where outside the pools
    all_train = np.full(20, 1)
    all_train[train_idx] = train_y
    all_test = np.full(20, 1)
    all_test[test_idx] = test_y
    split = class_split(all_train, all_test, [0], train_idx, test_idx)
    return ev, split


def test_compute_metrics_hand_built(hand_built):
    ev, split = hand_built
    assert split.forget_train.tolist() == [1, 3, 4] and split.forget_test.tolist() == [2, 5, 7, 8]
    cfg = MetricConfig(metrics=("test_forget_acc", "test_retain_acc", "forget_acc", "retain_acc", "test_acc",
                                "mia_svc", "mia_svc_augmented", "forget_prediction"))
    res = compute_metrics(ev, split, cfg)
    assert res["test_forget_acc"] == pytest.approx(25.0)
    assert res["test_retain_acc"] == pytest.approx(75.0)
    assert res["forget_acc"] == pytest.approx(0.0)
    assert res["retain_acc"] == pytest.approx(100.0)
    assert res["test_acc"] == pytest.approx(50.0)
    assert res["mia_svc"] == pytest.approx(75.0)
    assert res["mia_svc_augmented"] == pytest.approx(25.0)
    # forget-class test images predicted as class 0, 1, 2: [0, 1, 1, 2] -> 25, 50, 25
    assert [res[f"forget_prediction[{c}]"] for c in range(3)] == pytest.approx([25.0, 50.0, 25.0])
    assert all(isinstance(v, float) for v in res.values())


def test_compute_metrics_names_override_and_errors(hand_built):
    ev, split = hand_built
    res = compute_metrics(ev, split, MetricConfig(), names=("test_forget_acc",))
    assert list(res) == ["test_forget_acc"]
    ev.train_aug_logits = None
    with pytest.raises(ValueError, match="augmented"):
        compute_metrics(ev, split, MetricConfig(metrics=("mia_svc_augmented",)))
    with pytest.raises(ValueError, match="not all in the evaluated pool"):
        ev.train(np.array([1, 2]))  # 2 is a test index, not in the train pool
