"""fxbn.importers.from_torch / calibrate_torch: BN layers paired by the traced data flow, nothing dropped silently."""

import numpy as np
import pytest

from fxbn import importers


def f32(x):
    """x rounded to float32, held as float64: scales as deployment formats store them (two such scales
    multiply exactly, which conv_bn_layer requires)."""
    return float(np.float32(x))


torch = pytest.importorskip("torch")
nn, F = torch.nn, torch.nn.functional


def _randomize_bn(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
                c = m.num_features
                m.running_mean.copy_(torch.rand(c, generator=g) * 2 - 1)
                m.running_var.copy_(torch.rand(c, generator=g) * 1.5 + 0.5)
                if m.weight is not None:
                    m.weight.copy_(torch.rand(c, generator=g) + 0.5)
                    m.bias.copy_(torch.rand(c, generator=g) - 0.5)
    return model.eval()


class PreActBlock(nn.Module):
    """Pre-activation ResNet block (He et al. 2016b): BN -> ReLU -> conv -> BN -> ReLU -> conv, + identity."""

    def __init__(self, c):
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(c), nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn2, self.conv2 = nn.BatchNorm2d(c), nn.Conv2d(c, c, 3, padding=1, bias=False)

    def forward(self, x):
        h = self.conv1(F.relu(self.bn1(x)))
        h = self.conv2(F.relu(self.bn2(h)))
        return x + h


class PreActNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.layer1 = nn.Sequential(PreActBlock(8), PreActBlock(8))
        self.bn = nn.BatchNorm2d(8)
        self.linear = nn.Linear(8, 10)

    def forward(self, x):
        h = F.relu(self.bn(self.layer1(self.conv1(x))))
        return self.linear(h.mean(dim=(2, 3)))


class DenseLayer(nn.Module):
    """torchvision DenseNet's dense layer: norm1 -> relu1 -> conv1 (1x1) -> norm2 -> relu2 -> conv2, concatenated."""

    def __init__(self, cin, growth):
        super().__init__()
        self.norm1, self.relu1 = nn.BatchNorm2d(cin), nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(cin, 4 * growth, 1, bias=False)
        self.norm2, self.relu2 = nn.BatchNorm2d(4 * growth), nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(4 * growth, growth, 3, padding=1, bias=False)

    def forward(self, features):
        x = torch.cat(features, 1)
        return self.conv2(self.relu2(self.norm2(self.conv1(self.relu1(self.norm1(x))))))


class DenseBlock(nn.Module):
    def __init__(self, cin=6, growth=4, n=3):
        super().__init__()
        self.conv0, self.norm0 = nn.Conv2d(3, cin, 3, padding=1, bias=False), nn.BatchNorm2d(cin)
        self.denselayers = nn.ModuleList(DenseLayer(cin + i * growth, growth) for i in range(n))

    def forward(self, x):
        features = [F.relu(self.norm0(self.conv0(x)))]
        for layer in self.denselayers:
            features.append(layer(features))
        return torch.cat(features, 1)


def _tensors(model, x):
    """Per module name: (input, output) of every call (one call each here)."""
    seen, hooks = {}, []
    for name, m in model.named_modules():
        if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear, nn.modules.batchnorm._BatchNorm)):
            hooks.append(m.register_forward_hook(
                lambda mod, inp, out, name=name: seen.__setitem__(name, (inp[0].detach().clone(), out.detach()))))
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return seen


def _integer_input(model, info, act_in, tensors):
    """The integer tensor a layer takes, computed from the module's real tensors: the exact accumulator of the
    conv it names over the quantized conv input, or the quantized BN input."""
    if info.kind == "affine":
        return act_in.quantize(tensors[info.bn][0].numpy())
    conv = model.get_submodule(info.source)
    xc = torch.from_numpy(act_in.quantize(tensors[info.source][0].numpy()).astype(np.float64) - act_in.zero_point)
    w = torch.from_numpy(info.w_q.astype(np.float64))
    if isinstance(conv, nn.Linear):
        acc = xc @ w.T
    else:
        fn = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[w.ndim - 2]
        xc = F.pad(xc, [p for p in reversed(conv.padding) for _ in (0, 1)])      # zero padding of centred values
        acc = fn(xc, w, None, conv.stride, 0, conv.dilation, conv.groups)
    return acc.numpy().astype(np.int32)


