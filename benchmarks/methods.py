"""Every registered method on one cpu-profile original: median time of k runs, speed-up vs retrain, share in fit.

    python benchmarks/methods.py                               # Deep Unlearning's cpu original (ResNet-18 w8, seed 42)
    python benchmarks/methods.py --methods retrain,deep_unlearning,ssd --repeats 5
    python benchmarks/methods.py --smoke --out /tmp/b          # the smoke profile, three methods: checks the script

The original is the cell of ``--paper``'s plan (``--profile``, ``--model``, ``--seed``, the first forget scenario),
trained once and kept in the cell store (``$UNLEARNLIB_CACHE``). Each method runs with its options from the first
paper whose profile configures it (this paper first), else its defaults with ``epochs`` set to ``--default-epochs``
(the ``config_from`` column says which). Timing as the harness does it: each call from a fresh copy of the original
and fresh loaders under the same seed, a call under ``--repeat-below`` seconds repeated to ``--repeats`` runs, the
median reported with min and max; one untimed warm-up pass first. Methods that need held-out data get the plan's
unseen images, or (a paper without them) ``--unseen`` test images outside the evaluated test pool.

The share in ``fit``: the time spent inside :func:`unlearnlib.train.fit` (its stop checks included) over the call,
measured by wrapping ``fit`` in every module that imported it.

Writes ``methods.csv``.
"""

from __future__ import annotations

import copy
import statistics
import sys
import time

import _common  # before unlearnlib: puts this checkout first on sys.path
import numpy as np

from unlearnlib import train as _train
from unlearnlib.config import available_papers, load_paper, method_config
from unlearnlib.data import Loader
from unlearnlib.harness import Store, build_plan, seed_everything
from unlearnlib.harness.cells import CellRunner, warm_up
from unlearnlib.methods import METHODS, method_spec

SMOKE_METHODS = "retrain,deep_unlearning,ssd"


