"""A run as a plan: the resolved config, the pools and splits, and the list of cells with stable keys.

A cell is one unit of work and of caching:

- ``original``: train one original model (dataset, the scenario's training data — clean or poisoned —,
  model, width, training recipe, seed); its output is a checkpoint;
- ``evaluate``: the original's metrics on one forget scenario; output: a record and the logits;
- ``method``: one method run on one scenario from its original (timed), then evaluated; output: a record,
  the logits and, for a method that trains from scratch (retrain), a checkpoint of its own.

A cell's key hashes everything that determines its output: the config that produced it, the index arrays,
and for cells that evaluate, a fingerprint of the code that computes the numbers (the method's module, the
metrics, the data pipeline, the training loop and this harness). The keys of trained models (originals,
retrains) also hold where they were computed: the device type and, on the CPU, the run's thread count (the
floating-point result depends on it), so every cell built on them does too, and a resumed run equals an
uninterrupted one with the same count. Checkpoint keys cover no code, so cached models survive edits of the
evaluation code; after changing the training loop or a model, clear the
cache (``make clean-cache``). Dependencies: a method cell needs its original, the original's evaluation
and, where a metric needs the retrained model, the retrain cell of the same scenario; nothing else.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import inspect
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import (
    ConfigError,
    ModelSpec,
    PaperConfig,
    Settings,
    config_hash,
    load_paper,
    method_config,
    parse_seeds,
    runs_on,
    to_dict,
)
from ..data import (
    ImageData,
    Trigger,
    backdoor_split,
    class_split,
    load_dataset,
    poison,
    random_split,
    stratified_subset,
)
from ..data.splits import Split
from ..grouped_fit import CHANNELS_LAST, group_reason
from ..methods import method_spec
from ..metrics import any_needs

PACKAGE = Path(__file__).resolve().parent.parent
EXECUTORS = ("local", "ray")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


_DEVICE = re.compile(r"auto|cpu|cuda(:[0-9]+)?")


def resolve_device(device: Any) -> torch.device:
    """``auto`` (CUDA where available, else the CPU), ``cpu``, ``cuda`` or ``cuda:N``; anything else is refused."""
    if not isinstance(device, str):
        raise ConfigError(f"device: expected a string such as 'auto', 'cpu' or 'cuda', got "
                          f"{type(device).__name__} {device!r}")
    if not _DEVICE.fullmatch(device):
        raise ConfigError(f"device: {device!r} is not a device this suite runs on; valid: auto, cpu, cuda, cuda:N")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device: {device!r} was asked for but CUDA is not available; use 'auto' or 'cpu'")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        n = torch.cuda.device_count()
        raise ConfigError(f"device: {device!r}: this machine has {n} CUDA device(s); valid: cuda, "
                          + ", ".join(f"cuda:{i}" for i in range(n)))
    return dev


def hash_array(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a, dtype=np.int64).tobytes()).hexdigest()[:16]


@functools.lru_cache(maxsize=None)
def code_fingerprint(*paths: str) -> str:
    """sha256 over the source files that compute a cell's numbers (paths relative to the package, or absolute;
    a folder stands for every .py file below it)."""
    h = hashlib.sha256()
    for rel in paths:
        root = PACKAGE / rel
        for p in sorted(root.rglob("*.py")) if root.is_dir() else [root]:
            h.update(p.name.encode())
            h.update(p.read_bytes())
    return h.hexdigest()[:16]


EVAL_CODE = ("metrics", "data", "models", "attacks.py", "train.py", "trace.py", "diagnosis.py", "harness/cells.py",
             "harness/budget.py")  # budget: what a method cell records of its call (issue 20)


def method_code(method: str) -> str:
    """Fingerprint of the evaluation code plus the file that defines ``method``'s function."""
    fn = method_spec(method).fn
    return code_fingerprint(*EVAL_CODE, "methods/__init__.py", inspect.getsourcefile(inspect.unwrap(fn)))


def model_spec_key(spec: ModelSpec) -> dict:
    """A model's options as they enter a key: ``width`` always, the ViT's ``depth``/``heads``/``patch`` when set, so a
    CNN's checkpoint keys are the ones from before those options existed (its cached models stay valid)."""
    return {k: v for k, v in to_dict(spec).items() if k == "width" or v is not None}


