"""N models trained as one grouped network against the same N trained one by one (issue 22 part 4).

    python benchmarks/grouped.py                    # N = 16, the benchmark's cpu ensemble: digits, ResNet-18 width 8
    python benchmarks/grouped.py --epochs 5         # a shorter recipe (the same per-step costs)
    python benchmarks/grouped.py --smoke --out /tmp/b   # N = 4, width 4, one epoch on part of digits: checks the script

The ensemble's setting by default: the ``benchmark`` paper's ``cpu`` profile's ensemble (dataset, model, width and
training recipe from its YAML; members seeded 0..N-1, each with its own data order). Modes, each timed once over
the whole training of the N members (data loading, forward, backward and optimiser steps, as the harness's cells
do): ``one_by_one`` (N calls of ``train.fit``), ``grouped`` (one ``grouped_fit.fit_members``) and ``grouped_cl``
(the same in channels_last memory format, the harness's default). Each mode's members are then evaluated on the
test set (mean test accuracy: the modes train the same models, up to float rounding). Goal: ``one_by_one`` /
``grouped`` >= 3 at N = 16. Writes ``grouped.csv``.
"""

from __future__ import annotations

import dataclasses

import _common  # before unlearnlib: puts this checkout first on sys.path
import numpy as np

MODES = ("one_by_one", "grouped", "grouped_cl")


def setting(args):
    """(data, indices, model name, width, recipe) of the run: the benchmark's cpu ensemble unless overridden."""
    from unlearnlib.config import load_paper
    from unlearnlib.data import load_dataset

    cfg = load_paper("benchmark", "cpu")
    s = cfg.ensemble_settings()
    model = cfg.settings.ensemble.model or next(iter(s.models))
    width = args.width or s.models[model].width
    train = s.train
    if args.epochs:
        train = dataclasses.replace(train, epochs=args.epochs)
    if args.smoke:
        train = dataclasses.replace(train, epochs=1)
    data = load_dataset(s.dataset, download=False)
    idx = np.arange(len(data.train_y))
    if args.smoke:
        idx = idx[:256]
    return s.dataset, data, idx, model, width, train


def members(data, idx, model: str, width: int, train, n: int):
    """N freshly initialised models (seeds 0..N-1) and their loaders (each seeded as its model)."""
    import torch

    from unlearnlib.data import Loader
    from unlearnlib.models import build_model

    models, loaders = [], []
    for seed in range(n):
        torch.manual_seed(seed)
        models.append(build_model(model, num_classes=data.spec.num_classes, in_channels=data.spec.channels,
                                  width=width))
        loaders.append(Loader(data.train_x, data.train_y, idx, data.spec, batch_size=train.batch_size, shuffle=True,
                              augment=train.augment, seed=seed))
    return models, loaders


def train_mode(mode: str, models, loaders, train):
    from unlearnlib.grouped_fit import fit_members
    from unlearnlib.train import fit

    if mode == "one_by_one":
        for m, ld in zip(models, loaders, strict=True):
            fit(m, ld, train, desc="one by one", progress=False)
        return models
    return fit_members(models, loaders, train, desc=mode, progress=False, channels_last=mode == "grouped_cl")[0]


def test_accuracy(models, data) -> float:
    from unlearnlib.data import Loader
    from unlearnlib.train import predict_logits

    test = Loader(data.test_x, data.test_y, np.arange(len(data.test_y)), data.spec, batch_size=512)
    accs = []
    for m in models:
        logits, labels = predict_logits(m, test)
        accs.append(float((logits.argmax(1) == labels).float().mean()))
    return float(np.mean(accs))


def main() -> None:
    p = _common.parser(__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=0, help="members (default 16; --smoke: 4)")
    p.add_argument("--width", type=int, default=0, help="model width (default: the ensemble's; --smoke: 4)")
    p.add_argument("--epochs", type=int, default=0, help="epochs (default: the ensemble's recipe; --smoke: 1)")
    p.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, of {', '.join(MODES)}")
    args = p.parse_args()
    modes = [m for m in args.modes.split(",") if m]
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        raise SystemExit(f"--modes: {bad or 'none'}; valid: {', '.join(MODES)}")
    n = args.n or (4 if args.smoke else 16)
    if args.smoke and not args.width:
        args.width = 4
    out = _common.out_dir(args)
    threads = _common.set_threads(args.threads)
    dataset, data, idx, model, width, train = setting(args)
    steps = len(members(data, idx, model, width, train, 1)[1][0]) * train.epochs
    _common.say(f"grouped vs one by one: {n} x {model} width {width} on {dataset} ({len(idx)} images, "
                f"{train.epochs} epochs, {steps} steps each), {threads} thread(s)")
    rows = []
    for mode in modes:  # warm-up, untimed: two steps of each mode (allocator, kernel choice, lazy initialisation)
        train_mode(mode, *members(data, idx, model, width, dataclasses.replace(train, max_steps=2), min(n, 2)),
                   dataclasses.replace(train, max_steps=2))
    for mode in modes:
        models, loaders = members(data, idx, model, width, train, n)
        trained, seconds = _common.timed(train_mode, mode, models, loaders, train)
        acc = test_accuracy(trained, data)
        rows.append({"mode": mode, "model": model, "width": width, "dataset": dataset, "n": n, "images": len(idx),
                     "epochs": train.epochs, "steps": steps, "seconds": seconds, "seconds_per_member": seconds / n,
                     "test_acc_mean": acc, **_common.machine()})
        _common.say(f"   {mode:11s} {seconds:9.2f} s  ({seconds / n:.2f} s a member)  mean test accuracy {acc:.3f}")
    one = next((r["seconds"] for r in rows if r["mode"] == "one_by_one"), float("nan"))
    for r in rows:
        r["speedup_vs_one_by_one"] = one / r["seconds"]
    for r in rows[1:]:
        _common.say(f"   {r['mode']}: {r['speedup_vs_one_by_one']:.2f}x one by one (goal >= 3 at N = 16)")
    path = _common.write_csv(out / "grouped.csv", rows)
    _common.say(f"wrote {path}")


if __name__ == "__main__":
    main()
