"""scikit-learn's 8x8 digits: the registry entry (pixels, fixed split, constants, augmentation), every model on
1x8x8 inputs, the single-value BatchNorm fallback (identical to nn.BatchNorm2d elsewhere), and a real training run."""

from __future__ import annotations

import hashlib
import socket

import numpy as np
import pytest
import torch
import torch.nn as nn
from sklearn.datasets import load_digits

from unlearnlib.data import DATASETS, Loader, augment, load_dataset
from unlearnlib.data.datasets import DIGITS_SPLIT_SEED, digits_pixels, digits_split
from unlearnlib.data.loaders import augment_batch
from unlearnlib.models import MODELS, build_model
from unlearnlib.models.common import BatchNorm2d
from unlearnlib.train import TrainConfig, fit

TRAIN_PER_CLASS = [133, 136, 133, 137, 136, 136, 136, 134, 130, 135]
TEST_PER_CLASS = [45, 46, 44, 46, 45, 46, 45, 45, 44, 45]
# sha256 of the split's index arrays (little-endian int64) and of the uint8 images: a change to the split
# rule, the seed, the pixel mapping or scikit-learn's bundled file shows here
TRAIN_SHA = "6812f9c8cf2290d2d44c445916602e4a539ecf13f025fe12574c197f5d14c4d9"
TEST_SHA = "70a619239214155a76b7f7c3093372ba5df3ee88533b987c93e4b428e9431185"
TRAIN_X_SHA = "6334cbec3865562f22492ea8dae67917b8dc04c1b18bfc365901b5bb2c80ee4b"
TEST_X_SHA = "550786ee0567b2ec4866ca8c9a4155bac49d6840d17139c0188543aee5f23995"
# widths of the cpu profiles (ResNet-18 8, VGG-11-BN 16) and comparably narrow ones for the others
WIDTHS = {"resnet18": 8, "resnet18_imagenet_stem": 8, "vgg11_bn": 16, "allcnn": 16, "mobilenetv2": 8, "vit": 8}


def _options(name: str, size: int) -> dict:
    """The ViT's positions are sized to the input (4-px patches, one block); the CNNs take any size."""
    return {"image_size": size, "patch": 4, "heads": 2, "depth": 1} if name == "vit" else {}


def _sha(a) -> str:
    return hashlib.sha256(np.ascontiguousarray(np.asarray(a)).tobytes()).hexdigest()


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", download=False)


@pytest.fixture(scope="module")
def raw():
    return load_digits()


# ----------------------------------------------------------------------------------------------
# the dataset


