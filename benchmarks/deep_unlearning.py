"""Deep Unlearning, timed by phase: our paths against the exact d x d path, the hardware floor and the official code.

    python benchmarks/deep_unlearning.py                        # ResNet-18 and VGG-11-BN, full width, 32x32, 900
    python benchmarks/deep_unlearning.py --official /tmp/class_forgetting   # + the official functions themselves
    python benchmarks/deep_unlearning.py --mode full --width 16 # every layer timed, end to end (checks the estimate)
    python benchmarks/deep_unlearning.py --smoke --out /tmp/b   # seconds: checks the script

Random weights (eval mode) and random 32x32 images (10 classes, 1000 each; forget class 0), the method's own
sample selection: 900 retain samples (the first 100 of each retain class) and 900 forget samples, at most
``max_patches`` im2col rows per conv layer.

Phases: ``forward`` (the two forward passes that collect the layers' inputs), ``patches`` (im2col and the row
subset), ``decomposition`` (the retain and forget bases of every layer: thin SVD, Gram eigendecomposition or the
Gram product) and ``projection`` (the weight update; for ``gram_solve`` it includes the Cholesky factorisations).
Variants: ``official`` (sangamesh-kodge/class_forgetting's functions: forward_cache_projections per layer,
get_projection_matrix, project_weights), ``exact`` (our d x d path with the SVD, the official algorithm),
``lowrank`` (the SVD, never forming a d x d matrix), ``lowrank+gram_eigh`` and ``lowrank+gram_solve``. The floor is
the forward passes plus the decompositions alone: ``floor`` with upstream's thin SVDs, ``floor_gram`` with the
Gram products and Cholesky factorisations.

``--mode shapes`` (the default): layers whose input matrix and weight have the same shape cost the same, so one
layer of each shape is timed and its time multiplied by the count (the forward passes and the patch extraction
are always measured in full; the ``scope`` column says which). The SVD and the eigendecomposition are timed on
the retain rows and counted twice (retain and forget: the same shape). ``--mode full`` times every layer and the
method's own call end to end. With ``--end-to-end`` the method's call is also timed whole for ``gram_solve``.

Writes ``deep_unlearning_phases.csv`` (one row per model, variant and phase), ``deep_unlearning_layers.csv`` (per
layer shape: times and the projector's agreement between decompositions and between two draws of the patches) and
prints the ratios low-rank / exact, total / floor and, with ``--official``, ours / official.
"""

from __future__ import annotations

import ast
import copy
import dataclasses
import math
import sys
from collections import OrderedDict
from pathlib import Path
from typing import Any

import _common  # before unlearnlib: puts this checkout first on sys.path
import numpy as np
import torch
import torch.nn as nn

from unlearnlib.data import DatasetSpec, Loader
from unlearnlib.methods import deep_unlearning as du
from unlearnlib.models import build_model

VARIANTS = ("official", "exact", "lowrank", "lowrank+gram_eigh", "lowrank+gram_solve")
PHASES = ("forward", "patches", "decomposition", "projection", "total")


def random_problem(n_per_class: int, size: int, channels: int, classes: int, seed: int = 0):
    """Random uint8 images, labels cycling over the classes, class 0 forgotten: (retain, forget) loaders."""
    g = torch.Generator().manual_seed(seed)
    n = n_per_class * classes
    images = torch.randint(0, 256, (n, channels, size, size), generator=g, dtype=torch.uint8)
    labels = torch.arange(n) % classes
    spec = DatasetSpec(name="random", num_classes=classes, channels=channels, size=size, mean=(0.5,) * channels,
                       std=(0.25,) * channels, classes=tuple(map(str, range(classes))), locate=lambda _p: None,
                       build=lambda _p, _d: (None, None), augment="crop_flip")
    y = labels.numpy()
    retain = Loader(images, labels, np.flatnonzero(y != 0), spec, batch_size=256, seed=0, name="retain")
    forget = Loader(images, labels, np.flatnonzero(y == 0), spec, batch_size=256, seed=1, name="forget")
    return retain, forget


@dataclasses.dataclass
class LayerInfo:
    name: str
    layer: nn.Module
    rows_shape: tuple[int, ...]
    key: tuple  # layers with the same key cost the same
    x_r: torch.Tensor | None = None  # the layer's retain inputs (representatives only)
    rows_r: torch.Tensor | None = None
    rows_f: torch.Tensor | None = None


