"""The shared training loop against a bare PyTorch loop: what ``fit`` costs on top of the step itself.

    python benchmarks/fit_overhead.py                       # CPU: ResNet-18 widths 8 and 32, batch 128, 1x28x28
    python benchmarks/fit_overhead.py --widths 8 --steps 40 --repeats 5
    python benchmarks/fit_overhead.py --smoke --out /tmp/b  # tiny: checks the script, measures nothing

Each variant trains the same model (a fresh copy of one initialisation) for ``--steps`` optimiser steps on the same
data: uint8 images in memory, read through the suite's ``Loader`` (shuffled, with the dataset's crop-and-flip
augmentation, normalised), SGD with momentum:

- ``bare``: a plain loop over the loader (forward, cross-entropy, zero_grad, backward, step; the loss read with
  ``float(loss)`` every step, as a typical loop logs it);
- ``fit``: :func:`unlearnlib.train.fit` with ``max_steps`` (its checks, its bookkeeping, its progress bar off);
- on CUDA also ``fit_fast`` (``fit`` inside ``run_speed(model, "fast")``: bf16 autocast and channels_last) and
  ``ceiling`` (the batches built once on the GPU beforehand, a plain loop at the fast speed with no read at all:
  what the data path and the loop's bookkeeping cost, as a bound).

Every variant is warmed up (``--warmup`` steps, untimed) before it is timed, and the variants alternate within each
repeat so a slow phase of the machine hits them alike; the median over ``--repeats`` is reported. The figure:
``ratio_to_bare`` = fit's time / the bare loop's (goal <= 1.05 on the CPU). Writes ``fit_overhead.csv``. Run it
with nothing else running: the figures are wall times.
"""

from __future__ import annotations

import copy
import statistics

import _common  # before unlearnlib: puts this checkout first on sys.path


def _data(n: int, size: int, channels: int, seed: int = 0):
    import torch

    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 10, (n,), generator=g)
    images = torch.randint(0, 256, (n, channels, size, size), generator=g, dtype=torch.uint8)
    return images, labels


def _loader(images, labels, batch_size: int, device, seed: int = 1):
    import numpy as np

    from unlearnlib.data import DATASETS, Loader

    spec = DATASETS.get("fashion_mnist") if images.shape[1] == 1 else DATASETS.get("cifar10")
    return Loader(images, labels, np.arange(len(labels)), spec, batch_size=batch_size, shuffle=True, augment=True,
                  seed=seed, device=device)


def _cfg(batch_size: int, steps: int):
    from unlearnlib.train import TrainConfig

    return TrainConfig(epochs=10**6, max_steps=steps, optimizer="sgd", lr=0.01, momentum=0.9, nesterov=True,
                       weight_decay=5e-4, batch_size=batch_size, scheduler="none", augment=True)


def _bare(model, loader, steps: int) -> None:
    import torch
    import torch.nn.functional as F

    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
    model.train()
    done, total = 0, 0.0
    while done < steps:
        for x, y in loader:
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach())
            done += 1
            if done == steps:
                break


def _fit(model, loader, steps: int, speed: str = "exact") -> None:
    from unlearnlib.train import fit, run_speed

    with run_speed(model, speed):
        fit(model, loader, _cfg(loader.batch_size, steps), progress=False)


def _ceiling(model, batches: list, steps: int) -> None:
    import torch
    import torch.nn.functional as F

    from unlearnlib.train import run_speed

    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
    model.train()
    with run_speed(model, "fast"):
        for i in range(steps):
            x, y = batches[i % len(batches)]
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            with torch.autocast("cuda", enabled=False):
                loss.backward()
            opt.step()


def variants(device) -> list[str]:
    return ["bare", "fit"] + (["fit_fast", "ceiling"] if device.type == "cuda" else [])


def measure(width: int, batch_size: int, args, device, say) -> list[dict]:
    import torch

    from unlearnlib.models import build_model
    from unlearnlib.train import configure_device

    configure_device(device)
    images, labels = _data(args.images, args.size, args.channels)
    if device.type == "cuda":
        images = images.to(device)
    torch.manual_seed(0)
    base = build_model("resnet18", num_classes=10, in_channels=args.channels, width=width, image_size=args.size)
    base.to(device)
    prebuilt = [b for _, b in zip(range(8), _loader(images, labels, batch_size, device), strict=False)]

    def run(name: str, steps: int) -> float:
        model = copy.deepcopy(base)
        loader = _loader(images, labels, batch_size, device)
        fn = {"bare": lambda: _bare(model, loader, steps), "fit": lambda: _fit(model, loader, steps),
              "fit_fast": lambda: _fit(model, loader, steps, "fast"),
              "ceiling": lambda: _ceiling(model, prebuilt, steps)}[name]
        return _common.timed(fn)[1]

    names = variants(device)
    for name in names:
        run(name, args.warmup)  # untimed: allocator, kernels, cudnn.benchmark's tuning of this shape
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(args.repeats):
        for name in (names if r % 2 == 0 else names[::-1]):
            times[name].append(run(name, args.steps))
    bare = statistics.median(times["bare"])
    rows = []
    for name in names:
        sec = statistics.median(times[name])
        rows.append({"model": "resnet18", "width": width, "batch_size": batch_size, "variant": name,
                     "steps": args.steps, "repeats": args.repeats, "seconds": sec,
                     "seconds_min": min(times[name]), "seconds_max": max(times[name]),
                     "images_per_s": args.steps * batch_size / sec, "ratio_to_bare": sec / bare,
                     "input": f"{args.channels}x{args.size}x{args.size}", **_common.machine()})
        say(f"resnet18 w{width} bs{batch_size} {name:9s} {sec:8.3f} s  {rows[-1]['images_per_s']:9.0f} img/s  "
            f"x{sec / bare:.3f} of bare")
    return rows


def main(argv=None) -> int:
    p = _common.parser(__doc__.splitlines()[0])
    p.add_argument("--widths", default="8,32", help="ResNet-18 widths (comma-separated)")
    p.add_argument("--batch-sizes", default="128", help="comma-separated")
    p.add_argument("--steps", type=int, default=30, help="timed optimiser steps per variant and repeat")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--images", type=int, default=4096)
    p.add_argument("--size", type=int, default=28)
    p.add_argument("--channels", type=int, default=1)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    args = p.parse_args(argv)
    if args.smoke:
        args.widths, args.batch_sizes, args.steps, args.warmup, args.repeats, args.images = "4", "16", 4, 1, 2, 64
    out = _common.out_dir(args)
    _common.set_threads(args.threads)
    import torch

    from unlearnlib.harness.plan import resolve_device

    device = resolve_device(args.device)
    if device.type == "cuda" and args.size == 28 and args.channels == 1 and not args.smoke:
        args.size, args.channels = 32, 3  # the papers' input shape on a GPU
    rows = []
    for w in (int(v) for v in args.widths.split(",")):
        for b in (int(v) for v in args.batch_sizes.split(",")):
            rows += measure(w, b, args, device, print)
            _common.write_csv(out / "fit_overhead.csv", rows)  # after every row: a killed run keeps what it had
    print(f"wrote {out / 'fit_overhead.csv'} ({torch.get_num_threads()} thread(s))")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
