"""Behaviour on real data: the Fashion-MNIST copy of the Debian package (skipped when it is missing).

A narrow VGG-11-BN is trained once per session (5000 class-stratified training images, 5 epochs, Adam;
about 10 s on one CPU thread), then each method forgets class 7 (Sneaker). Test accuracy is measured on
2000 class-stratified test images.

Measured on the development machine (torch 2.14.1, CPU, 1 thread), forget class 7, training seed 0:

    original         forget 95.5 %   retain 77.6 %
    deep_unlearning  forget  0.0 %   retain 75.5 %  (drop 2.1)
    neggrad_plus     forget  0.0 %   retain 79.4 %  (drop -1.8)
    finetune         forget  0.0 %   retain 74.9 %  (drop 2.7)
    neggrad          forget  0.0 %   retain 62.9 %  (drop 14.7)
    identity         forget 95.5 %   retain 77.6 %  (fails the checks, as it must)

The baselines of issue 11, with the short options below (their own defaults are for 45 000-image CIFAR sets:
on 4500 retain images SCRUB's 3 epochs at batch 256/512 are 56 steps (54 min-steps on
the retain set, 2 max-steps on the forget set), bad teacher's 1 epoch 8 steps; measured
with the defaults: SCRUB forget 82.5 %, bad teacher 87.5 %, SSD 95.5 % (nothing selected: see below), SalUn 0.0 %,
random labels 2.5 %, l1-sparse 0.0 %):

    scrub            forget  0.0 %   retain 82.7 %  (batches 64/128, 2 epochs; 4.4 s)
    ssd              forget  0.0 %   retain 79.2 %  (D shuffled as Kodge et al. ran it, alpha 5; 1.6 s)
    salun            forget  0.0 %   retain 78.8 %  (3 epochs; 3.2 s)
    random_labels    forget  1.5 %   retain 83.0 %  (2 epochs; 3.1 s)
    bad_teacher      forget  1.5 %   retain 78.8 %  (batch 64; 1.1 s)
    l1_sparse        forget  0.0 %   retain 78.9 %  (3 epochs; 2.8 s)

SSD with its own alpha 10 selects nothing here, in either order of D: with one class of ten forgotten, the forget
batches are ~1/10 of D's batches, so I_D >= I_f / 10 up to batch alignment and I_f > 10 I_D cannot hold.

With training seeds 1 and 2 the same setting gave Deep Unlearning drops of 0.0 and 0.4 points, forget
accuracy <= 0.5 %, and NegGrad drops of 7.1 and 16.3 points. Thresholds leave a wide margin on these.
"""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import torch

from unlearnlib.data import Loader, class_split, stratified_subset
from unlearnlib.methods import METHODS
from unlearnlib.metrics import forget_retain_accuracy
from unlearnlib.models import build_model
from unlearnlib.train import TrainConfig, fit, predict_logits

FORGET_CLASS = 7  # Sneaker (one of the cpu/smoke profiles' scenarios)

# thresholds (see the measured values above)
ORIGINAL_FORGET_MIN = 80.0  # the original must know the class well (measured 95.5)
ORIGINAL_RETAIN_MIN = 65.0  # and the rest reasonably (measured 77.6)
FORGET_MAX = 10.0  # after unlearning: at most 10 % (measured 0.0 for every method)
RETAIN_DROP_MAX = 10.0  # retain accuracy at most 10 points below the original (measured <= 2.7)
NEGGRAD_RETAIN_MIN = 40.0  # NegGrad is known to cost retain accuracy (paper Table 1: 94.9 -> 69.9); measured 62.9

