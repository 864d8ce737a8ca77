"""``make plan PAPER=<id> PROFILE=<p>``: the cells of a run by kind and its estimated time per device, from the
config alone (no data loaded, nothing trained: a model is built once on the CPU to count its FLOPs).

The work of a cell is counted in image-passes (one image through one training step; an evaluation's forward pass
counts a third of one), from the config:

- an original: ``train.epochs`` passes over the train pool;
- a retrain (a method that trains from scratch): its ``epochs`` over the scenario's retain set;
- another method: ``epochs`` over the data it reads (retain, else forget), capped at ``max_steps`` batches, where
  its options have them; otherwise (Deep Unlearning, SSD, Fisher, ...) one forward pass over retain and forget
  (an assumption: these are single-pass methods);
- every evaluate and method cell: one forward pass over the test pool and the evaluated training images.

Times are the image-passes times the model's training FLOPs per image (3x its forward FLOPs, counted with hooks
on its convolutions and linear layers at the dataset's shape) divided by a device's effective FLOP/s:

- ``cpu``: measured by ``benchmarks/throughput.py`` (``benchmarks/throughputs.csv``, committed; the median
  effective FLOP/s of its rows, per model where that model was measured). Not measured: no CPU figure.
- ``h200``: ASSUMED, not measured (see :data:`GPU_ASSUMPTIONS`): an effective training rate per speed, from
  public anchors. ``benchmarks/gpu_check.py`` measures the real one the first time a GPU is lent.

Class sizes are taken as equal (a class scenario forgets ``len(classes) / num_classes`` of the pool).
"""

from __future__ import annotations

import csv
import functools
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from ..config import load_paper, method_config, runs_on
from ..grouped_fit import group_reason
from ..methods import method_spec
from .plan import PACKAGE, reference_method, select_methods

THROUGHPUTS = PACKAGE.parent / "benchmarks" / "throughputs.csv"

# training images, test images of the datasets the papers use (torchvision's splits); other datasets are loaded
DATASET_SIZES = {"cifar10": (50000, 10000), "cifar100": (50000, 10000), "svhn": (73257, 26032),
                 "mnist": (60000, 10000), "fashion_mnist": (60000, 10000)}


@dataclass(frozen=True)
class GpuAssumption:
    name: str
    tflops: float  # effective training TFLOP/s (FLOPs of the model's forward x 3 per image, per second)
    basis: str


# ASSUMPTIONS, stated: one H200's effective training rate, per speed of the run.
GPU_ASSUMPTIONS = {
    "exact": GpuAssumption(
        "h200 (exact: fp32/TF32, the harness's loop)", 23.0,
        "ResNet-18 at ~7k img/s at batch 64-128 (3.33 GFLOP a training image): the GPU review's path A, itself from "
        "airbench's 'ResNet-18, 96 %, 7 min, 32.3 PFLOP on an A100' (77 TFLOP/s for a tuned bf16 loop), x1.7 for "
        "an H200, /~5 for fp32, eager and ~9 host syncs a step"),
    "fast": GpuAssumption(
        "h200 (fast: bf16, channels_last, sync-free)", 60.0,
        "ResNet-18 at ~18k img/s at batch 128-512: the review's path B/C, about half of the tuned airbench rate "
        "scaled to an H200 (airbench: 94 % CIFAR-10 in 2.6 s on an A100)"),
}


def dataset_sizes(name: str) -> tuple[int, int, int]:
    """(training images, test images, classes) of a dataset, without loading the papers' ones."""
    from ..data import DATASETS, load_dataset

    classes = DATASETS.get(name).num_classes
    if name in DATASET_SIZES:
        return (*DATASET_SIZES[name], classes)
    data = load_dataset(name, download=False)  # the bundled ones (digits): small
    return len(data.train_y), len(data.test_y), classes


