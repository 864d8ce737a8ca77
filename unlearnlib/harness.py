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

from .config import ConfigError, PaperConfig, config_hash, load_paper, method_config, parse_seeds, to_dict
from .data import ImageData, Loader, class_split, load_dataset, save_splits, stratified_subset
from .data.splits import Split
from .methods import METHODS
from .metrics import Evaluation, Timer, compute_metrics, speedup
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


def gather(model: torch.nn.Module, data: ImageData, train_pool: np.ndarray, test_pool: np.ndarray,
           device: torch.device, batch_size: int, augmented: bool, seed: int) -> Evaluation:
    """Logits on the test pool and train pool (and the augmented train pool for upstream-parity MIA)."""
    def loader(x, y, idx, aug=False):
        return Loader(x, y, idx, data.spec, batch_size=batch_size, augment=aug, seed=seed, device=device)

    test_logits, test_labels = predict_logits(model, loader(data.test_x, data.test_y, test_pool))
    train_logits, train_labels = predict_logits(model, loader(data.train_x, data.train_y, train_pool))
    aug_logits = None
    if augmented:
        aug_logits, _ = predict_logits(model, loader(data.train_x, data.train_y, train_pool, aug=True))
    return Evaluation(test_pool, test_logits, test_labels, train_pool, train_logits, train_labels, aug_logits)


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
    # retrain first: its time is the reference for every speed-up
    method_names.sort(key=lambda m: not METHODS.get(m).trains_from_scratch)
    method_cfgs = {m: method_config(m, s.methods[m], s.train, where=f"{paper}.methods.{m}") for m in method_names}

    _say(f"== {cfg.title} ({paper}) | {cfg.profile_label} | device {dev} | seeds {seed_list}")
    t_start = time.perf_counter()
    data = load_dataset(s.dataset, download=s.download)
    if dev.type == "cuda":
        data.train_x, data.test_x = data.train_x.to(dev), data.test_x.to(dev)
    train_pool = stratified_subset(data.train_y, s.train_subset, seed=0)
    test_pool = stratified_subset(data.test_y, s.test_subset, seed=0)
    splits: dict[str, Split] = {}
    for classes in s.split.forget:
        sp = class_split(data.train_y, data.test_y, classes, train_pool, test_pool)
        splits[sp.tag] = sp
    _say(f"   data: {s.dataset} ({data.source}); train pool {len(train_pool)}, test pool {len(test_pool)}; "
         f"scenarios: {', '.join(splits)}")

    final = results_root() / paper / cfg.profile
    tmp = final.parent / f".{cfg.profile}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    cache = CheckpointCache()
    rows: list[dict] = []
    timings: list[dict] = []
    augmented = "mia_svc_augmented" in s.metrics.metrics
    pool_hash = _hash_array(train_pool)
    try:
        for seed in seed_list:
            for model_name, mspec in s.models.items():
                base = dict(paper=paper, profile=cfg.profile, dataset=s.dataset, model=model_name, seed=seed)

                def new_model() -> torch.nn.Module:
                    return build_model(model_name, num_classes=data.spec.num_classes,
                                       in_channels=data.spec.channels, width=mspec.width)

                # --- original -------------------------------------------------------------------
                seed_everything(seed)
                original = new_model()
                key = config_hash("original", s.dataset, pool_hash, model_name, mspec, s.train, seed)
                meta = cache.load(key, original)
                if meta is None:
                    _say(f"   [{cfg.profile}] {model_name} seed {seed}: training the original "
                         f"({s.train.epochs} epochs on {len(train_pool)} images)")
                    original.to(dev)
                    loader = Loader(data.train_x, data.train_y, train_pool, data.spec,
                                    batch_size=s.train.batch_size, shuffle=True, augment=s.train.augment,
                                    seed=seed, device=dev, name="train")
                    with Timer(dev) as t:
                        fit(original, loader, s.train, desc=f"original {model_name}", progress=progress)
                    meta = {"seconds": t.seconds, "device": str(dev), "kind": "original"}
                    cache.save(key, original, meta)
                else:
                    _say(f"   [{cfg.profile}] {model_name} seed {seed}: original loaded from cache ({key})")
                original.to(dev).eval()
                timings.append({**base, "scenario": "all", "method": "original", "seconds": meta["seconds"],
                                "cached": True, "device": meta["device"]})
                ev_orig = gather(original, data, train_pool, test_pool, dev, s.eval_batch_size, augmented, seed)

                for tag, split in splits.items():
                    mcfg = copy.copy(s.metrics)
                    mcfg.seed = seed
                    res = compute_metrics(ev_orig, split, mcfg)
                    rows += [{**base, "scenario": tag, "method": "original", "metric": k, "value": v}
                             for k, v in res.items()]
                    _say(_line(cfg.profile, model_name, tag, "original", None, res))
                    for name in method_names:
                        spec = METHODS.get(name)
                        mc = method_cfgs[name]
                        retain = Loader(data.train_x, data.train_y, split.retain_train, data.spec,
                                        batch_size=s.train.batch_size, seed=seed, device=dev, name="retain")
                        forget = Loader(data.train_x, data.train_y, split.forget_train, data.spec,
                                        batch_size=s.train.batch_size, seed=seed + 1, device=dev, name="forget")
                        seed_everything(seed)
                        model = copy.deepcopy(original)
                        cached = False
                        if spec.trains_from_scratch:
                            rkey = config_hash(name, s.dataset, _hash_array(split.retain_train), model_name, mspec,
                                               mc, seed)
                            rmeta = cache.load(rkey, model)
                            if rmeta is not None:
                                seconds, cached, tdev = rmeta["seconds"], True, rmeta["device"]
                                model.to(dev)
                        if not cached:
                            model.train()
                            with Timer(dev) as t:
                                model = spec(model, retain=retain, forget=forget, cfg=mc, device=dev)
                            seconds, tdev = t.seconds, str(dev)
                            if spec.trains_from_scratch:
                                cache.save(rkey, model, {"seconds": seconds, "device": tdev, "kind": name})
                        model.eval()
                        _check_finite(model, name)
                        ev = gather(model, data, train_pool, test_pool, dev, s.eval_batch_size, augmented, seed)
                        res = compute_metrics(ev, split, mcfg)
                        res["unlearn_time_s"] = seconds
                        rows += [{**base, "scenario": tag, "method": name, "metric": k, "value": v}
                                 for k, v in res.items()]
                        timings.append({**base, "scenario": tag, "method": name, "seconds": seconds,
                                        "cached": cached, "device": tdev})
                        _say(_line(cfg.profile, model_name, tag, name, seconds, res, cached))
        metrics = pd.DataFrame(rows, columns=METRIC_COLUMNS)
        metrics = _add_speedups(metrics)
        _write(tmp, cfg, seed_list, dev, metrics, pd.DataFrame(timings), splits, train_pool, test_pool, data,
               method_cfgs)
        if final.exists():
            old = final.parent / f".{cfg.profile}.old-{os.getpid()}"
            final.replace(old)
            tmp.replace(final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.replace(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _say(f"== done in {time.perf_counter() - t_start:.0f} s; results in {final}")
    return Run.load(final)


def _check_finite(model: torch.nn.Module, name: str) -> None:
    for k, v in model.state_dict().items():
        if v.is_floating_point() and not torch.isfinite(v).all():
            raise FloatingPointError(f"method {name!r} produced non-finite values in {k}")


def _line(profile, model, tag, method, seconds, res, cached=False) -> str:
    t = "" if seconds is None else f"{seconds:8.2f} s{' (cached)' if cached else ''}"
    parts = [f"forget {res['test_forget_acc']:5.1f}%" if "test_forget_acc" in res else "",
             f"retain {res['test_retain_acc']:5.1f}%" if "test_retain_acc" in res else "",
             f"MIA {res['mia_svc']:5.1f}" if "mia_svc" in res else ""]
    return f"   [{profile}] {model:9s} {tag:8s} {method:16s} {t:18s} " + "  ".join(p for p in parts if p)


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
           splits: dict[str, Split], train_pool, test_pool, data: ImageData, method_cfgs: dict) -> None:
    resolved = to_dict(cfg)
    resolved["settings"]["seeds"] = seeds
    resolved["resolved_methods"] = {k: to_dict(v) for k, v in method_cfgs.items()}
    (tmp / "config.resolved.yaml").write_text(yaml.safe_dump(resolved, sort_keys=False, width=110))
    env = _env(dev, seeds, cfg.profile)
    env["data"] = data.summary()
    env["data"].update({"train pool": int(len(train_pool)), "test pool": int(len(test_pool))})
    (tmp / "env.json").write_text(json.dumps(env, indent=1))
    save_splits(tmp / "splits.npz", splits, {"train": train_pool, "test": test_pool})
    metrics.to_csv(tmp / "metrics.csv", index=False)
    timings.to_csv(tmp / "timings.csv", index=False)