# per-method settings: the paper's Deep Unlearning values (n_samples 900 = 100 per retain class, alpha_r 100,
# alpha_f 3) with un-augmented SVD samples; the cpu profile's short baseline recipes
METHOD_OPTIONS = {
    "deep_unlearning": dict(n_samples=900, alpha_r=100.0, alpha_f=3.0, max_patches=2000, augment_samples=False),
    "neggrad_plus": dict(max_steps=70, check_every=5, batch_size=64),
    "finetune": dict(epochs=1, batch_size=64),
    "neggrad": dict(max_steps=60, check_every=5, batch_size=64),
    "scrub": dict(batch_size=64, forget_batch_size=128, epochs=2),
    "ssd": dict(full_order="shuffled", selection_weighting=5.0),
    "salun": dict(epochs=3),
    "random_labels": dict(epochs=2),
    "bad_teacher": dict(batch_size=64),
    "l1_sparse": dict(epochs=3),
}
BASELINES = ["scrub", "ssd", "salun", "random_labels", "bad_teacher", "l1_sparse"]


@pytest.fixture(scope="session")
def problem(fmnist):
    data = fmnist
    train_pool = stratified_subset(data.train_y, 5000, seed=0)
    test_pool = stratified_subset(data.test_y, 2000, seed=0)
    split = class_split(data.train_y, data.test_y, [FORGET_CLASS], train_pool, test_pool)
    torch.manual_seed(0)
    model = build_model("vgg11_bn", num_classes=10, in_channels=1, width=8)
    cfg = TrainConfig(epochs=5, optimizer="adam", lr=1e-3, weight_decay=0.0, batch_size=64, scheduler="none",
                      augment=False)
    fit(model, Loader(data.train_x, data.train_y, train_pool, data.spec, batch_size=64, shuffle=True, seed=0), cfg,
        progress=False)
    model.eval()

    def evaluate(m) -> tuple[float, float]:
        logits, labels = predict_logits(m, Loader(data.test_x, data.test_y, test_pool, data.spec, batch_size=1000))
        return forget_retain_accuracy(logits, labels, split.forget_classes)

    def loaders():
        retain = Loader(data.train_x, data.train_y, split.retain_train, data.spec, batch_size=128, seed=0)
        forget = Loader(data.train_x, data.train_y, split.forget_train, data.spec, batch_size=128, seed=1)
        return retain, forget

    return {"model": model, "evaluate": evaluate, "loaders": loaders, "original": evaluate(model), "split": split}


def unlearned_accuracy(problem, method) -> tuple[float, float]:
    retain, forget = problem["loaders"]()
    torch.manual_seed(0)
    model = copy.deepcopy(problem["model"])
    model.train()
    if method == "identity":
        out = model
    else:
        spec = METHODS.get(method)
        cfg = dataclasses.replace(spec.Config(), **METHOD_OPTIONS[method])
        out = spec(model, retain=retain, forget=forget, cfg=cfg, device="cpu")
    return problem["evaluate"](out.eval())


def check_forgotten(original: tuple[float, float], after: tuple[float, float], retain_drop_max: float | None,
                    retain_min: float | None = None) -> None:
    (f0, r0), (f1, r1) = original, after
    assert f1 < FORGET_MAX and f1 < f0 / 3, f"forget accuracy {f1:.1f} % (original {f0:.1f} %)"
    if retain_drop_max is not None:
        assert r0 - r1 < retain_drop_max, f"retain accuracy {r1:.1f} % vs original {r0:.1f} %"
    if retain_min is not None:
        assert r1 > retain_min, f"retain accuracy {r1:.1f} %"


def test_original_knows_the_forget_class(problem):
    f0, r0 = problem["original"]
    assert f0 > ORIGINAL_FORGET_MIN, f0
    assert r0 > ORIGINAL_RETAIN_MIN, r0
    split = problem["split"]
    assert len(split.forget_train) == 500 and len(split.forget_test) == 200


@pytest.mark.parametrize("method", ["deep_unlearning", "neggrad_plus", "finetune", *BASELINES])
def test_method_forgets_the_class_and_keeps_the_rest(problem, method):
    after = unlearned_accuracy(problem, method)
    print(f"{method}: original {problem['original']}, after {after}")
    check_forgotten(problem["original"], after, RETAIN_DROP_MAX)


