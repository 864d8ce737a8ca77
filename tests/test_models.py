"""Model registry: output shapes, the classification head, and retrain's re-initialisation (pitfall 1)."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from unlearnlib.methods.baselines import reinitialise
from unlearnlib.models import MODELS, build_model
from unlearnlib.registry import UnknownNameError


@pytest.mark.parametrize("name", ["resnet18", "vgg11_bn"])
@pytest.mark.parametrize("in_channels,size", [(1, 28), (3, 32), (1, 32), (3, 28)])
def test_paper_models_output_shape(name, in_channels, size):
    torch.manual_seed(0)
    model = build_model(name, num_classes=7, in_channels=in_channels, width=4).eval()
    with torch.no_grad():
        out = model(torch.randn(3, in_channels, size, size))
    assert out.shape == (3, 7)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", MODELS.names())
def test_every_registered_model_builds_and_has_a_head(name):
    torch.manual_seed(0)
    model = build_model(name, num_classes=5, in_channels=1, width=4, image_size=28).eval()
    if name == "vit":  # torchvision's zero head would make the check below trivial
        nn.init.normal_(model.head.weight)
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        out = model(x)
        assert out.shape == (2, 5)
        head = model.head
        assert isinstance(head, nn.Linear) and head.out_features == 5
        # the head is the last Linear and penultimate() is its input
        assert head is [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
        torch.testing.assert_close(head(model.penultimate(x)), out)


def test_width_scales_the_first_stage():
    narrow = build_model("resnet18", num_classes=10, in_channels=3, width=4)
    wide = build_model("resnet18", num_classes=10, in_channels=3, width=8)
    assert narrow.conv1.out_channels == 4 and wide.conv1.out_channels == 8
    assert narrow.fc.in_features == 32  # 4 * 2**3
    assert sum(p.numel() for p in wide.parameters()) > 3 * sum(p.numel() for p in narrow.parameters())
    vgg = build_model("vgg11_bn", num_classes=10, in_channels=1, width=4)
    assert [m.out_channels for m in vgg.modules() if isinstance(m, nn.Conv2d)] == [4, 8, 16, 16, 32, 32, 32, 32]


def test_unknown_model_lists_valid_names():
    with pytest.raises(UnknownNameError, match="resnet18.*vgg11_bn|vgg11_bn.*resnet18"):
        build_model("resnet50", num_classes=10)


# ----------------------------------------------------------------------------------------------
# retrain's reinitialise (pitfall 1: every module, not only the direct children)


def _scramble(model: nn.Module) -> dict[str, torch.Tensor]:
    """Set every parameter and floating buffer to a value no initialiser produces; return a copy."""
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(0.37)
        for b in model.buffers():
            if b.is_floating_point():
                b.fill_(5.0)
            else:
                b.fill_(11)
    return {k: v.clone() for k, v in model.state_dict().items()}


def _unchanged(model: nn.Module, before: dict[str, torch.Tensor]) -> list[str]:
    return [k for k, v in model.state_dict().items() if torch.equal(v, before[k])]


def _children_only_reinit(model: nn.Module) -> None:  # the upstream bug, as a mutant the test must catch
    for m in model.children():
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()


@pytest.mark.parametrize("name", MODELS.names())
def test_reinitialise_changes_every_tensor(name):
    model = build_model(name, num_classes=10, in_channels=1, width=4)
    before = _scramble(model)
    out = reinitialise(model)
    assert out is model
    assert _unchanged(model, before) == []  # parameters, BN running stats and counters, nested ones included
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            assert torch.equal(m.running_mean, torch.zeros_like(m.running_mean))
            assert torch.equal(m.running_var, torch.ones_like(m.running_var))
            assert int(m.num_batches_tracked) == 0


def test_the_reinitialise_check_catches_children_only_resets():
    # the check above can fail: a children()-only reset leaves the nested blocks untouched
    model = build_model("resnet18", num_classes=10, in_channels=1, width=4)
    before = _scramble(model)
    _children_only_reinit(model)
    missed = _unchanged(model, before)
    assert any(k.startswith("layer1.0.conv1") for k in missed)


def test_reinitialise_nested_plain_modules():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2)),
        nn.Sequential(nn.Sequential(nn.Flatten(), nn.Linear(8, 3))),
    )
    before = _scramble(model)
    reinitialise(model)
    assert _unchanged(model, before) == []


def test_vgg_reinitialise_uses_the_construction_init():
    torch.manual_seed(0)
    model = build_model("vgg11_bn", num_classes=10, in_channels=3, width=8)
    _scramble(model)
    reinitialise(model)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert all(torch.equal(c.bias, torch.zeros_like(c.bias)) for c in convs)  # upstream: conv biases zero
    last = convs[-1]  # std sqrt(2 / (k*k*out)) = sqrt(2 / (9*64))
    assert float(last.weight.detach().std()) == pytest.approx((2 / (9 * 64)) ** 0.5, rel=0.1)


# ----------------------------------------------------------------------------------------------
# the ViT


@pytest.mark.parametrize("in_channels,size,patch", [(1, 28, 4), (3, 32, 4), (1, 8, 2)])
def test_vit_tokens_shapes_and_interface(in_channels, size, patch):
    torch.manual_seed(0)
    model = build_model("vit", num_classes=7, in_channels=in_channels, width=16, depth=2, heads=4, patch=patch,
                        image_size=size).eval()
    nn.init.normal_(model.head.weight)
    x = torch.randn(3, in_channels, size, size)
    grid = size // patch
    with torch.no_grad():
        t = model.tokens(x)
        assert t.shape == (3, grid * grid + 1, 16)  # the class token first, then the patches
        assert model.pos_embedding.shape == (1, grid * grid + 1, 16)
        out = model(x)
        assert out.shape == (3, 7) and torch.isfinite(out).all()
        # features = penultimate = the class token after the final LayerNorm
        z = model.ln(model.blocks(t))[:, 0]
        torch.testing.assert_close(model.penultimate(x), z)
        torch.testing.assert_close(model.features(x), z)
        torch.testing.assert_close(model.head(z), out)
    assert [m.heads for m in model.modules() if hasattr(m, "qkv")] == [4, 4]
    assert model.blocks[0].attn.qkv.weight.shape == (48, 16) and model.blocks[0].mlp[0].weight.shape == (64, 16)
    with pytest.raises(ValueError, match=f"built for {size}x{size}"):
        model(torch.randn(1, in_channels, size + patch, size + patch))


def test_vit_attention_is_torch_multihead_attention():
    # the packed Q/K/V layout and scaling are nn.MultiheadAttention's (official models/vit.py uses it)
    from unlearnlib.models.vit import Attention

    torch.manual_seed(0)
    att = Attention(12, 3).double()
    ref = nn.MultiheadAttention(12, 3, batch_first=True).double()
    with torch.no_grad():
        ref.in_proj_weight.copy_(att.qkv.weight)
        ref.in_proj_bias.copy_(torch.randn(36, dtype=torch.float64))
        att.qkv.bias.copy_(ref.in_proj_bias)
        ref.out_proj.weight.copy_(att.out.weight)
        ref.out_proj.bias.copy_(att.out.bias)
        x = torch.randn(2, 5, 12, dtype=torch.float64)
        torch.testing.assert_close(att(x), ref(x, x, x, need_weights=False)[0], rtol=0, atol=1e-12)


def test_vit_sizes_and_defaults():
    vit = build_model("vit", num_classes=10, in_channels=3)  # ViT-B sizes at CIFAR resolution (patch 4)
    assert vit.width == 768 and len(vit.blocks) == 12 and vit.blocks[0].attn.heads == 12 and vit.patch == 4
    assert vit.blocks[0].mlp[0].out_features == 3072
    assert 85e6 < sum(p.numel() for p in vit.parameters()) < 86e6  # ViT-B/16: 86M with its 1000-class head
    small = build_model("vit", num_classes=10, in_channels=1, width=64, depth=4, image_size=28)
    assert small.blocks[0].attn.heads == 1 and small.grid == 7  # heads default: width // 64
    assert torch.equal(small.head.weight, torch.zeros_like(small.head.weight))  # torchvision: zero head


def test_architecture_options_are_the_vits_only():
    with pytest.raises(ValueError, match="model 'resnet18' has no option depth"):
        build_model("resnet18", num_classes=10, depth=4)
    with pytest.raises(ValueError, match="width 8 is not divisible by heads 3"):
        build_model("vit", num_classes=10, width=8, heads=3)
    assert build_model("resnet18", num_classes=10, width=4, image_size=28, depth=None) is not None
