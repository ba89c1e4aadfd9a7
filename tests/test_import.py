"""fxbn.importers: weight/activation quantization, exact accumulator bounds, Conv -> BN import (npz, torch)."""
import json

import numpy as np
import pytest
from hypothesis import given

import fxbn
from fxbn import importers
from conftest import DATA_DIR
from strategies import conv_bn_models


def f32(x):
    """x rounded to float32, held as float64: scales as deployment formats store them (two such scales
    multiply exactly, which conv_bn_layer requires)."""
    return float(np.float32(x))


def needs_data(*parts):
    path = DATA_DIR.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data not found: {path}")
    return path


def test_quantize_weights_per_channel_symmetric():
    rng = np.random.default_rng(1)
    w = rng.normal(size=(5, 3, 3, 3)) * np.array([1e-3, 0.1, 1, 10, 0])[:, None, None, None]
    w_q, w_scale = importers.quantize_weights(w)
    assert w_q.dtype == np.int8 and w_scale.shape == (5,)
    err = np.abs(w - w_q * w_scale[:, None, None, None])
    assert np.all(err <= w_scale[:, None, None, None] / 2 + 1e-12)
    peaks = np.abs(w_q.reshape(5, -1)).max(axis=1)
    assert peaks[:4].tolist() == [127] * 4 and peaks[4] == 0


def test_calibrate_minmax_and_percentile():
    rng = np.random.default_rng(2)
    x = np.concatenate([rng.uniform(0.5, 3.0, 10_000), [100.0]])
    mm = importers.calibrate(x)
    assert mm.zero_point == -128  # range [0, 100]: 0 is contained and maps to qmin
    assert mm.scale == pytest.approx(100.0 / 255)
    pc = importers.calibrate(x, "percentile", 99.0)
    assert pc.scale < 3.1 / 255  # the outlier is clipped away
    q = pc.quantize(x)
    assert q.max() == 127 and np.all(np.abs(pc.dequantize(q) - x)[x < 2.9] <= pc.scale / 2 + 1e-12)
    signed = importers.calibrate(rng.normal(size=1000))
    assert -128 < signed.zero_point < 127
    with pytest.raises(ValueError):
        importers.calibrate(x, "median")


@given(conv_bn_models())
def test_accumulator_bounds_contain_every_activation_and_are_attained(model):
    w_q, act, rng_seed = model["w_q"], model["act"], model["seed"]
    bounds = importers.accumulator_bounds(w_q, act)
    w = w_q.reshape(w_q.shape[0], -1).astype(np.int64)
    rng = np.random.default_rng(rng_seed)
    a = rng.integers(act.qmin, act.qmax + 1, size=(64, w.shape[1]))
    acc = (a - act.zero_point) @ w.T
    assert np.all(acc >= bounds[:, 0]) and np.all(acc <= bounds[:, 1])
    # the bound is attained: per term choose the extreme activation
    lo_choice = np.where(w > 0, act.qmin, act.qmax)
    hi_choice = np.where(w > 0, act.qmax, act.qmin)
    assert np.array_equal(((lo_choice - act.zero_point) * w).sum(axis=1), bounds[:, 0])
    assert np.array_equal(((hi_choice - act.zero_point) * w).sum(axis=1), bounds[:, 1])


def test_range_bits():
    assert importers.range_bits([[-128, 127], [0, 128], [-129, 0], [0, 0]]).tolist() == [8, 9, 9, 1]


