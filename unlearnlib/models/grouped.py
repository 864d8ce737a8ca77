"""N models of one architecture as one network: grouped convolutions, per-member BatchNorm, per-member heads.

EasyDUB-style (issue 22 part 4): an ensemble's N members of the same architecture train as one network whose
every layer holds the N members side by side, so one forward/backward pass computes all N. Member ``i``'s
channels are the ``i``-th block of every activation (member-major), and nothing mixes members:

- ``nn.Conv2d(c_in, c_out, groups=g)`` becomes ``nn.Conv2d(N*c_in, N*c_out, groups=N*g)``: group ``j`` of the
  grouped conv sees only member ``j // g``'s channels (weight: the members' weights concatenated on dim 0);
- ``BatchNorm2d(c)`` becomes ``BatchNorm2d(N*c)`` (the suite's own class): BatchNorm is per channel, so every
  member keeps its own statistics, affine parameters and running averages;
- ``nn.Linear(i, o)`` becomes :class:`GroupedLinear` (weight ``(N, o, i)``): member ``j``'s block of inputs times
  member ``j``'s weight;
- every other module of the supported models (ReLU, pooling, flatten, dropout, identity, containers) and the
  models' own forward code (residual additions, ``torch.flatten``) act per channel, so they are the same.

The input is ``(N, B, C, H, W)`` (member ``j`` reads its own batch ``x[j]``) and the output ``(N, B, classes)``.
:meth:`GroupedNet.member` gives member ``i`` back as an ordinary single model (the registry's class, its state
dict sliced out), so every metric and method runs on it unchanged; :meth:`GroupedNet.from_members` packs N
single models. Each member's forward is the same function as its single model's (to float tolerance: a grouped
convolution may sum in another order), and with the loss the sum of the members' losses each member's gradient
is its own, so an element-wise optimiser (SGD with momentum, Nesterov and weight decay, Adam) on the grouped
parameters is N separate optimisers.
"""

from __future__ import annotations

import copy
from typing import Callable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .common import BatchNorm2d

# the registered models the grouped network supports: CNNs whose layers are convs, BatchNorm, Linear and
# per-channel operations (the ViT's LayerNorm and attention mix a token's channels: not supported)
GROUPABLE = ("resnet18", "resnet18_imagenet_stem", "vgg11_bn", "allcnn", "mobilenetv2")

# module types that act per channel (or per element) and so pass through unchanged
_PER_CHANNEL = (nn.ReLU, nn.ReLU6, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.Flatten, nn.Identity,
                nn.Dropout, nn.Sequential)


def check_groupable(name: str) -> None:
    """Raise ValueError naming ``name`` when the grouped network does not support that model."""
    if name not in GROUPABLE:
        raise ValueError(f"model {name!r} cannot be trained as a grouped network (its layers mix a member's "
                         f"channels); models that can: {', '.join(GROUPABLE)}")


