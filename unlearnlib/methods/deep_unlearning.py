r"""Deep Unlearning (Kodge, Saha, Roy; TMLR 2024): gradient-free class forgetting by SVD projection.

For every conv and linear layer, the layer's *input* activations on a few retain samples and a few
forget samples (one forward pass each, through the original weights, model in eval mode) form
representation matrices :math:`R_r, R_f` (conv: im2col patches of one random :math:`3k\times 3k`
window, at most ``max_patches`` rows). Their thin SVDs :math:`R = U S V^\top` give scaled projectors

.. math::  M = U \operatorname{diag}(\lambda) U^\top,\quad
           \lambda_i = \frac{\alpha s_i}{(\alpha-1)s_i+1},\quad s_i = \sigma_i^2/\textstyle\sum_j\sigma_j^2

with :math:`\alpha_r` for the retain space and :math:`\alpha_f` for the forget space. The shared part
is removed, :math:`P = I - (M_f - M_f M_r)`, and every layer's weight becomes
:math:`W \leftarrow W P^\top` (conv kernels flattened to out x (C_in k k)). Biases, BatchNorm and all
other parameters are untouched.

Two numerically equivalent paths: ``exact`` forms the d x d matrices; ``lowrank`` applies
:math:`W P^\top = W - (W - W M_r) M_f` with the factors :math:`U, \lambda`, never forming a d x d
matrix (memory O(d k)).

Three ways to obtain :math:`M` (``decomposition``), the same matrix in exact arithmetic. :math:`M` is a function
of the normalised Gram matrix :math:`\hat G = R R^\top / \lVert R\rVert_F^2`, whose eigenvalues are the
:math:`s_i`: :math:`M = f(\hat G)` with :math:`f(x) = \alpha x / ((\alpha-1)x+1)`.

- ``svd`` (upstream): the thin SVD of :math:`R` (d x n).
- ``gram_eigh``: the eigendecomposition of the smaller Gram matrix (:math:`R R^\top`, d x d, when n >= d, else
  :math:`R^\top R`, n x n, with :math:`U = R V \Sigma^{-1}`).
- ``gram_solve`` (default): no decomposition at all. :math:`f(x) = \alpha x\,(1 + (\alpha-1)x)^{-1}`, so
  :math:`M = \alpha \hat G A^{-1}` with :math:`A = I + (\alpha-1)\hat G`, symmetric positive definite with
  eigenvalues in :math:`[1, \alpha]` (condition number at most :math:`\alpha`): one Cholesky factorisation and
  triangular solves. With n < d the n x n form :math:`M = \alpha B (I_n + (\alpha-1) B^\top B)^{-1} B^\top`,
  :math:`B = R / \lVert R\rVert_F` (push-through identity), keeps memory O(d n). Cost: the Gram product
  (n d^2) and d^3 / 3 for the factorisation, against about 4 n d^2 + 8 d^3 for the SVD.

Grouped and depthwise convolutions (MobileNetV2): a conv with ``groups`` = g computes its output channels
:math:`[j\,C_{out}/g, (j+1)\,C_{out}/g)` from its input channels :math:`[j\,C_{in}/g, (j+1)\,C_{in}/g)` only,
so group :math:`j`'s weight block (:math:`C_{out}/g \times (C_{in}/g)\,k\,k`) acts on that group's patches alone.
Each group gets its own representation matrices (the group's columns of the same im2col patches), its own
projector and its own update: a batch of g independent projections (a depthwise 3x3 conv: g projections in
9 dimensions). Upstream has no grouped architecture; with ``groups`` = 1 this is the code's projection.

Transformers (the registry's ``vit``): a linear layer applied to tokens sees an input of shape (batch, tokens, d);
each token is one row of its representation matrix (one column of R), as each im2col patch is for a conv. The
official ViT walker (models/vit.py, ``EncoderBlock.get_scaled_projections``, lines 245-254, 264-273, 283-291;
``VisionTransformer.get_scaled_projections``, lines 689-690, 718-733) builds, per encoder block, one matrix for the
packed Q/K/V projection from the LN1 output tokens and one for the attention out-projection from the attention
output tokens, both shuffled and cut to ``max_patches`` rows, and one for each of the two MLP linears from *all*
tokens (not subsampled); the patch-embedding conv takes the conv rule (one random 3k x 3k window, e.g. 12 x 12 px
-> 9 patches per image for 4-px patches); the head takes the class token after the final LayerNorm. Q, K and V
share the one projector (``EncoderBlock.project_weights``, lines 296-300: the three row blocks of
``in_proj_weight`` each times P^T, which is the packed 3d x d weight times P^T). LayerNorm, every bias, the
positions and the class token are not conv/linear weights and stay untouched. ``token_rows`` selects the rows:
``official`` (the above, default), ``all`` (every token of every layer) or ``subsample`` (every token layer cut to
``max_patches``).

Source: official code sangamesh-kodge/class_forgetting (master e27aeb2): models/model_utils.py,
models/vgg.py, models/resnet.py, models/vit.py, main.py; defaults from scripts/our_cifar10.sh.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..models.vit import Attention
from ..schema import check_range
from . import no_steps, register_method


@dataclass
class Config:
    n_samples: int = 900  # --our-samples, scripts/our_cifar10.sh (CIFAR-10: 900 -> 100 per retain class)
    alpha_r: float = 100.0  # --our-alpha-r, scripts/our_cifar10.sh
    alpha_f: float = 3.0  # --our-alpha-f, scripts/our_cifar10.sh
    max_patches: int = 10000  # --our-max-patches default (main.py)
    augment_samples: bool = True  # upstream default: SVD samples drawn through the training transform
    #                               (legacy code: no augmentation). Which the paper used is UNCONFIRMED.
    # "first" k per retain class in dataset order (upstream) | "random"
    retain_selection: Literal["first", "random"] = "first"
    path: Literal["exact", "lowrank"] = "lowrank"  # "exact" (d x d matrices, reference) | "lowrank" (never forms d x d)
    # how M = f(G / tr G) is obtained: "svd" (upstream: thin SVD of R) | "gram_eigh" (eigendecomposition of the
    # smaller Gram matrix) | "gram_solve" (one Cholesky solve with I + (alpha - 1) G / tr G; no decomposition).
    # The same matrix in exact arithmetic; gram_solve is the default because its difference is far below the
    # method's own run-to-run variation (benchmarks/deep_unlearning.py numerics, cpu profile, ResNet-18 w8, 5 method
    # seeds: projected weights within 0.7-1.9e-5 of the SVD run's, relative to the update, where two seeds of the SVD
    # run differ by 0.69-0.79; identical forget/retain accuracies) and the call is 4.9x faster (median 1.35 vs 6.67 s)
    decomposition: Literal["svd", "gram_eigh", "gram_solve"] = "gram_solve"
    project_classifier: bool = True  # upstream projects the final layer too (its flag has no effect)
    # rows of a token layer's (transformer linear's) representation matrix: "official" (models/vit.py: the Q/K/V
    # and out-projection inputs cut to max_patches random tokens, the MLP inputs all tokens) | "all" (every token)
    # | "subsample" (every token layer cut to max_patches). CNNs have no token layer: no effect there
    token_rows: Literal["official", "all", "subsample"] = "official"

    def check(self) -> None:
        """Ranges, checked when the YAML loads (n_samples below the number of retain classes fails at the call)."""
        check_range(self, "n_samples", "max_patches", ge=1)
        check_range(self, "alpha_r", "alpha_f", gt=0)


def importance(s: torch.Tensor, alpha: float) -> torch.Tensor:
    """lambda_i = alpha * s_i / ((alpha - 1) * s_i + 1) for energy ratios s_i = sigma_i^2 / sum sigma^2."""
    return alpha * s / ((alpha - 1.0) * s + 1.0)


def conv_patches(x: torch.Tensor, conv: nn.Conv2d, max_patches: int) -> torch.Tensor:
    """im2col rows (n x C_in*k*k) of one random 3k x 3k window (same place for all images), <= max_patches.

    Upstream draws the row offset from the width and the column offset from the height; for square
    inputs this makes no difference.
    """
    kh, kw = conv.kernel_size
    if x.shape[-1] > 3 * kw:
        i = int(torch.randint(0, x.shape[-2] - 3 * kh + 1, (1,)))
        j = int(torch.randint(0, x.shape[-1] - 3 * kw + 1, (1,)))
        x = x[:, :, i:i + 3 * kh, j:j + 3 * kw]
    if isinstance(conv.padding, str):  # "same"/"valid": unfold's own padding rules
        cols = F.unfold(x, conv.kernel_size, dilation=conv.dilation, padding=_explicit_padding(conv),
                        stride=conv.stride)
        rows = cols.transpose(1, 2).reshape(-1, cols.shape[1])
        keep = torch.randperm(rows.shape[0], device=rows.device)[:max_patches]
        return rows[keep]
    return sampled_patches(x, conv, max_patches)


def _explicit_padding(conv: nn.Conv2d) -> tuple[int, int]:
    if conv.padding == "valid":
        return (0, 0)
    return tuple(d * (k - 1) // 2 for d, k in zip(conv.dilation, conv.kernel_size, strict=True))


def sampled_patches(x: torch.Tensor, conv: nn.Conv2d, max_patches: int) -> torch.Tensor:
    """The rows ``unfold`` would give, in the order of the same random subset, built for the kept patches only.

    ``F.unfold`` materialises every patch of every image (for a 256-channel 8 x 8 map and 900 images: 57600 x 2304
    floats) to keep ``max_patches`` of them; here the same ``randperm`` draw picks (image, position) pairs and
    only those patches are gathered: the same values in the same order, bit for bit, with memory O(max_patches d).
    """
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = conv.kernel_size, conv.stride, conv.padding, conv.dilation
    oh = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    ow = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    keep = torch.randperm(n * oh * ow, device=x.device)[:max_patches]
    img, pos = keep // (oh * ow), keep % (oh * ow)
    top, left = (pos // ow) * sh, (pos % ow) * sw
    xp = F.pad(x, (pw, pw, ph, ph))
    ki = torch.arange(kh, device=x.device) * dh
    kj = torch.arange(kw, device=x.device) * dw
    ch = torch.arange(c, device=x.device)
    patches = xp[img[:, None, None, None], ch[None, :, None, None], (top[:, None] + ki)[:, None, :, None],
                 (left[:, None] + kj)[:, None, None, :]]
    return patches.reshape(len(keep), c * kh * kw)


def layer_groups(layer: nn.Module) -> int:
    return int(getattr(layer, "groups", 1)) if isinstance(layer, nn.Conv2d) else 1


def layer_input_matrix(x: torch.Tensor, layer: nn.Module, max_patches: int,
                       sample_tokens: bool = True) -> torch.Tensor:
    """R^T: one row per sample (linear), per token (a linear applied to (batch, tokens, d) inputs) or per patch
    (conv); columns = the layer's input dimension d. Token rows are cut to ``max_patches`` random ones when
    ``sample_tokens`` (official: the attention layers). A conv with g > 1 groups: a (g, n, d / g) stack, group j's
    columns of the same patches (unfold orders the columns channel-major, so group j's input channels are one
    contiguous block)."""
    if isinstance(layer, nn.Conv2d):
        rows = conv_patches(x, layer, max_patches)
        g = layer_groups(layer)
        if g > 1:
            return rows.reshape(rows.shape[0], g, -1).transpose(0, 1)
        return rows
    if x.dim() > 2 and isinstance(layer, nn.Linear):  # tokens: each one a row
        rows = x.reshape(-1, x.shape[-1])
        if sample_tokens:
            rows = rows[torch.randperm(rows.shape[0], device=rows.device)[:max_patches]]
        return rows
    return x.reshape(x.shape[0], -1)


def sampled_token_layers(model: nn.Module, layers: dict[str, nn.Module], token_rows: str = "official") -> set[str]:
    """The layers whose token rows are cut to ``max_patches``: ``official``, the linears of attention modules (the
    packed Q/K/V projection and the out-projection); ``subsample``, every layer; ``all``, none."""
    if token_rows == "all":
        return set()
    if token_rows == "subsample":
        return set(layers)
    if token_rows != "official":
        raise ValueError(f"deep_unlearning token_rows {token_rows!r}; valid: official, all, subsample")
    inside = {id(m) for a in model.modules() if isinstance(a, Attention) for m in a.children()}
    return {n for n, m in layers.items() if id(m) in inside}


def scaled_basis(rows: torch.Tensor, alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(U, lambda) of the thin SVD of R = rows^T (d x n): M = U diag(lambda) U^T. A (g, n, d) stack of rows gives
    a (g, d, r) stack of bases and (g, r) lambdas, one per group."""
    u, s, _ = torch.linalg.svd(rows.transpose(-1, -2), full_matrices=False)
    energy = s ** 2
    ratio = energy / energy.sum(-1, keepdim=True).clamp_min(torch.finfo(energy.dtype).tiny)
    return u, importance(ratio, alpha)


