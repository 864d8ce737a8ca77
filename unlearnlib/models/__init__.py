"""Model registry: CIFAR-style ResNet-18 and VGG-11-BN, each with a width parameter.

``build_model(name, num_classes=, in_channels=, width=)``; ``width`` is the channel count of the first
stage (64 in the papers). The ``cpu`` and ``smoke`` profiles use a narrow version of the same
architecture. Models return logits (upstream class_forgetting ends in log_softmax and uses NLL, which
gives the same loss and probabilities).
"""

from __future__ import annotations

import torch.nn as nn

from ..registry import Registry
from .resnet import ResNet18
from .vgg import VGG11BN

MODELS = Registry("model")
MODELS.register("resnet18", ResNet18)
MODELS.register("vgg11_bn", VGG11BN)


def build_model(name: str, *, num_classes: int, in_channels: int = 3, width: int = 64) -> nn.Module:
    return MODELS.get(name)(num_classes=num_classes, in_channels=in_channels, width=width)


__all__ = ["MODELS", "build_model", "ResNet18", "VGG11BN"]
