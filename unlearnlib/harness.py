"""Run a paper: seed, split, train or load the original, run the methods timed, evaluate, store.

``run_paper(paper, profile, seeds, device)`` writes ``results/<paper>/<profile>/`` atomically:
``config.resolved.yaml``, ``env.json``, ``splits.npz``, ``metrics.csv`` (long form) and
``timings.csv``. Originals and retrained models are cached as state dicts under a hash of everything
that produced them, and loaded with ``weights_only=True`` and strict key matching.
"""

from __future__ import annotations

import copy
import datetime as _dt
import hashlib
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import yaml

from .config import (ConfigError, PaperConfig, base_method, config_hash, load_paper, method_config, parse_seeds,
                     to_dict)
from .data import (ImageData, Loader, Trigger, backdoor_split, class_split, load_dataset, poison, random_split,
                   save_splits, stratified_subset)
from .data.splits import Split
from .methods import METHODS
from .metrics import MODEL_METRICS, Evaluation, ModelContext, Timer, compute_metrics, speedup
from .trace import collecting
from .models import build_model
from .paths import REPO_ROOT, cache_root, results_root
from .train import fit, predict_logits

METRIC_COLUMNS = ["paper", "profile", "dataset", "model", "scenario", "method", "seed", "metric", "value"]


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


def _hash_array(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a, dtype=np.int64).tobytes()).hexdigest()[:16]


# ----------------------------------------------------------------------------------------------
# checkpoint cache


