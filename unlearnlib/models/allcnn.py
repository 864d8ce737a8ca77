"""All-CNN-C (Springenberg et al. 2015) with BatchNorm, as used by Golatkar et al. and UNSIR.

The final 1x1 class conv + global average pool is written as global average pool + Linear (the same
function: both are linear), so every model in the registry has a ``head`` Linear layer.
"""

from __future__ import annotations

import torch.nn as nn

from .common import BatchNorm2d, BodyHeadNet


def _conv(c_in: int, c_out: int, k: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, k, stride=stride, padding=k // 2, bias=False), BatchNorm2d(c_out),
            nn.ReLU(inplace=True)]


class AllCNN(BodyHeadNet):
    def __init__(self, num_classes: int = 10, in_channels: int = 3, width: int = 96, dropout: float = 0.0) -> None:
        super().__init__()
        w1, w2 = int(width), 2 * int(width)  # 96 and 192 in the original
        self.body = nn.Sequential(
            *_conv(in_channels, w1, 3), *_conv(w1, w1, 3), *_conv(w1, w1, 3, stride=2), nn.Dropout(dropout),
            *_conv(w1, w2, 3), *_conv(w2, w2, 3), *_conv(w2, w2, 3, stride=2), nn.Dropout(dropout),
            *_conv(w2, w2, 3), *_conv(w2, w2, 1),
            nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(w2, num_classes)
