"""Vision Transformer (Dosovitskiy et al. 2021) in plain PyTorch, laid out as torchvision's ``VisionTransformer``,
which Kodge et al.'s official ``models/vit.py`` re-implements (sangamesh-kodge/class_forgetting e27aeb2).

A ``patch`` x ``patch`` convolution with stride ``patch`` embeds the image (``patch_embed``), a learned class token
is prepended, learned positions are added, then ``depth`` pre-LayerNorm encoder blocks
(``x + attn(ln1(x))``, ``x + mlp(ln2(x))``: multi-head self-attention with ``heads`` heads, an MLP
``width -> mlp_ratio * width -> width`` with GELU), a final LayerNorm, and a linear ``head`` on the class token.
No dropout (torchvision's defaults are 0).

The attention is written with two ``nn.Linear`` layers: ``qkv`` (3 * width x width, the packed Q/K/V projection,
rows in torch's ``in_proj_weight`` order: Q, then K, then V) and ``out`` (the out-projection), so that every
weight is a Conv2d or Linear module, forward hooks see each layer's input, and the per-token computation is
``nn.MultiheadAttention``'s (scaled dot product, scale 1 / sqrt(width / heads)).

Sizes: ``width`` (the token dimension, 768 in ViT-B), ``depth`` (12), ``heads`` (12; default width // 64, i.e.
head dimension 64 as ViT-B), ``patch`` (16 for ViT-B/16 at 224 px; 4 here, CIFAR resolution: 8 x 8 = 64 tokens
from 32 x 32), ``image_size`` (the positions are learned for one grid: image_size // patch per side; another
input size is an error). Initialisation as torchvision's: positions N(0, 0.02), class token 0, patch embedding
truncated normal std sqrt(1 / fan_in), Q/K/V Xavier-uniform with zero bias, out-projection bias 0, MLP
Xavier-uniform with N(0, 1e-6) biases, head weight and bias 0.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from .common import FeaturesHeadNet, reset_modules

LN_EPS = 1e-6  # torchvision / official models/vit.py: partial(nn.LayerNorm, eps=1e-6)


class Attention(nn.Module):
    """Multi-head self-attention with a packed Q/K/V projection (``qkv``) and an out-projection (``out``)."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"vit: width {width} is not divisible by heads {heads}")
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).reshape(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        att = (q @ k.transpose(-2, -1)) * (d // self.heads) ** -0.5
        y = att.softmax(-1) @ v  # (b, heads, t, d / heads)
        return self.out(y.transpose(1, 2).reshape(b, t, d))


class Block(nn.Module):
    """Pre-LayerNorm encoder block: x + attn(ln1(x)), then x + mlp(ln2(x))."""

    def __init__(self, width: int, heads: int, mlp_dim: int) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(width, eps=LN_EPS)
        self.attn = Attention(width, heads)
        self.ln2 = nn.LayerNorm(width, eps=LN_EPS)
        self.mlp = nn.Sequential(nn.Linear(width, mlp_dim), nn.GELU(), nn.Linear(mlp_dim, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class ViT(FeaturesHeadNet):
    def __init__(self, num_classes: int = 10, in_channels: int = 3, width: int = 768, depth: int = 12,
                 heads: int | None = None, patch: int = 4, image_size: int = 32, mlp_ratio: int = 4) -> None:
        super().__init__()
        width, depth, patch, image_size = int(width), int(depth), int(patch), int(image_size)
        heads = int(heads) if heads else max(1, width // 64)
        if min(width, depth, patch) < 1 or image_size < patch:
            raise ValueError(f"vit: width {width}, depth {depth} and patch {patch} must be >= 1 and image_size "
                             f"{image_size} >= patch")
        self.width, self.patch, self.image_size = width, patch, image_size
        self.grid = image_size // patch
        self.patch_embed = nn.Conv2d(in_channels, width, patch, stride=patch)
        self.class_token = nn.Parameter(torch.zeros(1, 1, width))
        self.pos_embedding = nn.Parameter(torch.zeros(1, self.grid * self.grid + 1, width))
        self.blocks = nn.Sequential(*[Block(width, heads, mlp_ratio * width) for _ in range(depth)])
        self.ln = nn.LayerNorm(width, eps=LN_EPS)
        self.fc = nn.Linear(width, num_classes)
        self._init()

    @torch.no_grad()
    def _init(self) -> None:
        """torchvision's VisionTransformer / MLPBlock / MultiheadAttention initialisation."""
        nn.init.normal_(self.pos_embedding, std=0.02)
        nn.init.zeros_(self.class_token)
        fan_in = self.patch_embed.in_channels * self.patch * self.patch
        nn.init.trunc_normal_(self.patch_embed.weight, std=math.sqrt(1.0 / fan_in))
        nn.init.zeros_(self.patch_embed.bias)
        for blk in self.blocks:
            nn.init.xavier_uniform_(blk.attn.qkv.weight)
            nn.init.zeros_(blk.attn.qkv.bias)
            nn.init.zeros_(blk.attn.out.bias)
            for m in blk.mlp:
                if isinstance(m, nn.Linear):
                    nn.init.xavier_uniform_(m.weight)
                    nn.init.normal_(m.bias, std=1e-6)
        nn.init.zeros_(self.fc.weight)
        nn.init.zeros_(self.fc.bias)

    def reinitialise(self) -> None:
        """Fresh initialisation of every module and of the class token and positions, as at construction."""
        reset_modules(self)
        self._init()

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, 1 + grid * grid, width): the class token and the patch embeddings, positions added."""
        if x.shape[-2] // self.patch != self.grid or x.shape[-1] // self.patch != self.grid:
            raise ValueError(f"vit: built for {self.image_size}x{self.image_size} inputs (a {self.grid}x{self.grid} "
                             f"grid of {self.patch}-px patches), got {x.shape[-2]}x{x.shape[-1]}")
        z = self.patch_embed(x).flatten(2).transpose(1, 2)
        return torch.cat([self.class_token.expand(z.shape[0], -1, -1), z], dim=1) + self.pos_embedding

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The class token after the final LayerNorm (the head's input)."""
        return self.ln(self.blocks(self.tokens(x)))[:, 0]


__all__ = ["ViT", "Block", "Attention"]
