"""ResNet-18. Default: the CIFAR-style stem (3x3 conv, stride 1, no max-pool), as in Kodge et al.'s
models/resnet.py. ``stem="imagenet"`` gives torchvision's ``resnet18`` layout (7x7 stride-2 conv and a
3x3 stride-2 max-pool), which UNSIR's official notebook trains on 32x32 CIFAR images."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .common import BatchNorm2d, FeaturesHeadNet


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False), BatchNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet18(FeaturesHeadNet):
    def __init__(self, num_classes: int = 10, in_channels: int = 3, width: int = 64, stem: str = "cifar") -> None:
        super().__init__()
        w = int(width)
        if stem == "cifar":
            self.conv1 = nn.Conv2d(in_channels, w, 3, stride=1, padding=1, bias=False)
            self.maxpool = nn.Identity()
        elif stem == "imagenet":
            self.conv1 = nn.Conv2d(in_channels, w, 7, stride=2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        else:
            raise ValueError(f"ResNet18 stem {stem!r}; valid: cifar, imagenet")
        self.bn1 = BatchNorm2d(w)
        layers, in_planes = [], w
        for i, stride in enumerate((1, 2, 2, 2)):
            planes = w * 2 ** i
            layers.append(nn.Sequential(BasicBlock(in_planes, planes, stride), BasicBlock(planes, planes, 1)))
            in_planes = planes
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.pool = nn.AdaptiveAvgPool2d(1)  # avg_pool(4) on 32x32 inputs; also valid for 28x28
        self.fc = nn.Linear(in_planes, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        out = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return torch.flatten(self.pool(out), 1)


class ResNet18ImageNetStem(ResNet18):
    """torchvision's resnet18 layout (ImageNet stem) at any width; UNSIR's official notebook model."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3, width: int = 64) -> None:
        super().__init__(num_classes, in_channels, width, stem="imagenet")
