"""Run one cell of a plan: load or train a model, run a method timed, evaluate, return its record.

A cell writes nothing but its own entries in the cell store (checkpoint, record, logits) and leaves no global
state behind that another cell could see: the RNGs are seeded at its start, the method's traces are collected
in a context, and the loaders are made afresh. A record holds the cell's rows without the paper and profile
(the run adds them), so a cell shared by two papers (the same original, the same method on the same split)
is computed once.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import sys
import time
from collections import OrderedDict
from dataclasses import asdict
from typing import Callable

import numpy as np
import torch

from .. import threads as _threads
from ..config import to_dict
from ..data import Loader
from ..data.splits import Split
from ..methods import method_spec
from ..metrics import Evaluation, ModelContext, Timer, any_needs, compute_metrics, metric_spec
from ..trace import collecting
from ..train import configure_device, fit, plain_format, predict_logits, run_speed
from .budget import budget_rows, diagnosis_row, measuring, paper_steps
from .group import train_group
from .plan import Cell, DataPart, RunPlan, is_trial, seed_everything
from .store import CorruptFile, Store


def gather(model: torch.nn.Module, part: DataPart, split: Split, seed: int, device: torch.device) -> Evaluation:
    """Logits of ``model`` on the test pool and on the training images it is evaluated on (train pool and unseen,
    with the scenario's labels and triggers), plus the extras some metrics need."""
    s = part.settings
    spec, dev, bs = part.data.spec, device, s.eval_batch_size
    train_x, train_y = part.training_data(split)
    test_x, test_y, test_pool, train_idx = part.data.test_x, part.data.test_y, part.test_pool, part.eval_idx

    def loader(x, y, idx, aug=False):
        return Loader(x, y, idx, spec, batch_size=bs, augment=aug, seed=seed, device=dev)

    test_logits, test_labels = predict_logits(model, loader(test_x, test_y, test_pool))
    train_logits, train_labels = predict_logits(model, loader(train_x, train_y, train_idx))
    aug_logits = None
    if any_needs(s.metrics.metrics, "aug_logits"):
        aug_logits = predict_logits(model, loader(train_x, train_y, train_idx, aug=True))[0]
    trig = None
    if split.kind == "backdoor" and any_needs(s.metrics.metrics, "trigger_logits"):
        keep = test_pool[(test_y[torch.as_tensor(test_pool)] != split.target).cpu().numpy()]
        tx = split.trigger.apply(test_x[torch.as_tensor(keep, device=test_x.device)])
        trig = predict_logits(model, loader(tx, test_y[torch.as_tensor(keep)], np.arange(len(keep))))[0]
    return Evaluation(test_pool, test_logits, test_labels, train_idx, train_logits, train_labels, aug_logits, trig)


_EVAL_FIELDS = ("test_idx", "test_logits", "test_labels", "train_idx", "train_logits", "train_labels",
                "train_aug_logits", "trigger_logits")


def evaluation_arrays(ev: Evaluation) -> dict[str, np.ndarray]:
    out = {}
    for name in _EVAL_FIELDS:
        v = getattr(ev, name)
        if v is not None:
            out[name] = v.numpy() if isinstance(v, torch.Tensor) else np.asarray(v)
    return out


def evaluation_from(arrays: dict[str, np.ndarray]) -> Evaluation:
    def t(name):
        return torch.from_numpy(arrays[name]) if name in arrays else None

    return Evaluation(arrays["test_idx"], t("test_logits"), t("test_labels"), arrays["train_idx"], t("train_logits"),
                      t("train_labels"), t("train_aug_logits"), t("trigger_logits"))


def check_finite(model: torch.nn.Module, name: str) -> None:
    for k, v in model.state_dict().items():
        if v.is_floating_point() and not torch.isfinite(v).all():
            raise FloatingPointError(f"method {name!r} produced non-finite values in {k}")


class CellRunner:
    """Runs the cells of one plan in this process. Keeps the last few originals and evaluations in memory,
    so that a local run does not reload the same original for every method."""

    def __init__(self, plan: RunPlan, store: Store, *, progress: bool = True, threads: int | None = None,
                 say: Callable[[str], None] = print) -> None:
        self.plan, self.store, self.progress, self.say = plan, store, progress, say
        self.threads = threads or plan.threads  # the run's count (in its keys); None: the fair share per cell
        self.speed = plan.settings.speed  # the run's speed switch, for every cell: training, method calls, evaluation
        self._models: OrderedDict[str, dict] = OrderedDict()
        self._evals: OrderedDict[str, Evaluation] = OrderedDict()
        self._gathered: dict[tuple[str, str], Evaluation] = {}

    # -- finished? ------------------------------------------------------------------------------------
    def finished(self, cell: Cell) -> bool:
        if cell.kind == "original":
            return self.store.has_model(cell.model_key)
        if cell.kind == "group":
            return self.store.load_record(cell.key) is not None and all(
                self.store.has_model(self.plan.cell(k).model_key) for k in cell.members)
        if self.store.load_record(cell.key) is None:
            return False
        return not cell.model_key or self.store.has_model(cell.model_key)

    # -- run ------------------------------------------------------------------------------------------
    def run(self, cell: Cell) -> dict:
        """Compute the cell (its inputs must be finished) and store its outputs; returns its record."""
        configure_device(self.plan.device)  # cudnn.benchmark on CUDA (a process may be a fresh Ray worker)
        with _threads.computing(), _threads.using(self.threads) as n:
            if cell.kind == "original":
                return self._original(cell, n)
            if cell.kind == "evaluate":
                return self._evaluate(cell)
            if cell.kind == "group":
                return train_group(self.plan, self.store, cell, n, progress=self.progress, say=self.say)
            return self._method(cell, n)

    def train_from_scratch(self, cell: Cell) -> dict:
        """The training half of a method cell that trains from scratch (retrain), run without its original: the
        timed call on a freshly built model of the cell's architecture (the method re-initialises every module, so
        the original's weights never enter it), saved under the cell's ``model_key`` with its timing and traces.
        The cell itself (:meth:`run`) then loads it and evaluates it against the original. The Ray executor runs
        this as a task of its own with no dependencies, so a retrain does not wait for its original."""
        if not (cell.kind == "method" and cell.model_key and method_spec(cell.method).trains_from_scratch):
            raise ValueError(f"cell '{cell.label}' does not train from scratch: it has no training half")
        with _threads.computing(), _threads.using(self.threads) as n, self.store.building(cell.model_key):
            part = self._part(cell)
            part.to_device(self.plan.device)
            seed_everything(cell.seed)  # as original_model builds the model it loads the original into
            fresh = part.new_model(cell.model)
            meta = self.store.load_model(cell.model_key, copy.deepcopy(fresh))
            if meta is None:
                model, meta, rows = self._timed(cell, fresh.to(self.plan.device).eval(), n)
                meta.update(trained_for=cell.key, traces=rows)
                self.store.save_model(cell.model_key, model, meta)
        return {"kind": "train", "meta": meta}

    def _part(self, cell: Cell) -> DataPart:
        part = self.plan.part(cell.part or cell.dataset)
        part.to_device(self.plan.device)  # in the process that computes (never a Ray driver): see DataPart
        return part

    def _split(self, cell: Cell) -> Split:
        return self._part(cell).splits[cell.scenario]

    def _loader(self, part: DataPart, x, y, idx, name: str, seed: int, **kw) -> Loader:
        return Loader(x, y, idx, part.data.spec, batch_size=part.settings.train.batch_size, seed=seed,
                      device=self.plan.device, name=name, **kw)

    def _original(self, cell: Cell, threads: int) -> dict:
        t0 = time.perf_counter()
        plan, part = self.plan, self._part(cell)
        s = part.settings
        with self.store.building(cell.model_key):
            seed_everything(cell.seed)
            model = part.new_model(cell.model)
            meta = self.store.load_model(cell.model_key, model)
            if meta is None:
                split = None if cell.data_key == "clean" else part.splits[cell.scenario]  # poisoned data
                x, y = part.training_data(split)
                what = "" if split is None else f" on the poisoned data of {cell.scenario}"
                self.say(f"   [{plan.profile}] {cell.dataset} {cell.model} seed {cell.seed}: training the original"
                         f"{what} ({s.train.epochs} epochs on {len(part.train_pool)} images, {threads} thread(s))")
                model.to(plan.device)
                train = self._loader(part, x, y, part.train_pool, "train", cell.seed, shuffle=True,
                                     augment=s.train.augment)
                with run_speed(model, self.speed), Timer(plan.device) as t:
                    fit(model, train, s.train, desc=f"original {cell.model}", progress=self.progress)
                meta = {"kind": "original", "seconds": t.seconds, "device": str(plan.device), "threads": threads,
                        "speed": self.speed,
                        "gpu": physical_device(plan.device),
                        "wall_s": time.perf_counter() - t0}  # the cell: data, training and the rest before saving
                self.store.save_model(cell.model_key, model, meta)
        return {"kind": "original", "meta": meta}

    def original_model(self, key: str) -> torch.nn.Module:
        cell = self.plan.cell(key)
        part = self._part(cell)
        if key not in self._models:
            seed_everything(cell.seed)
            model = part.new_model(cell.model)
            if self.store.load_model(key, model) is None:
                raise CorruptFile(f"the original of {cell.label} is not in the cell store (key {key})")
            self._models[key] = {k: v.clone() for k, v in model.state_dict().items()}
            while len(self._models) > 2:
                self._models.popitem(last=False)
        model = part.new_model(cell.model)
        model.load_state_dict(self._models[key], strict=True)
        return model.to(self.plan.device).eval()

    def original_eval(self, key: str) -> Evaluation:
        if key not in self._evals:
            self._evals[key] = evaluation_from(self.store.load_logits(key))
            while len(self._evals) > 4:
                self._evals.popitem(last=False)
        return self._evals[key]

    def _metric_config(self, cell: Cell):
        mcfg = copy.copy(self._part(cell).settings.metrics)
        mcfg.seed = cell.run_seed
        return mcfg

    def _evaluate(self, cell: Cell) -> dict:
        t0 = time.perf_counter()
        part, split = self._part(cell), self._split(cell)
        # the original's logits are the same for every scenario on its (clean) data: gathered once per process
        seen = (cell.original, split.tag if split.kind == "backdoor" else "clean")
        original = self.original_model(cell.original)
        with run_speed(original, self.speed):  # evaluation at the run's speed, like every other cell
            if seen not in self._gathered:
                self._gathered = {seen: gather(original, part, split, cell.seed, self.plan.device)}
            ev = self._gathered[seen]
            # the metrics that mean something for the original (a distance to itself is 0)
            names = tuple(m for m in part.settings.metrics.metrics if metric_spec(m).on_original)
            ctx = ModelContext(original, original, None, None, ev, **self._images(part, split, names))
            res = compute_metrics(ev, split, self._metric_config(cell), ctx, names=names)
        record = {"kind": "evaluate", "rows": self._rows(cell, res), "cell_seconds": {"wall": time.perf_counter() - t0}}
        self.store.save_record(cell.key, record, evaluation_arrays(ev))
        self._evals[cell.key] = ev
        return record

    def _method(self, cell: Cell, threads: int) -> dict:
        t0 = time.perf_counter()
        plan, part, split = self.plan, self._part(cell), self._split(cell)
        original = self.original_model(cell.original)
        ev_orig = self.original_eval(cell.deps[1])
        # deps: the original, its evaluation, then the retrain cell (a method that needs it) or the group cell that
        # trained this one (a grouped retrain)
        retrained = self._retrained(cell.deps[2]) if len(cell.deps) > 2 and not cell.model_key else None
        model = copy.deepcopy(original)
        meta = self.store.load_model(cell.model_key, model) if cell.model_key else None
        trace_rows: list[dict] = []
        cached = meta is not None
        if cached and meta.get("trained_for") == cell.key:  # its training half (Ray: a task of its own) ran for it
            cached, trace_rows = False, list(meta.get("traces", []))
        if meta is not None:
            model.to(plan.device)
        else:
            try:
                model, meta, trace_rows = self._timed(cell, original, threads)
                check_finite(model, cell.method)
            except FloatingPointError as e:
                if not is_trial(cell.method):
                    raise
                return self._failed_trial(cell, e, time.perf_counter() - t0)
            if cell.model_key:
                self.store.save_model(cell.model_key, model, meta)
        model.eval()
        check_finite(model, cell.method)
        with run_speed(model, self.speed):  # evaluation at the run's speed, like every other cell
            ev = gather(model, part, split, cell.run_seed, plan.device)
            forget = self._loaders(cell)[1]
            ctx = ModelContext(model, original, retrained, forget.with_options(augment=False), ev_orig,
                               **self._images(part, split, part.settings.metrics.metrics))
            res = compute_metrics(ev, split, self._metric_config(cell), ctx)
        res["unlearn_time_s"] = meta["seconds"]
        res.update(budget_rows(meta))
        res.update(trace_metrics(trace_rows))
        diagnosis = diagnosis_row(self._base(cell), meta)
        record = {"kind": "method", "rows": self._rows(cell, res), "diagnoses": [diagnosis] if diagnosis else [],
                  "timings": [self._timing(cell, meta, cached)],
                  "traces": [{**self._base(cell), **r} for r in trace_rows],
                  "config": to_dict(part.method_cfgs[cell.method]),
                  "cell_seconds": {"wall": time.perf_counter() - t0, "call": 0.0 if cached else meta["seconds_total"]}}
        self.store.save_record(cell.key, record, evaluation_arrays(ev))
        return record

    def _failed_trial(self, cell: Cell, error: Exception, seconds: float) -> dict:
        """A tuning trial whose options diverged (a non-finite loss or weight): stored as failed, so that the study
        tells it so and a rerun does not repeat it; a reported cell that diverges stops the run instead."""
        record = {"kind": "method", "rows": [], "timings": [], "traces": [], "diagnoses": [],
                  "failed": str(error)[:300], "config": to_dict(self._part(cell).method_cfgs[cell.method]),
                  "cell_seconds": {"wall": seconds, "call": seconds}}
        self.store.save_record(cell.key, record, {})
        return record

    def _loaders(self, cell: Cell) -> tuple[Loader, Loader, Loader | None]:
        """Fresh (retain, forget, unseen) loaders of the cell's split: every call starts from the same state."""
        part, split = self._part(cell), self._split(cell)
        x, y = part.training_data(split)
        needs_unseen = method_spec(cell.method).needs_unseen
        seed = cell.run_seed
        return (self._loader(part, x, y, split.retain_train, "retain", seed),
                self._loader(part, x, y, split.forget_train, "forget", seed + 1),
                self._loader(part, x, y, split.unseen, "unseen", seed + 2) if needs_unseen else None)

    def _timed(self, cell: Cell, original: torch.nn.Module, threads: int) -> tuple[torch.nn.Module, dict, list]:
        """The method's call, timed alone (synchronised; evaluation outside). A call shorter than
        ``timing.repeat_below_s`` is repeated ``timing.repeats - 1`` more times, each from a fresh copy of the
        original and fresh loaders under the same seed; the median is reported with the spread. The model of the
        first call is the one evaluated."""
        plan, part = self.plan, self._part(cell)
        timing = part.settings.timing
        spec, mc = method_spec(cell.method), part.method_cfgs[cell.method]
        w0 = time.perf_counter()
        if timing.warmup:
            warm_up(original, self._loaders(cell), plan.device, mc, self.speed)
        result, rows, times = None, [], []
        while len(times) < (1 if times and times[0] >= timing.repeat_below_s else timing.repeats):
            retain, forget, unseen = self._loaders(cell)
            seed_everything(cell.run_seed)
            model = copy.deepcopy(original).train()
            with measuring(original, model, retain, forget) as measured:
                with collecting() as trace_rows, run_speed(model, self.speed), Timer(plan.device) as t:
                    model = spec(model, retain=retain, forget=forget, unseen=unseen, cfg=mc, device=plan.device)
                model = plain_format(model)  # a copy the method made inside run_speed: its ordinary format again
                measured["result"] = model
            times.append(t.seconds)
            if result is None:
                result, rows, first = model, trace_rows, measured
        steps, setting = paper_steps(cell.method, mc)
        diag = first["diagnosis"]
        meta = {"kind": cell.method, "seconds": float(np.median(times)), "seconds_min": min(times),
                "seconds_max": max(times), "repeats": len(times), "device": str(plan.device), "threads": threads,
                "speed": self.speed, "gpu": physical_device(plan.device),
                "seconds_total": time.perf_counter() - w0,  # every call, the warm-up and the copies between them
                # the first call's budget (the evaluated model's), what the method said, its paper's setting
                "budget": asdict(first["budget"]), "diagnosis": None if diag is None else diag.as_dict(),
                "paper_steps": steps, "paper_setting": setting}
        return result, meta, rows

    def _images(self, part: DataPart, split: Split, names) -> dict:
        """Batches of test or training images at dataset indices (test-time transform), for the metrics among
        ``names`` that need ``images`` (none: no batches)."""
        if not any_needs(names, "images"):
            return {}
        bs, dev = part.settings.eval_batch_size, self.plan.device
        x, y = part.training_data(split)
        test = Loader(part.data.test_x, part.data.test_y, part.test_pool, part.data.spec, batch_size=bs, device=dev)
        train = Loader(x, y, part.eval_idx, part.data.spec, batch_size=bs, device=dev)
        return {"test_images": lambda idx: list(test.subset(Evaluation.rows(part.test_pool, idx))),
                "train_images": lambda idx: list(train.subset(Evaluation.rows(part.eval_idx, idx)))}

    def _retrained(self, key: str) -> torch.nn.Module:
        cell = self.plan.cell(key)
        model = self._part(cell).new_model(cell.model)
        if self.store.load_model(cell.model_key, model) is None:
            raise CorruptFile(f"the retrained model of {cell.label} is not in the cell store (key {cell.model_key})")
        return model.to(self.plan.device).eval()

    # -- records --------------------------------------------------------------------------------------
    def _base(self, cell: Cell) -> dict:
        return {"dataset": cell.dataset, "model": cell.model, "scenario": cell.scenario,
                "method": cell.method, "seed": cell.run_seed}

    def _rows(self, cell: Cell, res: dict[str, float]) -> list[dict]:
        base = self._base(cell)
        return [{**base, "metric": k, "value": float(v)} for k, v in res.items()]

    def _timing(self, cell: Cell, meta: dict, cached: bool) -> dict:
        return {**self._base(cell), **timing_fields(meta), "cached": cached}


# traces whose last value is also a metric of the run (in percent): whether a method's stopping rule, not its
# maximum, ended it (lightweight, versatile); a rule that never fires is a finding for the claims table
TRACE_METRICS = ("stopped_by_rule",)


def trace_metrics(rows: list[dict]) -> dict[str, float]:
    out = {}
    for name in TRACE_METRICS:
        values = [r["value"] for r in rows if r["name"] == name]
        if values:
            out[name] = 100.0 * values[-1]
    return out


def timing_fields(meta: dict) -> dict:
    """The timing columns from a checkpoint's or a call's metadata (one call: its time is the median)."""
    sec = meta["seconds"]
    return {"seconds": sec, "seconds_min": meta.get("seconds_min", sec), "seconds_max": meta.get("seconds_max", sec),
            "repeats": meta.get("repeats", 1), "device": meta["device"], "threads": meta.get("threads"),
            "gpu": meta.get("gpu", ""),
            "speed": meta.get("speed", "exact")}  # a result from before the speed switch was float32


def physical_device(device: torch.device) -> str:
    """The physical GPU a cell computed on, for its timing row: the id Ray assigned to this worker
    (``ray.get_gpu_ids()``), else the entry of ``CUDA_VISIBLE_DEVICES`` that torch's device index points at, else
    that index; then, in brackets, the first 8 characters of the UUID of the device torch actually uses (a reused
    Ray worker keeps the GPU it initialised on: a UUID that differs between two ids shows it); ``cpu`` on the CPU.
    Two cells that shared a GPU show the same id (``cells_per_gpu``)."""
    if device.type != "cuda":
        return "cpu"
    index = device.index if device.index is not None else torch.cuda.current_device()
    try:
        uuid = f" ({str(torch.cuda.get_device_properties(index).uuid)[:8]})"
    except (AttributeError, RuntimeError, AssertionError):  # an older torch, or no device properties
        uuid = ""
    return _gpu_id(index) + uuid


def _gpu_id(index: int) -> str:
    ray = sys.modules.get("ray")  # only in a process that imported it: a local run never pays for the import
    if ray is not None and ray.is_initialized():
        try:
            ids = [str(i) for i in ray.get_gpu_ids()]
        except Exception:  # noqa: BLE001 - a driver or an older Ray: fall back to the environment
            ids = []
        if ids:
            return ids[index] if index < len(ids) else ",".join(ids)
    visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    return visible[index] if index < len(visible) else str(index)


def original_timing(cell: Cell, meta: dict, cached: bool) -> dict:
    """The timing row of an original (from its checkpoint's metadata)."""
    return {"dataset": cell.dataset, "model": cell.model, "scenario": cell.scenario, "method": "original",
            "seed": cell.seed, **timing_fields(meta), "cached": cached}


_WARM: set[tuple] = set()


def batch_shapes(loaders: tuple, cfg, device: torch.device) -> list[int]:
    """The batch sizes a method call will run on ``device``: on CUDA every ``*batch_size`` option of its config, the
    retain loader's, and the last (partial) batch of the retain and forget sets at each (cudnn.benchmark tunes each
    new shape the first time it sees it); on the CPU the retain loader's only (nothing is tuned there)."""
    retain = loaders[0]
    sizes = {retain.batch_size}
    if device.type != "cuda":
        return sorted(sizes)
    if dataclasses.is_dataclass(cfg):
        sizes |= {v for f in dataclasses.fields(cfg) if f.name.endswith("batch_size")
                  and isinstance(v := getattr(cfg, f.name), int) and not isinstance(v, bool) and v > 0}
    for loader in loaders:
        if loader is not None and loader.num_samples:
            sizes |= {loader.num_samples % b for b in list(sizes) if loader.num_samples % b}
    return sorted(sizes)


def warm_up(model: torch.nn.Module, loaders: tuple | Loader, device: torch.device, cfg=None,
            speed: str = "exact") -> None:
    """Before a timed call, once per process, architecture, speed and batch shape: one untimed forward/backward pass
    (and on CUDA one forward pass without gradients) on a copy, at the run's speed. Lazy initialisation, the
    allocator and the kernel selection (cudnn.benchmark's tuning of each shape) happen here, not in the timed
    call. ``loaders``: the call's (retain, forget, unseen) loaders, or its retain loader alone."""
    loaders = loaders if isinstance(loaders, tuple) else (loaders,)
    retain = loaders[0]
    if not retain.num_samples:
        return
    arch = type(model).__name__ + str(sum(p.numel() for p in model.parameters()))
    todo = [b for b in batch_shapes(loaders, cfg, device) if (arch, str(device), speed, b) not in _WARM]
    if not todo:
        return
    m = copy.deepcopy(model).train()
    x, y = retain.batch(np.arange(min(max(todo), retain.num_samples)))
    with run_speed(m, speed):
        for b in todo:
            _WARM.add((arch, str(device), speed, b))
            reps = math.ceil(b / len(y))
            xb, yb = x.repeat(reps, *([1] * (x.dim() - 1)))[:b], y.repeat(reps)[:b]
            m.train()
            torch.nn.functional.cross_entropy(m(xb), yb).backward()
            if device.type == "cuda":
                with torch.no_grad():
                    m.eval()(xb)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