def test_conv_bn_layer_equals_from_batchnorm_on_the_same_numbers():
    rng = np.random.default_rng(3)
    w = rng.normal(size=(4, 3, 3, 3)).astype(np.float32)
    bn = importers.BatchNormParams(*(rng.uniform(0.5, 2, 4).astype(np.float32) * s for s in (1, 0.3, 0.2, 1)),
                                   eps=1e-5)
    arrays = {"conv.weight": w, "bn.weight": bn.gamma, "bn.bias": bn.beta, "bn.running_mean": bn.mean,
              "bn.running_var": bn.var}
    act_in = importers.ActivationQuant(f32(0.02), -3)
    act_out = importers.ActivationQuant(f32(0.05), -128)
    imported = importers.from_named_arrays(arrays, [("conv.weight", "bn")], {"bn": act_in}, {"bn": act_out},
                                           eps=1e-5, relu={"bn": True})
    layer, w_q, w_scale = imported["bn"]
    bounds = importers.accumulator_bounds(w_q, act_in)
    direct = fxbn.from_batchnorm(bn.gamma, bn.beta, bn.mean, bn.var, 1e-5, in_scale=f32(0.02) * w_scale,
                                 out_scale=0.05, out_zero_point=-128, in_range=bounds, in_dtype="int32",
                                 rounding="half_up", relu=True)
    for attr in ("multiplier", "bias", "shift", "in_range"):
        assert np.array_equal(getattr(layer, attr), getattr(direct, attr)), attr
    assert layer.out_range == (-128, 127)
    x = np.stack([bounds[:, 0], bounds[:, 1], (bounds[:, 0] + bounds[:, 1]) // 2]).astype(np.int32)
    assert np.array_equal(layer.apply(x), layer.reference(x))


def test_fold_conv_bias_is_exact_or_refused():
    bn = importers.BatchNormParams(np.ones(2), np.zeros(2), np.array([0.5, 1.0]), np.ones(2), 1e-3)
    folded = importers.fold_conv_bias(bn, np.array([0.25, -2.0]))
    assert folded.mean.tolist() == [0.25, 3.0]
    assert importers.fold_conv_bias(bn, np.array([1e-30, 0.0])) is None  # 0.5 - 1e-30 is not a float64
    assert not importers.fold_is_exact(bn, np.array([1e-30, 0.0]))
    rounded = importers.fold_conv_bias(bn, np.array([1e-30, 0.0]), exact=False)
    assert rounded.mean.tolist() == [0.5, 1.0]
    w_q = np.ones((2, 1, 1, 1), np.int8)
    act = importers.ActivationQuant(f32(0.1), 0)
    with pytest.raises(ValueError, match="exact"):
        importers.conv_bn_layer(bn, w_q, np.ones(2), act, act, conv_bias=np.array([1e-30, 0.0]))


def test_state_dict_pairs_by_convention():
    names = ["conv1.weight", "bn1.weight", "bn1.running_mean", "layer1.0.conv2.weight", "layer1.0.bn2.running_mean",
             "head.bn.running_mean", "linear.weight"]
    assert importers.state_dict_conv_bn_pairs(names) == [("conv1.weight", "bn1"),
                                                         ("layer1.0.conv2.weight", "layer1.0.bn2")]


def test_resnet20_npz_import_matches_from_batchnorm():
    path = needs_data("cifar10", "resnet20.npz")
    arrays = dict(np.load(path))
    pairs = importers.state_dict_conv_bn_pairs(arrays)
    assert len(pairs) == 19
    act_in = {bn: importers.ActivationQuant(f32(0.03), -128 if bn != "bn1" else 0) for _, bn in pairs}
    act_out = {bn: importers.ActivationQuant(f32(0.05), -128) for _, bn in pairs}
    imported = importers.from_named_arrays(arrays, pairs, act_in, act_out, eps=1e-5)
    for conv, bn_name in pairs[:4] + pairs[-2:]:
        layer, w_q, w_scale = imported[bn_name]
        bn = importers.bn_params(arrays, bn_name, 1e-5)
        direct = fxbn.from_batchnorm(bn.gamma, bn.beta, bn.mean, bn.var, 1e-5, in_scale=f32(0.03) * w_scale,
                                     out_scale=f32(0.05), out_zero_point=-128, in_zero_point=0,
                                     in_range=importers.accumulator_bounds(w_q, act_in[bn_name]), in_dtype="int32",
                                     rounding="half_up")
        assert np.array_equal(layer.multiplier, direct.multiplier) and np.array_equal(layer.bias, direct.bias)
        assert np.array_equal(layer.shift, direct.shift)
        # tight bounds: far below the int32 range for 3x3 convolutions of int8
        assert importers.range_bits(layer.in_range).max() <= 24


def test_keras_pairs_from_model_json():
    path = needs_data("imagenet", "darknet_tiny.model.json")
    triples = importers.keras_conv_bn_pairs(json.loads(path.read_text()))
    assert len(triples) == 15
    assert triples[0] == ("conv2d_1", "batch_normalization_1", ("leaky", pytest.approx(0.1)))
    path = needs_data("imagenet", "resnet50.model.json")
    triples = importers.keras_conv_bn_pairs(json.loads(path.read_text()))
    assert len(triples) == 53 and triples[0] == ("conv1", "bn_conv1", "relu")


def test_from_torch_small_model():
    torch = pytest.importorskip("torch")
    nn = torch.nn
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=True), nn.BatchNorm2d(4), nn.ReLU(),
                          nn.Conv2d(4, 2, 1, bias=False), nn.BatchNorm2d(2))
    with torch.no_grad():
        for m in model:
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
                m.weight.uniform_(0.5, 1.5)
    model.eval()
    act = {"1": importers.ActivationQuant(f32(0.02), 0), "4": importers.ActivationQuant(f32(0.03), -128)}
    out = {"1": importers.ActivationQuant(f32(0.03), -128), "4": importers.ActivationQuant(f32(0.05), 0)}
    imported = importers.from_torch(model, act, out)
    assert sorted(imported) == ["1", "4"] and imported.skipped == []
    info = imported["1"]
    assert (info.kind, info.conv, info.activation, imported["4"].activation) == ("conv_bn", "0", "relu", None)
    layer, w_q, w_scale = info.layer, info.w_q, info.w_scale
    assert layer.out_range[0] == -128  # ReLU folded: qmin = output zero point
    conv, bn = model[0], model[1]
    folded_mean = bn.running_mean.double().numpy() - conv.bias.detach().double().numpy()
    direct = fxbn.from_batchnorm(bn.weight.detach().numpy(), bn.bias.detach().numpy(), folded_mean,
                                 bn.running_var.numpy(), bn.eps, in_scale=f32(0.02) * w_scale, out_scale=f32(0.03),
                                 out_zero_point=-128, in_range=importers.accumulator_bounds(w_q, act["1"]),
                                 in_dtype="int32", rounding="half_up", relu=True)
    assert np.array_equal(layer.multiplier, direct.multiplier) and np.array_equal(layer.bias, direct.bias)


