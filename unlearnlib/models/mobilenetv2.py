"""MobileNetV2 for 32x32 inputs (stride-1 stem, first stride-2 stage made stride 1, as in the common
CIFAR variants). ``width`` is the stem's channel count (32 in the original); every layer scales with it."""

from __future__ import annotations

import torch
import torch.nn as nn

from .common import BatchNorm2d, BodyHeadNet

# expansion, output channels (for width 32), repeats, stride  (CIFAR variant: stage 2 stride 1)
_CFG = [(1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]


class InvertedResidual(nn.Module):
    def __init__(self, c_in: int, c_out: int, expansion: int, stride: int) -> None:
        super().__init__()
        hidden = c_in * expansion
        self.use_res = stride == 1 and c_in == c_out
        layers: list[nn.Module] = []
        if expansion != 1:
            layers += [nn.Conv2d(c_in, hidden, 1, bias=False), BatchNorm2d(hidden), nn.ReLU6(inplace=True)]
        layers += [nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False), BatchNorm2d(hidden),
                   nn.ReLU6(inplace=True), nn.Conv2d(hidden, c_out, 1, bias=False), BatchNorm2d(c_out)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        return x + out if self.use_res else out


class MobileNetV2(BodyHeadNet):
    def __init__(self, num_classes: int = 10, in_channels: int = 3, width: int = 32) -> None:
        super().__init__()
        scale = int(width) / 32.0

        def ch(c: int) -> int:
            return max(4, int(round(c * scale)))

        layers: list[nn.Module] = [nn.Conv2d(in_channels, ch(32), 3, 1, 1, bias=False), BatchNorm2d(ch(32)),
                                   nn.ReLU6(inplace=True)]
        c = ch(32)
        for t, out, n, s in _CFG:
            for i in range(n):
                layers.append(InvertedResidual(c, ch(out), t, s if i == 0 else 1))
                c = ch(out)
        last = ch(1280)
        layers += [nn.Conv2d(c, last, 1, bias=False), BatchNorm2d(last), nn.ReLU6(inplace=True),
                   nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.body = nn.Sequential(*layers)
        self.fc = nn.Linear(last, num_classes)