@torch.no_grad()
def collect(model: nn.Module, x: torch.Tensor, layers: dict[str, nn.Module], max_patches: int,
            keep: dict[str, LayerInfo] | None, which: str, keep_all: bool) -> tuple[float, float, dict]:
    """One forward pass with the method's hooks: (pass seconds, patch seconds, {name: LayerInfo}). The rows (and
    inputs) of the first layer of each shape are kept (of every layer with ``keep_all``)."""
    info: dict[str, LayerInfo] = {} if keep is None else keep
    seen: set = set()
    patch_s = [0.0]
    hooks = []
    for name, layer in layers.items():
        def hook(mod, inputs, _out, name=name):
            inp = inputs[0].detach()
            rows, dt = _common.timed(du.layer_input_matrix, inp, mod, max_patches)
            patch_s[0] += dt
            key = (type(mod).__name__, tuple(rows.shape), tuple(mod.weight.shape))
            li = info.setdefault(name, LayerInfo(name, mod, tuple(rows.shape), key))
            if which == "r" and (keep_all or key not in seen):  # the first layer of each shape
                seen.add(key)
                li.rows_r, li.x_r = rows, inp
            elif which == "f" and li.rows_r is not None:  # the same layers' forget rows
                li.rows_f = rows
        hooks.append(layer.register_forward_hook(hook))
    try:
        model.eval()
        _, total = _common.timed(model, x)
    finally:
        for h in hooks:
            h.remove()
    return total, patch_s[0], info


def _second_draw(li: LayerInfo, max_patches: int) -> torch.Tensor:
    """The retain rows of the same inputs drawn again (another window and subset of patches)."""
    return du.layer_input_matrix(li.x_r, li.layer, max_patches)


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-300))


def bases_mb(basis) -> float:
    if isinstance(basis, du.GramProjector):
        t = basis.b if basis.dual else basis.g
        return t.numel() * t.element_size() / 2**20
    u, lam = basis
    return (u.numel() * u.element_size() + lam.numel() * lam.element_size()) / 2**20


# ------------------------------------------------------------------------------------------------------------
# the official code (a checkout of sangamesh-kodge/class_forgetting), imported from its folder


class Official:
    """The official functions: models/model_utils.forward_cache_projections, main.get_projection_matrix (read from
    main.py's source: importing main.py needs wandb and a plotting style), the official models' project_weights."""

    def __init__(self, path: Path) -> None:
        path = Path(path).resolve()
        if not (path / "models" / "model_utils.py").exists():
            raise SystemExit(f"--official {path}: not a checkout of sangamesh-kodge/class_forgetting "
                             f"(models/model_utils.py is missing)")
        sys.path.insert(0, str(path))
        import models.model_utils as mu  # noqa: F401  (the official package, from the checkout)
        import models.resnet as resnet
        import models.vgg as vgg

        self.mu, self.resnet, self.vgg = mu, resnet, vgg
        self.commit = _common.subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=path, capture_output=True,
                                             text=True).stdout.strip()
        src = (path / "main.py").read_text()
        node = next(n for n in ast.parse(src).body if isinstance(n, ast.FunctionDef)
                    and n.name == "get_projection_matrix")
        ns: dict[str, Any] = {"torch": torch, "OrderedDict": OrderedDict}
        exec(compile(ast.Module([node], []), str(path / "main.py"), "exec"), ns)  # the function as written there
        self.get_projection_matrix = ns["get_projection_matrix"]

    def model(self, name: str) -> nn.Module:
        if name == "resnet18":
            return self.resnet.ResNet18(num_classes=10, dataset="cifar10")
        if name == "vgg11_bn":
            return self.vgg.vgg11_bn(num_classes=10, dataset="cifar10")
        raise SystemExit(f"--official: no official model for {name}")

    def projection_time(self, name: str, ours: nn.Module, size: int) -> tuple[float, float]:
        """(get_projection_matrix s, project_weights s) on the whole official model at full width; the d x d
        matrices come from its own get_scaled_projections on two images (their values do not change the time)."""
        m = self.model(name).eval()
        load_by_position(m, ours)
        with torch.no_grad():
            proj = m.get_scaled_projections(torch.randn(2, 3, size, size), 100.0, 10000)
        upd, t_gpm = _common.timed(self.get_projection_matrix, "cpu", proj, proj)
        _, t_pw = _common.timed(m.project_weights, upd)
        return t_gpm, t_pw


