"""A group cell: train the N members of one ensemble set (its originals, its oracle retrains or its floor
retrains) as one grouped network (:func:`unlearnlib.grouped_fit.fit_members`) and store each member's checkpoint
under its own cell's model key, so the member cells then load it as if they had trained it.

Each member is set up exactly as its own cell would set it up alone: an original is built right after
``seed_everything(seed)``; a retrain is built, then ``seed_everything(method seed)`` and re-initialised (what the
retrain method does to its copy of the original); each trains on its own loader seeded as its cell's (the
original's: the training pool with the training recipe; the retrain's: the retain set with retrain's recipe).
A member's checkpoint metadata says ``grouped`` (N) and ``group_seconds`` (the grouped fit); its ``seconds`` is
the N-th share of that.
"""

from __future__ import annotations

import contextlib
import time
from typing import Callable

import torch

from ..data import Loader
from ..grouped_fit import fit_members
from ..metrics import Timer
from ..models.common import reinitialise
from .plan import Cell, DataPart, RunPlan, seed_everything
from .store import Store


def _member(plan: RunPlan, part: DataPart, cell: Cell) -> tuple[torch.nn.Module, Loader]:
    """Member ``cell``'s initial model and its training loader, as its own cell would make them."""
    if cell.kind == "original":
        split = None if cell.data_key == "clean" else part.splits[cell.scenario]
        x, y = part.training_data(split)
        seed_everything(cell.seed)
        model = part.new_model(cell.model)
        cfg, idx, seed = part.settings.train, part.train_pool, cell.seed
    else:  # a retrain: a fresh model of the architecture, re-initialised under the method's seed
        split = part.splits[cell.scenario]
        x, y = part.training_data(split)
        model = part.new_model(cell.model)
        seed_everything(cell.run_seed)
        reinitialise(model)
        cfg, idx, seed = part.method_cfgs[cell.method], split.retain_train, cell.run_seed
    loader = Loader(x, y, idx, part.data.spec, batch_size=cfg.batch_size, shuffle=True, augment=cfg.augment,
                    seed=seed, device=plan.device, name="train" if cell.kind == "original" else "retain")
    return model.to(plan.device).train(), loader


def train_group(plan: RunPlan, store: Store, cell: Cell, threads: int, *, progress: bool = True,
                say: Callable[[str], None] = print) -> dict:
    """Train the members of group ``cell`` that are not stored yet as one network; store each; returns the record."""
    t0 = time.perf_counter()
    members = [plan.cell(k) for k in cell.members]
    part = plan.part(cell.part or cell.dataset)
    with contextlib.ExitStack() as locks:
        for key in sorted(m.model_key for m in members):  # sorted: two processes never wait on each other
            locks.enter_context(store.building(key))
        todo = [m for m in members if not store.has_model(m.model_key)]
        seconds = 0.0
        if todo:
            setup = [_member(plan, part, m) for m in todo]
            cfg = part.settings.train if todo[0].kind == "original" else part.method_cfgs[todo[0].method]
            say(f"   [{plan.profile}] {cell.dataset} {cell.model}: training {len(todo)} {cell.method} models as one "
                f"grouped network ({cfg.epochs} epochs on {setup[0][1].num_samples} images each, {threads} "
                f"thread(s))")
            with Timer(plan.device) as t:
                trained, _ = fit_members([s[0] for s in setup], [s[1] for s in setup], cfg,
                                         desc=f"grouped {len(todo)} x {cell.method} {cell.model}", progress=progress,
                                         speed=plan.settings.speed)
            seconds = t.seconds
            for m, model in zip(todo, trained, strict=True):
                meta = {"kind": m.method if m.kind != "original" else "original", "seconds": seconds / len(todo),
                        "repeats": 1, "device": str(plan.device), "threads": threads, "grouped": len(todo),
                        "group_seconds": seconds, "group": cell.key, "wall_s": (time.perf_counter() - t0) / len(todo),
                        "seconds_total": seconds / len(todo)}
                store.save_model(m.model_key, model, meta)
    record = {"kind": "group", "rows": [], "members": list(cell.members), "trained": [m.key for m in todo],
              "cell_seconds": {"wall": time.perf_counter() - t0, "call": seconds}}
    store.save_record(cell.key, record)
    return record
