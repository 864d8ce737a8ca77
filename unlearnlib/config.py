"""Load a paper YAML, apply a profile, validate (unknown keys and wrong types are errors).

A paper YAML has: identity fields, ``settings`` (the paper's own setting), ``profiles`` (overrides per
profile: ``paper``, ``cpu``, ``smoke``), ``expected`` (the paper's numbers), ``claims`` and
``deviations``. Overrides merge into ``settings`` key by key; in ``models`` and ``methods`` a ``null``
value removes an entry.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .claims import Claim  # noqa: F401 - re-exported (the paper schema)
from .data.splits import SCENARIO_KINDS, ScenarioConfig, SplitConfig  # noqa: F401 - re-exported (the paper schema)
from .methods import base_method, method_spec  # noqa: F401 - base_method re-exported for the config's readers
from .paper import (  # noqa: F401 - re-exported: the paper schema's readers import them from here
    PROFILE_LABELS,
    Deviation,
    EnsembleConfig,
    ExpectedTable,
    ModelSpec,
    PaperConfig,
    Settings,
    TimingConfig,
    _merge,
)
from .schema import (  # noqa: F401 - re-exported: the paper schema's readers import them from here
    PROFILES,
    SEED_MAX,
    ConfigError,
    check_instance,
    check_range,
    check_seeds,
    config_hash,
    from_dict,
    parse_seeds,
    read_yaml,
    to_dict,
)
from .train import TrainConfig

PAPERS_DIR = Path(__file__).resolve().parent / "papers"


def runs_on(settings: Settings, method: str, kind: str) -> bool:
    """Whether ``method`` runs on scenarios of this kind: the method supports the kind (its registered
    ``scenarios``) and the run's ``method_scenarios`` does not leave it out (default: every kind). The harness
    writes the answer into the run folder (``run_on``), so the reader never asks the registry."""
    return kind in settings.method_scenarios.get(method, SCENARIO_KINDS) and kind in supported_kinds(method)


def supported_kinds(method: str) -> tuple[str, ...]:
    """The scenario kinds a configured method (or variant) is defined for, as it registered them."""
    return method_spec(method).scenarios


def available_papers() -> list[str]:
    return sorted(p.stem for p in PAPERS_DIR.glob("*.yaml"))


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
    raw = read_yaml(path.read_text(), path.name)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path.name}: expected a mapping of the paper's fields (id, title, settings, profiles, "
                          f"...) at the top level, got {type(raw).__name__}")
    profiles = raw.get("profiles")
    if not isinstance(profiles, dict) or not all(isinstance(v, dict) or v is None for v in profiles.values()):
        raise ConfigError(f"{path.name}: profiles: expected a mapping of profile name -> overrides of settings")
    missing = [p for p in PROFILES if p not in profiles]
    if missing:
        raise ConfigError(f"{path.name}: every paper declares the profiles {', '.join(PROFILES)}; missing {missing}")
    if profile not in profiles:
        raise ConfigError(f"unknown profile {profile!r} for {paper}; valid profiles: auto, {', '.join(profiles)}")
    if not isinstance(raw.get("settings"), dict):
        raise ConfigError(f"{paper}.settings: expected a mapping, got {type(raw.get('settings')).__name__}")
    merged = dict(raw, settings=_merge(raw["settings"], profiles[profile] or {}, "settings"), profile=profile)
    if raw.get("id") != paper:
        raise ConfigError(f"{path.name}: id {raw.get('id')!r} does not match the file name")
    try:
        cfg = from_dict(PaperConfig, merged, paper)
        validate_settings(cfg)
    except ConfigError as e:
        raise _blame_profile(e, raw, paper, profile) from None
    return cfg


def _blame_profile(error: ConfigError, raw: dict, paper: str, profile: str) -> ConfigError:
    """An error in the merged settings that the paper's own settings do not have comes from the profile's
    overrides: name ``<paper>.profiles.<profile>`` rather than ``<paper>.settings`` (where the typo is)."""
    prefix = f"{paper}.settings"
    if not str(error).startswith(prefix) or not raw["profiles"][profile]:
        return error
    try:
        validate_settings(from_dict(PaperConfig, dict(raw, profile=profile), paper))
    except ConfigError:
        return error  # the paper's own settings are wrong too: report as it is
    return ConfigError(f"{paper}.profiles.{profile}{str(error)[len(prefix):]}")


def validate_settings(cfg: PaperConfig) -> None:
    """Cross-checks against the registries and between fields, so a typo fails before any training starts (each
    field's own ranges were checked by its dataclass's ``check()`` when the YAML loaded)."""
    _validate_more_datasets(cfg)
    _validate_registered(cfg)
    if not cfg.settings.split.all_scenarios():
        raise ConfigError(f"{cfg.id}.settings.split: no scenario; give `forget: [[class, ...], ...]` or `scenarios:`")
    _validate_classes(cfg)
    _validate_method_scenarios(cfg)
    _validate_ensemble(cfg)
    for c in cfg.claims:
        check_instance(c, f"{cfg.id}.claims.{c.id}")  # its own rules (Claim.check), for a claim made in code too


def _validate_more_datasets(cfg: PaperConfig) -> None:
    from .data import DATASETS

    s, w = cfg.settings, f"{cfg.id}.settings"
    shared = ("methods", "models", "seeds", "metrics", "more_datasets", "ensemble", "method_scenarios", "speed")
    for ds, over in s.more_datasets.items():
        bad = [k for k in over if k in shared]
        if bad:
            raise ConfigError(f"{w}.more_datasets.{ds}: {', '.join(bad)} cannot differ between datasets (one set of "
                              f"options per method for every dataset); valid overrides: train, train_subset, "
                              f"test_subset, split, eval_batch_size, download, timing")
        if ds == s.dataset:
            raise ConfigError(f"{w}.more_datasets.{ds}: already the run's first dataset")
        if ds not in DATASETS:
            raise ConfigError(f"{w}.more_datasets: unknown dataset {ds!r}; valid: {', '.join(DATASETS.names())}")
        cfg.settings_for(ds)  # its overrides are valid keys and types


def _validate_registered(cfg: PaperConfig) -> None:
    """Every dataset, model, method and metric named is registered; every method's options load (its Config's
    types, choices and ranges)."""
    from .data import DATASETS
    from .methods import METHODS
    from .metrics import METRICS
    from .models import MODELS, check_options

    s, w = cfg.settings, f"{cfg.id}.settings"
    for registry, names, where in ((DATASETS, [s.dataset], "dataset"), (MODELS, s.models, "models"),
                                   (METRICS, s.metrics.metrics, "metrics.metrics"),
                                   (METHODS, [base_method(m) for m in s.methods], "methods")):
        for name in names:
            try:
                registry.get(name)
            except KeyError as e:
                raise ConfigError(f"{w}.{where}: {e}") from None
    for m, spec in s.models.items():  # the ViT's options, given to the ViT only
        try:
            check_options(m, depth=spec.depth, heads=spec.heads, patch=spec.patch)
        except ValueError as e:
            raise ConfigError(f"{w}.models.{m}: {e}") from None
    for name, opts in s.methods.items():
        method_config(name, opts, s.train, where=f"{w}.methods.{name}")
    for c in cfg.claims:
        for mth in [c.method, c.reference, *c.references, c.requires_method if c.requires_metric else None]:
            if mth and mth != "original" and base_method(mth) not in METHODS:
                raise ConfigError(f"{cfg.id}.claims.{c.id}: unknown method {mth!r}")


def _validate_classes(cfg: PaperConfig) -> None:
    """Every class a scenario names (forgotten classes, a backdoor's target) exists in its dataset, and a class
    scenario leaves at least one class to retain."""
    from .data import DATASETS

    for ds in cfg.datasets:
        n = DATASETS.get(ds).num_classes
        w = f"{cfg.id}.settings" + ("" if ds == cfg.settings.dataset else f".more_datasets.{ds}")
        for i, sc in enumerate(cfg.settings_for(ds).split.all_scenarios()):
            named = [*sc.classes, *([sc.target] if sc.kind == "backdoor" else [])]
            bad = [c for c in named if c >= n]
            if bad:
                raise ConfigError(f"{w}.split: scenario {i} ({sc.kind}) names class {bad[0]}; {ds} has classes "
                                  f"0 .. {n - 1}")
            if sc.kind == "class" and len(sc.classes) >= n:
                raise ConfigError(f"{w}.split: scenario {i} forgets every class of {ds}; leave at least one to "
                                  f"retain")


def _validate_method_scenarios(cfg: PaperConfig) -> None:

    s, w = cfg.settings, f"{cfg.id}.settings.method_scenarios"
    for name, kinds in s.method_scenarios.items():
        if name not in s.methods:
            raise ConfigError(f"{w}.{name}: not a configured method; valid: {', '.join(s.methods)}")
        bad = [k for k in kinds if k not in SCENARIO_KINDS]
        if bad or not kinds:
            raise ConfigError(f"{w}.{name}: {kinds!r}; give a non-empty list of {', '.join(SCENARIO_KINDS)}")
        if method_spec(name).trains_from_scratch:
            raise ConfigError(f"{w}.{name}: the retrain reference runs on every scenario")
        unsupported = [k for k in kinds if k not in supported_kinds(name)]
        if unsupported:
            raise ConfigError(f"{w}.{name}: {name} does not support {', '.join(unsupported)} "
                              f"scenarios; it supports {', '.join(supported_kinds(name))}")
        if not any(sc.kind in kinds for sc in s.split.all_scenarios()):
            raise ConfigError(f"{w}.{name}: no scenario of kind {', '.join(kinds)} in this run")


def _validate_ensemble(cfg: PaperConfig) -> None:
    s, e, w = cfg.settings, cfg.settings.ensemble, f"{cfg.id}.settings.ensemble"
    if not e.n:
        return
    if e.dataset and e.dataset not in cfg.datasets:
        raise ConfigError(f"{w}.dataset: {e.dataset!r} is not a dataset of this run; valid: {', '.join(cfg.datasets)}")
    if e.model and e.model not in s.models:
        raise ConfigError(f"{w}.model: {e.model!r}; valid: {', '.join(s.models)}")
    bad = [m for m in e.methods if m not in s.methods]
    if bad:
        raise ConfigError(f"{w}.methods: {bad} are not configured for this run; valid: {', '.join(s.methods)}")
    bad = [k for k in e.overrides if k in ("methods", "models", "seeds", "more_datasets", "ensemble", "dataset",
                                           "speed")]
    if bad:
        raise ConfigError(f"{w}.overrides: {', '.join(bad)} cannot be overridden for the ensemble")
    cfg.ensemble_settings()  # the overrides are valid keys and types


def method_config(name: str, opts: dict[str, Any] | None, train: TrainConfig, where: str = "") -> Any:
    """The method's Config from YAML options (:meth:`MethodSpec.config`); retrain inherits the paper's training
    recipe."""
    return method_spec(name).config(opts, train, where or f"methods.{name}")
