"""The GPU path in a few minutes: each paper's methods at full width on Fashion-MNIST with a short recipe.

    scripts/gpu_check.sh OUT_DIR             # on a machine with CUDA (<= 5 min on one GPU)
    python benchmarks/gpu_check.py --out OUT_DIR --tiny --papers deep_unlearning   # CPU, tiny: checks the script

CIFAR cannot be downloaded on the GPU machines, so the papers' models (the ``paper`` profile's, at full width) run
on Fashion-MNIST (1 x 28 x 28): ``--train`` class-stratified training images, forget class 0, ``--unseen`` held-out
images for the methods that need them. Per distinct model: the original trained for one epoch (at most
``--steps`` steps) with the paper's recipe, then the same steps again with ``channels_last``, with bf16 autocast and
with both, from the same initial weights (images/s of each: what the options save). Per paper: each configured
method (the ``paper`` profile's options) on that original with a short recipe: ``epochs`` 1 and ``max_steps``
``--method-steps`` wherever the method's options have them; Deep Unlearning as configured and with each
decomposition. ``torch.backends.cudnn.benchmark`` is on (``unlearnlib.train.configure_device``). Anything left when
``--budget`` seconds have passed is recorded as skipped.

Writes ``OUT_DIR/gpu_check.csv`` (paper, model, width, what, options, seconds, steps, images/s, device).
"""

from __future__ import annotations

import copy
import dataclasses
import time

import _common  # before unlearnlib: puts this checkout first on sys.path
import numpy as np
import torch

from unlearnlib.config import base_method, load_paper, method_config
from unlearnlib.data import Loader, load_dataset, stratified_subset
from unlearnlib.harness import seed_everything
from unlearnlib.methods import method_spec
from unlearnlib.models import DEFAULT_WIDTH, build_model
from unlearnlib.train import TrainConfig, configure_device, fit

PAPERS = ("deep_unlearning", "unsir", "layer_attack_unlearning", "lightweight_unlearning", "versatile_unlearning")


class Clock:
    """Counts the images of every batch a loader yields (for images/s)."""

    def __init__(self) -> None:
        self.images = 0


def counted(loader: Loader, clock: Clock):
    def batches():
        for x, y in loader:
            clock.images += len(x)
            yield x, y

    return batches


def short(cfg, method_steps: int):
    """The method's options with the short recipe: epochs 1 and max_steps ``method_steps`` where it has them."""
    changes = {}
    names = {f.name for f in dataclasses.fields(cfg)}
    if "epochs" in names:
        changes["epochs"] = 1
    if "max_steps" in names:
        changes["max_steps"] = method_steps if cfg.max_steps is None else min(cfg.max_steps, method_steps)
    return dataclasses.replace(cfg, **changes)


