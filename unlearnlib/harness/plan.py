"""A run as a plan: the resolved config, the pools and splits, and the list of cells with stable keys.

A cell is one unit of work and of caching:

- ``original``: train one original model (dataset, the scenario's training data — clean or poisoned —,
  model, width, training recipe, seed); its output is a checkpoint;
- ``evaluate``: the original's metrics on one forget scenario; output: a record and the logits;
- ``method``: one method run on one scenario from its original (timed), then evaluated; output: a record,
  the logits and, for a method that trains from scratch (retrain), a checkpoint of its own.

A cell's key hashes everything that determines its output: the config that produced it, the index arrays,
and for cells that evaluate, a fingerprint of the code that computes the numbers (the method's module, the
metrics, the data pipeline, the training loop and this harness). Checkpoint keys cover the config only, so
cached models survive edits of the evaluation code; after changing the training loop or a model, clear the
cache (``make clean-cache``). Dependencies: a method cell needs its original, the original's evaluation
and, where a metric needs the retrained model, the retrain cell of the same scenario; nothing else.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import ConfigError, PaperConfig, base_method, config_hash, load_paper, method_config, parse_seeds
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
from ..methods import METHODS
from ..metrics import MODEL_METRICS

PACKAGE = Path(__file__).resolve().parent.parent
EXECUTORS = ("local", "ray")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def resolve_device(device: Any) -> torch.device:
    if not isinstance(device, str):
        raise ConfigError(f"device: expected a string such as 'auto', 'cpu' or 'cuda', got "
                          f"{type(device).__name__} {device!r}")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ConfigError(f"device: {device!r} is not a torch device; valid: auto, cpu, cuda, cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: 'cuda' was asked for but CUDA is not available; use 'auto' or 'cpu'")
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


EVAL_CODE = ("metrics", "data", "models", "attacks.py", "train.py", "trace.py", "harness/cells.py")


def method_code(method: str) -> str:
    """Fingerprint of the evaluation code plus the file that defines ``method``'s function."""
    fn = METHODS.get(base_method(method)).fn
    return code_fingerprint(*EVAL_CODE, "methods/__init__.py", inspect.getsourcefile(inspect.unwrap(fn)))


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

    @property
    def label(self) -> str:
        what = {"original": "train the original", "evaluate": "evaluate the original"}.get(self.kind, self.method)
        return f"{self.model} seed {self.seed} {self.scenario}: {what}"


@dataclass
class RunPlan:
    """Everything a run needs, rebuilt identically from :attr:`spec` in any process (a Ray worker)."""

    cfg: PaperConfig
    seeds: list[int]
    device: torch.device
    methods: list[str]
    method_cfgs: dict[str, Any]
    data: ImageData
    train_pool: np.ndarray
    unseen: np.ndarray
    test_pool: np.ndarray
    splits: dict[str, Split]
    cells: list[Cell]
    spec: dict
    _poisoned: dict = field(default_factory=dict, repr=False)

    @property
    def paper(self) -> str:
        return self.cfg.id

    @property
    def profile(self) -> str:
        return self.cfg.profile

    @property
    def settings(self):
        return self.cfg.settings

    @property
    def eval_idx(self) -> np.ndarray:
        return np.union1d(self.train_pool, self.unseen)

    def cell(self, key: str) -> Cell:
        for c in self.cells:
            if c.key == key:
                return c
        raise KeyError(f"no cell {key} in the plan of {self.paper}/{self.profile}")

    def training_data(self, split: Split) -> tuple[torch.Tensor, torch.Tensor]:
        """The images and labels the scenario's original is trained on (poisoned for a backdoor)."""
        if split.kind != "backdoor":
            return self.data.train_x, self.data.train_y
        if split.tag not in self._poisoned:
            self._poisoned[split.tag] = poison(self.data.train_x, self.data.train_y, split)
        return self._poisoned[split.tag]

    def new_model(self, name: str) -> torch.nn.Module:
        from ..models import build_model

        return build_model(name, num_classes=self.data.spec.num_classes, in_channels=self.data.spec.channels,
                           width=self.settings.models[name].width)


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
    return sorted(names, key=lambda m: not METHODS.get(base_method(m)).trains_from_scratch)