@functools.lru_cache(maxsize=None)
def train_flops(model: str, width, depth, heads, patch, channels: int, size: int, classes: int) -> float:
    """FLOPs of one training image (3x the forward's multiply-adds x 2) for a model at a dataset's shape."""
    from ..models import build_model

    net = build_model(model, num_classes=classes, in_channels=channels, width=width, image_size=size, depth=depth,
                      heads=heads, patch=patch).eval()
    macs = [0]

    def count(mod, inp, out):
        if isinstance(mod, torch.nn.Conv2d):
            macs[0] += out.numel() * (mod.in_channels // mod.groups) * math.prod(mod.kernel_size)
        elif isinstance(mod, torch.nn.Linear):
            macs[0] += out.numel() * mod.in_features

    hooks = [m.register_forward_hook(count) for m in net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    with torch.no_grad():
        net(torch.zeros(1, channels, size, size))
    for h in hooks:
        h.remove()
    return 3 * 2 * macs[0]


@dataclass
class KindCount:
    cells: int = 0
    passes: float = 0.0  # training image-passes
    flops: float = 0.0
    cpu_s: float = 0.0  # estimated seconds on the CPU (nan: not measured)


@dataclass
class Estimate:
    paper: str
    profile: str
    speed: str
    kinds: dict[str, KindCount]
    cpu_tflops: dict[str, float]  # per "model@width" ("*": the median of every row); empty: not measured
    cpu_source: str

    @property
    def cells(self) -> int:
        return sum(k.cells for k in self.kinds.values())

    @property
    def flops(self) -> float:
        return sum(k.flops for k in self.kinds.values())

    def hours(self, device: str, kind: str | None = None) -> float:
        """Estimated hours on ``device`` (cpu | h200), for one kind or the whole run; nan when not measured."""
        flops = self.flops if kind is None else self.kinds[kind].flops
        if device == "h200":
            return flops / (GPU_ASSUMPTIONS[self.speed].tflops * 1e12) / 3600
        kinds = self.kinds.values() if kind is None else [self.kinds[kind]]
        return sum(k.cpu_s for k in kinds) / 3600


def cpu_rates(path: Path = THROUGHPUTS) -> tuple[dict[str, float], str]:
    """Effective CPU training TFLOP/s from the committed throughput CSV, per "model@width" and "*" (the median over
    its rows, for a model or width not measured)."""
    if not path.exists():
        return {}, f"not measured (run python benchmarks/throughput.py --commit; it writes {path.name})"
    with path.open() as f:
        rows = [r for r in csv.DictReader(f) if r.get("device") == "cpu"]
    per = {f"{r['model']}@{r['width']}": float(r["images_per_s"]) * float(r["train_flops_per_image"]) / 1e12
           for r in rows}
    if not per:
        return {}, f"{path.name} has no cpu rows"
    rates = sorted(per.values())
    where = ", ".join(sorted({f"{r.get('cores', '?')} cores" for r in rows}))
    return {**per, "*": rates[len(rates) // 2]}, (f"measured ({path.name}: {len(rows)} rows, {where}; a model or "
                                                  f"width not measured at the median rate)")


def _work(name: str, mc, retain: int, forget: int) -> float:
    """Training image-passes of one method call (see the module docstring)."""
    spec = method_spec(name)
    epochs = getattr(mc, "epochs", None)
    if not isinstance(epochs, (int, float)) or isinstance(epochs, bool):
        return (retain * spec.reads_retain + forget * spec.reads_forget) / 3
    n = retain if spec.trains_from_scratch or spec.reads_retain else forget
    passes = float(epochs) * n
    steps, bs = getattr(mc, "max_steps", None), getattr(mc, "batch_size", None)
    if isinstance(steps, int) and isinstance(bs, int) and not isinstance(steps, bool):
        passes = min(passes, float(steps * bs))
    return passes


def _forget_size(sc, pool: int, classes: int) -> int:
    if sc.kind == "class":
        return round(pool * len(sc.classes) / classes)
    return round(pool * sc.fraction)


def _part(cfg, s, names: list[str], seeds: list[int], kinds: dict[str, KindCount], rates: dict[str, float],
          ensemble=None) -> None:
    """Add the cells of one dataset (or of the ensemble) to ``kinds``."""
    n_train, n_test, classes = dataset_sizes(s.dataset)
    from ..data import DATASETS

    ds = DATASETS.get(s.dataset)
    unseen = s.split.unseen
    base = n_train if s.train_subset is None else min(n_train, s.train_subset + unseen)
    pool, test = base - unseen, n_test if s.test_subset is None else min(n_test, s.test_subset)
    evaluated = (pool if s.eval_train_subset is None else min(pool, s.eval_train_subset)) + unseen
    eval_passes = (test + evaluated) / 3
    cfgs = {m: method_config(m, s.methods[m], s.train, where=f"{cfg.id}.methods.{m}") for m in names}
    retrain = reference_method(names)
    scenarios = s.split.all_scenarios()

    def add(kind: str, model: str, passes: float, n: int = 1) -> None:
        spec = s.models[model]
        f = train_flops(model, spec.width, spec.depth, spec.heads, spec.patch, ds.channels, ds.size, classes)
        rate = rates.get(f"{model}@{spec.width}") or rates.get("*") or float("nan")
        k = kinds.setdefault(kind, KindCount())
        k.cells, k.passes, k.flops = k.cells + n, k.passes + n * passes, k.flops + n * passes * f
        k.cpu_s += n * passes * f / (rate * 1e12)

    models = [ensemble.model or next(iter(s.models))] if ensemble else list(s.models)
    for model in models:
        if ensemble:
            sc = next((x for x in scenarios if x.kind == "class"), scenarios[0])
            forget = _forget_size(sc, pool, classes)
            n, others = ensemble.n, [m for m in (ensemble.methods or names) if m != retrain]
            add("original", model, s.train.epochs * pool, n)
            add("evaluate", model, eval_passes, n)
            add("retrain", model, _work(retrain or "retrain", cfgs.get(retrain) or method_config(
                "retrain", {}, s.train), pool - forget, forget) + eval_passes, 2 * n)
            runs = n * (2 if ensemble.conditional else 1)
            for m in others:
                add("method", model, _work(m, cfgs[m], pool - forget, forget) + eval_passes, runs)
            _groups(ensemble, model, s.train, retrain, cfgs.get(retrain), add)
            continue
        data_keys = {("clean" if sc.kind != "backdoor" else id(sc)) for sc in scenarios}
        add("original", model, s.train.epochs * pool, len(seeds) * len(data_keys))
        for sc in scenarios:
            forget = _forget_size(sc, pool, classes)
            add("evaluate", model, eval_passes, len(seeds))
            for m in names:
                if runs_on(cfg.settings, m, sc.kind):
                    kind = "retrain" if m == retrain else "method"
                    add(kind, model, _work(m, cfgs[m], pool - forget, forget) + eval_passes, len(seeds))
        if s.tuning.trials and (not s.tuning.datasets or s.dataset in s.tuning.datasets):
            _tuning(cfg, s, names, model, len(seeds), (pool, classes, eval_passes), cfgs, retrain, add)


def _groups(ensemble, model: str, train, retrain: str | None, retrain_cfg, add) -> None:
    """The ensemble's group cells (``ensemble.grouped``): one for the N originals, one for each set of N retrains,
    where the model and recipe can be grouped (as harness/plan.py's ensemble_grouping decides). Their training is
    counted with the member cells already (the same work), so a group cell adds a cell and no image-passes."""
    if not ensemble.grouped:
        return
    if group_reason(model, train) is None:
        add("group", model, 0.0, 1)
    if retrain == "retrain" and retrain_cfg is not None and group_reason(model, retrain_cfg) is None:
        add("group", model, 0.0, 2)


def _tuning(cfg, s, names: list[str], model: str, n_seeds: int, sizes: tuple, cfgs: dict, retrain: str | None,
            add) -> None:
    """Equal-budget tuning (``tuning:``): the validation requests' originals, evaluations and retrains (in the plan
    from the start, under their kinds; the first scenario of each kind, on every tuning seed), then the trials and
    the tuned rows (kind ``tuning``: the driver adds them round by round; a trial is counted at the cost of the
    method's default call, an upper bound where the tuning budget caps it)."""
    t, (pool, classes, eval_passes) = s.tuning, sizes
    firsts = list({sc.kind: sc for sc in reversed(s.split.all_scenarios())}.values())
    tuned = [m for m in names if (m in t.methods if t.methods else not method_spec(m).tuning.empty)
             and not method_spec(m).trains_from_scratch]
    data_keys = {("clean" if sc.kind != "backdoor" else id(sc)) for sc in firsts}
    add("original", model, s.train.epochs * pool, len(data_keys) * len(t.seeds))

    def work(m: str, sc) -> float:
        forget = _forget_size(sc, pool, classes)
        return _work(m, cfgs[m], pool - forget, forget) + eval_passes

    for sc in firsts:
        add("evaluate", model, eval_passes, len(t.seeds))
        if retrain:
            add("retrain", model, work(retrain, sc), len(t.seeds))
        for m in (m for m in tuned if runs_on(cfg.settings, m, sc.kind)):
            add("tuning", model, work(m, sc), t.trials * len(t.seeds))
    for sc in s.split.all_scenarios():
        for m in (m for m in tuned if runs_on(cfg.settings, m, sc.kind)):
            add("tuning", model, work(m, sc), n_seeds)


def estimate(paper: str, profile: str, throughputs: Path = THROUGHPUTS) -> Estimate:
    """The cells of ``paper`` in ``profile`` by kind (original, evaluate, retrain, method) with their work and
    estimated time; raises ConfigError for an unknown paper or profile."""
    cfg = load_paper(paper, profile)
    s = cfg.settings
    names = select_methods(paper, s.methods, None)
    kinds: dict[str, KindCount] = {}
    rates, source = cpu_rates(throughputs)
    for ds in cfg.datasets:
        _part(cfg, cfg.settings_for(ds), names, s.seeds, kinds, rates)
    if s.ensemble.n:
        _part(cfg, cfg.ensemble_settings(), names, s.seeds, kinds, rates, ensemble=s.ensemble)
    speed = getattr(s, "speed", None) or getattr(s.train, "speed", None) or "exact"
    return Estimate(paper, cfg.profile, speed if speed in GPU_ASSUMPTIONS else "exact", kinds, rates, source)


def _dur(hours: float) -> str:
    if not math.isfinite(hours):
        return "not measured"
    if hours < 1 / 60:
        return f"{hours * 3600:.0f} s"
    return f"{hours * 60:.1f} min" if hours < 1 else f"{hours:.1f} h"


def render(est: Estimate) -> str:
    """The text ``make plan`` prints."""
    g = GPU_ASSUMPTIONS[est.speed]
    lines = [f"== plan of {est.paper} ({est.profile}, speed {est.speed}): {est.cells} cells; nothing was run",
             f"   {'kind':10s} {'cells':>6s} {'image-passes':>14s} {'PFLOP':>9s} {'cpu':>14s} {'h200 (assumed)':>15s}"]
    for kind in ("original", "retrain", "evaluate", "method", "group", "tuning"):
        if kind in est.kinds:
            k = est.kinds[kind]
            lines.append(f"   {kind:10s} {k.cells:6d} {k.passes / 1e6:13.2f}M {k.flops / 1e15:9.3f} "
                         f"{_dur(est.hours('cpu', kind)):>14s} {_dur(est.hours('h200', kind)):>15s}")
    lines.append(f"   {'total':10s} {est.cells:6d} {sum(k.passes for k in est.kinds.values()) / 1e6:13.2f}M "
                 f"{est.flops / 1e15:9.3f} {_dur(est.hours('cpu')):>14s} {_dur(est.hours('h200')):>15s}")
    lines += [f"   cpu: {est.cpu_source}",
              f"   h200: ASSUMED {g.tflops:g} effective TFLOP/s ({g.name}): {g.basis}",
              "   one device, cells one after another; method costs are estimated from their options (see "
              "unlearnlib/harness/estimate.py)"]
    return "\n".join(lines)


def rows(est: Estimate) -> list[dict]:
    """One row per kind and a total, for a CSV (benchmarks/plan_projection.py)."""
    out = []
    total = KindCount(est.cells, sum(x.passes for x in est.kinds.values()), est.flops)
    for kind, k in [*est.kinds.items(), ("total", total)]:
        out.append({"paper": est.paper, "profile": est.profile, "speed": est.speed, "kind": kind, "cells": k.cells,
                    "image_passes": k.passes, "pflop": k.flops / 1e15,
                    "cpu_hours": est.hours("cpu", None if kind == "total" else kind),
                    "h200_hours_assumed": est.hours("h200", None if kind == "total" else kind),
                    "h200_tflops_assumed": GPU_ASSUMPTIONS[est.speed].tflops})
    return out


__all__ = ["estimate", "render", "rows", "GPU_ASSUMPTIONS", "Estimate", "train_flops"]
