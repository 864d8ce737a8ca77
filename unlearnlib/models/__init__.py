"""Model registry: CIFAR-style ResNet-18, VGG-11-BN, All-CNN, MobileNetV2 (and ResNet-18 with the
ImageNet stem), each with a width parameter, and a Vision Transformer (``vit``).

``build_model(name, num_classes=, in_channels=, width=, image_size=, depth=, heads=, patch=)``; ``width`` is the
channel count of the first stage (64 in the papers) or, for the ViT, the token dimension (768 in ViT-B). The
``cpu`` and ``smoke`` profiles use a narrow version of the same architecture. ``depth``, ``heads`` and ``patch``
are the ViT's (None: its own defaults); a CNN given one of them is an error. ``image_size`` matters only to the
ViT (its learned positions are for one patch grid); the CNNs take any input size. Models return logits
(upstream class_forgetting ends in log_softmax and uses NLL, which gives the same loss and probabilities).
"""

from __future__ import annotations

import torch.nn as nn

from ..registry import Registry
from .allcnn import AllCNN
from .mobilenetv2 import MobileNetV2
from .resnet import ResNet18, ResNet18ImageNetStem
from .vgg import VGG11BN
from .vit import ViT

MODELS = Registry("model")
MODELS.register("resnet18", ResNet18)  # CIFAR stem
MODELS.register("resnet18_imagenet_stem", ResNet18ImageNetStem)  # torchvision layout (UNSIR notebook)
MODELS.register("vgg11_bn", VGG11BN)
MODELS.register("allcnn", AllCNN)
MODELS.register("mobilenetv2", MobileNetV2)
MODELS.register("vit", ViT)  # patch 4 (CIFAR resolution); ViT-B sizes by default

DEFAULT_WIDTH = {"resnet18": 64, "resnet18_imagenet_stem": 64, "vgg11_bn": 64, "allcnn": 96, "mobilenetv2": 32,
                 "vit": 768}
# the architecture options beyond width, per model (only the ViT has any)
ARCH_OPTIONS = {"vit": ("depth", "heads", "patch")}


def check_options(name: str, **options: int | None) -> None:
    """Raise ValueError when ``name`` does not take one of the given (non-None) architecture options."""
    MODELS.get(name)
    bad = sorted(k for k, v in options.items() if v is not None and k not in ARCH_OPTIONS.get(name, ()))
    if bad:
        takes = ", ".join(ARCH_OPTIONS.get(name, ())) or "none besides width"
        raise ValueError(f"model {name!r} has no option {', '.join(bad)} (its options: {takes})")


def build_model(name: str, *, num_classes: int, in_channels: int = 3, width: int | None = None,
                image_size: int = 32, **options: int | None) -> nn.Module:
    """``width``: channels of the first stage (ViT: the token dimension); None = the architecture's own (ResNet/VGG
    64, All-CNN 96, MobileNetV2 32, ViT 768). ``options``: ``depth``, ``heads``, ``patch`` (ViT only; None = its
    own); ``image_size``: the input's side (ViT only)."""
    check_options(name, **options)
    cls = MODELS.get(name)
    kwargs = {k: v for k, v in options.items() if v is not None}
    if name in ARCH_OPTIONS:
        kwargs["image_size"] = image_size
    return cls(num_classes=num_classes, in_channels=in_channels, width=width or DEFAULT_WIDTH[name], **kwargs)


__all__ = ["MODELS", "DEFAULT_WIDTH", "ARCH_OPTIONS", "build_model", "check_options", "AllCNN", "MobileNetV2",
           "ResNet18", "ResNet18ImageNetStem", "VGG11BN", "ViT"]
