"""Deep Unlearning (Kodge et al.): the projection against an independent numpy computation, the two
numerical paths, the order of operations and what the method may touch."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import torch
import torch.nn as nn

from unlearnlib.data import Loader
from unlearnlib.methods import METHODS
from unlearnlib.methods.deep_unlearning import (
    Config,
    apply_basis,
    basis_matrix,
    importance,
    make_basis,
    projector,
    scaled_basis,
    select_samples,
    unlearn,
    updated_weight,
    updated_weight_exact,
    updated_weight_lowrank,
)
from unlearnlib.models import build_model

# ----------------------------------------------------------------------------------------------
# (a) exact and low-rank paths


def test_importance_formula():
    s = torch.tensor([0.0, 0.01, 0.5, 1.0], dtype=torch.float64)
    lam = importance(s, 100.0)
    # 100 * 0.01 / (99 * 0.01 + 1) = 1 / 1.99
    torch.testing.assert_close(lam, torch.tensor([0.0, 1 / 1.99, 50 / 50.5, 1.0], dtype=torch.float64))
    torch.testing.assert_close(importance(s, 1.0), s)  # alpha = 1: lambda = s


def test_scaled_basis_energy_ratios():
    rows = torch.randn(40, 6, dtype=torch.float64)
    u, lam = scaled_basis(rows, 1.0)
    s = torch.linalg.svdvals(rows) ** 2
    torch.testing.assert_close(lam, s / s.sum())  # alpha = 1: the energy ratios themselves
    assert u.shape == (6, 6)
    torch.testing.assert_close(u.T @ u, torch.eye(6, dtype=torch.float64))


def test_scaled_basis_of_dead_activations_is_zero_not_nan():
    # a layer whose input is all zero (dead ReLU) gets lambda = 0: its weight is left as it is
    u, lam = scaled_basis(torch.zeros(10, 4), 100.0)
    assert torch.isfinite(u).all() and torch.equal(lam, torch.zeros_like(lam))
    w = torch.randn(3, 4)
    ur, lr_ = scaled_basis(torch.randn(10, 4), 100.0)
    torch.testing.assert_close(updated_weight_exact(w, ur, lr_, u, lam), w)


@pytest.mark.parametrize("shape", [(5, 12), (4, 3, 3, 3), (6, 2, 1, 1)], ids=["linear", "conv3x3", "conv1x1"])
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_exact_and_lowrank_paths_agree(shape, dtype, tol):
    g = torch.Generator().manual_seed(0)
    d = int(np.prod(shape[1:]))
    w = torch.randn(shape, generator=g, dtype=dtype)
    ur, lr_ = scaled_basis(torch.randn(3 * d, d, generator=g, dtype=dtype), 100.0)  # full rank
    uf, lf = scaled_basis(torch.randn(max(2, d // 3), d, generator=g, dtype=dtype), 3.0)  # low rank
    exact = updated_weight_exact(w, ur, lr_, uf, lf)
    low = updated_weight_lowrank(w, ur, lr_, uf, lf)
    assert exact.shape == low.shape == w.shape
    scale = float(w.abs().max())
    assert float((exact - low).abs().max()) <= tol * scale
    assert float((exact - w).abs().max()) > 1e-3 * scale  # the update is not a no-op


class _DS:
    """A small synthetic uint8 dataset with retain/forget loaders (no augmentation)."""

    def __init__(self, make_spec, n: int, num_classes: int, size: int, forget_class: int = 0, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.spec = make_spec(num_classes=num_classes, channels=1, size=size)
        self.labels = torch.arange(n) % num_classes
        self.images = torch.randint(0, 256, (n, 1, size, size), generator=g, dtype=torch.uint8)
        y = self.labels.numpy()
        self.forget_idx = np.flatnonzero(y == forget_class)
        self.retain_idx = np.flatnonzero(y != forget_class)

    def loaders(self):
        r = Loader(self.images, self.labels, self.retain_idx, self.spec, batch_size=8, seed=0)
        f = Loader(self.images, self.labels, self.forget_idx, self.spec, batch_size=8, seed=1)
        return r, f


@pytest.mark.parametrize("name,size", [("resnet18", 12), ("vgg11_bn", 12), ("mobilenetv2", 12)])
def test_whole_model_exact_vs_lowrank(make_spec, name, size):
    # 12x12 inputs: the first conv (12 > 9) takes the random 9x9 window path, the deeper ones do not
    ds = _DS(make_spec, 40, 4, size)
    torch.manual_seed(0)
    model = build_model(name, num_classes=4, in_channels=1, width=2).eval()
    cfg = Config(n_samples=9, max_patches=300, augment_samples=False)
    out = {}
    for path in ("exact", "lowrank"):
        torch.manual_seed(123)
        r, f = ds.loaders()
        out[path] = unlearn(copy.deepcopy(model), retain=r, forget=f, cfg=dataclasses.replace(cfg, path=path),
                            device="cpu").state_dict()
    orig = model.state_dict()
    n_changed = 0
    for k, v in orig.items():
        a, b = out["exact"][k], out["lowrank"][k]
        if v.is_floating_point():
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5 * max(1.0, float(v.abs().max())))
        n_changed += int(not torch.equal(a, v))
    assert n_changed >= 5


def test_invalid_options(make_spec):
    ds = _DS(make_spec, 12, 3, 5)
    model = nn.Sequential(nn.Flatten(), nn.Linear(25, 3))
    r, f = ds.loaders()
    with pytest.raises(ValueError, match="exact, lowrank"):
        unlearn(model, retain=r, forget=f, cfg=Config(path="fast"), device="cpu")
    with pytest.raises(ValueError, match="n_samples=1"):
        unlearn(model, retain=r, forget=f, cfg=Config(n_samples=1), device="cpu")


# ----------------------------------------------------------------------------------------------
# (b) an independent numpy computation on a tiny network


def _np_im2col(x: np.ndarray, k: int = 3, pad: int = 1) -> np.ndarray:
    """(N, C, H, W) -> rows (N*H_out*W_out, C*k*k), stride 1; each row is (c, ki, kj)-ordered."""
    n, c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    ho, wo = h + 2 * pad - k + 1, w + 2 * pad - k + 1
    rows = [xp[i, :, a:a + k, b:b + k].reshape(-1) for i in range(n) for a in range(ho) for b in range(wo)]
    return np.array(rows)


def _np_projector(rows: np.ndarray, alpha: float) -> np.ndarray:
    u, sig, _ = np.linalg.svd(rows.T, full_matrices=False)
    s = sig ** 2 / np.sum(sig ** 2)
    lam = alpha * s / ((alpha - 1) * s + 1)
    return u @ np.diag(lam) @ u.T


def _np_forward_inputs(x: np.ndarray, wc: np.ndarray, bc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inputs of the conv (im2col rows) and of the linear (flattened ReLU(conv)), in float64."""
    patches = _np_im2col(x)  # (N*25, 9)
    n = x.shape[0]
    out = patches @ wc.reshape(wc.shape[0], -1).T + bc  # (N*25, 3), rows ordered (n, i, j)
    out = out.reshape(n, 5, 5, -1).transpose(0, 3, 1, 2)  # (N, 3, 5, 5)
    return patches, np.maximum(out, 0).reshape(n, -1)  # flatten (o, i, j) as nn.Flatten does


