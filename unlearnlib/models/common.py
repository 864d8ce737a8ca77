"""A network written as ``body`` (up to the flattened penultimate features) + ``fc`` (the classifier)."""

from __future__ import annotations

import torch
import torch.nn as nn


class BodyHeadNet(nn.Module):
    body: nn.Module
    fc: nn.Linear

    @property
    def head(self) -> nn.Linear:
        """The classification layer."""
        return self.fc

    def penultimate(self, x: torch.Tensor) -> torch.Tensor:
        """The input of the classification layer."""
        return self.body(x)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.body(x))