class GroupedLinear(nn.Module):
    """N linear layers side by side: input ``(B, N*in)`` (member-major), output ``(B, N*out)``."""

    def __init__(self, n: int, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__()
        self.n, self.in_features, self.out_features = n, in_features, out_features
        self.weight = nn.Parameter(torch.empty(n, out_features, in_features))
        self.bias = nn.Parameter(torch.empty(n, out_features)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        out = torch.einsum("bni,noi->bno", x.reshape(b, self.n, self.in_features), self.weight)
        if self.bias is not None:
            out = out + self.bias
        return out.reshape(b, self.n * self.out_features)


def _grouped_module(m: nn.Module, n: int) -> nn.Module:
    """The grouped counterpart of one leaf module (parameters uninitialised: :meth:`GroupedNet.load_members`)."""
    if isinstance(m, nn.Conv2d):
        if m.padding_mode != "zeros":
            raise ValueError(f"grouped network: Conv2d with padding_mode {m.padding_mode!r} is not supported")
        return nn.Conv2d(n * m.in_channels, n * m.out_channels, m.kernel_size, stride=m.stride, padding=m.padding,
                         dilation=m.dilation, groups=n * m.groups, bias=m.bias is not None)
    if isinstance(m, nn.BatchNorm2d):
        return BatchNorm2d(n * m.num_features, eps=m.eps, momentum=m.momentum, affine=m.affine,
                           track_running_stats=m.track_running_stats)
    if isinstance(m, nn.Linear):
        return GroupedLinear(n, m.in_features, m.out_features, bias=m.bias is not None)
    if isinstance(m, _PER_CHANNEL):
        return copy.deepcopy(m)
    raise ValueError(f"grouped network: layer type {type(m).__name__} is not supported")


def _replace_leaves(root: nn.Module, n: int) -> None:
    for name, child in list(root.named_children()):
        if any(True for _ in child.children()):
            _replace_leaves(child, n)
            if any(True for _ in child.parameters(recurse=False)):
                raise ValueError(f"grouped network: module {name} ({type(child).__name__}) holds its own "
                                 f"parameters; not supported")
        else:
            setattr(root, name, _grouped_module(child, n))


class GroupedNet(nn.Module):
    """``n`` members of one architecture as one network (see the module docstring).

    ``make_member()`` builds one single model of the architecture (the registry's class, any initialisation): the
    template whose structure is grouped and whose class :meth:`member` returns. ``channels_last``: the network's
    weights and activations in channels_last memory format (the same values; faster grouped convolutions on the
    CPU, benchmarks/grouped.py).
    """

    def __init__(self, make_member: Callable[[], nn.Module], n: int, channels_last: bool = False) -> None:
        super().__init__()
        if n < 1:
            raise ValueError(f"a grouped network needs at least one member, got n={n}")
        self.n, self.make_member, self.channels_last = n, make_member, channels_last
        template = make_member()
        self._shapes = {k: tuple(v.shape) for k, v in template.state_dict().items()}
        self.net = copy.deepcopy(template)
        _replace_leaves(self.net, n)
        mine = {k: tuple(v.shape) for k, v in self.net.state_dict().items()}
        if set(mine) != set(self._shapes):
            raise ValueError(f"grouped network of {type(template).__name__}: state-dict keys differ from the "
                             f"single model's ({sorted(set(mine) ^ set(self._shapes))[:4]})")

    # -- forward -------------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``(N, B, C, H, W)``, member ``j``'s batch at ``x[j]``; returns ``(N, B, classes)`` logits."""
        if x.dim() != 5 or x.shape[0] != self.n:
            raise ValueError(f"grouped network of {self.n} members: expected input (N={self.n}, B, C, H, W), got "
                             f"{tuple(x.shape)}")
        n, b, c, h, w = x.shape
        x = x.permute(1, 0, 2, 3, 4).reshape(b, n * c, h, w)
        out = self.net(x.contiguous(memory_format=torch.channels_last) if self.channels_last else x)
        return out.reshape(b, n, -1).permute(1, 0, 2)

    # -- members in and out --------------------------------------------------------------------------
    def _split(self, key: str, value: torch.Tensor, i: int) -> torch.Tensor:
        single = self._shapes[key]
        if value.dim() == 0:  # num_batches_tracked: the same step count for every member
            return value
        if value.dim() == len(single) + 1:  # GroupedLinear: (N, ...)
            return value[i]
        k = single[0]
        return value[i * k:(i + 1) * k]

    def member_state(self, i: int) -> dict[str, torch.Tensor]:
        """Member ``i``'s state dict, in the single model's keys and shapes (copies)."""
        if not 0 <= i < self.n:
            raise IndexError(f"member {i} of a grouped network of {self.n}")
        return {k: self._split(k, v, i).detach().clone() for k, v in self.net.state_dict().items()}

    def member(self, i: int) -> nn.Module:
        """Member ``i`` as an ordinary single model (the template's class), on the grouped network's device, in the
        grouped network's train/eval mode."""
        model = self.make_member()
        model.load_state_dict(self.member_state(i), strict=True)
        p = next(iter(self.parameters()), None)
        return model.to(p.device if p is not None else "cpu").train(self.training)

    @torch.no_grad()
    def load_members(self, members: Sequence[nn.Module]) -> "GroupedNet":
        """Copy N single models (the template's architecture) into the members, in order."""
        if len(members) != self.n:
            raise ValueError(f"a grouped network of {self.n} members was given {len(members)} models")
        states = [m.state_dict() for m in members]
        for key, target in self.net.state_dict().items():
            vals = [s[key] for s in states]
            if tuple(vals[0].shape) != self._shapes[key]:
                raise ValueError(f"load_members: {key} has shape {tuple(vals[0].shape)}, the template's is "
                                 f"{self._shapes[key]}")
            if target.dim() == 0:
                if any(int(v) != int(vals[0]) for v in vals):
                    raise ValueError(f"load_members: the members' {key} differ; they must be equal to be grouped")
                target.copy_(vals[0])
            elif target.dim() == vals[0].dim() + 1:
                target.copy_(torch.stack(vals))
            else:
                target.copy_(torch.cat(vals))
        return self

    @classmethod
    def from_members(cls, members: Sequence[nn.Module], make_member: Callable[[], nn.Module] | None = None,
                     channels_last: bool = False) -> "GroupedNet":
        """A grouped network holding ``members`` (N single models of one architecture), on their device."""
        if not members:
            raise ValueError("from_members: no models given")
        first = members[0]
        net = cls(make_member or (lambda: copy.deepcopy(first)), len(members), channels_last)
        p = next(iter(first.parameters()), None)
        if p is not None:  # the members' device and dtype
            net = net.to(device=p.device, dtype=p.dtype)
        net.load_members(members)
        return net.to(memory_format=torch.channels_last) if channels_last else net


def grouped_cross_entropy(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """The sum over members of each member's mean cross-entropy on its own batch: member ``j``'s gradient is the
    gradient of its own loss (a :func:`~unlearnlib.train.fit` loss for a :class:`GroupedNet`)."""
    x, y = batch  # (N, B, ...), (N, B)
    logits = model(x)
    n, b, k = logits.shape
    per_member = F.cross_entropy(logits.reshape(n * b, k), y.reshape(n * b), reduction="none").view(n, b)
    return per_member.mean(1).sum()
