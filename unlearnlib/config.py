"""Load a paper YAML, apply a profile, validate (unknown keys and wrong types are errors).

A paper YAML has: identity fields, ``settings`` (the paper's own setting), ``profiles`` (overrides per
profile: ``paper``, ``cpu``, ``smoke``), ``expected`` (the paper's numbers), ``claims`` and
``deviations``. Overrides merge into ``settings`` key by key; in ``models`` and ``methods`` a ``null``
value removes an entry.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .metrics.evaluation import MetricConfig
from .train import TrainConfig

PAPERS_DIR = Path(__file__).resolve().parent / "papers"
PROFILES = ("paper", "cpu", "smoke")
PROFILE_LABELS = {
    "paper": "paper profile: the paper's own dataset, models and recipe",
    "cpu": "cpu profile: Fashion-MNIST, narrow models, short recipe; NOT the paper's setting",
    "smoke": "smoke profile: a few thousand images, tiny models, 1 epoch; a pipeline check, not a result",
}


class ConfigError(ValueError):
    """A config or run parameter is invalid; the message names the field and what is valid."""


# ----------------------------------------------------------------------------------------------
# generic dataclass validation


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _check(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin is typing.Literal:
        if isinstance(value, bool) or value not in args:
            raise ConfigError(f"{where}: {value!r} is not a valid choice; valid: {', '.join(str(a) for a in args)}")
        return value
    if origin in (typing.Union, types.UnionType):
        errors = []
        for a in args:
            try:
                return _check(value, a, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"{where}: expected {' or '.join(_type_name(a) for a in args)}, "
                          f"got {type(value).__name__} {value!r}")
    if tp is type(None):
        if value is None:
            return None
        raise ConfigError(f"{where}: expected null, got {value!r}")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__} {value!r}")
        inner = args[0] if args else Any
        out = [_check(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__} {value!r}")
        return {k: _check(v, args[1], f"{where}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {type(value).__name__} {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {type(value).__name__} {value!r}")
        return value
    if tp in (str, bool):
        if not isinstance(value, tp):
            raise ConfigError(f"{where}: expected {tp.__name__}, got {type(value).__name__} {value!r}")
        return value
    return value


def from_dict(cls: type, data: Any, where: str = "") -> Any:
    """Build dataclass ``cls`` from a mapping; unknown keys and wrong types raise :class:`ConfigError`."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where or cls.__name__}: expected a mapping, got {type(data).__name__} {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ConfigError(f"{where or cls.__name__}: unknown key(s) {', '.join(unknown)}; "
                          f"valid keys: {', '.join(names)}")
    required = [f.name for f in dataclasses.fields(cls) if f.init and f.default is dataclasses.MISSING
                and f.default_factory is dataclasses.MISSING]
    missing = [k for k in required if k not in data]
    if missing:
        raise ConfigError(f"{where or cls.__name__}: missing key(s) {', '.join(missing)}")
    kwargs = {k: _check(v, hints[k], f"{where}.{k}" if where else k) for k, v in data.items()}
    return cls(**kwargs)


def check_instance(obj: Any, where: str = "") -> None:
    """Validate an already built dataclass (a method's Config made in code): types and choices, as from YAML."""
    from_dict(type(obj), {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj) if f.init},
              where or type(obj).__name__)