def test_digits_loads_offline_as_image_data(digits, monkeypatch):
    def no_network(*_a, **_k):
        raise AssertionError("digits must never touch the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    data = load_dataset("digits", download=False)  # empty data roots (isolated_env), no system datasets
    assert data.spec is DATASETS.get("digits")
    assert data.train_x.shape == (1346, 1, 8, 8) and data.test_x.shape == (451, 1, 8, 8)
    assert data.train_x.dtype == torch.uint8 and data.train_y.dtype == torch.long
    assert data.train_x.is_contiguous() and data.test_x.is_contiguous()
    assert "scikit-learn" in data.source and "load_digits" in data.source and "1346/451" in data.source
    assert data.summary()["shape"] == "1x8x8"
    assert len(data.train_y) + len(data.test_y) == 1797


def test_digits_pixel_mapping_and_range(digits, raw):
    assert digits_pixels(np.arange(17)).tolist() == [0, 16, 32, 48, 64, 80, 96, 112, 128, 143, 159, 175, 191, 207,
                                                     223, 239, 255]  # round(255 v / 16), halves up
    for bad in (np.array([17]), np.array([-1]), np.array([0.5])):
        with pytest.raises(ValueError):
            digits_pixels(bad)
    x = torch.cat([digits.train_x, digits.test_x])
    assert int(x.min()) == 0 and int(x.max()) == 255
    assert set(x.unique().tolist()) <= set(digits_pixels(np.arange(17)).tolist())
    train, test = digits.meta["train_indices"], digits.meta["test_indices"]
    # the images are scikit-learn's, in place, mapped: not transposed, not shuffled within the split
    assert torch.equal(digits.train_x[:, 0], torch.from_numpy(digits_pixels(raw.images[train])))
    assert torch.equal(digits.test_x[:, 0], torch.from_numpy(digits_pixels(raw.images[test])))
    assert _sha(digits.train_x.numpy()) == TRAIN_X_SHA and _sha(digits.test_x.numpy()) == TEST_X_SHA


def test_digits_labels(digits, raw):
    assert np.bincount(digits.train_y.numpy(), minlength=10).tolist() == TRAIN_PER_CLASS
    assert np.bincount(digits.test_y.numpy(), minlength=10).tolist() == TEST_PER_CLASS
    assert np.array_equal(digits.train_y.numpy(), raw.target[digits.meta["train_indices"]])
    assert np.array_equal(digits.test_y.numpy(), raw.target[digits.meta["test_indices"]])
    assert digits.spec.num_classes == 10 and digits.spec.classes == tuple(str(i) for i in range(10))


def test_digits_split_is_stratified_disjoint_fixed_and_seeded(digits, raw):
    train, test = digits.meta["train_indices"], digits.meta["test_indices"]
    assert digits.meta["split_seed"] == DIGITS_SPLIT_SEED == 0
    assert len(np.intersect1d(train, test)) == 0
    assert np.array_equal(np.sort(np.concatenate([train, test])), np.arange(1797))
    assert np.all(np.diff(train) > 0) and np.all(np.diff(test) > 0)  # dataset order kept
    n_c = np.bincount(raw.target)
    assert np.bincount(raw.target[test]).tolist() == ((n_c + 2) // 4).tolist()  # round(n_c / 4) per class
    # fixed on every machine: hard-coded checksums and a few indices
    assert _sha(train.astype("<i8")) == TRAIN_SHA and _sha(test.astype("<i8")) == TEST_SHA
    assert test[:8].tolist() == [3, 7, 13, 16, 19, 22, 26, 36] and test[-4:].tolist() == [1785, 1792, 1795, 1796]
    # independent of the global RNGs
    np.random.seed(123)
    torch.manual_seed(123)
    tr2, te2 = digits_split(raw.target)
    assert np.array_equal(tr2, train) and np.array_equal(te2, test)
    # seeded: another seed, another split with the same per-class sizes
    tr1, te1 = digits_split(raw.target, seed=1)
    assert not np.array_equal(te1, test)
    assert np.bincount(raw.target[te1]).tolist() == np.bincount(raw.target[test]).tolist()


def test_digits_normalisation_constants_are_the_train_split_statistics(digits):
    x = digits.train_x.double() / 255
    assert digits.spec.mean == (0.3063,) and digits.spec.std == (0.3767,)
    assert float(x.mean()) == pytest.approx(digits.spec.mean[0], abs=5e-5)
    assert float(x.std(unbiased=False)) == pytest.approx(digits.spec.std[0], abs=5e-5)


def test_digits_augmentation_is_a_one_pixel_crop_without_flip(digits):
    spec = digits.spec
    assert spec.augment == "crop" and spec.crop_padding == 1
    x = digits.train_x[:200]
    g = torch.Generator().manual_seed(0)
    out = augment_batch(x, spec, g)
    assert out.shape == x.shape and out.dtype == torch.uint8
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1))
    shifts = set()
    for i in range(len(x)):  # each output is an unflipped 8x8 window of the image zero-padded by one pixel
        hits = [(dy, dx) for dy in range(3) for dx in range(3)
                if torch.equal(out[i], padded[i, :, dy:dy + 8, dx:dx + 8])]
        assert hits, i
        shifts.update(hits)
    assert len(shifts) == 9  # every offset in -1..1 occurs
    loader = Loader(digits.train_x, digits.train_y, np.arange(200), spec, batch_size=200, augment=True, seed=0)
    xb, _ = next(iter(loader))  # the loader applies the same augmentation (same generator draws)
    expected = (out.float() / 255 - spec.mean[0]) / spec.std[0]
    torch.testing.assert_close(xb, expected, rtol=0, atol=1e-6)


def test_existing_datasets_keep_the_padding_4_augmentation():
    # the checksums were computed with the code before crop_padding existed
    for name in DATASETS.names():
        if name != "digits":
            assert DATASETS.get(name).crop_padding == 4, name
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (64, 3, 32, 32), generator=g, dtype=torch.uint8)
    expected = {"crop_flip": "acf594a15653eb7801e349a0b1c51dd857ba2de252683c1b60a2683af4ac9e11",
                "crop": "7217195f5adc43b79df8e0f6c9557909708f462a2afb86605ea0bdb0ffe6d452"}
    for kind, spec_name in (("crop_flip", "cifar10"), ("crop", "svhn")):
        assert _sha(augment(x, kind, torch.Generator().manual_seed(1)).numpy()) == expected[kind]
        spec = DATASETS.get(spec_name)
        assert spec.augment == kind
        assert _sha(augment_batch(x, spec, torch.Generator().manual_seed(1)).numpy()) == expected[kind]


# ----------------------------------------------------------------------------------------------
# models on 1x8x8


@pytest.mark.parametrize("name", MODELS.names())
def test_every_model_runs_on_digits_inputs(name):
    torch.manual_seed(0)
    model = build_model(name, num_classes=10, in_channels=1, width=WIDTHS[name], **_options(name, 8))
    x = torch.randn(6, 1, 8, 8)
    for mode in ("train", "eval"):
        getattr(model, mode)()
        model.zero_grad(set_to_none=True)
        out = model(x)
        assert out.shape == (6, 10) and torch.isfinite(out).all()
        out.logsumexp(1).sum().backward()
        grads = [p.grad for p in model.parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in grads), mode
        if mode == "eval":
            with torch.no_grad():
                torch.testing.assert_close(model.head(model.penultimate(x)), out)
    # a one-image training batch (a loader's last batch), which reaches 1x1 maps in most of these models
    model.train()
    model.zero_grad(set_to_none=True)
    out = model(x[:1])
    assert out.shape == (1, 10) and torch.isfinite(out).all()
    out.sum().backward()