def _np_update(w: np.ndarray, rows_r, rows_f, alpha_r, alpha_f) -> np.ndarray:
    mr, mf = _np_projector(rows_r, alpha_r), _np_projector(rows_f, alpha_f)
    p = np.eye(mr.shape[0]) - (mf - mf @ mr)
    return (w.reshape(w.shape[0], -1) @ p.T).reshape(w.shape)


@pytest.fixture
def tiny_net_case(make_spec):
    """Conv2d(1,3,3,pad 1) -> ReLU -> Flatten -> Linear(75,4) on 5x5 images (5 <= 9: no window crop).

    20 images, labels i % 4, forget class 0 (5 images). n_samples=6 -> k = 6 // 3 = 2 retain samples per
    class, the first two of each retain class in dataset order: indices 1, 2, 3, 5, 6, 7; the forget
    batch (6 >= 5) is all of class 0. max_patches exceeds every patch count, so no patch is dropped.
    """
    ds = _DS(make_spec, 20, 4, 5)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(75, 4))
    cfg = Config(n_samples=6, alpha_r=100.0, alpha_f=3.0, max_patches=10_000, augment_samples=False,
                 retain_selection="first")
    x_norm = ((ds.images.double() / 255.0 - 0.5) / 0.25).numpy()  # the spec's mean/std
    retain_rows = np.array([1, 2, 3, 5, 6, 7])
    forget_rows = ds.forget_idx
    return ds, net, cfg, x_norm[retain_rows], x_norm[forget_rows]