def build_plan(paper: str, profile: str = "auto", seeds: Any = None, device: str = "auto",
               methods: list[str] | None = None) -> RunPlan:
    """Validate the run's parameters, load the data, draw pools and splits, and list the cells."""
    cfg = load_paper(paper, profile)
    s = cfg.settings
    seed_list = parse_seeds(seeds, s.seeds)
    dev = resolve_device(device)
    names = select_methods(paper, s.methods, methods)
    method_cfgs = {m: method_config(m, s.methods[m], s.train, where=f"{paper}.methods.{m}") for m in names}
    for m in names:
        if METHODS.get(base_method(m)).needs_unseen and not s.split.unseen:
            raise ConfigError(f"{paper}.methods.{m}: the method needs unseen data; set split.unseen > 0")
    data = load_dataset(s.dataset, download=s.download)
    if dev.type == "cuda":
        data.train_x, data.test_x = data.train_x.to(dev), data.test_x.to(dev)
    train_pool, unseen, test_pool = make_pools(data, s)
    splits = make_splits(data, s, train_pool, unseen, test_pool)
    spec = {"paper": paper, "profile": cfg.profile, "seeds": seed_list, "device": str(dev), "methods": names}
    plan = RunPlan(cfg, seed_list, dev, names, method_cfgs, data, train_pool, unseen, test_pool, splits, [], spec)
    plan.cells = _cells(plan)
    return plan


def _cells(plan: RunPlan) -> list[Cell]:
    s = plan.settings
    eval_part = (s.metrics, s.eval_batch_size, hash_array(plan.test_pool), hash_array(plan.eval_idx))
    metric_names = set(s.metrics.metrics)
    needs_retrain = bool(metric_names & {m for m in MODEL_METRICS if "retrain" in m})
    retrain_name = next((m for m in plan.methods if METHODS.get(base_method(m)).trains_from_scratch), None)
    cells: list[Cell] = []
    for seed in plan.seeds:
        for model_name, mspec in s.models.items():
            originals: dict[str, Cell] = {}
            for tag, split in plan.splits.items():
                data_key = "clean" if split.kind != "backdoor" else config_hash(
                    hash_array(split.forget_train), split.target, split.trigger)
                if data_key not in originals:
                    okey = config_hash("original", s.dataset, hash_array(plan.train_pool), data_key, model_name,
                                       mspec, s.train, seed)
                    originals[data_key] = Cell(okey, "original", seed, model_name,
                                               "all" if data_key == "clean" else tag, "original",
                                               model_key=okey, original=okey, data_key=data_key)
                    cells.append(originals[data_key])
                orig = originals[data_key]
                sh = _split_hash(split)
                ekey = config_hash("evaluate", orig.key, sh, *eval_part, seed, code_fingerprint(*EVAL_CODE))
                cells.append(Cell(ekey, "evaluate", seed, model_name, tag, "original", deps=(orig.key,),
                                  original=orig.key, data_key=data_key))
                retrain_key = ""
                for name in plan.methods:
                    spec = METHODS.get(base_method(name))
                    mc = plan.method_cfgs[name]
                    model_key = ""
                    deps = [orig.key, ekey]
                    if spec.trains_from_scratch:
                        model_key = config_hash(name, s.dataset, hash_array(split.retain_train), data_key,
                                                model_name, mspec, mc, seed)
                    elif needs_retrain and retrain_key:
                        deps.append(retrain_key)
                    key = config_hash("method", name, orig.key, model_key, sh, mc, *eval_part, seed,
                                      retrain_key if not spec.trains_from_scratch and needs_retrain else "",
                                      method_code(name))
                    cells.append(Cell(key, "method", seed, model_name, tag, name, deps=tuple(deps),
                                      model_key=model_key, original=orig.key, data_key=data_key))
                    if name == retrain_name:
                        retrain_key = key
    return cells
