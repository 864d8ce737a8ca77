"""Membership-inference attacks, each exactly as its source defines it.

Plain functions on numpy arrays: the metrics (:mod:`unlearnlib.metrics`) and the methods whose stopping rules run
an attack (lightweight, versatile) call the same code.
"""

from __future__ import annotations

import numpy as np
from sklearn.svm import SVC


def svc_mia_kodge(p_retain_train: np.ndarray, p_forget_train: np.ndarray, p_forget_test: np.ndarray, *,
                  max_train: int | None = None, seed: int = 0) -> float:
    """Deep Unlearning's SVC MIA (sangamesh-kodge/class_forgetting, utils.SVC_MIA as called in main.py).

    Feature: the probability of the true label. An RBF SVC (C=3, gamma='auto') is trained with
    retain-class *train* samples as label 1 and forget-class *train* samples as label 0; the score is
    100 * (1 - mean prediction) on the forget-class *test* samples, i.e. the share of forget test
    images the attacker groups with the forget-train samples. Higher is better; retrain ~100, the
    original ~0. It is computed on the model it is given: the harness always passes the unlearned model
    (upstream scores ``model`` instead of ``unlearn_model``; see the paper YAML's deviations).

    ``max_train`` caps each training group with a seeded subsample (None = all, as upstream) because
    the RBF fit is quadratic in the number of points.
    """
    rng = np.random.default_rng(seed)

    def cap(a: np.ndarray) -> np.ndarray:
        a = np.asarray(a, dtype=np.float64)
        if max_train is not None and len(a) > max_train:
            a = a[rng.choice(len(a), max_train, replace=False)]
        return a

    r, f, t = cap(p_retain_train), cap(p_forget_train), np.asarray(p_forget_test, dtype=np.float64)
    if len(r) == 0 or len(f) == 0 or len(t) == 0:
        raise ValueError("svc_mia_kodge needs non-empty retain-train, forget-train and forget-test groups")
    x = np.concatenate([r, f]).reshape(-1, 1)
    y = np.concatenate([np.ones(len(r)), np.zeros(len(f))])
    clf = SVC(C=3, gamma="auto", kernel="rbf")
    clf.fit(x, y)
    return float(100.0 * (1.0 - clf.predict(t.reshape(-1, 1)).mean()))


MIN_PER_GROUP = 6  # a 10 % stratified test split needs >= 2 samples: 2k > 10


def loss_lr_cv_mia(member_losses: np.ndarray, nonmember_losses: np.ndarray, *, n_splits: int = 10,
                   seed: int = 0) -> float:
    """Loss-based logistic-regression MIA with cross-validation (evaluation.md §5.3; the NeurIPS 2023
    challenge starting kit): a class-balanced sample of members (forget samples) and non-members, one
    feature (the per-example cross-entropy), logistic regression, mean accuracy over ``n_splits``
    stratified shuffle splits (test share 0.1, scikit-learn's default), in percent. 50 = indistinguishable
    (retrain's ideal). NaN when a group has fewer than ``MIN_PER_GROUP`` samples (a test split could not hold
    both groups), so a rule that compares it with a tolerance never passes on too few samples."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedShuffleSplit, cross_val_score

    rng = np.random.default_rng(seed)
    m, n = np.asarray(member_losses, dtype=np.float64), np.asarray(nonmember_losses, dtype=np.float64)
    k = min(len(m), len(n))
    if k < MIN_PER_GROUP:
        return float("nan")
    m, n = rng.choice(m, k, replace=False), rng.choice(n, k, replace=False)
    x = np.concatenate([m, n]).reshape(-1, 1)
    y = np.concatenate([np.ones(k), np.zeros(k)])
    cv = StratifiedShuffleSplit(n_splits=n_splits, random_state=seed)
    return float(100.0 * cross_val_score(LogisticRegression(), x, y, cv=cv, scoring="accuracy").mean())


def linear_probe_accuracy(x_fit: np.ndarray, y_fit: np.ndarray, x_eval: np.ndarray, y_eval: np.ndarray, *,
                          c: float = 1.0, seed: int = 0) -> float:
    """Accuracy (fraction) on ``x_eval`` of a multinomial logistic regression fitted on standardised features
    ``x_fit`` (the probe an attacker with a few labelled images would train on a model's frozen features)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if len(y_eval) == 0 or len(np.unique(y_fit)) < 2:
        return float("nan")
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000, random_state=seed))
    probe.fit(np.asarray(x_fit, dtype=np.float64), y_fit)
    return float((probe.predict(np.asarray(x_eval, dtype=np.float64)) == y_eval).mean())
