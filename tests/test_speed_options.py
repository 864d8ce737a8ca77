"""The training loop's speed options (channels_last, bf16 autocast) and the per-device settings: off by default in
every profile, the same values either way for channels_last, bf16 only inside the forward pass."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
import torch.nn as nn

from unlearnlib.config import available_papers, load_paper
from unlearnlib.train import TrainConfig, configure_device, fit, predict_logits


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * 6 * 6, 3))


def _batches(n: int = 24, batch: int = 8):
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(n, 1, 6, 6, generator=g), torch.randint(0, 3, (n,), generator=g)
    data = [(x[i:i + batch], y[i:i + batch]) for i in range(0, n, batch)]
    return lambda: iter(data)


CFG = TrainConfig(epochs=2, lr=0.05, scheduler="none", augment=False)


def test_defaults_are_off_in_every_profile():
    assert TrainConfig().channels_last is False and TrainConfig().bf16 is False
    for pid in available_papers():
        for profile in ("paper", "cpu", "smoke"):
            train = load_paper(pid, profile).settings.train
            assert (train.channels_last, train.bf16) == (False, False), (pid, profile)


def test_channels_last_trains_the_same_model_and_restores_the_format():
    plain, cl = _net(), _net()
    seen = []

    def loss(model, batch):
        seen.append(model[0].weight.is_contiguous(memory_format=torch.channels_last))
        x, y = batch
        return nn.functional.cross_entropy(model(x), y)

    fit(plain, _batches(), CFG, progress=False)
    fit(cl, _batches(), dataclasses.replace(CFG, channels_last=True), loss_fn=loss, progress=False)
    assert seen and all(seen)  # inside fit the conv weights are channels_last
    for (k, a), b in zip(plain.state_dict().items(), cl.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=k)
        assert b.is_contiguous(), k  # after fit: the ordinary layout again (checkpoints as before)
    assert not cl._forward_pre_hooks  # the input-conversion hook is gone


def test_bf16_autocasts_the_forward_pass_only():
    model = _net()
    dtypes = []

    def loss(m, batch):
        x, y = batch
        out = m(x)
        dtypes.append(out.dtype)
        return nn.functional.cross_entropy(out, y)

    ref = _net()
    h_ref = fit(ref, _batches(), CFG, progress=False)
    h = fit(model, _batches(), dataclasses.replace(CFG, bf16=True), loss_fn=loss, progress=False)
    assert set(dtypes) == {torch.bfloat16}
    assert all(p.dtype == torch.float32 for p in model.parameters())  # weights and optimiser stay float32
    assert not torch.is_autocast_enabled("cpu")
    # a bfloat16 forward pass: close to the float32 training, not equal
    assert h.epoch_loss[-1] == pytest.approx(h_ref.epoch_loss[-1], rel=0.05)


@pytest.mark.parametrize("option", ["channels_last", "bf16"])
def test_predict_logits_with_options(option):
    model = _net().eval()
    loader = [(x, y) for x, y in _batches()()]
    want, labels = predict_logits(model, loader)
    got, got_labels = predict_logits(copy.deepcopy(model), loader, cfg=TrainConfig(**{option: True}))
    assert got.dtype == torch.float32 and torch.equal(got_labels, labels)
    tol = 1e-5 if option == "channels_last" else 5e-2
    torch.testing.assert_close(got, want, rtol=tol, atol=tol * float(want.abs().max()))


def test_configure_device_turns_on_cudnn_benchmark_for_cuda_only(monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    configure_device("cpu")
    assert torch.backends.cudnn.benchmark is False
    configure_device(torch.device("cuda"))  # only sets the flag: no CUDA needed
    assert torch.backends.cudnn.benchmark is True
