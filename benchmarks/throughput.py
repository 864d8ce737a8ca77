"""CPU training throughput at 3x32x32 of every registered model, for ``make plan``'s CPU column (issue 22 part 7).

    python benchmarks/throughput.py --commit           # minutes on 2 cores: results/benchmarks/throughputs.csv
                                                       # and (--commit) benchmarks/throughputs.csv: make plan's
    python benchmarks/throughput.py --smoke --out DIR  # tiny, seconds: checks the script

Per model and width (the ``cpu`` profiles' widths and the papers'): ``--steps`` SGD steps (forward, cross-entropy,
backward, step; momentum 0.9) at ``--batch`` on random 3x32x32 inputs after ``--warmup`` untimed ones: the training
loop's arithmetic without the data path (on the CPU the shared ``fit`` runs at 0.97-1.00x such a loop, issue 22).
Each row has the images/s and the model's training FLOPs per image (``estimate.train_flops``), so a plan turns
FLOPs into hours: effective TFLOP/s = images/s x FLOPs per image.
"""

from __future__ import annotations

import shutil

import _common  # before unlearnlib: puts this checkout first on sys.path
import torch
import torch.nn.functional as F

from unlearnlib.harness.estimate import THROUGHPUTS, train_flops
from unlearnlib.models import build_model

# (model, width): the cpu profiles' widths and the papers' (the ViT at the DU cpu profile's small size)
CASES = [("resnet18", 8), ("resnet18", 16), ("resnet18", 64), ("vgg11_bn", 16), ("vgg11_bn", 64), ("allcnn", 16),
         ("allcnn", 96), ("mobilenetv2", 8), ("mobilenetv2", 32), ("vit", 16)]


def measure(model_name: str, width: int, batch: int, steps: int, warmup: int, size: int) -> dict:
    torch.manual_seed(0)
    extra = {"depth": 1, "heads": 2, "patch": 4} if model_name == "vit" else {}
    model = build_model(model_name, num_classes=10, in_channels=3, width=width, image_size=size, **extra).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x, y = torch.randn(batch, 3, size, size), torch.randint(0, 10, (batch,))

    def step():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()

    for _ in range(warmup):
        step()
    _, sec = _common.timed(lambda: [step() for _ in range(steps)])
    flops = train_flops(model_name, width, extra.get("depth"), extra.get("heads"), extra.get("patch"), 3, size, 10)
    ips = batch * steps / sec
    return {"model": model_name, "width": width, "input": f"3x{size}x{size}", "batch_size": batch, "steps": steps,
            "seconds": sec, "images_per_s": ips, "train_flops_per_image": flops, "effective_tflops": ips * flops / 1e12}


def main(argv=None) -> int:
    p = _common.parser(__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--commit", action="store_true", help=f"also write {THROUGHPUTS} (what make plan reads)")
    args = p.parse_args(argv)
    cases, size = CASES, 32
    if args.smoke:
        cases, size, args.batch, args.steps, args.warmup = [("resnet18", 2), ("vgg11_bn", 2)], 16, 4, 1, 1
        args.commit = False
    out = _common.out_dir(args)
    _common.set_threads(args.threads)
    m = _common.machine()
    rows = []
    for name, width in cases:
        r = measure(name, width, args.batch, args.steps, args.warmup, size)
        rows.append({**r, **m, "smoke": bool(args.smoke)})
        gflops = r["effective_tflops"] * 1e3
        _common.say(f"{name:12s} w{width:<3d} {r['images_per_s']:9.1f} img/s  {gflops:8.1f} GFLOP/s")
        path = _common.write_csv(out / "throughputs.csv", rows)  # after every row
    if args.commit:
        shutil.copyfile(path, THROUGHPUTS)
        _common.say(f"copied to {THROUGHPUTS} (commit it: make plan reads it)")
    _common.say(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