def to_dict(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def config_hash(*parts: Any) -> str:
    blob = json.dumps([to_dict(p) for p in parts], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------------------------
# the paper schema


@dataclass
class ModelSpec:
    width: int | None = None  # channels of the first stage (None: the architecture's own, e.g. 64 for ResNet-18)
    depth: int | None = None  # ViT only: encoder blocks (None: its own, 12)
    heads: int | None = None  # ViT only: attention heads (None: width // 64)
    patch: int | None = None  # ViT only: patch side in pixels (None: its own, 4)


@dataclass
class ScenarioConfig:
    kind: str  # class | random | backdoor
    classes: list[int] = field(default_factory=list)  # class: the classes forgotten together
    fraction: float = 0.1  # random: share of the training pool forgotten; backdoor: share poisoned
    target: int = 0  # backdoor: the label the trigger maps to
    trigger_size: int = 3  # backdoor: side of the square patch, pixels
    trigger_value: int = 255  # backdoor: uint8 value of the patch
    trigger_location: str = "bottom_right"  # bottom_right | top_left


@dataclass
class SplitConfig:
    forget: list[list[int]] = field(default_factory=list)  # shorthand: one class scenario per entry
    scenarios: list[ScenarioConfig] = field(default_factory=list)
    unseen: int = 0  # held-out training images never used for training ("unseen third-party data")
    unseen_classes: str = "all"  # class scenarios: all (unseen keeps the forget classes) | retain
    seed: int = 0  # seeds the choice of random / poisoned samples (fixed across training seeds)

    def all_scenarios(self) -> list[ScenarioConfig]:
        return [ScenarioConfig("class", classes=list(c)) for c in self.forget] + list(self.scenarios)


@dataclass
class TimingConfig:
    """How an unlearning call is timed (evaluation is never inside the timer)."""

    repeat_below_s: float = 5.0  # a call shorter than this is repeated, each from a fresh copy of the original
    repeats: int = 3  # calls in all for such a method (the median is reported, with the spread)
    warmup: bool = True  # one untimed forward/backward pass before the first timed call of a model in a process


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
    overrides: dict[str, Any] = field(default_factory=dict)
    metrics: list[str] = field(default_factory=lambda: ["forget_acc", "retain_acc", "test_acc", "test_forget_acc",
                                                         "test_retain_acc"])  # per model (the scores use logits)


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

    def runs_on(self, method: str, kind: str) -> bool:
        """Whether ``method`` runs on scenarios of this kind: the method supports the kind (its registered
        ``scenarios``) and ``method_scenarios`` does not leave it out (default: every kind)."""
        return kind in self.method_scenarios.get(method, SCENARIO_KINDS) and kind in supported_kinds(method)


def supported_kinds(method: str) -> tuple[str, ...]:
    """The scenario kinds a configured method (or variant) is defined for, as it registered them."""
    from .methods import METHODS

    return METHODS.get(base_method(method)).scenarios


SCENARIO_KINDS = ("class", "random", "backdoor")


@dataclass
class Claim:
    id: str
    text: str
    source: str
    kind: str  # threshold | vs_method | vs_best
    method: str
    metric: str
    op: str  # < <= > >=
    threshold: float | None = None
    reference: str | None = None  # vs_method: the method compared with
    references: list[str] = field(default_factory=list)  # vs_best: the methods to beat
    transform: str = "diff"  # vs_method: diff (method - reference) | drop (reference - method) | abs_diff
    profiles: list[str] = field(default_factory=lambda: list(PROFILES))  # where the check is meaningful
    scenario_kind: str = ""  # only scenarios of this kind (class | random | backdoor); "" = all
    # precondition: the claim is only comparable when `requires_method`'s `requires_metric` meets
    # `requires_op requires_threshold` (e.g. the original's ASR >= 50: the backdoor was implanted at all)
    requires_metric: str = ""
    requires_method: str = "original"
    requires_op: str = ">="
    requires_threshold: float | None = None
    note: str = ""


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


def available_papers() -> list[str]:
    return sorted(p.stem for p in PAPERS_DIR.glob("*.yaml"))


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


def resolve_profile(profile: str) -> str:
    if profile == "auto":
        import torch

        return "paper" if torch.cuda.is_available() else "cpu"
    return profile


def load_paper(paper: str, profile: str = "paper") -> PaperConfig:
    """The paper's config with ``profile`` applied (``auto``: ``paper`` with CUDA, else ``cpu``)."""
    if not isinstance(paper, str):
        raise ConfigError(f"paper: expected a string, got {type(paper).__name__} {paper!r}")
    if not isinstance(profile, str):
        raise ConfigError(f"profile: expected a string, got {type(profile).__name__} {profile!r}")
    papers = available_papers()
    if paper not in papers:
        raise ConfigError(f"unknown paper {paper!r}; valid papers: {', '.join(papers)}")
    profile = resolve_profile(profile)
    path = PAPERS_DIR / f"{paper}.yaml"
    raw = yaml.safe_load(path.read_text())
    profiles = raw.get("profiles") or {}
    missing = [p for p in PROFILES if p not in profiles]
    if missing:
        raise ConfigError(f"{path.name}: every paper declares the profiles {', '.join(PROFILES)}; missing {missing}")
    if profile not in profiles:
        raise ConfigError(f"unknown profile {profile!r} for {paper}; valid profiles: auto, {', '.join(profiles)}")
    raw = dict(raw)
    raw["settings"] = _merge(raw.get("settings") or {}, profiles.get(profile) or {}, "settings")
    raw["profile"] = profile
    cfg = from_dict(PaperConfig, raw, paper)
    if cfg.id != paper:
        raise ConfigError(f"{path.name}: id {cfg.id!r} does not match the file name")
    validate_settings(cfg)
    return cfg


CLAIM_OPS = ("<", "<=", ">", ">=")  # the comparisons a claim (and its precondition) may use


def validate_settings(cfg: PaperConfig) -> None:
    """Cross-checks against the registries, so a typo fails before any training starts."""
    from .data import DATASETS
    from .methods import METHODS
    from .metrics import METRICS
    from .models import MODELS, check_options

    s, w = cfg.settings, f"{cfg.id}.settings"
    shared = ("methods", "models", "seeds", "metrics", "more_datasets", "ensemble", "method_scenarios")
    for ds, over in s.more_datasets.items():
        bad = [k for k in over if k in shared]
        if bad:
            raise ConfigError(f"{w}.more_datasets.{ds}: {', '.join(bad)} cannot differ between datasets (one set of "
                              f"options per method for every dataset); valid overrides: train, train_subset, "
                              f"test_subset, split, eval_batch_size, download, timing")
        if ds == s.dataset:
            raise ConfigError(f"{w}.more_datasets.{ds}: already the run's first dataset")
        try:
            DATASETS.get(ds)
        except KeyError as e:
            raise ConfigError(f"{w}.more_datasets: {e}") from None
        cfg.settings_for(ds)  # its overrides are valid keys and types
    try:
        DATASETS.get(s.dataset)
        for m, spec in s.models.items():
            MODELS.get(m)
            try:
                check_options(m, depth=spec.depth, heads=spec.heads, patch=spec.patch)
            except ValueError as e:
                raise ConfigError(f"{w}.models.{m}: {e}") from None
        for name, opts in s.methods.items():
            method_config(name, opts, s.train, where=f"{w}.methods.{name}")
        for m in s.metrics.metrics:
            METRICS.get(m)
        for c in cfg.claims:
            for mth in [c.method, c.reference, *c.references, c.requires_method if c.requires_metric else None]:
                if mth and mth != "original" and base_method(mth) not in METHODS:
                    raise ConfigError(f"{cfg.id}.claims.{c.id}: unknown method {mth!r}")
    except KeyError as e:
        raise ConfigError(f"{w}: {e}") from None
    if not s.split.all_scenarios():
        raise ConfigError(f"{w}.split: no scenario; give `forget: [[class, ...], ...]` or `scenarios:`")
    for i, sc in enumerate(s.split.all_scenarios()):
        if sc.kind not in SCENARIO_KINDS:
            raise ConfigError(f"{w}.split.scenarios[{i}].kind: {sc.kind!r}; valid: {', '.join(SCENARIO_KINDS)}")
        if sc.kind == "class" and not sc.classes:
            raise ConfigError(f"{w}.split.scenarios[{i}].classes: a class scenario needs at least one class")
    for name, kinds in s.method_scenarios.items():
        if name not in s.methods:
            raise ConfigError(f"{w}.method_scenarios.{name}: not a configured method; valid: {', '.join(s.methods)}")
        bad = [k for k in kinds if k not in SCENARIO_KINDS]
        if bad or not kinds:
            raise ConfigError(f"{w}.method_scenarios.{name}: {kinds!r}; give a non-empty list of "
                              f"{', '.join(SCENARIO_KINDS)}")
        if METHODS.get(base_method(name)).trains_from_scratch:
            raise ConfigError(f"{w}.method_scenarios.{name}: the retrain reference runs on every scenario")
        unsupported = [k for k in kinds if k not in supported_kinds(name)]
        if unsupported:
            raise ConfigError(f"{w}.method_scenarios.{name}: {name} does not support {', '.join(unsupported)} "
                              f"scenarios; it supports {', '.join(supported_kinds(name))}")
        if not any(sc.kind in kinds for sc in s.split.all_scenarios()):
            raise ConfigError(f"{w}.method_scenarios.{name}: no scenario of kind {', '.join(kinds)} in this run")
    if s.split.unseen_classes not in ("all", "retain"):
        raise ConfigError(f"{w}.split.unseen_classes: {s.split.unseen_classes!r}; valid: all, retain")
    if not s.seeds:
        raise ConfigError(f"{w}.seeds: at least one seed is needed")
    _validate_ensemble(cfg)
    if s.timing.repeats < 1 or s.timing.repeat_below_s < 0:
        raise ConfigError(f"{w}.timing: repeats must be >= 1 and repeat_below_s >= 0")
    for c in cfg.claims:
        if c.kind not in ("threshold", "vs_method", "vs_best"):
            raise ConfigError(f"{cfg.id}.claims.{c.id}.kind: {c.kind!r}; valid: threshold, vs_method, vs_best")
        if c.op not in CLAIM_OPS:
            raise ConfigError(f"{cfg.id}.claims.{c.id}.op: {c.op!r}; valid: <, <=, >, >=")
        if c.kind in ("threshold", "vs_method") and c.threshold is None:
            raise ConfigError(f"{cfg.id}.claims.{c.id}.threshold: a {c.kind} claim needs a threshold")
        if c.kind == "vs_method" and (not c.reference or c.transform not in ("diff", "drop", "abs_diff")):
            raise ConfigError(f"{cfg.id}.claims.{c.id}: a vs_method claim needs a reference and a transform "
                              f"in diff, drop, abs_diff")
        if c.scenario_kind not in ("", *SCENARIO_KINDS):
            raise ConfigError(f"{cfg.id}.claims.{c.id}.scenario_kind: {c.scenario_kind!r}; valid: "
                              f"{', '.join(SCENARIO_KINDS)} or empty")
        if c.requires_metric and (c.requires_threshold is None or c.requires_op not in CLAIM_OPS):
            raise ConfigError(f"{cfg.id}.claims.{c.id}.requires_metric: a precondition needs requires_threshold "
                              f"and requires_op in <, <=, >, >=")
        if c.kind == "vs_best" and not c.references:
            raise ConfigError(f"{cfg.id}.claims.{c.id}.references: a vs_best claim needs methods to compare with")


def _validate_ensemble(cfg: PaperConfig) -> None:
    s, e, w = cfg.settings, cfg.settings.ensemble, f"{cfg.id}.settings.ensemble"
    if not e.n:
        return
    if e.n < 4:
        raise ConfigError(f"{w}.n: {e.n}; an ensemble needs at least 4 models per side (0 switches it off)")
    if e.dataset and e.dataset not in cfg.datasets:
        raise ConfigError(f"{w}.dataset: {e.dataset!r} is not a dataset of this run; valid: {', '.join(cfg.datasets)}")
    if e.model and e.model not in s.models:
        raise ConfigError(f"{w}.model: {e.model!r}; valid: {', '.join(s.models)}")
    bad = [m for m in e.methods if m not in s.methods]
    if bad:
        raise ConfigError(f"{w}.methods: {bad} are not configured for this run; valid: {', '.join(s.methods)}")
    bad = [k for k in e.overrides if k in ("methods", "models", "seeds", "more_datasets", "ensemble", "dataset")]
    if bad:
        raise ConfigError(f"{w}.overrides: {', '.join(bad)} cannot be overridden for the ensemble")
    cfg.ensemble_settings()  # the overrides are valid keys and types


def base_method(name: str) -> str:
    """A run may configure variants of one method: ``deep_unlearning@no_aug`` is ``deep_unlearning`` with its
    own options, reported under the full name."""
    return name.split("@", 1)[0]


def method_config(name: str, opts: dict[str, Any] | None, train: TrainConfig, where: str = "") -> Any:
    """The method's Config from YAML options; retrain inherits the paper's training recipe."""
    from .methods import METHODS

    spec = METHODS.get(base_method(name))
    opts = dict(opts or {})
    if spec.trains_from_scratch:
        opts = {**to_dict(train), **opts}
    return from_dict(spec.Config, opts, where or f"methods.{name}")


def parse_seeds(seeds: Any, default: list[int]) -> list[int]:
    """Seeds as a papermill parameter: None/"" (the profile's), an int, a list of ints, or "1,2,3"."""
    if seeds is None or seeds == "":
        return list(default)
    if isinstance(seeds, bool):
        raise ConfigError(f"seeds: expected an int, a list of ints or a string like '1,2', got bool {seeds!r}")
    if isinstance(seeds, int):
        return [seeds]
    if isinstance(seeds, str):
        try:
            return [int(s) for s in seeds.replace(" ", "").split(",") if s]
        except ValueError:
            raise ConfigError(f"seeds: {seeds!r} is not a comma-separated list of integers") from None
    if isinstance(seeds, (list, tuple)) and seeds and all(isinstance(s, int) and not isinstance(s, bool)
                                                         for s in seeds):
        return list(seeds)
    raise ConfigError(f"seeds: expected an int, a list of ints or a string like '1,2', "
                      f"got {type(seeds).__name__} {seeds!r}")