def load_by_position(dst: nn.Module, src: nn.Module) -> None:
    """Copy ``src``'s state into ``dst`` entry by entry (the same architecture under other names)."""
    a, b = list(dst.state_dict().items()), list(src.state_dict().values())
    if len(a) != len(b) or any(v.shape != w.shape for (_, v), w in zip(a, b, strict=True)):
        raise SystemExit("--official: the official model's state does not line up with ours")
    dst.load_state_dict(OrderedDict((k, w.clone()) for (k, _), w in zip(a, b, strict=True)))


# ------------------------------------------------------------------------------------------------------------


def bench_model(name: str, args, official: Official | None, shared: dict) -> tuple[list[dict], list[dict], dict]:
    """One model: its phases per variant, its per-shape rows and its totals. ``shared``: decomposition times by the
    shape of the input rows, reused across layers of other weight shapes and across models (the SVD's and the
    eigendecomposition's cost depends on the rows' shape, not on the layer)."""
    torch.manual_seed(0)
    model = build_model(name, num_classes=10, in_channels=3, width=args.width).eval()
    retain, forget = random_problem(args.per_class, args.size, 3, 10)
    cfg = du.Config(n_samples=args.samples, max_patches=args.max_patches, augment_samples=False)
    torch.manual_seed(1)
    xr, xf = du.select_samples(retain, forget, cfg)
    layers = du.projected_layers(model)
    full = args.mode == "full"
    torch.manual_seed(2)
    t_fwd_r, t_patch_r, info = collect(model, xr, layers, args.max_patches, None, "r", full)
    t_fwd_f, t_patch_f, info = collect(model, xf, layers, args.max_patches, info, "f", full)
    t_forward = (t_fwd_r - t_patch_r) + (t_fwd_f - t_patch_f)
    t_patches = t_patch_r + t_patch_f
    counts: dict[tuple, int] = {}
    for li in info.values():
        counts[li.key] = counts.get(li.key, 0) + 1
    measured = [li for li in info.values() if li.rows_r is not None and li.rows_f is not None]
    _common.say(f"== {name} width {args.width}, {args.size}x{args.size}, {len(xr)}+{len(xf)} samples, "
                f"{len(layers)} layers, {len(counts)} shapes; forward {t_forward:.2f} s, patches {t_patches:.2f} s "
                f"({torch.get_num_threads()} threads)")
    acc = {v: {"decomposition": 0.0, "projection": 0.0} for v in VARIANTS}
    floor_svd, floor_gram, mem = 0.0, 0.0, {}
    layer_rows = []
    for li in measured:
        mult = 1 if full else counts[li.key]
        d = li.rows_shape[-1]
        n = li.rows_shape[-2]
        w = li.layer.weight.detach()
        row: dict[str, Any] = {"model": name, "width": args.width, "layer": li.name, "kind": li.key[0],
                               "d": d, "n": n, "groups": li.rows_shape[0] if len(li.rows_shape) == 3 else 1,
                               "out": w.shape[0], "count": mult}
        shape = tuple(li.rows_r.shape)
        reuse = not full and (shape, "svd") in shared
        row["svd_timed_on"] = shared[(shape, "svd_layer")] if reuse else f"{name} {li.name}"
        with _common.PeakMemory() as pm:
            br_eigh, t_eigh = _common.timed(du.make_basis, li.rows_r, cfg.alpha_r, "gram_eigh")
        row.update(gram_eigh_s=t_eigh, gram_eigh_peak_mb=pm.mb)
        if reuse:  # the same rows' shape was timed already: its times, and the eigh basis for the projection
            t_svd, br_svd = shared[(shape, "svd")], br_eigh
            row.update(svd_s=t_svd, svd_peak_mb=shared[(shape, "svd_peak_mb")], gram_eigh_vs_svd=float("nan"))
            m_svd = None
        else:
            with _common.PeakMemory() as pm:
                br_svd, t_svd = _common.timed(du.make_basis, li.rows_r, cfg.alpha_r, "svd")
            shared.update({(shape, "svd"): t_svd, (shape, "svd_peak_mb"): pm.mb,
                           (shape, "svd_layer"): f"{name} {li.name}"})
            row.update(svd_s=t_svd, svd_peak_mb=pm.mb)
            m_svd = du.basis_matrix(br_svd)
            row["gram_eigh_vs_svd"] = rel(du.basis_matrix(br_eigh), m_svd)
        floor_svd += 2 * mult * t_svd
        acc["exact"]["decomposition"] += 2 * mult * t_svd
        acc["lowrank"]["decomposition"] += 2 * mult * t_svd
        mem.setdefault("svd", 0.0)
        mem["svd"] += 2 * mult * bases_mb(br_svd)
        acc["lowrank+gram_eigh"]["decomposition"] += 2 * mult * t_eigh
        _, t = _common.timed(du.updated_weight, w, br_eigh, br_eigh, "lowrank")
        acc["lowrank+gram_eigh"]["projection"] += mult * t
        del br_eigh
        # gram_solve: both sets measured (cheap); the factorisation timed alone for the floor
        with _common.PeakMemory() as pm:
            br_g, t_gr = _common.timed(du.make_basis, li.rows_r, cfg.alpha_r, "gram_solve")
            bf_g, t_gf = _common.timed(du.make_basis, li.rows_f, cfg.alpha_f, "gram_solve")
        _, t_fac = _common.timed(br_g._factor)
        row.update(gram_s=t_gr + t_gf, cholesky_s=t_fac, gram_peak_mb=pm.mb)
        floor_gram += mult * (t_gr + t_gf + 2 * t_fac)
        acc["lowrank+gram_solve"]["decomposition"] += mult * (t_gr + t_gf)
        mem.setdefault("gram_solve", 0.0)
        mem["gram_solve"] += mult * (bases_mb(br_g) + bases_mb(bf_g))
        m_solve = du.basis_matrix(br_g)
        row["gram_solve_vs_svd"] = rel(m_solve, m_svd) if m_svd is not None else float("nan")
        # run-to-run: the same inputs, another window and subset of patches (gram_solve: as exact as the SVD)
        torch.manual_seed(3)
        m_again = du.basis_matrix(du.make_basis(_second_draw(li, args.max_patches), cfg.alpha_r, "gram_solve"))
        row["redraw_vs_first"] = rel(m_again, m_solve)
        del m_again, m_solve, m_svd
        # projections (their time does not depend on the values: the SVD paths reuse the retain basis)
        with _common.PeakMemory() as pm:
            w_exact, t_ex = _common.timed(du.updated_weight, w, br_svd, br_svd, "exact")
        row.update(proj_exact_s=t_ex, proj_exact_peak_mb=pm.mb)
        with _common.PeakMemory() as pm:
            w_low, t_lo = _common.timed(du.updated_weight, w, br_svd, br_svd, "lowrank")
        row.update(proj_lowrank_s=t_lo, proj_lowrank_peak_mb=pm.mb, lowrank_vs_exact=rel(w_low, w_exact))
        with _common.PeakMemory() as pm:
            _, t_so = _common.timed(du.updated_weight, w, br_g, bf_g, "lowrank")
        row.update(proj_gram_solve_s=t_so, proj_gram_solve_peak_mb=pm.mb)
        acc["exact"]["projection"] += mult * t_ex
        acc["lowrank"]["projection"] += mult * t_lo
        acc["lowrank+gram_solve"]["projection"] += mult * t_so
        if official is not None:
            _, t_layer = _common.timed(li.layer, li.x_r)
            if reuse and (shape, "official") in shared:  # everything but the layer's own forward: the rows' shape
                t_fcp = shared[(shape, "official")] + t_layer
            else:
                _, t_fcp = _common.timed(official.mu.forward_cache_projections, li.x_r, li.layer, "layer",
                                         cfg.alpha_r, args.max_patches)
                shared[(shape, "official")] = max(0.0, t_fcp - t_layer)
            row.update(official_fcp_s=t_fcp, layer_forward_s=t_layer)
            acc["official"]["decomposition"] += 2 * mult * max(0.0, t_fcp - t_layer)
        layer_rows.append(row)
        _common.say(f"   {li.name:28s} d {d:5d} n {n:5d} x{mult}: svd {t_svd:7.2f} s{' (shared)' if reuse else ''}"
                    f", eigh {t_eigh:7.2f} s"
                    + f", gram {t_gr + t_gf:6.2f} s + chol {t_fac:5.2f} s; proj exact {t_ex:.2f} lowrank {t_lo:.2f} "
                    f"solve {t_so:.2f} s" + (f"; official fcp {row['official_fcp_s']:.2f} s" if official else ""))
        del br_svd, br_g, bf_g, w_exact, w_low
    rows = []
    scope = "every layer timed" if full else "forward and patches in full; one layer per shape x its count"
    common = {"model": name, "width": args.width, "input": f"3x{args.size}x{args.size}", "samples": len(xr) + len(xf),
              "max_patches": args.max_patches, "layers": len(layers), "shapes": len(counts), "scope": scope}
    totals = {}
    for v in VARIANTS:
        if v == "official" and official is None:
            continue
        ph = {"forward": t_forward, "patches": t_patches, **acc[v]}
        if v == "official":  # the official models have full width only
            t_gpm, t_pw = official.projection_time(name, model, args.size) if args.width == 64 else (math.nan,) * 2
            ph["projection"] = t_gpm + t_pw
            ph["patches"] = 0.0  # inside forward_cache_projections: counted in its decomposition time
        ph["total"] = sum(ph[p] for p in PHASES[:-1])
        totals[v] = ph["total"]
        for p in PHASES:
            rows.append({**common, "variant": v, "phase": p, "seconds": ph[p],
                         "bases_mb": mem.get("gram_solve" if "gram_solve" in v else "svd", float("nan"))
                         if v != "official" else float("nan")})
    for v, t in (("floor", t_forward + floor_svd), ("floor_gram", t_forward + floor_gram)):
        rows.append({**common, "variant": v, "phase": "total", "seconds": t})
        totals[v] = t
    if args.end_to_end or full:
        for dec in (["svd", "gram_eigh", "gram_solve"] if full else ["gram_solve"]):
            m2 = copy.deepcopy(model)
            r2, f2 = random_problem(args.per_class, args.size, 3, 10)
            c2 = dataclasses.replace(cfg, decomposition=dec)
            torch.manual_seed(1)
            with _common.PeakMemory() as pm:
                _, t = _common.timed(du.unlearn, m2, retain=r2, forget=f2, cfg=c2, device="cpu")
            v = "lowrank" if dec == "svd" else f"lowrank+{dec}"
            rows.append({**common, "variant": v, "phase": "end_to_end", "seconds": t, "peak_mb": pm.mb,
                         "scope": "the method's own call, timed whole"})
            totals[f"{v} end_to_end"] = t
            _common.say(f"   end to end ({v}): {t:.2f} s, peak {pm.mb:.0f} MB above the start")
    return rows, layer_rows, totals