def _expected(net, xr, xf, cfg, sequential: bool = False):
    wc, bc = net[0].weight.detach().double().numpy(), net[0].bias.detach().double().numpy()
    wl = net[3].weight.detach().double().numpy()
    pr, lr_in = _np_forward_inputs(xr, wc, bc)
    pf, lf_in = _np_forward_inputs(xf, wc, bc)
    wc_new = _np_update(wc, pr, pf, cfg.alpha_r, cfg.alpha_f)
    if sequential:  # the wrong order: the linear's inputs through the already-projected conv
        _, lr_in = _np_forward_inputs(xr, wc_new, bc)
        _, lf_in = _np_forward_inputs(xf, wc_new, bc)
    wl_new = _np_update(wl, lr_in, lf_in, cfg.alpha_r, cfg.alpha_f)
    return wc_new, wl_new


DECOMPOSITIONS = ["svd", "gram_eigh", "gram_solve"]


@pytest.mark.parametrize("decomposition", DECOMPOSITIONS)
@pytest.mark.parametrize("path", ["exact", "lowrank"])
def test_projection_matches_numpy(tiny_net_case, path, decomposition):
    # the conv has more patches than inputs (150 x 9: the d x d Gram matrix), the linear fewer samples than
    # inputs (6 x 75: the n x n form)
    ds, net, cfg, xr, xf = tiny_net_case
    cfg = dataclasses.replace(cfg, path=path, decomposition=decomposition)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    wc_new, wl_new = _expected(net, xr, xf, cfg)
    r, f = ds.loaders()
    torch.manual_seed(0)
    out = METHODS.get("deep_unlearning")(net, retain=r, forget=f, cfg=cfg, device="cpu")
    got_c = out[0].weight.detach().double().numpy()
    got_l = out[3].weight.detach().double().numpy()
    np.testing.assert_allclose(got_c, wc_new, rtol=1e-4, atol=1e-5 * np.abs(wc_new).max())
    np.testing.assert_allclose(got_l, wl_new, rtol=1e-4, atol=1e-5 * np.abs(wl_new).max())
    # the update really moved both layers (so the comparison above is not trivially true)
    assert np.abs(wc_new - before["0.weight"].double().numpy()).max() > 1e-3
    assert np.abs(wl_new - before["3.weight"].double().numpy()).max() > 1e-3
    # biases untouched, bit for bit
    assert torch.equal(out[0].bias, before["0.bias"]) and torch.equal(out[3].bias, before["3.bias"])


def test_selected_samples_are_first_k_per_retain_class(tiny_net_case):
    ds, net, cfg, xr, xf = tiny_net_case
    r, f = ds.loaders()
    got_r, got_f = select_samples(r, f, cfg)
    np.testing.assert_allclose(got_r.double().numpy(), xr, atol=1e-6)
    # the forget batch is all forget samples, in random order
    order = np.lexsort(got_f.double().numpy().reshape(len(got_f), -1).T)
    ref = np.lexsort(xf.reshape(len(xf), -1).T)
    np.testing.assert_allclose(got_f.double().numpy()[order], xf[ref], atol=1e-6)


# ----------------------------------------------------------------------------------------------
# (c) every projector comes from the ORIGINAL network's activations


def test_deeper_projectors_use_pre_projection_activations(tiny_net_case):
    ds, net, cfg, xr, xf = tiny_net_case
    cfg = dataclasses.replace(cfg, alpha_f=30.0)  # a larger conv update makes the two orders far apart
    _, wl_right = _expected(net, xr, xf, cfg)
    _, wl_wrong = _expected(net, xr, xf, cfg, sequential=True)
    gap = np.abs(wl_right - wl_wrong).max()
    assert gap > 1e-3  # the two orders give different answers on this case
    r, f = ds.loaders()
    torch.manual_seed(0)
    out = unlearn(net, retain=r, forget=f, cfg=cfg, device="cpu")
    got = out[3].weight.detach().double().numpy()
    assert np.abs(got - wl_right).max() < 0.01 * gap
    assert np.abs(got - wl_wrong).max() > 0.5 * gap


# ----------------------------------------------------------------------------------------------
# (d) only conv/linear weights change


def _randomise_bn_stats(model: nn.Module) -> None:
    g = torch.Generator().manual_seed(7)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            # non-default values, kept mild (positive shift) so no ReLU is dead on every input
            m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=g))
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
            m.bias.data.copy_(0.5 * torch.rand(m.bias.shape, generator=g) + 0.1)
            m.num_batches_tracked.fill_(3)