def test_neggrad_forgets_at_a_retain_cost(problem):
    after = unlearned_accuracy(problem, "neggrad")
    print(f"neggrad: original {problem['original']}, after {after}")
    check_forgotten(problem["original"], after, None, retain_min=NEGGRAD_RETAIN_MIN)


def test_identity_fails_the_checks(problem):
    # the checks above can fail: a method that does nothing keeps the forget class
    after = unlearned_accuracy(problem, "identity")
    assert after == problem["original"]
    with pytest.raises(AssertionError, match="forget accuracy"):
        check_forgotten(problem["original"], after, RETAIN_DROP_MAX)


def test_destroying_the_model_fails_the_retain_check(problem):
    # and a "method" that forgets by destroying the model fails the retain check
    f0, r0 = problem["original"]
    with pytest.raises(AssertionError, match="retain accuracy"):
        check_forgotten((f0, r0), (0.0, 10.0), RETAIN_DROP_MAX)


def test_deep_unlearning_forget_predictions_move_elsewhere(problem):
    # Deep Unlearning forgets the class on the forget *training* samples too, not only on test images
    data_split = problem["split"]
    retain, forget = problem["loaders"]()
    torch.manual_seed(0)
    spec = METHODS.get("deep_unlearning")
    model = spec(copy.deepcopy(problem["model"]), retain=retain, forget=forget,
                 cfg=dataclasses.replace(spec.Config(), **METHOD_OPTIONS["deep_unlearning"]), device="cpu")
    f = Loader(forget.images, forget.labels_all, data_split.forget_train, forget.spec, batch_size=1000)
    logits, _ = predict_logits(model, f)
    pred = logits.argmax(1).numpy()
    assert np.mean(pred == FORGET_CLASS) < 0.1  # the forget training samples are forgotten too


def test_linear_probe_recovers_a_class_that_only_the_head_forgot(problem, fmnist):
    """Depth probe: zeroing the forget class's head row removes it from the predictions (forget accuracy 0)
    but not from the features; the probe recovers it about as well as on the original."""
    from unlearnlib.data import Loader
    from unlearnlib.metrics import METRICS, Evaluation, MetricConfig, ModelContext

    data, split = fmnist, problem["split"]
    edited = copy.deepcopy(problem["model"])
    with torch.no_grad():
        edited.head.weight[FORGET_CLASS] = 0.0
        edited.head.bias[FORGET_CLASS] = -1e4
    assert problem["evaluate"](edited)[0] == 0.0  # "forgotten" by its predictions

    train_idx = np.union1d(split.forget_train, split.retain_train)
    test_idx = np.union1d(split.forget_test, split.retain_test)
    ev = Evaluation(test_idx, torch.zeros(len(test_idx), 10), data.test_y[torch.as_tensor(test_idx)], train_idx,
                    torch.zeros(len(train_idx), 10), data.train_y[torch.as_tensor(train_idx)])
    train = Loader(data.train_x, data.train_y, train_idx, data.spec, batch_size=500)
    test = Loader(data.test_x, data.test_y, test_idx, data.spec, batch_size=500)
    images = {"train_images": lambda idx: list(train.subset(Evaluation.rows(train_idx, idx))),
              "test_images": lambda idx: list(test.subset(Evaluation.rows(test_idx, idx)))}
    probe = METRICS.get("probe_forget_acc")
    cfg = MetricConfig(probe_per_class=20)
    on_original = probe(ev, split, cfg, ModelContext(problem["model"], problem["model"], **images))
    on_edited = probe(ev, split, cfg, ModelContext(edited, problem["model"], **images))
    assert on_original > 60.0 and on_edited == pytest.approx(on_original, abs=1e-9)  # same features, same probe
    blank = copy.deepcopy(problem["model"])
    with torch.no_grad():
        for prm in blank.body.parameters():
            prm.zero_()  # constant features: nothing left for a probe to read
    assert probe(ev, split, cfg, ModelContext(blank, problem["model"], **images)) < 20.0