def test_batchnorm_is_nn_batchnorm_wherever_that_accepts_the_input():
    torch.manual_seed(0)
    for shape in ((4, 3, 5, 5), (1, 3, 2, 2), (2, 3, 1, 1)):
        ours, ref = BatchNorm2d(3), nn.BatchNorm2d(3)
        with torch.no_grad():
            for m in (ours, ref):
                m.weight.copy_(torch.linspace(0.5, 1.5, 3))
                m.bias.copy_(torch.linspace(-1, 1, 3))
        for _ in range(3):
            x = torch.randn(shape)
            xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
            oa, ob = ours(xa), ref(xb)
            assert torch.equal(oa, ob)
            (oa * x).sum().backward()
            (ob * x).sum().backward()
            assert torch.equal(xa.grad, xb.grad) and torch.equal(ours.weight.grad, ref.weight.grad)
        for k, v in ref.state_dict().items():
            assert torch.equal(ours.state_dict()[k], v), k
        ours.eval(), ref.eval()
        x = torch.randn(shape)
        assert torch.equal(ours(x), ref(x))


def test_batchnorm_single_value_batch_uses_running_statistics():
    torch.manual_seed(0)
    bn = BatchNorm2d(4)
    bn(torch.randn(8, 4, 2, 2))  # some running statistics
    before = {k: v.clone() for k, v in bn.state_dict().items()}
    x = torch.randn(1, 4, 1, 1, requires_grad=True)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        nn.BatchNorm2d(4).train()(x)  # what nn.BatchNorm2d does
    out = bn(x)
    bn.eval()
    assert torch.equal(out, bn(x))  # normalised as in eval mode
    for k, v in bn.state_dict().items():
        assert torch.equal(v, before[k]), k  # running statistics and counter unchanged
    out.sum().backward()
    assert bn.weight.grad is not None and x.grad is not None


def _plain_batchnorm_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every BatchNorm2d replaced by nn.BatchNorm2d carrying the same state (the models
    as they were before the subclass)."""
    import copy

    ref = copy.deepcopy(model)
    for module in ref.modules():
        for child_name, child in module.named_children():
            if isinstance(child, BatchNorm2d):
                plain = nn.BatchNorm2d(child.num_features, child.eps, child.momentum)
                plain.load_state_dict(child.state_dict())
                setattr(module, child_name, plain)
    assert not any(isinstance(m, BatchNorm2d) for m in ref.modules())
    return ref


@pytest.mark.parametrize("name", MODELS.names())
def test_models_unchanged_on_32x32_and_28x28(name):
    for c, s in ((3, 32), (1, 28)):
        torch.manual_seed(0)
        model = build_model(name, num_classes=10, in_channels=c, width=4, **_options(name, s))
        ref = _plain_batchnorm_copy(model)
        g = torch.Generator().manual_seed(1)
        for mode in ("train", "eval"):
            x = torch.randn(4, c, s, s, generator=g)
            for m in (model, ref):
                getattr(m, mode)()
                m.zero_grad(set_to_none=True)
            torch.manual_seed(2)  # VGG's dropout
            out = model(x)
            torch.manual_seed(2)
            out_ref = ref(x)
            assert torch.equal(out, out_ref), (c, s, mode)
            out.square().sum().backward()
            out_ref.square().sum().backward()
            for (k, p), q in zip(model.named_parameters(), ref.parameters(), strict=True):
                assert torch.equal(p.grad, q.grad), (c, s, mode, k)
        for (k, v), w in zip(model.state_dict().items(), ref.state_dict().values(), strict=True):
            assert torch.equal(v, w), k


# ----------------------------------------------------------------------------------------------
# a real run


def test_resnet18_width8_learns_digits(digits):
    # the cpu recipe (SGD 0.05, cosine, batch 128, the dataset's augmentation), 5 epochs of 11 steps: under a
    # second; measured train accuracy 0.92-0.96 and test 0.89-0.95 over seeds 0-2
    torch.manual_seed(0)
    model = build_model("resnet18", num_classes=10, in_channels=1, width=8)
    idx = np.arange(len(digits.train_y))
    train = Loader(digits.train_x, digits.train_y, idx, digits.spec, batch_size=128, shuffle=True, augment=True,
                   seed=0)
    fit(model, train, TrainConfig(epochs=5, lr=0.05, batch_size=128, scheduler="cosine"), progress=False)
    model.eval()
    accuracy = {}
    with torch.no_grad():
        for split, x_all, y_all in (("train", digits.train_x, digits.train_y), ("test", digits.test_x, digits.test_y)):
            pos = np.arange(len(y_all))
            x, y = Loader(x_all, y_all, pos, digits.spec, batch_size=len(pos)).batch(pos)
            accuracy[split] = float((model(x).argmax(1) == y).float().mean())
    # chance is 0.1; images and labels out of step, or a broken loader, stay near it
    assert accuracy["train"] > 0.8 and accuracy["test"] > 0.75, accuracy