def _check_against_float(model, cal, x, tol_steps):
    """Every layer applied to the integer version of the tensor it names reproduces the module's float BN output
    (after the folded activation) to within quantization error: a layer built from another tensor cannot."""
    tensors = _tensors(model, x)
    for name, info in cal.layers.items():
        a_in, a_out = cal.act_in[name], cal.act_out[name]
        q = _integer_input(model, info, a_in, tensors)
        y = a_out.dequantize(info.layer.apply(q, axis=1))
        ref = tensors[name][1].numpy()
        if info.activation:
            ref = np.clip(ref, 0, 6 if info.activation == "relu6" else None)
        err = np.abs(y - ref)
        assert np.mean(err) <= tol_steps * a_out.scale, (name, info.kind, info.source, np.mean(err) / a_out.scale)


def _batches(shape, n=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(*shape, generator=g) for _ in range(n)]


def test_preact_resnet_pairs_by_data_flow():
    torch.manual_seed(0)
    model = _randomize_bn(PreActNet())
    cal = importers.calibrate_torch(model, _batches((4, 3, 12, 12)))
    layers = cal.layers
    kinds = {name: (info.kind, info.source, info.activation) for name, info in layers.items()}
    # bn1 of each block reads the block input (an add or the stem conv) through nothing: affine on that tensor;
    # bn2 reads conv1's output (not conv2's, as the names suggest)
    assert kinds == {
        "layer1.0.bn1": ("conv_bn", "conv1", "relu"),          # the stem conv feeds the first block directly
        "layer1.0.bn2": ("conv_bn", "layer1.0.conv1", "relu"),
        "layer1.1.bn1": ("affine", "add", "relu"),
        "layer1.1.bn2": ("conv_bn", "layer1.1.conv1", "relu"),
        "bn": ("affine", "add_1", "relu"),
    }
    assert layers.skipped == [] and layers["layer1.1.bn1"].layer.in_range.tolist()[0] == [-128, 127]
    assert layers["layer1.1.bn2"].conv == "layer1.1.conv1" and layers["layer1.1.bn1"].conv is None
    _check_against_float(model, cal, _batches((4, 3, 12, 12), 1, seed=5)[0], tol_steps=1.0)


def test_densenet_block_every_bn_from_its_tensor():
    torch.manual_seed(1)
    model = _randomize_bn(DenseBlock())
    cal = importers.calibrate_torch(model, _batches((2, 3, 10, 10)))
    layers = cal.layers
    assert len(layers) == 7 and layers.skipped == []
    assert layers["norm0"].kind == "conv_bn" and layers["norm0"].source == "conv0"
    for i in range(3):
        n1, n2 = layers[f"denselayers.{i}.norm1"], layers[f"denselayers.{i}.norm2"]
        assert n1.kind == "affine" and n1.source.startswith("cat") and n1.activation == "relu"
        assert n1.layer.in_dtype == "int8" and n1.layer.channels == 6 + 4 * i
        assert n2.kind == "conv_bn" and n2.source == f"denselayers.{i}.conv1"
    _check_against_float(model, cal, _batches((2, 3, 10, 10), 1, seed=7)[0], tol_steps=1.0)