@dataclass(frozen=True)
class Cell:
    key: str
    kind: str  # original | evaluate | method
    seed: int
    model: str
    scenario: str  # the forget scenario's tag ("all" for an original on clean data, shared by scenarios)
    method: str  # "original" for original and evaluate cells
    deps: tuple[str, ...] = ()
    model_key: str = ""  # the checkpoint: the original's (original cells) or the method's own (retrain)
    original: str = ""  # the key of the original cell this one starts from
    data_key: str = "clean"  # the scenario's training data: clean, or a hash of the poisoning
    dataset: str = ""
    part: str = ""  # the plan's data part (default: the dataset's; "ensemble" for the ensemble's models)
    method_seed: int | None = None  # the method's own seed (default: the original's), for N unlearning seeds
    members: tuple[str, ...] = ()  # a group cell: the keys of the cells whose models it trains as one network

    @property
    def run_seed(self) -> int:
        """The seed of what this cell computes: the method's (ensemble) or, by default, the original's."""
        return self.seed if self.method_seed is None else self.method_seed

    @property
    def label(self) -> str:
        what = {"original": "train the original", "evaluate": "evaluate the original",
                "group": f"train {len(self.members)} {self.method} models as one grouped network"}.get(self.kind,
                                                                                                   self.method)
        seeds = f"seed {self.seed}" + ("" if self.method_seed is None else f", method seed {self.method_seed}")
        return f"{self.part or self.dataset} {self.model} {seeds} {self.scenario}: {what}"


@dataclass
class DataPart:
    """One dataset of a run: its settings (the profile's, with that dataset's overrides), images, pools, splits
    and the methods' resolved options (retrain inherits this dataset's training recipe)."""

    settings: Settings
    data: ImageData
    train_pool: np.ndarray
    unseen: np.ndarray
    test_pool: np.ndarray
    splits: dict[str, Split]
    method_cfgs: dict[str, Any]
    eval_idx: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # training images evaluated
    _poisoned: dict = field(default_factory=dict, repr=False)

    @property
    def name(self) -> str:
        return self.settings.dataset

    def to_device(self, device: torch.device) -> None:
        """Move the images to ``device`` (once; nothing on the CPU). Called by the process that computes a cell, so
        a Ray driver, which only plans, never holds the dataset on GPU 0; each worker moves it to its own GPU."""
        if device.type == "cuda" and self.data.train_x.device.type != "cuda":
            self.data.train_x, self.data.test_x = self.data.train_x.to(device), self.data.test_x.to(device)
            self._poisoned.clear()  # poisoned copies were made from the images where they were

    def training_data(self, split: Split | None) -> tuple[torch.Tensor, torch.Tensor]:
        """The images and labels the scenario's original is trained on (poisoned for a backdoor)."""
        if split is None or split.kind != "backdoor":
            return self.data.train_x, self.data.train_y
        if split.tag not in self._poisoned:
            self._poisoned[split.tag] = poison(self.data.train_x, self.data.train_y, split)
        return self._poisoned[split.tag]

    def new_model(self, name: str) -> torch.nn.Module:
        from ..models import build_model

        m = self.settings.models[name]
        return build_model(name, num_classes=self.data.spec.num_classes, in_channels=self.data.spec.channels,
                           width=m.width, image_size=self.data.spec.size, depth=m.depth, heads=m.heads, patch=m.patch)


@dataclass
class RunPlan:
    """Everything a run needs, rebuilt identically from :attr:`spec` in any process (a Ray worker)."""

    cfg: PaperConfig
    seeds: list[int]
    device: torch.device
    methods: list[str]
    parts: dict[str, DataPart]
    cells: list[Cell]
    spec: dict
    threads: int | None = None  # torch threads per cell, fixed for the run (None: each process's share)

    @property
    def paper(self) -> str:
        return self.cfg.id

    @property
    def profile(self) -> str:
        return self.cfg.profile

    @property
    def settings(self) -> Settings:
        """The profile's settings (its first dataset's)."""
        return self.cfg.settings

    def part(self, dataset: str) -> DataPart:
        return self.parts[dataset]

    def cell(self, key: str) -> Cell:
        for c in self.cells:
            if c.key == key:
                return c
        raise KeyError(f"no cell {key} in the plan of {self.paper}/{self.profile}")