class FitClock:
    """Wraps :func:`unlearnlib.train.fit` wherever it was imported; ``seconds`` accumulates the time inside it."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.calls = 0
        self._patched: list = []

    def __enter__(self) -> "FitClock":
        original = _train.fit

        def fit(*args, **kwargs):
            _common.sync()
            t0 = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                _common.sync()
                self.seconds += time.perf_counter() - t0
                self.calls += 1

        for mod in list(sys.modules.values()):
            if getattr(mod, "fit", None) is original and (getattr(mod, "__name__", "") or "").startswith("unlearnlib"):
                self._patched.append(mod)
                mod.fit = fit
        self._original = original
        return self

    def __exit__(self, *exc) -> None:
        for mod in self._patched:
            mod.fit = self._original


def method_configs(paper: str, profile: str, default_epochs: int) -> dict[str, tuple[object, str]]:
    """{registered method: (its Config, where it came from)}: the first paper (``paper`` first) whose ``profile``
    configures the method under its own name, else the defaults with ``epochs`` = ``default_epochs``."""
    papers = [paper] + [p for p in available_papers() if p != paper]
    out: dict[str, tuple[object, str]] = {}
    for pid in papers:
        try:
            cfg = load_paper(pid, profile)
        except Exception:  # noqa: BLE001 - a paper without this profile
            continue
        s = cfg.settings
        for name, opts in s.methods.items():
            if name in METHODS and name not in out:  # variants (name@label) are not the method itself
                out[name] = (method_config(name, opts, s.train, where=f"{pid}.{name}"), f"{pid} {profile}")
    for name in METHODS:
        if name not in out:
            spec = METHODS.get(name)
            c = spec.Config()
            note = "defaults"
            if hasattr(c, "epochs"):
                c.epochs = default_epochs
                note = f"defaults, epochs {default_epochs}"
            out[name] = (c, note)
    return out


def main(argv=None) -> int:
    p = _common.parser(__doc__.splitlines()[0])
    p.add_argument("--paper", default="deep_unlearning")
    p.add_argument("--profile", default="cpu")
    p.add_argument("--model", default="resnet18")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--methods", default="", help="comma-separated (default: every registered method)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--repeat-below", type=float, default=5.0)
    p.add_argument("--default-epochs", type=int, default=1)
    p.add_argument("--unseen", type=int, default=1000)
    args = p.parse_args(argv)
    if args.smoke:
        args.profile, args.methods, args.repeats = "smoke", args.methods or SMOKE_METHODS, 2
    out = _common.out_dir(args)
    threads = _common.set_threads(args.threads)
    plan = build_plan(args.paper, args.profile, [args.seed], "cpu")
    store = Store(say=lambda m: None)
    runner = CellRunner(plan, store, progress=False, threads=threads, say=_common.say)
    orig_cell = next(c for c in plan.cells if c.kind == "original" and c.model == args.model)
    t0 = time.perf_counter()
    runner.run(orig_cell)
    _common.say(f"original ({args.paper} {args.profile} {args.model} seed {args.seed}) ready in "
                f"{time.perf_counter() - t0:.1f} s")
    original = runner.original_model(orig_cell.key)
    part = plan.part(orig_cell.dataset)
    split = next(sp for sp in part.splits.values() if sp.kind == "class")
    x, y = part.training_data(split)
    unseen_idx = part.unseen
    unseen_note = "the plan's unseen images"
    if not len(unseen_idx):
        free = np.setdiff1d(np.arange(len(part.data.test_y)), part.test_pool)
        unseen_idx = np.random.default_rng(0).choice(free, size=min(args.unseen, len(free)), replace=False)
        unseen_note = f"{len(unseen_idx)} test images outside the evaluated test pool"
    unseen_x, unseen_y = (x, y) if len(part.unseen) else (part.data.test_x, part.data.test_y)
    bs = part.settings.train.batch_size

    def loaders(seed: int):
        mk = lambda xx, yy, idx, name, s: Loader(xx, yy, idx, part.data.spec, batch_size=bs, seed=s,  # noqa: E731
                                                  device=plan.device, name=name)
        return (mk(x, y, split.retain_train, "retain", seed), mk(x, y, split.forget_train, "forget", seed + 1),
                mk(unseen_x, unseen_y, unseen_idx, "unseen", seed + 2))

    configs = method_configs(args.paper, args.profile, args.default_epochs)
    names = [m.strip() for m in args.methods.split(",") if m.strip()] or sorted(
        METHODS, key=lambda m: (not METHODS.get(m).trains_from_scratch, m))
    unknown = [m for m in names if m not in METHODS]
    if unknown:
        raise SystemExit(f"unknown methods {unknown}; registered: {', '.join(METHODS)}")
    warm_up(original, loaders(args.seed)[0], plan.device)
    rows = []
    for name in names:
        spec, (mc, note) = method_spec(name), configs[name]
        times, fits, calls = [], [], 0
        while len(times) < (1 if times and times[0] >= args.repeat_below else args.repeats):
            retain, forget, unseen = loaders(args.seed)
            seed_everything(args.seed)
            model = copy.deepcopy(original).train()
            with FitClock() as clock:
                _, t = _common.timed(spec, model, retain=retain, forget=forget, unseen=unseen, cfg=mc,
                                     device=plan.device)
            times.append(t)
            fits.append(clock.seconds)
            calls = clock.calls
        med = statistics.median(times)
        fit_med = statistics.median(fits)
        rows.append({"method": name, "config_from": note, "seconds": med, "seconds_min": min(times),
                     "seconds_max": max(times), "repeats": len(times), "fit_s": fit_med, "fit_calls": calls,
                     "fit_share": fit_med / med if med > 0 else float("nan"),
                     "trains_from_scratch": spec.trains_from_scratch, "needs_unseen": spec.needs_unseen,
                     "unseen": unseen_note if spec.needs_unseen else ""})
        _common.say(f"   {name:16s} {med:8.3f} s (min {min(times):.3f}, max {max(times):.3f}, {len(times)} run(s)); "
                    f"in fit {100 * rows[-1]['fit_share']:5.1f} %  [{note}]")
    retrain = next((r["seconds"] for r in rows if r["method"] == "retrain"), float("nan"))
    env = _common.machine()
    size = {"paper": args.paper, "profile": args.profile, "dataset": part.name, "model": args.model,
            "width": part.settings.models[args.model].width, "seed": args.seed, "scenario": split.tag,
            "retain_n": split.retain_train.size, "forget_n": split.forget_train.size}
    for r in rows:
        r["speedup_vs_retrain"] = retrain / r["seconds"] if r["seconds"] > 0 else float("nan")
    path = _common.write_csv(out / "methods.csv", [{**size, **r, **env} for r in rows])
    _common.say("method            seconds   speed-up vs retrain   share in fit")
    for r in rows:
        _common.say(f"{r['method']:16s} {r['seconds']:8.3f}   {r['speedup_vs_retrain']:10.1f}x   "
                    f"{100 * r['fit_share']:10.1f} %")
    _common.say(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