class CheckpointCache:
    """State dicts under ``<cache>/checkpoints/<key>.pt`` with a ``<key>.json`` of metadata."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = (root or cache_root()) / "checkpoints"

    def load(self, key: str, model: torch.nn.Module) -> dict | None:
        pt, meta = self.root / f"{key}.pt", self.root / f"{key}.json"
        if not (pt.exists() and meta.exists()):
            return None
        state = torch.load(pt, map_location="cpu", weights_only=True)
        model.load_state_dict(state, strict=True)  # pitfall 5: never strict=False
        return json.loads(meta.read_text())

    def save(self, key: str, model: torch.nn.Module, meta: dict) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        pt, js = self.root / f"{key}.pt", self.root / f"{key}.json"
        tmp = pt.with_suffix(f".tmp{os.getpid()}")
        torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, tmp)
        tmp.replace(pt)
        tmp = js.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(meta, indent=1, default=str))
        tmp.replace(js)


# ----------------------------------------------------------------------------------------------
# evaluation


def gather(model: torch.nn.Module, spec, train_x, train_y, train_idx: np.ndarray, test_x, test_y,
           test_pool: np.ndarray, device: torch.device, batch_size: int, augmented: bool, seed: int,
           split: Split | None = None) -> Evaluation:
    """Logits on the test pool and the training images (and the extras some metrics need)."""
    def loader(x, y, idx, aug=False):
        return Loader(x, y, idx, spec, batch_size=batch_size, augment=aug, seed=seed, device=device)

    test_logits, test_labels = predict_logits(model, loader(test_x, test_y, test_pool))
    train_logits, train_labels = predict_logits(model, loader(train_x, train_y, train_idx))
    aug_logits = predict_logits(model, loader(train_x, train_y, train_idx, aug=True))[0] if augmented else None
    trig = None
    if split is not None and split.kind == "backdoor":
        keep = test_pool[(test_y[torch.as_tensor(test_pool)] != split.target).cpu().numpy()]
        tx = split.trigger.apply(test_x[torch.as_tensor(keep, device=test_x.device)])
        trig = predict_logits(model, loader(tx, test_y[torch.as_tensor(keep)], np.arange(len(keep))))[0]
    return Evaluation(test_pool, test_logits, test_labels, train_idx, train_logits, train_labels, aug_logits, trig)


# ----------------------------------------------------------------------------------------------
# the run


def _env(device: torch.device, seeds: list[int], profile: str) -> dict:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
                                timeout=10).stdout.strip() or None
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                                    capture_output=True, text=True, timeout=10).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        commit, dirty = None, None
    import sklearn
    import torchvision

    return {
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "profile": profile,
        "seeds": seeds,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
        or platform.machine(),
        "cpu_threads": torch.get_num_threads(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": np.__version__,
        "scikit-learn": sklearn.__version__,
        "platform": platform.platform(),
        "git_commit": commit,
        "git_dirty": dirty,
    }


def _say(msg: str) -> None:
    print(msg, flush=True)


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


def _clean_stale(parent: Path, profile: str) -> None:
    """Remove scratch folders of runs that were killed (their process is gone)."""
    for d in parent.glob(f".{profile}.*-*"):
        try:
            pid = int(d.name.rsplit("-", 1)[1])
            os.kill(pid, 0)
        except (ValueError, ProcessLookupError):
            shutil.rmtree(d, ignore_errors=True)
        except PermissionError:
            pass


def run_paper(paper: str, profile: str = "auto", seeds: Any = None, device: str = "auto",
              methods: list[str] | None = None, progress: bool = True):
    """Run ``paper`` in ``profile`` and store the results; returns a :class:`unlearnlib.results.Run`."""
    from .results import Run

    cfg: PaperConfig = load_paper(paper, profile)
    s = cfg.settings
    seed_list = parse_seeds(seeds, s.seeds)
    dev = resolve_device(device)
    if methods is not None:
        if not isinstance(methods, (list, tuple)) or not all(isinstance(m, str) for m in methods):
            raise ConfigError(f"methods: expected a list of method names, got {methods!r}")
        unknown = [m for m in methods if m not in s.methods]
        if unknown:
            raise ConfigError(f"methods: {unknown} not configured for {paper}; valid: {', '.join(s.methods)}")
    method_names = list(methods) if methods is not None else list(s.methods)
    # retrain first: its time is the reference for every speed-up, its model for weight distances
    method_names.sort(key=lambda m: not METHODS.get(base_method(m)).trains_from_scratch)
    method_cfgs = {m: method_config(m, s.methods[m], s.train, where=f"{paper}.methods.{m}") for m in method_names}

    _say(f"== {cfg.title} ({paper}) | {cfg.profile_label} | device {dev} | seeds {seed_list}")
    t_start = time.perf_counter()
    data = load_dataset(s.dataset, download=s.download)
    if dev.type == "cuda":
        data.train_x, data.test_x = data.train_x.to(dev), data.test_x.to(dev)
    train_pool, unseen, test_pool = make_pools(data, s)
    splits = make_splits(data, s, train_pool, unseen, test_pool)
    eval_idx = np.union1d(train_pool, unseen)
    _say(f"   data: {s.dataset} ({data.source}); train pool {len(train_pool)}, unseen {len(unseen)}, "
         f"test pool {len(test_pool)}; scenarios: {', '.join(splits)}")

    final = results_root() / paper / cfg.profile
    final.parent.mkdir(parents=True, exist_ok=True)
    _clean_stale(final.parent, cfg.profile)
    tmp = final.parent / f".{cfg.profile}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    cache = CheckpointCache()
    rows: list[dict] = []
    timings: list[dict] = []
    traces: list[dict] = []
    augmented = "mia_svc_augmented" in s.metrics.metrics
    logit_metrics = tuple(m for m in s.metrics.metrics if m not in MODEL_METRICS)
    try:
        for seed in seed_list:
            for model_name, mspec in s.models.items():
                base = dict(paper=paper, profile=cfg.profile, dataset=s.dataset, model=model_name, seed=seed)

                def new_model() -> torch.nn.Module:
                    return build_model(model_name, num_classes=data.spec.num_classes,
                                       in_channels=data.spec.channels, width=mspec.width)

                originals: dict[str, tuple[torch.nn.Module, Evaluation]] = {}
                for tag, split in splits.items():
                    train_x, train_y = poison(data.train_x, data.train_y, split)
                    data_key = "clean" if split.kind != "backdoor" else config_hash(
                        _hash_array(split.forget_train), split.target, split.trigger)
                    if data_key not in originals:
                        original = _original(cache, new_model, s, data, train_x, train_y, train_pool, data_key,
                                             model_name, mspec, seed, dev, cfg.profile, progress, timings, base, tag)
                        ev = gather(original, data.spec, train_x, train_y, eval_idx, data.test_x, data.test_y,
                                    test_pool, dev, s.eval_batch_size, augmented, seed, split)
                        originals[data_key] = (original, ev)
                    original, ev_orig = originals[data_key]
                    mcfg = copy.copy(s.metrics)
                    mcfg.seed = seed
                    res = compute_metrics(ev_orig, split, mcfg, names=logit_metrics)
                    rows += [{**base, "scenario": tag, "method": "original", "metric": k, "value": v}
                             for k, v in res.items()]
                    _say(_line(cfg.profile, model_name, tag, "original", None, res))

                    def loader(idx, name, sd):
                        return Loader(train_x, train_y, idx, data.spec, batch_size=s.train.batch_size, seed=sd,
                                      device=dev, name=name)

                    test_loader = Loader(data.test_x, data.test_y, test_pool, data.spec,
                                         batch_size=s.eval_batch_size, device=dev)
                    retrained = None
                    for name in method_names:
                        spec = METHODS.get(base_method(name))
                        mc = method_cfgs[name]
                        retain = loader(split.retain_train, "retain", seed)
                        forget = loader(split.forget_train, "forget", seed + 1)
                        unseen_loader = loader(split.unseen, "unseen", seed + 2) if spec.needs_unseen else None
                        if spec.needs_unseen and not len(split.unseen):
                            raise ConfigError(f"method {name!r} needs unseen data: set split.unseen > 0")
                        seed_everything(seed)
                        model = copy.deepcopy(original)
                        cached, trace_rows = False, []
                        if spec.trains_from_scratch:
                            rkey = config_hash(name, s.dataset, _hash_array(split.retain_train), data_key,
                                               model_name, mspec, mc, seed)
                            rmeta = cache.load(rkey, model)
                            if rmeta is not None:
                                seconds, cached, tdev = rmeta["seconds"], True, rmeta["device"]
                                model.to(dev)
                        if not cached:
                            model.train()
                            with collecting() as trace_rows, Timer(dev) as t:
                                model = spec(model, retain=retain, forget=forget, unseen=unseen_loader, cfg=mc,
                                             device=dev)
                            seconds, tdev = t.seconds, str(dev)
                            if spec.trains_from_scratch:
                                cache.save(rkey, model, {"seconds": seconds, "device": tdev, "kind": name})
                        model.eval()
                        _check_finite(model, name)
                        if spec.trains_from_scratch:
                            retrained = model
                        ev = gather(model, data.spec, train_x, train_y, eval_idx, data.test_x, data.test_y,
                                    test_pool, dev, s.eval_batch_size, augmented, seed, split)
                        ctx = ModelContext(model, original, retrained, forget.with_options(augment=False), ev_orig,
                                           extra={"test_images": lambda idx: list(test_loader.subset(
                                               Evaluation.rows(test_pool, idx)))})
                        res = compute_metrics(ev, split, mcfg, ctx)
                        res["unlearn_time_s"] = seconds
                        rows += [{**base, "scenario": tag, "method": name, "metric": k, "value": v}
                                 for k, v in res.items()]
                        traces += [{**base, "scenario": tag, "method": name, **r} for r in trace_rows]
                        timings.append({**base, "scenario": tag, "method": name, "seconds": seconds,
                                        "cached": cached, "device": tdev})
                        _say(_line(cfg.profile, model_name, tag, name, seconds, res, cached))
        metrics = pd.DataFrame(rows, columns=METRIC_COLUMNS)
        metrics = _add_speedups(metrics)
        _write(tmp, cfg, seed_list, dev, metrics, pd.DataFrame(timings), pd.DataFrame(traces), splits,
               train_pool, unseen, test_pool, data, method_cfgs)
        if final.exists():
            old = final.parent / f".{cfg.profile}.old-{os.getpid()}"
            final.replace(old)
            tmp.replace(final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.replace(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if not any(final.parent.iterdir()):
            final.parent.rmdir()  # nothing half-written, not even an empty folder
        raise
    _say(f"== done in {time.perf_counter() - t_start:.0f} s; results in {final}")
    return Run.load(final)


def _original(cache: CheckpointCache, new_model, s, data: ImageData, train_x, train_y, train_pool, data_key: str,
              model_name: str, mspec, seed: int, dev, profile: str, progress: bool, timings: list, base: dict,
              tag: str) -> torch.nn.Module:
    """The original model of a scenario's training data: from the cache, or trained and cached."""
    seed_everything(seed)
    original = new_model()
    key = config_hash("original", s.dataset, _hash_array(train_pool), data_key, model_name, mspec, s.train, seed)
    meta = cache.load(key, original)
    cached = meta is not None
    what = "" if data_key == "clean" else f" on the poisoned data of {tag}"
    if meta is None:
        _say(f"   [{profile}] {model_name} seed {seed}: training the original{what} "
             f"({s.train.epochs} epochs on {len(train_pool)} images)")
        original.to(dev)
        loader = Loader(train_x, train_y, train_pool, data.spec, batch_size=s.train.batch_size, shuffle=True,
                        augment=s.train.augment, seed=seed, device=dev, name="train")
        with Timer(dev) as t:
            fit(original, loader, s.train, desc=f"original {model_name}", progress=progress)
        meta = {"seconds": t.seconds, "device": str(dev), "kind": "original"}
        cache.save(key, original, meta)
    else:
        _say(f"   [{profile}] {model_name} seed {seed}: original{what} loaded from cache ({key})")
    timings.append({**base, "scenario": tag if data_key != "clean" else "all", "method": "original",
                    "seconds": meta["seconds"], "cached": cached, "device": meta["device"]})
    return original.to(dev).eval()