def make_pools(data: ImageData, s) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train pool, unseen pool, test pool): unseen images are split off the training images and never
    trained on; all are class-stratified and seeded (seed 0 and 1), fixed across training seeds."""
    n_unseen = s.split.unseen
    base = stratified_subset(data.train_y, None if s.train_subset is None else s.train_subset + n_unseen, seed=0)
    unseen = stratified_subset(data.train_y, n_unseen, seed=1, among=base) if n_unseen else np.zeros(0, np.int64)
    train_pool = np.setdiff1d(base, unseen)
    test_pool = stratified_subset(data.test_y, s.test_subset, seed=0)
    return train_pool, unseen, test_pool


def make_splits(data: ImageData, s, train_pool: np.ndarray, unseen: np.ndarray,
                test_pool: np.ndarray) -> dict[str, Split]:
    splits: dict[str, Split] = {}
    for sc in s.split.all_scenarios():
        if sc.kind == "class":
            u = unseen
            if s.split.unseen_classes == "retain" and len(u):
                u = u[~np.isin(data.train_y[torch.as_tensor(u)].numpy(), sc.classes)]
            sp = class_split(data.train_y, data.test_y, sc.classes, train_pool, test_pool, unseen=u)
        elif sc.kind == "random":
            sp = random_split(train_pool, test_pool, sc.fraction, s.split.seed, unseen=unseen)
        else:
            trig = Trigger(sc.trigger_size, sc.trigger_value, sc.trigger_location)
            sp = backdoor_split(data.train_y, train_pool, test_pool, target=sc.target, fraction=sc.fraction,
                                trigger=trig, seed=s.split.seed, unseen=unseen)
        if sp.tag in splits:
            raise ConfigError(f"two scenarios are both called {sp.tag!r}")
        splits[sp.tag] = sp
    return splits


def _split_hash(split: Split) -> str:
    return config_hash(split.kind, split.forget_classes, split.target, split.trigger,
                       *[hash_array(a) for a in (split.forget_train, split.retain_train, split.forget_test,
                                                 split.retain_test, split.unseen)])


def select_methods(paper: str, configured: dict, methods: Any) -> list[str]:
    if methods is None:
        names = list(configured)
    else:
        if not isinstance(methods, (list, tuple)) or not all(isinstance(m, str) for m in methods):
            raise ConfigError(f"methods: expected a list of method names, got {methods!r}")
        unknown = [m for m in methods if m not in configured]
        if unknown:
            raise ConfigError(f"methods: {unknown} not configured for {paper}; valid: {', '.join(configured)}")
        names = list(methods)
    # retrain first: its time is the reference for every speed-up, its model for weight distances
    return sorted(names, key=lambda m: not method_spec(m).trains_from_scratch)


def build_plan(paper: str, profile: str = "auto", seeds: Any = None, device: str = "auto",
               methods: list[str] | None = None, threads: int | None = None, tuning: dict | None = None) -> RunPlan:
    """Validate the run's parameters, load the data, draw pools and splits, and list the cells.

    threads: the torch threads every cell of the run computes with; on the CPU the cells' keys include it (a
    result depends on it), so cells computed with another count are never reused. None: not fixed (each
    process's share; ``run_paper`` always fixes it, except on a Ray cluster without ``THREADS``).
    tuning: the trials asked so far and the tuned options (:mod:`unlearnlib.harness.tuning` fills it; None: none
    yet); with a ``tuning:`` block the plan also holds the validation requests' cells, the trials' and the tuned
    rows' (see the end of this module)."""
    cfg = load_paper(paper, profile)
    s = cfg.settings
    seed_list = parse_seeds(seeds, s.seeds)
    dev = resolve_device(device)
    names = select_methods(paper, s.methods, methods)
    parts = {ds: _part(cfg, cfg.settings_for(ds), names, dev) for ds in cfg.datasets}
    spec = {"paper": paper, "profile": cfg.profile, "seeds": seed_list, "device": str(dev), "methods": names,
            "threads": threads}
    plan = RunPlan(cfg, seed_list, dev, names, parts, [], spec, threads)
    plan.cells = [c for part in parts.values() for c in _cells(plan, part)]
    if s.ensemble.n:
        part = _part(cfg, cfg.ensemble_settings(), names, dev)
        tags = [t for t, sp in part.splits.items() if sp.kind == "class"]
        scenario = s.ensemble.scenario or (tags[0] if tags else next(iter(part.splits)))
        if scenario not in part.splits:
            raise ConfigError(f"{paper}.settings.ensemble.scenario: {scenario!r}; valid: {', '.join(part.splits)}")
        # the plan's config names the scenario it chose (config.resolved.yaml records it); the loaded one is untouched
        plan.cfg = dataclasses.replace(cfg, settings=dataclasses.replace(
            s, ensemble=dataclasses.replace(s.ensemble, scenario=scenario)))
        plan.parts[ENSEMBLE] = part
        plan.cells += _ensemble_cells(plan, part)
    if s.tuning.trials:
        spec["tuning"] = tuning or {}
        add_tuning_cells(plan, spec["tuning"])
    plan.cells = list({c.key: c for c in plan.cells}.values())  # a cell listed twice is computed once
    return plan


def _part(cfg: PaperConfig, s: Settings, names: list[str], dev: torch.device,
          data: ImageData | None = None) -> DataPart:
    where = f"{cfg.id}.methods" if s.dataset == cfg.settings.dataset else f"{cfg.id}.more_datasets.{s.dataset}"
    method_cfgs = {m: method_config(m, s.methods[m], s.train, where=f"{where}.{m}") for m in names}
    for m in names:
        if method_spec(m).needs_unseen and not s.split.unseen:
            raise ConfigError(f"{where}.{m}: the method needs unseen data; set split.unseen > 0 for {s.dataset}")
    if data is None:  # else the images another part of the run loaded (the validation requests' part)
        data = load_dataset(s.dataset, download=s.download)  # on the CPU: a cell moves it (DataPart.to_device)
    train_pool, unseen, test_pool = make_pools(data, s)
    splits = make_splits(data, s, train_pool, unseen, test_pool)
    return DataPart(s, data, train_pool, unseen, test_pool, splits, method_cfgs,
                    eval_indices(data, s, train_pool, unseen, splits))


def eval_indices(data: ImageData, s: Settings, train_pool: np.ndarray, unseen: np.ndarray,
                 splits: dict[str, Split]) -> np.ndarray:
    """The training images every model is evaluated on: the whole pool, or (``eval_train_subset``) a seeded
    class-stratified sample of it with every forget image of every scenario; the unseen images always."""
    if s.eval_train_subset is None or s.eval_train_subset >= len(train_pool):
        return np.union1d(train_pool, unseen)
    sample = stratified_subset(data.train_y, s.eval_train_subset, seed=2, among=train_pool)
    forget = [sp.forget_train for sp in splits.values()]
    return np.union1d(np.union1d(sample, unseen), np.concatenate(forget) if forget else sample)


class _CellMaker:
    """Builds the cells of one data part, with their keys (see the module docstring)."""

    def __init__(self, plan: RunPlan, part: DataPart, key: str) -> None:
        s = part.settings
        self.plan, self.part, self.key, self.s = plan, part, key, s
        self.eval_part = (s.metrics, s.eval_batch_size, hash_array(part.test_pool), hash_array(part.eval_idx))
        self.needs_retrain = any_needs(s.metrics.metrics, "retrain")
        self.originals: dict[tuple, Cell] = {}
        # where the numbers are computed, in the keys of the models trained (and so of every cell built on them):
        # the device type and, on the CPU, the thread count (reductions are split per thread)
        dev = plan.device.type
        self.compute = ("compute", dev, plan.threads or "each process's share") if dev == "cpu" else ("compute", dev)
        # and the run's speed switch when it is not exact (bf16/channels_last numbers; exact keeps the keys it had)
        if plan.settings.speed != "exact":
            self.compute += ("speed", plan.settings.speed)

    @staticmethod
    def data_key(split: Split) -> str:
        return "clean" if split.kind != "backdoor" else config_hash(hash_array(split.forget_train), split.target,
                                                                    split.trigger)

    def original(self, model: str, seed: int, split: Split) -> tuple[Cell, bool]:
        """The original of ``split``'s training data (shared by the scenarios on clean data); True if new."""
        dk = self.data_key(split)
        if (model, seed, dk) in self.originals:
            return self.originals[(model, seed, dk)], False
        s = self.s
        key = config_hash("original", s.dataset, hash_array(self.part.train_pool), dk, model,
                          model_spec_key(s.models[model]), s.train, seed, *self.compute)
        cell = Cell(key, "original", seed, model, "all" if dk == "clean" else split.tag, "original", model_key=key,
                    original=key, data_key=dk, dataset=s.dataset, part=self.key)
        self.originals[(model, seed, dk)] = cell
        return cell, True

    def evaluate(self, orig: Cell, split: Split) -> Cell:
        key = config_hash("evaluate", orig.key, _split_hash(split), *self.eval_part, orig.seed,
                          code_fingerprint(*EVAL_CODE))
        return Cell(key, "evaluate", orig.seed, orig.model, split.tag, "original", deps=(orig.key,),
                    original=orig.key, data_key=orig.data_key, dataset=orig.dataset, part=self.key)

    def method(self, name: str, orig: Cell, ev: Cell, split: Split, retrain: Cell | None,
               method_seed: int | None = None) -> Cell:
        s, spec, mc = self.s, method_spec(name), self.part.method_cfgs[name]
        seed = orig.seed if method_seed is None else method_seed
        deps, model_key = [orig.key, ev.key], ""
        if spec.trains_from_scratch:
            model_key = config_hash(name, s.dataset, hash_array(split.retain_train), orig.data_key, orig.model,
                                    model_spec_key(s.models[orig.model]), mc, seed, *self.compute)
        elif self.needs_retrain and retrain is not None:
            deps.append(retrain.key)
        key = config_hash("method", name, orig.key, model_key, _split_hash(split), mc, *self.eval_part, orig.seed,
                          deps[2] if len(deps) > 2 else "", method_code(name),
                          *(() if method_seed is None else ("method seed", method_seed)))
        return Cell(key, "method", orig.seed, orig.model, split.tag, name, deps=tuple(deps), model_key=model_key,
                    original=orig.key, data_key=orig.data_key, dataset=orig.dataset, part=self.key,
                    method_seed=method_seed)


def reference_method(methods: list[str]) -> str | None:
    """The run's reference: its first method that trains from scratch (retrain), or None."""
    return next((m for m in methods if method_spec(m).trains_from_scratch), None)


_retrain_name = reference_method


def _cells(plan: RunPlan, part: DataPart) -> list[Cell]:
    make, cells = _CellMaker(plan, part, part.name), []
    retrain_name = _retrain_name(plan.methods)
    for seed in plan.seeds:
        for model in part.settings.models:
            for split in part.splits.values():
                orig, new = make.original(model, seed, split)
                if new:
                    cells.append(orig)
                ev = make.evaluate(orig, split)
                cells.append(ev)
                retrain = None
                for name in plan.methods:  # retrain first (select_methods)
                    if not runs_on(plan.cfg.settings, name, split.kind):
                        continue
                    cell = make.method(name, orig, ev, split, retrain)
                    cells.append(cell)
                    retrain = cell if name == retrain_name else retrain
    return cells


ENSEMBLE = "ensemble"


def _ensemble_cells(plan: RunPlan, part: DataPart) -> list[Cell]:
    """N originals, each with its evaluation and one run of each method (marginal); N more runs of each method
    from the first original (conditional); two sets of N retrains (oracle and floor). With ``ensemble.grouped``
    (where the model and recipe allow it) the N originals, the N oracle and the N floor retrains are each trained
    by one group cell, listed first; its members' checkpoints are stored under their own cells' keys (which say
    ``grouped``: the numbers differ from one-by-one training in the last bits), and each member cell depends on it."""
    e = plan.cfg.settings.ensemble
    make, cells = _CellMaker(plan, part, ENSEMBLE), []
    split = part.splits[e.scenario]
    model = e.model or next(iter(part.settings.models))
    retrain_name = _retrain_name(plan.methods) or "retrain"
    methods = [m for m in (e.methods or plan.methods) if m != retrain_name]
    grouped = ensemble_grouping(plan, part, model, retrain_name)
    # grouped members' keys say so, with the group's size and memory format (the float rounding depends on them)
    base, marker = make.compute, (("grouped", e.n, "channels_last" if CHANNELS_LAST else "contiguous"),)
    first, members = None, {"original": [], "oracle": [], "floor": []}
    for i in range(e.n):
        make.compute = base + marker if grouped["original"] is None else base
        orig, _ = make.original(model, e.seed + i, split)
        ev = make.evaluate(orig, split)
        make.compute = base + marker if grouped["retrain"] is None else base
        oracle = make.method(retrain_name, orig, ev, split, None)
        floor = make.method(retrain_name, orig, ev, split, None, method_seed=e.seed + e.n + i)
        make.compute = base
        cells += [orig, ev, oracle, floor]
        members["original"].append(orig)
        members["oracle"].append(oracle)
        members["floor"].append(floor)
        first = first or (orig, ev)
        cells += [make.method(m, orig, ev, split, oracle) for m in methods]
    for j in range(e.n if e.conditional else 0):
        cells += [make.method(m, *first, split, None, method_seed=e.seed + 2 * e.n + j) for m in methods]
    return _with_groups(cells, members, grouped)


def ensemble_grouping(plan: RunPlan, part: DataPart, model: str, retrain_name: str) -> dict[str, str | None]:
    """For the ensemble's originals and retrains: None when they train as grouped networks, else why not."""
    if not plan.cfg.settings.ensemble.grouped:
        return {"original": "ensemble.grouped is off", "retrain": "ensemble.grouped is off"}
    retrain_cfg = part.method_cfgs.get(retrain_name)
    return {"original": group_reason(model, part.settings.train),
            "retrain": (f"the reference method {retrain_name!r} is not retrain" if retrain_name != "retrain"
                        else "retrain is not among the run's methods" if retrain_cfg is None
                        else group_reason(model, retrain_cfg))}


def _with_groups(cells: list[Cell], members: dict[str, list[Cell]], grouped: dict[str, str | None]) -> list[Cell]:
    """A group cell before each set of members that trains grouped; the members depend on it."""
    groups, extra = [], {}
    for name, group in members.items():
        if not group or grouped["original" if name == "original" else "retrain"] is not None:
            continue
        key = config_hash("group", name, *(c.model_key for c in group))
        first = group[0]
        groups.append(Cell(key, "group", first.seed, first.model, first.scenario, first.method,
                           data_key=first.data_key, dataset=first.dataset, part=first.part,
                           members=tuple(c.key for c in group)))
        extra.update({c.key: key for c in group})
    return groups + [dataclasses.replace(c, deps=c.deps + (extra[c.key],)) if c.key in extra else c for c in cells]


# ----------------------------------------------------------------------------------------------------------
# equal-budget tuning (issue 20): the validation requests' cells, the trials' and the tuned rows'. A trial and a
# tuned row are variants of the method (``name@...``) with their own resolved options, so every cell machinery
# (keys, the store, resuming, the executors) serves them unchanged; their options travel in the plan's spec, so a
# Ray worker rebuilds the same cells.

TUNING_PART = "tuning:"  # + dataset: the data part of the validation requests
TUNED = " (tuned)"  # the rows of the tuned options are reported as "<method> (tuned)"


def trial_name(method: str, kind: str, dataset: str, model: str, n: int) -> str:
    return f"{method}@trial_{kind}_{dataset}_{model}_{n}"


def tuned_name(method: str, kind: str) -> str:
    return f"{method}@tuned_{kind}"


def shown_method(name: str) -> str:
    """The name a row reports: ``<method> (tuned)`` for a tuned variant, else the name itself."""
    base, _, variant = name.partition("@")
    return base + TUNED if variant.startswith("tuned_") else name


def is_trial(name: str) -> bool:
    return name.partition("@")[2].startswith("trial_")


def validation_settings(s: Settings) -> Settings:
    """The settings of the validation requests: per scenario kind of the run, its first scenario with other classes
    (class) or another split seed (random subset, poisoned samples); only the objective's metrics, one timed call."""
    v = s.tuning.validation
    scenarios = []
    for kind in dict.fromkeys(sc.kind for sc in s.split.all_scenarios()):
        first = next(sc for sc in s.split.all_scenarios() if sc.kind == kind)
        scenarios.append(dataclasses.replace(first, classes=list(v.classes)) if kind == "class" else first)
    split = dataclasses.replace(s.split, forget=[], scenarios=scenarios, seed=v.split_seed)
    # a trial's cell feeds only the objective: it computes the objective's metrics (not the SVC attack, the probe,
    # ...) and times its call once (tuning.csv reports the trial's seconds, not a median of repeats)
    wanted = [m for m in s.metrics.metrics if m in s.tuning.weights]
    metrics = dataclasses.replace(s.metrics, metrics=type(s.metrics.metrics)(wanted)) if wanted else s.metrics
    return dataclasses.replace(s, split=split, metrics=metrics, timing=dataclasses.replace(s.timing, repeats=1))


def tuned_datasets(plan: RunPlan) -> list[str]:
    """The datasets the tuning block tunes (default: every dataset of the run)."""
    chosen = plan.settings.tuning.datasets
    return [ds for ds in plan.cfg.datasets if not chosen or ds in chosen]


def tuned_methods(plan: RunPlan) -> list[str]:
    """The run's methods that are tuned: the tuning block's (default: every one with something to tune)."""
    t = plan.settings.tuning
    return [m for m in plan.methods if (m in t.methods if t.methods else not method_spec(m).tuning.empty)
            and not method_spec(m).trains_from_scratch]


def _variant_cfg(part: DataPart, name: str, options: dict, where: str) -> None:
    base = name.partition("@")[0]
    part.method_cfgs[name] = method_config(name, {**(part.settings.methods[base] or {}), **options},
                                           part.settings.train, where=where)


def add_tuning_cells(plan: RunPlan, tuning: dict) -> None:
    """Adds to ``plan``: per dataset a validation part (its requests), the validation originals, evaluations and
    retrains of every tuning seed, the cells of every trial in ``tuning[dataset]["trials"]`` (name -> kind, model,
    options) on every tuning seed, and the cells of the tuned options (``tuning[dataset]["tuned"]``: name ->
    options) on the reported requests and reporting seeds."""
    ref = reference_method(plan.methods)
    if ref is None:
        raise ConfigError(f"{plan.paper}.settings.tuning: tuning scores against retrain; configure it")
    for ds in tuned_datasets(plan):
        given = tuning.get(ds, {})
        part = _part(plan.cfg, validation_settings(plan.cfg.settings_for(ds)), plan.methods, plan.device,
                     data=plan.parts[ds].data)
        key = TUNING_PART + ds
        plan.parts[key] = part
        for name, t in given.get("trials", {}).items():
            _variant_cfg(part, name, t["options"], f"{plan.paper}.tuning.{name}")
        make = _CellMaker(plan, part, key)
        for seed in plan.settings.tuning.seeds:
            for model in part.settings.models:
                for split in part.splits.values():
                    orig, _ = make.original(model, seed, split)
                    ev = make.evaluate(orig, split)
                    retrain = make.method(ref, orig, ev, split, None)
                    plan.cells += [orig, ev, retrain]
                    plan.cells += [make.method(name, orig, ev, split, retrain)
                                   for name, t in given.get("trials", {}).items()
                                   if t["kind"] == split.kind and t["model"] == model]
        _add_tuned(plan, plan.parts[ds], given.get("tuned", {}), ref)


def _add_tuned(plan: RunPlan, part: DataPart, tuned: dict, ref: str) -> None:
    for name, opts in tuned.items():
        _variant_cfg(part, name, opts, f"{plan.paper}.tuned.{name}")
    make = _CellMaker(plan, part, part.name)
    for seed in plan.seeds:
        for model in part.settings.models:
            for split in part.splits.values():
                names = [n for n in tuned if n == tuned_name(n.partition("@")[0], split.kind)]
                if not names:
                    continue
                orig, _ = make.original(model, seed, split)
                ev = make.evaluate(orig, split)
                retrain = make.method(ref, orig, ev, split, None)
                plan.cells += [make.method(n, orig, ev, split, retrain) for n in names]
