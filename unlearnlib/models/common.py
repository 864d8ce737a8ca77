"""A network written as ``body`` (up to the flattened penultimate features) + ``fc`` (the classifier), and the
BatchNorm2d every model uses."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class BatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` that accepts a training batch with a single value per channel.

    Batch statistics of one value do not exist, and ``nn.BatchNorm2d`` raises ("Expected more than 1 value per
    channel when training"). That happens for a one-image batch once a feature map is 1x1, which on 8x8 inputs
    (digits) ResNet-18's layer4, VGG-11's last four convs and MobileNetV2's last stages reach: a loader whose
    last batch holds one sample would crash training. Such a batch is normalised with the running statistics
    (as in eval mode) and leaves them unchanged. Every other input, i.e. everything ``nn.BatchNorm2d``
    accepts, goes through ``nn.BatchNorm2d.forward`` unchanged.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (self.training and x.dim() == 4 and x.shape[0] * x.shape[2] * x.shape[3] == 1
                and self.running_mean is not None and self.running_var is not None):
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)
        return super().forward(x)


class FeaturesHeadNet(nn.Module):
    """A network written as ``features(x)`` (the penultimate features, the classifier's input) + ``fc`` (the
    classifier): the interface every model of the zoo offers (``head``, ``penultimate``, ``features``)."""

    fc: nn.Linear

    @property
    def head(self) -> nn.Linear:
        """The classification layer."""
        return self.fc

    def features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def penultimate(self, x: torch.Tensor) -> torch.Tensor:
        """The input of the classification layer."""
        return self.features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


class BodyHeadNet(FeaturesHeadNet):
    """``features`` is one module, ``body`` (up to the flattened penultimate features)."""

    body: nn.Module

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)
