"""The paper schema: what a paper YAML says, as dataclasses (no registry: reading a stored run's resolved config
needs no method, metric or dataset module; :mod:`unlearnlib.config` checks a paper against the registries).

Overrides merge into ``settings`` key by key; in ``models`` and ``methods`` a ``null`` value removes an entry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from .claims import Claim
from .data.splits import SplitConfig
from .metrics.evaluation import MetricConfig
from .schema import KEY_IF_SET, SEED_MAX, ConfigError, check_range, check_seeds, from_dict, to_dict
from .train import SPEEDS, TrainConfig

PROFILE_LABELS = {
    "paper": "paper profile: the paper's own dataset, models and recipe",
    "cpu": "cpu profile: Fashion-MNIST, narrow models, short recipe; NOT the paper's setting",
    "smoke": "smoke profile: a few thousand images, tiny models, 1 epoch; a pipeline check, not a result",
    "fast": "fast profile: the paper's datasets, models and widths with a fast recipe (one-cycle, large batch, label "
            "smoothing, bf16, channels_last, fewer epochs); a declared deviation, its accuracy unmeasured until a GPU "
            "run",
}


@dataclass
class ModelSpec:
    width: int | None = None  # channels of the first stage (None: the architecture's own, e.g. 64 for ResNet-18)
    depth: int | None = None  # ViT only: encoder blocks (None: its own, 12)
    heads: int | None = None  # ViT only: attention heads (None: width // 64)
    patch: int | None = None  # ViT only: patch side in pixels (None: its own, 4)

    def check(self) -> None:
        check_range(self, "width", "depth", "heads", "patch", ge=1, optional=True)


@dataclass
class TimingConfig:
    """How an unlearning call is timed (evaluation is never inside the timer)."""

    repeat_below_s: float = 5.0  # a call shorter than this is repeated, each from a fresh copy of the original
    repeats: int = 3  # calls in all for such a method (the median is reported, with the spread)
    warmup: bool = True  # one untimed forward/backward pass before the first timed call of a model in a process

    def check(self) -> None:
        check_range(self, "repeat_below_s", ge=0)
        check_range(self, "repeats", ge=1)


@dataclass
class EnsembleConfig:
    """N models per side for per-example forgetting scores (evaluation.md §2-4), on one forget scenario: N originals
    (training seeds ``seed`` .. ``seed+n-1``), each unlearned once (the *marginal* scores), the first original
    unlearned with N method seeds (the *conditional* ones), and 2N retrains (two independent sets: the oracle and
    the retrain-vs-retrain noise floor). ``overrides`` changes the settings for these models only (e.g. a smaller
    training subset, so that 4N trainings fit a budget); they are reported as their own experiment."""

    n: int = 0  # models per side; 0: no ensemble
    scenario: str = ""  # the forget scenario's tag (default: the first class scenario)
    methods: list[str] = field(default_factory=list)  # default: every configured method but retrain
    model: str = ""  # default: the first model
    dataset: str = ""  # default: the run's first dataset
    seed: int = 1000
    # False: no conditional runs (the first original unlearned with N method seeds), only the marginal scores; halves
    # the ensemble's method cells when a budget needs it
    conditional: bool = True
    # True: the N originals, the N oracle retrains and the N floor retrains each train as one grouped network of N
    # members (models/grouped.py; each member equal in distribution to one trained alone, tests/test_grouped.py),
    # where the model and the recipe allow it (grouped_fit.group_reason; else one by one, the plan says why).
    # False: one by one. Default True: faster on the CPU (benchmarks/grouped.py)
    grouped: bool = True
    overrides: dict[str, Any] = field(default_factory=dict)
    metrics: list[str] = field(default_factory=lambda: ["forget_acc", "retain_acc", "test_acc", "test_forget_acc",
                                                         "test_retain_acc"])  # per model (the scores use logits)

    def check(self) -> None:
        if self.n and self.n < 4:
            raise ConfigError(f"n: {self.n}; an ensemble needs at least 4 models per side (0 switches it off)")
        check_range(self, "n", ge=0)
        # originals take seeds seed .. seed+n-1, the retrains and the conditional runs up to seed+3n-1
        if not 0 <= self.seed <= SEED_MAX - 3 * self.n:
            raise ConfigError(f"seed: {self.seed} is out of range; valid: 0 .. {SEED_MAX - 3 * self.n} "
                              f"(the ensemble uses seeds seed .. seed + 3n)")


@dataclass
class ValidationConfig:
    """The validation forget requests a tuning study scores on, one per scenario kind of the run, each built like
    the run's first scenario of that kind but never the reported one: a class request forgets ``classes`` instead,
    a random or backdoor request draws its samples with ``split_seed`` instead of ``split.seed``."""

    classes: list[int] = field(default_factory=lambda: [3])  # class requests: the classes forgotten
    split_seed: int = 1  # random subset and poisoned samples: their seed (the reported requests use split.seed)

    def check(self) -> None:
        check_range(self, "classes", ge=0)
        if not self.classes or len(set(self.classes)) != len(self.classes):
            raise ConfigError(f"classes: {self.classes}; give one or more distinct classes")
        check_range(self, "split_seed", ge=0, le=SEED_MAX)


# the objective's parts: the absolute gap to retrain of each metric, in percentage points (a part a scenario does
# not compute, such as asr outside the backdoor, is left out of its average)
DEFAULT_WEIGHTS = {"forget_acc": 1.0, "retain_acc": 1.0, "test_acc": 1.0, "mia_lr_cv": 1.0, "asr": 1.0}


@dataclass
class TuningConfig:
    """Equal-budget tuning (issue 20): every tuned method gets the same number of trials per scenario kind, dataset
    and model, over a shared space (learning rate log-uniform in ``lr``; steps or epochs from 1 up to
    ``budget_share`` of the original's training) plus its own knobs (the method's ``TUNING``), scored by the
    weighted mean gap to retrain on the validation requests, averaged over the tuning ``seeds`` (never reporting
    seeds). A seeded TPE sampler per study; every trial is a cell. ``trials: 0``: no tuning."""

    trials: int = 0  # per method, scenario kind, dataset and model; the same for every method
    seeds: list[int] = field(default_factory=lambda: [100])  # tuning seeds: the validation originals' training seeds
    methods: list[str] = field(default_factory=list)  # default: every configured method with something to tune
    datasets: list[str] = field(default_factory=list)  # the datasets tuned (default: every dataset of the run)
    lr: list[float] = field(default_factory=lambda: [1e-5, 0.1])  # [low, high] of the log-uniform learning rate
    budget_share: float = 0.3  # steps or epochs at most this share of the original's training (its epochs, steps)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    sampler_seed: int = 0  # seeds each study's TPE sampler (with the method, kind, dataset and model)
    startup_trials: int = 4  # TPE's random trials before it models the good and bad regions
    batch: int = 1  # trials asked per study before their results are told (a config value, not the executor's
    #                 parallelism, so that every executor gets the same suggestions; the studies run side by side)

    def check(self) -> None:
        check_range(self, "trials", ge=0)
        check_range(self, "startup_trials", "batch", ge=1)
        check_range(self, "sampler_seed", ge=0, le=SEED_MAX)
        self.seeds = check_seeds(self.seeds, "seeds")
        if len(self.lr) != 2 or not 0 < self.lr[0] < self.lr[1]:
            raise ConfigError(f"lr: {self.lr}; give [low, high] with 0 < low < high (the log-uniform bounds)")
        check_range(self, "budget_share", gt=0, le=1)
        if not self.weights or any(w < 0 for w in self.weights.values()) or not any(self.weights.values()):
            raise ConfigError(f"weights: {self.weights}; give metric -> weight >= 0, at least one > 0")


@dataclass
class Settings:
    dataset: str
    models: dict[str, ModelSpec]
    train: TrainConfig
    split: SplitConfig
    seeds: list[int]
    methods: dict[str, dict[str, Any]]
    metrics: MetricConfig = field(default_factory=MetricConfig)
    train_subset: int | None = None  # class-stratified subset of the training set (None: all)
    test_subset: int | None = None
    # training images evaluated per model: a class-stratified sample of the train pool of this size, plus every
    # forget and unseen image (None: the whole pool). Retain metrics then read that sample.
    eval_train_subset: int | None = None
    eval_batch_size: int = 1024
    download: bool = True  # may fetch the dataset when no local copy exists
    timing: TimingConfig = field(default_factory=TimingConfig)
    # further datasets the same methods and scenarios run on, each with overrides of these settings (its own
    # training recipe, subsets, unseen pool); methods, models, seeds and metrics are shared by every dataset
    more_datasets: dict[str, dict[str, Any]] = field(default_factory=dict)
    ensemble: EnsembleConfig = field(default_factory=EnsembleConfig)
    # methods that run only on some scenario kinds (method -> [class | random | backdoor]); every other method
    # runs on every scenario. The results table says "not run on this kind" where a method was left out
    method_scenarios: dict[str, list[str]] = field(default_factory=dict)
    # the run's speed switch for every cell (train.SPEEDS): exact = float32 (the papers' numerics); fast = bfloat16
    # autocast and channels_last for originals, retrains, every method call and evaluation (a declared deviation)
    speed: Literal["exact", "fast"] = field(default="exact", metadata=KEY_IF_SET)
    tuning: TuningConfig = field(default_factory=TuningConfig)  # equal-budget tuning (trials 0: none)

    def check(self) -> None:
        if self.speed not in SPEEDS:
            raise ConfigError(f"speed: {self.speed!r}; valid: {', '.join(SPEEDS)}")
        self.seeds = check_seeds(self.seeds, "seeds")
        if self.train.epochs < 1:
            raise ConfigError(f"train.epochs: {self.train.epochs} is out of range; valid: >= 1 (the original model "
                              f"is trained for this many epochs)")
        check_range(self, "train_subset", "test_subset", "eval_train_subset", ge=1, optional=True)
        check_range(self, "eval_batch_size", ge=1)


@dataclass
class ExpectedTable:
    source: str
    dataset: str
    model: str
    rows: dict[str, dict[str, list[float]]]  # method -> metric -> [mean] or [mean, std]


@dataclass
class Deviation:
    what: str
    upstream: str
    ours: str
    switch: str = ""  # the config field that selects the upstream behaviour


@dataclass
class PaperConfig:
    id: str
    title: str
    authors: str
    venue: str
    arxiv: str
    code: str
    brief: str
    availability: str
    headline: str
    settings: Settings
    profiles: dict[str, dict[str, Any]]
    expected: list[ExpectedTable] = field(default_factory=list)
    claims: list[Claim] = field(default_factory=list)
    deviations: list[Deviation] = field(default_factory=list)
    table_metrics: list[str] = field(default_factory=list)  # columns of the paper-vs-ours table
    profile_labels: dict[str, str] = field(default_factory=dict)  # descriptions of extra profiles (presets)
    profile: str = "paper"  # which profile `settings` was resolved for
    chapter: str = ""  # the title of its chapter in the book (default: title)
    order: int = 100  # the chapter's place in the book

    @property
    def datasets(self) -> list[str]:
        """Every dataset of the run: the profile's, then ``more_datasets`` in order."""
        return [self.settings.dataset, *self.settings.more_datasets]

    def ensemble_settings(self) -> "Settings":
        """The settings of the ensemble's models: its dataset's, with the ensemble's overrides and metrics."""
        e = self.settings.ensemble
        raw = to_dict(self.settings_for(e.dataset or self.settings.dataset))
        raw.pop("more_datasets")
        raw.pop("ensemble")
        merged = _merge(raw, {**e.overrides, "metrics": {**raw["metrics"], **e.overrides.get("metrics", {}),
                                                          "metrics": list(e.metrics)}}, "settings")
        return from_dict(Settings, merged, f"{self.id}.settings.ensemble.overrides")

    def settings_for(self, dataset: str) -> "Settings":
        """The settings one dataset runs with: the profile's, with that dataset's overrides merged in."""
        if dataset == self.settings.dataset:
            return self.settings
        if dataset not in self.settings.more_datasets:
            raise ConfigError(f"{self.id}: dataset {dataset!r} is not in this run; valid: {', '.join(self.datasets)}")
        raw = to_dict(self.settings)
        raw.pop("more_datasets")
        raw["ensemble"] = {}  # the ensemble belongs to the run, not to each dataset
        merged = _merge(raw, {**self.settings.more_datasets[dataset], "dataset": dataset}, "settings")
        return from_dict(Settings, merged, f"{self.id}.settings.more_datasets.{dataset}")

    @property
    def profile_label(self) -> str:
        return self.profile_labels.get(self.profile) or PROFILE_LABELS.get(self.profile, f"{self.profile} profile")


def _merge(base: dict, over: dict, where: str) -> dict:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v, f"{where}.{k}")
        elif v is None and where.split(".")[-1] in ("models", "methods") and k in out:
            del out[k]
        else:
            out[k] = v
    return out