def _check_finite(model: torch.nn.Module, name: str) -> None:
    for k, v in model.state_dict().items():
        if v.is_floating_point() and not torch.isfinite(v).all():
            raise FloatingPointError(f"method {name!r} produced non-finite values in {k}")


_SHOWN = {"test_forget_acc": "forget", "test_retain_acc": "retain", "forget_acc": "forget(train)",
          "retain_acc": "retain(train)", "test_acc": "test", "asr": "ASR", "mia_svc": "MIA", "mia_lr_cv": "LR-MIA"}


def _line(profile, model, tag, method, seconds, res, cached=False) -> str:
    t = "" if seconds is None else f"{seconds:8.2f} s{' (cached)' if cached else ''}"
    parts = [f"{label} {res[k]:5.1f}" for k, label in _SHOWN.items() if k in res and res[k] == res[k]][:4]
    return f"   [{profile}] {model:9s} {tag:14s} {method:16s} {t:18s} " + "  ".join(parts)


def _add_speedups(metrics: pd.DataFrame) -> pd.DataFrame:
    """speedup_vs_retrain = retrain time / method time, in the same run, per model/scenario/seed."""
    times = metrics[metrics.metric == "unlearn_time_s"]
    keys = ["paper", "profile", "dataset", "model", "scenario", "seed"]
    retrain = times[times.method == "retrain"][keys + ["value"]].rename(columns={"value": "retrain_s"})
    if retrain.empty:
        return metrics
    merged = times.merge(retrain, on=keys)
    merged["value"] = [speedup(r, m) for r, m in zip(merged.retrain_s, merged.value)]
    merged["metric"] = "speedup_vs_retrain"
    return pd.concat([metrics, merged[METRIC_COLUMNS]], ignore_index=True)