def numerics(profile: str, seeds: int) -> list[dict]:
    """The decompositions against the method's own run-to-run variation, on the ``profile`` original of the
    paper's first model (seed 42, the first forget class; from the cell store, trained if missing): the method
    with each decomposition under ``seeds`` method seeds (the samples' augmentation, the forget samples, the
    windows and patches differ between seeds). Per run: forget and retain accuracy on the test pool and the
    projected weights' distance to the SVD run of the same seed (relative to the size of that run's update); per
    seed after the first: the SVD run's distance to the first seed's, the run-to-run variation."""
    from unlearnlib.harness import Store, build_plan, seed_everything
    from unlearnlib.harness.cells import CellRunner
    from unlearnlib.train import predict_logits

    plan = build_plan("deep_unlearning", profile, [42], "cpu")
    runner = CellRunner(plan, Store(say=lambda m: None), progress=False, threads=torch.get_num_threads(),
                        say=_common.say)
    cell = next(c for c in plan.cells if c.kind == "original")
    runner.run(cell)
    original = runner.original_model(cell.key)
    part = plan.part(cell.dataset)
    split = next(sp for sp in part.splits.values() if sp.kind == "class")
    x, y = part.training_data(split)
    bs = part.settings.train.batch_size
    test = Loader(part.data.test_x, part.data.test_y, part.test_pool, part.data.spec, batch_size=1024)
    forgotten = torch.as_tensor(np.isin(part.data.test_y[torch.as_tensor(part.test_pool)].numpy(),
                                        split.forget_classes))
    base_cfg = part.method_cfgs["deep_unlearning"]
    names = list(du.projected_layers(original, base_cfg.project_classifier))

    def weights(m: nn.Module) -> torch.Tensor:
        mods = dict(m.named_modules())
        return torch.cat([mods[n].weight.detach().flatten().double() for n in names])

    w0 = weights(original)
    out, by = [], {}
    for seed in range(seeds):
        for dec in ("svd", "gram_eigh", "gram_solve"):
            seed_everything(seed)
            retain = Loader(x, y, split.retain_train, part.data.spec, batch_size=bs, seed=seed, name="retain")
            forget = Loader(x, y, split.forget_train, part.data.spec, batch_size=bs, seed=seed + 1, name="forget")
            cfg = dataclasses.replace(base_cfg, decomposition=dec)
            model, t = _common.timed(du.unlearn, copy.deepcopy(original), retain=retain, forget=forget, cfg=cfg,
                                     device="cpu")
            logits, labels = predict_logits(model, test)
            correct = logits.argmax(1) == labels
            w = weights(model)
            by[(seed, dec)] = w
            ref = by[(seed, "svd")]
            row = {"profile": profile, "model": cell.model, "width": part.settings.models[cell.model].width,
                   "scenario": split.tag, "seed": seed, "decomposition": dec, "seconds": t,
                   "forget_acc": 100 * float(correct[forgotten].float().mean()),
                   "retain_acc": 100 * float(correct[~forgotten].float().mean()),
                   "vs_svd_same_seed": float((w - ref).norm() / (ref - w0).norm())}
            if dec == "svd" and seed > 0:
                first = by[(0, "svd")]
                row["svd_vs_seed0"] = float((w - first).norm() / (first - w0).norm())
            out.append(row)
            _common.say(f"   numerics seed {seed} {dec:10s}: forget {row['forget_acc']:5.1f} %, retain "
                        f"{row['retain_acc']:5.1f} %, vs svd (same seed) {row['vs_svd_same_seed']:.2e}"
                        + (f", svd vs seed 0 {row['svd_vs_seed0']:.2e}" if "svd_vs_seed0" in row else ""))
    return out


