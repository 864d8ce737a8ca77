"""The device script (issue 22 part 8): one self-timed run of at most ``--budget`` seconds (default 500) on a GPU.

    scripts/gpu_check.sh OUT_DIR                          # on a machine with CUDA: <= 9 minutes, CSVs in OUT_DIR
    python benchmarks/device_check.py --out DIR --tiny --device cpu   # tiny, on the CPU: checks the script (make test)

Only Fashion-MNIST can be carried to a GPU machine (no internet there): it is padded to 32x32 and tiled to three
channels, the papers' input shape (3x32x32). Parts, in order of value; each stops at the budget, rows it could not
reach say "skipped (time budget)", and every CSV is written after each row (a killed run keeps what it measured):

a. ``gpu_smoke.csv`` (+ ``gpu_smoke_cells.csv``): the benchmark's smoke profile through ``run_paper`` on the device
   (that path had never run on a GPU): status, seconds, cells; the run's cells.csv.
b. ``gpu_throughput.csv``: training throughput at 3x32x32 of each registered model at its paper width, four
   variants, each warmed up on its own before timing: ``harness`` (``fit`` as the harness runs it, cudnn.benchmark
   off, float32), ``+cudnn.benchmark``, ``+bf16+channels_last``, and ``ceiling`` (a plain loop on batches built on
   the device beforehand, bf16 + channels_last, no host synchronisation inside the timed steps).
c. ``gpu_sharing.csv``: 1, 2 and 4 processes training ResNet-18 (``harness`` variant) on the GPU at once for
   ``--share-seconds``: the aggregate images/s, what ``cells_per_gpu`` can gain.
d. ``gpu_units.csv``: unit costs at paper width (ResNet-18, width 64): a Deep Unlearning call (its paper options),
   Fisher's per-sample gradients (samples/s), SSD, one stop check of lightweight, evaluation (images/s of
   ``predict_logits`` at batch 1024).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common  # before unlearnlib: puts this checkout first on sys.path
import numpy as np
import torch
import torch.nn.functional as F

from unlearnlib.config import load_paper, method_config
from unlearnlib.data import Loader, load_dataset
from unlearnlib.harness import seed_everything
from unlearnlib.methods import method_spec
from unlearnlib.models import DEFAULT_WIDTH, MODELS, build_model
from unlearnlib.train import TrainConfig, fit, predict_logits

SKIPPED = "skipped (time budget)"


class Budget:
    def __init__(self, seconds: float) -> None:
        self.t0, self.seconds = time.perf_counter(), seconds

    def left(self) -> float:
        return self.seconds - (time.perf_counter() - self.t0)


class Csv:
    """Rows of one CSV, written after every row."""

    def __init__(self, path: Path, env: dict) -> None:
        self.path, self.env, self.rows = path, env, []

    def add(self, **row) -> None:
        self.rows.append({**row, **self.env})
        _common.write_csv(self.path, self.rows)
        shown = {k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in row.items()}
        _common.say(f"   {self.path.stem}: {shown}")


def fmnist32x3(device: torch.device, n: int):
    """(images uint8 n x 3 x 32 x 32 on ``device``, labels, the spec): Fashion-MNIST padded and tiled."""
    data = load_dataset("fashion_mnist", download=False)
    x = F.pad(data.train_x[:n], (2, 2, 2, 2)).repeat(1, 3, 1, 1).contiguous()
    m, s = data.spec.mean[0], data.spec.std[0]
    spec = dataclasses.replace(data.spec, channels=3, size=32, mean=(m, m, m), std=(s, s, s))
    return x.to(device), data.train_y[:n].clone(), spec


# ------------------------------------------------------------------------------------------------------------
# a. the smoke profile through run_paper


def part_smoke(out: Path, env: dict, dev: torch.device, budget: Budget, paper: str, methods: list[str] | None):
    csv = Csv(out / "gpu_smoke.csv", env)
    if budget.left() < 30:
        csv.add(part="a", paper=paper, status=SKIPPED)
        return
    import unlearnlib as ul

    scratch = Path(tempfile.mkdtemp(prefix="device_check_"))
    saved = {k: os.environ.get(k) for k in ("UNLEARNLIB_CACHE", "UNLEARNLIB_RESULTS")}
    os.environ.update(UNLEARNLIB_CACHE=str(scratch / "cache"), UNLEARNLIB_RESULTS=str(scratch / "results"))
    t0 = time.perf_counter()
    try:
        run = ul.run_paper(paper, "smoke", device=str(dev), progress=False, methods=methods)
        cells = run.path / "cells.csv"
        if cells.exists():
            (out / "gpu_smoke_cells.csv").write_text(cells.read_text())
        n = sum(1 for _ in cells.open()) - 1 if cells.exists() else -1
        csv.add(part="a", paper=paper, status="ok", seconds=time.perf_counter() - t0, cells=n,
                gpus=" ".join(sorted({str(g) for g in run.timings.get("gpu", [])})))
    except Exception as e:  # noqa: BLE001 - the failure is the finding: recorded, the other parts still run
        first = next(iter(str(e).splitlines()), "")
        csv.add(part="a", paper=paper, status=f"failed: {type(e).__name__}: {first}"[:300],
                seconds=time.perf_counter() - t0)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# ------------------------------------------------------------------------------------------------------------
# b. training throughput


def _model(name: str, width: int, dev: torch.device) -> torch.nn.Module:
    seed_everything(0)
    # the ViT at its paper size (ViT-B: 12 blocks, 12 heads) with 4-px patches; one block, one head when tiny
    extra = {"patch": 4, **({"depth": 1, "heads": 1} if width < 64 else {})} if name == "vit" else {}
    return build_model(name, num_classes=10, in_channels=3, width=width, image_size=32, **extra).to(dev)


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def harness_rate(model, x, y, spec, dev, batch: int, steps: int, warmup: int, **opts) -> float:
    """Images/s of ``fit`` as the harness runs it (the Loader on the device images), after a warm-up of its own."""
    idx = np.arange(len(y))

    def run(n: int) -> float:
        cfg = TrainConfig(epochs=1, max_steps=n, batch_size=batch, augment=True, **opts)
        loader = Loader(x, y, idx, spec, batch_size=batch, shuffle=True, augment=True, seed=0, device=dev)
        _sync(dev)
        t0 = time.perf_counter()
        fit(model, loader, cfg, progress=False)
        _sync(dev)
        return time.perf_counter() - t0

    run(warmup)
    return batch * steps / run(steps)


def ceiling_rate(model, x, y, dev, batch: int, steps: int, warmup: int) -> float:
    """A plain bf16 + channels_last loop on batches built on the device beforehand: no host sync in the steps."""
    model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    xb = ((x[:batch].float() / 255 - 0.3) / 0.35).to(memory_format=torch.channels_last)
    yb = y[:batch].to(dev)
    autocast = torch.autocast(dev.type, dtype=torch.bfloat16)

    def step():
        opt.zero_grad(set_to_none=True)
        with autocast:
            loss = F.cross_entropy(model(xb), yb)
        loss.backward()
        opt.step()

    for _ in range(warmup):
        step()
    _sync(dev)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(dev)
    return batch * steps / (time.perf_counter() - t0)


def part_throughput(out: Path, env: dict, dev: torch.device, budget: Budget, data, args) -> None:
    csv = Csv(out / "gpu_throughput.csv", env)
    x, y, spec = data
    for name in MODELS.names():
        width = args.width or DEFAULT_WIDTH[name]
        if name == "resnet18_imagenet_stem":
            continue  # the same blocks as resnet18 at 32x32 (an ImageNet stem shrinks the input 4x)
        variants = [("harness", {}, False), ("+cudnn.benchmark", {}, True),
                    ("+bf16+channels_last", {"bf16": True, "channels_last": True}, True), ("ceiling", None, True)]
        for label, opts, bench in variants:
            if budget.left() < args.reserve:
                csv.add(model=name, width=width, variant=label, status=SKIPPED)
                continue
            if dev.type == "cuda":
                torch.backends.cudnn.benchmark = bench
            model = _model(name, width, dev)
            try:
                if opts is None:
                    ips = ceiling_rate(model, x, y, dev, args.batch, args.steps, args.warmup)
                else:
                    ips = harness_rate(model, x, y, spec, dev, args.batch, args.steps, args.warmup, **opts)
                csv.add(model=name, width=width, variant=label, batch_size=args.batch, steps=args.steps,
                        images_per_s=ips, status="ok")
            except Exception as e:  # noqa: BLE001 - recorded (out of memory on a big model, a missing kernel)
                csv.add(model=name, width=width, variant=label, status=f"failed: {type(e).__name__}: {e}"[:300])
            del model
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = False


# ------------------------------------------------------------------------------------------------------------
# c. processes sharing the device


def share_worker(seconds: float, device: str, batch: int, width: int, n: int) -> None:
    """One of the processes of part c: ResNet-18 through ``fit`` for ``seconds``; prints images/s as JSON."""
    dev = torch.device(device)
    x, y, spec = fmnist32x3(dev, n)
    model = _model("resnet18", width, dev)
    harness_rate(model, x, y, spec, dev, batch, 2, 2)  # warm-up
    steps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        harness_rate(model, x, y, spec, dev, batch, 5, 0)
        steps += 5
    print(json.dumps({"images_per_s": batch * steps / (time.perf_counter() - t0)}), flush=True)


def part_sharing(out: Path, env: dict, dev: torch.device, budget: Budget, args) -> None:
    csv = Csv(out / "gpu_sharing.csv", env)
    width = args.width or DEFAULT_WIDTH["resnet18"]
    for procs in args.processes:
        if budget.left() < args.share_seconds + 60:
            csv.add(processes=procs, status=SKIPPED)
            continue
        cmd = [sys.executable, str(Path(__file__).resolve()), "--share-worker", str(args.share_seconds), "--device",
               str(dev), "--batch", str(args.batch), "--width", str(width), "--images", str(args.images),
               "--threads", "1"]
        children = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                    for _ in range(procs)]
        rates, errors = [], []
        for c in children:
            try:
                stdout, stderr = c.communicate(timeout=args.share_seconds + 180)
            except subprocess.TimeoutExpired:
                c.kill()
                stdout, stderr = c.communicate()
            try:
                rates.append(json.loads(stdout.strip().splitlines()[-1])["images_per_s"])
            except (IndexError, ValueError, KeyError):
                errors.append((stderr or "no output").strip().splitlines()[-1][:200])
        csv.add(processes=procs, model="resnet18", width=width, seconds=args.share_seconds,
                images_per_s=float(sum(rates)), per_process=float(np.mean(rates)) if rates else float("nan"),
                status="ok" if not errors else f"failed: {errors[0]}")


# ------------------------------------------------------------------------------------------------------------
# d. unit costs at paper width


def _timed(dev, fn, *a, **k) -> float:
    _sync(dev)
    t0 = time.perf_counter()
    fn(*a, **k)
    _sync(dev)
    return time.perf_counter() - t0


def part_units(out: Path, env: dict, dev: torch.device, budget: Budget, data, args) -> None:
    from unlearnlib.methods.fisher import fisher_diagonal
    from unlearnlib.methods.lightweight import GapMonitor

    csv = Csv(out / "gpu_units.csv", env)
    x, y, spec = data
    width = args.width or DEFAULT_WIDTH["resnet18"]
    yn = y.numpy()
    forget, retain = np.flatnonzero(yn == 0), np.flatnonzero(yn != 0)

    def loader(idx, bs=256, seed=0):
        return Loader(x, y, idx, spec, batch_size=bs, seed=seed, device=dev)

    du = load_paper("deep_unlearning", "paper").settings
    units = [
        ("deep_unlearning call", "call", lambda m: method_spec("deep_unlearning")(
            m, retain=loader(retain), forget=loader(forget, seed=1),
            cfg=method_config("deep_unlearning", du.methods.get("deep_unlearning", {}), du.train), device=dev), 1),
        ("fisher per-sample gradients", "samples", lambda m: fisher_diagonal(
            m, [loader(retain[:args.fisher_samples], bs=32).batch(np.arange(i, min(i + 32, args.fisher_samples)))
                for i in range(0, args.fisher_samples, 32)], 10), args.fisher_samples),
        ("ssd call", "call", lambda m: method_spec("ssd")(m, retain=loader(retain), forget=loader(forget, seed=1),
                                                          cfg=method_spec("ssd").Config(), device=dev), 1),
        ("lightweight stop check", "check", lambda m: GapMonitor(
            loader(forget), loader(retain[:len(forget)]), samples=1000, seed=0)(m), 1),
        ("evaluation (predict_logits, batch 1024)", "images", lambda m: predict_logits(
            m, loader(np.arange(len(y)), bs=1024)), len(y)),
    ]
    for what, unit, fn, count in units:
        if budget.left() < args.reserve / 2:
            csv.add(what=what, status=SKIPPED)
            continue
        model = _model("resnet18", width, dev).eval()
        try:
            sec = _timed(dev, fn, copy.deepcopy(model))
            csv.add(what=what, model="resnet18", width=width, unit=unit, count=count, seconds=sec,
                    per_second=count / sec, status="ok")
        except Exception as e:  # noqa: BLE001 - recorded, the next unit still runs
            csv.add(what=what, status=f"failed: {type(e).__name__}: {e}"[:300])


# ------------------------------------------------------------------------------------------------------------


def main(argv=None) -> int:
    p = _common.parser(__doc__.splitlines()[0])
    p.add_argument("--budget", type=float, default=500.0, help="seconds for the whole run (it stops itself)")
    p.add_argument("--reserve", type=float, default=60.0, help="seconds kept for the later parts")
    p.add_argument("--device", default="auto")
    p.add_argument("--tiny", action="store_true", help="tiny widths and steps: checks the script on the CPU")
    p.add_argument("--parts", default="a,b,c,d")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--width", type=int, default=0, help="0: each model's paper width")
    p.add_argument("--images", type=int, default=10000, help="Fashion-MNIST images used (3x32x32)")
    p.add_argument("--processes", default="1,2,4")
    p.add_argument("--share-seconds", type=float, default=15.0)
    p.add_argument("--fisher-samples", type=int, default=256)
    p.add_argument("--smoke-paper", default="benchmark")
    p.add_argument("--smoke-methods", default="", help="comma-separated (default: every method of the profile)")
    p.add_argument("--share-worker", type=float, default=0.0, help=argparse_hidden())
    args = p.parse_args(argv)
    _common.set_threads(args.threads)
    if args.share_worker:
        share_worker(args.share_worker, args.device, args.batch, args.width, args.images)
        return 0
    if args.tiny or args.smoke:
        args.tiny = True
        args.batch, args.steps, args.warmup, args.width, args.images = 8, 2, 1, 4, 400
        args.share_seconds, args.fisher_samples, args.reserve = 2.0, 8, 5.0
        args.processes = "1,2"
        if not args.smoke_methods and args.smoke_paper == "benchmark":
            args.smoke_paper, args.smoke_methods = "lightweight_unlearning", "retrain"  # one dataset, 5 cells
        args.smoke = False
    if args.out is None:
        raise SystemExit("--out DIR is required")
    args.processes = [int(n) for n in str(args.processes).split(",") if n]
    out = _common.out_dir(args)
    dev = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                       ("cpu" if args.device == "auto" else args.device))
    budget = Budget(args.budget)
    env = _common.machine()
    parts = set(args.parts.split(","))
    _common.say(f"== device check on {dev} ({env['device_name']}), budget {args.budget:.0f} s, parts {sorted(parts)}")
    if "a" in parts:
        part_smoke(out, env, dev, budget, args.smoke_paper,
                   [m for m in args.smoke_methods.split(",") if m] or None)
    data = fmnist32x3(dev, args.images) if parts & {"b", "d"} else None
    if "b" in parts:
        part_throughput(out, env, dev, budget, data, args)
    if "c" in parts:
        part_sharing(out, env, dev, budget, args)
    if "d" in parts:
        part_units(out, env, dev, budget, data, args)
    _common.say(f"== done in {args.budget - budget.left():.0f} s of {args.budget:.0f}; CSVs in {out}")
    return 0


def argparse_hidden() -> str:
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    raise SystemExit(main())