def _write(tmp: Path, cfg: PaperConfig, seeds, dev, metrics: pd.DataFrame, timings: pd.DataFrame,
           traces: pd.DataFrame, splits: dict[str, Split], train_pool, unseen, test_pool, data: ImageData,
           method_cfgs: dict) -> None:
    resolved = to_dict(cfg)
    resolved["settings"]["seeds"] = seeds
    resolved["resolved_methods"] = {k: to_dict(v) for k, v in method_cfgs.items()}
    (tmp / "config.resolved.yaml").write_text(yaml.safe_dump(resolved, sort_keys=False, width=110))
    env = _env(dev, seeds, cfg.profile)
    env["data"] = data.summary()
    env["data"].update({"train pool": int(len(train_pool)), "unseen (held out)": int(len(unseen)),
                        "test pool": int(len(test_pool))})
    (tmp / "env.json").write_text(json.dumps(env, indent=1))
    save_splits(tmp / "splits.npz", splits, {"train": train_pool, "unseen": unseen, "test": test_pool})
    metrics.to_csv(tmp / "metrics.csv", index=False)
    timings.to_csv(tmp / "timings.csv", index=False)
    traces.reindex(columns=[*METRIC_COLUMNS[:6], "name", "step", "value"]).to_csv(tmp / "traces.csv", index=False)
