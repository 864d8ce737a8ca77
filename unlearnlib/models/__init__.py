"""Model registry: CIFAR-style ResNet-18, VGG-11-BN, All-CNN, MobileNetV2 (and ResNet-18 with the
ImageNet stem), each with a width parameter.

``build_model(name, num_classes=, in_channels=, width=)``; ``width`` is the channel count of the first
stage (64 in the papers). The ``cpu`` and ``smoke`` profiles use a narrow version of the same
architecture. Models return logits (upstream class_forgetting ends in log_softmax and uses NLL, which
gives the same loss and probabilities).
"""

from __future__ import annotations

import torch.nn as nn

from ..registry import Registry
from .allcnn import AllCNN
from .mobilenetv2 import MobileNetV2
from .resnet import ResNet18, ResNet18ImageNetStem
from .vgg import VGG11BN

MODELS = Registry("model")
MODELS.register("resnet18", ResNet18)  # CIFAR stem
MODELS.register("resnet18_imagenet_stem", ResNet18ImageNetStem)  # torchvision layout (UNSIR notebook)
MODELS.register("vgg11_bn", VGG11BN)
MODELS.register("allcnn", AllCNN)
MODELS.register("mobilenetv2", MobileNetV2)

DEFAULT_WIDTH = {"resnet18": 64, "resnet18_imagenet_stem": 64, "vgg11_bn": 64, "allcnn": 96, "mobilenetv2": 32}


def build_model(name: str, *, num_classes: int, in_channels: int = 3, width: int | None = None) -> nn.Module:
    """``width``: channels of the first stage; None = the architecture's own (ResNet/VGG 64, All-CNN 96,
    MobileNetV2 32)."""
    cls = MODELS.get(name)
    return cls(num_classes=num_classes, in_channels=in_channels, width=width or DEFAULT_WIDTH[name])


__all__ = ["MODELS", "DEFAULT_WIDTH", "build_model", "AllCNN", "MobileNetV2", "ResNet18", "ResNet18ImageNetStem",
           "VGG11BN"]
