"""CPU costs on a GPU run's critical path (issue 22 part 6), at paper size, on this machine's CPU.

    python benchmarks/cpu_costs.py                     # paper sizes (minutes on 2 cores); results/benchmarks/
    python benchmarks/cpu_costs.py --smoke --out DIR   # tiny sizes, seconds: checks the script

1. Deep Unlearning's SVC MIA (``attacks.svc_mia_kodge``): one RBF SVC fit on the probability of the true label of
   retain-class and forget-class training images, as upstream (no cap), for CIFAR-10 class forgetting: 45k retain +
   5k forget points at paper size, and smaller sizes to show the growth. Two feature distributions: *separated*
   (a retrained model: forget probabilities low) and *overlapping* (the original or a weak baseline: both near 1),
   drawn from Beta distributions (seeded): the SVC's time depends on the overlap, not on where the features came
   from. Deep Unlearning's ``paper`` profile fits it twice per method cell (plain and augmented): ~400 fits.
2. The stop checks of lightweight and versatile: the loss-LR cross-validated attack (``loss_lr_cv_mia``, 10 splits)
   on 1000 + 1000 losses (``stat_samples``), which a check fitted before issue 22 even when its rule did not read it
   (now only for ``stop_rule: mia``), next to the forward pass of the check's 2000 (+1000 retain) images through the
   paper's model (ResNet-18, width 64, 3x32x32) on this CPU (on a GPU run that part moves to the GPU).

Each size stops growing once one fit passes ``--max-seconds``. Writes ``cpu_costs.csv``: what, case, n, seconds,
per_run (the cost counted over a paper profile's calls), machine columns.
"""

from __future__ import annotations

import _common  # before unlearnlib: puts this checkout first on sys.path
import numpy as np
import torch

from unlearnlib.attacks import loss_lr_cv_mia, svc_mia_kodge

# fits per run of the paper profiles (the GPU review, section 1.3): DU 2 x 200 method cells; LAU 60; benchmark 54
SVC_FITS = {"deep_unlearning": 400, "layer_attack_unlearning": 60, "benchmark": 54}


def svc_features(n_retain: int, n_forget: int, case: str, rng: np.random.Generator):
    """(retain-train, forget-train, forget-test) true-label probabilities."""
    retain = rng.beta(20, 1, n_retain)  # a trained model: confident on retain images
    if case == "separated":  # retrained: forget-class images get low true-label probabilities
        forget, test = rng.beta(1, 8, n_forget), rng.beta(1, 8, max(1, n_forget // 5))
    else:  # the original: forget images look like retain images
        forget, test = rng.beta(20, 1, n_forget), rng.beta(15, 1, max(1, n_forget // 5))
    return retain, forget, test


def svc_rows(sizes: list[int], max_seconds: float) -> list[dict]:
    rows = []
    for case in ("separated", "overlapping"):
        for n in sizes:
            rng = np.random.default_rng(0)
            r, f, t = svc_features(int(n * 0.9), n - int(n * 0.9), case, rng)
            score, sec = _common.timed(svc_mia_kodge, r, f, t)
            rows.append({"what": "svc_mia_fit", "case": case, "n": n, "seconds": sec, "score": score,
                         **{f"per_run_{p}_s": sec * k for p, k in SVC_FITS.items()}})
            _common.say(f"SVC fit, {case:11s} n={n:6d}: {sec:8.2f} s")
            if sec > max_seconds:
                break
    return rows


def stop_check_rows(samples: int, width: int, size: int) -> list[dict]:
    from unlearnlib.models import build_model

    rng = np.random.default_rng(0)
    rows = []
    lf, lu = rng.exponential(0.3, samples), rng.exponential(0.5, samples)
    _, sec = _common.timed(loss_lr_cv_mia, lf, lu, n_splits=10, seed=0)
    rows.append({"what": "stop_check_attack", "case": "loss_lr_cv_mia, 10 splits", "n": 2 * samples, "seconds": sec})
    _common.say(f"stop check attack (loss-LR CV) on {2 * samples} losses: {sec * 1000:.0f} ms")
    model = build_model("resnet18", num_classes=10, in_channels=3, width=width, image_size=size).eval()
    x = torch.randn(3 * samples, 3, size, size)
    with torch.no_grad():
        model(x[:8])  # warm-up
        _, sec = _common.timed(lambda: [model(c) for c in x.split(500)])
    rows.append({"what": "stop_check_forward", "case": f"resnet18 w{width} {size}x{size}", "n": 3 * samples,
                 "seconds": sec})
    _common.say(f"stop check forward of {3 * samples} images (resnet18 w{width}): {sec:.2f} s")
    return rows


def main(argv=None) -> int:
    p = _common.parser(__doc__.splitlines()[0])
    p.add_argument("--sizes", default="1000,5000,10000,20000,50000", help="SVC points (90 %% retain, 10 %% forget)")
    p.add_argument("--max-seconds", type=float, default=600.0, help="stop growing n once one fit takes longer")
    p.add_argument("--samples", type=int, default=1000, help="stop check: forget and unseen images (each)")
    p.add_argument("--width", type=int, default=64)
    args = p.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    size = 32
    if args.smoke:
        sizes, args.samples, args.width, size = [200, 400], 100, 4, 8
    out = _common.out_dir(args)
    _common.set_threads(args.threads)
    rows = svc_rows(sizes, args.max_seconds) + stop_check_rows(args.samples, args.width, size)
    m = _common.machine()
    path = _common.write_csv(out / "cpu_costs.csv", [{**r, **m, "smoke": bool(args.smoke)} for r in rows])
    _common.say(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