def main(argv=None) -> int:
    p = _common.parser(__doc__.splitlines()[0])
    p.add_argument("--models", default="resnet18,vgg11_bn")
    p.add_argument("--width", type=int, default=64, help="channels of the first stage (64: full width)")
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--samples", type=int, default=900)
    p.add_argument("--max-patches", type=int, default=10000)
    p.add_argument("--per-class", type=int, default=1000, help="random images per class")
    p.add_argument("--mode", choices=("shapes", "full"), default="shapes")
    p.add_argument("--end-to-end", action="store_true", help="also time the method's call whole (gram_solve)")
    p.add_argument("--official", type=Path, default=None,
                   help="a checkout of sangamesh-kodge/class_forgetting: its code is imported and run in this "
                   "process (only give a checkout you trust)")
    p.add_argument("--numerics", default="cpu", help="profile of the run-to-run comparison (none: skip it)")
    p.add_argument("--numerics-seeds", type=int, default=5)
    p.add_argument("--skip-timing", action="store_true", help="only the run-to-run comparison")
    args = p.parse_args(argv)
    if args.smoke:
        args.width, args.samples, args.max_patches, args.per_class = 2, 18, 300, 20
        args.mode, args.end_to_end, args.numerics_seeds = "full", True, 2
        args.numerics = "smoke" if args.numerics != "none" else "none"
    out = _common.out_dir(args)
    _common.set_threads(args.threads)
    official = Official(args.official) if args.official else None
    env = _common.machine()
    if official is not None:
        env["official_commit"] = official.commit
    if args.numerics != "none":
        f0 = _common.write_csv(out / "deep_unlearning_numerics.csv",
                               [{**r, **env} for r in numerics(args.numerics, args.numerics_seeds)])
        _common.say(f"wrote {f0}")
    if args.skip_timing:
        return 0
    rows, layer_rows, summary, shared = [], [], {}, {}
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        r, lr_, totals = bench_model(name, args, official, shared)
        rows += r
        layer_rows += lr_
        summary[name] = totals
    rows = [{**r, **env} for r in rows]
    layer_rows = [{**r, **env} for r in layer_rows]
    f1 = _common.write_csv(out / "deep_unlearning_phases.csv", rows)
    f2 = _common.write_csv(out / "deep_unlearning_layers.csv", layer_rows)
    for name, t in summary.items():
        line = (f"{name} (width {args.width}): low-rank / exact {t['lowrank'] / t['exact']:.2f}; "
                f"low-rank / floor {t['lowrank'] / t['floor']:.2f}; exact / floor {t['exact'] / t['floor']:.2f}; "
                f"gram_solve / floor {t['lowrank+gram_solve'] / t['floor']:.3f} "
                f"(/ its own floor {t['lowrank+gram_solve'] / t['floor_gram']:.2f}); "
                f"gram_solve / exact {t['lowrank+gram_solve'] / t['exact']:.3f}")
        if "official" in t:
            line += (f"; low-rank / official {t['lowrank'] / t['official']:.2f}; "
                     f"gram_solve / official {t['lowrank+gram_solve'] / t['official']:.3f}")
        _common.say(line)
    _common.say(f"wrote {f1} and {f2}")
    ours = [v for t in summary.values() for k, v in t.items() if k != "official"]
    return 0 if all(math.isfinite(v) for v in ours) else 1


if __name__ == "__main__":
    raise SystemExit(main())