def test_name_pairing_would_be_wrong_here():
    """The state_dict naming convention pairs layer1.0.bn1 with layer1.0.conv1, which consumes its output."""
    model = PreActNet()
    pairs = dict((bn, conv) for conv, bn in importers.state_dict_conv_bn_pairs(model.state_dict()))
    assert pairs["layer1.0.bn1"] == "layer1.0.conv1.weight"
    assert pairs["layer1.0.bn2"] == "layer1.0.conv2.weight"


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_conv_bn_any_dimension_and_linear(dims):
    conv = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[dims]
    bnc = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}[dims]

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.c, self.b = conv(2, 4, 3, padding=1, groups=2), bnc(4)
            self.fc, self.fb = nn.Linear(4, 5), nn.BatchNorm1d(5)

        def forward(self, x):
            h = F.relu6(self.b(self.c(x)))
            return self.fb(self.fc(h.mean(dim=tuple(range(2, 2 + dims)))))

    model = _randomize_bn(Net())
    shape = (4, 2) + (6,) * dims
    cal = importers.calibrate_torch(model, _batches(shape))
    assert {n: (i.kind, i.conv, i.activation) for n, i in cal.layers.items()} == {
        "b": ("conv_bn", "c", "relu6"), "fb": ("conv_bn", "fc", None)}
    assert cal.layers["b"].w_q.shape == (4, 1) + (3,) * dims        # grouped conv: 1 input channel per group
    _check_against_float(model, cal, _batches(shape, 1, seed=3)[0], tol_steps=1.0)


def test_affine_false_identity_and_unfolded_activations():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1, self.id, self.b1 = nn.Conv2d(3, 4, 3), nn.Identity(), nn.BatchNorm2d(4, affine=False)
            self.c2, self.b2, self.act = nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4), nn.Hardswish()
            self.c3, self.b3 = nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4)

        def forward(self, x):
            h = self.act(self.b2(self.c2(self.b1(self.id(self.c1(x))))))
            return F.silu(self.b3(self.c3(h)))

    model = _randomize_bn(Net())
    cal = importers.calibrate_torch(model, _batches((2, 3, 8, 8)))
    got = {n: (i.kind, i.conv, i.activation, i.follows) for n, i in cal.layers.items()}
    assert got == {"b1": ("conv_bn", "c1", None, None), "b2": ("conv_bn", "c2", None, "hardswish"),
                   "b3": ("conv_bn", "c3", None, "silu")}
    assert "then hardswish (not folded)" in cal.layers.summary()
    _check_against_float(model, cal, _batches((2, 3, 8, 8), 1, seed=9)[0], tol_steps=1.0)


def test_every_left_out_bn_is_named():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1, self.b1 = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4, track_running_stats=False)
            self.t, self.bt = nn.ConvTranspose2d(4, 4, 2, stride=2), nn.BatchNorm2d(4)
            self.c2, self.b2 = nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4)
            self.unused = nn.BatchNorm2d(4)
            self.twice = nn.BatchNorm2d(4)

        def forward(self, x):
            h = self.bt(self.t(self.b1(self.c1(x))))
            return self.twice(self.twice(self.b2(self.c2(h))))

    model = _randomize_bn(Net())
    with pytest.warns(UserWarning, match="incomplete BN import"):
        cal = importers.calibrate_torch(model, _batches((2, 3, 8, 8)))
    assert list(cal.layers) == ["b2"] and cal.layers["b2"].conv == "c2"
    reasons = dict(cal.layers.skipped)
    assert set(reasons) == {"b1", "bt", "unused", "twice"}
    assert "track_running_stats=False" in reasons["b1"]
    assert "ConvTranspose2d" in reasons["bt"] and "not supported" in reasons["bt"]
    assert "not used" in reasons["unused"] and "2 times" in reasons["twice"]
    with pytest.raises(ValueError, match="LEFT OUT bt"):
        importers.calibrate_torch(model, _batches((2, 3, 8, 8)), strict=True)


def test_fused_and_bn_free_networks_are_reported():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU()).eval()
    _randomize_bn(model)
    fused = torch.ao.quantization.fuse_modules(model, [["0", "1", "2"]])
    with pytest.warns(UserWarning, match="fuse_modules"):
        report = importers.from_torch(fused, {}, {})
    assert len(report) == 0 and "ConvReLU2d" in report.notes[0]
    plain = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()).eval()
    with pytest.warns(UserWarning, match="no BatchNorm module"):
        report = importers.from_torch(plain, {}, {})
    assert len(report) == 0
    with pytest.raises(ValueError, match="no BatchNorm module"):
        importers.from_torch(plain, {}, {}, strict=True)