def main(argv=None) -> int:
    p = _common.parser(__doc__.splitlines()[0])
    p.add_argument("--papers", default=",".join(PAPERS))
    p.add_argument("--train", type=int, default=10000, help="training images (class-stratified)")
    p.add_argument("--unseen", type=int, default=2000)
    p.add_argument("--steps", type=int, default=150, help="steps of each timed training of an original")
    p.add_argument("--method-steps", type=int, default=50)
    p.add_argument("--budget", type=float, default=270.0, help="seconds; what is left after is skipped")
    p.add_argument("--tiny", action="store_true", help="width 4, 400 images, two steps: runs on the CPU")
    p.add_argument("--device", default="auto")
    args = p.parse_args(argv)
    if args.smoke:
        args.tiny = True
    width = None
    if args.tiny:
        args.train, args.unseen, args.steps, args.method_steps, width = 400, 100, 2, 2, 4
    out = _common.out_dir(args)
    _common.set_threads(args.threads)
    dev = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                       ("cpu" if args.device == "auto" else args.device))
    configure_device(dev)
    t_start = time.perf_counter()
    data = load_dataset("fashion_mnist", download=False)
    data.train_x, data.test_x = data.train_x.to(dev), data.test_x.to(dev)
    pool = stratified_subset(data.train_y, args.train + args.unseen, seed=0)
    unseen = stratified_subset(data.train_y, args.unseen, seed=1, among=pool)
    pool = np.setdiff1d(pool, unseen)
    y = data.train_y[torch.as_tensor(pool)].numpy()
    forget_idx, retain_idx = pool[y == 0], pool[y != 0]
    env = _common.machine()
    rows: list[dict] = []
    originals: dict[tuple, torch.nn.Module] = {}

    def left() -> bool:
        return time.perf_counter() - t_start < args.budget

    columns = ["paper", "model", "width", "what", "options", "seconds", "steps", "images_per_s", "status"]

    def record(**kw) -> None:
        rows.append({**kw, **env})
        _common.write_csv(out / "gpu_check.csv", rows, columns)  # after every row: a killed run keeps its rows
        s, ips = kw.get("seconds", float("nan")), kw.get("images_per_s", float("nan"))
        _common.say(f"   {kw['paper']:24s} {kw['model']:12s} {kw['what']:24s} {kw.get('options', ''):22s} "
                    f"{s:8.2f} s  {ips:10.0f} img/s" if kw.get("status", "ok") == "ok" else
                    f"   {kw['paper']:24s} {kw['model']:12s} {kw['what']:24s} {kw['status']}")

    def loader(idx, cfg: TrainConfig, seed: int, shuffle: bool = True, name: str = "") -> Loader:
        return Loader(data.train_x, data.train_y, idx, data.spec, batch_size=cfg.batch_size, shuffle=shuffle,
                      augment=cfg.augment, seed=seed, device=dev, name=name)

    for pid in [s.strip() for s in args.papers.split(",") if s.strip()]:
        s = load_paper(pid, "paper").settings
        model_name = next(iter(s.models))
        for mname, spec_w in s.models.items():
            w = width or spec_w.width or DEFAULT_WIDTH[mname]
            key = (mname, w, s.train.batch_size, s.train.optimizer, s.train.lr)
            if key in originals:
                continue
            if not left():
                record(paper=pid, model=mname, width=w, what="train original", status="skipped (time budget)")
                continue
            seed_everything(0)
            # the ViT's own options; with --tiny's width its heads are the default (width // 64, at least 1)
            init = build_model(mname, num_classes=10, in_channels=1, width=w, image_size=data.spec.size,
                               depth=spec_w.depth, heads=None if width else spec_w.heads, patch=spec_w.patch).to(dev)
            warm = dataclasses.replace(s.train, epochs=1, max_steps=min(10, args.steps))  # kernels, cuDNN tuning
            fit(copy.deepcopy(init), loader(pool, warm, 0), warm, progress=False)
            model = None
            for opts in ({}, {"channels_last": True}, {"bf16": True}, {"channels_last": True, "bf16": True}):
                cfg = dataclasses.replace(s.train, epochs=1, max_steps=args.steps, **opts)
                m = copy.deepcopy(init)
                clock = Clock()
                _, t = _common.timed(fit, m, counted(loader(pool, cfg, 0), clock), cfg, progress=False)
                label = "+".join(k for k in opts) or "float32"
                record(paper=pid, model=mname, width=w, what="train original", options=label, seconds=t,
                       steps=args.steps, images_per_s=clock.images / t)
                model = model or m  # the float32 one is the original the methods start from
            originals[key] = model
        original = originals[next(k for k in originals if k[0] == model_name)]
        w = width or s.models[model_name].width or DEFAULT_WIDTH[model_name]
        for name, opts in s.methods.items():
            spec = method_spec(name)
            mc = short(method_config(name, opts, dataclasses.replace(s.train, epochs=1, max_steps=args.steps),
                                     where=f"{pid}.{name}"), args.method_steps)
            variants = [("", mc)]
            if base_method(name) == "deep_unlearning" and "@" not in name:
                variants += [(f"decomposition={d}", dataclasses.replace(mc, decomposition=d))
                             for d in ("svd", "gram_eigh", "gram_solve") if d != mc.decomposition]
            for label, cfg in variants:
                if not left():
                    record(paper=pid, model=model_name, width=w, what=name, status="skipped (time budget)")
                    continue
                bs = getattr(cfg, "batch_size", s.train.batch_size)
                mk = lambda idx, nm, sd, bs=bs: Loader(data.train_x, data.train_y, idx, data.spec,  # noqa: E731
                                                       batch_size=bs, seed=sd, device=dev, name=nm)
                seed_everything(0)
                m = copy.deepcopy(original).train()
                _, t = _common.timed(spec, m, retain=mk(retain_idx, "retain", 0), forget=mk(forget_idx, "forget", 1),
                                     unseen=mk(unseen, "unseen", 2), cfg=cfg, device=dev)
                record(paper=pid, model=model_name, width=w, what=name, options=label or "paper options, short",
                       seconds=t)
    path = _common.write_csv(out / "gpu_check.csv", rows, columns)
    _common.say(f"done in {time.perf_counter() - t_start:.0f} s on {dev}; wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
