"""VGG-11-BN, CIFAR variant (8 convs with bias + BN, classifier 512-512-512-C with dropout 0.5),
as in Kodge et al.'s models/vgg.py. Max-pools use ``ceil_mode=True`` so 28x28 inputs reach 1x1
(identical to floor mode on 32x32 inputs)."""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from .common import BatchNorm2d, reset_modules

_CFG_A = [1, "M", 2, "M", 4, 4, "M", 8, 8, "M", 8, 8, "M"]  # multiples of width/1 (64 -> 64..512)


class VGG11BN(nn.Module):
    def __init__(self, num_classes: int = 10, in_channels: int = 3, width: int = 64, dropout: float = 0.5) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for v in _CFG_A:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2, ceil_mode=True))
            else:
                out = int(v) * int(width)
                layers += [nn.Conv2d(c, out, 3, padding=1), BatchNorm2d(out), nn.ReLU(inplace=True)]
                c = out
        self.body = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Linear(c, c), nn.ReLU(True), nn.Dropout(dropout),
            nn.Linear(c, c), nn.ReLU(True), nn.Dropout(dropout),
            nn.Linear(c, num_classes),
        )
        self._init_convs()

    def _init_convs(self) -> None:
        for m in self.modules():  # upstream init of the convs
            if isinstance(m, nn.Conv2d):
                n = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                nn.init.normal_(m.weight, 0, math.sqrt(2.0 / n))
                nn.init.zeros_(m.bias)

    def reinitialise(self) -> None:
        """Fresh initialisation of every module, as at construction (used by retrain)."""
        reset_modules(self)
        self._init_convs()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.body(x), 1)

    @property
    def head(self) -> nn.Linear:
        """The classification layer."""
        return self.classifier[-1]

    def penultimate(self, x: torch.Tensor) -> torch.Tensor:
        """The input of the classification layer."""
        return self.classifier[:-1](self.features(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))