def _projected_weight_keys(model: nn.Module) -> list[str]:
    return [f"{n}.weight" for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


@pytest.mark.parametrize("name", ["vgg11_bn", "resnet18"])
def test_only_conv_and_linear_weights_change(make_spec, name):
    ds = _DS(make_spec, 40, 4, 8)
    torch.manual_seed(0)
    model = build_model(name, num_classes=4, in_channels=1, width=2)
    _randomise_bn_stats(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    r, f = ds.loaders()
    torch.manual_seed(0)
    out = unlearn(model, retain=r, forget=f, cfg=Config(n_samples=9, max_patches=500, augment_samples=False),
                  device="cpu")
    after = out.state_dict()
    weights = set(_projected_weight_keys(out))
    assert set(after) == set(before)
    for k, v in before.items():
        if k in weights:
            assert not torch.equal(after[k], v), f"{k} was not projected"
        else:
            assert torch.equal(after[k], v), f"{k} changed"  # biases, BN affine and running stats
    if name == "vgg11_bn":
        assert any(k.endswith("bias") for k in before if k.startswith("body"))  # conv biases were checked


def test_project_classifier_false_leaves_the_last_linear(make_spec):
    ds = _DS(make_spec, 40, 4, 8)
    torch.manual_seed(0)
    model = build_model("vgg11_bn", num_classes=4, in_channels=1, width=2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    r, f = ds.loaders()
    cfg = Config(n_samples=9, max_patches=500, augment_samples=False, project_classifier=False)
    out = unlearn(model, retain=r, forget=f, cfg=cfg, device="cpu").state_dict()
    assert torch.equal(out["classifier.6.weight"], before["classifier.6.weight"])
    assert not torch.equal(out["classifier.3.weight"], before["classifier.3.weight"])  # other linears are
    assert not torch.equal(out["body.0.weight"], before["body.0.weight"])
    # and with the default, the classifier is projected
    model2 = build_model("vgg11_bn", num_classes=4, in_channels=1, width=2)
    model2.load_state_dict(before)
    r, f = ds.loaders()
    out2 = unlearn(model2, retain=r, forget=f, cfg=dataclasses.replace(cfg, project_classifier=True),
                   device="cpu").state_dict()
    assert not torch.equal(out2["classifier.6.weight"], before["classifier.6.weight"])


# ----------------------------------------------------------------------------------------------
# (e) grouped and depthwise convolutions: one projection per group


@pytest.mark.parametrize("c_in,c_out,groups", [(4, 6, 2), (3, 3, 3), (2, 4, 2)],
                         ids=["grouped", "depthwise", "depthwise-x2"])
@pytest.mark.parametrize("decomposition", DECOMPOSITIONS)
@pytest.mark.parametrize("path", ["exact", "lowrank"])
def test_grouped_conv_projects_each_group_against_numpy(make_spec, c_in, c_out, groups, path, decomposition):
    # Conv2d(c_in, c_out, 3, pad 1, groups) -> ReLU -> Flatten -> Linear on 5x5 images: group j's weight block
    # is updated with projectors built from group j's input channels only (an independent numpy computation)
    n, k_cls = 24, 4
    g = torch.Generator().manual_seed(0)
    spec = make_spec(num_classes=k_cls, channels=c_in, size=5)
    images = torch.randint(0, 256, (n, c_in, 5, 5), generator=g, dtype=torch.uint8)
    labels = torch.arange(n) % k_cls
    forget_idx = np.flatnonzero(labels.numpy() == 0)
    retain_idx = np.flatnonzero(labels.numpy() != 0)
    r = Loader(images, labels, retain_idx, spec, batch_size=8, seed=0)
    f = Loader(images, labels, forget_idx, spec, batch_size=8, seed=1)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, groups=groups), nn.ReLU(), nn.Flatten(),
                        nn.Linear(c_out * 25, k_cls))
    cfg = Config(n_samples=6, alpha_r=100.0, alpha_f=3.0, max_patches=10_000, augment_samples=False, path=path,
                 decomposition=decomposition)
    x = ((images.double() / 255.0 - 0.5) / 0.25).numpy()
    # n_samples 6 -> the first 2 of each retain class; the forget batch (6 >= 6 forget images) is all of class 0
    xr = x[np.sort(np.concatenate([retain_idx[labels.numpy()[retain_idx] == c][:2] for c in (1, 2, 3)]))]
    xf = x[forget_idx]
    wc, bc = net[0].weight.detach().double().numpy(), net[0].bias.detach().double().numpy()
    wl = net[3].weight.detach().double().numpy()
    ci, co = c_in // groups, c_out // groups

    def inputs(xs):  # per group im2col rows, and the linear's input through the original grouped conv
        rows = [_np_im2col(xs[:, j * ci:(j + 1) * ci]) for j in range(groups)]
        outs = [rows[j] @ wc[j * co:(j + 1) * co].reshape(co, -1).T + bc[j * co:(j + 1) * co] for j in range(groups)]
        out = np.concatenate(outs, axis=1).reshape(len(xs), 5, 5, -1).transpose(0, 3, 1, 2)
        return rows, np.maximum(out, 0).reshape(len(xs), -1)

    (rr, lr_in), (rf, lf_in) = inputs(xr), inputs(xf)
    want_c = np.concatenate([_np_update(wc[j * co:(j + 1) * co], rr[j], rf[j], 100.0, 3.0) for j in range(groups)])
    want_l = _np_update(wl, lr_in, lf_in, 100.0, 3.0)
    torch.manual_seed(0)
    out = METHODS.get("deep_unlearning")(net, retain=r, forget=f, cfg=cfg, device="cpu")
    got_c = out[0].weight.detach().double().numpy()
    assert got_c.shape == wc.shape
    np.testing.assert_allclose(got_c, want_c, rtol=1e-4, atol=1e-5 * np.abs(want_c).max())
    np.testing.assert_allclose(out[3].weight.detach().double().numpy(), want_l, rtol=1e-4,
                               atol=1e-5 * np.abs(want_l).max())
    assert np.abs(want_c - wc).max() > 1e-3  # the update is not a no-op


def test_mobilenetv2_forgets_per_group(make_spec):
    # the registry's MobileNetV2 (depthwise 3x3 convs) runs; every conv/linear weight moves, nothing else
    ds = _DS(make_spec, 40, 4, 8)
    torch.manual_seed(0)
    model = build_model("mobilenetv2", num_classes=4, in_channels=1, width=4)
    assert any(m.groups > 1 for m in model.modules() if isinstance(m, nn.Conv2d))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    r, f = ds.loaders()
    torch.manual_seed(0)
    out = unlearn(model, retain=r, forget=f, cfg=Config(n_samples=9, max_patches=500, augment_samples=False),
                  device="cpu").state_dict()
    weights = set(_projected_weight_keys(model))
    for k, v in before.items():
        assert torch.isfinite(out[k].float()).all(), k
        assert torch.equal(out[k], v) == (k not in weights), k


# ----------------------------------------------------------------------------------------------
# (f) the decompositions: the same projector M = f(G / tr G) three ways


@pytest.mark.parametrize("n,d", [(50, 7), (7, 50), (12, 12)], ids=["n>d", "n<d", "n=d"])
@pytest.mark.parametrize("alpha", [100.0, 3.0, 1.0, 0.5])
@pytest.mark.parametrize("decomposition", ["gram_eigh", "gram_solve"])
def test_decompositions_give_the_svd_projector(n, d, alpha, decomposition):
    g = torch.Generator().manual_seed(1)
    rows = torch.relu(torch.randn(n, d, generator=g, dtype=torch.float64))
    want = projector(*scaled_basis(rows, alpha))
    got = basis_matrix(make_basis(rows, alpha, decomposition))
    torch.testing.assert_close(got, want, rtol=0, atol=1e-10)
    w = torch.randn(5, d, generator=g, dtype=torch.float64)
    torch.testing.assert_close(apply_basis(w, make_basis(rows, alpha, decomposition)), w @ want, rtol=0, atol=1e-10)


@pytest.mark.parametrize("decomposition", ["gram_eigh", "gram_solve"])
def test_decompositions_per_group_stack(decomposition):
    g = torch.Generator().manual_seed(2)
    stack = torch.randn(3, 40, 6, generator=g, dtype=torch.float64)  # 3 groups, 40 patches, 6 inputs each
    got = basis_matrix(make_basis(stack, 100.0, decomposition))
    assert got.shape == (3, 6, 6)
    for j in range(3):
        torch.testing.assert_close(got[j], projector(*scaled_basis(stack[j], 100.0)), rtol=0, atol=1e-10)


@pytest.mark.parametrize("decomposition", DECOMPOSITIONS)
def test_dead_activations_leave_the_weight(decomposition):
    w = torch.randn(3, 4, dtype=torch.float64)
    zero = make_basis(torch.zeros(10, 4, dtype=torch.float64), 3.0, decomposition)
    live = make_basis(torch.randn(10, 4, dtype=torch.float64), 100.0, decomposition)
    torch.testing.assert_close(basis_matrix(zero), torch.zeros(4, 4, dtype=torch.float64))
    for path in ("exact", "lowrank"):
        torch.testing.assert_close(updated_weight(w, live, zero, path), w)


def test_gram_solve_float32_is_as_close_to_float64_as_the_svd():
    # activation-like rows (ReLU of correlated features, a decaying spectrum): against the float64 SVD, the
    # float32 Gram solve is no further off than the float32 SVD itself (up to a factor 10)
    g = torch.Generator().manual_seed(3)
    z = torch.randn(600, 16, generator=g, dtype=torch.float64) @ torch.randn(16, 64, generator=g, dtype=torch.float64)
    rows = torch.relu(z + 0.05 * torch.randn(600, 64, generator=g, dtype=torch.float64))
    ref = projector(*scaled_basis(rows, 100.0))
    err = {dec: float((basis_matrix(make_basis(rows.float(), 100.0, dec)).double() - ref).abs().max())
           for dec in DECOMPOSITIONS}
    assert err["svd"] < 1e-3
    assert err["gram_solve"] <= 10 * err["svd"] + 1e-6, err
    assert err["gram_eigh"] <= 10 * err["svd"] + 1e-6, err


@pytest.mark.parametrize("name", ["resnet18", "vgg11_bn", "mobilenetv2"])
def test_whole_model_decompositions_agree(make_spec, name):
    ds = _DS(make_spec, 40, 4, 12)
    torch.manual_seed(0)
    model = build_model(name, num_classes=4, in_channels=1, width=2).eval()
    out = {}
    for dec in DECOMPOSITIONS:
        torch.manual_seed(123)
        r, f = ds.loaders()
        cfg = Config(n_samples=9, max_patches=300, augment_samples=False, decomposition=dec)
        out[dec] = unlearn(copy.deepcopy(model), retain=r, forget=f, cfg=cfg, device="cpu").state_dict()
    for k, v in model.state_dict().items():
        if v.is_floating_point():
            for dec in ("gram_eigh", "gram_solve"):
                torch.testing.assert_close(out[dec][k], out["svd"][k], rtol=1e-4,
                                           atol=1e-5 * max(1.0, float(v.abs().max())))


def test_invalid_decomposition(make_spec):
    ds = _DS(make_spec, 12, 3, 5)
    r, f = ds.loaders()
    with pytest.raises(ValueError, match="svd, gram_eigh, gram_solve"):
        unlearn(nn.Sequential(nn.Flatten(), nn.Linear(25, 3)), retain=r, forget=f, cfg=Config(decomposition="qr"),
                device="cpu")
    with pytest.raises(ValueError, match="alpha must be > 0"):
        make_basis(torch.randn(5, 3), 0.0, "gram_solve")


def _unfold_patches(x, conv, max_patches):
    """The reference: every patch by unfold, then the random subset (the draw sampled_patches must repeat)."""
    cols = torch.nn.functional.unfold(x, conv.kernel_size, dilation=conv.dilation, padding=conv.padding,
                                      stride=conv.stride)
    rows = cols.transpose(1, 2).reshape(-1, cols.shape[1])
    return rows[torch.randperm(rows.shape[0])[:max_patches]]


@pytest.mark.parametrize("conv", [nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(3, 4, 3, stride=2, padding=1),
                                  nn.Conv2d(3, 4, 1, stride=2), nn.Conv2d(2, 4, 3, padding=2, dilation=2),
                                  nn.Conv2d(4, 4, 3, padding=1, groups=2), nn.Conv2d(3, 2, (3, 1), padding=(1, 0))],
                         ids=["3x3", "stride2", "1x1s2", "dilated", "grouped", "3x1"])
@pytest.mark.parametrize("max_patches", [7, 10_000])
def test_sampled_patches_equal_unfold_bit_for_bit(conv, max_patches):
    from unlearnlib.methods.deep_unlearning import sampled_patches

    x = torch.randn(5, conv.in_channels, 8, 7)
    torch.manual_seed(11)
    want = _unfold_patches(x, conv, max_patches)
    torch.manual_seed(11)
    got = sampled_patches(x, conv, max_patches)
    assert got.shape == want.shape and torch.equal(got, want)


def test_conv_patches_same_padding_falls_back_to_unfold():
    from unlearnlib.methods.deep_unlearning import conv_patches

    conv, explicit = nn.Conv2d(2, 3, 3, padding="same"), nn.Conv2d(2, 3, 3, padding=1)
    x = torch.randn(4, 2, 6, 6)
    torch.manual_seed(5)
    got = conv_patches(x, conv, 50)
    torch.manual_seed(5)
    want = _unfold_patches(x, explicit, 50)
    assert torch.equal(got, want)


# ----------------------------------------------------------------------------------------------
# (g) the ViT, projected as the official code does (models/vit.py of class_forgetting e27aeb2)

# ||W_new - W||_F per projected layer from the OFFICIAL code (VisionTransformer.get_scaled_projections with
# alpha_r 100 / alpha_f 3, main.py get_projection_matrix, project_weights; float64, torch 2.14) on the tiny ViT of
# _official_case (its weights copied into the official model by name: patch_embed -> conv_proj, attn.qkv ->
# self_attention.in_proj_weight/bias, attn.out -> out_proj, mlp.0 / mlp.2 -> mlp.0 / mlp.3, fc -> heads.head).
# The two models' forward passes agreed to 4e-15; our projection (every decomposition and path) to 2.2e-15 in
# every weight (svd/exact 1.1e-15, the default gram_solve/lowrank 8.9e-16), the largest update being 0.115.
OFFICIAL_VIT_UPDATE_NORMS = {
    "patch_embed.weight": 6.089511433433e-01,
    "blocks.0.attn.qkv.weight": 2.107827115934e-01,
    "blocks.0.attn.out.weight": 1.856194706483e-01,
    "blocks.0.mlp.0.weight": 2.103249753627e-01,
    "blocks.0.mlp.2.weight": 2.008525035597e-01,
    "blocks.1.attn.qkv.weight": 2.168094571259e-01,
    "blocks.1.attn.out.weight": 1.392539426558e-01,
    "blocks.1.mlp.0.weight": 2.243815940314e-01,
    "blocks.1.mlp.2.weight": 3.545911372686e-01,
    "fc.weight": 6.153295629100e-02,
}


def _official_case():
    """A 2-block ViT (width 8, 2 heads, 4-px patches of 3x8x8 images: 4 patches + the class token), every
    parameter drawn from a seeded float64 generator (LayerNorm weights around 1); 9 retain and 6 forget images.
    8 px <= 3 * 4: no conv window crop; 45 / 30 token rows < max_patches: no row is dropped."""
    torch.manual_seed(0)
    model = build_model("vit", num_classes=3, in_channels=3, width=8, depth=2, heads=2, patch=4,
                        image_size=8).double().eval()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            ln_weight = "ln" in name and name.endswith("weight")
            p.copy_(0.5 * torch.randn(p.shape, generator=g, dtype=torch.float64) + (1.0 if ln_weight else 0.0))
    g = torch.Generator().manual_seed(1)
    xr = torch.randn(9, 3, 8, 8, generator=g, dtype=torch.float64)
    xf = torch.randn(6, 3, 8, 8, generator=g, dtype=torch.float64) + 0.5
    return model, xr, xf


@pytest.mark.parametrize("decomposition,path", [("svd", "exact"), ("gram_solve", "lowrank")])
def test_vit_projection_matches_the_official_code(decomposition, path):
    from unlearnlib.methods.deep_unlearning import project

    model, xr, xf = _official_case()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = Config(alpha_r=100.0, alpha_f=3.0, max_patches=10_000, decomposition=decomposition, path=path)
    after = project(model, xr, xf, cfg).state_dict()
    for k, want in OFFICIAL_VIT_UPDATE_NORMS.items():
        assert float((after[k] - before[k]).norm()) == pytest.approx(want, rel=1e-9), k
    # LayerNorm, every bias, the positions and the class token are untouched, bit for bit
    untouched = set(before) - set(OFFICIAL_VIT_UPDATE_NORMS)
    assert {"class_token", "pos_embedding", "ln.weight", "blocks.0.attn.qkv.bias", "fc.bias"} <= untouched
    for k in untouched:
        assert torch.equal(after[k], before[k]), k


def _rows_seen(monkeypatch, model, cfg, x):
    """The number of representation rows each layer's basis is built from (one forward pass)."""
    import unlearnlib.methods.deep_unlearning as du

    seen = {}
    real = du.make_basis

    def spy(rows, alpha, decomposition="svd"):
        seen[len(seen)] = (rows.shape[-2], rows.shape[-1])
        return real(rows, alpha, decomposition)

    monkeypatch.setattr(du, "make_basis", spy)
    layers = du.projected_layers(model)
    du.scaled_bases(model, x, 100.0, layers, cfg.max_patches, "svd", cfg.token_rows)
    assert len(seen) == len(layers)
    return {n: seen[i] for i, n in enumerate(layers)}


@pytest.mark.parametrize("token_rows", ["official", "all", "subsample"])
def test_vit_token_rows(monkeypatch, token_rows):
    # 12 images of 3x8x8 -> 12 * 5 = 60 token rows per token layer; max_patches 7. Official: the packed Q/K/V
    # projection and the out-projection get 7 random token rows, the MLP linears all 60, the head one row per image
    # (the class token), the patch embedding 4 patches per image (8 <= 12: no window), cut to 7
    model, _, _ = _official_case()
    x = torch.randn(12, 3, 8, 8, dtype=torch.float64)
    cfg = Config(max_patches=7, token_rows=token_rows)
    rows = _rows_seen(monkeypatch, model, cfg, x)
    mlp = {"all": 60, "official": 60, "subsample": 7}[token_rows]
    attn = {"all": 60, "official": 7, "subsample": 7}[token_rows]
    assert rows["patch_embed"] == (7, 48)
    assert rows["fc"] == (12, 8)
    for b in ("blocks.0", "blocks.1"):
        assert rows[f"{b}.attn.qkv"] == (attn, 8) and rows[f"{b}.attn.out"] == (attn, 8)
        assert rows[f"{b}.mlp.0"] == (mlp, 8) and rows[f"{b}.mlp.2"] == (mlp, 32)


def test_vit_token_rows_are_the_tokens():
    # each row of a token layer's matrix is one token of the layer's input (batch, tokens, d), not a flattened
    # sample: the rows of the first block's MLP input are LN2 of the tokens after attention
    from unlearnlib.methods.deep_unlearning import layer_input_matrix

    model, xr, _ = _official_case()
    blk = model.blocks[0]
    with torch.no_grad():
        t = model.tokens(xr)
        t = t + blk.attn(blk.ln1(t))
        want = blk.ln2(t).reshape(-1, 8)
    got = layer_input_matrix(blk.ln2(t), blk.mlp[0], max_patches=5, sample_tokens=False)
    assert torch.equal(got, want)
    sub = layer_input_matrix(blk.ln2(t), blk.mlp[0], max_patches=5, sample_tokens=True)
    assert sub.shape == (5, 8) and all(any(torch.equal(r, w) for w in want) for r in sub)


def test_vit_unlearn_end_to_end(make_spec):
    # the method's own entry on the registry's ViT (28x28 would be 49 patches; here 12x12, 3-px patches: the
    # patch embedding takes the 9x9 window path) runs, and changes exactly the conv/linear weights
    ds = _DS(make_spec, 40, 4, 12)
    torch.manual_seed(0)
    model = build_model("vit", num_classes=4, in_channels=1, width=8, depth=1, heads=2, patch=3, image_size=12)
    torch.nn.init.normal_(model.head.weight, std=0.5)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    r, f = ds.loaders()
    out = unlearn(model, retain=r, forget=f, cfg=Config(n_samples=9, max_patches=50, augment_samples=False),
                  device="cpu").state_dict()
    weights = set(_projected_weight_keys(model))
    assert weights == {"patch_embed.weight", "blocks.0.attn.qkv.weight", "blocks.0.attn.out.weight",
                       "blocks.0.mlp.0.weight", "blocks.0.mlp.2.weight", "fc.weight"}
    for k, v in before.items():
        assert torch.isfinite(out[k]).all(), k
        assert torch.equal(out[k], v) == (k not in weights), k


def test_invalid_token_rows(make_spec):
    ds = _DS(make_spec, 12, 3, 5)
    r, f = ds.loaders()
    with pytest.raises(ValueError, match="official, all, subsample"):
        unlearn(nn.Sequential(nn.Flatten(), nn.Linear(25, 3)), retain=r, forget=f, cfg=Config(token_rows="some"),
                device="cpu")