def test_from_torch_finds_resnet_style_attributes():
    torch = pytest.importorskip("torch")
    nn = torch.nn

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.bn1 = nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4)
            self.conv2, self.bn2 = nn.Conv2d(4, 4, 3, bias=False), nn.BatchNorm2d(4)
            self.unrelated = nn.BatchNorm2d(4)

        def forward(self, x):
            return self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))

    model = Block().eval()
    act = {k: importers.ActivationQuant(f32(0.02), -128) for k in ("bn1", "bn2")}
    with pytest.warns(UserWarning, match="LEFT OUT unrelated: BN module is not used"):
        imported = importers.from_torch(model, act, act)
    assert sorted(imported) == ["bn1", "bn2"] and imported["bn1"].activation == "relu"
    w_q, _ = importers.quantize_weights(model.conv2.weight.detach().numpy())
    assert np.array_equal(imported["bn2"].w_q, w_q) and imported["bn2"].conv == "conv2"
    with pytest.raises(ValueError, match="eval"):
        importers.from_torch(model.train(), act, act)


def test_importers_doctests():
    import doctest

    pytest.importorskip("torch")  # calibrate_torch's example builds a torch module

    result = doctest.testmod(importers)
    assert result.attempted > 0 and result.failed == 0


def _torch_cifar_resnet(torch, blocks):
    """The akamaster CIFAR ResNet (option A shortcuts) as a plain nn.Module, for from_torch on a real network."""
    nn, F = torch.nn, torch.nn.functional

    class Block(nn.Module):
        def __init__(self, cin, planes, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(planes)
            self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(planes)
            self.pad = (planes - cin) // 2 if stride != 1 or cin != planes else None

        def forward(self, x):
            h = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
            s = x if self.pad is None else F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))
            return F.relu(h + s)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.bn1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16)
            cin = 16
            for stage, planes in enumerate((16, 32, 64), start=1):
                layers = []
                for i in range(blocks):
                    layers.append(Block(cin, planes, 2 if stage > 1 and i == 0 else 1))
                    cin = planes
                setattr(self, f"layer{stage}", nn.Sequential(*layers))
            self.linear = nn.Linear(64, 10)

        def forward(self, x):
            x = F.relu(self.bn1(self.conv1(x)))
            x = self.layer3(self.layer2(self.layer1(x)))
            return self.linear(x.mean(dim=(2, 3)))

    return Net()


def resnet20_module():
    """The ResNet-20 architecture (for ``python -m fxbn.calibrate --arch test_import:resnet20_module``)."""
    import torch

    return _torch_cifar_resnet(torch, 3)


def test_from_torch_real_resnet20_matches_npz_import():
    """from_torch on the real ResNet-20 (torch module loaded with the shared state_dict) gives the same 19 layers as
    the npz import, and the module is the real network: its float logits are those of the experiments' graph."""
    torch = pytest.importorskip("torch")
    path = needs_data("cifar10", "resnet20.npz")
    arrays = dict(np.load(path))
    model = _torch_cifar_resnet(torch, 3)
    state = {k: torch.from_numpy(v) for k, v in arrays.items()}
    model.load_state_dict(state, strict=False)           # num_batches_tracked is not in the npz
    model.eval()
    pairs = importers.state_dict_conv_bn_pairs(arrays)
    rng = np.random.default_rng(3)
    act_in = {bn: importers.ActivationQuant(f32(rng.uniform(0.01, 0.05)), -128 if bn != "bn1" else 0)
              for _, bn in pairs}
    act_out = {bn: importers.ActivationQuant(f32(rng.uniform(0.02, 0.08)), -128) for _, bn in pairs}
    from_module = importers.from_torch(model, act_in, act_out)
    from_npz = importers.from_named_arrays(arrays, pairs, act_in, act_out, eps=1e-5)
    assert sorted(from_module) == sorted(from_npz) and len(from_npz) == 19
    for name, (layer, w_q, w_scale) in from_npz.items():
        other, w_q2, w_scale2 = from_module[name].layer, from_module[name].w_q, from_module[name].w_scale
        assert np.array_equal(w_q, w_q2) and np.array_equal(w_scale, w_scale2), name
        for attr in ("multiplier", "bias", "shift", "in_range"):
            assert np.array_equal(getattr(layer, attr), getattr(other, attr)), (name, attr)
    from experiments import data, nets

    pixels, _ = data.cifar_lossless(DATA_DIR)
    graph = nets.cifar_resnet(path)
    ours = graph.forward_float(pixels[:4])
    x = (pixels[:4].astype(np.float32) / 255 - np.float32(nets.CIFAR_MEAN)) / np.float32(nets.CIFAR_STD)
    with torch.no_grad():
        theirs = model(torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))).numpy()
    assert np.allclose(ours, theirs, rtol=1e-4, atol=1e-3)
