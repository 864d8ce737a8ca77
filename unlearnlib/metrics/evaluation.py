"""Logits gathered once per model state, and the named metrics computed from them.

A metric is ``fn(ev, split, cfg, ctx) -> float | dict[str, float]`` (a dict gives several named values,
e.g. one per layer), registered with :func:`~unlearnlib.metrics.spec.register_metric`, whose spec says what it
needs. ``ctx`` is a :class:`ModelContext` for metrics that need the models themselves (weight distances, relearn
time); the rest use the logits in ``ev`` only.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
import torch.nn as nn

from ..attacks import loss_lr_cv_mia, svc_mia_kodge
from ..data.splits import Split
from ..schema import SEED_MAX, check_range
from .accuracy import forget_retain_accuracy, true_class_probability
from .spec import METRICS, register_metric


@dataclass
class MetricConfig:
    metrics: tuple[str, ...] = ("test_forget_acc", "test_retain_acc", "forget_acc", "retain_acc", "mia_svc")
    mia_max_train: int | None = None  # cap per SVC training group (None = all, as upstream)
    mia_splits: int = 10  # loss-LR MIA: stratified shuffle splits (challenge starting kit)
    relearn_lr: float = 0.01  # relearn time: Adam lr of the fine-tuning on forget data (UNCONFIRMED)
    relearn_max_epochs: int = 10  # relearn time: cap; a value equal to the cap means "not within the cap"
    relearn_target: float = 0.9  # relearn time: forget accuracy >= target x the original's
    relearn_samples: int = 256  # relearn time: forget training samples used to relearn
    relearn_batch_size: int = 64
    relearn_eval_samples: int | None = None  # relearn time: forget-class test images checked per step (None: all)
    probe_per_class: int = 20  # linear probe: labelled training images per class (UNCONFIRMED: "a few")
    probe_c: float = 1.0  # linear probe: inverse L2 strength of the logistic regression (scikit-learn's default)
    zrf_teacher_seed: int = 0  # ZRF: seed of the incompetent teacher (= bad_teacher's teacher_seed default)
    seed: int = 0

    def check(self) -> None:
        check_range(self, "mia_max_train", "relearn_eval_samples", ge=1, optional=True)
        check_range(self, "mia_splits", ge=2)
        check_range(self, "relearn_lr", "probe_c", gt=0)
        check_range(self, "relearn_max_epochs", "relearn_samples", "relearn_batch_size", "probe_per_class", ge=1)
        check_range(self, "relearn_target", gt=0, le=1)
        check_range(self, "zrf_teacher_seed", "seed", ge=0, le=SEED_MAX)


@dataclass
class Evaluation:
    """Logits of one model on the test pool and the training images it is evaluated on (the train pool
    and any unseen images, with the scenario's labels and triggers), plus optional extras: the train
    images through the training augmentation (upstream-parity MIA features) and triggered test images
    (backdoor attack success rate). Indices are dataset indices."""

    test_idx: np.ndarray
    test_logits: torch.Tensor
    test_labels: torch.Tensor
    train_idx: np.ndarray
    train_logits: torch.Tensor
    train_labels: torch.Tensor
    train_aug_logits: torch.Tensor | None = None
    trigger_logits: torch.Tensor | None = None  # triggered copies of the non-target test images

    @staticmethod
    def rows(pool_idx: np.ndarray, wanted: np.ndarray) -> np.ndarray:
        wanted = np.asarray(wanted)
        pos = np.searchsorted(pool_idx, wanted)
        if len(wanted) and (pos.max() >= len(pool_idx) or not np.array_equal(pool_idx[pos], wanted)):
            raise ValueError("split indices are not all in the evaluated pool")
        return pos

    def evaluated(self, idx: np.ndarray) -> np.ndarray:
        """The training indices among ``idx`` that were evaluated (a run may evaluate a retain sample only:
        ``settings.eval_train_subset``; forget and unseen images are always evaluated)."""
        return np.intersect1d(np.asarray(idx), self.train_idx)

    def test(self, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        r = torch.as_tensor(self.rows(self.test_idx, idx))
        return self.test_logits[r], self.test_labels[r]

    def train(self, idx: np.ndarray, augmented: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        r = torch.as_tensor(self.rows(self.train_idx, idx))
        logits = self.train_aug_logits if augmented else self.train_logits
        if logits is None:
            raise ValueError("augmented train logits were not gathered")
        return logits[r], self.train_labels[r]


Batches = Callable[[np.ndarray], list[tuple[torch.Tensor, torch.Tensor]]]  # dataset indices -> (images, labels)


@dataclass
class ModelContext:
    """What model-based metrics need: the unlearned model, the original, retrain (a metric that needs
    ``retrain``), the forget loader, the original's evaluation and (a metric that needs ``images``) batches of test
    and training images at dataset indices, test-time transform."""

    model: nn.Module
    original: nn.Module
    retrain: nn.Module | None = None
    forget: Any = None  # Loader over the forget training samples
    original_eval: Evaluation | None = None
    test_images: Batches | None = None
    train_images: Batches | None = None  # the evaluated training images (the scenario's labels and triggers)


def _pct(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return float("nan") if len(labels) == 0 else 100.0 * float((logits.argmax(1) == labels).float().mean())


def _class_acc(ev: Evaluation, split: Split, group: str) -> float:
    if split.kind != "class":
        return float("nan")
    logits, labels = ev.test(np.sort(np.concatenate([split.forget_test, split.retain_test])))
    f, r = forget_retain_accuracy(logits, labels, split.forget_classes)
    return f if group == "forget" else r


@register_metric("test_forget_acc", label="ACC_f test (%)")
def test_forget_acc(ev: Evaluation, split: Split, cfg, ctx) -> float:
    """Accuracy on the forget classes' test images (class scenarios)."""
    return _class_acc(ev, split, "forget")


@register_metric("test_retain_acc", label="ACC_r test (%)")
def test_retain_acc(ev: Evaluation, split: Split, cfg, ctx) -> float:
    """Accuracy on the retained classes' test images (class scenarios)."""
    return _class_acc(ev, split, "retain")


# training samples, test-time transform, labels as trained on (backdoor: the target label)
@register_metric("forget_acc", label="forget samples acc (%)")
def forget_acc(ev: Evaluation, split: Split, cfg, ctx) -> float:
    """Accuracy on the forget training samples."""
    return _pct(*ev.train(split.forget_train))


@register_metric("retain_acc", label="retain samples acc (%)")
def retain_acc(ev: Evaluation, split: Split, cfg, ctx) -> float:
    """Accuracy on the evaluated retain training samples."""
    return _pct(*ev.train(ev.evaluated(split.retain_train)))


@register_metric("test_acc", label="test acc (%)")
def test_acc(ev: Evaluation, split: Split, cfg, ctx) -> float:
    """Accuracy on the whole test pool."""
    return _pct(ev.test_logits, ev.test_labels)


@register_metric("unseen_acc", label="unseen acc (%)")
def unseen_acc(ev: Evaluation, split: Split, cfg, ctx) -> float:
    """Accuracy on the unseen (held-out, never trained on) training images; NaN when the run has none."""
    return _pct(*ev.train(split.unseen)) if len(split.unseen) else float("nan")


@register_metric("asr", label="attack success rate (%)", needs={"trigger_logits"})
def asr(ev: Evaluation, split: Split, cfg, ctx) -> float:
    """Attack success rate: share of triggered non-target test images classified as the target label."""
    if split.kind != "backdoor" or ev.trigger_logits is None:
        return float("nan")
    return 100.0 * float((ev.trigger_logits.argmax(1) == split.target).float().mean())


def _mia_svc(ev: Evaluation, split: Split, cfg: MetricConfig, augmented: bool) -> float:
    if split.kind != "class":
        return float("nan")
    pr = true_class_probability(*ev.train(ev.evaluated(split.retain_train), augmented))
    pf = true_class_probability(*ev.train(split.forget_train, augmented))
    pt = true_class_probability(*ev.test(split.forget_test))
    return svc_mia_kodge(pr, pf, pt, max_train=cfg.mia_max_train, seed=cfg.seed)


@register_metric("mia_svc", label="SVC MIA (%)")
def mia_svc(ev: Evaluation, split: Split, cfg: MetricConfig, ctx) -> float:
    """Kodge et al.'s SVC membership attack, test-time transforms for every feature (evaluation.md pitfall 11)."""
    return _mia_svc(ev, split, cfg, augmented=False)


@register_metric("mia_svc_augmented", label="SVC MIA, augmented train features (%)", needs={"aug_logits"})
def mia_svc_augmented(ev: Evaluation, split: Split, cfg: MetricConfig, ctx) -> float:
    """Upstream parity: the SVC attack with retain/forget train features through the training augmentation."""
    return _mia_svc(ev, split, cfg, augmented=True)


def _losses(logits: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    return torch.nn.functional.cross_entropy(logits.double(), labels, reduction="none").numpy()


@register_metric("mia_lr_cv", label="loss-LR MIA acc (%)")
def mia_lr_cv(ev: Evaluation, split: Split, cfg: MetricConfig, ctx) -> float:
    """Forget samples vs non-members: unseen training images when the scenario has them, else test images
    (class scenarios: the forget classes' test images)."""
    members = _losses(*ev.train(split.forget_train))
    if len(split.unseen):
        non = _losses(*ev.train(split.unseen))
    elif split.kind == "class":
        non = _losses(*ev.test(split.forget_test))
    else:
        non = _losses(ev.test_logits, ev.test_labels)
    return loss_lr_cv_mia(members, non, n_splits=cfg.mia_splits, seed=cfg.seed)


@register_metric("forget_prediction", label="forget-class test images predicted as class (%)")
def forget_prediction(ev: Evaluation, split: Split, cfg, ctx) -> dict[str, float]:
    """Share (%) of forget-class test images predicted as each class (leakage into one class is a risk)."""
    if split.kind != "class":
        return {}
    logits, _ = ev.test(split.forget_test)
    pred = logits.argmax(1)
    k = logits.shape[1]
    return {f"[{c}]": 100.0 * float((pred == c).float().mean()) for c in range(k)}


def _weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: m.weight.detach().float().cpu() for n, m in model.named_modules()
            if isinstance(m, (nn.Conv2d, nn.Linear))}


def weight_distance(model: nn.Module, reference: nn.Module) -> dict[str, float]:
    """Relative L2 distance of every conv/linear weight, ||W - W_ref|| / ||W_ref||, and over all of them."""
    a, b = _weights(model), _weights(reference)
    out = {f"[{n}]": float((a[n] - b[n]).norm() / b[n].norm().clamp_min(1e-12)) for n in a}
    num = sum(float((a[n] - b[n]).pow(2).sum()) for n in a)
    den = sum(float(b[n].pow(2).sum()) for n in a)
    out[""] = (num / max(den, 1e-24)) ** 0.5
    return out


@register_metric("weight_distance_original", label="weight distance to original", unit="", needs={"models"},
                 on_original=False, gap_to_retrain=False)
def weight_distance_original(ev: Evaluation, split: Split, cfg, ctx: ModelContext) -> dict[str, float]:
    """Relative L2 distance of the weights to the original's, per layer and over all of them."""
    return weight_distance(ctx.model, ctx.original)


@register_metric("weight_distance_retrain", label="weight distance to retrain", unit="", needs={"retrain"},
                 on_original=False, gap_to_retrain=False)
def weight_distance_retrain(ev: Evaluation, split: Split, cfg, ctx: ModelContext | None) -> dict[str, float]:
    """Relative L2 distance of the weights to the retrained model's (NaN where no retrain ran)."""
    if ctx is None or ctx.retrain is None:
        return {"": float("nan")}
    return weight_distance(ctx.model, ctx.retrain)


def relearn_epochs(model: nn.Module, forget, cfg: MetricConfig, target_acc: float, check) -> float:
    """Epochs of fine-tuning a copy of ``model`` on ``cfg.relearn_samples`` forget samples (Adam) until
    ``check(model)`` (forget accuracy, %) reaches ``target_acc``; fractional at the step it is reached.
    Returns ``relearn_max_epochs`` when it is not reached within the cap."""
    from ..train import TrainConfig, fit

    m = copy.deepcopy(model)
    if check(m) >= target_acc:
        return 0.0
    gen = torch.Generator().manual_seed(cfg.seed)
    pos = torch.randperm(forget.num_samples, generator=gen)[:cfg.relearn_samples].numpy()
    data = forget.subset(pos, batch_size=cfg.relearn_batch_size, shuffle=True, augment=False, seed=cfg.seed)
    tc = TrainConfig(epochs=cfg.relearn_max_epochs, optimizer="adam", lr=cfg.relearn_lr, weight_decay=0.0,
                     scheduler="none", batch_size=cfg.relearn_batch_size, augment=False)
    hist = fit(m, data, tc, stop=lambda mm, step: check(mm) >= target_acc, check_every=1, desc="relearn",
               progress=False)
    if not hist.stopped_early:
        return float(cfg.relearn_max_epochs)
    return hist.steps / max(len(data), 1)


@register_metric("relearn_epochs", label="relearn time (epochs)", unit="epochs", needs={"models", "images"},
                 on_original=False)
def relearn(ev: Evaluation, split: Split, cfg: MetricConfig, ctx: ModelContext | None) -> float:
    """Relearn time (Golatkar et al.; UNSIR's RT): forget accuracy measured on the forget classes' test
    images for class scenarios (else on the forget samples), target = relearn_target x the original's."""
    if ctx is None or ctx.forget is None or ctx.original_eval is None:
        return float("nan")
    if split.kind == "class":
        idx = split.forget_test
        if cfg.relearn_eval_samples is not None and len(idx) > cfg.relearn_eval_samples:  # each check's cost
            idx = np.sort(np.random.default_rng(cfg.seed).choice(idx, cfg.relearn_eval_samples, replace=False))
        ref = _pct(*ctx.original_eval.test(idx))
        xs = ctx.test_images(idx)

        def check(m: nn.Module) -> float:
            m.eval()
            with torch.no_grad():
                return _pct(torch.cat([m(x).cpu() for x, _ in xs]), torch.cat([y.cpu() for _, y in xs]))
    else:
        ref = _pct(*ctx.original_eval.train(split.forget_train))

        def check(m: nn.Module) -> float:
            m.eval()
            with torch.no_grad():
                pairs = [(m(x).cpu(), y.cpu()) for x, y in ctx.forget.with_options(shuffle=False, augment=False)]
            return _pct(torch.cat([p for p, _ in pairs]), torch.cat([y for _, y in pairs]))
    return relearn_epochs(ctx.model, ctx.forget, cfg, cfg.relearn_target * ref, check)


@register_metric("probe_forget_acc", label="linear-probe recovery: forget-class test acc (%)",
                 needs={"models", "images"})
def probe_forget_acc(ev: Evaluation, split: Split, cfg: MetricConfig, ctx: ModelContext | None) -> float:
    """Linear-probe recovery of a forgotten class (evaluation.md §6, "Are We Truly Forgetting?"): a logistic
    regression on the model's frozen penultimate features, fitted on ``probe_per_class`` labelled training images of
    every class (the forgotten ones included), scored on the forgotten classes' test images (%). A method that only
    edits the classifier head leaves the features, so the probe recovers the class; compare with retrain's value
    (features that never saw the class). The features are ``model.penultimate``: the pooled or flattened CNN
    features, and for the ViT the class token after the final LayerNorm."""
    if split.kind != "class" or ctx is None or ctx.train_images is None:
        return float("nan")
    from ..attacks import linear_probe_accuracy

    rng = np.random.default_rng(cfg.seed)
    labels = ev.train(split.forget_train)[1].numpy()
    pools = [split.forget_train[labels == c] for c in split.forget_classes]
    retain = ev.evaluated(split.retain_train)
    rl = ev.train(retain)[1].numpy()
    pools += [retain[rl == c] for c in np.unique(rl)]
    fit_idx = np.sort(np.concatenate([rng.permutation(p)[:cfg.probe_per_class] for p in pools]))

    def features(batches) -> tuple[np.ndarray, np.ndarray]:
        ctx.model.eval()
        with torch.no_grad():
            pairs = [(ctx.model.penultimate(x).float().cpu(), y.cpu()) for x, y in batches]
        return torch.cat([f for f, _ in pairs]).numpy(), torch.cat([y for _, y in pairs]).numpy()

    xf, yf = features(ctx.train_images(fit_idx))
    xt, yt = features(ctx.test_images(split.forget_test))
    return 100.0 * linear_probe_accuracy(xf, yf, xt, yt, c=cfg.probe_c, seed=cfg.seed)


def compute_metrics(ev: Evaluation, split: Split, cfg: MetricConfig, ctx: ModelContext | None = None,
                    names: tuple[str, ...] | None = None) -> dict[str, float]:
    out: dict[str, float] = {}
    for name in names if names is not None else cfg.metrics:
        value = METRICS.get(name)(ev, split, cfg, ctx)
        if isinstance(value, dict):
            out.update({f"{name}{k}": float(v) for k, v in value.items()})
        else:
            out[name] = float(value)
    return out
