"""A network written as ``body`` (up to the flattened penultimate features) + ``fc`` (the classifier), the
BatchNorm2d every model uses, and two operations on any model: re-initialise it, and a seeded random copy of it
(the incompetent teacher of bad teacher and of the ZRF metric)."""

from __future__ import annotations

import copy

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


def reset_modules(model: nn.Module) -> None:
    """``reset_parameters()`` of every module that has one, nested ones included (pitfall 1: ``modules()``, not
    ``children()``): PyTorch's default initialisation, before a model's own initialisation rules."""
    for m in model.modules():
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()


def reinitialise(model: nn.Module) -> nn.Module:
    """Re-initialise *every* module: the model's own ``reinitialise()`` where it has one (its initialisation
    rules), else :func:`reset_modules`."""
    if hasattr(model, "reinitialise"):
        model.reinitialise()
    else:
        reset_modules(model)
    return model


def incompetent_teacher(model: nn.Module, seed: int) -> nn.Module:
    """The same architecture as ``model``, every module re-initialised (pitfall 1) from ``seed``, frozen, eval mode.

    The initialisation is drawn on the CPU from a generator seeded with ``seed`` alone, inside a forked RNG, so the
    teacher is the same on any device and whatever the global RNG state is, and drawing it does not move the
    global RNG (the harness's seeding of the rest of the method is untouched). Bad teacher and the ZRF metric
    both build their random teacher here, from the same seed field.
    """
    try:
        device = next(model.parameters()).device
    except StopIteration:
        device = torch.device("cpu")
    teacher = copy.deepcopy(model).cpu()
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(int(seed))
        reinitialise(teacher)
    teacher.to(device)
    teacher.eval()
    teacher.requires_grad_(False)
    return teacher