def test_missing_activation_entry_names_the_layer():
    model = _randomize_bn(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU()))
    act = {"1": importers.ActivationQuant(f32(0.02), 0)}
    with pytest.raises(ValueError, match=r"BN layer\(s\): 1 \(conv input node 'input_1', output node '_2'\)"):
        importers.from_torch(model, {}, act)
    with pytest.raises(ValueError, match="calibrate_torch"):
        importers.from_torch(model, act, {})


def test_untraceable_module_and_training_mode_are_errors():
    class Dynamic(nn.Module):
        def __init__(self):
            super().__init__()
            self.c, self.b = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)

        def forward(self, x):
            return self.b(self.c(x)) if x.sum() > 0 else x      # data-dependent control flow

    with pytest.raises(ValueError, match="cannot trace Dynamic"):
        importers.from_torch(Dynamic().eval(), {}, {})
    with pytest.raises(ValueError, match="eval"):
        importers.calibrate_torch(Dynamic(), [])
    model = _randomize_bn(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)))
    model[1].train()
    with pytest.raises(ValueError, match="BN '1' is in training mode"):
        importers.from_torch(model, {}, {})


def test_calibrate_dispatch_percentile_and_activations_file():
    model = _randomize_bn(PreActNet())
    cal = importers.calibrate(model, _batches((2, 3, 8, 8)), method="percentile", percentile=99.0)
    assert isinstance(cal, importers.Calibration) and cal.batches == 3 and len(cal.layers) == 5
    mm = importers.calibrate_torch(model, _batches((2, 3, 8, 8)), build=False)
    assert mm.layers is None
    assert cal.act_out["bn"].scale < mm.act_out["bn"].scale       # the quantiles clip the extremes
    acts = cal.activations_json(model="net.pt")
    assert acts["layers"]["layer1.0.bn2"]["conv"] == "layer1.0.conv1"
    assert acts["layers"]["layer1.1.bn1"]["kind"] == "affine" and acts["layers"]["layer1.1.bn1"]["input"] == "add"
    assert acts["calibration"] == {"method": "percentile", "batches": 3, "percentile": 99.0}
    with pytest.raises(ValueError, match="empty"):
        importers.calibrate_torch(model, [])


def test_float_check_refutes_the_name_based_pairing():
    """The float check above is not vacuous: layers paired as the old importer did (bnK with convK by name, conv ->
    BN on that conv's accumulator) fail it on the same calibration, for 4 of the 4 block BNs."""
    model = _randomize_bn(PreActNet())
    cal = importers.calibrate_torch(model, _batches((4, 3, 12, 12)))
    tensors = _tensors(model, _batches((4, 3, 12, 12), 1, seed=5)[0])
    wrong = 0
    for conv_w, bn_name in importers.state_dict_conv_bn_pairs(model.state_dict()):
        conv_name = conv_w[: -len(".weight")]
        conv, bn = model.get_submodule(conv_name), model.get_submodule(bn_name)
        if conv.out_channels != bn.num_features:
            continue
        w_q, w_scale = importers.quantize_weights(conv.weight.detach().numpy())
        act_in = importers.calibrate_values(tensors[conv_name][0].numpy())
        params = importers.BatchNormParams(*(t.detach().numpy() for t in (bn.weight, bn.bias, bn.running_mean,
                                                                           bn.running_var)), eps=bn.eps)
        layer = importers.conv_bn_layer(params, w_q, w_scale, act_in, cal.act_out[bn_name], relu=True)
        info = importers.ImportedLayer(bn_name, layer, "conv_bn", conv_name, w_q, w_scale, "relu")
        one = importers.Calibration({bn_name: act_in}, {bn_name: cal.act_out[bn_name]},
                                    importers.ImportReport({bn_name: info}), {}, {}, "minmax", 0, 1)
        with pytest.raises(AssertionError):
            _check_against_float(model, one, _batches((4, 3, 12, 12), 1, seed=5)[0], tol_steps=1.0)
        wrong += 1
    assert wrong == 4