def _energy_ratio(energy: torch.Tensor) -> torch.Tensor:
    return energy / energy.sum(-1, keepdim=True).clamp_min(torch.finfo(energy.dtype).tiny)


def scaled_basis_eigh(rows: torch.Tensor, alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(U, lambda) as :func:`scaled_basis`, from the eigendecomposition of the smaller Gram matrix of ``rows``
    (n x d, or a (g, n, d) stack): R R^T (d x d) when n >= d, else R^T R (n x n) with U = R V / sigma. Directions
    of a zero eigenvalue get lambda = 0 (and, for the n x n form, a zero column in U)."""
    n, d = rows.shape[-2], rows.shape[-1]
    if n >= d:
        evals, u = torch.linalg.eigh(rows.transpose(-1, -2) @ rows)
        energy = evals.clamp_min(0).flip(-1)
        u = u.flip(-1)
    else:
        evals, v = torch.linalg.eigh(rows @ rows.transpose(-1, -2))
        energy = evals.clamp_min(0).flip(-1)
        v = v.flip(-1)
        eps = torch.finfo(rows.dtype).eps * energy[..., :1] * n
        keep = energy > eps
        sigma = energy.sqrt().where(keep, torch.ones_like(energy))
        u = (rows.transpose(-1, -2) @ v) / sigma.unsqueeze(-2) * keep.unsqueeze(-2)
        energy = energy * keep
    return u, importance(_energy_ratio(energy), alpha)


class GramProjector:
    """M = f(G / tr G) applied through one Cholesky solve (``decomposition="gram_solve"``), never decomposed.

    Keeps the normalised Gram matrix Ĝ (d x d) when n >= d, else B = R / ||R||_F (d x n); per group for a
    (g, n, d) stack of rows. ``apply(w)`` returns W M (M is symmetric), ``matrix()`` M itself."""

    def __init__(self, rows: torch.Tensor, alpha: float) -> None:
        if not alpha > 0:
            raise ValueError(f"deep_unlearning: alpha must be > 0 for gram_solve, got {alpha}")
        self.alpha = float(alpha)
        tr = rows.square().sum((-2, -1), keepdim=True).clamp_min(torch.finfo(rows.dtype).tiny)
        n, d = rows.shape[-2], rows.shape[-1]
        self.dual = n < d
        if self.dual:
            self.b = rows.transpose(-1, -2) / tr.sqrt()  # d x n
        else:
            self.g = (rows.transpose(-1, -2) @ rows) / tr  # d x d

    def _factor(self) -> torch.Tensor:
        """Cholesky factor of I + (alpha - 1) Ĝ (d x d), or of I_n + (alpha - 1) B^T B (n x n)."""
        inner = self.b.transpose(-1, -2) @ self.b if self.dual else self.g
        a = inner * (self.alpha - 1.0)
        a.diagonal(dim1=-2, dim2=-1).add_(1.0)
        return torch.linalg.cholesky(a)

    def apply(self, w: torch.Tensor) -> torch.Tensor:
        """W M for W of shape (..., out, d)."""
        lower = self._factor()
        if self.dual:  # W M = alpha (W B) K^-1 B^T
            wb = w @ self.b
            return self.alpha * torch.cholesky_solve(wb.transpose(-1, -2), lower).transpose(-1, -2) @ \
                self.b.transpose(-1, -2)
        # W M = alpha (W Ĝ) A^-1: A and Ĝ commute and are symmetric
        return self.alpha * torch.cholesky_solve((w @ self.g).transpose(-1, -2), lower).transpose(-1, -2)

    def matrix(self) -> torch.Tensor:
        d = self.b.shape[-2] if self.dual else self.g.shape[-1]
        eye = torch.eye(d, dtype=(self.b if self.dual else self.g).dtype,
                        device=(self.b if self.dual else self.g).device)
        return self.apply(eye.expand(*self._batch_shape(), d, d))

    def _batch_shape(self) -> tuple[int, ...]:
        return tuple((self.b if self.dual else self.g).shape[:-2])


def make_basis(rows: torch.Tensor, alpha: float, decomposition: str = "svd"):
    """The retain or forget space of one layer from its input rows: (U, lambda) for ``svd``/``gram_eigh``, a
    :class:`GramProjector` for ``gram_solve``."""
    if decomposition == "svd":
        return scaled_basis(rows, alpha)
    if decomposition == "gram_eigh":
        return scaled_basis_eigh(rows, alpha)
    if decomposition == "gram_solve":
        return GramProjector(rows, alpha)
    raise ValueError(f"deep_unlearning decomposition {decomposition!r}; valid: svd, gram_eigh, gram_solve")


def apply_basis(w2: torch.Tensor, basis) -> torch.Tensor:
    """W M for a basis of :func:`make_basis` (M = U diag(lambda) U^T, or a Gram projector)."""
    if isinstance(basis, GramProjector):
        return basis.apply(w2)
    u, lam = basis
    return ((w2 @ u) * lam.unsqueeze(-2)) @ u.transpose(-1, -2)


def basis_matrix(basis) -> torch.Tensor:
    """M as a d x d matrix (a (g, d, d) stack for grouped convolutions)."""
    if isinstance(basis, GramProjector):
        return basis.matrix()
    return projector(*basis)


def _groups_of(basis) -> int:
    """The number of groups a basis was made for (1 for an ungrouped layer)."""
    if isinstance(basis, GramProjector):
        shape = basis._batch_shape()
        return shape[0] if shape else 1
    return basis[0].shape[0] if basis[0].dim() == 3 else 1


def updated_weight(w: torch.Tensor, retain_basis, forget_basis, path: str = "lowrank") -> torch.Tensor:
    """W P^T for bases of any decomposition: ``exact`` forms the d x d matrices, ``lowrank`` applies them."""
    g = _groups_of(retain_basis)
    w2 = w.reshape(g, w.shape[0] // g, -1) if g > 1 else w.flatten(1)
    if path == "exact":
        mr, mf = basis_matrix(retain_basis), basis_matrix(forget_basis)
        p = torch.eye(w2.shape[-1], dtype=w2.dtype, device=w2.device) - (mf - mf @ mr)
        return (w2 @ p.transpose(-1, -2)).reshape(w.shape)
    a = w2 - apply_basis(w2, retain_basis)
    return (w2 - apply_basis(a, forget_basis)).reshape(w.shape)


def projected_layers(model: nn.Module, project_classifier: bool = True) -> dict[str, nn.Module]:
    """Every conv and linear layer, in module order (the last linear is the classifier)."""
    layers = {n: m for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
    if not project_classifier:
        last_linear = [n for n, m in layers.items() if isinstance(m, nn.Linear)][-1:]
        for n in last_linear:
            layers.pop(n)
    return layers


@torch.no_grad()
def scaled_bases(model: nn.Module, x: torch.Tensor, alpha: float, layers: dict[str, nn.Module],
                 max_patches: int, decomposition: str = "svd", token_rows: str = "official") -> dict[str, object]:
    """One forward pass of ``x``; for each layer, the basis (:func:`make_basis`) of its input representation
    matrix: (U, lambda) for ``svd`` and ``gram_eigh``."""
    bases: dict[str, object] = {}
    hooks = []
    sampled = sampled_token_layers(model, layers, token_rows)
    for name, layer in layers.items():
        def hook(mod, inputs, _out, name=name):
            rows = layer_input_matrix(inputs[0].detach(), mod, max_patches, sample_tokens=name in sampled)
            bases[name] = make_basis(rows, alpha, decomposition)
        hooks.append(layer.register_forward_hook(hook))
    try:
        model.eval()
        model(x)
    finally:
        for h in hooks:
            h.remove()
    return bases


def projector(u: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    return (u * lam.unsqueeze(-2)) @ u.transpose(-1, -2)


def _grouped(w: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """The weight as (out, d), or as (g, out / g, d / g) when the bases are a (g, d / g, r) stack."""
    if u.dim() == 3:
        g = u.shape[0]
        return w.reshape(g, w.shape[0] // g, -1)
    return w.flatten(1)


def updated_weight_exact(w: torch.Tensor, ur, lr_, uf, lf) -> torch.Tensor:
    """W P^T with P = I - (M_f - M_f M_r), forming the d x d matrices (reference path); per group for a
    (g, d, r) stack of bases."""
    w2 = _grouped(w, ur)
    mr, mf = projector(ur, lr_), projector(uf, lf)
    p = torch.eye(w2.shape[-1], dtype=w2.dtype, device=w2.device) - (mf - mf @ mr)
    return (w2 @ p.transpose(-1, -2)).reshape(w.shape)


def updated_weight_lowrank(w: torch.Tensor, ur, lr_, uf, lf) -> torch.Tensor:
    """W P^T = W - (W - W M_r) M_f, using only the (d x k) factors; per group for a (g, d, r) stack."""
    w2 = _grouped(w, ur)
    a = w2 - ((w2 @ ur) * lr_.unsqueeze(-2)) @ ur.transpose(-1, -2)
    return (w2 - ((a @ uf) * lf.unsqueeze(-2)) @ uf.transpose(-1, -2)).reshape(w.shape)


def select_samples(retain, forget, cfg: Config) -> tuple[torch.Tensor, torch.Tensor]:
    """Upstream sample selection: first k (= n_samples // #retain classes) per retain class in dataset
    order, and n_samples random forget samples (all when fewer)."""
    labels = retain.labels.numpy()
    classes = np.unique(labels)
    k = cfg.n_samples // max(len(classes), 1)
    if k < 1:
        raise ValueError(f"deep_unlearning: n_samples={cfg.n_samples} gives 0 samples for each of "
                         f"{len(classes)} retain classes")
    if cfg.retain_selection == "first":
        pos = np.concatenate([np.flatnonzero(labels == c)[:k] for c in classes])
    elif cfg.retain_selection == "random":
        pos = np.concatenate([np.flatnonzero(labels == c)[torch.randperm(int((labels == c).sum()))[:k].numpy()]
                              for c in classes])
    else:
        raise ValueError(f"retain_selection {cfg.retain_selection!r}; valid: first, random")
    xr, _ = retain.batch(np.sort(pos), augment=cfg.augment_samples)
    fpos = torch.randperm(forget.num_samples)[:cfg.n_samples].numpy()
    xf, _ = forget.batch(fpos, augment=cfg.augment_samples)
    return xr, xf


@register_method("deep_unlearning", Config, scenarios=("class",), steps=no_steps)
@torch.no_grad()
def unlearn(model: nn.Module, *, retain, forget, cfg: Config, device) -> nn.Module:
    """Gradient-free class forgetting: project every layer away from the class-discriminatory subspace."""
    if cfg.path not in ("exact", "lowrank"):
        raise ValueError(f"deep_unlearning path {cfg.path!r}; valid: exact, lowrank")
    if cfg.decomposition not in ("svd", "gram_eigh", "gram_solve"):
        raise ValueError(f"deep_unlearning decomposition {cfg.decomposition!r}; valid: svd, gram_eigh, gram_solve")
    if cfg.token_rows not in ("official", "all", "subsample"):
        raise ValueError(f"deep_unlearning token_rows {cfg.token_rows!r}; valid: official, all, subsample")
    model.eval()
    xr, xf = select_samples(retain, forget, cfg)
    return project(model, xr, xf, cfg)


@torch.no_grad()
def project(model: nn.Module, xr: torch.Tensor, xf: torch.Tensor, cfg: Config) -> nn.Module:
    """The projection itself on given retain and forget samples (``unlearn`` after its sample selection)."""
    model.eval()
    layers = projected_layers(model, cfg.project_classifier)
    # all bases from the ORIGINAL weights, before any projection
    retain_bases = scaled_bases(model, xr, cfg.alpha_r, layers, cfg.max_patches, cfg.decomposition, cfg.token_rows)
    forget_bases = scaled_bases(model, xf, cfg.alpha_f, layers, cfg.max_patches, cfg.decomposition, cfg.token_rows)
    for name, layer in layers.items():
        layer.weight.copy_(updated_weight(layer.weight, retain_bases[name], forget_bases[name], cfg.path))
    return model
